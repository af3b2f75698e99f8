"""Likely geodesics (geodesics/density.py): the density penalty, its Newton terms and the solver option."""

import numpy as np
import pytest
import scipy.stats
import torch
from sklearn.mixture import GaussianMixture

import geomstats_pullback as gp
from geomstats_pullback import analytic
from geomstats_pullback.geodesics.density import DensityPenalty, GaussianMixtureDensity
from geomstats_pullback.geodesics.discrete import newton_system, objective
from geomstats_pullback.paths import decode_nodes

from cases import CASES

Z0 = torch.tensor([-1.0, 0.0], dtype=torch.float64)
Z1 = torch.tensor([1.0, 0.0], dtype=torch.float64)


def two_bumps():
    """Two Gaussian bumps off the straight line from Z0 to Z1, the larger one above it."""
    return GaussianMixtureDensity([0.6, 0.4], [[0.0, 0.8], [0.0, -1.2]], [2.0 * np.eye(2), 2.0 * np.eye(2)])


@pytest.fixture(scope="module")
def mlp_space():
    return gp.DecoderManifold(analytic.random_mlp((2, 16, 16, 20)), latent_dim=2)


def solve(space, density=None, weight=1.0, **kwargs):
    solver = gp.GeodesicBVPSolver(space, n_nodes=17, shooting=False, density=density, density_weight=weight, **kwargs)
    return solver.solve(Z1, Z0)


def test_zero_weight_reproduces_log(mlp_space):
    plain = solve(mlp_space)
    zero = solve(mlp_space, two_bumps(), 0.0)
    torch.testing.assert_close(zero.path, plain.path, atol=1e-8, rtol=0)
    torch.testing.assert_close(zero.tangent_vec, plain.tangent_vec, atol=1e-8, rtol=0)


def test_path_moves_to_high_density_monotonically(mlp_space):
    # For minimisers x_a, x_b of E + lam P at lam_a < lam_b, adding the two optimality
    # inequalities gives (lam_b - lam_a)(P_b - P_a) <= 0: P falls and E rises with lam.
    density = two_bumps()
    mean_log, energy, length = [], [], []
    for weight in (0.0, 3.0, 30.0, 300.0):
        result = solve(mlp_space, density, weight)
        assert bool(result.converged)
        assert bool(torch.isnan(result.residual))  # not measured: no shooting
        mean_log.append(-float(DensityPenalty(density, 1.0).value(result.path[None])[0]))
        decoded = decode_nodes(mlp_space.decoder, result.path[None])
        energy.append(float(objective(decoded, result.path[None], 0.0)[0]))
        length.append(float(gp.path_length(mlp_space, result.path)))
    assert all(b > a + 1e-3 for a, b in zip(mean_log, mean_log[1:])), mean_log
    assert all(b > a for a, b in zip(energy, energy[1:])), energy
    # The geodesic is the shortest path; the length itself need not grow monotonically
    # (a density term makes the speed along the path non-uniform).
    assert all(other > length[0] for other in length[1:]), length
    # The larger bump (above the line) attracts the path.
    assert float(solve(mlp_space, density, 300.0).path[:, 1].mean()) > 0.1


def test_objective_gradient_matches_finite_differences(mlp_space):
    decoder = mlp_space.decoder
    gen = torch.Generator().manual_seed(3)
    line = torch.stack([Z0 + t * (Z1 - Z0) for t in torch.linspace(0, 1, 9, dtype=torch.float64)])
    path = (line + 0.2 * torch.randn(9, 2, generator=gen, dtype=torch.float64) * torch.linspace(0, 1, 9)[:, None]
            * torch.linspace(1, 0, 9)[:, None])[None]  # [1, 9, 2], end points fixed
    penalty = DensityPenalty(two_bumps(), 5.0)
    eps = 1e-3
    grad, *_ = newton_system(decoder, eps, path, decode_nodes(decoder, path))
    density_grad, _ = penalty.newton_terms(path)
    analytic_grad = 2 * (grad + density_grad)  # the Newton system holds half gradients

    def f(p):
        return float(objective(decode_nodes(decoder, p), p, eps, penalty)[0])

    step = 1e-6
    numeric = torch.zeros_like(analytic_grad)
    for i in range(1, 8):
        for k in range(2):
            e = torch.zeros_like(path)
            e[0, i, k] = step
            numeric[0, i - 1, k] = (f(path + e) - f(path - e)) / (2 * step)
    torch.testing.assert_close(analytic_grad, numeric, rtol=1e-6, atol=1e-6)


def test_hessian_blocks_are_the_projected_hessian():
    density = two_bumps()
    penalty = DensityPenalty(density, 2.0)
    gen = torch.Generator().manual_seed(0)
    path = torch.randn(3, 6, 2, generator=gen, dtype=torch.float64)
    grad, blocks = penalty.newton_terms(path)
    scale = 2.0 / (2 * 5)  # lambda h / 2
    for b in range(3):
        for i in range(4):
            z = path[b, i + 1]
            exact = torch.autograd.functional.hessian(lambda x: -density(x), z)
            values, vectors = torch.linalg.eigh(exact)
            projected = vectors @ torch.diag(values.clamp(min=0)) @ vectors.T
            torch.testing.assert_close(blocks[b, i], scale * projected, rtol=1e-10, atol=1e-12)
            g = torch.autograd.functional.jacobian(lambda x: -density(x), z)
            torch.testing.assert_close(grad[b, i], scale * g, rtol=1e-10, atol=1e-12)
    assert bool((torch.linalg.eigvalsh(blocks) >= -1e-12).all())


def test_affine_log_density_has_zero_hessian_blocks():
    path = torch.randn(2, 5, 3, dtype=torch.float64)
    direction = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    grad, blocks = DensityPenalty(lambda z: z @ direction, 4.0).newton_terms(path)
    torch.testing.assert_close(blocks, torch.zeros(2, 3, 3, 3, dtype=torch.float64))
    torch.testing.assert_close(grad, (-4.0 / 8) * direction.expand(2, 3, 3))


def test_penalty_is_the_trapezoidal_rule():
    prior = GaussianMixtureDensity.standard_normal(2)
    # Straight path from (0, 0) to (1, 0): int_0^1 -log p = log(2 pi) + 1/6.
    path = torch.stack([torch.linspace(0, 1, 201, dtype=torch.float64), torch.zeros(201, dtype=torch.float64)], -1)
    value = DensityPenalty(prior, 3.0).value(path[None])
    torch.testing.assert_close(value, torch.tensor([3.0 * (np.log(2 * np.pi) + 1 / 6)], dtype=torch.float64),
                               rtol=1e-5, atol=0)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_mixture_matches_scikit_learn(covariance_type):
    rng = np.random.default_rng(0)
    data = np.concatenate([rng.normal(size=(100, 3)), rng.normal(size=(100, 3)) * [0.5, 1, 2] + 3])
    mixture = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(data)
    points = rng.normal(size=(20, 3)) * 2
    density = GaussianMixtureDensity.from_gaussian_mixture(mixture)
    np.testing.assert_allclose(density(torch.as_tensor(points)).numpy(), mixture.score_samples(points), rtol=1e-10)


def test_kde_matches_scipy():
    rng = np.random.default_rng(1)
    codes = rng.normal(size=(60, 2)) @ np.array([[1.0, 0.3], [0.0, 0.5]])
    points = rng.normal(size=(15, 2))
    expected = scipy.stats.gaussian_kde(codes.T).logpdf(points.T)  # Scott's rule, data covariance
    np.testing.assert_allclose(GaussianMixtureDensity.kde(codes)(torch.as_tensor(points)).numpy(), expected,
                               rtol=1e-10)


def test_prior_and_broadcast_shapes():
    prior = GaussianMixtureDensity.standard_normal(3)
    z = torch.randn(4, 5, 3, dtype=torch.float64)
    expected = scipy.stats.multivariate_normal(np.zeros(3), np.eye(3)).logpdf(z.numpy())
    np.testing.assert_allclose(prior(z).numpy(), expected, rtol=1e-12)


def test_bad_density_input(mlp_space):
    with pytest.raises(ValueError, match="density_weight"):
        gp.GeodesicBVPSolver(mlp_space, density=two_bumps(), density_weight=-1.0)
    with pytest.raises(TypeError, match="callable"):
        gp.GeodesicBVPSolver(mlp_space, density="gmm")
    with pytest.raises(ValueError, match=r"\[\.\.\.\]"):
        solve(mlp_space, lambda z: z, 1.0)  # returns [..., d], not [...]
    with pytest.raises(ValueError, match="shape"):
        GaussianMixtureDensity([1.0], [[0.0, 0.0]], np.eye(3)[None])


@pytest.mark.slow
def test_conv8_float32_likely_geodesic():
    case = CASES["conv8-float32"]
    space = case.space()
    codes = case.points(200, seed=1)
    density = GaussianMixtureDensity.kde(codes)
    z0, z1 = codes[0], codes[1]
    plain = gp.GeodesicBVPSolver(space, n_nodes=9, shooting=False).solve(z1, z0)
    likely = gp.GeodesicBVPSolver(space, n_nodes=9, shooting=False, density=density, density_weight=10.0).solve(z1, z0)
    assert bool(likely.converged) and bool(torch.isfinite(likely.path).all())
    torch.testing.assert_close(likely.path[[0, -1]], torch.stack([z0, z1]))
    assert float(density(likely.path).mean()) > float(density(plain.path).mean())
