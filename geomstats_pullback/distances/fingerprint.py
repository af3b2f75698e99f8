"""Fingerprints of what determines a distance computation: decoder, points, solver.

A store of computed blocks (:mod:`geomstats_pullback.distances.store`) records these
digests, so that a run never mixes blocks computed with another decoder,
another point set or other solver settings.

A decoder is fingerprinted by its state, not by its code alone:

- a ``torch.nn.Module``: its class (and the code of the methods of classes
  defined outside torch), then every attribute of it and of its submodules,
  recursively: parameters, buffers, ``training``, hooks and plain attributes
  (``module.scale = 5.0``);
- a function: its code, defaults, closure cells and the module globals its
  code names (a global weight ``W`` changed in place or rebound changes the
  fingerprint), recursively for the functions it reaches;
- numbers, strings, tensors, arrays, containers of these, classes and Python
  modules (by name).

Anything else (an object with a ``__call__`` method, a global that is a file
or a lock) cannot be fingerprinted: the store refuses it unless the caller
names the decoder with ``decoder_id=``.
"""

import enum
import functools
import hashlib
import logging
import types

import numpy as np
import torch

from geomstats_pullback.errors import DistanceStoreError

_PRIMITIVES = (bool, int, float, str, type(None))
_SCALARS = (bool, int, float, complex, str, bytes, type(None), type(Ellipsis), range, slice, torch.dtype, torch.device)


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


class _Unfingerprintable(Exception):
    """``args[0]``: where the value sits (``decoder.scale_fn``), ``args[1]``: its type name."""


def _code_names(code):
    """Names a code object and its nested code objects read (globals, attributes)."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


def _code_digest(code):
    """Digest of a code object: bytecode, constants and names, nested functions included."""
    consts = [_code_digest(c) if isinstance(c, types.CodeType) else repr(c) for c in code.co_consts]
    return digest(code.co_code, consts, code.co_names, code.co_varnames, code.co_freevars)


class _StateHasher:
    """Digests of values, recursively; a value met twice (a cycle) is named by its first visit."""

    def __init__(self):
        self.seen = {}

    def __call__(self, value, where):
        if isinstance(value, (*_SCALARS, enum.Enum)):
            return (type(value).__qualname__, repr(value))
        if isinstance(value, np.generic):
            return (str(value.dtype), value.tobytes())
        if torch.is_tensor(value) or isinstance(value, np.ndarray):
            return ("array", array_digest(value))
        if isinstance(value, types.ModuleType):
            return ("module", value.__name__)
        if isinstance(value, logging.Logger):  # logs do not change what a decoder computes
            return ("logger", value.name)
        key = id(value)
        if key in self.seen:
            return ("seen", self.seen[key])
        self.seen[key] = len(self.seen)
        return self._compound(value, where)

    def _compound(self, value, where):
        if isinstance(value, (tuple, list)):
            return (type(value).__qualname__, [self(v, f"{where}[{i}]") for i, v in enumerate(value)])
        if isinstance(value, dict):  # insertion order kept: it orders submodules
            return ("dict", [(self(k, where), self(v, f"{where}[{k!r}]")) for k, v in value.items()])
        if isinstance(value, (set, frozenset)):
            return ("set", sorted(digest(self(v, f"{where} item")) for v in value))
        if isinstance(value, torch.nn.Module):
            return ("torch.nn.Module", self._class(type(value), where), self(vars(value), where))
        if isinstance(value, type):
            return self._class(value, where)
        if isinstance(value, types.FunctionType):
            return self._function(value, where)
        if isinstance(value, types.MethodType):
            return ("method", self(value.__func__, where), self(value.__self__, f"{where}.__self__"))
        if isinstance(value, functools.partial):
            return ("partial", self(value.func, where), self(value.args, where), self(value.keywords, where))
        if isinstance(value, (types.BuiltinFunctionType, np.ufunc)) or type(value).__name__ in (
            "method_descriptor", "wrapper_descriptor", "builtin_function_or_method",
        ):
            return ("builtin", getattr(value, "__module__", None), getattr(value, "__qualname__", repr(value)))
        if isinstance(value, (staticmethod, classmethod)):
            return (type(value).__name__, self(value.__func__, where))
        if isinstance(value, property):
            return ("property", self(value.fget, where), self(value.fset, where))
        raise _Unfingerprintable(where, type(value).__qualname__)

    def _class(self, cls, where):
        """A class by name; the methods of classes defined outside torch and builtins by their state."""
        module = getattr(cls, "__module__", "") or ""
        own = []
        if not module.startswith(("torch", "builtins", "numpy", "typing", "abc")):
            for klass in cls.__mro__:
                if (klass.__module__ or "").startswith(("torch", "builtins")):
                    continue
                for name, attribute in vars(klass).items():
                    if isinstance(attribute, (types.FunctionType, staticmethod, classmethod, property)):
                        own.append((klass.__qualname__, name, self(attribute, f"{klass.__qualname__}.{name}")))
        return ("class", module, cls.__qualname__, own)

    def _function(self, function, where):
        code = function.__code__
        name = f"{function.__module__}.{function.__qualname__}"
        cells = []
        for var, cell in zip(code.co_freevars, function.__closure__ or ()):
            try:
                contents = cell.cell_contents
            except ValueError:  # an empty cell
                cells.append((var, "<empty>"))
                continue
            cells.append((var, self(contents, f"variable {var!r} of the closure of {name}")))
        namespace = function.__globals__
        read = [
            (var, self(namespace[var], f"global {var!r} read by {name}"))
            for var in sorted(_code_names(code)) if var in namespace
        ]
        defaults = self(function.__defaults__, f"defaults of {name}")
        kwdefaults = self(function.__kwdefaults__, f"keyword defaults of {name}")
        return ("function", name, _code_digest(code), defaults, kwdefaults, cells, read)


def callable_digest(obj):
    """Digest of a decoder's code and state (see the module's docstring for what is included).

    Parameters
    ----------
    obj : torch.nn.Module or function
        The decoder.

    Returns
    -------
    digest : str
        SHA-256 hex digest.

    Raises
    ------
    DistanceStoreError
        If the decoder holds or reads something that cannot be fingerprinted
        (the message names it); pass ``decoder_id=`` to the distance function then.
    """
    try:
        return digest(_StateHasher()(obj, "the decoder"))
    except _Unfingerprintable as error:
        where, kind = error.args
        raise DistanceStoreError(
            f"Cannot fingerprint the decoder for the distance store: {where} is of type {kind}, whose state "
            "cannot be digested. Pass decoder_id='<a name that changes whenever the decoder does>' "
            "to identify the decoder yourself."
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


def check_decoder_id(decoder_id):
    """Validate ``decoder_id``: None or a non-empty string.

    Raises
    ------
    ValueError
        If ``decoder_id`` is neither.
    """
    if decoder_id is not None and (not isinstance(decoder_id, str) or not decoder_id.strip()):
        raise ValueError(f"decoder_id must be None or a non-empty string, got {decoder_id!r}.")


def job_fingerprint(metric, X, Y, *, decoder_id=None):
    """Digests of what determines a distance computation.

    Parameters
    ----------
    metric : PullbackMetric
        Its decoder and the settings of the metric, its log and exp solvers and
        the exp solver's integrator are digested.
    X : ndarray, shape=[n, dim]
    Y : ndarray, shape=[m, dim]
    decoder_id : str, optional
        Stands for the decoder's state, which is then not digested: the caller
        promises that it changes whenever the decoder does.

    Returns
    -------
    fingerprint : dict
        ``decoder``, ``points`` and ``solver``: hex digests, as recorded by a
        :class:`~geomstats_pullback.distances.store.BlockStore`.

    Raises
    ------
    DistanceStoreError
        If the decoder cannot be fingerprinted and no ``decoder_id`` is given.
    """
    check_decoder_id(decoder_id)
    adapter = metric.decoder
    exp_solver = metric.exp_solver
    solvers = [metric, metric.log_solver, exp_solver, getattr(exp_solver, "integrator", None)]
    dtype = str(getattr(adapter, "dtype", ""))
    state = ("decoder_id", decoder_id) if decoder_id is not None else callable_digest(adapter.decoder)
    return {
        "decoder": digest(type(adapter).__qualname__, dtype, state),
        "points": digest(array_digest(X), array_digest(Y)),
        "solver": settings_digest(*(s for s in solvers if s is not None)),
    }
