"""Geodesic distances side by side with GEORCE (Rygaard & Hauberg 2025), same decoders, same pairs.

GEORCE is a JAX solver that is not on PyPI. Give a local copy of its
``georce/`` package (``georce_riemannian.py``, ``backtracking.py`` and their
imports, from github.com/FrederikMR/georce) with ``--georce-dir`` and a
Python with JAX with ``--jax-python``; without them the script says so and
exits. Nothing of GEORCE is imported into this process: it runs in a child
process (``_georce_jax_worker.py``).

Decoders (seeded weights, float64):

- ``mlp``, ``mlp-x2``, ``mlp-x4``: the 2 -> 64 -> 64 -> 784 tanh MLP
  (``_georce_models.tanh_mlp``, first layer's weights times 1, 2, 4);
  ``--mlp-pairs`` pairs uniform in ``[-1, 1]^2``;
- ``mnist8``: ``analytic.mnist_conv_decoder(8)``, the architecture of
  GEORCE's MNIST VAE decoder; 100 codes from N(0, I), all their 4,950 pairs
  (``--pairs N``: a seeded subsample of N of them);
- ``celeba32``: ``analytic.celeba_conv_decoder(32)``, that of GEORCE's
  CelebA VAE decoder; ``--celeba-pairs`` pairs of codes from N(0, I).

``--models`` picks among them. The conv decoders are exactly GEORCE's
architectures (tanh-approximated GELU, haiku's ``"SAME"`` transposed
convolutions, channels-last flattening) with random He-uniform weights, not
its trained ones. GEORCE gets the same map: the layers are exported to
``.npz`` (``_georce_models.save_npz``) and rebuilt in JAX by the worker,
which first compares its forward pass and Jacobian with the torch decoder's
on three of the codes and stops the run if they differ by more than 1e-10
(relative), and checks the cropped transposed convolutions against
``lax.conv_transpose(..., padding="SAME")``; the differences are printed
(``[jax]`` lines).

Both sides: one thread (``torch.set_num_threads(1)``; XLA with
``--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1``),
float64 (``JAX_ENABLE_X64``), ``T = --T`` segments (GEORCE's grid; ours
with ``n_nodes = T + 1`` where a grid is compared), best of ``--repeats``
after a warm-up (GEORCE: after its jit compilation, whose time is printed
apart). GEORCE: ``jit(GEORCE_R(G, T, tol))`` per pair (it is not batched),
``G = J^T J`` by ``jacfwd``, its defaults otherwise. Ours: one batched call
for all pairs of a decoder, ``GeodesicBVPSolver`` with shooting (the exact
``log``; default 33 nodes, tolerance 1e-7) and without
(``shooting=False``: the fourth-order discrete geodesic), on GEORCE's grid
(``n_nodes=T + 1``) and on our default one (33 nodes), whose energy is then
compared with GEORCE's on a coarser curve (``--no-shooting`` leaves the
exact solver out: on the conv decoders it costs the most).

Scoring: every returned curve (GEORCE's ``T + 1`` nodes, our discrete
paths) is resampled piecewise-linearly to at least ``--fine`` segments and
scored by ONE evaluator, our torch decoder: length ``sum |f(z_{k+1}) -
f(z_k)|`` and energy ``M sum |f(z_{k+1}) - f(z_k)|^2`` over its ``M``
segments. The curve scored for our shooting solver is its discrete path
(33 nodes, the start of shooting; "(path)"), so its length error is that
path's; its distance, ``|log|_G`` of the shot velocity, is scored in the
last column (all rows: ``|log|_G`` of the returned velocity).
The reference is our discrete solver at ``n_nodes = --reference-nodes``
(1001 by default: T = 1000) scored by the same evaluator; the error is the
relative length error against it, median and max over the pairs.

GEORCE's own timing harness (``runtime.py``) reports the mean of
``timeit.repeat(..., number=5, repeat=5)``: the time of 5 solves per
repeat, not of one. Here every time is per geodesic.

Run: ``python benchmarks/bench_georce.py --georce-dir DIR --jax-python PYTHON``
(add ``--quick`` for a small check: few pairs, 1 repeat, reference on 129
nodes; ``--models mnist8,celeba32`` for the conv decoders only).
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("GEOMSTATS_BACKEND", "pytorch")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _georce_models import save_check, save_npz, tanh_mlp  # noqa: E402
from _timing import add_out_option, best_of, recorded, single_thread  # noqa: E402

import geomstats_pullback as gp  # noqa: E402
from geomstats_pullback import analytic  # noqa: E402

WORKER = Path(__file__).resolve().with_name("_georce_jax_worker.py")
DEFAULT_NODES = 33  # GeodesicBVPSolver's default grid: 32 segments
XLA_ONE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def codes_pairs(latent_dim, n_codes, n_pairs, seed):
    """All pairs of ``n_codes`` codes from N(0, I), or a seeded subsample of ``n_pairs`` of them."""
    rng = np.random.default_rng(seed)
    codes = rng.standard_normal((n_codes, latent_dim))
    i, j = np.triu_indices(n_codes, k=1)
    if n_pairs is not None and n_pairs < i.size:
        keep = np.sort(rng.choice(i.size, size=n_pairs, replace=False))
        i, j = i[keep], j[keep]
    return torch.as_tensor(codes[i]), torch.as_tensor(codes[j])


def random_pairs(latent_dim, n_pairs, seed):
    """``n_pairs`` pairs of codes from N(0, I)."""
    rng = np.random.default_rng(seed)
    return tuple(torch.as_tensor(rng.standard_normal((n_pairs, latent_dim))) for _ in range(2))


def box_pairs(n_pairs, seed):
    """``n_pairs`` pairs uniform in ``[-1, 1]^2``."""
    rng = np.random.default_rng(seed)
    return tuple(torch.as_tensor(rng.uniform(-1, 1, size=(n_pairs, 2))) for _ in range(2))


def score(decoder, curves, fine):
    """Length and energy ``[n]`` of piecewise-linear latent curves ``[n, K, d]``, on >= ``fine`` segments."""
    n, n_nodes, dim = curves.shape
    per_segment = max(1, -(-fine // (n_nodes - 1)))
    s = torch.arange(per_segment, dtype=curves.dtype) / per_segment  # [m]
    lengths, energies = [], []
    with torch.no_grad():
        for curve in curves:
            left, step = curve[:-1], curve[1:] - curve[:-1]  # [K-1, d]
            points = (left[:, None, :] + s[:, None] * step[:, None, :]).reshape(-1, dim)
            points = torch.cat([points, curve[-1:]])  # [(K-1) m + 1, d]
            images = decoder(points.to(next(decoder.parameters()).dtype)).reshape(points.shape[0], -1).double()
            jumps = (images[1:] - images[:-1]).norm(dim=-1)
            lengths.append(jumps.sum())
            energies.append(jumps.shape[0] * (jumps**2).sum())
    return torch.stack(lengths), torch.stack(energies)


def run_georce(args, model, start, end, workdir, name):
    """GEORCE in a JAX child process: ``(seconds per geodesic, curves [n, T+1, d], compile seconds)``."""
    model_path, pairs_path, out_path = (workdir / f"{name}_{kind}.npz" for kind in ("model", "pairs", "out"))
    check_path = workdir / f"{name}_check.npz"
    save_npz(model, model_path)
    np.savez(pairs_path, start=start.numpy(), end=end.numpy())
    save_check(model, torch.cat([start[:2], end[:1]]), check_path)
    env = dict(os.environ, JAX_ENABLE_X64="1", XLA_FLAGS=XLA_ONE_THREAD, JAX_PLATFORMS="cpu")
    command = [
        args.jax_python, str(WORKER), str(model_path), str(pairs_path), str(out_path),
        "--georce-dir", str(args.georce_dir), "--T", str(args.T), "--tol", str(args.tol),
        "--repeats", str(args.repeats), "--check", str(check_path),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"GEORCE worker failed ({done.returncode}):\n{done.stderr[-3000:]}")
    for line in done.stdout.splitlines():
        print(f"  [jax] {line}")
    out = np.load(out_path)
    return float(out["seconds"]) / start.shape[0], torch.as_tensor(out["curves"]), float(out["compile_seconds"])


def run_ours(space, start, end, repeats, **options):
    """Our batched solve: ``(seconds per geodesic, result, distances |log|_G)``."""
    solver = gp.GeodesicBVPSolver(space, **options)
    solver.solve(end[:2], start[:2])  # warm-up
    seconds, result = best_of(lambda: solver.solve(end, start), repeats)
    return seconds / start.shape[0], result, space.metric.norm(result.tangent_vec, start)


def relative(values, reference):
    error = ((values - reference) / reference).abs()
    return float(error.median()), float(error.max())


def bench(name, model, start, end, args, workdir):
    latent_dim, n_pairs = start.shape[1], start.shape[0]
    space = gp.DecoderManifold(model, latent_dim=latent_dim)
    print(f"\n== {name}: d={latent_dim}, {n_pairs} pairs, T={args.T}, GEORCE tol {args.tol:g}")
    reference_nodes = args.celeba_reference_nodes if name == "celeba32" else args.reference_nodes
    reference = gp.GeodesicBVPSolver(space, shooting=False, n_nodes=reference_nodes).solve(end, start)
    ref_length, ref_energy = score(model, reference.path, args.fine)
    print(
        f"reference: our discrete solver, {reference_nodes} nodes, converged "
        f"{int(reference.converged.sum())}/{n_pairs}; median length {float(ref_length.median()):.6g}"
    )

    t_georce, georce_curves, t_compile = run_georce(args, model, start, end, workdir, name)
    rows = [("GEORCE", t_georce, *score(model, georce_curves, args.fine), None)]
    converged = {}
    if not args.no_shooting:
        t_shoot, shot, shot_dist = run_ours(space, start, end, args.repeats)
        rows.append(("ours, shooting (path)", t_shoot, *score(model, shot.path, args.fine), shot_dist))
        converged["shooting"] = shot.converged
    for n_nodes in sorted({args.T + 1, DEFAULT_NODES}, reverse=True):
        t_disc, disc, disc_dist = run_ours(space, start, end, args.repeats, shooting=False, n_nodes=n_nodes)
        rows.append((f"ours, discrete T={n_nodes - 1}", t_disc, *score(model, disc.path, args.fine), disc_dist))
        converged[f"discrete T={n_nodes - 1}"] = disc.converged
    print(f"GEORCE jit compilation (excluded): {t_compile:.2f} s; ours converged: "
          + ", ".join(f"{label} {int(flags.sum())}/{n_pairs}" for label, flags in converged.items()))

    print(
        f"{'solver':<24} {'ms/geodesic':>12} {'GEORCE/ours':>12} {'median length':>14} {'median energy':>14} "
        f"{'len err med':>12} {'len err max':>12} {'E-E_GEORCE<=0':>14} {'|log| err med':>14}"
    )
    georce_energy = rows[0][3]
    for label, seconds, length, energy, dist in rows:
        med, worst = relative(length, ref_length)
        ratio = t_georce / seconds
        not_worse = int(((energy - georce_energy) <= 1e-12 * georce_energy.abs()).sum())
        dist_err = f"{relative(dist, ref_length)[0]:14.1e}" if dist is not None else f"{'-':>14}"
        print(
            f"{label:<24} {seconds * 1e3:12.2f} {ratio:12.2f} {float(length.median()):14.8g} "
            f"{float(energy.median()):14.8g} {med:12.1e} {worst:12.1e} {not_worse:>8}/{n_pairs:<5} {dist_err}"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--georce-dir", type=Path, help="folder holding GEORCE's georce/ package")
    parser.add_argument("--jax-python", default=shutil.which("python3"), help="a Python with jax installed")
    parser.add_argument("--T", type=int, default=100)
    parser.add_argument("--tol", type=float, default=1e-4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=None, help="subsample of the 4,950 mnist8 pairs")
    parser.add_argument("--mlp-pairs", type=int, default=16)
    parser.add_argument("--celeba-pairs", type=int, default=64)
    parser.add_argument("--reference-nodes", type=int, default=1001)
    parser.add_argument(
        "--celeba-reference-nodes", type=int, default=257,
        help="celeba32's reference grid (one path's Jacobian at 1001 nodes would hold 3 GB)",
    )
    parser.add_argument("--fine", type=int, default=1000, help="segments of the shared evaluator, at least")
    parser.add_argument(
        "--models", default="mlp,mlp-x2,mlp-x4,mnist8,celeba32", help="comma-separated decoders to compare (default: all)",
    )
    parser.add_argument("--no-shooting", action="store_true", help="leave out our exact (shooting) solver")
    parser.add_argument("--quick", action="store_true", help="8 pairs (mnist8: 16), 2 CelebA pairs, 1 repeat, reference 129 nodes")
    add_out_option(parser)
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.mlp_pairs, args.celeba_pairs = 1, 8, 2
        args.pairs = args.pairs or 16
        args.reference_nodes = args.celeba_reference_nodes = 129
    if args.georce_dir is None or not (args.georce_dir / "georce" / "georce_riemannian.py").is_file():
        print(
            "bench_georce: skipped. Pass --georce-dir DIR where DIR/georce/georce_riemannian.py and "
            "DIR/georce/backtracking.py are a copy of FrederikMR/georce's solver, and --jax-python "
            "a Python with jax installed (e.g. python3 -m venv /work/jaxenv && /work/jaxenv/bin/pip install jax)."
        )
        return
    if subprocess.run([args.jax_python, "-c", "import jax"], capture_output=True).returncode != 0:
        print(f"bench_georce: skipped: {args.jax_python} cannot import jax (pass --jax-python).")
        return
    threads = single_thread()
    models = {
        "mlp": lambda: (tanh_mlp(1.0), box_pairs(args.mlp_pairs, 0)),
        "mlp-x2": lambda: (tanh_mlp(2.0), box_pairs(args.mlp_pairs, 0)),
        "mlp-x4": lambda: (tanh_mlp(4.0), box_pairs(args.mlp_pairs, 0)),
        "mnist8": lambda: (analytic.mnist_conv_decoder(8), codes_pairs(8, 100, args.pairs, 0)),
        "celeba32": lambda: (analytic.celeba_conv_decoder(32), random_pairs(32, args.celeba_pairs, 0)),
    }
    unknown = [name for name in args.models.split(",") if name not in models]
    if unknown:
        parser.error(f"unknown --models {unknown}; choose among {', '.join(models)}")
    jax_version = subprocess.run([args.jax_python, "-c", "import jax; print(jax.__version__)"], capture_output=True, text=True)
    with recorded(__file__, args.out), tempfile.TemporaryDirectory() as tmp:
        print(f"torch threads: {threads}; jax {jax_version.stdout.strip()} ({XLA_ONE_THREAD}, x64); float64")
        for name in args.models.split(","):
            model, (start, end) = models[name]()
            bench(name, model, start, end, args, Path(tmp))


if __name__ == "__main__":
    sys.exit(main())
