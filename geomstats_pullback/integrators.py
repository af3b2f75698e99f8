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
against ``Hypersphere(2)`` are checked by the tests. Each class is a ``GSIVPIntegrator`` running an explicit Runge-Kutta
step given by its Butcher tableau (geomstats' own class cannot count the
evaluations of a custom step function).
"""

import functools
from fractions import Fraction as F

from geomstats.numerics.ivp import GSIVPIntegrator

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
# coefficients; its embedded error estimators are not needed at fixed steps.
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
    stages = []
    for row, node in zip(a, c):
        increment = sum((float(coef) * k for coef, k in zip(row, stages) if coef), 0.0)
        stages.append(force(state + dt * increment, time + float(node) * dt))
    return state + dt * sum(float(weight) * k for weight, k in zip(b, stages) if weight)


def _row_sums(a):
    """Nodes ``c_i = sum_j a_ij`` of an explicit tableau's rows."""
    return [sum(row, 0) for row in a]


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


class RK8Integrator(ExplicitRKIntegrator):
    """The eighth-order, twelve-stage method of DOP853 (12 evaluations per step).

    The default of :class:`~geomstats_pullback.geodesics.exp.GeodesicIVPSolver`:
    12 steps (144 evaluations) are more accurate than 24 of
    :class:`RK6Integrator` (168 evaluations) on smooth decoders, being two
    orders higher (see the module docstring).
    """

    tableau = (_DOP853_A, _DOP853_B)
