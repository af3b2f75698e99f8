"""Fingerprints of what determines a distance computation: decoder, points, solver.

A store of computed blocks (:mod:`geomstats_pullback.distances.store`) records these
digests, so that a run never mixes blocks computed with another decoder,
another point set or other solver settings.
"""

import hashlib
import pickle
import types

import numpy as np
import torch

_PRIMITIVES = (bool, int, float, str, type(None))


def digest(*chunks):
    """SHA-256 hex digest of byte strings and reprs."""
    sha = hashlib.sha256()
    for chunk in chunks:
        sha.update(chunk if isinstance(chunk, bytes) else repr(chunk).encode())
        sha.update(b"\x00")
    return sha.hexdigest()


def array_digest(array):
    """Digest of an array's dtype, shape and bytes (torch tensors included)."""
    if torch.is_tensor(array):
        # Through bytes: numpy has no bfloat16.
        tensor = array.detach().cpu().contiguous()
        return digest(str(tensor.dtype), tuple(tensor.shape), tensor.flatten().view(torch.uint8).numpy().tobytes())
    array = np.ascontiguousarray(array)
    return digest(str(array.dtype), array.shape, array.tobytes())


def _code_digest(code):
    """Digest of a code object: bytecode and constants, nested functions included."""
    consts = [_code_digest(c) if isinstance(c, types.CodeType) else repr(c) for c in code.co_consts]
    return digest(code.co_code, consts, code.co_names)


def _value_digest(value):
    if callable(value):
        return callable_digest(value)
    if torch.is_tensor(value) or isinstance(value, np.ndarray):
        return array_digest(value)
    return repr(value)


def callable_digest(obj):
    """Digest of a decoder.

    A ``torch.nn.Module``: its class, ``repr`` (architecture) and every tensor of its
    ``state_dict``. A function: module, name, bytecode and closure (values a
    function reads from module globals are not included). Anything else: its
    pickle bytes.

    Raises
    ------
    TypeError
        If ``obj`` is neither a module, a function nor picklable.
    """
    if isinstance(obj, torch.nn.Module):
        tensors = [(name, array_digest(tensor)) for name, tensor in obj.state_dict().items()]
        # Plain callables held by a module (e.g. StochasticDecoder(mean=f, std=g)).
        extras = sorted(
            (name, callable_digest(value))
            for name, value in vars(obj).items()
            if isinstance(value, types.FunctionType)
        )
        return digest(type(obj).__qualname__, repr(obj), tensors, extras)
    if isinstance(obj, types.FunctionType):
        closure = [_value_digest(cell.cell_contents) for cell in obj.__closure__ or ()]
        return digest(obj.__module__, obj.__qualname__, _code_digest(obj.__code__), closure)
    try:
        return digest(type(obj).__qualname__, pickle.dumps(obj))
    except Exception as error:
        raise TypeError(
            f"Cannot fingerprint the decoder {obj!r} (not a torch module, a function, nor picklable): {error}"
        ) from None


def settings_digest(*objects):
    """Digest of the settings of solver objects: their class and their scalar
    (int, float, str, ...), tuple-of-scalar and array attributes (e.g. the points
    of a graph initialisation). Other attributes (spaces) and results of calls
    (names ending in ``_``, such as ``result_``) are left out."""
    settings = []
    for obj in objects:
        attributes = []
        for name, value in sorted(vars(obj).items()):
            if name.endswith("_"):
                continue
            if isinstance(value, _PRIMITIVES) or (
                isinstance(value, tuple) and all(isinstance(v, _PRIMITIVES) for v in value)
            ):
                attributes.append((name, value))
            elif torch.is_tensor(value) or isinstance(value, np.ndarray):
                attributes.append((name, array_digest(value)))
        settings.append((type(obj).__module__, type(obj).__qualname__, attributes))
    return digest(settings)


def job_fingerprint(metric, X, Y):
    """Digests of what determines a distance computation.

    Parameters
    ----------
    metric : PullbackMetric
        Its decoder and the settings of the metric, its log and exp solvers and
        the exp solver's integrator are digested.
    X : ndarray, shape=[n, dim]
    Y : ndarray, shape=[m, dim]

    Returns
    -------
    fingerprint : dict
        ``decoder``, ``points`` and ``solver``: hex digests, as recorded by a
        :class:`~geomstats_pullback.distances.store.BlockStore`.
    """
    adapter = metric.decoder
    exp_solver = metric.exp_solver
    solvers = [metric, metric.log_solver, exp_solver, getattr(exp_solver, "integrator", None)]
    dtype = str(getattr(adapter, "dtype", ""))
    return {
        "decoder": digest(type(adapter).__qualname__, dtype, callable_digest(adapter.decoder)),
        "points": digest(array_digest(X), array_digest(Y)),
        "solver": settings_digest(*(s for s in solvers if s is not None)),
    }
