"""Matrix-free derivatives of a flat decoder ``f: [B, d] -> [B, D]``.

Pure functions, one implementation per array library: ``torch`` (forward mode
through :mod:`torch.func`) and ``autograd`` (for decoders written with
``autograd.numpy``). A flat decoder maps a batch of latent points row by row,
so the derivative of the batched map in a batched direction is the batch of
per-row derivatives: one call serves all rows.

Every function takes ``f`` and arrays of the library's type:

- ``jvp(f, z, v)``: ``(f(z), J(z) v)``, shapes ``[B, D]``;
- ``jacobian(f, z)``: ``J(z)``, shape ``[B, D, d]`` (``d`` jvps in one call);
- ``second_derivative(f, z, u, v)``: ``f''(z)[u, v]``, shape ``[B, D]``
  (a jvp of a jvp, never a Hessian);
- ``hessian(f, z)``: all ``f''(z)[e_i, e_j]``, shape ``[B, D, d, d]``.
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


class TorchDiff:
    """Derivatives of a torch flat decoder (forward mode, ``torch.func``)."""

    @staticmethod
    def jvp(f, z, v):
        """Value and Jacobian-vector product, each ``[B, D]``."""
        return _torch_jvp(f, (z,), (v,))

    @staticmethod
    def jacobian(f, z):
        """Jacobian ``[B, D, d]`` from ``d`` jvps batched in one call."""
        n_batch, dim = z.shape
        eye = torch.eye(dim, dtype=z.dtype, device=z.device)
        points, directions = _basis_batch(z, eye)
        _, columns = _torch_jvp(f, (points,), (directions,))  # [d*B, D]
        return columns.reshape(dim, n_batch, -1).permute(1, 2, 0)

    @staticmethod
    def second_derivative(f, z, u, v):
        """``f''(z)[u, v]`` as a jvp of a jvp, ``[B, D]``."""

        def directional(x):
            return _torch_jvp(f, (x,), (u,))[1]

        return _torch_jvp(directional, (z,), (v,))[1]

    @staticmethod
    def hessian(f, z):
        """All second derivatives ``f''(z)[e_i, e_j]``, ``[B, D, d, d]``."""
        n_batch, dim = z.shape
        eye = torch.eye(dim, dtype=z.dtype, device=z.device)
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
