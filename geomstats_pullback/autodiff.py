"""Matrix-free derivatives of a flat decoder ``f: [B, d] -> [B, D]``.

Pure functions, one implementation per array library: ``torch`` and
``autograd`` (for decoders written with ``autograd.numpy``). A flat decoder
maps a batch of latent points row by row, so the derivative of the batched map
in a batched direction is the batch of per-row derivatives: one call serves
all rows.

Every function takes ``f`` and arrays of the library's type:

- ``jvp(f, z, v)``: ``(f(z), J(z) v)``, shapes ``[B, D]``;
- ``jacobian(f, z)``: ``J(z)``, shape ``[B, D, d]``;
- ``second_derivative(f, z, u, v)``: ``f''(z)[u, v]``, shape ``[B, D]``
  (never a Hessian);
- ``jacobian_and_second(f, z, u, directions)``: ``J(z)`` and
  ``f''(z)[u, w_k]`` for ``directions [K, B, d]``, from one linearisation
  (what a geodesic or transport step needs);
- ``hessian(f, z)``: all ``f''(z)[e_i, e_j]``, shape ``[B, D, d, d]``;
- ``weighted_hessian(f, z, w)``: the Hessian of ``<w, f(z)>``, ``[B, d, d]``.

torch: a Jacobian needs ``d`` directional derivatives, ``K`` second
derivatives ``K`` more. :data:`STRATEGIES` are four ways to get them, equal
to rounding:

- ``"reverse"``: one reverse-mode linearisation (:class:`_Pullback`), then
  one backward pass per direction (``J u`` by transposing ``J^T w``, the
  "double vjp" trick). Torch's CPU forward-mode AD costs 6-15 forward passes
  per jvp on an MLP, its backward passes far less: the default below ``d = 8``.
- ``"reverse_batched"``: the same, on the batch repeated once per direction:
  one backward pass over ``d B`` rows instead of ``d`` passes over ``B``
  (fewer, larger kernels; ``d`` times the graph memory).
- ``"forward"``: one :func:`torch.func.jvp` per direction (jvp of a jvp for
  second derivatives); no graph is kept.
- ``"forward_batched"``: one :func:`torch.func.jvp` over the batch repeated
  once per direction (``d`` times the activation memory).

Which is cheapest depends on the decoder, ``d``, ``B``, the dtype and the
device; :class:`~geomstats_pullback.decoders.TorchDecoder` times them once
and caches the choice. Where the caller records gradients (grad mode on),
only the forward strategies compose with the outer autograd: both reverse
strategies run as ``"forward_batched"``.
"""

import autograd
import autograd.numpy as anp
import torch
from torch.func import jvp as _torch_jvp

#: The torch Jacobian strategies, in the order they are tried.
STRATEGIES = ("reverse", "reverse_batched", "forward", "forward_batched")


def _basis(z):
    """The ``d`` basis directions at every point, ``[d, B, d]``."""
    n_batch, dim = z.shape
    eye = torch.eye(dim, dtype=z.dtype, device=z.device)
    return eye[:, None, :].expand(dim, n_batch, dim).contiguous()


def _repeat(z, times):
    """``z [B, d]`` stacked ``times`` times, ``[times * B, d]``.

    ``repeat``, not ``expand``: forward-mode AD refuses inputs whose elements
    share memory (an expanded view stays one when ``B == 1``).
    """
    return z.repeat(times, 1)


def _grad(outputs, inputs, grad_outputs, **kwargs):
    """``torch.autograd.grad`` for one input; zeros where ``outputs`` does not depend on it."""
    if not outputs.requires_grad:
        return torch.zeros_like(inputs)
    return torch.autograd.grad(outputs, inputs, grad_outputs, materialize_grads=True, **kwargs)[0]


class _Pullback:
    """Reverse-mode linearisation of ``f`` at ``z``: first and second derivatives by transposition.

    ``pull = J(z)^T w`` is built as a graph that is linear in a dummy
    cotangent ``w``; differentiating it with respect to ``w`` in a direction
    ``u`` gives ``J u`` (the "double vjp" trick), and differentiating ``J u``
    again with respect to ``z`` the same way gives ``f''[u, .]``. Every step is
    an ordinary backward pass, which torch runs faster than its forward-mode
    AD (``torch.func.jvp``) on CPU; the cost of each derivative is a small
    multiple of one forward pass, whatever the data dimension ``D``.
    """

    def __init__(self, f, z):
        self.z = z.detach().requires_grad_(True)
        with torch.enable_grad():
            self.value = f(self.z)
            self.cotangent = torch.zeros_like(self.value, requires_grad=True)
            self.pull = _grad(self.value, self.z, self.cotangent, create_graph=True)  # [B, d]

    def push(self, u, *, create_graph=False):
        """``J u``, ``[B, D]`` (differentiable in ``z`` with ``create_graph``)."""
        with torch.enable_grad():
            return _grad(self.pull, self.cotangent, u, create_graph=create_graph, retain_graph=True)

    def columns(self):
        """``J``, ``[B, D, d]``: one backward pass per latent direction."""
        # Stacked as [B, d, D] (a cheap concatenation) and returned as its transposed view.
        return torch.stack([self.push(e) for e in _basis(self.z)], dim=-2).transpose(-1, -2)

    def second(self, u, directions):
        """``f''[u, w_k]`` for ``directions [K, B, d]``: ``[K, B, D]``."""
        with torch.enable_grad():
            pushed = self.push(u, create_graph=True)  # J u as a function of z
            cotangent = torch.zeros_like(pushed, requires_grad=True)
            pull = _grad(pushed, self.z, cotangent, create_graph=True)  # f''[u, .]^T cotangent
            return torch.stack([_grad(pull, cotangent, w, retain_graph=True) for w in directions])


def _forward_second(f, z, u, w):
    """``f''(z)[u, w]`` as a jvp of a jvp, ``[B, D]``."""

    def directional(x):
        return _torch_jvp(f, (x,), (u,))[1]

    return _torch_jvp(directional, (z,), (w,))[1]


def _columns_from_batch(pushed, n_batch, dim):
    """``[d*B, D]`` directional derivatives (direction-major) as ``J [B, D, d]``."""
    return pushed.reshape(dim, n_batch, -1).permute(1, 2, 0)


def _jacobian(f, z, strategy):
    n_batch, dim = z.shape
    if strategy == "reverse":
        return _Pullback(f, z).columns()
    if strategy == "forward":
        return torch.stack([_torch_jvp(f, (z,), (e,))[1] for e in _basis(z)], dim=-1)
    basis = _basis(z).reshape(dim * n_batch, dim)  # [d*B, d], direction-major
    if strategy == "reverse_batched":
        return _columns_from_batch(_Pullback(f, _repeat(z, dim)).push(basis), n_batch, dim)
    return _columns_from_batch(_torch_jvp(f, (_repeat(z, dim),), (basis,))[1], n_batch, dim)


def _second(f, z, u, directions, strategy):
    n_dirs, n_batch, dim = directions.shape
    if strategy == "reverse":
        return _Pullback(f, z).second(u, directions)
    if strategy == "forward":
        return torch.stack([_forward_second(f, z, u, w) for w in directions])
    points, first = _repeat(z, n_dirs), _repeat(u, n_dirs)  # [K*B, d]
    flat = directions.reshape(n_dirs * n_batch, dim)
    if strategy == "reverse_batched":
        out = _Pullback(f, points).second(first, flat[None])[0]
    else:
        out = _forward_second(f, points, first, flat)
    return out.reshape(n_dirs, n_batch, -1)


def _effective(strategy):
    """The strategy that runs: under grad mode, a forward one."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}.")
    if torch.is_grad_enabled():
        return "forward_batched" if strategy.startswith("reverse") else strategy
    return strategy


class TorchDiff:
    """Derivatives of a torch flat decoder, by one of :data:`STRATEGIES` (``"reverse"`` by default)."""

    strategies = STRATEGIES

    @staticmethod
    def jvp(f, z, v):
        """Value and Jacobian-vector product, each ``[B, D]``."""
        if torch.is_grad_enabled():
            return _torch_jvp(f, (z,), (v,))
        linear = _Pullback(f, z)
        return linear.value.detach(), linear.push(v)

    @staticmethod
    def jacobian(f, z, *, strategy="reverse"):
        """Jacobian ``[B, D, d]``: ``d`` directional derivatives."""
        return _jacobian(f, z, _effective(strategy))

    @staticmethod
    def second_derivative(f, z, u, v, *, strategy="reverse"):
        """``f''(z)[u, v]``, ``[B, D]``."""
        return _second(f, z, u, v[None], _effective(strategy))[0]

    @staticmethod
    def jacobian_and_second(f, z, u, directions, *, strategy="reverse"):
        """``J(z)`` ``[B, D, d]`` and ``f''(z)[u, w_k]`` ``[K, B, D]`` for ``directions [K, B, d]``.

        ``"reverse"`` serves both from one linearisation.
        """
        strategy = _effective(strategy)
        if strategy == "reverse":
            linear = _Pullback(f, z)
            return linear.columns(), linear.second(u, directions)
        return _jacobian(f, z, strategy), _second(f, z, u, directions, strategy)

    @staticmethod
    def hessian(f, z, *, strategy="reverse"):
        """All second derivatives ``f''(z)[e_i, e_j]``, ``[B, D, d, d]``: ``d`` calls of ``d`` directions."""
        strategy = _effective(strategy)
        basis = _basis(z)  # [d, B, d]
        if strategy == "reverse":
            linear = _Pullback(f, z)
            rows = [linear.second(e, basis) for e in basis]
        else:
            rows = [_second(f, z, e, basis, strategy) for e in basis]  # d x [d, B, D]
        return torch.stack(rows).permute(2, 3, 0, 1)

    @staticmethod
    def weighted_hessian(f, z, w):
        """Hessian of ``z -> <w, f(z)>`` per row, ``[B, d, d]`` (reverse over reverse)."""
        if torch.is_grad_enabled():
            return torch.einsum("bakl,ba->bkl", TorchDiff.hessian(f, z), w)
        x = z.detach().requires_grad_(True)
        with torch.enable_grad():
            gradient = _grad((f(x) * w).sum(), x, None, create_graph=True)  # [B, d]
            rows = [_grad(gradient, x, e, retain_graph=True) for e in _basis(z)]
        return torch.stack(rows, dim=-2)


class AutogradDiff:
    """Derivatives of an ``autograd.numpy`` flat decoder (forward mode; ``strategy`` is accepted and ignored)."""

    @staticmethod
    def jvp(f, z, v):
        """Value and Jacobian-vector product, each ``[B, D]``."""
        return autograd.make_jvp(f)(z)(v)

    @staticmethod
    def jacobian(f, z, *, strategy=None):
        """Jacobian ``[B, D, d]``, one jvp per latent direction."""
        dim = z.shape[-1]
        eye = anp.eye(dim)
        columns = [AutogradDiff.jvp(f, z, anp.broadcast_to(eye[i], z.shape))[1] for i in range(dim)]
        return anp.stack(columns, axis=-1)

    @staticmethod
    def second_derivative(f, z, u, v, *, strategy=None):
        """``f''(z)[u, v]`` as a jvp of a jvp, ``[B, D]``."""

        def directional(x):
            return AutogradDiff.jvp(f, x, u)[1]

        return AutogradDiff.jvp(directional, z, v)[1]

    @staticmethod
    def jacobian_and_second(f, z, u, directions, *, strategy=None):
        """``J(z)`` ``[B, D, d]`` and ``f''(z)[u, w_k]`` ``[K, B, D]`` for ``directions [K, B, d]``."""
        second = [AutogradDiff.second_derivative(f, z, u, w) for w in directions]
        return AutogradDiff.jacobian(f, z), anp.stack(second)

    @staticmethod
    def hessian(f, z, *, strategy=None):
        """All second derivatives ``f''(z)[e_i, e_j]``, ``[B, D, d, d]``."""
        dim = z.shape[-1]
        eye = anp.eye(dim)
        basis = [anp.broadcast_to(eye[i], z.shape) for i in range(dim)]
        rows = [
            anp.stack([AutogradDiff.second_derivative(f, z, basis[i], basis[j]) for j in range(dim)], axis=-1)
            for i in range(dim)
        ]
        return anp.stack(rows, axis=-2)

    @staticmethod
    def weighted_hessian(f, z, w):
        """Hessian of ``z -> <w, f(z)>`` per row, ``[B, d, d]``."""
        return anp.einsum("bakl,ba->bkl", AutogradDiff.hessian(f, z), w)
