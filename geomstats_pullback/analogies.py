r"""Transport along data paths, and analogies: user-level operations on a metric.

Shao, Kumar & Fletcher (2018) transfer a change between data points, ``a ->
a'``, to another point ``b`` by parallel transport:
``b' = exp_b(PT_{a -> b}(log_a a'))`` (:func:`analogy`). The transport can
follow the geodesic from ``a`` to ``b`` (``metric.parallel_transport``) or a
given latent path, such as the codes of intermediate data or a discrete
geodesic (:func:`transport_along_path`).
"""

import geomstats.backend as gs

from geomstats_pullback._arrays import where
from geomstats_pullback._validation import as_latent, broadcast_batch
from geomstats_pullback.transport import PATH_METHODS, segment_propagators


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
    dim = metric.decoder.latent_dim
    tangent_vec = as_latent(tangent_vec, dim, "tangent_vec")
    path = as_latent(path, dim, "path")
    if path.ndim < 2 or path.shape[-2] < 2:
        raise ValueError(f"path must have shape [..., n_nodes, {dim}] with n_nodes >= 2, got {tuple(path.shape)}.")
    n_nodes = path.shape[-2]
    flat_path = gs.reshape(path, path.shape[:-2] + (n_nodes * dim,))
    batch_shape, (vec, flat_path) = broadcast_batch(tangent_vec, flat_path)
    flat_path = gs.reshape(flat_path, (-1, n_nodes, dim))  # [B, N, d]
    maps = segment_propagators(metric.decoder, flat_path, method, eps=metric.eps, rank_rtol=metric.rank_rtol)
    out = vec
    for i in range(n_nodes - 1):
        out = gs.einsum("bij,bj->bi", maps[:, i], out)
    if method == "projection":
        ends = gs.stack([flat_path[:, 0], flat_path[:, -1]])  # [2, B, d]
        norms = metric.squared_norm(gs.stack([vec, out]), ends)  # [2, B]
        scale = where(norms[1] > 0, gs.sqrt(norms[0] / where(norms[1] > 0, norms[1], 1.0)), 0.0)
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
    dim = metric.decoder.latent_dim
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
