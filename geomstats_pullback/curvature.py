r"""Curvature of a pullback metric through the Gauss equation.

The latent space with ``G = J^T J`` is isometrically immersed in the flat data
space by the decoder ``f``, so its curvature is that of a submanifold of
Euclidean space. With the normal projection ``P = I - J G^{-1} J^T``, the
second fundamental form is ``II(u, v) = P f''[u, v]`` and the Gauss equation
gives

.. math::

    \langle R(x, y) z, w \rangle
    = \langle II(y, z), II(x, w) \rangle - \langle II(x, z), II(y, w) \rangle,

so curvature needs second directional derivatives of the decoder only, never
derivatives of Christoffel symbols. Conventions follow geomstats:
``R(x, y) z = \nabla_x \nabla_y z - \nabla_y \nabla_x z - \nabla_{[x, y]} z``,
``riemann_tensor[..., i, j, k, l] = R_{ijk}^l = dx^l(R(e_j, e_k) e_i)``, the
sphere has sectional curvature ``+1``.

The Tikhonov term ``eps I`` of :class:`~geomstats_pullback.metric.PullbackMetric`
is the pullback through the augmented immersion ``z -> (f(z), sqrt(eps) z)``;
the normal vectors below live in that augmented space ``R^{D + d}`` (its last
``d`` entries vanish when ``eps == 0`` and are then left out).

The functions are pure: a decoder, flat batches ``[B, ...]`` and the
metric's ``eps`` and ``rank_rtol`` as keywords (see
:mod:`geomstats_pullback.kernels`); :class:`~geomstats_pullback.metric.PullbackMetric`
validates, broadcasts and delegates to them. Each costs one Jacobian and a
few second directional derivatives (or one Hessian) of the decoder per point,
plus ``O(d^3)`` algebra; none differentiates Christoffel symbols.
"""

from typing import NamedTuple

import geomstats.backend as gs

from geomstats_pullback._arrays import eye, normal
from geomstats_pullback._validation import as_latent, check_integer
from geomstats_pullback.kernels import DEFAULT_RANK_RTOL, cometric, gauss_split, gram, second_derivatives, solve_gram_checked


def _all_normals(decoder, base_point, eps, rank_rtol):
    """``II(e_i, e_j)`` for all pairs, ``[B, d, d, D(+d)]``, and ``J [B, D, d]``."""
    dim = base_point.shape[-1]
    jac = decoder.jacobian(base_point)  # [B, D, d]
    hess = decoder.hessian(base_point)  # [B, D, d, d]
    second = gs.reshape(gs.einsum("baij->bija", hess), (hess.shape[0], dim * dim, -1))  # [B, d*d, D]
    _, normal = gauss_split(jac, second, eps=eps, rank_rtol=rank_rtol)
    return gs.reshape(normal, (hess.shape[0], dim, dim, -1)), jac


def second_fundamental_form(decoder, base_point, *, eps=0.0, rank_rtol=DEFAULT_RANK_RTOL):
    r"""Second fundamental form ``II_{ij}^\alpha = (P d_i d_j f)^\alpha``.

    Parameters
    ----------
    decoder : Decoder
    base_point : array-like, shape=[B, d]
    eps, rank_rtol : float
        The metric's Tikhonov term and rank tolerance (:mod:`~geomstats_pullback.kernels`).

    Returns
    -------
    second_fundamental_form : array-like, shape=[B, D, d, d]
        Data-space index first, as in geomstats' ``PullbackMetric``. With
        ``eps > 0`` this is the data-space block ``d_i d_j f - J Gamma_ij``
        of the augmented form.
    """
    normal, jac = _all_normals(decoder, base_point, eps, rank_rtol)
    return gs.einsum("bija->baij", normal[..., : jac.shape[1]])


def mean_curvature_vector(decoder, base_point, *, eps=0.0, rank_rtol=DEFAULT_RANK_RTOL):
    r"""Trace of the second fundamental form, ``H^\alpha = g^{ij} II_{ij}^\alpha``.

    As geomstats' ``PullbackMetric.mean_curvature_vector`` computes it: the
    trace, not divided by the dimension (the unit sphere gives ``-2 x``).

    Parameters
    ----------
    decoder : Decoder
    base_point : array-like, shape=[B, d]
    eps, rank_rtol : float
        The metric's Tikhonov term and rank tolerance (:mod:`~geomstats_pullback.kernels`).

    Returns
    -------
    mean_curvature_vector : array-like, shape=[B, D]
    """
    normal, jac = _all_normals(decoder, base_point, eps, rank_rtol)
    inverse = cometric(jac, eps=eps, rank_rtol=rank_rtol)
    return gs.einsum("bij,bija->ba", inverse, normal[..., : jac.shape[1]])


def riemann_tensor(decoder, base_point, *, eps=0.0, rank_rtol=DEFAULT_RANK_RTOL):
    r"""Riemann tensor ``R_{ijk}^l = dx^l(R(e_j, e_k) e_i)`` (geomstats' layout).

    Lowered by the Gauss equation, ``<R(e_j, e_k) e_i, e_m> = <II_ki, II_jm>
    - <II_ji, II_km>``, then raised with ``G^{-1}``.

    Parameters
    ----------
    decoder : Decoder
    base_point : array-like, shape=[B, d]
    eps, rank_rtol : float
        The metric's Tikhonov term and rank tolerance (:mod:`~geomstats_pullback.kernels`).

    Returns
    -------
    riemann : array-like, shape=[B, d, d, d, d]
        ``riemann[..., i, j, k, l] = R_{ijk}^l``.
    """
    normal, jac = _all_normals(decoder, base_point, eps, rank_rtol)
    inner = gs.einsum("bija,bkla->bijkl", normal, normal)  # <II_ij, II_kl>
    lowered = gs.einsum("bkijm->bijkm", inner) - gs.einsum("bjikm->bijkm", inner)
    return gs.einsum("bijkm,bml->bijkl", lowered, cometric(jac, eps=eps, rank_rtol=rank_rtol))


def curvature(decoder, tangent_vec_a, tangent_vec_b, tangent_vec_c, base_point, *, eps=0.0, rank_rtol=DEFAULT_RANK_RTOL):
    r"""Curvature operator ``R(x, y) z`` from ``2 d + 2`` second derivatives.

    ``<R(x, y) z, e_m> = <II(y, z), II(x, e_m)> - <II(x, z), II(y, e_m)>``.

    Parameters
    ----------
    decoder : Decoder
    tangent_vec_a, tangent_vec_b, tangent_vec_c : array-like, shape=[B, d]
        ``x``, ``y``, ``z``.
    base_point : array-like, shape=[B, d]
    eps, rank_rtol : float
        The metric's Tikhonov term and rank tolerance (:mod:`~geomstats_pullback.kernels`).

    Returns
    -------
    curvature : array-like, shape=[B, d]
        ``R(x, y) z``.
    """
    n_batch, dim = base_point.shape
    x, y, z = tangent_vec_a, tangent_vec_b, tangent_vec_c
    basis = gs.broadcast_to(eye(dim, like=base_point), (n_batch, dim, dim))
    # Pairs: (y, z), (x, z), (x, e_m) for all m, (y, e_m) for all m.
    x_rep, y_rep = (gs.broadcast_to(vec[:, None], basis.shape) for vec in (x, y))  # [B, d, d]
    vecs_a = gs.concatenate([gs.stack([y, x], axis=1), x_rep, y_rep], axis=1)  # [B, 2 + 2d, d]
    vecs_b = gs.concatenate([gs.stack([z, z], axis=1), basis, basis], axis=1)
    jac = decoder.jacobian(base_point)
    second = second_derivatives(decoder, base_point, vecs_a, vecs_b)
    _, normal = gauss_split(jac, second, eps=eps, rank_rtol=rank_rtol)
    ii_yz, ii_xz, ii_x, ii_y = normal[:, 0], normal[:, 1], normal[:, 2 : 2 + dim], normal[:, 2 + dim :]
    covector = gs.einsum("ba,bma->bm", ii_yz, ii_x) - gs.einsum("ba,bma->bm", ii_xz, ii_y)  # [B, d]
    return solve_gram_checked(gram(jac, eps=eps), covector[..., None], rank_rtol=rank_rtol)[..., 0]


def sectional_curvature(decoder, tangent_vec_a, tangent_vec_b, base_point, *, eps=0.0, rank_rtol=DEFAULT_RANK_RTOL):
    r"""Sectional curvature of the planes spanned by ``u`` and ``v``.

    .. math::

        K(u, v) = \frac{\langle II(u, u), II(v, v)\rangle - |II(u, v)|^2}
                       {|u|^2 |v|^2 - \langle u, v\rangle^2}

    Three second derivatives and one Jacobian per plane.

    Parameters
    ----------
    decoder : Decoder
    tangent_vec_a, tangent_vec_b : array-like, shape=[B, d]
    base_point : array-like, shape=[B, d]
    eps, rank_rtol : float
        The metric's Tikhonov term and rank tolerance (:mod:`~geomstats_pullback.kernels`).

    Returns
    -------
    sectional_curvature : array-like, shape=[B]

    Raises
    ------
    ValueError
        If ``u`` and ``v`` are (numerically) parallel: they span no plane.
    """
    u, v = tangent_vec_a, tangent_vec_b
    vecs_a = gs.stack([u, v, u], axis=1)  # [B, 3, d]
    vecs_b = gs.stack([u, v, v], axis=1)
    jac = decoder.jacobian(base_point)
    second = second_derivatives(decoder, base_point, vecs_a, vecs_b)
    _, normal = gauss_split(jac, second, eps=eps, rank_rtol=rank_rtol)
    numerator = gs.sum(normal[:, 0] * normal[:, 1], axis=-1) - gs.sum(normal[:, 2] ** 2, axis=-1)
    metric_matrix = gram(jac, eps=eps)
    products = gs.einsum("bi,bij,bkj->bk", u, metric_matrix, gs.stack([u, v], axis=1))  # [<u,u>, <u,v>]
    norm_v = gs.einsum("bi,bij,bj->b", v, metric_matrix, v)
    area = products[:, 0] * norm_v - products[:, 1] ** 2
    if bool(gs.any(area <= 1e-12 * products[:, 0] * norm_v)):
        raise ValueError("tangent_vec_a and tangent_vec_b must span a plane: some pairs are parallel or zero.")
    return numerator / area


def scalar_curvature(decoder, base_point, *, eps=0.0, rank_rtol=DEFAULT_RANK_RTOL):
    r"""Scalar curvature, ``S = |H|^2 - |II|^2`` (traced Gauss equation).

    ``H = g^{ij} II_ij`` and ``|II|^2 = g^{ik} g^{jl} <II_ij, II_kl>``; equal
    to geomstats' ``g^{ij} Ric_ij`` (2 on the unit sphere).

    Parameters
    ----------
    decoder : Decoder
    base_point : array-like, shape=[B, d]
    eps, rank_rtol : float
        The metric's Tikhonov term and rank tolerance (:mod:`~geomstats_pullback.kernels`).

    Returns
    -------
    scalar_curvature : array-like, shape=[B]
    """
    normal, jac = _all_normals(decoder, base_point, eps, rank_rtol)
    inverse = cometric(jac, eps=eps, rank_rtol=rank_rtol)
    mean = gs.einsum("bij,bija->ba", inverse, normal)
    raised = gs.einsum("bik,bjl,bkla->bija", inverse, inverse, normal)
    return gs.sum(mean**2, axis=-1) - gs.einsum("bija,bija->b", raised, normal)


class SectionalCurvatureSample(NamedTuple):
    """Sectional curvatures of random planes at a set of latent points.

    ``curvatures [n_points, n_planes]`` of the planes spanned by
    ``tangent_vec_a`` and ``tangent_vec_b [n_points, n_planes, d]``
    (independent standard Gaussians in a ``G``-orthonormal frame: planes
    uniform for the metric).
    """

    curvatures: object  #: shape=[n_points, n_planes]
    tangent_vec_a: object  #: shape=[n_points, n_planes, d]
    tangent_vec_b: object  #: shape=[n_points, n_planes, d]


def sample_sectional_curvatures(metric, points, *, n_planes=8):
    """Sectional curvatures of random tangent planes at many latent points.

    Shao et al. (2018) measure curvature this way to find that learned
    manifolds are nearly flat. Planes are drawn uniformly for the metric:
    ``u = L^{-T} xi`` with ``G = L L^T`` and ``xi`` standard Gaussian (seed
    with ``geomstats.backend.random.seed``). Sectional curvature has units of
    ``1 / (data-space length)^2``: compare it with ``1 / r^2`` for ``r`` the
    scale of the decoded data (e.g. the diameter of the decoded set).

    Parameters
    ----------
    decoder : Decoder
    points : array-like, shape=[n_points, d]
        Latent points, e.g. a data set's codes.
    n_planes : int
        Planes per point (for ``d == 2`` every plane is the tangent plane).

    Returns
    -------
    sample : SectionalCurvatureSample
    """
    dim = metric.decoder.latent_dim
    points = gs.reshape(as_latent(points, dim, "points"), (-1, dim))
    check_integer(n_planes, "n_planes", low=1)
    if dim < 2:
        raise ValueError("Sectional curvature needs a latent dimension of at least 2.")
    n_points = points.shape[0]
    chol = gs.linalg.cholesky(metric.metric_matrix(points))  # [n, d, d]
    xi = normal((2, n_points, n_planes, dim), like=points)
    chol_t = gs.broadcast_to(gs.einsum("nij->nji", chol)[:, None], (n_points, n_planes, dim, dim))
    vecs = gs.linalg.solve(chol_t[None], xi[..., None])[..., 0]  # [2, n, n_planes, d]
    flat = [gs.reshape(vec, (-1, dim)) for vec in vecs]
    base = gs.reshape(gs.broadcast_to(points[:, None], (n_points, n_planes, dim)), (-1, dim))
    curvatures = metric.sectional_curvature(flat[0], flat[1], base)
    return SectionalCurvatureSample(gs.reshape(curvatures, (n_points, n_planes)), vecs[0], vecs[1])
