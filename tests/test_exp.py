"""``exp``'s error control: DOP853's embedded estimate, the warning and flag, adaptive steps, empty batches."""

import warnings

import geomstats.backend as gs
import pytest
import torch
from cases import CASES
from conftest import sphere_points
from geomstats.numerics.ivp import GSIVPIntegrator
from test_metric import geodesics_away_from_poles

import geomstats_pullback as gp
from geomstats_pullback import analytic
from geomstats_pullback.errors import ConvergenceWarning
from geomstats_pullback.geodesics import GeodesicIVPSolver


def long_sphere_geodesics(space, hypersphere, n=200, max_speed=3.0):
    """Geodesics of speed up to ``max_speed`` whose great circle stays away from the chart's poles."""
    z = sphere_points(n, seed=1)
    v = gs.random.normal(size=(n, 2))
    v = v / space.metric.norm(v, z)[:, None] * max_speed * gs.random.rand(n, 1)
    return geodesics_away_from_poles(hypersphere, z, v)


def hypersphere_exp(hypersphere, v, z):
    return hypersphere.metric.exp(hypersphere.tangent_spherical_to_extrinsic(v, z), hypersphere.spherical_to_extrinsic(z))


@pytest.fixture(scope="module")
def saturating_mlp():
    """The issue's reproduction: a 2-64-64-784 tanh MLP with eps=1e-8, where ``exp(5 [.6, .8], [.1, .2])``
    runs far out into the saturated region and 12 steps are wildly wrong."""
    return gp.DecoderManifold(analytic.random_mlp(), latent_dim=2, metric_kwargs=dict(eps=1e-8))


REPRO_V, REPRO_Z = (5.0 * gs.array([0.6, 0.8]), gs.array([0.1, 0.2]))


def test_error_estimate_has_the_order_of_the_error_and_bounds_it(sphere_space, hypersphere):
    """Halving the steps divides the true error by ~2^8 and the accumulated estimate by ~2^7
    (a sum of ``n`` local ``O(h^8)`` estimates), which stays above the error."""
    z, v = long_sphere_geodesics(sphere_space, hypersphere)
    expected = hypersphere_exp(hypersphere, v, z)
    errors, estimates = [], []
    for n_steps in (8, 16):
        result = GeodesicIVPSolver(sphere_space, n_steps=n_steps).solve(v, z)
        errors.append((analytic.sphere_chart(result.end_point) - expected).norm(dim=-1))
        estimates.append(result.error_estimate)
    above_rounding = errors[1] > 1e-13
    assert above_rounding.sum() > 20
    for error, estimate in zip(errors, estimates):  # the latent error bounds the error on the sphere
        assert (estimate[above_rounding] >= error[above_rounding]).all()
    true_order = torch.log2(errors[0] / errors[1])[above_rounding].median().item()
    estimated_order = torch.log2(estimates[0] / estimates[1])[above_rounding].median().item()
    assert true_order == pytest.approx(8, abs=0.5)
    assert estimated_order == pytest.approx(true_order - 1, abs=0.5)


def test_the_issues_reproduction_is_flagged(saturating_mlp):
    metric = saturating_mlp.metric
    with pytest.warns(ConvergenceWarning, match="1 of 1 geodesic"):
        metric.exp(REPRO_V, REPRO_Z)
    result = metric.exp_solver.result_
    assert not bool(result.converged)
    assert float(result.error_estimate) > 1e3
    assert int(result.n_steps) == 12 and int(result.n_evaluations) == 144


def test_warn_false_and_solve_flag_without_warning(saturating_mlp):
    solver = GeodesicIVPSolver(saturating_mlp, warn=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        solver.exp(REPRO_V, REPRO_Z)
        assert not bool(solver.result_.converged)
        assert not bool(GeodesicIVPSolver(saturating_mlp).solve(REPRO_V, REPRO_Z).converged)


@pytest.mark.slow
def test_adaptive_steps_agree_with_tighter_tolerance_on_the_reproduction(saturating_mlp):
    tight = GeodesicIVPSolver(saturating_mlp, adaptive=True, rtol=1e-10).solve(REPRO_V, REPRO_Z)
    loose = GeodesicIVPSolver(saturating_mlp, adaptive=True).solve(REPRO_V, REPRO_Z)
    assert bool(tight.converged) and bool(loose.converged)
    assert int(tight.n_steps) > int(loose.n_steps) > 12
    relative = (loose.end_point - tight.end_point).norm() / tight.end_point.norm()
    assert relative < 1e-5


@pytest.mark.slow
def test_adaptive_steps_reach_a_fine_fixed_step_solution_on_the_reproduction(saturating_mlp):
    reference = GeodesicIVPSolver(saturating_mlp, n_steps=1000, warn=False).solve(REPRO_V, REPRO_Z).end_point
    result = GeodesicIVPSolver(saturating_mlp, adaptive=True, rtol=1e-9).solve(REPRO_V, REPRO_Z)
    assert bool(result.converged)
    torch.testing.assert_close(result.end_point, reference, rtol=1e-8, atol=0)


@pytest.mark.parametrize("rtol", [1e-6, 1e-9])
def test_adaptive_steps_reach_rtol_on_long_sphere_geodesics(sphere_space, hypersphere, rtol):
    z, v = long_sphere_geodesics(sphere_space, hypersphere)
    result = GeodesicIVPSolver(sphere_space, adaptive=True, rtol=rtol).solve(v, z)
    assert result.converged.all()
    error = (analytic.sphere_chart(result.end_point) - hypersphere_exp(hypersphere, v, z)).norm(dim=-1)
    scale = z.norm(dim=-1) + v.norm(dim=-1)
    assert (error <= 10 * rtol * scale).all()
    assert result.n_steps.min() < result.n_steps.max()  # each pair takes its own steps


def test_adaptive_gives_up_with_nan_and_a_warning(sphere_space):
    solver = GeodesicIVPSolver(sphere_space, adaptive=True, rtol=1e-12, max_steps=3, n_steps=1)
    z, v = sphere_points(4), gs.array([[1.0, 0.5]] * 4)
    with pytest.warns(ConvergenceWarning, match="max_steps=3"):
        end = solver.exp(v, z)
    assert torch.isnan(end).all() and not solver.result_.converged.any()


def test_adaptive_parallel_transport_matches_a_fine_fixed_step_one(sphere_space):
    z, v, w = sphere_points(3), gs.random.normal(size=(3, 2)) * 0.5, gs.random.normal(size=(3, 2))
    fine_space = CASES["sphere-float64"].space()
    fine_space.metric.exp_solver = GeodesicIVPSolver(fine_space, n_steps=32)
    fixed = fine_space.metric.parallel_transport(w, z, direction=v)
    adaptive_space = CASES["sphere-float64"].space()
    adaptive_space.metric.exp_solver = GeodesicIVPSolver(adaptive_space, adaptive=True, rtol=1e-9)
    torch.testing.assert_close(adaptive_space.metric.parallel_transport(w, z, direction=v), fixed, atol=1e-7, rtol=0)


def test_integrator_without_estimate_is_not_flagged(sphere_space):
    solver = GeodesicIVPSolver(sphere_space, integrator=GSIVPIntegrator(n_steps=8, step_type="rk4"))
    result = solver.solve(gs.array([0.3, 0.2]), sphere_points(1)[0])
    assert bool(result.converged) and torch.isnan(result.error_estimate)


@pytest.mark.slow
def test_flags_fall_on_the_inaccurate_geodesics(mlp_space):
    """On the small MLP (eps=0) geodesics of G-speed 0.5 reach latent speeds where 12 steps are off by up to 1."""
    case = CASES["mlp-float64"]
    z, v = case.points(20, seed=43), case.vectors(20, seed=44)
    v = 0.5 * v / mlp_space.metric.norm(v, z)[:, None]
    result = GeodesicIVPSolver(mlp_space).solve(v, z)
    fine = GeodesicIVPSolver(mlp_space, n_steps=200).solve(v, z)
    assert fine.converged.all()
    error = (result.end_point - fine.end_point).norm(dim=-1)
    assert 0 < (~result.converged).sum() < 20
    assert error[~result.converged].max() > 1e-2  # the bad ones are caught ...
    assert error[~result.converged].min() > 1e-8  # ... with the estimate's margin, no alarm at rounding level
    assert error[result.converged].max() < 1e-5
    assert (result.error_estimate >= error).all()


@pytest.mark.parametrize("case_id", ["conv8-float32", "sphere-float64", "sphere-float32"])
def test_ordinary_geodesics_do_not_warn(case_id):
    case = CASES[case_id]
    space = case.space()
    z, v = case.points(20, seed=43), case.vectors(20, seed=44)  # test_metric's reference comparison
    v = 0.5 * v / space.metric.norm(v, z)[:, None]  # as in test_metric: inside the chart's regular region
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        space.metric.exp(v, z)
    assert space.metric.exp_solver.result_.converged.all()


@pytest.mark.parametrize("adaptive", [False, True])
def test_empty_batches_give_empty_results(mlp_space, adaptive):
    solver = GeodesicIVPSolver(mlp_space, adaptive=adaptive)
    empty = gs.zeros((0, 2))
    assert solver.exp(empty, empty).shape == (0, 2)
    assert solver.result_.converged.shape == (0,)
    assert solver.geodesic_ivp(empty, empty)(gs.linspace(0.0, 1.0, 5)).shape == (0, 5, 2)
    assert mlp_space.metric.exp(empty, empty).shape == (0, 2)
