"""Batched geodesic distance: ours versus geomstats' stock pullback metric and stochman.

Two decoders, ``--n-pairs`` pairs each (64 by default):

- ``mlp``: ``analytic.random_mlp()``, a 2 -> 64 -> 64 -> 784 tanh MLP (float64),
  pairs uniform in ``[-1, 1]^2``;
- ``sphere``: ``analytic.sphere_chart`` (spherical angles -> S^2), pairs whose
  great-circle arc stays at polar angle in ``[0.45, pi - 0.45]`` (the chart is
  singular at the poles); ground truth ``Hypersphere(2).metric.dist``.

Contenders, all on one torch thread:

- ours: ``metric.dist(a, b)``, one batched call for all pairs (best of
  ``--repeats``, after a warm-up call); also its discrete stage alone
  (``GeodesicBVPSolver(shooting=False)``: no ``exp`` call, ``O(1/N^2)`` error);
- stock: geomstats' own ``PullbackMetric`` (``reference.StockPullbackSpace``),
  whose ``dist`` does not gain from batching: ``--n-stock`` pairs are timed in
  a child process and the time is extrapolated per pair. A run that exceeds
  ``--stock-timeout`` seconds is stopped and reported as a lower bound;
- stochman 0.3.0: ``EmbeddedManifold.connecting_geodesic`` (cubic spline,
  Adam on the curve energy, its defaults), batched over all pairs, plus the
  length of the returned curve sampled at 1000 points; timed like ours (best
  of ``--repeats`` after a warm-up call: its first call is 2-4x slower).

Also printed: one batched decoder forward + backward on ``n_pairs * n_nodes``
points (the lower bound of any path-based solver: every node of every path
evaluated once), and our time in those units.

Run: ``python benchmarks/bench_log.py [--n-pairs 64] [--n-stock 2] [--stock-timeout 1800]``.
"""

import argparse
import multiprocessing
import os
import time

os.environ.setdefault("GEOMSTATS_BACKEND", "pytorch")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _timing import add_out_option, best_of, decoder_pass_time, recorded, single_thread  # noqa: E402
from geomstats.geometry.hypersphere import Hypersphere  # noqa: E402
from stochman.manifold import EmbeddedManifold  # noqa: E402

import geomstats_pullback as gp  # noqa: E402
from geomstats_pullback import analytic  # noqa: E402
from geomstats_pullback.reference import StockPullbackSpace  # noqa: E402


class _StochmanDecoder(EmbeddedManifold):
    """A decoder as a stochman embedded manifold (curve energy through ``embed``)."""

    def __init__(self, decoder):
        self.decoder = decoder

    def embed(self, points, jacobian=False):
        return self.decoder(points)


def mlp_pairs(n_pairs, seed=0):
    """Pairs uniform in ``[-1, 1]^2``: ``([n, 2], [n, 2])``."""
    rng = np.random.default_rng(seed)
    return tuple(torch.as_tensor(rng.uniform(-1, 1, size=(n_pairs, 2))) for _ in range(2))


def sphere_pairs(n_pairs, seed=0, min_polar=0.45):
    """Spherical-angle pairs whose great-circle arc keeps away from the poles."""
    sphere = Hypersphere(2)
    rng = np.random.default_rng(seed)
    kept_a, kept_b, count = [], [], 0
    while count < n_pairs:
        a, b = (
            torch.as_tensor(np.stack([rng.uniform(0.6, 2.5, 4 * n_pairs), rng.uniform(-2, 2, 4 * n_pairs)], -1))
            for _ in range(2)
        )
        arc = sphere.metric.geodesic(sphere.spherical_to_extrinsic(a), end_point=sphere.spherical_to_extrinsic(b))
        keep = arc(torch.linspace(0, 1, 64))[..., 2].abs().amax(-1) < np.cos(min_polar)
        kept_a.append(a[keep])
        kept_b.append(b[keep])
        count += int(keep.sum())
    return torch.cat(kept_a)[:n_pairs], torch.cat(kept_b)[:n_pairs]


def great_circle(a, b):
    sphere = Hypersphere(2)
    return sphere.metric.dist(sphere.spherical_to_extrinsic(a), sphere.spherical_to_extrinsic(b))


def _stock_child(decoder, a, b, queue):
    torch.set_num_threads(1)
    stock = StockPullbackSpace(decoder, latent_dim=2)
    start = time.perf_counter()
    dist = stock.metric.dist(a, b)
    queue.put((time.perf_counter() - start, dist.detach().numpy()))


def time_stock(decoder, a, b, timeout):
    """Wall time and distances of the stock metric on a few pairs, or ``(None, None)`` past ``timeout``."""
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_stock_child, args=(decoder, a, b, queue))
    child.start()
    try:
        seconds, dist = queue.get(timeout=timeout)
    except Exception:  # queue.Empty on timeout
        seconds, dist = None, None
    child.join(timeout=1)
    if child.is_alive():
        child.kill()
        child.join()
    return seconds, dist


def run_stochman(decoder, a, b):
    """stochman's batched ``connecting_geodesic`` and the lengths of its curves: ``(lengths, success)``."""
    manifold = _StochmanDecoder(decoder)
    curve, success = manifold.connecting_geodesic(a, b)
    with torch.no_grad():
        lengths = manifold.curve_length(curve(torch.linspace(0, 1, 1000, dtype=a.dtype)))
    return lengths.detach(), bool(success)


def bench(name, decoder, a, b, truth, args):
    space = gp.DecoderManifold(decoder, latent_dim=2)
    metric = space.metric
    n_pairs = a.shape[0]
    metric.dist(a[:2], b[:2])  # warm-up (torch.func's first call)
    t_ours, dist = best_of(lambda: metric.dist(a, b), args.repeats)
    result = metric.log_solver.result_
    n_nodes = metric.log_solver.n_nodes
    module = decoder if isinstance(decoder, torch.nn.Module) else (lambda z: decoder(z))
    t_pass = decoder_pass_time(module, torch.rand(n_pairs * n_nodes, 2, dtype=torch.float64) + 0.5)

    discrete = gp.GeodesicBVPSolver(space, shooting=False)
    t_discrete, discrete_result = best_of(lambda: discrete.solve(b, a), args.repeats)
    discrete_dist = metric.norm(discrete_result.tangent_vec, a)

    t_stock, stock_dist = time_stock(decoder, a[: args.n_stock], b[: args.n_stock], args.stock_timeout)
    run_stochman(decoder, a[:2], b[:2])  # warm-up: its first call costs seconds more
    t_sm, (sm_len, sm_success) = best_of(lambda: run_stochman(decoder, a, b), args.repeats)

    per_ours = t_ours / n_pairs
    print(f"\n== {name}: {n_pairs} pairs")
    print(
        f"decoder forward+backward on {n_pairs} x {n_nodes} = {n_pairs * n_nodes} points "
        f"(lower-bound unit): {t_pass * 1e3:.2f} ms"
    )
    print(
        f"ours     {t_ours:.3f} s batched = {per_ours * 1e3:.2f} ms/pair = {t_ours / t_pass:.0f} decoder passes; "
        f"converged {int(result.converged.sum())}/{n_pairs}, {result.n_iter} iterations, "
        f"{result.n_exp} batched exp calls"
    )
    print(
        f"ours, discrete stage only (shooting=False): {t_discrete:.3f} s = {t_discrete / n_pairs * 1e3:.2f} ms/pair "
        f"= {t_discrete / t_pass:.0f} decoder passes ({t_discrete / t_ours:.0%} of the full solve)"
    )
    if t_stock is None:
        print(
            f"stock    did not finish {args.n_stock} pairs within {args.stock_timeout:.0f} s: "
            f"> {args.stock_timeout / args.n_stock:.0f} s/pair (lower bound, extrapolated)"
        )
        per_stock = args.stock_timeout / args.n_stock
    else:
        per_stock = t_stock / args.n_stock
        print(f"stock    {args.n_stock} pairs timed, extrapolated per pair: {per_stock:.2f} s/pair")
    print(
        f"stochman {t_sm:.3f} s batched = {t_sm / n_pairs * 1e3:.2f} ms/pair = {t_sm / t_pass:.0f} decoder passes "
        f"(its convergence flag: {sm_success})"
    )
    ratio_stock, ratio_sm = per_stock / per_ours, t_sm / t_ours
    bound = ">= " if t_stock is None else ""
    print(
        f"speed-up: {bound}{ratio_stock:.0f}x vs stock (target >= 100x: {'met' if ratio_stock >= 100 else 'NOT met'}), "
        f"{ratio_sm:.1f}x vs stochman (target >= 3x: {'met' if ratio_sm >= 3 else 'NOT met'}); "
        f"discrete stage only: {t_sm / t_discrete:.1f}x vs stochman"
    )
    if truth is not None:
        rel_ours = float(((dist - truth).abs() / truth).max())
        rel_sm = float(((sm_len - truth).abs() / truth).max())
        rel_discrete = float(((discrete_dist - truth).abs() / truth).max())
        line = f"sphere accuracy (max relative error vs great circle): ours {rel_ours:.1e} (target <= 1e-6: "
        line += f"{'met' if rel_ours <= 1e-6 else 'NOT met'}), discrete stage only {rel_discrete:.1e}, "
        line += f"stochman {rel_sm:.1e}"
        if stock_dist is not None:
            k = args.n_stock
            line += f", stock {float(np.max(np.abs(stock_dist - truth[:k].numpy()) / truth[:k].numpy())):.1e}"
        print(line)
    else:
        excess = (sm_len - dist) / dist
        print(
            f"stochman curve length / our distance - 1: median {float(excess.median()):.1e}, "
            f"min {float(excess.min()):.1e} (a curve is never shorter than the geodesic; "
            f"below 0 only within our tolerance {metric.log_solver.tol_:g})"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-pairs", type=int, default=64)
    parser.add_argument("--n-stock", type=int, default=2, help="pairs timed on the stock metric")
    parser.add_argument("--stock-timeout", type=float, default=1800.0, help="seconds allowed to the stock metric")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", choices=["mlp", "sphere"], help="run one decoder")
    add_out_option(parser)
    args = parser.parse_args()
    with recorded(__file__, args.out):
        threads = single_thread()
        print(f"threads: {threads}; float64; times are wall-clock, best of {args.repeats} for ours")
        if args.only in (None, "sphere"):
            a, b = sphere_pairs(args.n_pairs)
            bench("sphere chart", analytic.sphere_chart, a, b, great_circle(a, b), args)
        if args.only in (None, "mlp"):
            a, b = mlp_pairs(args.n_pairs)
            bench("MLP 2-64-64-784 tanh", analytic.random_mlp(), a, b, None, args)


if __name__ == "__main__":
    main()
