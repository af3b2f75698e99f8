"""Batched solver for symmetric block-tridiagonal systems with ``d x d`` blocks.

The Newton system of the discrete geodesic energy couples each interior node
only with its two neighbours, so its matrix is block tridiagonal:

.. math::

    H = \\begin{pmatrix} A_0 & C_0 & & \\\\ C_0^T & A_1 & C_1 & \\\\
        & \\ddots & \\ddots & \\ddots \\\\ & & C_{n-2}^T & A_{n-1} \\end{pmatrix}

Block LDL^T elimination (block Thomas algorithm) costs ``O(n d^3)`` per system,
vectorised over a batch of systems; the loop runs over the ``n`` block rows,
never over the batch. Pivots are inverted through their eigendecomposition,
which never raises and tells, per system, whether ``H`` is positive definite
(all pivots are, by Sylvester's law of inertia). Small systems of torch
tensors (``n d <=`` :data:`DENSE_MAX_SIZE`) are instead assembled densely
and factorised by one batched Cholesky decomposition: ``O((n d)^3)``
arithmetic, but no Python loop over the blocks, which is what costs most
when ``d`` is small.
"""

from typing import NamedTuple

import geomstats.backend as gs
import torch

from geomstats_pullback import _arrays

#: Largest number of unknowns ``n d`` of a system factorised as one dense Cholesky decomposition.
DENSE_MAX_SIZE = 256
#: A matrix is reported positive definite when its smallest pivot exceeds this times its largest diagonal entry.
PIVOT_RTOL = 1e-13


class BlockFactors(NamedTuple):
    """Block LDL^T factors: ``S_k^{-1}`` ``[B, n, d, d]`` and ``S_k^{-1} C_k`` ``[B, n - 1, d, d]``."""

    inv_pivots: object
    coupling: object


class DenseFactor(NamedTuple):
    """Cholesky factor ``L`` ``[B, n d, n d]`` of the assembled matrices."""

    cholesky: object


def factor(diag, upper):
    """Block LDL^T factorisation of a batch of symmetric block-tridiagonal matrices.

    Parameters
    ----------
    diag : array-like, shape=[B, n, d, d]
        Diagonal blocks ``A_k`` (symmetric).
    upper : array-like, shape=[B, n - 1, d, d]
        Super-diagonal blocks ``C_k = H[k, k + 1]``.

    Returns
    -------
    factors : BlockFactors or DenseFactor
        For :func:`solve`.
    positive : array-like, shape=[B], bool
        Whether each matrix is positive definite. Where it is not, the
        factors are meaningless.
    """
    n_blocks, dim = diag.shape[1], diag.shape[-1]
    diagonals = gs.abs(gs.einsum("bkii->bki", diag))
    largest_diag = gs.amax(gs.reshape(diagonals, (diag.shape[0], -1)), axis=1)  # [B]
    if n_blocks * dim <= DENSE_MAX_SIZE and torch.is_tensor(diag):
        return _dense_factor(diag, upper, largest_diag)
    inv_pivots, coupling, smallest = [], [], []
    pivot = diag[:, 0]
    for k in range(n_blocks):
        if k > 0:
            # S_k = A_k - C_{k-1}^T S_{k-1}^{-1} C_{k-1}
            pivot = diag[:, k] - gs.einsum("bji,bjk->bik", upper[:, k - 1], coupling[-1])
        eigvals, eigvecs = gs.linalg.eigh((pivot + gs.einsum("bij->bji", pivot)) / 2)
        smallest.append(eigvals[:, 0])
        safe = gs.where(eigvals > 0, eigvals, gs.ones_like(eigvals))
        inverse = gs.einsum("bij,bj,bkj->bik", eigvecs, 1 / safe, eigvecs)  # [B, d, d]
        inv_pivots.append(inverse)
        if k < n_blocks - 1:
            coupling.append(gs.einsum("bij,bjk->bik", inverse, upper[:, k]))  # S_k^{-1} C_k
    smallest = gs.stack(smallest, axis=1)  # [B, n]
    positive = gs.all(smallest > PIVOT_RTOL * largest_diag[:, None], axis=1)
    inv_pivots = gs.stack(inv_pivots, axis=1)
    coupling = gs.stack(coupling, axis=1) if coupling else diag[:, :0]
    return BlockFactors(inv_pivots, coupling), positive


def _dense_factor(diag, upper, largest_diag):
    """:func:`factor` of small systems: the assembled ``[B, n d, n d]`` matrices' Cholesky factors."""
    n_pairs, n_blocks, dim, _ = diag.shape
    blocks = _arrays.zeros((n_pairs, n_blocks, n_blocks, dim, dim), like=diag)  # [B, n, n, d, d]
    rows = torch.arange(n_blocks, device=diag.device)
    blocks[:, rows, rows] = diag
    blocks[:, rows[:-1], rows[1:]] = upper
    blocks[:, rows[1:], rows[:-1]] = upper.transpose(-1, -2)
    dense = blocks.permute(0, 1, 3, 2, 4).reshape(n_pairs, n_blocks * dim, n_blocks * dim)
    cholesky, info = torch.linalg.cholesky_ex(dense)
    pivots = torch.diagonal(cholesky, dim1=-2, dim2=-1) ** 2  # [B, n d]
    positive = (info == 0) & torch.all(pivots > PIVOT_RTOL * largest_diag[:, None], dim=1)
    return DenseFactor(cholesky), positive


def solve(factors, rhs):
    """Solve ``H x = rhs`` with the factors of :func:`factor`.

    Parameters
    ----------
    factors : BlockFactors or DenseFactor
        Output of :func:`factor`.
    rhs : array-like, shape=[B, n, d, r]
        Right-hand sides, ``r`` columns per system.

    Returns
    -------
    x : array-like, shape=[B, n, d, r]
    """
    if isinstance(factors, DenseFactor):
        n_pairs, n_blocks, dim, n_rhs = rhs.shape
        flat = torch.cholesky_solve(rhs.reshape(n_pairs, n_blocks * dim, n_rhs), factors.cholesky)
        return flat.reshape(rhs.shape)
    inv_pivots, coupling = factors
    n_blocks = inv_pivots.shape[1]
    # Forward elimination: y_k = rhs_k - C_{k-1}^T S_{k-1}^{-1} y_{k-1}.
    eliminated = [rhs[:, 0]]
    for k in range(1, n_blocks):
        eliminated.append(rhs[:, k] - gs.einsum("bji,bjr->bir", coupling[:, k - 1], eliminated[-1]))
    # Back substitution: x_k = S_k^{-1} y_k - S_k^{-1} C_k x_{k+1}.
    x = [gs.einsum("bij,bjr->bir", inv_pivots[:, -1], eliminated[-1])]
    for k in range(n_blocks - 2, -1, -1):
        x.append(
            gs.einsum("bij,bjr->bir", inv_pivots[:, k], eliminated[k])
            - gs.einsum("bij,bjr->bir", coupling[:, k], x[-1])
        )
    return gs.stack(x[::-1], axis=1)
