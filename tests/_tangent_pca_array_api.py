"""geomstats' TangentPCA on a small MLP decoder, in scikit-learn's array API mode.

Run as a script in a separate process: ``python _tangent_pca_array_api.py OUT.json``.
geomstats 2.8's ``TangentPCA`` calls scikit-learn's ``svd_flip`` on torch
tensors, which scikit-learn >= 1.6 only accepts with array API dispatch on;
that needs ``SCIPY_ARRAY_API=1`` before scipy is first imported, a
process-wide setting, hence the separate process. The same holds for
geomstats' own spaces (e.g. ``Hypersphere``) under the pytorch backend.

Points lie on the geodesic ``t -> exp(t v, z)``, ``t in [-1, 1]``; the script
writes the explained variance ratios, and the cosine between the first
component and the geodesic's direction at the mean.
"""

import json
import os
import sys
from pathlib import Path

os.environ["SCIPY_ARRAY_API"] = "1"
os.environ["GEOMSTATS_BACKEND"] = "pytorch"

import geomstats.backend as gs  # noqa: E402
import sklearn  # noqa: E402
import torch  # noqa: E402
from geomstats.learning.pca import TangentPCA  # noqa: E402

import geomstats_pullback as gp  # noqa: E402
from geomstats_pullback import analytic  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from conftest import fast_solvers  # noqa: E402


def main(path_out):
    space = fast_solvers(gp.DecoderManifold(analytic.random_mlp((2, 16, 16, 10), seed=1), latent_dim=2))
    base, direction = gs.array([0.1, -0.2]), gs.array([0.4, 0.3])
    points = space.metric.exp(gs.linspace(-1.0, 1.0, 7)[:, None] * direction, base)
    with sklearn.config_context(array_api_dispatch=True):
        pca = TangentPCA(space, n_components=2).fit(points)
        scores = pca.transform(points)
    velocity = space.metric.log(points[-1], pca.base_point_)
    cosine = torch.abs(pca.components_[0] @ velocity) / torch.linalg.norm(velocity)
    result = {
        "explained_variance_ratio": pca.explained_variance_ratio_.tolist(),
        "cosine": float(cosine),
        "scores_shape": list(scores.shape),
    }
    with open(path_out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(sys.argv[1])
