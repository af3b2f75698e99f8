"""The unit sphere through spherical angles, against geomstats' own Hypersphere.

The decoder ``(theta, phi) -> (sin theta cos phi, sin theta sin phi, cos theta)``
embeds the latent plane onto the unit sphere, so its pullback metric must
agree with geomstats' ``Hypersphere(2)``: the metric matrix
``diag(1, sin^2 theta)``, the exponential and logarithm maps, distances,
parallel transport and curvature 1.
This script measures each agreement and prints the largest error.

Run ``python examples/sphere_vs_hypersphere.py [--smoke]``.
"""

import argparse
import os

os.environ.setdefault("GEOMSTATS_BACKEND", "pytorch")

import geomstats.backend as gs  # noqa: E402
import torch  # noqa: E402
from geomstats.geometry.hypersphere import Hypersphere  # noqa: E402

import geomstats_pullback as gp  # noqa: E402
from geomstats_pullback.analytic import sphere_chart  # noqa: E402


def sample_angles(n, seed=0):
    """Spherical angles at least 0.8 away from the poles, ``[n, 2]``."""
    gen = torch.Generator().manual_seed(seed)
    theta = 0.8 + (torch.pi - 1.6) * torch.rand(n, generator=gen)
    phi = -2.0 + 4.0 * torch.rand(n, generator=gen)
    return torch.stack([theta, phi], dim=-1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (for the test suite)")
    args = parser.parse_args(argv)
    n = 4 if args.smoke else 200

    space = gp.DecoderManifold(sphere_chart, latent_dim=2)
    sphere = Hypersphere(dim=2)
    z = sample_angles(n, seed=0)
    v = torch.randn(n, 2, generator=torch.Generator().manual_seed(1))
    # Geodesics of length at most 0.7 stay away from the poles, where the chart is singular.
    v = 0.7 * v / space.metric.norm(v, z)[:, None] * torch.rand(n, 1, generator=torch.Generator().manual_seed(2))

    errors = {}
    # Metric matrix: diag(1, sin^2 theta).
    expected = torch.zeros(n, 2, 2)
    expected[:, 0, 0], expected[:, 1, 1] = 1.0, torch.sin(z[:, 0]) ** 2
    errors["metric matrix"] = (space.metric.metric_matrix(z) - expected).abs().max()

    # Exponential map: decode our latent exp, compare with the sphere's exp of the pushed vector.
    _, pushed = space.decoder.jvp(z, v)  # J v, [n, 3]
    ours = sphere_chart(space.metric.exp(v, z))
    theirs = sphere.metric.exp(pushed, sphere_chart(z))
    errors["exp"] = (ours - theirs).abs().max()

    # Squared norms of tangent vectors.
    errors["squared norm"] = (space.metric.squared_norm(v, z) - sphere.metric.squared_norm(pushed, sphere_chart(z))).abs().max()

    # Distances and logarithms between pairs of points (the geodesic boundary value problem).
    z1 = space.metric.exp(v, z)
    errors["dist"] = (space.metric.dist(z, z1) - sphere.metric.dist(sphere_chart(z), sphere_chart(z1))).abs().max()
    log = space.metric.log(z1, z)
    _, log_pushed = space.decoder.jvp(z, log)
    errors["log"] = (log_pushed - sphere.metric.log(sphere_chart(z1), sphere_chart(z))).abs().max()

    # Parallel transport of w along the geodesic from z to z1, pushed to R^3.
    w = torch.randn(n, 2, generator=torch.Generator().manual_seed(3))
    _, w_pushed = space.decoder.jvp(z, w)
    _, ours = space.decoder.jvp(z1, space.metric.parallel_transport(w, z, end_point=z1))
    theirs = sphere.metric.parallel_transport(w_pushed, sphere_chart(z), end_point=sphere_chart(z1))
    errors["parallel transport"] = (ours - theirs).abs().max()

    # Sectional curvature of the unit sphere: 1 everywhere.
    e1, e2 = torch.eye(2)
    errors["sectional curvature - 1"] = (space.metric.sectional_curvature(e1, e2, z) - 1).abs().max()

    width = max(len(name) for name in errors)
    print(f"{'quantity':<{width}}  max abs error over {n} points")
    for name, error in errors.items():
        print(f"{name:<{width}}  {float(error):.2e}")
    worst = max(float(e) for e in errors.values())
    assert worst < 1e-6, f"disagreement with Hypersphere(2): {worst:.2e}"
    return errors


if __name__ == "__main__":
    gs.random.seed(0)
    main()
