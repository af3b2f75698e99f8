r"""Pure kernels of the pullback metric ``G(z) = J(z)^T J(z) + eps I``.

Functions of tensors only: a :class:`~geomstats_pullback.decoders.Decoder`,
flat batches of latent points ``z [B, d]`` and vectors, and the metric's
options as keywords (``eps`` for the Tikhonov term, ``rank_rtol`` for the
rank check). :class:`~geomstats_pullback.metric.PullbackMetric`, the
curvature and transport functions and the geodesic solvers call them; none
of them knows a metric object. Shapes: ``B`` points, ``d`` latent and ``D``
data dimension, ``K`` vectors per point.

With ``f''[a, b]`` the second directional derivative of the decoder, the
tangential (Christoffel) and normal parts of ``f''[a, b] = J Gamma(a, b) +
II(a, b)`` are

.. math:: \Gamma(a, b) = G^{-1} J^T f''[a, b], \qquad II(a, b) = f''[a, b] - J \Gamma(a, b),

so the geodesic equation is ``z'' = -Gamma(z', z')`` and parallel transport
along a curve ``c`` is ``w' = -Gamma(c', w)``: one Jacobian and ``K`` second
derivatives per evaluation, ``O(B (D d^2 + d^3))`` algebra on top.
"""

from typing import NamedTuple

import geomstats.backend as gs

from geomstats_pullback._arrays import eye, where
from geomstats_pullback.errors import RankDeficientJacobianError

#: ``G`` counts as singular where its smallest eigenvalue is at most this times its largest.
DEFAULT_RANK_RTOL = 1e-12


class GramSolve(NamedTuple):
    """``G^{-1} rhs`` and where ``G`` was singular."""

    solution: object  #: shape=[B, d, k]; NaN on singular points
    singular: object  #: shape=[B], bool


def gram(jac, *, eps=0.0):
    """Metric matrices ``J^T J + eps I``.

    Parameters
    ----------
    jac : array-like, shape=[B, D, d]
    eps : float

    Returns
    -------
    gram : array-like, shape=[B, d, d]
    """
    out = gs.einsum("...ai,...aj->...ij", jac, jac)
    if eps:
        out = out + eps * eye(jac.shape[-1], like=jac)
    return out


def singular_mask(gram, *, rank_rtol):
    """Where ``G`` counts as singular: smallest eigenvalue ``<= rank_rtol *`` largest.

    One symmetric eigenvalue decomposition per point, ``O(B d^3)``.

    Parameters
    ----------
    gram : array-like, shape=[B, d, d]
    rank_rtol : float

    Returns
    -------
    singular : array-like, shape=[B], bool
    """
    eigvals = gs.linalg.eigvalsh(gram)  # [B, d], ascending
    return eigvals[..., 0] <= rank_rtol * eigvals[..., -1]


def solve_gram(gram, rhs, *, rank_rtol=None):
    """``G^{-1} rhs`` by one batched solve, with a singular mask.

    Parameters
    ----------
    gram : array-like, shape=[B, d, d]
    rhs : array-like, shape=[B, d, k]
    rank_rtol : float, optional
        Check the rank first (:func:`singular_mask`); singular points get
        NaN solutions. Without it (the fast path of integrators, which check
        the rank once per solve) nothing is checked and ``singular`` flags
        the points whose solution is not finite; it costs no host sync. If
        the backend's solver refuses an exactly singular ``G``, the rank is
        checked with :data:`DEFAULT_RANK_RTOL` instead.

    Returns
    -------
    result : GramSolve
    """
    if rank_rtol is None:
        solution = _solve_unchecked(gram, rhs)
        flat = gs.reshape(solution, (solution.shape[0], solution.shape[1] * solution.shape[2]))
        return GramSolve(solution, ~gs.all(gs.abs(flat) < float("inf"), axis=-1))
    singular = singular_mask(gram, rank_rtol=rank_rtol)
    identity = eye(gram.shape[-1], like=gram)
    solution = _solve_columns(where(singular[:, None, None], identity, gram), rhs)
    return GramSolve(where(singular[:, None, None], float("nan"), solution), singular)


def _solve_columns(gram, rhs):
    """``G^{-1} rhs`` column by column (geomstats' solve takes vector right-hand sides): ``[B, d, k]``."""
    columns = gs.moveaxis(rhs, -1, -2)  # [B, k, d]
    matrices = gs.broadcast_to(gram[..., None, :, :], columns.shape + columns.shape[-1:])
    return gs.moveaxis(gs.linalg.solve(matrices, columns), -1, -2)


def _solve_unchecked(gram, rhs):
    """``G^{-1} rhs`` without a rank check; NaN rows where the backend refuses an exactly singular ``G``."""
    try:
        return _solve_columns(gram, rhs)
    except (RuntimeError, ValueError):  # torch's and numpy's LinAlgError
        return solve_gram(gram, rhs, rank_rtol=DEFAULT_RANK_RTOL).solution


def require_full_rank(singular, *, rank_rtol):
    """Raise :class:`RankDeficientJacobianError` if any point is singular.

    Parameters
    ----------
    singular : array-like, shape=[B], bool
        From :func:`singular_mask` or :func:`solve_gram`.
    rank_rtol : float
        The threshold used, for the message.
    """
    n_bad = int(gs.sum(gs.cast(singular, gs.int64)))
    if n_bad:
        raise RankDeficientJacobianError(
            f"The decoder's Jacobian is rank deficient at {n_bad} of {singular.shape[0]} "
            f"latent point(s) (smallest/largest eigenvalue of G <= {rank_rtol:g}): "
            "the pullback metric is degenerate there. Pass eps > 0 to the metric "
            "(DecoderManifold(..., metric_kwargs={'eps': 1e-8})) to regularise it."
        )


def solve_gram_checked(gram, rhs, *, rank_rtol):
    """``G^{-1} rhs``, raising :class:`RankDeficientJacobianError` where ``G`` is singular.

    Parameters
    ----------
    gram : array-like, shape=[B, d, d]
    rhs : array-like, shape=[B, d, k]
    rank_rtol : float

    Returns
    -------
    solution : array-like, shape=[B, d, k]
    """
    solution, singular = solve_gram(gram, rhs, rank_rtol=rank_rtol)
    require_full_rank(singular, rank_rtol=rank_rtol)
    return solution


def cometric(jac, *, eps=0.0, rank_rtol):
    """Inverse metric matrices ``G^{-1}``, checked for rank.

    Parameters
    ----------
    jac : array-like, shape=[B, D, d]

    Returns
    -------
    cometric : array-like, shape=[B, d, d]
    """
    metric_matrix = gram(jac, eps=eps)
    identity = gs.broadcast_to(eye(jac.shape[-1], like=jac), metric_matrix.shape)
    return solve_gram_checked(metric_matrix, identity, rank_rtol=rank_rtol)


def second_derivatives(decoder, base_point, vecs_a, vecs_b):
    """``f''(z)[a_k, b_k]`` for ``K`` pairs per point, in one decoder call.

    Parameters
    ----------
    decoder : Decoder
    base_point : array-like, shape=[B, d]
    vecs_a, vecs_b : array-like, shape=[B, K, d]

    Returns
    -------
    second : array-like, shape=[B, K, D]
    """
    n_batch, n_pairs, dim = vecs_a.shape
    points = gs.reshape(gs.broadcast_to(base_point[:, None, :], vecs_a.shape), (-1, dim))
    second = decoder.second_derivative(points, gs.reshape(vecs_a, (-1, dim)), gs.reshape(vecs_b, (-1, dim)))
    return gs.reshape(second, (n_batch, n_pairs, -1))


def christoffel_contraction(jac, second, *, eps=0.0, rank_rtol=None):
    """Tangential part of second derivatives, ``Gamma(a, b) = G^{-1} J^T f''[a, b]``.

    Parameters
    ----------
    jac : array-like, shape=[B, D, d]
    second : array-like, shape=[B, K, D]
        ``f''[a_k, b_k]``.
    eps : float
    rank_rtol : float, optional
        Raise :class:`RankDeficientJacobianError` where ``G`` is singular;
        unchecked without it (see :func:`solve_gram`).

    Returns
    -------
    tangential : array-like, shape=[B, K, d]
    """
    rhs = gs.einsum("bai,bka->bik", jac, second)  # [B, d, K]
    metric_matrix = gram(jac, eps=eps)
    if rank_rtol is None:
        solution = _solve_unchecked(metric_matrix, rhs)
    else:
        solution = solve_gram_checked(metric_matrix, rhs, rank_rtol=rank_rtol)
    return gs.einsum("bik->bki", solution)


def gauss_split(jac, second, *, eps=0.0, rank_rtol=None):
    """Split second derivatives into tangential and normal parts.

    ``f''[a, b] = J Gamma(a, b) + II(a, b)``: the tangential part in latent
    coordinates is the Christoffel contraction (:func:`christoffel_contraction`),
    the normal part the second fundamental form. The Tikhonov term ``eps I``
    is the pullback through the augmented immersion ``z -> (f(z), sqrt(eps) z)``;
    with ``eps > 0`` the normal part lives in that augmented space.

    Parameters
    ----------
    jac : array-like, shape=[B, D, d]
    second : array-like, shape=[B, K, D]
    eps, rank_rtol : see :func:`christoffel_contraction`

    Returns
    -------
    tangential : array-like, shape=[B, K, d]
        ``Gamma(a_k, b_k)``.
    normal : array-like, shape=[B, K, D] or [B, K, D + d]
        ``II(a_k, b_k)`` in the (augmented, if ``eps > 0``) data space.
    """
    tangential = christoffel_contraction(jac, second, eps=eps, rank_rtol=rank_rtol)
    normal = second - gs.einsum("bai,bki->bka", jac, tangential)  # [B, K, D]
    if eps:
        normal = gs.concatenate([normal, -(eps**0.5) * tangential], axis=-1)
    return tangential, normal


def geodesic_acceleration(decoder, position, velocity, *, eps=0.0, rank_rtol=None):
    """Geodesic acceleration ``-G^{-1} J^T f''[v, v]``.

    One linearisation of the decoder (Jacobian and second derivative
    together).

    Parameters
    ----------
    decoder : Decoder
    position, velocity : array-like, shape=[B, d]
    eps : float
    rank_rtol : float, optional
        Check the rank of ``G`` (raises); unchecked without it.

    Returns
    -------
    acceleration : array-like, shape=[B, d]
    """
    jac, second = decoder.jacobian_and_second(position, velocity, velocity[None])  # [B, D, d], [1, B, D]
    tangential = christoffel_contraction(jac, gs.moveaxis(second, 0, 1), eps=eps, rank_rtol=rank_rtol)
    return -tangential[:, 0]


def geodesic_rhs(decoder, state, *, eps=0.0, rank_rtol=None):
    """Right-hand side of the geodesic ODE, ``(v, -Gamma(v, v))``.

    Parameters
    ----------
    decoder : Decoder
    state : array-like, shape=[B, 2, d]
        Positions ``state[:, 0]`` and velocities ``state[:, 1]``.
    eps, rank_rtol : see :func:`geodesic_acceleration`

    Returns
    -------
    derivative : array-like, shape=[B, 2, d]
    """
    position, velocity = state[:, 0], state[:, 1]
    acceleration = geodesic_acceleration(decoder, position, velocity, eps=eps, rank_rtol=rank_rtol)
    return gs.stack([velocity, acceleration], axis=1)


def transport_rhs(decoder, state, *, eps=0.0, rank_rtol=None):
    """Right-hand side of the geodesic ODE with ``k`` vectors transported along it.

    ``c'' = -Gamma(c', c')`` and ``w_i' = -Gamma(c', w_i)``, all from one
    linearisation of the decoder.

    Parameters
    ----------
    decoder : Decoder
    state : array-like, shape=[B, 2 + k, d]
        Positions, velocities, then the transported vectors.
    eps, rank_rtol : see :func:`geodesic_acceleration`

    Returns
    -------
    derivative : array-like, shape=[B, 2 + k, d]
    """
    position, velocity, vecs = state[:, 0], state[:, 1], state[:, 2:]  # [B, d], [B, d], [B, k, d]
    directions = gs.moveaxis(gs.concatenate([velocity[:, None], vecs], axis=1), 1, 0)  # [1 + k, B, d]
    jac, second = decoder.jacobian_and_second(position, velocity, directions)
    gamma = christoffel_contraction(jac, gs.moveaxis(second, 0, 1), eps=eps, rank_rtol=rank_rtol)  # Gamma(v, v), (v, w_i)
    return gs.concatenate([velocity[:, None], -gamma], axis=1)


def require_full_rank_at(decoder, points, *, eps=0.0, rank_rtol=DEFAULT_RANK_RTOL):
    """Raise :class:`RankDeficientJacobianError` if ``G`` is singular at any of ``points``.

    One Jacobian call and one eigenvalue decomposition per point.

    Parameters
    ----------
    decoder : Decoder
    points : array-like, shape=[B, d]
    eps, rank_rtol : float
    """
    singular = singular_mask(gram(decoder.jacobian(points), eps=eps), rank_rtol=rank_rtol)
    require_full_rank(singular, rank_rtol=rank_rtol)
