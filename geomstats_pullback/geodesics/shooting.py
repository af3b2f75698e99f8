"""Shooting: Newton's method on ``exp(v, z_0) = z_1``, batched over pairs.

Started from the discrete geodesic's initial velocity and its sensitivity to
the end point (:mod:`.correction`), quasi-Newton iterations with Broyden
updates make ``exp(log(z_1, z_0), z_0) = z_1`` hold for the metric's own
``exp``. Each iteration is one batched ``exp`` call on the pairs not yet
converged. Pairs where ``exp`` fails are isolated (:func:`guarded_exp`) and
left unconverged; the other pairs are unaffected. A pair whose ``exp`` did not
meet its own error tolerance (its ``converged`` flag, where the solver reports
one) is not converged either, however small its residual: the residual of an
inaccurate ``exp`` says nothing about the geodesic. Such a pair is shot
again from where it stands with ``exp`` on twice as many fixed steps
(:func:`finer_exp`), up to ``EXP_REFINEMENTS`` times: shooting escalates the
accuracy of ``exp`` until ``exp`` vouches for it.
"""

import copy
import logging
from typing import NamedTuple

import geomstats.backend as gs

from geomstats_pullback._arrays import full, ones, where, zeros
from geomstats_pullback.errors import RankDeficientJacobianError
from geomstats_pullback.geodesics.batched import isolate_failures, reported, scatter

logger = logging.getLogger(__name__)

#: Doublings of exp's fixed steps for pairs whose residual met the threshold while exp missed its tolerance.
EXP_REFINEMENTS = 2


class Shooting(NamedTuple):
    """Outcome of :func:`shoot`."""

    tangent_vec: object  #: shape=[B, d], best velocities found
    residual: object  #: shape=[B], ``|exp(v) - end|``; 0 for pairs not shot, inf where every exp failed
    converged: object  #: shape=[B], bool
    n_calls: int  #: batched exp calls made


def quiet_exp(exp):
    """``exp`` without convergence warnings, with its convergence flags, for the many calls of one shooting.

    A metric's bound ``exp`` whose ``exp_solver`` has a non-warning ``solve``
    (:class:`~geomstats_pullback.geodesics.exp.GeodesicIVPSolver`) is
    replaced by it; other callables are taken as always accurate.

    Returns
    -------
    exp_with_flags : callable
        ``(tangent_vec [A, d], base_point [A, d]) -> [A, d + 1]``: end points,
        then 1 where ``exp`` met its tolerance and 0 where not.
    """
    solver = _solver_of(exp)
    if solver is not None:

        def flagged(tangent_vec, base_point):
            result = solver.solve(tangent_vec, base_point)
            return gs.concatenate([result.end_point, gs.cast(result.converged, result.end_point.dtype)[:, None]], -1)

        return flagged
    return lambda tangent_vec, base_point: _with_flag(exp(tangent_vec, base_point))


def _solver_of(exp):
    """The solver with a non-warning ``solve`` behind ``exp`` (itself, or a bound method's ``exp_solver``), or None."""
    if not callable(exp) and callable(getattr(exp, "solve", None)):
        return exp
    solver = getattr(getattr(exp, "__self__", None), "exp_solver", None)
    return solver if callable(getattr(solver, "solve", None)) else None


def finer_exp(exp):
    """The exp solver behind ``exp`` with twice its fixed steps; None if there is none.

    Available for a metric's bound ``exp`` (or an exp solver) whose solver has
    ``solve`` and a fixed-step integrator (an ``n_steps`` attribute);
    adaptive integrators control their error themselves.

    Returns
    -------
    solver : GeodesicIVPSolver or None
        A copy, with a copy of its integrator on ``2 n_steps`` steps.
    """
    solver = _solver_of(exp)
    integrator = getattr(solver, "integrator", None)
    if solver is None or not isinstance(getattr(integrator, "n_steps", None), int):
        return None
    if getattr(integrator, "max_steps", None) is not None:  # adaptive: its own step control
        return None
    finer = copy.copy(solver)
    finer.integrator = copy.copy(integrator)
    finer.integrator.n_steps = 2 * integrator.n_steps
    finer.result_ = None
    return finer


def _with_flag(end_point):
    """``[A, d] -> [A, d + 1]``: an accurate ``exp``'s end points, flagged 1."""
    return gs.concatenate([end_point, gs.ones_like(end_point[:, :1])], -1)


def guarded_exp(exp, tangent_vec, base_point):
    """``exp`` on a batch, isolating the pairs where it fails.

    A failing batch (NaN from the decoder, a singular metric along the way) is
    split in halves until the failing pairs are alone; their end points come
    back as NaN.

    Parameters
    ----------
    exp : callable
        From :func:`quiet_exp`: end points and convergence flags ``[B, d + 1]``.

    Returns
    -------
    end_point : [B, d]
    ok : [B] bool
    accurate : [B] bool
        ``ok`` and ``exp`` met its own error tolerance.
    """
    flagged, ok = isolate_failures(
        exp, [tangent_vec, base_point], (FloatingPointError, RankDeficientJacobianError),
        lambda n: full((n, tangent_vec.shape[1] + 1), float("nan"), like=tangent_vec),
    )
    end_point = flagged[:, :-1]
    ok = ok & ~gs.any(gs.isnan(end_point), axis=-1) & gs.all(gs.abs(end_point) < float("inf"), axis=-1)
    return end_point, ok, ok & (flagged[:, -1] > 0.5)


def shoot(exp, tangent_vec, start, end, idx, sensitivity, threshold, *, max_iter, exp_refinements=EXP_REFINEMENTS):
    """Quasi-Newton shooting on ``exp(v, start) = end`` for the pairs ``idx``.

    Broyden's ("good") update of the inverse Jacobian ``M`` after each step;
    a step that does not reduce the residual is halved.

    Parameters
    ----------
    exp : callable
        ``exp(tangent_vec [A, d], base_point [A, d]) -> [A, d]`` (the metric's;
        called without its convergence warnings, :func:`quiet_exp`).
    tangent_vec : [B, d]
        Initial velocities (from the discrete geodesics).
    start, end : [B, d]
    idx : [A] int
        The pairs to shoot; the others are returned as converged, unchanged.
    sensitivity : [B, d, d]
        Starting inverse Jacobians ``(d exp / d v)^{-1}``.
    threshold : [B]
        Latent residual below which a pair converged.
    max_iter : int
        Batched ``exp`` calls at most (per ``exp`` accuracy).
    exp_refinements : int
        Doublings of ``exp``'s steps allowed for pairs whose residual met
        ``threshold`` while ``exp`` missed its own tolerance.

    Returns
    -------
    result : Shooting
    """
    n_pairs, dim = start.shape
    exp_finer = finer_exp(exp)
    exp = quiet_exp(exp)
    residual = zeros(n_pairs, like=start)
    converged = ones(n_pairs, like=start, dtype=bool)
    if idx.shape[0] == 0:
        return Shooting(tangent_vec, residual, converged, 0)
    converged = scatter(converged, idx, zeros(idx.shape[0], like=start, dtype=bool))
    residual = scatter(residual, idx, full(idx.shape[0], float("inf"), like=start))
    inverse_jac = gs.copy(sensitivity)
    best = gs.copy(tangent_vec)
    best_error = gs.zeros_like(start)  # exp(best) - end
    unverified = zeros(n_pairs, like=start, dtype=bool)  # residual below threshold, but exp flagged its own error
    trial = gs.copy(tangent_vec)
    n_calls = 0
    active = idx
    for _ in range(max_iter):
        if active.shape[0] == 0:
            break
        n_calls += 1
        reached, ok, accurate = guarded_exp(exp, trial[active], start[active])
        error = gs.where(ok[:, None], reached - end[active], gs.zeros_like(reached))  # [A, d]
        norm = where(ok, gs.linalg.norm(error, axis=-1), float("inf"))
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "Shooting iteration %d: %d pairs, largest residual %.3g",
                n_calls,
                active.shape[0],
                reported(gs.amax(norm)),
            )
        improved = norm < residual[active]
        # Broyden update from the secant (trial - best, error - best_error), where a best exists.
        secant = ok & (residual[active] < float("inf"))
        if bool(gs.any(secant)):
            s = trial[active] - best[active]
            y = error - best_error[active]
            m = inverse_jac[active]
            my = gs.einsum("bij,bj->bi", m, y)
            sm = gs.einsum("bi,bij->bj", s, m)
            denom = gs.sum(sm * y, axis=-1)
            valid = secant & (gs.abs(denom) > 1e-12 * gs.linalg.norm(s, axis=-1) * gs.linalg.norm(y, axis=-1))
            safe = gs.where(valid, denom, gs.ones_like(denom))
            update = gs.einsum("bi,bj->bij", s - my, sm) / safe[:, None, None]
            inverse_jac = scatter(inverse_jac, active, m + gs.where(valid[:, None, None], update, 0 * update))
        keep = gs.where(improved)[0]
        rows = active[keep]
        best = scatter(best, rows, trial[rows])
        best_error = scatter(best_error, rows, error[keep])
        residual = scatter(residual, rows, norm[keep])
        converged = scatter(converged, rows, (norm[keep] <= threshold[rows]) & accurate[keep])
        unverified = scatter(unverified, rows, (norm[keep] <= threshold[rows]) & ~accurate[keep])
        # Next trial: a quasi-Newton step from the best point, or half the failed step.
        newton = best[active] - gs.einsum("bij,bj->bi", inverse_jac[active], best_error[active])
        halved = (best[active] + trial[active]) / 2
        trial = scatter(trial, active, gs.where(improved[:, None], newton, halved))
        # Pairs whose very first exp failed have no point to step back to: give up on them.
        active = active[~converged[active] & ~unverified[active] & (residual[active] < float("inf"))]
    again = gs.where(unverified & ~converged)[0]
    if exp_finer is not None and exp_refinements and again.shape[0]:
        finer = shoot(
            exp_finer, best, start, end, again, inverse_jac, threshold, max_iter=max_iter,
            exp_refinements=exp_refinements - 1,
        )
        best = scatter(best, again, finer.tangent_vec[again])
        residual = scatter(residual, again, finer.residual[again])
        converged = scatter(converged, again, finer.converged[again])
        n_calls += finer.n_calls
    return Shooting(best, residual, converged, n_calls)
