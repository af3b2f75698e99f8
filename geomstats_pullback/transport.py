r"""Parallel transport on a pullback metric: pure functions of the decoder.

Along a curve ``c`` the Levi-Civita transport of ``w`` solves

.. math:: \dot w = -\Gamma(\dot c, w) = -G^{-1} J^T f''(c)[\dot c, w],

one second directional derivative of the decoder per step. Two kernels:

- :func:`geodesic_transport` integrates it together with the geodesic
  equation (``metric.parallel_transport``): position, velocity and the
  transported vectors share one state, stepped by the metric's exp
  integrator (the same steps as ``metric.exp``).
- :func:`segment_propagators` gives the linear transport maps of the
  segments of a discrete latent path, by Shao et al.'s projection scheme or
  by the ODE on the piecewise-linear path
  (:func:`geomstats_pullback.analogies.transport_along_path` chains them).
"""

import geomstats.backend as gs

from geomstats_pullback._arrays import asarray, eye
from geomstats_pullback.kernels import (
    DEFAULT_RANK_RTOL,
    christoffel_contraction,
    gram,
    require_full_rank_at,
    second_derivatives,
    solve_gram_checked,
    transport_rhs,
)

PATH_METHODS = ("ode", "projection")


def geodesic_transport(
    decoder, tangent_vec, base_point, direction, *, integrator, eps=0.0, rank_rtol=DEFAULT_RANK_RTOL
):
    """Transport vectors along the geodesics ``t -> exp(t v, z)``, ``t in [0, 1]``.

    Integrates the state ``(c, c', w_1..w_k)`` with ``c'' = -Gamma(c', c')``
    and ``w_i' = -Gamma(c', w_i)``, all terms of a step from one linearisation
    of the decoder (:meth:`~geomstats_pullback.decoders.Decoder.jacobian_and_second`).

    The rank of ``G`` is checked at both ends of each geodesic, not at every
    step (as for ``exp``, :mod:`geomstats_pullback.geodesics.exp`).

    Parameters
    ----------
    decoder : Decoder
    tangent_vec : array-like, shape=[B, k, d]
        ``k`` vectors at each base point.
    base_point : array-like, shape=[B, d]
    direction : array-like, shape=[B, d]
    integrator : geomstats ODEIVPIntegrator
        Fixed-step integrator (``metric.exp_solver.integrator``).
    eps, rank_rtol : float
        The metric's Tikhonov term and rank tolerance (:mod:`~geomstats_pullback.kernels`).

    Returns
    -------
    transported : array-like, shape=[B, k, d]
        The vectors at ``exp(v, z)``.
    """
    require_full_rank_at(decoder, base_point, eps=eps, rank_rtol=rank_rtol)
    state = gs.concatenate([base_point[:, None], direction[:, None], tangent_vec], axis=1)  # [B, 2 + k, d]
    final = integrator.integrate(lambda y, _: transport_rhs(decoder, y, eps=eps), state).get_last_y()
    require_full_rank_at(decoder, final[:, 0], eps=eps, rank_rtol=rank_rtol)
    return final[:, 2:]


def segment_propagators(decoder, path, method, *, eps=0.0, rank_rtol=DEFAULT_RANK_RTOL):
    """Linear maps ``T_i: T_{z_i} -> T_{z_{i+1}}`` of the segments of paths ``[B, N, d]``: ``[B, N - 1, d, d]``.

    ``projection``: ``J_{i+1}^+ J_i = G_{i+1}^{-1} J_{i+1}^T J_i`` (Shao et al.).
    ``ode``: one RK4 step of ``w' = -A(t) w`` along the segment
    ``z_i + t (z_{i+1} - z_i)``, with ``A(t) = G^{-1} J^T f''[z_{i+1} - z_i, .]``
    evaluated at ``t = 0, 1/2, 1``: all decoder calls in one batch.
    ``eps`` and ``rank_rtol`` are the metric's (:mod:`~geomstats_pullback.kernels`).
    """
    n_batch, n_nodes, dim = path.shape
    identity = eye(dim, like=path)
    if method == "projection":
        jac = decoder.jacobian(gs.reshape(path, (-1, dim)))
        jac = gs.reshape(jac, (n_batch, n_nodes) + jac.shape[1:])  # [B, N, D, d]
        cross = gs.einsum("bnai,bnaj->bnij", jac[:, 1:], jac[:, :-1]) + eps * identity  # [B, N-1, d, d]
        next_gram = gram(gs.reshape(jac[:, 1:], (-1,) + jac.shape[2:]), eps=eps)
        maps = solve_gram_checked(next_gram, gs.reshape(cross, (-1, dim, dim)), rank_rtol=rank_rtol)
        return gs.reshape(maps, (n_batch, n_nodes - 1, dim, dim))
    steps = path[:, 1:] - path[:, :-1]  # [B, N-1, d]
    times = asarray([0.0, 0.5, 1.0], like=path)
    nodes = path[:, :-1, None] + times[:, None] * steps[:, :, None]  # [B, N-1, 3, d]
    nodes = gs.reshape(nodes, (-1, dim))
    steps = gs.reshape(gs.broadcast_to(steps[:, :, None], (n_batch, n_nodes - 1, 3, dim)), (-1, dim))
    basis = gs.broadcast_to(identity, (nodes.shape[0], dim, dim))
    jac = decoder.jacobian(nodes)
    second = second_derivatives(decoder, nodes, gs.broadcast_to(steps[:, None], basis.shape), basis)
    gamma = christoffel_contraction(jac, second, eps=eps, rank_rtol=rank_rtol)  # [M, d (column m), d]: Gamma(step, e_m)
    gen = gs.reshape(-gs.einsum("bmi->bim", gamma), (n_batch, n_nodes - 1, 3, dim, dim))
    a_start, a_mid, a_end = gen[:, :, 0], gen[:, :, 1], gen[:, :, 2]  # w' = a w
    k1 = a_start
    k2 = a_mid + gs.matmul(a_mid, k1) / 2
    k3 = a_mid + gs.matmul(a_mid, k2) / 2
    k4 = a_end + gs.matmul(a_end, k3)
    return identity + (k1 + 2 * k2 + 2 * k3 + k4) / 6


