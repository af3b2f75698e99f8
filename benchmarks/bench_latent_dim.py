"""Cost per pair of ``dist`` and ``exp`` as the latent dimension grows, in seconds and in decoder passes.

Decoders (seeded): the tanh MLP family ``d -> 64 -> 64 -> 784`` for ``d``
in ``--dims`` (2, 8, 32, 64; ``_georce_models.mlp_family``), and GEORCE's two
conv decoders from :mod:`geomstats_pullback.analytic` (``mnist8``:
``mnist_conv_decoder(8)``, 8-D to 28 x 28; ``celeba32``:
``celeba_conv_decoder(32)``, 32-D to 3 x 64 x 64; the architectures of
GEORCE's VAEs, random weights), each in float64 and float32 (``--dtypes``). ``--pairs`` pairs (64) uniform in
``[-1, 1]^d``, one torch thread, best of ``--repeats`` after a warm-up.

Per decoder and dtype:

- ``pass``: the lower-bound unit measured in the same run, one batched
  forward + backward pass of the decoder on ``pairs x n_nodes`` points
  (every node of every path evaluated once; 33 nodes, the log solver's
  default); ``exp pass`` the same on ``pairs`` points;
- ``dist``: ``GeodesicBVPSolver`` with shooting (exact ``log``) and without
  (``shooting=False``, the fourth-order discrete geodesic), seconds per pair
  and that time in ``pass`` units, Newton + shooting iterations;
- ``exp``: ``GeodesicIVPSolver`` (12 eighth-order steps) on the logs just
  computed, seconds per vector and in ``exp pass`` units.

``--compile`` adds a section on the compiled right-hand side
(``GeodesicIVPSolver(compile=True)``, :mod:`geomstats_pullback.compiled`):
per right-hand-side evaluation and per batched ``exp``, eager versus
compiled, on the sphere chart and the 2-D tanh MLP (the compilation, probe
included, is timed apart; a decoder whose compiled code crashes the probe
falls back to eager and is reported so); with stochman installed, also
``dist`` on the sphere chart with the compiled ``exp`` against stochman's
``connecting_geodesic`` (issue 3's target).

Run: ``python benchmarks/bench_latent_dim.py [--quick] [--compile]``.
"""

import argparse
import logging
import os
import sys
import time

os.environ.setdefault("GEOMSTATS_BACKEND", "pytorch")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _georce_models import mlp_family, tanh_mlp  # noqa: E402
from _timing import add_out_option, best_of, decoder_pass_time, recorded, single_thread  # noqa: E402

import geomstats_pullback as gp  # noqa: E402
from geomstats_pullback import analytic, kernels  # noqa: E402
from geomstats_pullback.compiled import compiled_geodesic_rhs  # noqa: E402

DTYPES = {"float64": torch.float64, "float32": torch.float32}


def pairs(latent_dim, n_pairs, seed=0):
    rng = np.random.default_rng(seed)
    return tuple(torch.as_tensor(rng.uniform(-1, 1, size=(n_pairs, latent_dim))) for _ in range(2))


def bench_decoder(name, model, latent_dim, args):
    space = gp.DecoderManifold(model, latent_dim=latent_dim)
    start, end = pairs(latent_dim, args.pairs)
    n = start.shape[0]
    dtype = next(model.parameters()).dtype
    rows = []
    for label, options in (("dist, shooting", {}), ("dist, discrete", {"shooting": False})):
        solver = gp.GeodesicBVPSolver(space, **options)
        solver.solve(end[:2], start[:2])  # warm-up
        seconds, result = best_of(lambda: solver.solve(end, start), args.repeats)
        rows.append((label, seconds, result))
    n_nodes = solver.n_nodes
    t_pass = decoder_pass_time(model, (torch.rand(n * n_nodes, latent_dim, dtype=torch.float64) * 2 - 1).to(dtype))
    t_exp_pass = decoder_pass_time(model, (torch.rand(n, latent_dim, dtype=torch.float64) * 2 - 1).to(dtype))
    exp_solver = gp.GeodesicIVPSolver(space, warn=False)
    logs = rows[0][2].tangent_vec
    exp_solver.solve(logs[:2], start[:2])
    t_exp, _ = best_of(lambda: exp_solver.solve(logs, start), args.repeats)

    lines = []
    for label, seconds, result in rows:
        lines.append(
            f"{name:<10} {str(dtype)[6:]:<8} {latent_dim:>3} {label:<15} {seconds / n * 1e3:10.2f} "
            f"{seconds / t_pass:9.0f} {t_pass * 1e3:9.2f} {int(result.converged.sum()):>4}/{n:<4} {result.n_iter:>5}"
        )
    lines.append(
        f"{name:<10} {str(dtype)[6:]:<8} {latent_dim:>3} {'exp':<15} {t_exp / n * 1e3:10.2f} "
        f"{t_exp / t_exp_pass:9.0f} {t_exp_pass * 1e3:9.2f} {'':>9} {exp_solver.integrator.n_steps:>5}"
    )
    for line in lines:
        print(line, flush=True)


def time_rhs(rhs, state, repeats):
    rhs(state)
    return best_of(lambda: rhs(state), repeats)[0]


def bench_compile(args):
    print("\n== compiled geodesic right-hand side (GeodesicIVPSolver(compile=True)), float64, 64 states")
    handler = logging.StreamHandler(sys.stdout)  # into the recorded table
    handler.setFormatter(logging.Formatter("  [log] %(message)s"))
    log = logging.getLogger("geomstats_pullback.compiled")
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    log.propagate = False
    cases = {"sphere": (analytic.sphere_chart, 2), "mlp": (tanh_mlp(1.0), 2)}
    generator = torch.Generator().manual_seed(0)
    state = torch.stack([0.9 + 1.3 * torch.rand(64, 2, generator=generator, dtype=torch.float64),
                         0.3 * torch.randn(64, 2, generator=generator, dtype=torch.float64)], dim=1)  # clear of the poles
    spaces = {name: gp.DecoderManifold(decoder, latent_dim=dim) for name, (decoder, dim) in cases.items()}
    for name, space in spaces.items():
        eager_solver = gp.GeodesicIVPSolver(space, warn=False)
        compiled_solver = gp.GeodesicIVPSolver(space, warn=False, compile=True)
        metric_decoder = space.metric.decoder
        t_eager_rhs = time_rhs(lambda s: kernels.geodesic_rhs(metric_decoder, s), state, args.repeats * 5)
        begin = time.perf_counter()
        compiled_solver.solve(state[:, 1], state[:, 0])  # probe + compilation
        t_compile = time.perf_counter() - begin
        rhs = compiled_geodesic_rhs(metric_decoder)
        t_eager_exp, eager_end = best_of(lambda: eager_solver.solve(state[:, 1], state[:, 0]), args.repeats)
        t_comp_exp, comp_end = best_of(lambda: compiled_solver.solve(state[:, 1], state[:, 0]), args.repeats)
        if rhs is None:
            print(f"{name}: compilation not used (see the log above); compile call {t_compile:.1f} s; "
                  f"eager rhs {t_eager_rhs * 1e3:.3f} ms, exp {t_eager_exp * 1e3:.1f} ms (both eager)")
            continue
        t_comp_rhs = time_rhs(rhs, state, args.repeats * 5)
        agree = float((comp_end.end_point - eager_end.end_point).abs().max())
        print(
            f"{name}: compile (probe + compilation) {t_compile:.1f} s; rhs eager {t_eager_rhs * 1e3:.3f} ms, "
            f"compiled {t_comp_rhs * 1e3:.3f} ms ({t_eager_rhs / t_comp_rhs:.1f}x); exp of 64 vectors eager "
            f"{t_eager_exp * 1e3:.1f} ms, compiled {t_comp_exp * 1e3:.1f} ms ({t_eager_exp / t_comp_exp:.1f}x); "
            f"max |end point difference| {agree:.1e}"
        )
    try:
        from stochman.manifold import EmbeddedManifold
    except ImportError:
        print("stochman not installed: no comparison with it (pip install -e '.[bench]')")
        return

    class Chart(EmbeddedManifold):
        def embed(self, points, jacobian=False):
            return analytic.sphere_chart(points)

    rng = np.random.default_rng(0)
    a, b = (torch.as_tensor(np.stack([rng.uniform(0.9, 2.2, 64), rng.uniform(-1, 1, 64)], -1)) for _ in range(2))
    space = spaces["sphere"]  # its compiled right-hand side is cached on its decoder
    truth = torch.as_tensor(_great_circle(a, b))
    for label, compile_flag in (("eager", False), ("compiled", True)):
        space.metric.exp_solver = gp.GeodesicIVPSolver(space, compile=compile_flag)
        space.metric.dist(a, b)  # warm-up: compiles every batch-size bucket the timed calls use
        seconds, dist = best_of(lambda: space.metric.dist(a, b), args.repeats)
        print(f"sphere dist, ours ({label} exp): {seconds / 64 * 1e3:.2f} ms/pair, max error {float((dist - truth).abs().max()):.1e}")
        if label == "eager":
            t_eager = seconds
    chart = Chart()
    chart.connecting_geodesic(a[:2], b[:2])
    t_sm, (curve, _) = best_of(lambda: chart.connecting_geodesic(a, b), args.repeats)
    with torch.no_grad():
        sm_len = chart.curve_length(curve(torch.linspace(0, 1, 1000, dtype=a.dtype)))
    print(
        f"sphere dist, stochman 0.3.0: {t_sm / 64 * 1e3:.2f} ms/pair, max error {float((sm_len - truth).abs().max()):.1e}; "
        f"stochman / ours: eager {t_sm / t_eager:.2f}x, compiled {t_sm / seconds:.2f}x"
    )


def _great_circle(a, b):
    def extrinsic(z):
        return analytic.sphere_chart(z)

    cos = (extrinsic(a) * extrinsic(b)).sum(-1).clamp(-1, 1)
    return torch.arccos(cos)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dims", default="2,8,32,64")
    parser.add_argument("--dtypes", default="float64,float32")
    parser.add_argument("--conv", default="mnist8,celeba32", help="conv decoders to add ('' for none)")
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="add the compiled right-hand side section")
    parser.add_argument("--quick", action="store_true", help="d = 2, 8, mnist8, 8 pairs, 1 repeat")
    add_out_option(parser)
    args = parser.parse_args()
    if args.quick:
        args.dims, args.conv, args.pairs, args.repeats = "2,8", "mnist8", 8, 1
    threads = single_thread()
    with recorded(__file__, args.out):
        print(f"torch threads: {threads}; {args.pairs} pairs uniform in [-1, 1]^d; best of {args.repeats}")
        print(
            f"{'decoder':<10} {'dtype':<8} {'d':>3} {'solve':<15} {'ms/pair':>10} {'passes':>9} {'pass ms':>9} "
            f"{'converged':>9} {'iter':>5}"
        )
        conv = {"mnist8": (analytic.mnist_conv_decoder, 8), "celeba32": (analytic.celeba_conv_decoder, 32)}
        for dtype_name in args.dtypes.split(","):
            dtype = DTYPES[dtype_name]
            for dim in (int(x) for x in args.dims.split(",") if x):
                bench_decoder(f"mlp-{dim}", mlp_family(dim, dtype=dtype), dim, args)
            for name in (x for x in args.conv.split(",") if x):
                build, dim = conv[name]
                bench_decoder(name, build(dim, dtype=dtype), dim, args)
        print(
            "passes: time / one batched forward+backward of the decoder on pairs x 33 points (dist) or on pairs "
            "points (exp, 'iter' = its steps); iter: Newton + shooting iterations"
        )
        if args.compile:
            bench_compile(args)


if __name__ == "__main__":
    main()
