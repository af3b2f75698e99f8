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
(all pivots are, by Sylvester's law of inertia).
"""

import geomstats.backend as gs


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
    factors : tuple
        ``(inv_pivots [B, n, d, d], coupling [B, n - 1, d, d])`` for :func:`solve`.
    positive : array-like, shape=[B], bool
        Whether each matrix is positive definite. Where it is not, the
        factors are meaningless.
    """
    n_blocks = diag.shape[1]
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
    diagonals = gs.abs(gs.einsum("bkii->bki", diag))
    largest_diag = gs.amax(gs.reshape(diagonals, (diag.shape[0], -1)), axis=1)  # [B]
    positive = gs.all(smallest > 1e-13 * largest_diag[:, None], axis=1)
    inv_pivots = gs.stack(inv_pivots, axis=1)
    coupling = gs.stack(coupling, axis=1) if coupling else diag[:, :0]
    return (inv_pivots, coupling), positive


def solve(factors, rhs):
    """Solve ``H x = rhs`` with the factors of :func:`factor`.

    Parameters
    ----------
    factors : tuple
        Output of :func:`factor`.
    rhs : array-like, shape=[B, n, d, r]
        Right-hand sides, ``r`` columns per system.

    Returns
    -------
    x : array-like, shape=[B, n, d, r]
    """
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
