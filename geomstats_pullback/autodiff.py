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

torch: where nobody records gradients (the usual case: geometry of a fixed
decoder), derivatives come from reverse mode by transposition
(:class:`_Pullback`): torch's CPU forward-mode AD costs 6-15 forward passes
per jvp on an MLP, its backward passes far less. Where the caller records
gradients (grad mode on), :mod:`torch.func`'s forward mode is used: it composes
with an outer autograd.
"""

import autograd
import autograd.numpy as anp
import torch
from torch.func import jvp as _torch_jvp


def _basis_batch(z, eye):
    """Repeat ``z [B, d]`` once per basis vector: ``([d*B, d], [d*B, d])``."""
    n_batch, dim = z.shape
    # repeat, not expand: forward-mode AD refuses inputs whose elements share memory
    # (an expanded view stays one when n_batch == 1).
    points = z.repeat(dim, 1)  # [d*B, d]
    directions = eye.repeat_interleave(n_batch, dim=0)  # [d*B, d]
    return points, directions


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
        n_batch, dim = self.z.shape
        eye = torch.eye(dim, dtype=self.z.dtype, device=self.z.device)
        # Stacked as [B, d, D] (a cheap concatenation) and returned as its transposed view.
        columns = [self.push(eye[i].expand(n_batch, dim).contiguous()) for i in range(dim)]
        return torch.stack(columns, dim=-2).transpose(-1, -2)

    def second(self, u, directions):
        """``f''[u, w_k]`` for ``directions [K, B, d]``: ``[K, B, D]``."""
        with torch.enable_grad():
            pushed = self.push(u, create_graph=True)  # J u as a function of z
            cotangent = torch.zeros_like(pushed, requires_grad=True)
            pull = _grad(pushed, self.z, cotangent, create_graph=True)  # f''[u, .]^T cotangent
            return torch.stack([_grad(pull, cotangent, w, retain_graph=True) for w in directions])


class TorchDiff:
    """Derivatives of a torch flat decoder (reverse mode, or ``torch.func`` under grad mode)."""

    @staticmethod
    def jvp(f, z, v):
        """Value and Jacobian-vector product, each ``[B, D]``."""
        if torch.is_grad_enabled():
            return _torch_jvp(f, (z,), (v,))
        linear = _Pullback(f, z)
        return linear.value.detach(), linear.push(v)

    @staticmethod
    def jacobian(f, z):
        """Jacobian ``[B, D, d]``."""
        if not torch.is_grad_enabled():
            return _Pullback(f, z).columns()
        n_batch, dim = z.shape
        eye = torch.eye(dim, dtype=z.dtype, device=z.device)
        points, directions = _basis_batch(z, eye)
        _, columns = _torch_jvp(f, (points,), (directions,))  # [d*B, D]
        return columns.reshape(dim, n_batch, -1).permute(1, 2, 0)

    @staticmethod
    def second_derivative(f, z, u, v):
        """``f''(z)[u, v]``, ``[B, D]``."""
        if not torch.is_grad_enabled():
            return _Pullback(f, z).second(u, v[None])[0]

        def directional(x):
            return _torch_jvp(f, (x,), (u,))[1]

        return _torch_jvp(directional, (z,), (v,))[1]

    @staticmethod
    def jacobian_and_second(f, z, u, directions):
        """``J(z)`` ``[B, D, d]`` and ``f''(z)[u, w_k]`` ``[K, B, D]`` for ``directions [K, B, d]``."""
        if not torch.is_grad_enabled():
            linear = _Pullback(f, z)
            return linear.columns(), linear.second(u, directions)
        second = [TorchDiff.second_derivative(f, z, u, w) for w in directions]
        return TorchDiff.jacobian(f, z), torch.stack(second)

    @staticmethod
    def hessian(f, z):
        """All second derivatives ``f''(z)[e_i, e_j]``, ``[B, D, d, d]``."""
        n_batch, dim = z.shape
        eye = torch.eye(dim, dtype=z.dtype, device=z.device)
        if not torch.is_grad_enabled():
            linear = _Pullback(f, z)
            basis = eye[:, None, :].expand(dim, n_batch, dim).contiguous()  # [d, B, d]
            rows = [linear.second(basis[i], basis) for i in range(dim)]  # d x [d, B, D]
            return torch.stack(rows).permute(2, 3, 0, 1)
        rows, cols = torch.triu_indices(dim, dim)
        n_pairs = rows.shape[0]
        points = z.repeat(n_pairs, 1)  # [P*B, d]
        u = eye[rows].repeat_interleave(n_batch, dim=0)
        v = eye[cols].repeat_interleave(n_batch, dim=0)
        upper = TorchDiff.second_derivative(f, points, u, v)
        upper = upper.reshape(n_pairs, n_batch, -1)  # [P, B, D]
        out = z.new_zeros((n_batch, upper.shape[-1], dim, dim))
        out[:, :, rows, cols] = upper.permute(1, 2, 0)
        out[:, :, cols, rows] = upper.permute(1, 2, 0)
        return out

    @staticmethod
    def weighted_hessian(f, z, w):
        """Hessian of ``z -> <w, f(z)>`` per row, ``[B, d, d]`` (reverse over reverse)."""
        if torch.is_grad_enabled():
            return torch.einsum("bakl,ba->bkl", TorchDiff.hessian(f, z), w)
        n_batch, dim = z.shape
        x = z.detach().requires_grad_(True)
        eye = torch.eye(dim, dtype=z.dtype, device=z.device)
        with torch.enable_grad():
            gradient = _grad((f(x) * w).sum(), x, None, create_graph=True)  # [B, d]
            rows = [_grad(gradient, x, eye[i].expand(n_batch, dim), retain_graph=True) for i in range(dim)]
        return torch.stack(rows, dim=-2)


class AutogradDiff:
    """Derivatives of an ``autograd.numpy`` flat decoder."""

    @staticmethod
    def jvp(f, z, v):
        """Value and Jacobian-vector product, each ``[B, D]``."""
        return autograd.make_jvp(f)(z)(v)

    @staticmethod
    def jacobian(f, z):
        """Jacobian ``[B, D, d]``, one jvp per latent direction."""
        dim = z.shape[-1]
        eye = anp.eye(dim)
        columns = [AutogradDiff.jvp(f, z, anp.broadcast_to(eye[i], z.shape))[1] for i in range(dim)]
        return anp.stack(columns, axis=-1)

    @staticmethod
    def second_derivative(f, z, u, v):
        """``f''(z)[u, v]`` as a jvp of a jvp, ``[B, D]``."""

        def directional(x):
            return AutogradDiff.jvp(f, x, u)[1]

        return AutogradDiff.jvp(directional, z, v)[1]

    @staticmethod
    def jacobian_and_second(f, z, u, directions):
        """``J(z)`` ``[B, D, d]`` and ``f''(z)[u, w_k]`` ``[K, B, D]`` for ``directions [K, B, d]``."""
        second = [AutogradDiff.second_derivative(f, z, u, w) for w in directions]
        return AutogradDiff.jacobian(f, z), anp.stack(second)

    @staticmethod
    def hessian(f, z):
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
