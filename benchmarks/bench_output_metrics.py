"""Fisher–Rao output geometries: cost relative to Euclidean outputs and to a dense generic route.

Decoder: 2 -> 64 -> 64 -> 784 tanh MLP (float64, fixed random weights), read
as 784 Bernoulli logits, one categorical over 784 categories (logits), 784
Poisson log-rates, or 392 normal entries (means from the first half, stds
``softplus + 0.2`` from the second; pseudosphere floor 0.15). Prints, for
each family:

- ``dist`` per pair (a batch of ``--n-pairs`` pairs, default solvers) and its
  ratio to the same decoder with Euclidean outputs (target <= 1.3x). The
  solvers may take a different number of iterations on a different metric,
  so the ratio of one batched ``metric_matrix`` (the per-evaluation cost) is
  printed too;
- ``metric_matrix`` on a batch of ``--n-points`` points against the generic
  dense route: per point, ``J`` of the family's parameters ``theta(z)`` by
  ``torch.func.jacrev`` and ``J^T F J`` with ``F`` the dense Fisher matrix of
  geomstats' own metric of the family (``BinomialDistributions(1)``,
  ``CategoricalDistributions``, ``PoissonDistributions``,
  ``NormalDistributions(sample_dim=1)``), timed on
  ``--n-dense`` points and extrapolated per point (target >= 100x). The two
  results are compared (maximum relative difference).

Run: ``./dev bench bench_output_metrics.py [--n-pairs 16] [--n-points 256] [--n-dense 8]``.
"""

import argparse
import os

os.environ.setdefault("GEOMSTATS_BACKEND", "pytorch")

import geomstats.backend as gs
import torch
from _timing import add_out_option, best_of, recorded, single_thread
from geomstats.information_geometry.binomial import BinomialDistributions
from geomstats.information_geometry.categorical import CategoricalDistributions
from geomstats.information_geometry.normal import NormalDistributions
from geomstats.information_geometry.poisson import PoissonDistributions
from torch.func import jacrev

import geomstats_pullback as gp
from geomstats_pullback import analytic

D = 784

STD_OFFSET, STD_FLOOR = 0.2, 0.15  # Gaussian: std = softplus + STD_OFFSET, above the pseudosphere's floor


def _normal_parameters(out):
    """``[B, D] -> [B, D / 2, 2]``: (mean, std) of ``D / 2`` normal entries."""
    half = out.shape[-1] // 2
    return torch.stack([out[..., :half], torch.nn.functional.softplus(out[..., half:]) + STD_OFFSET], dim=-1)


# family -> (theta from the decoder output [B, D], geomstats' family, family point from theta [D])
FAMILIES = {
    "bernoulli": (torch.sigmoid, lambda: BinomialDistributions(n_draws=1), lambda theta: theta[:, None]),
    "categorical": (lambda out: torch.softmax(out, dim=-1), lambda: CategoricalDistributions(dim=D - 1), lambda theta: theta),
    "poisson": (torch.exp, PoissonDistributions, lambda theta: theta[:, None]),
    "gaussian": (_normal_parameters, lambda: NormalDistributions(sample_dim=1), lambda theta: theta),
}


def output_space(net, output):
    """The latent space of ``net`` with an output geometry (Gaussian: mean and std from the two halves)."""
    if output != "gaussian":
        return gp.DecoderManifold(net, 2, output=output)

    def mean_and_std(z):
        theta = _normal_parameters(net(z))
        return theta[..., 0], theta[..., 1]

    return gp.DecoderManifold(mean_and_std, 2, output="gaussian", output_kwargs={"std_floor": STD_FLOOR})


def dense_fisher_pullback(net, family, z):
    """``J^T F J`` per point, ``F`` from geomstats' Fisher metric as a dense ``[D, D]`` matrix: ``[B, 2, 2]``."""
    to_theta, make_space, to_point = FAMILIES[family]
    space = make_space()
    out = []
    for point in z:
        theta_fn = lambda x: to_theta(net(x[None]))[0]
        jac = jacrev(theta_fn)(point)  # [D, 2], or [D / 2, 2, 2] (Gaussian)
        fisher = space.metric.metric_matrix(to_point(theta_fn(point)))  # [D, 1, 1], [D, D] or [D / 2, 2, 2]
        if fisher.ndim == 2:
            out.append(jac.T @ fisher @ jac)
        else:  # one block per entry
            jac = jac.reshape(fisher.shape[0], fisher.shape[1], -1)
            out.append(torch.einsum("kai,kab,kbj->ij", jac, fisher, jac))
    return torch.stack(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-pairs", type=int, default=16)
    parser.add_argument("--n-points", type=int, default=256)
    parser.add_argument("--n-dense", type=int, default=8, help="points timed on the dense route")
    parser.add_argument("--repeats", type=int, default=3)
    add_out_option(parser)
    args = parser.parse_args()
    with recorded(__file__, args.out):
        threads = single_thread()
        net = analytic.random_mlp((2, 64, 64, D), seed=0)
        gs.random.seed(0)
        spaces = {output: output_space(net, output) for output in ("euclidean", *FAMILIES)}
        start, end = spaces["euclidean"].random_point(args.n_pairs), spaces["euclidean"].random_point(args.n_pairs)
        points = spaces["euclidean"].random_point(args.n_points)
        times = {}
        for output, space in spaces.items():
            t_dist, _ = best_of(lambda space=space: space.metric.dist(start, end), args.repeats)
            t_matrix, matrix = best_of(lambda space=space: space.metric.metric_matrix(points), args.repeats)
            times[output] = (t_dist, t_matrix, matrix)
        print(f"threads: {threads}; decoder 2-64-64-784 tanh float64; {args.n_pairs} pairs, "
              f"metric_matrix on {args.n_points} points, dense route timed on {args.n_dense} points")
        t_dist0, t_matrix0, _ = times["euclidean"]
        print(f"euclidean: dist {t_dist0 / args.n_pairs * 1e3:.2f} ms/pair; "
              f"metric_matrix {t_matrix0 / args.n_points * 1e6:.1f} us/point")
        worst_ratio, worst_speedup = 0.0, float("inf")
        for family in FAMILIES:
            t_dist, t_matrix, matrix = times[family]
            k = args.n_dense
            t_dense, dense = best_of(lambda family=family, k=k: dense_fisher_pullback(net, family, points[:k]), 1)
            per_ours, per_dense = t_matrix / args.n_points, t_dense / k
            difference = ((matrix[:k] - dense).abs().max() / dense.abs().max()).item()
            worst_ratio = max(worst_ratio, t_dist / t_dist0)
            worst_speedup = min(worst_speedup, per_dense / per_ours)
            print(f"{family}: dist {t_dist / args.n_pairs * 1e3:.2f} ms/pair = {t_dist / t_dist0:.2f}x euclidean; "
                  f"metric_matrix {t_matrix / t_matrix0:.2f}x euclidean; dense J^T F J {per_dense * 1e3:.2f} ms/point "
                  f"-> speed-up {per_dense / per_ours:.0f}x (max relative difference {difference:.1e})")
        print(f"worst dist ratio {worst_ratio:.2f}x (target <= 1.3x: {'met' if worst_ratio <= 1.3 else 'NOT met'}); "
              f"worst speed-up over the dense route {worst_speedup:.0f}x "
              f"(target >= 100x: {'met' if worst_speedup >= 100 else 'NOT met'})")


if __name__ == "__main__":
    main()
