r"""Parallel transport on a pullback metric, and analogies.

Along a curve ``c`` the Levi-Civita transport of ``w`` solves

.. math:: \dot w = -\Gamma(\dot c, w) = -G^{-1} J^T f''(c)[\dot c, w],

one second directional derivative of the decoder per step. Three ways to use it:

- :func:`geodesic_transport` integrates it together with the geodesic
  equation (``metric.parallel_transport``): position, velocity and the
  transported vectors share one state, stepped by the metric's exp
  integrator (the same steps as ``metric.exp``).
- :func:`transport_along_path` transports along a given discrete latent path
  (data codes, a discrete geodesic), by Shao et al.'s projection scheme or by
  the ODE on the piecewise-linear path.
- :func:`analogy`: ``b' = exp_b(PT_{a -> b}(log_a a'))``.
"""

import geomstats.backend as gs

from geomstats_pullback._validation import as_latent, broadcast_batch
from geomstats_pullback.curvature import gauss_split, second_derivatives
from geomstats_pullback.exp_solver import GeodesicIVPSolver

PATH_METHODS = ("ode", "projection")


def _integrator(metric):
    """The metric's exp integrator, or the default one if its exp solver has none."""
    integrator = getattr(getattr(metric, "exp_solver", None), "integrator", None)
    return integrator if integrator is not None else GeodesicIVPSolver(metric._space).integrator


def geodesic_transport(metric, tangent_vec, base_point, direction):
    """Transport vectors along the geodesics ``t -> exp(t v, z)``, ``t in [0, 1]``.

    Integrates the state ``(c, c', w_1..w_k)`` with ``c'' = -Gamma(c', c')``
    and ``w_i' = -Gamma(c', w_i)``, all terms of a step from one linearisation
    of the decoder (:meth:`~geomstats_pullback.decoders.Decoder.jacobian_and_second`).

    Parameters
    ----------
    metric : PullbackMetric
    tangent_vec : array-like, shape=[B, k, d]
        ``k`` vectors at each base point.
    base_point : array-like, shape=[B, d]
    direction : array-like, shape=[B, d]

    Returns
    -------
    transported : array-like, shape=[B, k, d]
        The vectors at ``exp(v, z)``.
    """

    def force(state, _):
        position, velocity, vecs = state[:, 0], state[:, 1], state[:, 2:]  # [B, d], [B, d], [B, k, d]
        directions = gs.moveaxis(gs.concatenate([velocity[:, None], vecs], axis=1), 1, 0)  # [1 + k, B, d]
        jac, second = metric.decoder.jacobian_and_second(position, velocity, directions)
        gamma, _ = gauss_split(metric, jac, gs.moveaxis(second, 0, 1))  # f''[v, v], f''[v, w_i]
        return gs.concatenate([velocity[:, None], -gamma], axis=1)

    state = gs.concatenate([base_point[:, None], direction[:, None], tangent_vec], axis=1)  # [B, 2 + k, d]
    final = _integrator(metric).integrate(force, state).get_last_y()
    return final[:, 2:]


def _segment_propagators(metric, path, method):
    """Linear maps ``T_i: T_{z_i} -> T_{z_{i+1}}`` of each path segment, ``[B, N - 1, d, d]``.

    ``projection``: ``J_{i+1}^+ J_i = G_{i+1}^{-1} J_{i+1}^T J_i`` (Shao et al.).
    ``ode``: one RK4 step of ``w' = -A(t) w`` along the segment
    ``z_i + t (z_{i+1} - z_i)``, with ``A(t) = G^{-1} J^T f''[z_{i+1} - z_i, .]``
    evaluated at ``t = 0, 1/2, 1``: all decoder calls in one batch.
    """
    n_batch, n_nodes, dim = path.shape
    eye = gs.eye(dim, dtype=path.dtype)
    if method == "projection":
        jac = metric.decoder.jacobian(gs.reshape(path, (-1, dim)))
        jac = gs.reshape(jac, (n_batch, n_nodes) + jac.shape[1:])  # [B, N, D, d]
        cross = gs.einsum("bnai,bnaj->bnij", jac[:, 1:], jac[:, :-1]) + metric.eps * eye  # [B, N-1, d, d]
        gram = metric._gram(gs.reshape(jac[:, 1:], (-1,) + jac.shape[2:]))
        maps = metric._solve_gram(gram, gs.reshape(cross, (-1, dim, dim)))
        return gs.reshape(maps, (n_batch, n_nodes - 1, dim, dim))
    steps = path[:, 1:] - path[:, :-1]  # [B, N-1, d]
    times = gs.array([0.0, 0.5, 1.0], dtype=path.dtype)
    nodes = path[:, :-1, None] + times[:, None] * steps[:, :, None]  # [B, N-1, 3, d]
    nodes = gs.reshape(nodes, (-1, dim))
    steps = gs.reshape(gs.broadcast_to(steps[:, :, None], (n_batch, n_nodes - 1, 3, dim)), (-1, dim))
    basis = gs.broadcast_to(eye, (nodes.shape[0], dim, dim))
    jac = metric.decoder.jacobian(nodes)
    second = second_derivatives(metric.decoder, nodes, gs.broadcast_to(steps[:, None], basis.shape), basis)
    gamma, _ = gauss_split(metric, jac, second)  # [M, d (column m), d]: Gamma(step, e_m)
    gen = gs.reshape(-gs.einsum("bmi->bim", gamma), (n_batch, n_nodes - 1, 3, dim, dim))
    a_start, a_mid, a_end = gen[:, :, 0], gen[:, :, 1], gen[:, :, 2]  # w' = a w
    k1 = a_start
    k2 = a_mid + gs.matmul(a_mid, k1) / 2
    k3 = a_mid + gs.matmul(a_mid, k2) / 2
    k4 = a_end + gs.matmul(a_end, k3)
    return eye + (k1 + 2 * k2 + 2 * k3 + k4) / 6


def transport_along_path(metric, tangent_vec, path, *, method="ode"):
    """Transport a tangent vector along a discrete latent path.

    Parameters
    ----------
    metric : PullbackMetric
    tangent_vec : array-like, shape=[..., dim]
        Vectors at the first node ``path[..., 0, :]``.
    path : array-like, shape=[..., n_nodes, dim]
        Latent paths (codes of a sequence of data points, a discrete
        geodesic such as ``metric.log_solver.result_.path``), ``n_nodes >= 2``.
    method : {"ode", "projection"}
        ``"ode"``: parallel transport along the piecewise-linear latent curve
        through the nodes (one RK4 step of the transport equation per
        segment). Exact for that curve up to ``O(h^4)`` per segment; as the
        nodes of a smooth curve are refined it converges at second order to
        transport along the curve. Needs second derivatives of the decoder.

        ``"projection"``: Shao et al. (2018): push ``w`` forward with
        ``J_i``, pull it back to the next tangent space with the
        pseudo-inverse of ``J_{i+1}``, and keep its norm (rescaling once at
        the end is the same as at every node, the maps being linear). A
        first-order scheme: right for finely sampled paths, where it is cheap
        (Jacobians only) and exactly norm-preserving; on coarse paths its
        error is first order in the node spacing, and it preserves norms but
        not angles between transported vectors.

    Returns
    -------
    transported : array-like, shape=[..., dim]
        Vectors at the last node ``path[..., -1, :]``.
    """
    if method not in PATH_METHODS:
        raise ValueError(f"method must be one of {PATH_METHODS}, got {method!r}.")
    dim = metric._space.dim
    tangent_vec = as_latent(tangent_vec, dim, "tangent_vec")
    path = as_latent(path, dim, "path")
    if path.ndim < 2 or path.shape[-2] < 2:
        raise ValueError(f"path must have shape [..., n_nodes, {dim}] with n_nodes >= 2, got {tuple(path.shape)}.")
    n_nodes = path.shape[-2]
    flat_path = gs.reshape(path, path.shape[:-2] + (n_nodes * dim,))
    batch_shape, (vec, flat_path) = broadcast_batch(tangent_vec, flat_path)
    flat_path = gs.reshape(flat_path, (-1, n_nodes, dim))  # [B, N, d]
    maps = _segment_propagators(metric, flat_path, method)  # [B, N-1, d, d]
    out = vec
    for i in range(n_nodes - 1):
        out = gs.einsum("bij,bj->bi", maps[:, i], out)
    if method == "projection":
        ends = gs.stack([flat_path[:, 0], flat_path[:, -1]])  # [2, B, d]
        norms = metric.squared_norm(gs.stack([vec, out]), ends)  # [2, B]
        scale = gs.where(norms[1] > 0, gs.sqrt(norms[0] / gs.where(norms[1] > 0, norms[1], 1.0)), 0.0)
        out = out * scale[:, None]
    return gs.reshape(out, batch_shape + (dim,))


def analogy(metric, point_a, point_a_prime, point_b, *, path=None, path_method="ode"):
    r"""Apply the change ``a -> a'`` to ``b``: ``b' = exp_b(PT_{a -> b}(log_a a'))``.

    Parameters
    ----------
    metric : PullbackMetric
    point_a, point_a_prime, point_b : array-like, shape=[..., dim]
        Broadcast together.
    path : array-like, shape=[..., n_nodes, dim], optional
        Transport along this latent path from ``a`` to ``b`` (e.g. a discrete
        geodesic, or the codes of intermediate data) instead of along the
        geodesic ``exp_a(t log_a b)``. Its end nodes must be ``a`` and ``b``.
    path_method : {"ode", "projection"}
        Scheme of :func:`transport_along_path` when ``path`` is given.

    Returns
    -------
    point_b_prime : array-like, shape=[..., dim]
    """
    dim = metric._space.dim
    point_a = as_latent(point_a, dim, "point_a")
    point_a_prime = as_latent(point_a_prime, dim, "point_a_prime")
    point_b = as_latent(point_b, dim, "point_b")
    if path is None:
        batch_shape, (a, a_prime, b) = broadcast_batch(point_a, point_a_prime, point_b)
        logs = metric.log(gs.stack([a_prime, b]), gs.stack([a, a]))  # both logs in one batched solve
        transported = metric.parallel_transport(logs[0], a, direction=logs[1])
        return gs.reshape(metric.exp(transported, b), batch_shape + (dim,))
    path = as_latent(path, dim, "path")
    for node, point, name in ((path[..., 0, :], point_a, "point_a"), (path[..., -1, :], point_b, "point_b")):
        if not bool(gs.all(gs.abs(node - point) <= 1e-8 * (1.0 + gs.abs(point)))):
            raise ValueError(f"path must start at point_a and end at point_b; it misses {name}.")
    change = metric.log(point_a_prime, point_a)
    transported = transport_along_path(metric, change, path, method=path_method)
    return metric.exp(transported, point_b)
