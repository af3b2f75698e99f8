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


def _alternating_best(fn_a, fn_b, repeats):
    """Best times of ``fn_a`` and ``fn_b`` timed in alternation (drift on a shared machine hits both) and their last results."""
    best_a = best_b = float("inf")
    for _ in range(repeats):
        t_a, out_a = best_of(fn_a, 1)
        t_b, out_b = best_of(fn_b, 1)
        best_a, best_b = min(best_a, t_a), min(best_b, t_b)
    return best_a, best_b, out_a, out_b


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-points", type=int, nargs="+", default=[64, 1024], help="batch sizes of metric_matrix")
    parser.add_argument("--n-pairs", type=int, default=16, help="pairs of the batched dist")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 5], help="ensemble sizes M")
    parser.add_argument("--repeats", type=int, default=5)
    add_out_option(parser)
    args = parser.parse_args()
    with recorded(__file__, args.out):
        threads = single_thread()
        net = analytic.random_mlp((2, 64, 64, 784), seed=0)
        single = gp.DecoderManifold(net, latent_dim=2)
        gen = torch.Generator().manual_seed(0)
        batches = {n: 2 * torch.rand(n, 2, generator=gen, dtype=torch.float64) - 1 for n in args.n_points}
        a, b = (2 * torch.rand(args.n_pairs, 2, generator=gen, dtype=torch.float64) - 1 for _ in range(2))
        print(f"threads: {threads}; decoder 2-64-64-784 tanh float64; ensembles of M copies; "
              f"each time the best of {args.repeats}, alternating with the single decoder's")
        print("ratio = ensemble time / (M x single decoder time); error = max difference from the single decoder's values")
        print(f"{'task':>26} | {'M':>2} | {'single ms':>9} | {'ensemble ms':>11} | {'ratio':>5} | {'error':>7}")
        worst = {}
        for m in args.sizes:
            ensemble = gp.EnsembleDecoder([copy.deepcopy(net) for _ in range(m)])
            space = gp.DecoderManifold(ensemble, latent_dim=2)
            tasks = {f"metric_matrix, {n} points": (lambda s, z=z: s.metric.metric_matrix(z)) for n, z in batches.items()}
            tasks[f"dist, {args.n_pairs} pairs"] = lambda s: s.metric.dist(a, b)
            for name, task in tasks.items():
                t_single, t_ensemble, out_single, out_ensemble = _alternating_best(
                    lambda: task(single), lambda: task(space), args.repeats
                )
                ratio = t_ensemble / (m * t_single)
                worst[name] = max(worst.get(name, 0.0), ratio)
                error = (out_ensemble - out_single).abs().max().item()
                print(f"{name:>26} | {m:2d} | {t_single * 1e3:9.1f} | {t_ensemble * 1e3:11.1f} | {ratio:5.2f} | {error:7.1e}")
        for name, ratio in worst.items():
            print(f"worst ratio, {name}: {ratio:.2f} (target <= {TARGET}: {'met' if ratio <= TARGET else 'NOT met'})")


if __name__ == "__main__":
    main()
