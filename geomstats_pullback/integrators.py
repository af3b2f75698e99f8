"""High-order fixed-step integrators for geomstats' ``GSIVPIntegrator`` interface.

geomstats ships Euler, RK2 and RK4 steps. On a smooth decoder the global
error of ``n`` steps of an order-``p`` method falls as ``n^-p``, and each step
costs one geodesic-equation evaluation per stage:

=====================================  =====  ======================
integrator                             order  evaluations per step
=====================================  =====  ======================
RK4 (geomstats)                        4      4
:class:`RK6Integrator` (Butcher)       6      7
:class:`RK8Integrator` (DOP853)        8      12
=====================================  =====  ======================

For the same number of evaluations the eighth-order method is the most
accurate on the smooth geodesics of tanh/softplus decoders; the error grows
with the latent speed ``|v|`` (arc length) and near the chart's
singularities, where more steps help more than a higher order. Errors
against ``Hypersphere(2)`` are checked by the tests.

DOP853's embedded estimators give each step's local error from the same
stages (:func:`dop853_step`): :meth:`RK8Integrator.integrate_with_error`
accumulates it at fixed steps, and :class:`AdaptiveRK8Integrator` chooses
each pair's steps with it. Each fixed-step class is a ``GSIVPIntegrator`` running an explicit Runge-Kutta
step given by its Butcher tableau (geomstats' own class cannot count the
evaluations of a custom step function).
"""

import functools
from fractions import Fraction as F

from typing import NamedTuple

import geomstats.backend as gs
from geomstats.numerics.ivp import GSIVPIntegrator, ODEIVPIntegrator, OdeResult

from geomstats_pullback._arrays import asarray, ones, where, zeros

# Butcher (1964) sixth-order, seven-stage method: rows of A (lower triangle) and weights b.
_RK6_A = (
    (),
    (F(1, 3),),
    (F(0), F(2, 3)),
    (F(1, 12), F(1, 3), F(-1, 12)),
    (F(-1, 16), F(9, 8), F(-3, 16), F(-3, 8)),
    (F(0), F(9, 8), F(-3, 8), F(-3, 4), F(1, 2)),
    (F(9, 44), F(-9, 11), F(63, 44), F(18, 11), F(0), F(-16, 11)),
)
_RK6_B = (F(11, 120), F(0), F(27, 40), F(27, 40), F(-4, 15), F(-4, 15), F(11, 120))

# The eighth-order, twelve-stage propagator of Dormand & Prince's DOP853 (Hairer,
# Norsett & Wanner, "Solving ODEs I", 2nd ed.), as in scipy.integrate's RK853
# coefficients.
_DOP853_A = (
    (),
    (0.05260015195876773,),
    (0.0197250569845379, 0.0591751709536137),
    (0.02958758547680685, 0.0, 0.08876275643042054),
    (0.2413651341592667, 0.0, -0.8845494793282861, 0.924834003261792),
    (0.037037037037037035, 0.0, 0.0, 0.17082860872947386, 0.12546768756682242),
    (0.037109375, 0.0, 0.0, 0.17025221101954405, 0.06021653898045596, -0.017578125),
    (
        0.03709200011850479, 0.0, 0.0, 0.17038392571223998, 0.10726203044637328, -0.015319437748624402,
        0.008273789163814023,
    ),
    (
        0.6241109587160757, 0.0, 0.0, -3.3608926294469414, -0.868219346841726, 27.59209969944671,
        20.154067550477894, -43.48988418106996,
    ),
    (
        0.47766253643826434, 0.0, 0.0, -2.4881146199716677, -0.590290826836843, 21.230051448181193,
        15.279233632882423, -33.28821096898486, -0.020331201708508627,
    ),
    (
        -0.9371424300859873, 0.0, 0.0, 5.186372428844064, 1.0914373489967295, -8.149787010746927,
        -18.52006565999696, 22.739487099350505, 2.4936055526796523, -3.0467644718982196,
    ),
    (
        2.273310147516538, 0.0, 0.0, -10.53449546673725, -2.0008720582248625, -17.9589318631188,
        27.94888452941996, -2.8589982771350235, -8.87285693353063, 12.360567175794303, 0.6433927460157636,
    ),
)
_DOP853_B = (
    0.054293734116568765, 0.0, 0.0, 0.0, 0.0, 4.450312892752409, 1.8915178993145003, -5.801203960010585,
    0.3111643669578199, -0.1521609496625161, 0.20136540080403034, 0.04471061572777259,
)


# DOP853's embedded error estimators, weights on the same twelve stages: ``E5``
# (fifth order) and ``E3`` (third order), as in scipy's ``dop853_coefficients``.
_DOP853_E3 = tuple(
    weight - correction
    for weight, correction in zip(
        _DOP853_B, (0.244094488188976377952755905512,) + (0.0,) * 7 + (0.733846688281611857341361741547, 0.0, 0.0,
                                                                       0.220588235294117647058823529412e-1)
    )
)
_DOP853_E5 = (
    0.1312004499419488073250102996e-1, 0.0, 0.0, 0.0, 0.0, -0.1225156446376204440720569753e1,
    -0.4957589496572501915214079952, 0.1664377182454986536961530415e1, -0.3503288487499736816886487290,
    0.3341791187130174790297318841, 0.8192320648511571246570742613e-1, -0.2235530786388629525884427845e-1,
)


def _stages(force, state, time, dt, a, c):
    """The stages ``k_i = force(state + dt sum_j a_ij k_j, time + c_i dt)`` of an explicit tableau."""
    stages = []
    for row, node in zip(a, c):
        increment = sum((float(coef) * k for coef, k in zip(row, stages) if coef), 0.0)
        stages.append(force(state + dt * increment, time + float(node) * dt))
    return stages


def _combine(stages, weights):
    """``sum_i w_i k_i`` over the non-zero weights."""
    return sum(float(weight) * k for weight, k in zip(weights, stages) if weight)


def explicit_rk_step(force, state, time, dt, a=_RK6_A, b=_RK6_B, c=None):
    """One step of an explicit Runge-Kutta method given by its Butcher tableau.

    Parameters
    ----------
    force : callable
        ``force(state, t)``, the vector field.
    state : array-like, shape=[..., n_vars, dim]
        State at ``time``.
    time, dt : float
        Current time and step.
    a, b : sequences of numbers
        Butcher tableau: lower-triangular rows and weights.
    c : sequence of numbers, optional
        Nodes; default: the row sums of ``a``.

    Returns
    -------
    new_state : array-like, shape=[..., n_vars, dim]
    """
    c = c if c is not None else _row_sums(a)
    return state + dt * _combine(_stages(force, state, time, dt, a, c), b)


def dop853_step(force, state, time, dt):
    """One step of DOP853's eighth-order method with its embedded error estimate.

    Parameters
    ----------
    force : callable
        ``force(state, t)``, the vector field.
    state : array-like, shape=[..., n_vars, dim]
        State at ``time``.
    time : float or array-like, shape=[..., 1, 1]
    dt : float or array-like, shape=[..., 1, 1]
        Step, per pair if an array.

    Returns
    -------
    new_state : array-like, shape=[..., n_vars, dim]
    error : array-like, shape=[...]
        Hairer's estimate of the local error of the step, in the units of
        the state: ``|e5|^2 / sqrt(|e5|^2 + 0.01 |e3|^2)``, where ``e5`` and
        ``e3`` are ``dt`` times the fifth- and third-order estimators'
        combinations of the stages and ``|.|`` the Euclidean norm over
        ``[n_vars, dim]``. It falls as ``dt^9`` for a smooth field, as the
        local error of the eighth-order step does.
    """
    stages = _stages(force, state, time, dt, _DOP853_A, _DOP853_C)
    new_state = state + dt * _combine(stages, _DOP853_B)
    err5 = pair_norm(dt * _combine(stages, _DOP853_E5)) ** 2
    err3 = pair_norm(dt * _combine(stages, _DOP853_E3)) ** 2
    denominator = gs.sqrt(err5 + 0.01 * err3)
    error = where(denominator > 0, err5 / where(denominator > 0, denominator, 1.0), 0.0)
    return new_state, error


def pair_norm(state):
    """Euclidean norm of each ``[n_vars, dim]`` state: shape ``[...]``."""
    return gs.sqrt(gs.sum(state**2, axis=(-2, -1)))


def _row_sums(a):
    """Nodes ``c_i = sum_j a_ij`` of an explicit tableau's rows."""
    return [sum(row, 0) for row in a]


_DOP853_C = _row_sums(_DOP853_A)


class ExplicitRKIntegrator(GSIVPIntegrator):
    """geomstats' fixed-step integrator running an explicit Runge-Kutta tableau.

    Subclasses set ``tableau = (a, b)``: lower-triangular rows and weights.

    Parameters
    ----------
    n_steps : int
        Number of steps on ``[0, end_time]``.
    save_result : bool
        Keep the last result as ``result_``.
    """

    tableau = None

    def __init__(self, n_steps=16, save_result=False):
        if self.tableau is None:
            raise TypeError(
                "ExplicitRKIntegrator needs a tableau: use RK6Integrator, RK8Integrator or a "
                "subclass that sets tableau = (a, b)."
            )
        a, b = self.tableau
        step = functools.partial(explicit_rk_step, a=a, b=b, c=_row_sums(a))
        super().__init__(n_steps=n_steps, step_type=step, save_result=save_result)

    def _get_n_fevals(self, n_steps):
        return len(self.tableau[1]) * n_steps


class RK6Integrator(ExplicitRKIntegrator):
    """Butcher's sixth-order, seven-stage method (7 evaluations per step)."""

    tableau = (_RK6_A, _RK6_B)


class EmbeddedIVPResult(NamedTuple):
    """Outcome of an integration with DOP853's embedded error estimate.

    ``...`` is the batch shape of the initial state ``[..., n_vars, dim]``.
    """

    final_state: object  #: shape=[..., n_vars, dim], the state at ``end_time`` (NaN where not reached)
    error_estimate: object  #: shape=[...], sum of the steps' local error estimates (units of the state)
    scale: object  #: shape=[...], ``max_t sum_i |y_i(t)|`` plus the distance travelled by ``y_0``
    completed: object  #: shape=[...], bool: ``end_time`` reached
    n_steps: object  #: shape=[...], int: accepted steps
    n_evaluations: object  #: shape=[...], int: evaluations of ``force`` (rejected steps included)


def _running_scale(state, previous_state=None):
    """``sum_i |y_i|`` per pair and, with ``previous_state``, ``|y_0 - y_0^prev|``: shapes ``[...]``."""
    size = gs.sum(gs.linalg.norm(state, axis=-1), axis=-1)
    if previous_state is None:
        return size, gs.zeros_like(size)
    return size, gs.linalg.norm(state[..., 0, :] - previous_state[..., 0, :], axis=-1)


class RK8Integrator(ExplicitRKIntegrator):
    """The eighth-order, twelve-stage method of DOP853 (12 evaluations per step).

    The default of :class:`~geomstats_pullback.geodesics.exp.GeodesicIVPSolver`:
    12 steps (144 evaluations) are more accurate than 24 of
    :class:`RK6Integrator` (168 evaluations) on smooth decoders, being two
    orders higher (see the module docstring). :meth:`integrate_with_error`
    also returns DOP853's embedded error estimate, from the same stages.
    """

    tableau = (_DOP853_A, _DOP853_B)

    def integrate_with_error(self, force, initial_state, end_time=1.0):
        """Fixed steps, accumulating each step's embedded error estimate.

        Parameters
        ----------
        force : callable
            ``force(state, t)``.
        initial_state : array-like, shape=[..., n_vars, dim]
        end_time : float

        Returns
        -------
        result : EmbeddedIVPResult
            ``error_estimate`` is the sum of the local estimates (an
            estimate of the global error that neglects how errors grow along
            the solution); ``completed`` is all True.
        """
        dt = end_time / self.n_steps
        state = initial_state
        error = zeros(initial_state.shape[:-2], like=initial_state)
        largest, travelled = _running_scale(state)
        for i in range(self.n_steps):
            new_state, step_error = dop853_step(force, state, i * dt, dt)
            size, moved = _running_scale(new_state, state)
            error, largest, travelled = error + step_error, gs.maximum(largest, size), travelled + moved
            state = new_state
        steps = self.n_steps * ones(error.shape, like=error, dtype=gs.int64)
        return EmbeddedIVPResult(
            state, error, largest + travelled, ones(error.shape, like=error, dtype=bool), steps, steps * len(_DOP853_B)
        )


def _finite(state):
    """Whether every entry of each ``[n_vars, dim]`` state is finite: shape ``[...]``."""
    return gs.all(gs.abs(state) < float("inf"), axis=(-2, -1))


def default_rtol(*dtypes):
    """Default relative tolerance of the error control: ``1e-6`` if all ``dtypes`` are float64, else ``1e-3``."""
    return 1e-6 if all(dtype == gs.float64 for dtype in dtypes) else 1e-3


class AdaptiveRK8Integrator(ODEIVPIntegrator):
    """DOP853 with step-size control, a step size per member of the batch.

    Each pair of the batch ``[..., n_vars, dim]`` is stepped with its own
    step ``h``: a step is accepted when Hairer's embedded error estimate
    (:func:`dop853_step`) is at most ``atol + rtol * max(|y|, |y_new|)``
    (Euclidean norms of the pair's whole state), and the next step is
    ``h * clip(safety * err^(-1/8), min_factor, max_factor)`` (at most ``h``
    after a rejection). Finished pairs are masked out: each batched
    evaluation of ``force`` only sees the pairs still running.

    Parameters
    ----------
    rtol : float, optional
        Relative tolerance per step. Default: ``1e-6`` for float64 states,
        ``1e-3`` for float32 and lower (:func:`default_rtol`).
    atol : float
        Absolute tolerance per step.
    n_steps : int
        The first step is ``end_time / n_steps``.
    max_steps : int
        Step attempts per pair; a pair that needs more is not completed.
    safety, min_factor, max_factor : float
        Hairer's step-size controller (0.9, 0.2, 10 by default).
    save_result : bool
        Keep the last :class:`EmbeddedIVPResult` as ``result_``.

    Notes
    -----
    ``force(state, t)`` is called with ``t`` an array of shape
    ``[A, 1, 1]`` (one time per running pair); the geodesic and transport
    fields do not depend on it. A pair that is not completed ends with a
    NaN state, so that no point short of ``end_time`` is taken for the
    answer; :meth:`integrate` also returns NaN there.
    """

    def __init__(
        self, *, rtol=None, atol=0.0, n_steps=12, max_steps=10_000, safety=0.9, min_factor=0.2, max_factor=10.0,
        save_result=False,
    ):
        super().__init__(save_result=save_result, tchosen=False)
        self.rtol, self.atol, self.n_steps, self.max_steps = rtol, atol, n_steps, max_steps
        self.safety, self.min_factor, self.max_factor = safety, min_factor, max_factor

    def integrate(self, force, initial_state, end_time=1.0):
        """geomstats' interface: an ``OdeResult`` with ``y`` of shape ``[2, ..., n_vars, dim]`` (start and end)."""
        result = self.integrate_with_error(force, initial_state, end_time=end_time)
        return OdeResult(
            t=asarray([0.0, end_time], like=initial_state),
            y=gs.stack([initial_state, result.final_state]),
            nfev=int(gs.sum(result.n_evaluations)),
            njev=0,
            sucess=bool(gs.all(result.completed)),
        )

    def integrate_with_error(self, force, initial_state, end_time=1.0, *, rtol=None):
        """Integrate to ``end_time`` with error control, each pair with its own steps.

        Parameters
        ----------
        force : callable
            ``force(state, t)``.
        initial_state : array-like, shape=[..., n_vars, dim]
        end_time : float
        rtol : float, optional
            Used when the integrator's own ``rtol`` is None (instead of the
            default of the state's dtype).

        Returns
        -------
        result : EmbeddedIVPResult
        """
        batch_shape, var_shape = initial_state.shape[:-2], initial_state.shape[-2:]
        state = gs.reshape(initial_state, (-1,) + var_shape)  # [B, n_vars, d]
        n_pairs, dtype = state.shape[0], state.dtype
        rtol = self.rtol if self.rtol is not None else rtol if rtol is not None else default_rtol(dtype)
        time = zeros(n_pairs, like=state)
        step = end_time / self.n_steps * ones(n_pairs, like=state)
        error = zeros(n_pairs, like=state)
        largest, travelled = _running_scale(state)
        accepted = zeros(n_pairs, like=state, dtype=gs.int64)
        attempts = zeros(n_pairs, like=state, dtype=gs.int64)
        done = zeros(n_pairs, like=state, dtype=bool)
        running = ones(n_pairs, like=state, dtype=bool)
        tiny = 10 * (2.0**-52 if dtype == gs.float64 else 2.0**-23) * abs(end_time)
        while bool(gs.any(running)):
            idx = gs.where(running)[0]
            y, remaining = state[idx], end_time - time[idx]
            last = step[idx] >= remaining
            h = where(last, remaining, step[idx])
            new_y, local = dop853_step(force, y, time[idx][:, None, None], h[:, None, None])
            size, moved = _running_scale(new_y, y)
            tolerance = self.atol + rtol * gs.maximum(_running_scale(y)[0], size)
            finite = _finite(new_y) & (gs.abs(local) < float("inf"))
            ratio = where(local > 0, local / where(tolerance > 0, tolerance, 1.0), 0.0)
            ratio = where(finite & ((tolerance > 0) | (local == 0)), ratio, float("inf"))
            ok = ratio <= 1.0
            factor = self.safety * where(ratio > 0, ratio, 1.0) ** (-1.0 / 8)
            factor = where(ratio > 0, gs.clip(factor, self.min_factor, self.max_factor), self.max_factor)
            factor = where(ok, factor, gs.clip(factor, None, 1.0))
            state = state.index_put((idx,), where(ok[:, None, None], new_y, y))
            time = time.index_put((idx,), where(ok, where(last, end_time, time[idx] + h), time[idx]))
            step = step.index_put((idx,), h * factor)
            error = error.index_put((idx,), error[idx] + where(ok, local, 0.0))
            largest = largest.index_put((idx,), where(ok, gs.maximum(largest[idx], size), largest[idx]))
            travelled = travelled.index_put((idx,), travelled[idx] + where(ok, moved, 0.0))
            accepted = accepted.index_put((idx,), accepted[idx] + gs.cast(ok, gs.int64))
            attempts = attempts.index_put((idx,), attempts[idx] + 1)
            done = done.index_put((idx,), ok & last)
            stuck = (attempts[idx] >= self.max_steps) | (step[idx] < tiny)
            running = running.index_put((idx,), ~(ok & last) & ~stuck)
        state = where(done[:, None, None], state, float("nan"))
        shape = lambda x, extra=(): gs.reshape(x, batch_shape + extra)  # noqa: E731
        result = EmbeddedIVPResult(
            shape(state, var_shape), shape(error), shape(largest + travelled), shape(done), shape(accepted),
            shape(attempts * len(_DOP853_B)),
        )
        if self.save_result:
            self.result_ = result
        return result
