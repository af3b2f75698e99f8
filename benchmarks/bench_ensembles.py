"""Cost of an ensemble's expected metric: M copies of one decoder versus M times the decoder alone.

Decoder: 2 -> 64 -> 64 -> 784 tanh MLP (float64, fixed random weights). The
ensemble of ``M`` copies (separate modules, equal weights) has the single
decoder's metric, so its geodesics, and the number of solver steps behind
each distance, are the single decoder's: the ratio below is the cost of the
stacked map alone. For ``M = 1, 2, 5`` it prints the time of a batched
``metric_matrix`` on ``--n-points`` points and of ``dist`` on ``--n-pairs``
pairs, each as a ratio to ``M`` times the single decoder's time (target
``<= 1.2``), and the largest difference from the single decoder's values.

Run: ``./dev bench bench_ensembles.py [--n-points 4096] [--n-pairs 64]``.
"""

import argparse
import copy
import os

os.environ.setdefault("GEOMSTATS_BACKEND", "pytorch")

import torch  # noqa: E402
from _timing import add_out_option, best_of, recorded, single_thread  # noqa: E402

import geomstats_pullback as gp  # noqa: E402
from geomstats_pullback import analytic  # noqa: E402

TARGET = 1.2


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-points", type=int, default=4096, help="points of the batched metric_matrix")
    parser.add_argument("--n-pairs", type=int, default=64, help="pairs of the batched dist")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 5], help="ensemble sizes M")
    parser.add_argument("--repeats", type=int, default=3)
    add_out_option(parser)
    args = parser.parse_args()
    with recorded(__file__, args.out):
        threads = single_thread()
        net = analytic.random_mlp((2, 64, 64, 784), seed=0)
        single = gp.DecoderManifold(net, latent_dim=2)
        gen = torch.Generator().manual_seed(0)
        points = 2 * torch.rand(args.n_points, 2, generator=gen, dtype=torch.float64) - 1
        a, b = (2 * torch.rand(args.n_pairs, 2, generator=gen, dtype=torch.float64) - 1 for _ in range(2))

        t_metric, metric_single = best_of(lambda: single.metric.metric_matrix(points), args.repeats)
        t_dist, dist_single = best_of(lambda: single.metric.dist(a, b), args.repeats)
        print(f"threads: {threads}; decoder 2-64-64-784 tanh float64; metric_matrix on {args.n_points} points, "
              f"dist on {args.n_pairs} pairs; best of {args.repeats}")
        print(f"single decoder: metric_matrix {t_metric * 1e3:.1f} ms, dist {t_dist * 1e3:.1f} ms")
        print("   M | metric_matrix ms | / (M x single) | dist ms | / (M x single) | max |G - G_single| | max |dist - dist_single|")
        worst = 0.0
        for m in args.sizes:
            members = [copy.deepcopy(net) for _ in range(m)]
            space = gp.DecoderManifold(gp.EnsembleDecoder(members), latent_dim=2)
            t_m, metric_m = best_of(lambda: space.metric.metric_matrix(points), args.repeats)
            t_d, dist_m = best_of(lambda: space.metric.dist(a, b), args.repeats)
            r_m, r_d = t_m / (m * t_metric), t_d / (m * t_dist)
            worst = max(worst, r_m, r_d)
            err_g = (metric_m - metric_single).abs().max().item()
            err_d = (dist_m - dist_single).abs().max().item()
            print(f"{m:4d} | {t_m * 1e3:16.1f} | {r_m:14.2f} | {t_d * 1e3:7.1f} | {r_d:14.2f} | "
                  f"{err_g:18.1e} | {err_d:24.1e}")
        print(f"worst ratio {worst:.2f} (target <= {TARGET}: {'met' if worst <= TARGET else 'NOT met'})")


if __name__ == "__main__":
    main()
