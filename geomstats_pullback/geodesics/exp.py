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

Error control. The default eighth-order steps are DOP853's, whose embedded
estimators give each step's local error from the stages already computed
(:func:`~geomstats_pullback.integrators.dop853_step`). At fixed steps their
sum is the pair's ``error_estimate``; a pair is flagged (``converged`` False,
a :class:`~geomstats_pullback.errors.ConvergenceWarning`) when it exceeds
``atol + rtol * scale``, ``scale`` being the largest ``|z| + |v|`` along the
geodesic plus the latent distance travelled. With ``adaptive=True`` each pair
gets its own step sizes instead
(:class:`~geomstats_pullback.integrators.AdaptiveRK8Integrator`), and is
flagged only if it needs more than ``max_steps`` steps.

Decoders that are not twice differentiable (ReLU, LeakyReLU, ELU,
max-pooling; :func:`~geomstats_pullback.smoothness.is_smooth`): the geodesic
equation needs ``f''``, which is zero almost everywhere on a piecewise-linear
decoder, so the integrator follows straight latent lines through the kinks
where the true (discrete-energy) geodesic bends, and its error estimate,
blind to them, cannot control the error. Every pair is then flagged
(``converged`` False, a warning from :meth:`GeodesicIVPSolver.exp`); the
error estimate is still returned, as that of the integration of the
equation where it holds.
"""

import logging
from typing import NamedTuple

import geomstats.backend as gs
import numpy as np
from geomstats.numerics.geodesic import ExpODESolver

from geomstats_pullback._arrays import asarray, full, ones, where, zeros
from geomstats_pullback._validation import as_latent, broadcast_batch, warn_unconverged
from geomstats_pullback.compiled import compiled_geodesic_rhs
from geomstats_pullback.integrators import AdaptiveRK8Integrator, RK8Integrator, default_rtol
from geomstats_pullback.kernels import geodesic_rhs, require_full_rank_at
from geomstats_pullback.smoothness import is_smooth

logger = logging.getLogger(__name__)

RANK_CHECKS = ("ends", "every_step")


def default_integrator(n_steps=12):
    """The default integrator of ``exp`` and transport: DOP853's eighth-order method, ``n_steps`` steps."""
    return RK8Integrator(n_steps=n_steps)


class GeodesicIVPResult(NamedTuple):
    """Outcome of :meth:`GeodesicIVPSolver.solve`; ``...`` is the broadcast batch shape."""

    end_point: object  #: shape=[..., dim], the points reached at time 1 (NaN where adaptive stepping gave up)
    error_estimate: object  #: shape=[...], accumulated embedded error estimate (latent units); NaN if unknown
    converged: object  #: shape=[...], bool
    n_steps: object  #: shape=[...], int: accepted steps per pair
    n_evaluations: object  #: shape=[...], int: right-hand side evaluations per pair


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
    rtol, atol : float, optional
        Error control (see the module docstring). ``rtol`` defaults to
        ``1e-6`` for float64 points and ``1e-3`` for float32 and lower;
        ``atol`` to 0. Keyword-only.
    adaptive : bool
        Step-size control per pair (:class:`~geomstats_pullback.integrators.AdaptiveRK8Integrator`
        with ``rtol``, ``atol``, ``max_steps``; its first step is ``1 / n_steps``)
        instead of ``n_steps`` fixed steps. Parallel transport
        (``metric.parallel_transport``) then also steps adaptively, with the
        transported vectors in the error norm. Ignored if ``integrator`` is given.
    max_steps : int
        Step attempts per pair with ``adaptive=True``.
    warn : bool
        Issue a :class:`~geomstats_pullback.errors.ConvergenceWarning` from
        :meth:`exp` when a pair is flagged. :meth:`solve` never warns.
    compile : bool
        Evaluate the right-hand side with ``torch.compile``
        (:func:`~geomstats_pullback.compiled.compiled_geodesic_rhs`: probed in
        a child process first, compiled once per decoder; a logged fallback
        to the eager kernels where that fails). Not with
        ``rank_check="every_step"``.

    Attributes
    ----------
    result_ : GeodesicIVPResult or None
        The last result of :meth:`solve` (or :meth:`exp`). With an
        integrator that has no error estimate (e.g. geomstats'
        ``GSIVPIntegrator``), ``error_estimate`` is NaN and ``converged`` True.

    Notes
    -----
    Eighth order: the error falls as ``n_steps ** -8`` while the geodesic
    stays where the decoder is smooth; ``benchmarks/bench_exp.py`` measures it
    on the sphere chart. The accumulated estimate falls one order slower and
    stays above the error on smooth problems (``tests/test_exp.py``).
    """

    def __init__(
        self, space, *, n_steps=12, integrator=None, rank_check="ends", rtol=None, atol=0.0, adaptive=False,
        max_steps=10_000, warn=True, compile=False,
    ):
        if rank_check not in RANK_CHECKS:
            raise ValueError(f"rank_check must be one of {RANK_CHECKS}, got {rank_check!r}.")
        self.rank_check = rank_check
        self.rtol, self.atol, self.adaptive, self.max_steps, self.warn = rtol, atol, adaptive, max_steps, warn
        self.compile = bool(compile)
        self.result_ = None
        if integrator is None:
            integrator = (
                AdaptiveRK8Integrator(rtol=rtol, atol=atol, n_steps=n_steps, max_steps=max_steps)
                if adaptive
                else default_integrator(n_steps)
            )
        super().__init__(space, integrator=integrator)

    @ExpODESolver.integrator.setter
    def integrator(self, integrator):
        """Set the integrator; geodesics at chosen times work with any of them."""
        self._integrator = integrator
        self.solves_ivp = True

    def solve(self, tangent_vec, base_point):
        """Exponential map with its error estimate, without warning.

        Parameters
        ----------
        tangent_vec : array-like, shape=[..., dim]
            Initial velocities.
        base_point : array-like, shape=[..., dim]
            Initial points; broadcast against ``tangent_vec``.

        Returns
        -------
        result : GeodesicIVPResult
            Also kept as :attr:`result_`.
        """
        dim = self._space.dim
        tangent_vec = as_latent(tangent_vec, dim, "tangent_vec")
        base_point = as_latent(base_point, dim, "base_point")
        batch_shape, (tangent_flat, base_flat) = broadcast_batch(tangent_vec, base_point)
        metric = self._space.metric
        decoder, eps, rank_rtol = metric.decoder, metric.eps, metric.rank_rtol
        step_rtol = rank_rtol if self.rank_check == "every_step" else None
        n_pairs = base_flat.shape[0]
        if n_pairs:
            require_full_rank_at(decoder, base_flat, eps=eps, rank_rtol=rank_rtol)
        state = gs.stack([base_flat, tangent_flat], axis=1)  # [B, 2, d]
        force = lambda y, _: geodesic_rhs(decoder, y, eps=eps, rank_rtol=step_rtol)  # noqa: E731
        compiled = compiled_geodesic_rhs(decoder, eps=eps) if self.compile and step_rtol is None and n_pairs else None
        if compiled is not None:
            force = lambda y, _: compiled(y)  # noqa: E731
        if not n_pairs:
            end, error = base_flat, zeros(0, like=base_flat)
            converged, n_steps = ones(0, like=base_flat, dtype=bool), zeros(0, like=base_flat, dtype=gs.int64)
            n_evaluations = n_steps
        elif isinstance(self.integrator, AdaptiveRK8Integrator):
            ivp = self.integrator.integrate_with_error(force, state, rtol=self._rtol(state))
            end, error, n_steps, n_evaluations = ivp.final_state[:, 0], ivp.error_estimate, ivp.n_steps, ivp.n_evaluations
            converged = ivp.completed
        elif hasattr(self.integrator, "integrate_with_error"):
            ivp = self.integrator.integrate_with_error(force, state)
            end, error, n_steps, n_evaluations = ivp.final_state[:, 0], ivp.error_estimate, ivp.n_steps, ivp.n_evaluations
            converged = (error <= self.atol + self._rtol(state) * ivp.scale) & (gs.abs(end).sum(-1) < float("inf"))
        else:
            ode = self.integrator.integrate(force, state)
            end = ode.get_last_y()[:, 0]  # [B, d]
            error = full(n_pairs, float("nan"), like=end)
            converged = ones(n_pairs, like=end, dtype=bool)
            n_steps = full(n_pairs, getattr(self.integrator, "n_steps", 0), like=end, dtype=gs.int64)
            n_evaluations = full(n_pairs, int(getattr(ode, "nfev", 0)), like=end, dtype=gs.int64)
        if not is_smooth(decoder):
            converged = zeros(n_pairs, like=base_flat, dtype=bool)
        reached = ~gs.any(gs.isnan(end), axis=-1)
        if bool(gs.any(reached)):
            require_full_rank_at(decoder, end[reached], eps=eps, rank_rtol=rank_rtol)
        result = GeodesicIVPResult(
            gs.reshape(end, batch_shape + (dim,)),
            *(gs.reshape(x, batch_shape) for x in (error, converged, n_steps, n_evaluations)),
        )
        self.result_ = result
        return result

    def _rtol(self, state):
        """``rtol``, or its default for the precision of the points and of the decoder."""
        if self.rtol is not None:
            return self.rtol
        return default_rtol(state.dtype, getattr(self._space.metric.decoder, "dtype", state.dtype))

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

        Warns
        -----
        ConvergenceWarning
            If the error estimate of some pair exceeds the tolerance, or
            adaptive stepping gave up on it, or the decoder is not twice
            differentiable (also logged; not with ``warn=False``); see
            :attr:`result_`.
        """
        result = self.solve(tangent_vec, base_point)
        converged = result.converged
        n_failed = int(gs.sum(gs.cast(~converged, gs.int64)))
        if n_failed and self.warn:
            if not is_smooth(self._space.metric.decoder):
                how = (
                    "the decoder is not twice differentiable (geomstats_pullback.smoothness): the geodesic "
                    "equation does not hold across the kinks of its activations and the step error cannot be "
                    "controlled; use metric.log / metric.geodesic(..., end_point=...) (discrete energy) instead"
                )
            elif isinstance(self.integrator, AdaptiveRK8Integrator):
                how = f"adaptive steps gave up after max_steps={self.integrator.max_steps}; their end points are NaN"
            else:
                worst = float(gs.amax(where(converged, 0.0, result.error_estimate)))
                how = f"largest error estimate {worst:.3g} in latent units; raise n_steps or pass adaptive=True"
            message = (
                f"exp did not reach its tolerance for {n_failed} of {int(np.prod(converged.shape))} "
                f"geodesic(s) ({how}). Inspect metric.exp_solver.result_."
            )
            warn_unconverged(logger, message)
        return result.end_point

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
            t = gs.reshape(asarray(t, like=tangent_vec), (-1,))
            scaled = t[:, None] * tangent_vec[..., None, :]  # [..., n_t, d]
            return self.exp(scaled, base_point[..., None, :])

        return path
