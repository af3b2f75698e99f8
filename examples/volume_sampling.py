"""Sampling by the Riemannian volume, and likely geodesics.

1. On the sphere chart ``(theta, phi)``, whose volume element is
   ``sin(theta)``, :func:`geomstats_pullback.sample_volume` draws latent
   points from ``sqrt(det G)`` restricted to a box: the histogram of
   ``theta`` follows ``sin(theta)``, not the uniform law.
2. On a small random MLP, a likely geodesic (energy plus ``lambda`` times the
   integral of ``-log p``, ``p`` a two-bump Gaussian mixture) leaves the plain
   geodesic for the high-density bump as ``lambda`` grows.

Run ``python examples/volume_sampling.py [--smoke]``.
"""

import argparse
import os

os.environ.setdefault("GEOMSTATS_BACKEND", "pytorch")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import geomstats_pullback as gp  # noqa: E402
from geomstats_pullback import analytic  # noqa: E402
from geomstats_pullback.sampling import effective_sample_size  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (for the test suite)")
    args = parser.parse_args(argv)
    n_samples, burn_in, weights = (200, 50, (0.0, 30.0)) if args.smoke else (4000, 300, (0.0, 3.0, 30.0, 300.0))

    low, high = (0.3, -1.0), (2.8, 1.0)
    sphere = gp.DecoderManifold(analytic.sphere_chart, latent_dim=2, region=(low, high))
    result = gp.sample_volume(sphere, n_samples, n_chains=50, burn_in=burn_in, thin=5, seed=0)
    print(f"acceptance rate {float(result.acceptance_rate.mean()):.2f}, "
          f"effective sample size {effective_sample_size(result.chains).min():.0f} of {n_samples}")
    edges = np.linspace(low[0], high[0], 6)
    counts, _ = np.histogram(result.samples[:, 0].numpy(), bins=edges)
    exact = (np.cos(edges[:-1]) - np.cos(edges[1:])) / (np.cos(low[0]) - np.cos(high[0]))
    for a, b, found, expected in zip(edges[:-1], edges[1:], counts / n_samples, exact):
        print(f"theta in [{a:.2f}, {b:.2f}): sampled {found:.3f}, exact {expected:.3f}")

    space = gp.DecoderManifold(analytic.random_mlp((2, 16, 16, 20)), latent_dim=2)
    density = gp.GaussianMixtureDensity([0.6, 0.4], [[0.0, 0.8], [0.0, -1.2]], [2.0 * np.eye(2)] * 2)
    z0, z1 = torch.tensor([-1.0, 0.0]), torch.tensor([1.0, 0.0])
    for weight in weights:
        solver = gp.GeodesicBVPSolver(space, n_nodes=17, shooting=False, density=density, density_weight=weight)
        path = solver.solve(z1, z0).path
        print(f"lambda {weight:6.1f}: length {float(gp.path_length(space, path)):.3f}, "
              f"mean log p {float(density(path).mean()):.3f}, mean z_2 {float(path[:, 1].mean()):+.3f}")


if __name__ == "__main__":
    main()
