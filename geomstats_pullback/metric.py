r"""The pullback metric ``G(z) = J(z)^T J(z)`` of a decoder, as a geomstats metric.

Everything is computed from Jacobian-vector products and second directional
derivatives of the decoder (:mod:`geomstats_pullback.autodiff`); the decoder's
full Hessian is formed only where geomstats' interface asks for all of it
(``christoffels``, ``inner_product_derivative_matrix``).

Geodesic equation of a pullback of the Euclidean metric:

.. math:: \ddot z = -G(z)^{-1} J(z)^T f''(z)[\dot z, \dot z].
"""

import geomstats.backend as gs
import torch
from geomstats.geometry.riemannian_metric import RiemannianMetric

from geomstats_pullback import curvature, kernels
from geomstats_pullback._arrays import zeros
from geomstats_pullback._validation import as_latent, broadcast_batch, check_float
from geomstats_pullback.geodesics import GeodesicBVPSolver, GeodesicIVPSolver, default_integrator
from geomstats_pullback.transport import geodesic_transport


class PullbackMetric(RiemannianMetric):
    r"""Pullback of the Euclidean metric of data space through a decoder.

    .. math:: g_z(u, v) = \langle J(z) u, J(z) v \rangle + \epsilon \langle u, v \rangle

    Parameters
    ----------
    space : DecoderManifold
        The latent manifold; its ``decoder`` defines the metric.
    eps : float
        Optional Tikhonov term ``eps * I`` added to ``G`` so that the metric
        stays definite where the Jacobian loses rank. Default 0: a
        rank-deficient Jacobian then raises :class:`RankDeficientJacobianError`.
    rank_rtol : float
        ``G`` counts as singular where its smallest eigenvalue is at most
        ``rank_rtol`` times its largest (a Jacobian condition number beyond
        ``rank_rtol ** -0.5``).
    exp_solver : geomstats ExpSolver, optional
        Default: :class:`~geomstats_pullback.geodesics.exp.GeodesicIVPSolver`
        (eighth-order Runge-Kutta, 12 steps). Replaceable later through ``metric.exp_solver``.
    log_solver : geomstats LogSolver, optional
        Solver for ``log``/``dist``/``geodesic(..., end_point=...)``.
        Default: :class:`~geomstats_pullback.log_solver.GeodesicBVPSolver`
        (discrete energy, then shooting). Replaceable through ``metric.log_solver``.
    """

    def __init__(self, space, *, eps=0.0, rank_rtol=kernels.DEFAULT_RANK_RTOL, exp_solver=None, log_solver=None):
        super().__init__(space)
        self.eps = check_float(eps, "eps", low=0)
        self.rank_rtol = check_float(rank_rtol, "rank_rtol", low=0)
        self.exp_solver = exp_solver if exp_solver is not None else GeodesicIVPSolver(space)
        self.log_solver = log_solver if log_solver is not None else GeodesicBVPSolver(space)

    @property
    def decoder(self):
        """The :class:`~geomstats_pullback.decoders.Decoder` of the space."""
        return self._space.decoder

    def _pointwise(self, kernel, out_shape, *arrays_and_names, cost="jacobian", n_dirs=1):
        """``kernel`` on validated, broadcast, flattened ``[..., d]`` arrays, batch shape restored.

        The flat batch is cut into chunks that fit the decoder's memory
        budget for a call of kind ``cost`` (see
        :meth:`~geomstats_pullback.decoders.Decoder.batch_limit`), so that
        the kernel's intermediates (Jacobians, Hessians) stay within it.

        Parameters
        ----------
        kernel : callable
            Maps the flat arrays ``[B, d]`` (in the order given) to ``[B, *out_shape]``.
        out_shape : tuple
            Shape of one result.
        arrays_and_names : tuple
            ``(array, name)`` pairs; names are for error messages.
        cost : str
            The decoder call that dominates the kernel's memory.
        n_dirs : int
            Second derivatives per point, for ``cost="second"``.

        Returns
        -------
        out : array-like, shape=[..., *out_shape]
            Zeros, without calling ``kernel``, for an empty batch.
        """
        dim = self._space.dim
        arrays = [as_latent(array, dim, name) for array, name in arrays_and_names]
        batch_shape, flat = broadcast_batch(*arrays)
        shape = batch_shape + tuple(out_shape)
        n_batch = flat[0].shape[0]
        if n_batch == 0:
            return zeros(shape, like=flat[0])
        limit = self.decoder.batch_limit(cost, n_dirs)
        if n_batch <= limit:
            return gs.reshape(kernel(*flat), shape)
        parts = [kernel(*(array[start : start + limit] for array in flat)) for start in range(0, n_batch, limit)]
        return gs.reshape(gs.concatenate(parts), shape)

    def metric_matrix(self, base_point=None):
        """Metric matrix ``G(z) = J^T J (+ eps I)``.

        Parameters
        ----------
        base_point : array-like, shape=[..., dim]

        Returns
        -------
        mat : array-like, shape=[..., dim, dim]
        """
        dim = self._space.dim
        return self._pointwise(
            lambda z: kernels.gram(self.decoder.jacobian(z), eps=self.eps), (dim, dim), (base_point, "base_point")
        )

    def cometric_matrix(self, base_point=None):
        """Inverse metric matrix ``G(z)^{-1}``.

        Parameters
        ----------
        base_point : array-like, shape=[..., dim]

        Returns
        -------
        cometric : array-like, shape=[..., dim, dim]

        Raises
        ------
        RankDeficientJacobianError
            Where ``G`` is singular and ``eps == 0``.
        """
        dim = self._space.dim

        def inverse(z):
            return kernels.cometric(self.decoder.jacobian(z), eps=self.eps, rank_rtol=self.rank_rtol)

        return self._pointwise(inverse, (dim, dim), (base_point, "base_point"))

    def inner_product(self, tangent_vec_a, tangent_vec_b, base_point=None):
        """Inner product ``<J u, J v> (+ eps <u, v>)`` from two jvps.

        Parameters
        ----------
        tangent_vec_a, tangent_vec_b : array-like, shape=[..., dim]
        base_point : array-like, shape=[..., dim]

        Returns
        -------
        inner_prod : array-like, shape=[...]
        """

        def inner(u, v, z):
            n = z.shape[0]
            _, pushed = self.decoder.jvp(gs.concatenate([z, z]), gs.concatenate([u, v]))
            out = gs.sum(pushed[:n] * pushed[n:], axis=-1)
            return out + self.eps * gs.sum(u * v, axis=-1) if self.eps else out

        return self._pointwise(
            inner, (), (tangent_vec_a, "tangent_vec_a"), (tangent_vec_b, "tangent_vec_b"), (base_point, "base_point"),
            cost="jvp",
        )

    def squared_norm(self, vector, base_point=None):
        """Squared norm ``|J v|^2 (+ eps |v|^2)`` from one jvp.

        Parameters
        ----------
        vector : array-like, shape=[..., dim]
        base_point : array-like, shape=[..., dim]

        Returns
        -------
        sq_norm : array-like, shape=[...]
        """

        def sq_norm(v, z):
            out = gs.sum(self.decoder.jvp(z, v)[1] ** 2, axis=-1)
            return out + self.eps * gs.sum(v**2, axis=-1) if self.eps else out

        return self._pointwise(sq_norm, (), (vector, "vector"), (base_point, "base_point"), cost="jvp")

    def inner_product_derivative_matrix(self, base_point=None):
        r"""Derivative of the metric matrix, ``mat[..., i, j, k] = d_k g_ij``.

        ``d_k g_ij = <f''[e_i, e_k], J e_j> + <J e_i, f''[e_j, e_k]>``.

        Parameters
        ----------
        base_point : array-like, shape=[..., dim]

        Returns
        -------
        mat : array-like, shape=[..., dim, dim, dim]
        """
        dim = self._space.dim

        def derivative(z):
            jac = self.decoder.jacobian(z)  # [B, D, d]
            hess = self.decoder.hessian(z)  # [B, D, d, d]
            half = gs.einsum("...aik,...aj->...ijk", hess, jac)
            return half + gs.einsum("...ijk->...jik", half)

        return self._pointwise(derivative, (dim, dim, dim), (base_point, "base_point"), cost="hessian")

    def christoffels(self, base_point=None):
        r"""Christoffel symbols ``Gamma^k_ij = (G^{-1} J^T f''[e_i, e_j])^k``.

        Parameters
        ----------
        base_point : array-like, shape=[..., dim]

        Returns
        -------
        gamma : array-like, shape=[..., dim, dim, dim]
            Contravariant index first, as in geomstats.
        """
        dim = self._space.dim

        def gamma(z):
            jac = self.decoder.jacobian(z)  # [B, D, d]
            hess = self.decoder.hessian(z)  # [B, D, d, d]
            rhs = gs.einsum("...ak,...aij->...kij", jac, hess)  # [B, d, d, d]
            gram = kernels.gram(jac, eps=self.eps)
            return kernels.solve_gram_checked(gram, gs.reshape(rhs, (-1, dim, dim * dim)), rank_rtol=self.rank_rtol)

        return self._pointwise(gamma, (dim, dim, dim), (base_point, "base_point"), cost="hessian")

    def geodesic_equation(self, state):
        r"""Right-hand side of the geodesic ODE, ``(v, -G^{-1} J^T f''[v, v])``.

        Parameters
        ----------
        state : array-like, shape=[..., 2, dim]
            Positions ``state[..., 0, :]`` and velocities ``state[..., 1, :]``.

        Returns
        -------
        derivative : array-like, shape=[..., 2, dim]
        """
        dim = self._space.dim
        flat = gs.reshape(state, (-1, 2, dim))
        derivative = kernels.geodesic_rhs(self.decoder, flat, eps=self.eps, rank_rtol=self.rank_rtol)
        return gs.reshape(derivative, state.shape)

    def squared_dist(self, point_a, point_b):
        r"""Squared geodesic distance ``|log_a(b)|^2``, batched, with analytic gradients.

        Under geomstats' pytorch backend, gradients with respect to either
        point (e.g. ``GeodesicRegression``'s loss) do not go through the log
        solver; they are the closed forms

        .. math:: \nabla_a d^2 = -2 G(a) \log_a b, \qquad
                  \nabla_b d^2 = -2 G(b) \log_b a = 2 G(b) \dot\gamma(1),

        with ``gamma(t) = exp_a(t log_a b)``, whose final velocity is the
        parallel transport of ``log_a b`` along itself. Valid where the
        geodesic found by the log solver is the minimising one.

        Parameters
        ----------
        point_a, point_b : array-like, shape=[..., dim]
            Broadcast together.

        Returns
        -------
        sq_dist : array-like, shape=[...]
        """
        dim = self._space.dim
        point_a = as_latent(point_a, dim, "point_a")
        point_b = as_latent(point_b, dim, "point_b")
        if _tracks_gradients(point_a, point_b):
            return _SquaredDist.apply(point_a, point_b, self)
        return self.squared_norm(self.log(point_b, point_a), point_a)

    # ------------------------------------------------ transport and curvature

    def parallel_transport(self, tangent_vec, base_point, direction=None, end_point=None):
        r"""Parallel transport along a geodesic, ``w' = -G^{-1} J^T f''[c', w]``.

        Integrated together with the geodesic, with the integrator and steps
        of ``metric.exp_solver`` (so transport is as accurate as ``exp``).

        Parameters
        ----------
        tangent_vec : array-like, shape=[..., dim]
            Vectors at ``base_point`` to transport.
        base_point : array-like, shape=[..., dim]
        direction : array-like, shape=[..., dim], optional
            Initial velocity of the geodesic ``t -> exp(t direction)``,
            ``t in [0, 1]``.
        end_point : array-like, shape=[..., dim], optional
            Transport along the geodesic to ``end_point`` instead
            (``direction = log(end_point, base_point)``).

        Returns
        -------
        transported_tangent_vec : array-like, shape=[..., dim]
            Vectors at ``exp(direction, base_point)``.
        """
        if (direction is None) == (end_point is None):
            raise ValueError("Give exactly one of direction and end_point.")
        dim = self._space.dim
        base_point = as_latent(base_point, dim, "base_point")
        if direction is None:
            direction = self.log(as_latent(end_point, dim, "end_point"), base_point)
        vec = as_latent(tangent_vec, dim, "tangent_vec")
        direction = as_latent(direction, dim, "direction")
        if base_point.ndim == 1 and direction.ndim == 1:  # one geodesic: all vectors ride on it
            out = self._geodesic_transport(gs.reshape(vec, (1, -1, dim)), base_point[None], direction[None])
            return gs.reshape(out, vec.shape)
        batch_shape, (vec, z, v) = broadcast_batch(vec, base_point, direction)
        out = self._geodesic_transport(vec[:, None], z, v)
        return gs.reshape(out, batch_shape + (dim,))

    def _geodesic_transport(self, vecs, base_point, direction):
        """Flat transport ``[B, k, d]`` with the exp solver's integrator (the default one if it has none)."""
        integrator = getattr(self.exp_solver, "integrator", None) or default_integrator()
        return geodesic_transport(
            self.decoder, vecs, base_point, direction, integrator=integrator, eps=self.eps, rank_rtol=self.rank_rtol
        )

    def second_fundamental_form(self, base_point):
        r"""Second fundamental form ``II_{ij} = P d_i d_j f`` of the immersion.

        Parameters
        ----------
        base_point : array-like, shape=[..., dim]

        Returns
        -------
        second_fundamental_form : array-like, shape=[..., output_dim, dim, dim]
            Data-space index first, as in geomstats' ``PullbackMetric``.
        """
        dim = self._space.dim
        return self._pointwise(
            self._curvature_kernel(curvature.second_fundamental_form),
            (self.decoder.output_dim, dim, dim),
            (base_point, "base_point"),
            cost="hessian",
        )

    def mean_curvature_vector(self, base_point):
        r"""Mean curvature vector ``g^{ij} II_{ij}`` (a trace, as in geomstats).

        Parameters
        ----------
        base_point : array-like, shape=[..., dim]

        Returns
        -------
        mean_curvature_vector : array-like, shape=[..., output_dim]
        """
        return self._pointwise(
            self._curvature_kernel(curvature.mean_curvature_vector),
            (self.decoder.output_dim,),
            (base_point, "base_point"),
            cost="hessian",
        )

    def riemann_tensor(self, base_point=None):
        r"""Riemann tensor by the Gauss equation.

        Parameters
        ----------
        base_point : array-like, shape=[..., dim]

        Returns
        -------
        riemann_curvature : array-like, shape=[..., dim, dim, dim, dim]
            ``riemann_tensor[..., i, j, k, l] = R_{ijk}^l = dx^l(R(e_j, e_k) e_i)``.
        """
        dim = self._space.dim
        return self._pointwise(
            self._curvature_kernel(curvature.riemann_tensor), (dim,) * 4, (base_point, "base_point"), cost="hessian"
        )

    def curvature(self, tangent_vec_a, tangent_vec_b, tangent_vec_c, base_point=None):
        r"""Curvature operator ``R(X, Y) Z`` by the Gauss equation.

        Parameters
        ----------
        tangent_vec_a, tangent_vec_b, tangent_vec_c : array-like, shape=[..., dim]
            ``X``, ``Y``, ``Z``.
        base_point : array-like, shape=[..., dim]

        Returns
        -------
        curvature : array-like, shape=[..., dim]
            ``R(X, Y) Z = nabla_X nabla_Y Z - nabla_Y nabla_X Z - nabla_[X, Y] Z``.
        """
        return self._pointwise(
            self._curvature_kernel(curvature.curvature),
            (self._space.dim,),
            (tangent_vec_a, "tangent_vec_a"),
            (tangent_vec_b, "tangent_vec_b"),
            (tangent_vec_c, "tangent_vec_c"),
            (base_point, "base_point"),
            cost="second",
            n_dirs=2 + 2 * self._space.dim,
        )

    def sectional_curvature(self, tangent_vec_a, tangent_vec_b, base_point=None):
        r"""Sectional curvature ``<R(u, v) v, u> / (|u|^2 |v|^2 - <u, v>^2)``.

        Three second derivatives of the decoder per plane (Gauss equation).

        Parameters
        ----------
        tangent_vec_a, tangent_vec_b : array-like, shape=[..., dim]
        base_point : array-like, shape=[..., dim]

        Returns
        -------
        sectional_curvature : array-like, shape=[...]

        Raises
        ------
        ValueError
            If a pair of vectors spans no plane.
        """
        return self._pointwise(
            self._curvature_kernel(curvature.sectional_curvature),
            (),
            (tangent_vec_a, "tangent_vec_a"),
            (tangent_vec_b, "tangent_vec_b"),
            (base_point, "base_point"),
            cost="second",
            n_dirs=3,
        )

    def scalar_curvature(self, base_point=None):
        r"""Scalar curvature ``|H|^2 - |II|^2`` (traced Gauss equation).

        Parameters
        ----------
        base_point : array-like, shape=[..., dim]

        Returns
        -------
        scalar_curvature : array-like, shape=[...]
        """
        return self._pointwise(
            self._curvature_kernel(curvature.scalar_curvature), (), (base_point, "base_point"), cost="hessian"
        )

    def _curvature_kernel(self, function):
        """A :mod:`~geomstats_pullback.curvature` function ``(decoder, *flat_arrays, eps=, rank_rtol=)`` as a kernel."""
        return lambda *flat: function(self.decoder, *flat, eps=self.eps, rank_rtol=self.rank_rtol)


# ---------------------------------------------------------------- gradients


def _tracks_gradients(*arrays):
    """Whether torch autograd records operations on any of ``arrays`` (pytorch backend)."""
    return gs.__name__.endswith("pytorch") and torch.is_grad_enabled() and any(array.requires_grad for array in arrays)


class _SquaredDist(torch.autograd.Function):
    """``d(a, b)^2`` with the closed-form gradients of :meth:`PullbackMetric.squared_dist`."""

    @staticmethod
    def forward(ctx, point_a, point_b, metric):
        log = metric.log(point_b, point_a)  # [..., d]
        ctx.metric = metric
        ctx.save_for_backward(point_a, point_b, log)
        return metric.squared_norm(log, point_a)

    @staticmethod
    def backward(ctx, grad_output):
        point_a, point_b, log = ctx.saved_tensors
        metric = ctx.metric
        weight = grad_output[..., None]  # [..., 1]
        grad_a = grad_b = None
        if ctx.needs_input_grad[0]:
            lowered = gs.einsum("...ij,...j->...i", metric.metric_matrix(point_a), log)
            grad_a = (-2 * weight * lowered).sum_to_size(point_a.shape)
        if ctx.needs_input_grad[1]:
            end_velocity = metric.parallel_transport(log, point_a, direction=log)  # gamma'(1)
            lowered = gs.einsum("...ij,...j->...i", metric.metric_matrix(point_b), end_velocity)
            grad_b = (2 * weight * lowered).sum_to_size(point_b.shape)
        return grad_a, grad_b, None
