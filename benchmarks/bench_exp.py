"""Batched ``exp`` on a learned-like decoder: ours versus geomstats' stock pullback metric.

Decoder: 2 -> 64 -> 64 -> 784 tanh MLP (float64, fixed random weights).
Ours: 1024 tangent vectors in one batched call. Stock: geomstats' own
``PullbackMetric`` on an ``ImmersedSet`` with the same decoder and its default
solver (explicit Euler, 100 steps); it is timed on a small batch and
extrapolated per vector (it does not gain from batching). Accuracy of both is
measured against our solver run with 8x the steps (a converged reference).
The cost of the error estimate: the same batch through the same eighth-order
steps without it (a plain ``ExplicitRKIntegrator`` with DOP853's tableau), and
through adaptive steps (``adaptive=True``, default ``rtol``).

Run: ``./dev bench bench_exp.py [--n-vectors 1024] [--n-stock 4]``.
"""

import argparse
import os

os.environ.setdefault("GEOMSTATS_BACKEND", "pytorch")

import geomstats.backend as gs  # noqa: E402
from _timing import add_out_option, best_of, decoder_pass_time, recorded, single_thread  # noqa: E402

import geomstats_pullback as gp  # noqa: E402
from geomstats_pullback import analytic  # noqa: E402
from geomstats_pullback.geodesics import GeodesicIVPSolver  # noqa: E402
from geomstats_pullback.integrators import ExplicitRKIntegrator, RK8Integrator  # noqa: E402
from geomstats_pullback.reference import StockPullbackSpace  # noqa: E402


class _RK8WithoutEstimate(ExplicitRKIntegrator):
    """The default steps without the embedded error estimate: the cost before error control."""

    tableau = RK8Integrator.tableau


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-vectors", type=int, default=1024)
    parser.add_argument("--n-stock", type=int, default=2, help="vectors timed on the stock metric")
    parser.add_argument("--repeats", type=int, default=3)
    add_out_option(parser)
    args = parser.parse_args()
    with recorded(__file__, args.out):
        threads = single_thread()

        net = analytic.random_mlp((2, 64, 64, 784), seed=0)
        space = gp.DecoderManifold(net, latent_dim=2)
        stock = StockPullbackSpace(net, latent_dim=2)
        gs.random.seed(0)
        base = space.random_point(args.n_vectors)
        vec = gs.random.normal(size=(args.n_vectors, 2))
        vec = vec / space.metric.norm(vec, base)[:, None] * gs.random.rand(args.n_vectors, 1) * 2.0

        t_ours, ours = best_of(lambda: space.metric.exp(vec, base), args.repeats)
        plain = GeodesicIVPSolver(space, integrator=_RK8WithoutEstimate(n_steps=space.metric.exp_solver.integrator.n_steps))
        t_plain, _ = best_of(lambda: plain.exp(vec, base), args.repeats)
        adaptive = GeodesicIVPSolver(space, adaptive=True)
        t_adaptive, adaptive_end = best_of(lambda: adaptive.exp(vec, base), args.repeats)
        n_flagged = int((~space.metric.exp_solver.result_.converged).sum())
        k = args.n_stock
        t_stock, stock_end = best_of(lambda: stock.metric.exp(vec[:k], base[:k]), 1)

        reference = gp.DecoderManifold(net, latent_dim=2)
        reference.metric.exp_solver.integrator = RK8Integrator(n_steps=8 * space.metric.exp_solver.integrator.n_steps)
        ref_end = reference.metric.exp(vec, base)
        err_ours = (ours - ref_end).norm(dim=-1).max().item()
        err_stock = (stock_end - ref_end[:k]).norm(dim=-1).max().item()
        err_adaptive = (adaptive_end - ref_end).norm(dim=-1).max().item()

        t_pass = decoder_pass_time(net, base)
        per_ours, per_stock = t_ours / args.n_vectors, t_stock / k
        print(f"threads: {threads}; decoder 2-64-64-784 tanh float64; {args.n_vectors} vectors, |v|_G <= 2")
        print(f"decoder forward+backward on {args.n_vectors} points (lower bound unit): {t_pass * 1e3:.2f} ms")
        print(f"ours  exp, batch of {args.n_vectors}: {t_ours:.3f} s = {per_ours * 1e6:.1f} us/vector "
              f"= {t_ours / t_pass:.0f} decoder passes; max error {err_ours:.2e}")
        print(f"error estimate: {t_ours / t_plain:.2f}x the time of the same steps without it; "
              f"{n_flagged} of {args.n_vectors} flagged")
        print(f"adaptive exp (rtol 1e-6): {t_adaptive / t_ours:.2f}x the default's time; max error {err_adaptive:.2e}; "
              f"steps per vector {int(adaptive.result_.n_steps.min())}-{int(adaptive.result_.n_steps.max())}")
        print(f"stock exp (Euler 100), {k} vectors timed, extrapolated per vector: {per_stock * 1e3:.1f} ms/vector; "
              f"max error {err_stock:.2e}")
        print(f"speed-up per vector: {per_stock / per_ours:.0f}x (target >= 100x at equal or better accuracy: "
              f"{'met' if per_stock / per_ours >= 100 and err_ours <= err_stock else 'NOT met'})")


if __name__ == "__main__":
    main()
