"""Runge-Kutta tableaux: order conditions and measured convergence orders."""

import math

import pytest
import torch

from geomstats_pullback.integrators import RK6Integrator, RK8Integrator


@pytest.mark.parametrize("integrator_class, order", [(RK6Integrator, 6), (RK8Integrator, 8)])
def test_tableau_satisfies_quadrature_and_row_sum_conditions(integrator_class, order):
    a, b = integrator_class.tableau
    nodes = [sum(row, 0) for row in a]
    assert len(a) == len(b) and all(len(row) == i for i, row in enumerate(a))
    for k in range(1, order + 1):  # sum_i b_i c_i^(k-1) = 1/k: exact for polynomials of degree < order
        assert float(sum(w * c ** (k - 1) for w, c in zip(b, nodes))) == pytest.approx(1 / k, abs=1e-14)


@pytest.mark.parametrize("integrator_class, order", [(RK6Integrator, 6), (RK8Integrator, 8)])
def test_observed_order_on_a_nonlinear_oscillator(integrator_class, order):
    """Pendulum-like ``x'' = -sin(x)`` with a reference from 64x more steps; error ratio ~ 2^order."""

    def force(state, _):
        return torch.stack([state[..., 1, :], -torch.sin(state[..., 0, :])], dim=-2)

    initial = torch.tensor([[[1.2], [0.3]]], dtype=torch.float64)  # [1, 2, 1]
    end_time = 3.0

    def solve(n_steps):
        return integrator_class(n_steps=n_steps).integrate(force, initial, end_time=end_time).get_last_y()

    reference = solve(256)
    coarse, fine = ((solve(n) - reference).abs().max().item() for n in (4, 8))
    assert math.log2(coarse / fine) == pytest.approx(order, abs=0.8)
    assert integrator_class(n_steps=3)._get_n_fevals(3) == 3 * len(integrator_class.tableau[1])


def test_base_class_without_tableau_says_what_to_use():
    from geomstats_pullback.integrators import ExplicitRKIntegrator

    with pytest.raises(TypeError, match="RK8Integrator"):
        ExplicitRKIntegrator(n_steps=4)


def _pendulum(state, _):
    return torch.stack([state[..., 1, :], -torch.sin(state[..., 0, :])], dim=-2)


PENDULUM_STARTS = torch.tensor([[[1.2], [0.3]], [[0.1], [0.1]], [[3.0], [0.5]]], dtype=torch.float64)  # [3, 2, 1]


def test_dop853_local_error_estimate_has_order_eight():
    """Hairer's estimate of one step falls as h^8 (the step's true local error as h^9)."""
    from geomstats_pullback.integrators import dop853_step

    estimates = [dop853_step(_pendulum, PENDULUM_STARTS, 0.0, h)[1] for h in (0.4, 0.2)]
    orders = torch.log2(estimates[0] / estimates[1])
    assert orders.min() > 7.5 and orders.max() < 8.8


@pytest.mark.parametrize("rtol", [1e-5, 1e-9])
def test_adaptive_integrator_reaches_rtol_with_its_own_steps_per_pair(rtol):
    from geomstats_pullback.integrators import AdaptiveRK8Integrator

    reference = RK8Integrator(n_steps=512).integrate(_pendulum, PENDULUM_STARTS, end_time=10.0).get_last_y()
    integrator = AdaptiveRK8Integrator(rtol=rtol)
    result = integrator.integrate_with_error(_pendulum, PENDULUM_STARTS, end_time=10.0)
    error = (result.final_state - reference).flatten(1).norm(dim=1)
    scale = reference.flatten(1).norm(dim=1)
    assert result.completed.all() and (error <= 100 * rtol * scale).all()
    assert len(set(result.n_steps.tolist())) > 1
    assert (result.n_evaluations >= 12 * result.n_steps).all()
    ode = integrator.integrate(_pendulum, PENDULUM_STARTS, end_time=10.0)  # geomstats' interface
    torch.testing.assert_close(ode.get_last_y(), result.final_state)


def test_adaptive_integrator_that_runs_out_of_steps_returns_nan():
    from geomstats_pullback.integrators import AdaptiveRK8Integrator

    result = AdaptiveRK8Integrator(rtol=1e-12, max_steps=4).integrate_with_error(_pendulum, PENDULUM_STARTS, end_time=10.0)
    assert not result.completed.any() and torch.isnan(result.final_state).all()
