"""Riemannian-volume sampling (sampling.py): exact laws on the sphere chart, detailed balance, regions, ESS."""

import numpy as np
import pytest
import scipy.stats
import torch
from sklearn.neighbors import NearestNeighbors

import geomstats_pullback as gp
from geomstats_pullback import analytic
from geomstats_pullback.sampling import (
    BoxRegion,
    CodeSupport,
    effective_sample_size,
    geodesic_random_walk,
    log_volume_density,
    metropolis_log_acceptance,
    random_unit_directions,
    sample_volume,
)

from cases import CASES

THETA = (0.3, 2.8)  # polar angles of the box on the sphere chart; its area element is sin(theta)
PHI = (-1.0, 1.0)


def theta_cdf(theta, low=THETA[0], high=THETA[1]):
    """CDF of the polar angle of the uniform law on the sphere, restricted to [low, high]."""
    return (np.cos(low) - np.cos(theta)) / (np.cos(low) - np.cos(high))


def sphere_box(theta=THETA):
    return gp.DecoderManifold(analytic.sphere_chart, latent_dim=2, region=([theta[0], PHI[0]], [theta[1], PHI[1]]))


START = torch.tensor([[1.5, 0.0]], dtype=torch.float64)


@pytest.mark.slow
def test_volume_sampler_follows_the_sphere_area_element():
    result = sample_volume(sphere_box(), 1000, initial=START, n_chains=100, burn_in=200, thin=10, seed=0)
    theta, phi = result.samples[:, 0].numpy(), result.samples[:, 1].numpy()
    # Thinned states of 100 chains: nearly independent (checked), so KS applies.
    assert effective_sample_size(result.chains).min() > 600
    assert scipy.stats.kstest(theta, theta_cdf).pvalue > 0.01
    assert scipy.stats.kstest(phi, scipy.stats.uniform(PHI[0], PHI[1] - PHI[0]).cdf).pvalue > 0.01
    # The test has power: the same samples refute a uniform polar angle.
    assert scipy.stats.kstest(theta, scipy.stats.uniform(THETA[0], THETA[1] - THETA[0]).cdf).pvalue < 1e-4
    assert 0.1 < float(result.acceptance_rate.mean()) < 0.6


def test_volume_sampler_quick_law():
    # Smaller run of the law above, chi-squared on four equiprobable theta bins.
    result = sample_volume(sphere_box(), 400, initial=START, n_chains=50, burn_in=100, thin=8, seed=1)
    edges = np.arccos(np.cos(THETA[0]) - np.linspace(0, 1, 5) * (np.cos(THETA[0]) - np.cos(THETA[1])))
    counts, _ = np.histogram(result.samples[:, 0].numpy(), bins=edges)
    assert counts.sum() == 400
    assert scipy.stats.chisquare(counts).pvalue > 0.01


def test_metropolis_kernel_satisfies_detailed_balance_on_a_grid():
    # The sampler's kernel on a finite state space: P_ij = Q_ij a(i, j), Q symmetric.
    space = sphere_box()
    axis = np.linspace(0.1, 3.0, 7)
    states = torch.as_tensor(np.stack(np.meshgrid(axis, np.linspace(-1.2, 1.2, 5)), -1).reshape(-1, 2))
    inside = BoxRegion([THETA[0], PHI[0]], [THETA[1], PHI[1]])(states)
    assert 0 < int(inside.sum()) < states.shape[0]  # some states lie outside: zero target there
    log_target = torch.where(inside, log_volume_density(space, states), -np.inf)
    target = torch.exp(log_target)
    torch.testing.assert_close(target[inside], torch.sin(states[inside, 0]), rtol=1e-12, atol=0)
    distance = torch.cdist(states, states)
    proposal = torch.exp(-(distance**2))
    proposal = proposal / proposal.sum(1).max()  # symmetric, rows sum to <= 1
    proposal.fill_diagonal_(0)
    kernel = proposal * torch.exp(metropolis_log_acceptance(log_target[:, None], log_target[None, :]))
    kernel = kernel + torch.diag(1 - kernel.sum(1))
    flow = target[:, None] * kernel
    torch.testing.assert_close(flow, flow.T, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(target @ kernel, target, rtol=1e-12, atol=1e-15)
    # From a zero-density state every proposal of positive density is accepted.
    assert float(metropolis_log_acceptance(torch.tensor([-np.inf]), torch.tensor([-3.0]))) == 0.0
    assert float(metropolis_log_acceptance(torch.tensor([-np.inf]), torch.tensor([-np.inf]))) == -np.inf


def test_code_support_membership():
    rng = np.random.default_rng(0)
    codes = rng.normal(size=(80, 3))
    support = CodeSupport(codes, n_neighbors=4, scale=1.5)
    distances, _ = NearestNeighbors(n_neighbors=5).fit(codes).kneighbors(codes)
    np.testing.assert_allclose(support.radii.numpy(), 1.5 * distances[:, 4], rtol=1e-12)
    points = rng.normal(size=(300, 3)) * 1.5
    brute = [any(np.linalg.norm(p - c) <= r for c, r in zip(codes, support.radii.numpy())) for p in points]
    assert support(torch.as_tensor(points)).tolist() == brute
    assert bool(support(torch.as_tensor(codes)).all())
    assert 0 < sum(brute) < len(brute)


def test_samples_stay_in_the_codes_support_with_their_log_density():
    space = gp.DecoderManifold(analytic.random_mlp((2, 16, 16, 30)), latent_dim=2)
    codes = torch.as_tensor(np.random.default_rng(2).normal(size=(40, 2)) * 0.7)
    support = CodeSupport(codes, n_neighbors=3)
    result = sample_volume(space, 60, region=support, n_chains=6, burn_in=20, thin=2, seed=3)
    assert tuple(result.samples.shape) == (60, 2) and tuple(result.chains.shape) == (6, 10, 2)
    assert bool(support(result.samples).all())
    expected = 0.5 * torch.logdet(space.metric.metric_matrix(result.samples))
    torch.testing.assert_close(result.log_density, expected, rtol=1e-10, atol=1e-10)
    again = sample_volume(space, 60, region=support, n_chains=6, burn_in=20, thin=2, seed=3)
    torch.testing.assert_close(again.samples, result.samples, rtol=0, atol=0)


def test_default_region_from_the_space_codes():
    codes = torch.as_tensor(np.random.default_rng(4).normal(size=(30, 2)))
    space = gp.DecoderManifold(analytic.random_mlp((2, 8, 10)), latent_dim=2, region=codes)
    result = sample_volume(space, 20, n_chains=4, burn_in=5, seed=0)
    assert bool(CodeSupport(codes)(result.samples).all())


def test_random_unit_directions_have_unit_metric_norm():
    space = sphere_box()
    points = torch.tensor([[0.5, 0.1], [1.2, -0.3], [2.0, 0.7]], dtype=torch.float64)
    directions = random_unit_directions(space, points, torch.Generator().manual_seed(0))
    norms = torch.einsum("bi,bij,bj->b", directions, space.metric.metric_matrix(points), directions)
    torch.testing.assert_close(norms, torch.ones(3, dtype=torch.float64), rtol=1e-12, atol=0)


def test_effective_sample_size_of_autoregressive_chains():
    # AR(1) with coefficient a: integrated autocorrelation time (1 + a) / (1 - a).
    rng = np.random.default_rng(0)
    a, n_chains, length = 0.8, 20, 5000
    chains = np.zeros((n_chains, length, 1))
    noise = rng.normal(size=(n_chains, length)) * np.sqrt(1 - a**2)
    chains[:, 0, 0] = rng.normal(size=n_chains)
    for t in range(1, length):
        chains[:, t, 0] = a * chains[:, t - 1, 0] + noise[:, t]
    expected = n_chains * length * (1 - a) / (1 + a)
    assert abs(effective_sample_size(chains)[0] / expected - 1) < 0.1
    independent = rng.normal(size=(4, 2000, 2))
    np.testing.assert_allclose(effective_sample_size(independent), 8000, rtol=0.15)


def test_bad_sampler_input():
    space = sphere_box()
    with pytest.raises(ValueError, match="inside the region"):
        sample_volume(space, 10, initial=torch.tensor([[0.05, 0.0]], dtype=torch.float64))
    with pytest.raises(ValueError, match="initial"):
        sample_volume(space, 10, region=lambda z: torch.ones(z.shape[0], dtype=torch.bool))
    with pytest.raises(ValueError, match="n_chains"):
        sample_volume(space, 10, initial=START, n_chains=0)
    with pytest.raises(ValueError, match="step_size"):
        geodesic_random_walk(space, 10, step_size=-1.0, initial=START)
    with pytest.raises(ValueError, match="region must map"):
        sample_volume(space, 10, initial=START, region=lambda z: torch.ones(z.shape, dtype=torch.bool))
    with pytest.raises(ValueError, match="preconditioner"):
        sample_volume(space, 10, initial=START, preconditioner=np.eye(3))


def test_conv8_float32_runs_inside_the_region():
    case = CASES["conv8-float32"]
    space = case.space()
    codes = case.points(60, seed=2)
    support = CodeSupport(codes, n_neighbors=5)
    result = sample_volume(space, 24, region=support, n_chains=8, burn_in=10, thin=1, seed=0)
    assert bool(torch.isfinite(result.samples).all()) and bool(torch.isfinite(result.log_density).all())
    assert bool(support(result.samples).all())
    assert bool(((result.acceptance_rate >= 0) & (result.acceptance_rate <= 1)).all())


@pytest.mark.slow
def test_geodesic_random_walk_follows_the_sphere_area_element():
    # The box keeps every geodesic step of length 0.4 at least 0.2 away from the chart's poles.
    theta = (0.6, 2.5)
    space = sphere_box(theta)
    space.metric.exp_solver = gp.GeodesicIVPSolver(space, n_steps=2)
    start = torch.tensor([[0.7, 0.0]], dtype=torch.float64)  # every chain starts at the edge
    result = geodesic_random_walk(space, 300, step_size=0.4, initial=start, n_chains=300, burn_in=60, seed=0)
    samples = result.samples[:, 0].numpy()
    assert scipy.stats.kstest(samples, lambda t: theta_cdf(t, *theta)).pvalue > 0.01
    assert scipy.stats.kstest(result.samples[:, 1].numpy(), scipy.stats.uniform(-1, 2).cdf).pvalue > 0.01
    assert 0.3 < float(result.acceptance_rate.mean()) < 1.0
