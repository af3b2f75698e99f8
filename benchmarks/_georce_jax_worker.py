"""JAX side of ``bench_georce.py``: run GEORCE on exported decoders (not part of the package).

Runs in a separate Python environment with JAX installed; imports GEORCE
from ``--georce-dir`` (a local copy of FrederikMR/georce's ``georce/``
package; nothing of it lives in this repository). The decoder is rebuilt
from the ``.npz`` written by ``_georce_models.save_npz`` with the small JAX
forward pass below, layer for layer the torch map: Linear, tanh, GELU (exact
or tanh-approximated, ``jax.nn.gelu(approximate=...)``), ConvTranspose2d
with torch's conventions (``lax.conv_general_dilated`` with the input
dilated by the stride and the flipped kernel), cropped at the exported offset
for ``analytic.SameConvTranspose2d`` (haiku's ``"SAME"`` transposed
convolution, as in GEORCE's models), channels-last flattening, reshapes.

``--check CHECK.npz`` (codes ``z [m, d]``, the torch outputs ``x [m, D]``
and the torch Jacobian ``jac [D, d]`` at ``z[0]``) compares the jitted JAX
forward pass and its ``jacfwd`` with them before anything is timed, prints
the largest absolute differences and exits with an error when one exceeds
``--check-tol`` (1e-10, float64) times the largest torch value: the two sides
then solve for the same metric. It also checks each cropped transposed
convolution against ``lax.conv_transpose(..., padding="SAME")``, the call
behind haiku's ``Conv2DTranspose``. ``--check-only`` stops there (GEORCE is
not imported).

The metric given to GEORCE is ``G(z) = J^T J`` with ``J = jacfwd(f)(z)``, as
in GEORCE's own ``RiemannianManifold.pull_back_metric``. The solver is
``jax.jit(GEORCE_R(G, T=T, tol=tol))``, compiled once on the first pair
(excluded from the timings); each repeat then solves every pair once,
blocking on each result; the best repeat's total is kept.

Usage: ``python _georce_jax_worker.py MODEL.npz PAIRS.npz OUT.npz --georce-dir DIR --T 100 --tol 1e-4 --repeats 3 --check CHECK.npz``;
``PAIRS.npz`` holds ``start [n, d]`` and ``end [n, d]``. Set ``JAX_ENABLE_X64``
and ``XLA_FLAGS`` in the environment before starting it.
"""

import argparse
import sys
import time

import numpy as np


def load_layers(path):
    """The ``(kind, fields)`` list written by ``_georce_models.save_npz``."""
    data = np.load(path)
    layers = []
    for i in range(int(data["n_layers"])):
        prefix = f"layer{i}."
        fields = {key[len(prefix):]: data[key] for key in data.files if key.startswith(prefix)}
        layers.append((str(data[f"layer{i}"]), fields))
    return layers


def build_forward(layers, jnp, lax, jax_nn):
    """The decoder of ``layers`` (see :func:`load_layers`) as ``f(z [d]) -> x [D]``."""

    def forward(z):
        x = z[None]
        for kind, fields in layers:
            if kind == "linear":
                x = x @ jnp.asarray(fields["weight"], dtype=z.dtype).T
                if "bias" in fields:
                    x = x + jnp.asarray(fields["bias"], dtype=z.dtype)
            elif kind == "tanh":
                x = jnp.tanh(x)
            elif kind == "gelu":
                x = jax_nn.gelu(x, approximate=bool(fields["approximate"]))
            elif kind == "convT":
                weight = jnp.asarray(fields["weight"], dtype=z.dtype)  # torch layout [in, out, k, k]
                k, s, p = weight.shape[-1], int(fields["stride"]), int(fields["padding"])
                kernel = jnp.flip(jnp.transpose(weight, (1, 0, 2, 3)), axis=(2, 3))  # [out, in, k, k]
                height, width = x.shape[-2], x.shape[-1]
                x = lax.conv_general_dilated(  # [1, out, (H - 1) s + k - 2p, (W - 1) s + k - 2p]
                    x, kernel, window_strides=(1, 1), padding=[(k - 1 - p, k - 1 - p)] * 2,
                    lhs_dilation=(s, s), dimension_numbers=("NCHW", "OIHW", "NCHW"),
                )
                if "crop" in fields:  # haiku's "SAME": [1, out, s H, s W]
                    c = int(fields["crop"])
                    x = x[..., c : c + s * height, c : c + s * width]
                if "bias" in fields:
                    x = x + jnp.asarray(fields["bias"], dtype=z.dtype)[None, :, None, None]
            elif kind == "channels_last":
                x = jnp.transpose(x, (0, 2, 3, 1)).reshape(x.shape[0], -1)
            elif kind == "reshape":
                x = x.reshape((x.shape[0],) + tuple(int(n) for n in fields["shape"]))
            else:
                raise ValueError(f"unknown layer kind {kind!r}")
        return x.reshape(-1)

    return forward


def check_forward(forward, path, dtype, tol, jax):
    """Compare the JAX forward pass and Jacobian with the torch ones in ``path``; exit on a mismatch.

    The largest absolute differences must be at most ``tol`` times the
    largest absolute torch value (of the outputs, of the Jacobian).
    """
    check = np.load(path)
    jitted = jax.jit(forward)
    x = np.stack([np.asarray(jitted(jax.numpy.asarray(z, dtype=dtype))) for z in check["z"]])
    jac = np.asarray(jax.jit(jax.jacfwd(forward))(jax.numpy.asarray(check["z"][0], dtype=dtype)))
    if x.shape != check["x"].shape or jac.shape != check["jac"].shape:
        sys.exit(f"JAX forward pass shapes {x.shape}, {jac.shape} differ from torch's {check['x'].shape}, {check['jac'].shape}")
    x_scale, jac_scale = float(np.abs(check["x"]).max()), float(np.abs(check["jac"]).max())
    x_err, jac_err = float(np.abs(x - check["x"]).max()), float(np.abs(jac - check["jac"]).max())
    print(
        f"JAX forward vs torch on {x.shape[0]} codes: max |dx| {x_err:.1e} (max |x| {x_scale:.2g}), "
        f"max |dJ| {jac_err:.1e} (max |J| {jac_scale:.2g})",
        flush=True,
    )
    if not (x_err <= tol * x_scale and jac_err <= tol * jac_scale):
        sys.exit(f"JAX forward pass differs from the torch decoder by more than {tol:g} relative: "
                 f"|dx| {x_err:.3e}, |dJ| {jac_err:.3e}")


def check_same_padding(layers, dtype, tol, jnp, lax):
    """Each cropped transposed convolution equals ``lax.conv_transpose(..., padding="SAME")`` (haiku's); exit if not."""
    rng = np.random.default_rng(0)
    cropped = [fields for kind, fields in layers if kind == "convT" and "crop" in fields]
    if not cropped:
        return
    worst = 0.0
    for fields in cropped:
        weight = jnp.asarray(fields["weight"], dtype=dtype)  # [in, out, k, k]
        s, c = int(fields["stride"]), int(fields["crop"])
        kernel = jnp.flip(jnp.transpose(weight, (1, 0, 2, 3)), axis=(2, 3))  # [out, in, k, k]
        for side in (1, 2, 5):
            x = jnp.asarray(rng.standard_normal((1, weight.shape[0], side, side)), dtype=dtype)
            numbers = ("NCHW", "OIHW", "NCHW")
            full = lax.conv_transpose(x, kernel, (s, s), "VALID", dimension_numbers=numbers)
            same = lax.conv_transpose(x, kernel, (s, s), "SAME", dimension_numbers=numbers)
            ours = full[..., c : c + s * side, c : c + s * side]
            if ours.shape != same.shape:
                sys.exit(f"cropped transposed convolution {ours.shape} differs in shape from SAME {same.shape}")
            worst = max(worst, float(jnp.abs(ours - same).max() / jnp.abs(same).max()))
    print(f"{len(cropped)} cropped transposed convolutions vs lax.conv_transpose(padding='SAME'): max relative difference {worst:.1e}")
    if worst > tol:
        sys.exit(f"a cropped transposed convolution is not JAX's SAME one: {worst:.3e} > {tol:g}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("pairs", nargs="?")
    parser.add_argument("out", nargs="?")
    parser.add_argument("--georce-dir")
    parser.add_argument("--T", type=int, default=100)
    parser.add_argument("--tol", type=float, default=1e-4)
    parser.add_argument("--max-iter", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--check", help="npz with z [m, d], x [m, D], jac [D, d]: the torch decoder's values to match")
    parser.add_argument("--check-tol", type=float, default=1e-10, help="largest difference allowed, relative to the largest torch value")
    parser.add_argument("--check-only", action="store_true", help="compare with --check, then exit")
    args = parser.parse_args()
    if args.check_only and not args.check:
        parser.error("--check-only needs --check")
    if not args.check_only and not (args.pairs and args.out and args.georce_dir):
        parser.error("PAIRS, OUT and --georce-dir are needed unless --check-only")

    import jax
    import jax.numpy as jnp
    from jax import lax
    from jax import nn as jax_nn

    dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    layers = load_layers(args.model)
    forward = build_forward(layers, jnp, lax, jax_nn)
    if args.check:
        check_forward(forward, args.check, dtype, args.check_tol, jax)
        check_same_padding(layers, dtype, args.check_tol, jnp, lax)
    if args.check_only:
        return

    sys.path.insert(0, args.georce_dir)
    from georce import GEORCE_R

    def metric_matrix(z):
        jac = jax.jacfwd(forward)(z)  # [D, d]
        return jac.T @ jac

    solver = jax.jit(GEORCE_R(G=metric_matrix, T=args.T, tol=args.tol, max_iter=args.max_iter))
    pairs = np.load(args.pairs)
    start = jnp.asarray(pairs["start"], dtype=dtype)
    end = jnp.asarray(pairs["end"], dtype=dtype)
    compile_start = time.perf_counter()
    solver(start[0], end[0]).block_until_ready()
    compile_seconds = time.perf_counter() - compile_start

    best, curves = float("inf"), None
    for _ in range(args.repeats):
        results = []
        begin = time.perf_counter()
        for a, b in zip(start, end):
            results.append(solver(a, b).block_until_ready())
        best = min(best, time.perf_counter() - begin)
        curves = results
    np.savez(
        args.out, curves=np.stack([np.asarray(c) for c in curves]), seconds=np.array(best),
        compile_seconds=np.array(compile_seconds), jax_version=np.array(jax.__version__),
        dtype=np.array(str(np.dtype(dtype))),
    )


if __name__ == "__main__":
    main()
