"""Peak memory of batched geometry at d = 32, with and without the memory budget.

Each measurement runs in a fresh subprocess (one thread): it builds the
decoder, warms up on one point, reads its resident memory, runs the task
once and reports the peak resident memory (``ru_maxrss``) above that
baseline. Tasks, on ``--n-pairs`` pairs or points:

- ``metric_matrix``: ``G`` at the points (GEORCE's CelebA decoder, ``d = 32``,
  ``3 x 64 x 64``, float32), under the default chunk target, under a
  budget set with ``gp.set_memory_budget`` (``--budget-mib``), and with an
  unlimited budget (one chunk, the baseline);
- ``exp``: geodesics from the points (same decoder);
- ``dist``: distances between pairs (tanh MLP ``32 -> 64 -> 64 -> 784``,
  float64, the default log solver, with shooting);
- ``dist_discrete``: the same without shooting (the distance matrices' default).

Run: ``./dev bench bench_memory_budget.py [--n-pairs 64] [--budget-mib 64]``.
"""

import argparse
import json
import os
import subprocess
import sys

os.environ.setdefault("GEOMSTATS_BACKEND", "pytorch")

from _timing import add_out_option, recorded  # noqa: E402

_CHILD = r"""
import json, os, resource, sys, time
import torch
torch.set_num_threads(1)
import geomstats_pullback as gp
from geomstats_pullback import analytic
task, n, budget = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if budget != "default":
    gp.set_memory_budget(int(budget))
gen = torch.Generator().manual_seed(0)
if task.startswith("dist"):
    space = gp.DecoderManifold(analytic.random_mlp((32, 64, 64, 784), seed=0), 32)
else:
    space = gp.DecoderManifold(analytic.celeba_conv_decoder(32, seed=0, dtype=torch.float32), 32)
z = 0.5 * torch.randn(n, 32, generator=gen, dtype=torch.float64)
v = 0.2 * torch.randn(n, 32, generator=gen, dtype=torch.float64)
run = {
    "metric_matrix": lambda: space.metric.metric_matrix(z),
    "exp": lambda: space.metric.exp(v, z),
    "dist": lambda: space.metric.dist(z, z + v),
    "dist_discrete": lambda: gp.GeodesicBVPSolver(space, shooting=False).solve(z + v, z),
}[task]
space.metric.metric_matrix(z[:1])
page = os.sysconf("SC_PAGE_SIZE")
with open("/proc/self/statm") as statm:
    before = int(statm.read().split()[1]) * page
start = time.perf_counter()
run()
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"before": before, "peak": peak, "seconds": seconds}))
"""


def _measure(task, n, budget):
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, task, str(n), budget], capture_output=True, text=True, check=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-pairs", type=int, default=64)
    parser.add_argument("--budget-mib", type=int, default=64)
    parser.add_argument("--tasks", nargs="+", default=["metric_matrix", "exp", "dist", "dist_discrete"])
    add_out_option(parser)
    args = parser.parse_args()
    budgets = {"default target (32 MiB)": "default", f"set: {args.budget_mib} MiB": str(args.budget_mib << 20),
               "unlimited": str(1 << 50)}
    with recorded(__file__, args.out):
        print(f"threads: 1; {args.n_pairs} points or pairs; peak resident memory above the warmed-up process")
        print(f"{'task':>14} | {'budget':>24} | {'peak MiB':>8} | {'ratio to unlimited':>18} | {'seconds':>7}")
        for task in args.tasks:
            results = {label: _measure(task, args.n_pairs, budget) for label, budget in budgets.items()}
            base = results["unlimited"]["peak"] - results["unlimited"]["before"]
            for label, result in results.items():
                extra = result["peak"] - result["before"]
                print(f"{task:>14} | {label:>24} | {extra / 2**20:>8.1f} | {extra / base:>18.2f} | {result['seconds']:>7.2f}")


if __name__ == "__main__":
    main()
