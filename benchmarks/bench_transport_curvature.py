"""Parallel transport and sectional curvature: ours versus geomstats' stock pullback metric.

Decoder: 2 -> 64 -> 64 -> 784 tanh MLP (float64, fixed random weights,
``analytic.random_mlp()``).

Transport: ours transports 256 vectors along 256 geodesics in one batched
call (transport equation integrated with the geodesic). geomstats' stock
``PullbackMetric`` has no ``parallel_transport``; its route is
``ladder_parallel_transport`` (pole ladder, one rung: 4 ``exp`` and 3 ``log``
per vector), whose ``exp`` is explicit Euler with 100 steps of the generic
geodesic equation and whose ``log`` is L-BFGS shooting through that ``exp``.
One ladder takes tens of minutes per vector here, so by default it is not
run: we time the stock geodesic equation on a few vectors and extrapolate a
*lower bound*, counting each stock ``log`` as a single ``exp`` (in reality it
needs many L-BFGS iterations, each an ``exp`` plus its gradient). The printed
transport ratio is therefore a lower bound on the speed-up.
``--stock-ladder K`` runs the real ladder on K vectors instead.

Curvature: ours computes the sectional curvature of 256 planes (Gauss
equation, three second derivatives per plane) in one call; geomstats' generic
``sectional_curvature`` (Christoffels by autodiff, then their Jacobian) on
the stock metric is timed on a few planes and extrapolated per plane. Its
values are wrong under the pytorch backend in geomstats 2.8.0 (its nested
Jacobian drops the graph); only its time is compared.

Run: ``./dev bench bench_transport_curvature.py [--n 256] [--n-stock 2]``.
"""

import argparse
import os

os.environ.setdefault("GEOMSTATS_BACKEND", "pytorch")

import geomstats.backend as gs  # noqa: E402
from _timing import add_out_option, best_of, decoder_pass_time, recorded, single_thread  # noqa: E402
from geomstats.geometry.riemannian_metric import RiemannianMetric  # noqa: E402

import geomstats_pullback as gp  # noqa: E402
from geomstats_pullback import analytic  # noqa: E402
from geomstats_pullback.integrators import RK8Integrator  # noqa: E402
from geomstats_pullback.reference import StockPullbackSpace  # noqa: E402

LADDER_EXPS, LADDER_LOGS = 4, 3  # pole ladder, one rung


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=256, help="vectors / planes")
    parser.add_argument("--n-stock", type=int, default=2, help="vectors / planes timed on the stock metric")
    parser.add_argument("--stock-ladder", type=int, default=0, help="run the real stock ladder on this many vectors")
    parser.add_argument("--repeats", type=int, default=3)
    add_out_option(parser)
    args = parser.parse_args()
    with recorded(__file__, args.out):
        threads = single_thread()

        net = analytic.random_mlp((2, 64, 64, 784), seed=0)
        space = gp.DecoderManifold(net, latent_dim=2)
        metric = space.metric
        stock = StockPullbackSpace(net, latent_dim=2)
        gs.random.seed(0)
        n, k = args.n, args.n_stock
        base = space.random_point(n)
        direction = gs.random.normal(size=(n, 2))
        direction = direction / metric.norm(direction, base)[:, None] * gs.random.rand(n, 1)  # |v|_G <= 1
        vec = gs.random.normal(size=(n, 2))
        other = gs.random.normal(size=(n, 2))

        t_pass = decoder_pass_time(net, base)
        print(f"threads: {threads}; decoder 2-64-64-784 tanh float64; {n} vectors / planes")
        print(f"decoder forward+backward on {n} points (lower bound unit): {t_pass * 1e3:.2f} ms")

        # ---------------------------------------------------------------- transport
        t_ours, ours = best_of(lambda: metric.parallel_transport(vec, base, direction=direction), args.repeats)
        reference = gp.DecoderManifold(net, latent_dim=2)
        reference.metric.exp_solver.integrator = RK8Integrator(n_steps=8 * metric.exp_solver.integrator.n_steps)
        err = (ours - reference.metric.parallel_transport(vec, base, direction=direction)).norm(dim=-1).max().item()
        pair = metric.parallel_transport(gs.stack([vec, other]), base, direction=direction)
        end = metric.exp(direction, base)
        drift = (metric.inner_product(pair[0], pair[1], end) - metric.inner_product(vec, other, base)).abs().max().item()
        per_ours = t_ours / n
        print(f"ours  parallel_transport, batch of {n}: {t_ours:.3f} s = {per_ours * 1e3:.2f} ms/vector "
              f"= {t_ours / t_pass:.0f} decoder passes; max error {err:.1e} (vs 8x steps), inner-product drift {drift:.1e}")

        state = gs.stack([base[:k], direction[:k]], axis=-2)
        t_force, _ = best_of(lambda: stock.metric.geodesic_equation(state), args.repeats)
        n_euler = stock.metric.exp_solver.integrator.n_steps
        per_stock_exp = n_euler * t_force / k
        per_stock = (LADDER_EXPS + LADDER_LOGS) * per_stock_exp
        print(f"stock geodesic equation on {k} states: {t_force:.3f} s -> stock exp (Euler {n_euler}) "
              f"~{per_stock_exp:.1f} s/vector (extrapolated)")
        print(f"stock ladder_parallel_transport (pole, 1 rung): >= {LADDER_EXPS} exp + {LADDER_LOGS} log "
              f">= {per_stock:.0f} s/vector (extrapolated lower bound: each log counted as one exp)")
        if args.stock_ladder:
            m = args.stock_ladder
            t_ladder, _ = best_of(
                lambda: [stock.metric.ladder_parallel_transport(vec[i], base[i], direction[i]) for i in range(m)], 1
            )
            per_stock = t_ladder / m
            print(f"stock ladder_parallel_transport, run on {m} vectors: {per_stock:.0f} s/vector (measured)")
        ratio = per_stock / per_ours
        print(f"transport speed-up per vector: {ratio:.0f}x (target >= 100x: {'met' if ratio >= 100 else 'NOT met'})")

        # ---------------------------------------------------------------- curvature
        t_sec, _ = best_of(lambda: metric.sectional_curvature(vec, other, base), args.repeats)
        print(f"ours  sectional_curvature, {n} planes: {t_sec * 1e3:.1f} ms = {t_sec / n * 1e6:.0f} us/plane "
              f"= {t_sec / t_pass:.0f} decoder passes")
        t_stock_sec, _ = best_of(
            lambda: RiemannianMetric.sectional_curvature(stock.metric, vec[:k], other[:k], base[:k]), 1
        )
        per_stock_sec = t_stock_sec / k
        print(f"stock generic sectional_curvature, {k} planes timed: {per_stock_sec:.2f} s/plane (extrapolated per plane)")
        ratio = per_stock_sec / (t_sec / n)
        print(f"curvature speed-up per plane: {ratio:.0f}x (target >= 100x: {'met' if ratio >= 100 else 'NOT met'})")


if __name__ == "__main__":
    main()
