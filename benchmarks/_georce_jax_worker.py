"""JAX side of ``bench_georce.py``: run GEORCE on exported decoders (not part of the package).

Runs in a separate Python environment with JAX installed; imports GEORCE
from ``--georce-dir`` (a local copy of FrederikMR/georce's ``georce/``
package; nothing of it lives in this repository). The decoder is rebuilt
from the ``.npz`` written by ``_georce_models.save_npz`` with the small JAX
forward pass below (Linear, tanh, exact GELU, ConvTranspose2d with torch's
conventions, eval-mode BatchNorm as an affine map).

The metric given to GEORCE is ``G(z) = J^T J`` with ``J = jacfwd(f)(z)``, as
in GEORCE's own ``RiemannianManifold.pull_back_metric``. The solver is
``jax.jit(GEORCE_R(G, T=T, tol=tol))``, compiled once on the first pair
(excluded from the timings); each repeat then solves every pair once,
blocking on each result; the best repeat's total is kept.

Usage: ``python _georce_jax_worker.py MODEL.npz PAIRS.npz OUT.npz --georce-dir DIR --T 100 --tol 1e-4 --repeats 3``;
``PAIRS.npz`` holds ``start [n, d]`` and ``end [n, d]``. Set ``JAX_ENABLE_X64``
and ``XLA_FLAGS`` in the environment before starting it.
"""

import argparse
import sys
import time

import numpy as np


def build_forward(path, jnp, lax, jax_nn):
    """The decoder of ``path`` as ``f(z [d]) -> x [D]``."""
    data = np.load(path)
    layers = []
    for i in range(int(data["n_layers"])):
        kind = next(key.split("_", 2)[1] for key in data.files if key.startswith(f"{i}_") and key.count("_") == 1)
        fields = {key.split("_", 2)[2]: data[key] for key in data.files if key.startswith(f"{i}_{kind}_")}
        layers.append((kind, fields))

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
                x = jax_nn.gelu(x, approximate=False)
            elif kind == "convT":
                weight = jnp.asarray(fields["weight"], dtype=z.dtype)  # torch layout [in, out, k, k]
                k, s, p = weight.shape[-1], int(fields["stride"]), int(fields["padding"])
                kernel = jnp.flip(jnp.transpose(weight, (1, 0, 2, 3)), axis=(2, 3))  # [out, in, k, k]
                x = lax.conv_general_dilated(
                    x, kernel, window_strides=(1, 1), padding=[(k - 1 - p, k - 1 - p)] * 2,
                    lhs_dilation=(s, s), dimension_numbers=("NCHW", "OIHW", "NCHW"),
                )
                if "bias" in fields:
                    x = x + jnp.asarray(fields["bias"], dtype=z.dtype)[None, :, None, None]
            elif kind == "batchnorm":
                scale = jnp.asarray(fields["scale"], dtype=z.dtype)[None, :, None, None]
                shift = jnp.asarray(fields["shift"], dtype=z.dtype)[None, :, None, None]
                x = x * scale + shift
            elif kind == "reshape":
                x = x.reshape((x.shape[0],) + tuple(int(n) for n in fields["shape"]))
            else:
                raise ValueError(f"unknown layer kind {kind!r}")
        return x.reshape(-1)

    return forward


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("pairs")
    parser.add_argument("out")
    parser.add_argument("--georce-dir", required=True)
    parser.add_argument("--T", type=int, default=100)
    parser.add_argument("--tol", type=float, default=1e-4)
    parser.add_argument("--max-iter", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--check", help="npz with z [m, d] and x [m, D]: the torch decoder's outputs to match")
    args = parser.parse_args()

    sys.path.insert(0, args.georce_dir)
    import jax
    import jax.numpy as jnp
    from georce import GEORCE_R
    from jax import lax
    from jax import nn as jax_nn

    dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    forward = build_forward(args.model, jnp, lax, jax_nn)
    if args.check:
        check = np.load(args.check)
        x = np.stack([np.asarray(forward(jnp.asarray(z, dtype=dtype))) for z in check["z"]])
        mismatch = float(np.abs(x - check["x"]).max() / max(np.abs(check["x"]).max(), 1e-300))
        print(f"JAX forward vs torch: max relative difference {mismatch:.1e}", flush=True)

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
