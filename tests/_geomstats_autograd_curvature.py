"""geomstats' generic curvature of a tanh MLP pullback, on the autograd backend.

Run as a script in a separate process (geomstats' backend is fixed at its
first import): ``python _geomstats_autograd_curvature.py IN.npz OUT.npz``.
``IN.npz`` holds the MLP's layers (``weight_0, bias_0, ...``, torch layout)
and ``points [n, d]``. geomstats' stock ``PullbackMetric`` on an
``ImmersedSet`` derives everything from the immersion by autodiff (the
Christoffels, then their Jacobian for the Riemann tensor). On the pytorch
backend that nested derivative is wrong in geomstats 2.8.0; on autograd it is right.
"""

import os
import sys

os.environ["GEOMSTATS_BACKEND"] = "autograd"

import autograd.numpy as anp  # noqa: E402
import numpy as np  # noqa: E402
from geomstats.geometry.base import ImmersedSet  # noqa: E402
from geomstats.geometry.euclidean import Euclidean  # noqa: E402


def main(path_in, path_out):
    data = np.load(path_in)
    n_layers = len([key for key in data.files if key.startswith("weight_")])
    layers = [(data[f"weight_{i}"], data[f"bias_{i}"]) for i in range(n_layers)]

    def mlp(z):
        for i, (weight, bias) in enumerate(layers):
            z = anp.dot(z, weight.T) + bias
            if i < n_layers - 1:
                z = anp.tanh(z)
        return z

    class MLPImmersion(ImmersedSet):
        def _define_embedding_space(self):
            return Euclidean(dim=layers[-1][0].shape[0])

        def immersion(self, point):
            return mlp(point)

    metric = MLPImmersion(dim=layers[0][0].shape[1]).metric
    points = data["points"]
    np.savez(
        path_out,
        riemann=metric.riemann_tensor(points),
        second_fundamental_form=metric.second_fundamental_form(points),
        mean_curvature=metric.mean_curvature_vector(points),
    )


if __name__ == "__main__":
    main(*sys.argv[1:3])
