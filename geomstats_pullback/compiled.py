r"""A compiled geodesic right-hand side: ``torch.compile`` with a probed, logged fallback to eager.

Eager evaluation of the geodesic equation ``z'' = -G^{-1} J^T f''[z', z']``
dispatches a few hundred small operations per call; for a cheap decoder that
dispatch, not the arithmetic, is the cost. :func:`geodesic_rhs_function`
writes the same right-hand side as one pure function of the decoder
(:mod:`torch.func`: ``d`` batched forward-mode products for ``J``, a
forward-mode product of one for ``f''[v, v]``, one batched solve), which
``torch.compile`` can trace and fuse into a few kernels.

Compilation can fail, and on some CPU builds of torch the compiled code of
some decoders crashes the process (a segmentation fault, which no ``try``
catches). :func:`compiled_geodesic_rhs` therefore first compiles and runs the
right-hand side in a child process (:func:`probe`) and compares it with the
eager one; only if the child succeeds does it compile in the calling process.
Whatever fails (a decoder that cannot be pickled to the child, a crash, a
timeout, a wrong result, an exception) is logged at WARNING level through
``logging.getLogger("geomstats_pullback.compiled")`` and the caller gets
``None``: the eager kernels are used instead. The outcome is cached per
decoder, so the probe runs once per decoder, dtype and latent dimension in a
process. Batches are padded to a power of two and compiled with static
shapes (one compilation per size bucket; the probe covers the first); if a
later compilation or call fails, the eager kernels take over, logged.

When to use it: long runs of ``exp``, transport-free geodesics and shooting
on one decoder, where a one-off compilation (tens of seconds for the probe
plus as much again in the calling process, less when torch's on-disk
compilation cache already holds the kernels) buys a cheaper evaluation.
``benchmarks/bench_log.py`` and ``benchmarks/bench_latent_dim.py`` measure
both. Only torch decoders are compiled; the rank of ``G`` is not checked
inside the compiled function (callers check it at the ends of each
geodesic), and a decoder returning NaN makes the result NaN instead of
raising.
"""

import logging
import os
import pickle
import re
import subprocess
import sys
import tempfile
import weakref

import torch
from torch.func import jvp, vmap

from geomstats_pullback.kernels import geodesic_rhs

logger = logging.getLogger(__name__)

#: Seconds a probe may take (compilation included) before it counts as failed.
DEFAULT_PROBE_TIMEOUT = 900.0
#: Agreement required between the compiled and the eager right-hand side, by dtype.
PROBE_RTOL = {torch.float32: 1e-4, torch.float64: 1e-9}

_OUTCOMES = weakref.WeakKeyDictionary()  # Decoder -> {(dtype, d, options): callable or None}


def flat_map(decoder):
    """The decoder as a plain function ``[B, d] -> [B, D]`` of native tensors.

    Parameters
    ----------
    decoder : torch.nn.Module or callable
        The user's decoder (``TorchDecoder.decoder``).
    """

    def flat(z):
        return decoder(z).reshape(z.shape[0], -1)

    return flat


def geodesic_rhs_function(flat, *, eps=0.0):
    """The geodesic right-hand side ``state -> (v, -G^{-1} J^T f''[v, v])`` as one pure function.

    Parameters
    ----------
    flat : callable
        ``[B, d] -> [B, D]``, rows independent (:func:`flat_map`).
    eps : float
        Tikhonov term of ``G = J^T J + eps I``.

    Returns
    -------
    rhs : callable
        ``rhs(state)`` for ``state [B, 2, d]`` (positions, velocities) in the
        decoder's dtype and device, returning ``[B, 2, d]``. Cost: ``d + 2``
        forward-mode passes and one ``B x d x d`` solve; no rank check.
    """

    def rhs(state):
        # copies: forward-mode inputs that are views of one tensor break tracing
        position, velocity = state[:, 0].clone(), state[:, 1].clone()
        n_batch, dim = position.shape
        eye = torch.eye(dim, dtype=position.dtype, device=position.device)
        columns = vmap(lambda e: jvp(flat, (position,), (e.expand(n_batch, dim),))[1])(eye)  # [d, B, D]
        jac = columns.permute(1, 2, 0)  # [B, D, d]
        second = jvp(lambda x: jvp(flat, (x,), (velocity,))[1], (position,), (velocity,))[1]  # [B, D]
        gram = jac.transpose(1, 2) @ jac  # [B, d, d]
        if eps:
            gram = gram + eps * eye
        rhs_vec = (jac.transpose(1, 2) @ second[..., None])[..., 0]  # [B, d]
        acceleration = -torch.linalg.solve(gram, rhs_vec)
        return torch.stack([velocity, acceleration], dim=1)

    return rhs


def _probe_state(dim, dtype, device="cpu", n_batch=4, seed=0):
    generator = torch.Generator().manual_seed(seed)  # a host generator: drawn on the host, then moved
    state = 0.5 + torch.rand((n_batch, 2, dim), generator=generator, dtype=torch.float64, device="cpu")
    return state.to(dtype=dtype, device=device)


def probe(user_decoder, dim, dtype, *, eps=0.0, backend="inductor", timeout=DEFAULT_PROBE_TIMEOUT, device="cpu"):
    """Compile and run the right-hand side in a child process; ``None`` if it worked, else why not.

    The child unpickles the decoder, compiles :func:`geodesic_rhs_function`
    with ``torch.compile(backend=backend)``, evaluates it on a seeded state
    ``[4, 2, dim]`` and compares with the eager function (:data:`PROBE_RTOL`).

    Parameters
    ----------
    user_decoder : torch.nn.Module or callable
        Must be picklable (a module whose class, or a function that, is
        importable by name).
    dim : int
    dtype : torch.dtype
    eps : float
    backend : str
    timeout : float
        Seconds.
    device : torch.device or str
        Where the decoder's parameters live (the child runs there).

    Returns
    -------
    failure : str or None
        A sentence saying what failed (for the log), or None.
    """
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "probe.pt")
        try:
            with open(path, "wb") as handle:
                job = {"decoder": user_decoder, "dim": dim, "dtype": dtype, "device": str(device), "eps": eps, "backend": backend}
                pickle.dump(job, handle)
        except Exception as error:  # pickling errors have no common base class
            return f"the decoder cannot be pickled to a probe process ({type(error).__name__}: {error})"
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p), GEOMSTATS_BACKEND="pytorch")
        try:
            done = subprocess.run(
                [sys.executable, "-m", "geomstats_pullback.compiled", path],
                env=env, capture_output=True, text=True, timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            return f"the probe did not finish within {timeout:g} s"
    if done.returncode < 0:
        return f"compiled code crashed the probe process (signal {-done.returncode})"
    if done.returncode != 0:
        return f"the probe failed (exit status {done.returncode}: {_error_line(done.stderr)})"
    return None


def _error_line(stderr):
    """The last line of a child's stderr that names an exception, else its last line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    named = [line for line in lines if re.match(r"^[\w.]+(Error|Exception)\b", line)]
    return (named or lines or ["no message"])[-1]


def compiled_geodesic_rhs(decoder, *, eps=0.0, dim=None, probe_first=True, backend="inductor", timeout=DEFAULT_PROBE_TIMEOUT):
    """A compiled geodesic right-hand side for ``decoder``, or ``None`` (logged) to use the eager one.

    Parameters
    ----------
    decoder : TorchDecoder
        The metric's decoder (``metric.decoder``).
    eps : float
    dim : int, optional
        Latent dimension; default ``decoder.latent_dim``.
    probe_first : bool
        Probe in a child process first (:func:`probe`). Without it the
        decoder is compiled in this process: a crash of the compiled code
        then ends this process.
    backend : str
        ``torch.compile`` backend.
    timeout : float
        Seconds allowed for the probe.

    Returns
    -------
    rhs : callable or None
        ``rhs(state [B, 2, d]) -> [B, 2, d]`` taking and returning tensors of
        the caller's dtype and device (converted to the decoder's and back);
        None where compilation is not available.
    """
    dim = decoder.latent_dim if dim is None else dim
    key = (str(getattr(decoder, "dtype", "")), dim, float(eps), backend, bool(probe_first))
    outcomes = _OUTCOMES.setdefault(decoder, {})
    if key in outcomes:
        return outcomes[key]
    outcomes[key] = rhs = _compile(decoder, eps, dim, probe_first, backend, timeout)
    return rhs


def _compile(decoder, eps, dim, probe_first, backend, timeout):
    user_decoder = getattr(decoder, "decoder", None)
    dtype, device = getattr(decoder, "dtype", None), getattr(decoder, "device", None)
    if user_decoder is None or not isinstance(dtype, torch.dtype):
        logger.warning("compile=True: only torch decoders are compiled; using the eager right-hand side.")
        return None
    if probe_first:
        failure = probe(user_decoder, dim, dtype, eps=eps, backend=backend, timeout=timeout, device=device)
        if failure is not None:
            logger.warning("compile=True: %s; using the eager right-hand side.", failure)
            return None
    try:
        compiled = torch.compile(geodesic_rhs_function(flat_map(user_decoder), eps=eps), backend=backend, dynamic=False)
        compiled(_probe_state(dim, dtype, device))
    except Exception as error:  # torch.compile raises many unrelated types
        logger.warning("compile=True: compilation failed (%s: %s); using the eager right-hand side.", type(error).__name__, error)
        return None
    logger.info("compile=True: geodesic right-hand side compiled with backend %r.", backend)
    return _CompiledRHS(compiled, decoder, eps)


class _CompiledRHS:
    """The compiled function on padded batches, falling back to the eager kernels if a call fails.

    Batches are padded (with copies of their first state) to a power of two,
    at least 4, and compiled with static shapes: one compilation per size
    bucket, never a recompilation with symbolic shapes.
    """

    def __init__(self, compiled, decoder, eps):
        self.compiled, self.decoder, self.eps = compiled, decoder, eps
        self.failed = False

    def __call__(self, state):
        if not self.failed:
            try:
                return self._compiled_call(state)
            except Exception as error:  # a recompilation for a new batch size can fail like the first one
                self.failed = True
                logger.warning(
                    "compile=True: the compiled right-hand side failed on a batch of %d (%s: %s); "
                    "using the eager right-hand side from now on.", state.shape[0], type(error).__name__, error,
                )
        return geodesic_rhs(self.decoder, state, eps=self.eps)

    def _compiled_call(self, state):
        n_batch = state.shape[0]
        bucket = max(4, 1 << (n_batch - 1).bit_length())
        native = state.to(dtype=self.decoder.dtype, device=self.decoder.device)
        if bucket > n_batch:
            native = torch.cat([native, native[:1].expand(bucket - n_batch, *native.shape[1:])])
        out = self.compiled(native.contiguous())[:n_batch]
        return out.to(dtype=state.dtype, device=state.device)


def _probe_main(path):
    """Child side of :func:`probe`: exit 0 if compiled and eager agree, 3 if not."""
    with open(path, "rb") as handle:
        job = pickle.load(handle)
    torch.set_num_threads(1)
    state = _probe_state(job["dim"], job["dtype"], job["device"])
    function = geodesic_rhs_function(flat_map(job["decoder"]), eps=job["eps"])
    expected = function(state)
    got = torch.compile(function, backend=job["backend"])(state)
    scale = float(expected.abs().max()) or 1.0
    error = float((got - expected).abs().max()) / scale
    if not error <= PROBE_RTOL.get(job["dtype"], 1e-4):
        print(f"compiled and eager right-hand sides differ by {error:.2e} (relative)", file=sys.stderr)
        sys.exit(3)


if __name__ == "__main__":
    _probe_main(sys.argv[1])
