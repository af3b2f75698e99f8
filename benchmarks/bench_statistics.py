"""Fréchet mean of 100 latent points: geomstats' FrechetMean on our metric and on the stock one.

Decoder: 2 -> 64 -> 64 -> 784 tanh MLP (float64, fixed random weights,
``analytic.random_mlp()``); 100 latent points uniform in ``[-1, 1]^2``.

- ours, generic: geomstats' ``FrechetMean(space)``, unchanged, default settings
  (gradient descent, stops when ``|mean log|^2 <= 1e-4 * dim``), then with a
  tight stopping rule (``epsilon=1e-12``).
- ours, PullbackFrechetMean: warm-started discrete geodesics, then shooting
  (``refine=True``; default ``tol=1e-5``, and ``tol=1e-7``), and discrete
  geodesics only (``refine=False``).
- stock: geomstats' ``PullbackMetric`` on an ``ImmersedSet`` with the same
  decoder (explicit Euler exp, 100 steps; log by L-BFGS shooting through exp).
  Far too slow to run: one geodesic-equation evaluation costs about half a
  second per point, so one exp of one point takes ~100 of them. We time the
  geodesic equation on a few points, check it against a timed stock exp with
  a few Euler steps, and extrapolate a LOWER BOUND for the generic estimator
  on the stock metric: per iteration, its log of all points costs at least one
  shooting objective evaluation, i.e. one exp of all points (the L-BFGS
  iterations and the backward passes through exp are not counted), plus one
  exp of the mean; the number of iterations is the one measured on our metric.

Every mean is checked with our metric's exact log: ``|mean_i log_m x_i|_G``
relative to the root mean squared distance (the first-order condition).

Run: ``./dev bench bench_statistics.py [--n-points 100] [--repeats 1]``.
"""

import argparse
import os

os.environ.setdefault("GEOMSTATS_BACKEND", "pytorch")

import geomstats.backend as gs  # noqa: E402
import torch  # noqa: E402
from _timing import add_out_option, best_of, decoder_pass_time, recorded, single_thread  # noqa: E402
from geomstats.learning.frechet_mean import FrechetMean  # noqa: E402

import geomstats_pullback as gp  # noqa: E402
from geomstats_pullback import analytic  # noqa: E402
from geomstats_pullback.reference import StockPullbackSpace  # noqa: E402


class CountingLogSolver(gp.GeodesicBVPSolver):
    """The default log solver, counting its batched calls (iterations of FrechetMean)."""

    n_calls = 0

    def solve(self, point, base_point, **kwargs):
        self.n_calls += 1
        return super().solve(point, base_point, **kwargs)


def first_order_residual(space, points, mean):
    """``|mean_i log_m x_i|_G / sqrt(mean_i d(m, x_i)^2)`` with the exact log."""
    logs = space.metric.log(points, mean)
    spread = torch.sqrt(torch.mean(space.metric.squared_norm(logs, mean)))
    return float(space.metric.norm(torch.mean(logs, dim=0), mean) / spread)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-points", type=int, default=100)
    parser.add_argument("--n-stock", type=int, default=2, help="points of the timed stock geodesic equation")
    parser.add_argument("--repeats", type=int, default=1)
    add_out_option(parser)
    args = parser.parse_args()
    with recorded(__file__, args.out):
        threads = single_thread()

        net = analytic.random_mlp((2, 64, 64, 784), seed=0)
        space = gp.DecoderManifold(net, latent_dim=2)
        space.metric.log_solver = CountingLogSolver(space)
        gs.random.seed(0)
        points = space.random_point(args.n_points)
        n = args.n_points

        def generic(**settings):
            def run():
                space.metric.log_solver.n_calls = 0
                return FrechetMean(space).set(**settings).fit(points).estimate_

            seconds, mean = best_of(run, args.repeats)
            return seconds, mean, space.metric.log_solver.n_calls

        t_default, mean_default, calls_default = generic()
        t_tight, mean_tight, calls_tight = generic(epsilon=1e-12, max_iter=100)
        t_ours, ours = best_of(lambda: gp.PullbackFrechetMean(space).fit(points), args.repeats)
        t_ours_tight, ours_tight = best_of(lambda: gp.PullbackFrechetMean(space, tol=1e-7).fit(points), args.repeats)
        t_discrete, discrete = best_of(lambda: gp.PullbackFrechetMean(space, refine=False).fit(points), args.repeats)

        # Stock metric: time the geodesic equation and a short Euler exp; extrapolate.
        stock = StockPullbackSpace(net, latent_dim=2)
        k = args.n_stock
        state = gs.stack([points[:k], 0.1 * gs.ones((k, 2))], axis=-2)
        t_geq, _ = best_of(lambda: stock.metric.geodesic_equation(state), 1)
        n_euler = stock.metric.exp_solver.integrator.n_steps
        stock.metric.exp_solver.integrator.n_steps = 2
        t_exp2, _ = best_of(lambda: stock.metric.exp(0.1 * gs.ones(2), points[0]), 1)
        stock.metric.exp_solver.integrator.n_steps = n_euler
        per_point_step = max(t_geq / k, t_exp2 / 2)
        stock_exp_per_point = n_euler * per_point_step
        # FrechetMean's gradient descent: one log of all points per call, one exp of the mean between calls.
        stock_bound = (calls_default * n + (calls_default - 1)) * stock_exp_per_point

        t_pass = decoder_pass_time(net, points)
        print(f"threads: {threads}; decoder 2-64-64-784 tanh float64; Fréchet mean of {n} latent points in [-1, 1]^2")
        print(f"decoder forward+backward on {n} points (lower bound unit): {t_pass * 1e3:.2f} ms")
        print("first-order residual: |mean log|_G / rms distance, with the exact log")
        print(f"ours, geomstats FrechetMean default ({calls_default} batched logs): {t_default:8.2f} s; "
              f"residual {first_order_residual(space, points, mean_default):.1e}")
        print(f"ours, geomstats FrechetMean epsilon=1e-12 ({calls_tight} batched logs): {t_tight:8.2f} s; "
              f"residual {first_order_residual(space, points, mean_tight):.1e}")
        for label, seconds, fitted in (
            ("PullbackFrechetMean default (tol=1e-5)", t_ours, ours),
            ("PullbackFrechetMean tol=1e-7", t_ours_tight, ours_tight),
            ("PullbackFrechetMean refine=False (no exp)", t_discrete, discrete),
        ):
            print(f"ours, {label} ({fitted.n_iter_} updates, {fitted.n_solves_} batched solves): {seconds:8.2f} s; "
                  f"residual {first_order_residual(space, points, fitted.estimate_):.1e}")
        print(f"stock geodesic equation: {t_geq / k:.3f} s per point ({k} points timed); Euler exp with 2 steps: "
              f"{t_exp2:.2f} s -> exp with {n_euler} steps ~ {stock_exp_per_point:.0f} s per point (extrapolated)")
        print(f"stock, geomstats FrechetMean default: >= {stock_bound:,.0f} s (LOWER BOUND, extrapolated: "
              f"{calls_default} logs of {n} points counted as one exp each (L-BFGS shooting needs several), "
              f"{calls_default - 1} exps of the mean)")
        ratio_generic = stock_bound / t_default
        print(f"speed-up of the geomstats estimator, our metric vs stock (same settings): >= {ratio_generic:,.0f}x "
              f"(target >= 100x: {'met' if ratio_generic >= 100 else 'NOT met'})")
        print(f"PullbackFrechetMean vs geomstats FrechetMean on our metric: tight settings (tol=1e-7 vs epsilon=1e-12) "
              f"{t_tight / t_ours_tight:.1f}x; defaults {t_default / t_ours:.1f}x; refine=False vs FrechetMean default "
              f"{t_default / t_discrete:.1f}x; PullbackFrechetMean default vs stock: >= {stock_bound / t_ours:,.0f}x")


if __name__ == "__main__":
    main()
