"""Decoders that are not twice differentiable: ReLU, LeakyReLU, ELU MLPs and a ReLU conv decoder.

Their geodesics are the limits of the minimisers of the discrete energy
under grid refinement (``method="discrete"``, chosen automatically). Checked
against finer grids of the same solver, the decoded straight line, the
triangle inequality, the reversed problem, and (for GELU/SiLU, which are
smooth) against shooting.
"""

import numpy as np
import pytest
import torch

import geomstats_pullback as gp
from geomstats_pullback import analytic
from geomstats_pullback.errors import DistanceStoreError
from geomstats_pullback.errors import ConvergenceWarning
from geomstats_pullback.paths import path_length, straight_lines
from geomstats_pullback.smoothness import is_smooth

NOT_C2 = {"relu": torch.nn.ReLU, "leaky_relu": torch.nn.LeakyReLU, "elu": torch.nn.ELU}
C2 = {"gelu": torch.nn.GELU, "silu": torch.nn.SiLU}
RTOL = 1e-2  # the length test's tolerance in these tests (length_rtol)


def mlp_space(activation, latent_dim, dtype=torch.float64):
    dims = (latent_dim, 16, 16, 10) if latent_dim <= 2 else (latent_dim, 24, 12)
    decoder = analytic.random_mlp(dims, seed=3, dtype=dtype, activation=activation)
    return gp.DecoderManifold(decoder, latent_dim=latent_dim, dtype=dtype)


def conv_space(dtype):
    decoder = analytic.conv_decoder(8, channels=(4, 2), image_size=16, seed=0, dtype=dtype, activation=torch.nn.ReLU)
    return gp.DecoderManifold(decoder, latent_dim=8, dtype=dtype)


def pairs(latent_dim, n, seed=0, scale=0.6):
    gen = torch.Generator().manual_seed(seed)
    a = scale * torch.randn(n, latent_dim, generator=gen, dtype=torch.float64)
    b = scale * torch.randn(n, latent_dim, generator=gen, dtype=torch.float64)
    return a, b


def line_length(space, a, b, n_nodes=4097):
    """A lower bound of the straight line's length, tight to ``O(1/n)``."""
    return path_length(space.metric, straight_lines(a, b, n_nodes))


# ------------------------------------------------------------------ smoothness


@pytest.mark.parametrize("activation", list(NOT_C2.values()) + [torch.nn.Hardtanh, torch.nn.ReLU6, torch.nn.Hardswish])
def test_piecewise_and_once_differentiable_layers_are_not_smooth(activation):
    module = torch.nn.Sequential(torch.nn.Linear(2, 4), activation(), torch.nn.Linear(4, 3))
    assert not is_smooth(module)
    assert not is_smooth(gp.DecoderManifold(module, latent_dim=2).decoder)  # through the library's adapter


def test_max_pooling_is_not_smooth_and_smooth_layers_are():
    pooled = torch.nn.Sequential(torch.nn.Unflatten(1, (1, 2, 2)), torch.nn.MaxPool2d(2), torch.nn.Flatten())
    assert not is_smooth(pooled)
    smooth = torch.nn.Sequential(
        torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.BatchNorm1d(8), torch.nn.GELU(), torch.nn.SiLU(),
        torch.nn.Softplus(), torch.nn.Sigmoid(), torch.nn.Linear(8, 3),
    )
    assert is_smooth(smooth)
    assert is_smooth(analytic.sphere_chart)  # a plain function: nothing to inspect


def test_the_smooth_attribute_overrides_the_inspection():
    relu = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.ReLU())
    relu.smooth = True
    assert is_smooth(relu)
    tanh = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.Tanh())
    tanh[1].smooth = False  # a layer that calls a non-smooth function inside its forward
    assert not is_smooth(tanh)


def test_auto_method_follows_smoothness_and_shooting_overrides_it():
    relu, gelu = mlp_space(torch.nn.ReLU, 2), mlp_space(torch.nn.GELU, 2)
    assert relu.metric.log_solver.method_ == "discrete" and not relu.metric.log_solver.shooting
    assert gelu.metric.log_solver.method_ == "shooting" and gelu.metric.log_solver.shooting
    forced = gp.GeodesicBVPSolver(relu, shooting=True)
    assert forced.method_ == "shooting"
    forced.shooting = False
    assert forced.method == "discrete"
    with pytest.raises(ValueError, match="method"):
        gp.GeodesicBVPSolver(relu, method="newton")


# ------------------------------------------------------------------ log / dist


@pytest.mark.parametrize("name", list(NOT_C2))
@pytest.mark.parametrize("latent_dim", [2, pytest.param(8, marks=pytest.mark.slow)])
def test_dist_converges_under_grid_refinement(name, latent_dim):
    space = mlp_space(NOT_C2[name], latent_dim)
    a, b = pairs(latent_dim, 3)
    solver = gp.GeodesicBVPSolver(space, n_nodes=9, length_rtol=RTOL, max_refinements=4)
    result = solver.solve(b, a)
    assert bool(result.converged.all())
    assert bool((result.length_error <= RTOL * result.length).all())
    # A much finer grid: the converged length is within the stated tolerance of it (first-order convergence
    # makes the last change an estimate of the remaining error; 2x for the reference's own error).
    fine = gp.GeodesicBVPSolver(space, n_nodes=129, length_rtol=RTOL / 4, max_refinements=1).solve(b, a)
    torch.testing.assert_close(result.length, fine.length, rtol=2 * RTOL, atol=0)
    # dist is the metric norm of log, and log points into the path (along its finest first segment).
    torch.testing.assert_close(space.metric.norm(result.tangent_vec, a), result.length)
    direction = result.path[:, 1] - result.path[:, 0]
    assert bool((torch.nn.functional.cosine_similarity(direction, result.tangent_vec, dim=-1) > 0.5).all())


@pytest.mark.parametrize("name", list(NOT_C2))
def test_dist_is_symmetric_and_no_longer_than_the_straight_line(name):
    space = mlp_space(NOT_C2[name], 8)
    a, b = pairs(8, 2, seed=1)
    solver = gp.GeodesicBVPSolver(space, n_nodes=9, length_rtol=RTOL)
    forward, backward = solver.solve(b, a), solver.solve(a, b)
    torch.testing.assert_close(forward.length, backward.length, rtol=RTOL, atol=0)
    assert bool((forward.length <= line_length(space, a, b) * (1 + 1e-9)).all())


def test_the_straight_line_replaces_a_longer_path():
    space = mlp_space(torch.nn.ReLU, 2)
    a, b = pairs(2, 2, seed=2)
    n_nodes = 9
    detour = straight_lines(a, b, n_nodes) + 0.5 * torch.sin(torch.linspace(0, torch.pi, n_nodes))[:, None]
    solver = gp.GeodesicBVPSolver(space, n_nodes=n_nodes, max_iter=0, max_refinements=0)
    result = solver.solve(b, a, initial_path=detour)  # no Newton step: the detour is all there is
    assert bool(result.straight_line.all())
    torch.testing.assert_close(result.path, straight_lines(a, b, n_nodes))
    line = line_length(space, a, b)
    assert bool((result.length <= line * (1 + 1e-3)).all()) and bool((result.length >= line * (1 - 1e-3)).all())
    torch.testing.assert_close(space.metric.norm(result.tangent_vec, a), result.length)


@pytest.mark.parametrize("name", list(NOT_C2))
def test_triangle_inequality(name):
    space = mlp_space(NOT_C2[name], 2)
    gen = torch.Generator().manual_seed(4)
    x, y, z = 0.8 * torch.randn(3, 3, 2, generator=gen, dtype=torch.float64)
    solver = gp.GeodesicBVPSolver(space, n_nodes=9, length_rtol=RTOL)
    xy, yz, xz = (solver.solve(q, p).length for p, q in ((x, y), (y, z), (x, z)))
    assert bool((xz <= (xy + yz) * (1 + 2 * RTOL)).all())


@pytest.mark.parametrize("name", list(C2))
@pytest.mark.parametrize("latent_dim", [2, pytest.param(8, marks=pytest.mark.slow)])
def test_smooth_activations_shoot_and_discrete_agrees(name, latent_dim):
    space = mlp_space(C2[name], latent_dim)
    space.metric.exp_solver = gp.GeodesicIVPSolver(space, n_steps=24)  # shooting needs exp within its rtol
    a, b = pairs(latent_dim, 3)
    result = space.metric.log_solver.solve(b, a)
    assert space.metric.log_solver.method_ == "shooting"
    assert bool(result.converged.all()) and bool((result.residual < 1e-6).all())
    discrete = space.metric.log_solver.solve(b, a, method="discrete")  # fourth order, 32 segments
    torch.testing.assert_close(discrete.length, result.length, rtol=1e-4, atol=0)


@pytest.mark.parametrize("dtype", [torch.float64, pytest.param(torch.float32, marks=pytest.mark.slow)])
def test_relu_conv_decoder(dtype):
    space = conv_space(dtype)
    a, b = pairs(8, 2, seed=5, scale=0.5)
    solver = gp.GeodesicBVPSolver(space, n_nodes=9, length_rtol=RTOL)
    forward = solver.solve(b.to(dtype), a.to(dtype))  # float32 points on a float32 decoder
    backward = solver.solve(a, b)
    assert bool(forward.converged.all())
    torch.testing.assert_close(forward.length, backward.length, rtol=RTOL, atol=0)
    assert bool((forward.length <= line_length(space, a, b) * (1 + 1e-6)).all())
    assert bool(torch.isfinite(forward.tangent_vec).all())


def test_float32_points_and_decoder_do_not_crash():
    space = mlp_space(torch.nn.ReLU, 8, dtype=torch.float32)
    a, b = pairs(8, 2, seed=6)
    a, b = a.float(), b.float()
    space.metric.log_solver = gp.GeodesicBVPSolver(space, n_nodes=9, length_rtol=RTOL)
    assert bool(torch.isfinite(space.metric.dist(b, a)).all())
    assert bool(torch.isfinite(space.metric.log(b, a)).all())
    path = space.metric.geodesic(a, end_point=b)(torch.linspace(0, 1, 5))
    assert path.shape == (2, 5, 8) and bool(torch.isfinite(path).all())
    with pytest.warns(ConvergenceWarning, match="not twice differentiable"):
        assert bool(torch.isfinite(space.metric.exp(b - a, a)).all())


# ------------------------------------------------------------------ exp and shooting


def test_exp_flags_relu_decoders():
    space = mlp_space(torch.nn.ReLU, 2)
    a, b = pairs(2, 3)
    with pytest.warns(ConvergenceWarning, match="not twice differentiable"):
        space.metric.exp(b - a, a)
    result = space.metric.exp_solver.result_
    assert not bool(result.converged.any())
    # What it integrates: f'' = 0 almost everywhere, so the straight latent line, which is not the geodesic
    # (the discrete one is shorter). The flag is the honest answer.
    torch.testing.assert_close(result.end_point, b)
    assert bool((space.metric.dist(b, a) < line_length(space, a, b) * (1 - 1e-4)).all())


def test_shooting_requires_exp_to_converge():
    space = mlp_space(torch.nn.Tanh, 2)
    a, b = pairs(2, 2)
    exact = space.metric.log_solver.solve(b, a)
    assert bool(exact.converged.all())
    # An exp whose error control cannot be met: one step, a tolerance below rounding.
    space.metric.exp_solver = gp.GeodesicIVPSolver(space, n_steps=1, rtol=1e-300)
    result = space.metric.log_solver.solve(b, a)
    assert not bool(result.converged.any())


def test_shooting_forced_on_relu_is_not_converged():
    space = mlp_space(torch.nn.ReLU, 2)
    a, b = pairs(2, 1)
    result = gp.GeodesicBVPSolver(space, method="shooting", n_nodes=17, max_shooting_iter=2).solve(b, a)
    assert not bool(result.converged.any())


# ------------------------------------------------------------------ distance matrices


def test_pairwise_distances_default_to_the_discrete_geodesic(tmp_path):
    from tests.cases import CASES

    space = CASES["mlp-float64"].space()
    X = CASES["mlp-float64"].points(5, seed=7)
    discrete = gp.pairwise_distances(space.metric, X, progress=False)
    shot = gp.pairwise_distances(space.metric, X, progress=False, shooting=True)
    assert discrete.converged.all() and shot.converged.all()
    assert space.metric.log_solver.result_.n_exp > 0  # the last run shot
    off = ~np.eye(5, dtype=bool)
    relative = np.abs(discrete.dist - shot.dist)[off] / shot.dist[off]
    assert relative.max() <= 1e-4  # fourth order in 1/N, N = 32 segments
    assert relative.max() > 0  # not the same computation
    gp.pairwise_distances(space.metric, X, progress=False, out=tmp_path / "store")
    with pytest.raises(DistanceStoreError, match="another job"):
        gp.pairwise_distances(space.metric, X, progress=False, out=tmp_path / "store", shooting=True)
