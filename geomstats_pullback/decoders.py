"""Adapters that turn a user's decoder into a flat, differentiable map.

A decoder maps latent points ``[B, d]`` to data ``[B, *data_shape]`` (vectors,
images ``[B, C, H, W]``, ...). The adapters below flatten the output to
``[B, D]``, move points to the decoder's dtype and device, check that the
decoder returns finite values, and expose the matrix-free derivatives of
:mod:`geomstats_pullback.autodiff` on geomstats' arrays.

Precision: points stay in geomstats' float64; a float32 decoder is evaluated
in float32, so metric quantities carry float32 relative precision (~1e-6).

Memory budget: every derivative call is cut into chunks of latent points so
that one chunk's derivative computation holds at most a budget of bytes: the
decoder's ``memory_budget``, else the process-wide one of
:func:`set_memory_budget`; both are limits. Without either, chunks aim at
:data:`DEFAULT_MEMORY_BUDGET`, a target near cache sizes (larger arrays
make the same work slower), and a point that needs more runs alone. The bytes of one
point are estimated as the result's entries plus the decoder's autograd graph
for one point, measured once by saved-tensor hooks (the difference between a
two-point and a one-point linearisation, so that the weights do not count),
times the copies the strategy keeps: 2 for first derivatives, 4 for second
derivatives, times the number of directions for a batched strategy; the
result counts in the decoder's dtype and as its float64 copy on the points' device. The
concatenated result of the whole batch is the caller's; the metric's own
methods are chunked the same way, so their intermediates stay within the
budget too. A budget that was set and is below one point's estimate raises
:class:`~geomstats_pullback.errors.MemoryBudgetError`.

Jacobian strategy (torch decoders): one of
:data:`~geomstats_pullback.autodiff.STRATEGIES`, or ``"auto"`` (default).
``"auto"`` uses ``"reverse"`` below ``d = AUTO_MIN_DIM`` and otherwise times
every strategy once (best of two runs; one run for a strategy already three
times slower than the best) for each kind of call (Jacobian, ``K`` second
derivatives, Hessian; grad mode on or off) and each of two batch-size
classes (:func:`batch_class`: below :data:`PROBE_POINTS` points, or not), on
at most :data:`PROBE_POINTS` points of the first such call; it keeps the
fastest per point and logs the choice and the timings at debug level. The
batch size matters: batched strategies win on small batches (fewer kernel
launches), per-direction passes on large ones. Two classes bound the probing
to a few times the cost of one large call per kind, paid once per decoder. A strategy that fails on the decoder (``torch.func``'s
forward mode refuses in-place writes to captured tensors) is skipped.
"""

import contextlib
import logging
import math
import time

import autograd.numpy as anp
import geomstats.backend as gs
import numpy as np
import torch

from geomstats_pullback._validation import check_integer
from geomstats_pullback.autodiff import STRATEGIES, AutogradDiff, TorchDiff
from geomstats_pullback.errors import DecoderDifferentiationError, MemoryBudgetError

logger = logging.getLogger(__name__)

#: Bytes one derivative chunk aims at when no budget is set (a target, not a limit).
DEFAULT_MEMORY_BUDGET = 32 << 20
_budget = {"bytes": None}

#: ``"auto"`` picks ``"reverse"`` without timing below this latent dimension.
AUTO_MIN_DIM = 8
#: Most points on which ``"auto"`` times the strategies; smaller batches form their own class.
PROBE_POINTS = 64
#: A strategy whose first probe run is this many times slower than the best so far is not run again.
PROBE_GIVE_UP = 3.0

# Graph copies a chunk holds per kind of call (see the module docstring), and
# the number of directions a batched strategy stacks.
_ORDER = {"jvp": 1, "jacobian": 1, "second": 2, "jacobian_and_second": 2, "hessian": 2, "weighted_hessian": 2}


def set_memory_budget(nbytes):
    """Set the process-wide memory budget of one derivative chunk, for decoders without their own.

    Parameters
    ----------
    nbytes : int or None
        A limit in bytes; ``None`` goes back to the default target
        :data:`DEFAULT_MEMORY_BUDGET` (module docstring).

    Returns
    -------
    previous : int or None
        The budget it replaces.
    """
    previous = _budget["bytes"]
    _budget["bytes"] = None if nbytes is None else check_integer(nbytes, "nbytes", low=1)
    return previous


def get_memory_budget():
    """The process-wide memory budget of one derivative chunk, in bytes (``None``: the default target)."""
    return _budget["bytes"]


def batch_class(n_points):
    """The batch-size class of ``"auto"``'s choices: ``"small"`` below :data:`PROBE_POINTS` points, else ``"large"``."""
    return "small" if n_points < PROBE_POINTS else "large"


def _split(array, axis, size):
    """``array`` in chunks of ``size`` along ``axis`` (geomstats or numpy arrays)."""
    n = array.shape[axis]
    index = [slice(None)] * array.ndim
    out = []
    for start in range(0, n, size):
        index[axis] = slice(start, start + size)
        out.append(array[tuple(index)])
    return out


def _concat(arrays, axis):
    return torch.cat(arrays, dim=axis) if torch.is_tensor(arrays[0]) else anp.concatenate(arrays, axis=axis)


class Decoder:
    """A flat differentiable map ``[B, d] -> [B, D]`` on geomstats arrays.

    Subclasses set ``_diff`` (a derivative engine from
    :mod:`geomstats_pullback.autodiff`) and implement ``_call``,
    ``_to_native``, ``_from_native``, ``_zeros``, ``_all_finite`` and
    :meth:`latent_array`.

    Results come back as geomstats arrays in the default float dtype, on the
    device of the latent points passed in (host arrays for numpy or list
    input): a solve on points that live on the decoder's GPU stays there.

    Parameters
    ----------
    latent_dim : int
        Dimension ``d`` of the latent space.
    memory_budget : int, optional
        Bytes one derivative chunk may hold (module docstring); default: the
        process-wide budget of :func:`set_memory_budget` at call time.

    Attributes
    ----------
    data_shape : tuple
        Shape of one decoded sample.
    output_dim : int
        ``D``, the number of entries of one decoded sample.
    """

    _diff = None

    def __init__(self, latent_dim, *, memory_budget=None):
        self.latent_dim = check_integer(latent_dim, "latent_dim", low=1)
        self.memory_budget = None if memory_budget is None else check_integer(memory_budget, "memory_budget", low=1)
        self._graph_bytes = None
        probe = self._call(self._zeros((1, self.latent_dim)))
        self.data_shape = tuple(probe.shape[1:])
        self.output_dim = math.prod(self.data_shape)

    def _flat(self, z):
        """Flattened decoder output ``[B, D]`` (native arrays; ``B`` may be 0)."""
        return self._call(z).reshape(z.shape[0], self.output_dim)

    def _checked(self, out, zn, like):
        """``out`` back from the decoder's arrays to ``like``'s device, after a finiteness check at ``zn``."""
        if not bool(self._all_finite(out)):
            raise FloatingPointError(
                "The decoder returned NaN or inf (or its derivatives did) at "
                f"{zn.shape[0]} latent point(s) starting with {self._from_native(zn[:1], like)}. "
                "Check the decoder and the points."
            )
        return self._from_native(out, like)

    def latent_array(self, data):
        """Latent points ``data [..., d]`` (numpy, list or array) as float64 geomstats arrays where the decoder runs."""
        raise NotImplementedError

    def _tracking(self, *arrays):
        """Context in which derivatives are computed (autograd tracking policy)."""
        return contextlib.nullcontext()

    # ------------------------------------------------------------- memory budget

    @property
    def budget(self):
        """The memory budget in force, in bytes, and whether it is a limit (set) or the default target."""
        for nbytes in (self.memory_budget, get_memory_budget()):
            if nbytes is not None:
                return nbytes, True
        return DEFAULT_MEMORY_BUDGET, False

    def _itemsize(self):
        return 8

    def _linearisation_bytes(self):
        """Bytes of one point's reverse-mode graph; ``2 D`` entries where it cannot be measured."""
        return 2 * self.output_dim * self._itemsize()

    def point_bytes(self, kind, n_dirs=1, strategy=None):
        """Estimated bytes one latent point costs in a derivative call.

        Parameters
        ----------
        kind : {"jvp", "jacobian", "second", "jacobian_and_second", "hessian", "weighted_hessian"}
        n_dirs : int
            ``K``, the second derivatives per point (``"second"``,
            ``"jacobian_and_second"``).
        strategy : str, optional
            A batched strategy multiplies the graph by its directions.

        Returns
        -------
        nbytes : int
        """
        dim, out = self.latent_dim, self.output_dim
        entries = {
            "jvp": 2 * out, "jacobian": out * dim, "second": n_dirs * out, "jacobian_and_second": out * (dim + n_dirs),
            "hessian": out * dim * dim, "weighted_hessian": out + dim * dim,
        }[kind]
        if self._graph_bytes is None:
            self._graph_bytes = self._linearisation_bytes()
        copies = 2 * _ORDER[kind]
        if strategy is not None and strategy.endswith("_batched"):
            copies *= {"jacobian": dim, "second": n_dirs, "hessian": dim}.get(kind, max(dim, n_dirs))
        # The result in the decoder's dtype, and its float64 copy on the points' device.
        return entries * (self._itemsize() + 8) + copies * self._graph_bytes

    def batch_limit(self, kind, n_dirs=1, strategy=None):
        """The most latent points one chunk of a ``kind`` call may hold under the budget.

        Parameters
        ----------
        kind, n_dirs, strategy : see :meth:`point_bytes`

        Returns
        -------
        n_points : int
            At least 1 under the default target.

        Raises
        ------
        MemoryBudgetError
            If one point does not fit in a budget that was set.
        """
        budget, is_limit = self.budget
        need = self.point_bytes(kind, n_dirs, strategy)
        if need > budget and is_limit:
            raise MemoryBudgetError(
                f"The memory budget of {budget} bytes is too small for one latent point: a {kind} call "
                f"({'strategy ' + repr(strategy) + ', ' if strategy else ''}d={self.latent_dim}, "
                f"D={self.output_dim}) needs about {need} bytes per point. Raise it "
                "(gp.set_memory_budget(nbytes) or the decoder's memory_budget) or, for a batched "
                "Jacobian strategy, use an unbatched one."
            )
        return max(1, budget // need)

    def _choose_strategy(self, kind, n_dirs, compute, arrays, axes):
        """The derivative strategy of a call (``None`` for engines without strategies)."""
        return None

    def _run(self, kind, compute, arrays, axes, out_axes, *, n_dirs=1):
        """``compute(strategy, *chunk)`` over chunks of the batch, results concatenated.

        Parameters
        ----------
        kind : str
            See :meth:`point_bytes`.
        compute : callable
            ``compute(strategy, *arrays) -> array or tuple of arrays``.
        arrays : tuple
            Native arrays; ``axes[i]`` is the batch axis of ``arrays[i]``.
        out_axes : int or tuple of int
            Batch axis of the result (of each result for a tuple).
        """
        strategy = self._choose_strategy(kind, n_dirs, compute, arrays, axes)
        n_batch = arrays[0].shape[axes[0]]
        limit = self.batch_limit(kind, n_dirs, strategy)
        if n_batch <= limit:
            return self._differentiate(compute, strategy, arrays)
        chunks = zip(*(_split(a, axis, limit) for a, axis in zip(arrays, axes)))
        results = [self._differentiate(compute, strategy, chunk) for chunk in chunks]
        if isinstance(out_axes, int):
            return _concat(results, out_axes)
        return tuple(_concat([r[i] for r in results], axis) for i, axis in enumerate(out_axes))

    def _differentiate(self, compute, strategy, arrays):
        return compute(strategy, *arrays)

    # ----------------------------------------------------------------- derivatives

    def __call__(self, z):
        """Decoded points ``[B, D]`` for latent points ``z [B, d]``."""
        zn = self._to_native(z)
        with self._tracking(z):
            return self._checked(self._flat(zn), zn, z)

    def differentiable_call(self, z):
        """Decoded points ``[B, D]`` as a plain function of ``z [B, d]``.

        No finiteness check and no gradient policy: the graph is kept, so that
        an outer automatic differentiation (geomstats' own, in
        :mod:`geomstats_pullback.reference`) can differentiate through it.
        """
        return self._from_native(self._flat(self._to_native(z)), z)

    def jvp(self, z, v):
        """Decoded points and ``J(z) v``, each ``[B, D]``."""
        zn = self._to_native(z)
        with self._tracking(z, v):
            value, tangent = self._run(
                "jvp", lambda s, x, y: self._diff.jvp(self._flat, x, y), (zn, self._to_native(v)), (0, 0), (0, 0)
            )
            return self._checked(value, zn, z), self._checked(tangent, zn, z)

    def jacobian(self, z):
        """Jacobian ``J(z)``, shape ``[B, D, d]``."""
        zn = self._to_native(z)
        with self._tracking(z):
            jac = self._run(
                "jacobian", lambda s, x: self._diff.jacobian(self._flat, x, strategy=s), (zn,), (0,), 0,
                n_dirs=self.latent_dim,
            )
            return self._checked(jac, zn, z)

    def second_derivative(self, z, u, v):
        """Second directional derivative ``f''(z)[u, v]``, shape ``[B, D]``."""
        zn = self._to_native(z)
        with self._tracking(z, u, v):

            def compute(s, x, a, b):
                return self._diff.second_derivative(self._flat, x, a, b, strategy=s)

            out = self._run("second", compute, (zn, self._to_native(u), self._to_native(v)), (0, 0, 0), 0)
            return self._checked(out, zn, z)

    def jacobian_and_second(self, z, u, directions):
        """``J(z)`` ``[B, D, d]`` and ``f''(z)[u, w_k]`` ``[K, B, D]`` for ``directions [K, B, d]``.

        One linearisation of the decoder serves both (a geodesic step needs
        ``J`` and ``f''[v, v]``, a transport step also ``f''[v, w]``).
        """
        zn = self._to_native(z)
        with self._tracking(z, u, directions):

            def compute(s, x, a, w):
                return self._diff.jacobian_and_second(self._flat, x, a, w, strategy=s)

            arrays = (zn, self._to_native(u), self._to_native(directions))
            jac, second = self._run("jacobian_and_second", compute, arrays, (0, 0, 1), (0, 1), n_dirs=directions.shape[0])
            return self._checked(jac, zn, z), self._checked(second, zn, z)

    def hessian(self, z):
        """All second derivatives ``f''(z)[e_i, e_j]``, shape ``[B, D, d, d]``."""
        zn = self._to_native(z)
        with self._tracking(z):
            hess = self._run(
                "hessian", lambda s, x: self._diff.hessian(self._flat, x, strategy=s), (zn,), (0,), 0,
                n_dirs=self.latent_dim,
            )
            return self._checked(hess, zn, z)

    def weighted_hessian(self, z, weights):
        """Hessian of ``z -> <weights, f(z)>`` row by row, ``[B, d, d]``, for ``weights [B, D]``."""
        zn = self._to_native(z)
        with self._tracking(z, weights):

            def compute(s, x, w):
                return self._diff.weighted_hessian(self._flat, x, w)

            out = self._run("weighted_hessian", compute, (zn, self._to_native(weights)), (0, 0), 0)
            return self._checked(out, zn, z)


def _probe_points(dim, dtype, device):
    """Two fixed latent points with distinct small positive coordinates, ``[2, d]``."""
    steps = torch.arange(1, dim + 1, dtype=dtype, device=device) / (dim + 1)
    return torch.stack([0.1 + 0.2 * steps, 0.15 + 0.1 * steps.flip(0)])


#: autograd nodes of operations whose derivative torch sets to zero (piecewise constant).
_ZERO_DERIVATIVE_NODES = ("RoundBackward", "FloorBackward", "CeilBackward", "SignBackward", "TruncBackward")


def _zero_derivative_steps(node):
    """Names of the piecewise-constant operations in the autograd graph below ``node``."""
    found, seen, stack = set(), set(), [node]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        name = type(node).__name__
        if name.startswith(_ZERO_DERIVATIVE_NODES):
            found.add(name.split("Backward")[0].lower())
        stack.extend(next_node for next_node, _ in node.next_functions)
    return found


def _failure_cause(error):
    """A sentence naming what in the decoder a differentiation error points to."""
    message = str(error)
    if "captured Tensor" in message or "in-place" in message.lower() and "transform" in message:
        return (
            "an in-place operation writes to a tensor the decoder captured (a buffer or preallocated output), "
            "which torch.func's forward mode refuses: rewrite it out of place or use jacobian_strategy='reverse'"
        )
    if "forward AD" in message:
        return (
            "a layer has no forward-mode derivative of that order in torch (e.g. SiLU's second derivative): "
            "use a reverse strategy (jacobian_strategy='reverse'; under grad mode only forward strategies run)"
        )
    if "modified by an inplace operation" in message:
        return "an in-place operation overwrote a tensor that the backward pass needs: rewrite it out of place"
    return "the decoder is not differentiable by torch as written"


class TorchDecoder(Decoder):
    """A ``torch.nn.Module`` or torch callable ``[B, d] -> [B, *data_shape]``.

    The decoder's dtype and device are read from its first parameter (or
    buffer); a parameter-free callable runs in float64 on the CPU unless
    ``dtype``/``device`` are given. Every tensor the adapter creates lives on
    that device.

    The decoder must be a fixed, differentiable map; the constructor refuses,
    with :class:`ValueError`, a module with batch normalisation in training
    mode and a decoder that returns different values at the same points on
    two calls (dropout in training mode, sampling inside the decoder): the
    pullback of a random map is meaningless (call ``decoder.eval()``; MC
    dropout with fixed masks is :class:`~geomstats_pullback.MCDropoutDecoder`).
    It refuses, with :class:`~geomstats_pullback.errors.DecoderDifferentiationError`,
    a decoder whose output does not depend on the latent point through
    differentiable operations (``argmax``, ``detach``, integer casts) or
    passes it through piecewise-constant operations (``round``, ``floor``,
    ``ceil``, ``sign``, ``trunc``), whose derivative torch sets to zero.

    Parameters
    ----------
    decoder : torch.nn.Module or callable
        The decoder.
    latent_dim : int
        Latent dimension ``d``.
    dtype, device : optional
        Override the dtype and device the decoder is evaluated in.
    jacobian_strategy : {"auto", "reverse", "reverse_batched", "forward", "forward_batched"}
        How Jacobians and second derivatives are computed (module docstring).
    memory_budget : int, optional
        Bytes one derivative chunk may hold (module docstring).

    Attributes
    ----------
    strategy_choices_ : dict
        ``"auto"``'s choices, ``(kind, K, grad_mode, batch_class(n)) -> strategy``.
    """

    _diff = TorchDiff

    def __init__(self, decoder, latent_dim, *, dtype=None, device=None, jacobian_strategy="auto", memory_budget=None):
        if not callable(decoder):
            raise TypeError(f"decoder must be callable, got {type(decoder).__name__}.")
        if jacobian_strategy != "auto" and jacobian_strategy not in STRATEGIES:
            raise ValueError(f"jacobian_strategy must be 'auto' or one of {STRATEGIES}, got {jacobian_strategy!r}.")
        self.decoder = decoder
        self.jacobian_strategy = jacobian_strategy
        self.strategy_choices_ = {}
        tensors = []
        if isinstance(decoder, torch.nn.Module):
            tensors = list(decoder.parameters()) + list(decoder.buffers())
            norms = [
                name for name, m in decoder.named_modules()
                if m.training and isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
            ]
            if norms:
                raise ValueError(
                    f"The decoder has batch normalisation in training mode ({', '.join(n or 'the module' for n in norms)}): "
                    "it normalises each batch by its own statistics, so a point's image depends on the other "
                    "points, and every call updates the running statistics. Call decoder.eval() first."
                )
        floats = [t for t in tensors if t.is_floating_point()]
        self.dtype = dtype or (floats[0].dtype if floats else torch.float64)
        self.device = torch.device(device or (floats[0].device if floats else "cpu"))
        super().__init__(latent_dim, memory_budget=memory_budget)
        self._check_fixed_and_differentiable()

    def _check_fixed_and_differentiable(self):
        """Refuse random maps and maps without a usable derivative (class docstring)."""
        points = _probe_points(self.latent_dim, self.dtype, self.device)
        with torch.no_grad():
            first, second = self._flat(points), self._flat(points)
        if first.device.type != "meta" and not torch.equal(first, second):
            modes = [n or "the module" for n, m in getattr(self.decoder, "named_modules", lambda: [])()
                     if m.training and isinstance(m, torch.nn.modules.dropout._DropoutNd)]
            cause = f"dropout in training mode ({', '.join(modes)})" if modes else "randomness inside the decoder"
            raise ValueError(
                f"The decoder returns different values at the same latent points on two calls ({cause}): "
                "the pullback metric of a random map is meaningless. Call decoder.eval() "
                "(or use gp.MCDropoutDecoder for MC dropout with fixed masks)."
            )
        if not first.is_floating_point():
            raise DecoderDifferentiationError(
                f"The decoder returns {first.dtype} values, which cannot be differentiated: return floating-point "
                "outputs (no argmax, rounding to integers or integer casts)."
            )
        x = points.detach().requires_grad_(True)
        try:
            with torch.enable_grad():
                out = self._flat(x)
        except RuntimeError as error:
            raise DecoderDifferentiationError(f"The decoder cannot be differentiated: {_failure_cause(error)}.") from error
        if not out.requires_grad:
            raise DecoderDifferentiationError(
                "The decoder's output does not depend differentiably on the latent point (its graph is cut: "
                "argmax, .detach(), torch.no_grad() or a round trip through numpy inside the decoder)."
            )
        steps = sorted(_zero_derivative_steps(out.grad_fn))
        if steps:
            raise DecoderDifferentiationError(
                f"The decoder applies piecewise-constant operations to the latent point ({', '.join(steps)}): "
                "torch gives them a zero derivative, so the pullback metric would ignore them. Remove them "
                "from the decoder (or make them straight-through, x + (op(x) - x).detach(), knowing that the "
                "metric is then that of the map without them)."
            )

    def _call(self, z):
        return self.decoder(z)

    def _tracking(self, *arrays):
        """Track reverse-mode gradients only when an input latent array asks for them.

        The decoder's parameters are constants of the geometry: no graph is
        built for them (it would grow with every integration step).
        """
        wanted = any(torch.is_tensor(a) and a.requires_grad for a in arrays)
        return torch.set_grad_enabled(torch.is_grad_enabled() and wanted)

    def _to_native(self, x):
        if not torch.is_tensor(x):
            x = torch.as_tensor(np.asarray(x), device=self.device)
        # contiguous: broadcast (zero-stride) views cannot carry forward-mode tangents.
        return x.to(dtype=self.dtype, device=self.device).contiguous()

    def _from_native(self, y, like):
        device = like.device if torch.is_tensor(like) else "cpu"
        return y.to(dtype=torch.get_default_dtype(), device=device)

    def latent_array(self, data):
        return torch.as_tensor(data, dtype=torch.float64, device=self.device)

    @staticmethod
    def _all_finite(y):
        # A NaN or inf entry makes the sum non-finite; summing is ~20x cheaper than an
        # elementwise test, which only an overflowing sum of finite entries still needs.
        return bool(torch.isfinite(y.sum())) or bool(torch.isfinite(y).all())

    # ------------------------------------------------------------------ strategies

    def _itemsize(self):
        return torch.finfo(self.dtype).bits // 8

    def _zeros(self, shape):
        return torch.zeros(shape, dtype=self.dtype, device=self.device)

    def _linearisation_bytes(self):
        """Bytes the reverse linearisation saves per point: two points' graph minus one point's."""
        sizes = []
        for n in (1, 2):
            saved = [0]

            def pack(tensor):
                saved[0] += tensor.numel() * tensor.element_size()
                return tensor

            z = _probe_points(self.latent_dim, self.dtype, self.device)[:1].repeat(n, 1)
            with torch.no_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
                TorchDiff.jvp(self._flat, z, z)
            sizes.append(saved[0])
        per_point = sizes[1] - sizes[0]
        return per_point if per_point > 0 else super()._linearisation_bytes()

    def _differentiate(self, compute, strategy, arrays):
        try:
            return compute(strategy, *arrays)
        except RuntimeError as error:
            if isinstance(error, DecoderDifferentiationError):
                raise
            raise DecoderDifferentiationError(
                f"The decoder could not be differentiated with the {strategy or 'reverse'!r} strategy: "
                f"{_failure_cause(error)}. ({type(error).__name__}: {str(error).splitlines()[0]})"
            ) from error

    def _choose_strategy(self, kind, n_dirs, compute, arrays, axes):
        if kind in ("jvp", "weighted_hessian"):
            return None
        if self.jacobian_strategy != "auto":
            return self.jacobian_strategy
        if self.latent_dim < AUTO_MIN_DIM:
            return "reverse"
        n_points = arrays[0].shape[axes[0]]
        key = (kind, n_dirs, torch.is_grad_enabled(), batch_class(n_points))
        if key not in self.strategy_choices_:
            n_probe = max(1, min(n_points, self.batch_limit(kind, n_dirs), PROBE_POINTS))
            self.strategy_choices_[key] = self._time_strategies(kind, n_dirs, compute, arrays, axes, n_probe)
        return self.strategy_choices_[key]

    def _time_strategies(self, kind, n_dirs, compute, arrays, axes, n_probe):
        """The strategy with the least time per point on ``n_probe`` points of ``arrays`` (best of two runs)."""
        timings = {}
        for strategy in STRATEGIES:
            try:
                limit = self.batch_limit(kind, n_dirs, strategy)
            except MemoryBudgetError:
                continue
            n = min(n_probe, limit)
            probe = [_split(a, axis, n)[0] for a, axis in zip(arrays, axes)]
            leader = min(timings.values(), default=math.inf) * n
            try:
                best = math.inf
                for _ in range(2):
                    start = time.perf_counter()
                    compute(strategy, *probe)
                    if self.device.type == "cuda":
                        torch.cuda.synchronize(self.device)  # kernels run asynchronously: time them, not their launch
                    best = min(best, time.perf_counter() - start)
                    if best > PROBE_GIVE_UP * leader:
                        break
            except RuntimeError as error:
                logger.debug("Jacobian strategy %r fails on this decoder (%s); skipped.", strategy, error)
                continue
            timings[strategy] = best / n
        if not timings:
            return "reverse"
        chosen = min(timings, key=timings.get)
        logger.debug(
            "Jacobian strategy for %s calls (K=%d, d=%d, %s, %s, grad mode %s): %r; seconds per point %s.",
            kind, n_dirs, self.latent_dim, self.dtype, self.device, torch.is_grad_enabled(), chosen,
            {s: f"{t:.3g}" for s, t in timings.items()},
        )
        return chosen


class AutogradDecoder(Decoder):
    """A callable written with ``autograd.numpy`` (geomstats' autograd backend).

    Parameters
    ----------
    decoder : callable
        Maps a float64 array ``[B, d]`` to ``[B, *data_shape]``.
    latent_dim : int
        Latent dimension ``d``.
    memory_budget : int, optional
        As for :class:`Decoder`.
    """

    _diff = AutogradDiff

    def __init__(self, decoder, latent_dim, *, memory_budget=None):
        if not callable(decoder):
            raise TypeError(f"decoder must be callable, got {type(decoder).__name__}.")
        self.decoder = decoder
        super().__init__(latent_dim, memory_budget=memory_budget)

    def _call(self, z):
        return self.decoder(z)

    def _to_native(self, x):
        return anp.asarray(x, dtype=anp.float64)

    def _zeros(self, shape):
        return anp.zeros(shape)

    def _from_native(self, y, like):
        return y

    def latent_array(self, data):
        return anp.asarray(data, dtype=anp.float64)

    @staticmethod
    def _all_finite(y):
        return bool(np.isfinite(np.sum(y))) or bool(np.all(np.isfinite(y)))


class StochasticDecoder(torch.nn.Module):
    """Mean and standard-deviation maps stacked into one decoder.

    The expected pullback metric of a Gaussian decoder is
    ``J_mu^T J_mu + J_sigma^T J_sigma`` (Arvanitidis et al., 2018): the
    pullback through the stacked map ``z -> [mu(z), sigma(z)]``. Both maps
    take ``[B, d]``; their outputs are flattened and concatenated.

    Parameters
    ----------
    mean : callable
        ``[B, d] -> [B, *data_shape]``.
    std : callable
        ``[B, d] -> [B, *data_shape]``.
    """

    def __init__(self, mean, std):
        if not (callable(mean) and callable(std)):
            raise TypeError("StochasticDecoder needs two callables: mean and std.")
        super().__init__()
        self.mean = mean
        self.std = std
        # Follow the wrapped modules' mode rather than nn.Module's default (training).
        self.training = any(getattr(m, "training", False) for m in (mean, std))

    def forward(self, z):
        """Stacked ``[mu(z), sigma(z)]``, shape ``[B, 2 D]``."""
        mu, sigma = self.mean(z), self.std(z)
        n = mu.shape[0]
        if torch.is_tensor(mu):
            return torch.cat([mu.reshape(n, -1), sigma.reshape(n, -1)], dim=-1)
        return anp.concatenate([anp.reshape(mu, (n, -1)), anp.reshape(sigma, (n, -1))], axis=-1)


def as_decoder(decoder, latent_dim, **kwargs):
    """Wrap ``decoder`` in the adapter that fits geomstats' backend.

    Parameters
    ----------
    decoder : Decoder, torch.nn.Module, callable or StochasticDecoder
        The decoder; a :class:`Decoder` is returned unchanged.
    latent_dim : int
        Latent dimension ``d``.
    **kwargs
        ``dtype``, ``device``, ``jacobian_strategy`` and ``memory_budget``
        for :class:`TorchDecoder`; ``memory_budget`` for :class:`AutogradDecoder`.

    Returns
    -------
    decoder : Decoder
    """
    if isinstance(decoder, Decoder):
        if decoder.latent_dim != latent_dim:
            raise ValueError(f"decoder has latent_dim {decoder.latent_dim}, not {latent_dim}.")
        return decoder
    backend = gs.__name__.split(".")[-1]
    if backend == "autograd":
        is_torch = isinstance(decoder, torch.nn.Module) and any(True for _ in decoder.parameters())
        if is_torch:
            raise TypeError(
                "geomstats runs on its autograd backend, which cannot differentiate a "
                "torch module: set GEOMSTATS_BACKEND=pytorch before importing geomstats."
            )
        return AutogradDecoder(decoder, latent_dim, memory_budget=kwargs.get("memory_budget"))
    return TorchDecoder(decoder, latent_dim, **kwargs)

