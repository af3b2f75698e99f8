"""Geodesic initial value problem: ``exp`` and ``geodesic(..., initial_tangent_vec=...)``.

A thin subclass of geomstats' own :class:`~geomstats.numerics.geodesic.ExpODESolver`:
it integrates the geodesic equation of the pullback metric
(:func:`~geomstats_pullback.kernels.geodesic_rhs`, the same as
``metric.geodesic_equation``) with geomstats' fixed-step integrators, and adds
what the stock solver lacks: broadcasting in both directions (one base point
with many vectors, many base points with one vector) and a geodesic evaluated
at many times in one batched integration, using ``gamma_v(t) = exp(t v)``.

Cost: ``n_steps * stages`` evaluations of the right-hand side, each one
linearisation of the decoder at ``B`` points. The rank of ``G`` is checked at
both ends of each geodesic (one Jacobian each), not at every evaluation,
unless ``rank_check="every_step"``.
"""

import geomstats.backend as gs
from geomstats.numerics.geodesic import ExpODESolver

from geomstats_pullback._validation import as_latent, broadcast_batch
from geomstats_pullback.integrators import RK8Integrator
from geomstats_pullback.kernels import geodesic_rhs, require_full_rank_at

RANK_CHECKS = ("ends", "every_step")


def default_integrator(n_steps=12):
    """The default integrator of ``exp`` and transport: DOP853's eighth-order method, ``n_steps`` steps."""
    return RK8Integrator(n_steps=n_steps)


class GeodesicIVPSolver(ExpODESolver):
    """Exponential map by integrating the geodesic equation.

    Parameters
    ----------
    space : DecoderManifold
        Equipped latent manifold.
    n_steps : int
        Number of eighth-order steps on ``t in [0, 1]``. Keyword-only.
    integrator : geomstats ODEIVPIntegrator, optional
        Replaces the default :func:`default_integrator`, e.g.
        :class:`~geomstats_pullback.integrators.RK6Integrator` or
        ``GSIVPIntegrator(n_steps=32, step_type="rk4")``.
    rank_check : {"ends", "every_step"}
        Where :class:`~geomstats_pullback.errors.RankDeficientJacobianError`
        is looked for: at both ends of each geodesic (default), or at every
        evaluation of the right-hand side (one eigenvalue decomposition and a
        host synchronisation each), which also catches a geodesic that
        passes through a singular point.

    Notes
    -----
    Eighth order: the error falls as ``n_steps ** -8`` while the geodesic
    stays where the decoder is smooth; ``benchmarks/bench_exp.py`` measures it
    on the sphere chart.
    """

    def __init__(self, space, *, n_steps=12, integrator=None, rank_check="ends"):
        if rank_check not in RANK_CHECKS:
            raise ValueError(f"rank_check must be one of {RANK_CHECKS}, got {rank_check!r}.")
        self.rank_check = rank_check
        super().__init__(space, integrator=default_integrator(n_steps) if integrator is None else integrator)

    @ExpODESolver.integrator.setter
    def integrator(self, integrator):
        """Set the integrator; geodesics at chosen times work with any of them."""
        self._integrator = integrator
        self.solves_ivp = True

    def exp(self, tangent_vec, base_point):
        """Exponential map, batched and broadcast.

        Parameters
        ----------
        tangent_vec : array-like, shape=[..., dim]
            Initial velocities.
        base_point : array-like, shape=[..., dim]
            Initial points; broadcast against ``tangent_vec``.

        Returns
        -------
        end_point : array-like, shape=[..., dim]
            Points reached at time 1.
        """
        dim = self._space.dim
        tangent_vec = as_latent(tangent_vec, dim, "tangent_vec")
        base_point = as_latent(base_point, dim, "base_point")
        batch_shape, (tangent_flat, base_flat) = broadcast_batch(tangent_vec, base_point)
        metric = self._space.metric
        decoder, eps, rank_rtol = metric.decoder, metric.eps, metric.rank_rtol
        step_rtol = rank_rtol if self.rank_check == "every_step" else None
        require_full_rank_at(decoder, base_flat, eps=eps, rank_rtol=rank_rtol)
        state = gs.stack([base_flat, tangent_flat], axis=1)  # [B, 2, d]
        force = lambda y, _: geodesic_rhs(decoder, y, eps=eps, rank_rtol=step_rtol)  # noqa: E731
        end = self.integrator.integrate(force, state).get_last_y()[:, 0]  # [B, d]
        require_full_rank_at(decoder, end, eps=eps, rank_rtol=rank_rtol)
        return gs.reshape(end, batch_shape + (dim,))

    def geodesic_ivp(self, tangent_vec, base_point):
        """Geodesic from an initial point and velocity, at chosen times.

        Parameters
        ----------
        tangent_vec : array-like, shape=[..., dim]
        base_point : array-like, shape=[..., dim]

        Returns
        -------
        path : callable
            ``path(t)`` with ``t`` of shape ``[n_times]`` returns points of
            shape ``[..., n_times, dim]``, all integrated in one batch.
        """
        dim = self._space.dim
        tangent_vec = as_latent(tangent_vec, dim, "tangent_vec")
        base_point = as_latent(base_point, dim, "base_point")

        def path(t):
            t = gs.reshape(gs.cast(gs.array(t), tangent_vec.dtype), (-1,))
            scaled = t[:, None] * tangent_vec[..., None, :]  # [..., n_t, d]
            return self.exp(scaled, base_point[..., None, :])

        return path
