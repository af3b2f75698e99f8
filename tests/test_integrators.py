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
