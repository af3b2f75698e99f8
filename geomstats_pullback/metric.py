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

from geomstats_pullback._validation import as_latent, broadcast_batch, check_float
from geomstats_pullback.errors import RankDeficientJacobianError
from geomstats_pullback.exp_solver import GeodesicIVPSolver
from geomstats_pullback.log_solver import GeodesicBVPSolver


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
        Default: :class:`~geomstats_pullback.exp_solver.GeodesicIVPSolver`
        (eighth-order Runge-Kutta, 12 steps). Replaceable later through ``metric.exp_solver``.
    log_solver : geomstats LogSolver, optional
        Solver for ``log``/``dist``/``geodesic(..., end_point=...)``.
        Default: :class:`~geomstats_pullback.log_solver.GeodesicBVPSolver`
        (discrete energy, then shooting). Replaceable through ``metric.log_solver``.
    """

    def __init__(self, space, *, eps=0.0, rank_rtol=1e-12, exp_solver=None, log_solver=None):
        super().__init__(space)
        self.eps = check_float(eps, "eps", low=0)
        self.rank_rtol = check_float(rank_rtol, "rank_rtol", low=0)
        self.exp_solver = exp_solver if exp_solver is not None else GeodesicIVPSolver(space)
        self.log_solver = log_solver if log_solver is not None else GeodesicBVPSolver(space)

    @property
    def decoder(self):
        """The :class:`~geomstats_pullback.decoders.Decoder` of the space."""
        return self._space.decoder

    # ------------------------------------------------------------ flat kernels
    # These take flattened batches z [B, d] and skip input validation.

    def _gram(self, jac):
        """``J^T J + eps I``: ``[B, D, d] -> [B, d, d]``."""
        gram = gs.einsum("...ai,...aj->...ij", jac, jac)
        if self.eps:
            gram = gram + self.eps * gs.eye(jac.shape[-1], dtype=jac.dtype)
        return gram

    def _check_rank(self, gram):
        eigvals = gs.linalg.eigvalsh(gram)  # [B, d], ascending
        singular = eigvals[..., 0] <= self.rank_rtol * eigvals[..., -1]
        if bool(gs.any(singular)):
            n_bad = int(gs.sum(gs.cast(singular, gs.int64)))
            raise RankDeficientJacobianError(
                f"The decoder's Jacobian is rank deficient at {n_bad} of {gram.shape[0]} "
                f"latent point(s) (smallest/largest eigenvalue of G <= {self.rank_rtol:g}): "
                "the pullback metric is degenerate there. Pass eps > 0 to the metric "
                "(DecoderManifold(..., metric_kwargs={'eps': 1e-8})) to regularise it."
            )

    def _solve_gram(self, gram, rhs):
        """``G^{-1} rhs`` for ``rhs [B, d, k]``, after checking the rank of ``G``."""
        self._check_rank(gram)
        # One vector solve per column: geomstats' solve takes vector right-hand sides.
        columns = gs.moveaxis(rhs, -1, -2)  # [B, k, d]
        gram = gs.broadcast_to(gram[..., None, :, :], columns.shape + columns.shape[-1:])
        return gs.moveaxis(gs.linalg.solve(gram, columns), -1, -2)

    def _acceleration(self, position, velocity):
        """Geodesic acceleration ``-G^{-1} J^T f''[v, v]``, ``[B, d]``."""
        jac, second = self.decoder.jacobian_and_second(position, velocity, velocity[None])  # [B, D, d], [1, B, D]
        rhs = gs.einsum("...ai,...a->...i", jac, second[0])[..., None]  # [B, d, 1]
        return -self._solve_gram(self._gram(jac), rhs)[..., 0]

    # ------------------------------------------------------------ public API

    def _flatten(self, *arrays_and_names):
        dim = self._space.dim
        arrays = [as_latent(array, dim, name) for array, name in arrays_and_names]
        return broadcast_batch(*arrays)

    def metric_matrix(self, base_point=None):
        """Metric matrix ``G(z) = J^T J (+ eps I)``.

        Parameters
        ----------
        base_point : array-like, shape=[..., dim]

        Returns
        -------
        mat : array-like, shape=[..., dim, dim]
        """
        batch_shape, (z,) = self._flatten((base_point, "base_point"))
        gram = self._gram(self.decoder.jacobian(z))
        return gs.reshape(gram, batch_shape + gram.shape[-2:])

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
        batch_shape, (z,) = self._flatten((base_point, "base_point"))
        gram = self._gram(self.decoder.jacobian(z))
        eye = gs.broadcast_to(gs.eye(gram.shape[-1], dtype=gram.dtype), gram.shape)
        inverse = self._solve_gram(gram, eye)
        return gs.reshape(inverse, batch_shape + gram.shape[-2:])

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
        batch_shape, (u, v, z) = self._flatten(
            (tangent_vec_a, "tangent_vec_a"), (tangent_vec_b, "tangent_vec_b"), (base_point, "base_point")
        )
        n = z.shape[0]
        _, pushed = self.decoder.jvp(gs.concatenate([z, z]), gs.concatenate([u, v]))
        inner = gs.sum(pushed[:n] * pushed[n:], axis=-1)
        if self.eps:
            inner = inner + self.eps * gs.sum(u * v, axis=-1)
        return gs.reshape(inner, batch_shape)

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
        batch_shape, (v, z) = self._flatten((vector, "vector"), (base_point, "base_point"))
        _, pushed = self.decoder.jvp(z, v)
        sq_norm = gs.sum(pushed**2, axis=-1)
        if self.eps:
            sq_norm = sq_norm + self.eps * gs.sum(v**2, axis=-1)
        return gs.reshape(sq_norm, batch_shape)

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
        batch_shape, (z,) = self._flatten((base_point, "base_point"))
        jac = self.decoder.jacobian(z)  # [B, D, d]
        hess = self.decoder.hessian(z)  # [B, D, d, d]
        half = gs.einsum("...aik,...aj->...ijk", hess, jac)
        out = half + gs.einsum("...ijk->...jik", half)
        return gs.reshape(out, batch_shape + out.shape[-3:])

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
        batch_shape, (z,) = self._flatten((base_point, "base_point"))
        dim = self._space.dim
        jac = self.decoder.jacobian(z)  # [B, D, d]
        hess = self.decoder.hessian(z)  # [B, D, d, d]
        rhs = gs.einsum("...ak,...aij->...kij", jac, hess)  # [B, d, d, d]
        gamma = self._solve_gram(self._gram(jac), gs.reshape(rhs, (-1, dim, dim * dim)))
        return gs.reshape(gamma, batch_shape + (dim, dim, dim))

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
        batch_shape = state.shape[:-2]
        position = gs.reshape(state[..., 0, :], (-1, dim))
        velocity = gs.reshape(state[..., 1, :], (-1, dim))
        acceleration = self._acceleration(position, velocity)
        derivative = gs.stack([velocity, acceleration], axis=-2)
        return gs.reshape(derivative, batch_shape + (2, dim))

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
    # Thin shells over geomstats_pullback.transport / .curvature.

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
        from geomstats_pullback.transport import geodesic_transport

        if (direction is None) == (end_point is None):
            raise ValueError("Give exactly one of direction and end_point.")
        dim = self._space.dim
        base_point = as_latent(base_point, dim, "base_point")
        if direction is None:
            direction = self.log(as_latent(end_point, dim, "end_point"), base_point)
        vec = as_latent(tangent_vec, dim, "tangent_vec")
        direction = as_latent(direction, dim, "direction")
        if base_point.ndim == 1 and direction.ndim == 1:  # one geodesic: all vectors ride on it
            out = geodesic_transport(self, gs.reshape(vec, (1, -1, dim)), base_point[None], direction[None])
            return gs.reshape(out, vec.shape)
        batch_shape, (vec, z, v) = broadcast_batch(vec, base_point, direction)
        out = geodesic_transport(self, vec[:, None], z, v)
        return gs.reshape(out, batch_shape + (dim,))

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
        from geomstats_pullback import curvature

        batch_shape, (z,) = self._flatten((base_point, "base_point"))
        out = curvature.second_fundamental_form(self, z)
        return gs.reshape(out, batch_shape + out.shape[1:])

    def mean_curvature_vector(self, base_point):
        r"""Mean curvature vector ``g^{ij} II_{ij}`` (a trace, as in geomstats).

        Parameters
        ----------
        base_point : array-like, shape=[..., dim]

        Returns
        -------
        mean_curvature_vector : array-like, shape=[..., output_dim]
        """
        from geomstats_pullback import curvature

        batch_shape, (z,) = self._flatten((base_point, "base_point"))
        out = curvature.mean_curvature_vector(self, z)
        return gs.reshape(out, batch_shape + out.shape[1:])

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
        from geomstats_pullback import curvature

        batch_shape, (z,) = self._flatten((base_point, "base_point"))
        out = curvature.riemann_tensor(self, z)
        return gs.reshape(out, batch_shape + out.shape[1:])

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
        from geomstats_pullback import curvature

        batch_shape, (x, y, w, z) = self._flatten(
            (tangent_vec_a, "tangent_vec_a"),
            (tangent_vec_b, "tangent_vec_b"),
            (tangent_vec_c, "tangent_vec_c"),
            (base_point, "base_point"),
        )
        return gs.reshape(curvature.curvature(self, x, y, w, z), batch_shape + (self._space.dim,))

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
        from geomstats_pullback import curvature

        batch_shape, (u, v, z) = self._flatten(
            (tangent_vec_a, "tangent_vec_a"), (tangent_vec_b, "tangent_vec_b"), (base_point, "base_point")
        )
        return gs.reshape(curvature.sectional_curvature(self, u, v, z), batch_shape)

    def scalar_curvature(self, base_point=None):
        r"""Scalar curvature ``|H|^2 - |II|^2`` (traced Gauss equation).

        Parameters
        ----------
        base_point : array-like, shape=[..., dim]

        Returns
        -------
        scalar_curvature : array-like, shape=[...]
        """
        from geomstats_pullback import curvature

        batch_shape, (z,) = self._flatten((base_point, "base_point"))
        return gs.reshape(curvature.scalar_curvature(self, z), batch_shape)


# ---------------------------------------------------------------- gradients


def _tracks_gradients(*arrays):
    """Whether torch autograd records operations on any of ``arrays`` (pytorch backend)."""
    return (
        gs.__name__.endswith("pytorch")
        and torch.is_grad_enabled()
        and any(array.requires_grad for array in arrays)
    )


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
