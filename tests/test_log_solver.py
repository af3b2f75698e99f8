"""GeodesicBVPSolver: log, dist and geodesics between two points, against closed forms."""

import warnings

import geomstats.backend as gs
import numpy as np
import pytest
import torch
from conftest import sphere_points

import geomstats_pullback as gp
from geomstats_pullback import _blocktridiag, analytic
from geomstats_pullback.integrators import RK6Integrator
from geomstats_pullback.geodesics.correction import end_point_sensitivity, fourth_order_correction
from geomstats_pullback.geodesics.discrete import discrete_geodesic
from geomstats_pullback.geodesics.graph_init import graph_paths
from geomstats_pullback.geodesics.stencils import fourth_order_weights, initial_velocity, velocity_weights

# ------------------------------------------------------------------ helpers


def pairs_away_from_poles(hypersphere, a, b, margin=0.9):
    """Keep pairs whose great-circle arc stays at |x_3| < margin (where the chart is regular)."""
    to_sphere = hypersphere.spherical_to_extrinsic
    arc = hypersphere.metric.geodesic(to_sphere(a), end_point=to_sphere(b))
    keep = (arc(gs.linspace(0.0, 1.0, 41))[..., 2].abs() < margin).all(-1)
    return a[keep], b[keep]


@pytest.fixture(scope="module")
def sphere_pairs(hypersphere):
    a, b = pairs_away_from_poles(hypersphere, sphere_points(40, seed=11), sphere_points(40, seed=12))
    assert a.shape[0] >= 25
    return a, b


@pytest.fixture(scope="module")
def plane():
    """An isometric linear immersion R^2 -> R^5 (the Euclidean plane); two exp steps are exact here."""
    space = gp.DecoderManifold(analytic.linear_isometry(2, 5, seed=2), latent_dim=2)
    space.metric.exp_solver.integrator = RK6Integrator(n_steps=2)
    return space


@pytest.fixture(scope="module")
def sphere_solution(sphere_space, sphere_pairs):
    """``metric.dist`` on the pairs, and the solver's result it left behind."""
    a, b = sphere_pairs
    dist = sphere_space.metric.dist(a, b)
    return a, b, dist, sphere_space.metric.log_solver.result_


@pytest.fixture(scope="module")
def mlp_solution(mlp_space):
    """``metric.log`` (no ConvergenceWarning allowed) on pairs (x, y), (y, x), (x, z), (y, z), (x, x)
    of 6 random triples, stacked: ``[30, 2]`` each; and the result."""
    gen = torch.Generator().manual_seed(7)
    x, y, z = (2 * torch.rand(6, 2, generator=gen, dtype=torch.float64) - 1 for _ in range(3))
    a, b = torch.cat([x, y, x, y, x]), torch.cat([y, x, z, z, x])
    with warnings.catch_warnings():
        warnings.simplefilter("error", gp.ConvergenceWarning)
        log = mlp_space.metric.log(b, a)
    return a, b, log, mlp_space.metric.log_solver.result_


def bump_decoder(z):
    """The plane with a bump at the origin: ``(x, y) -> (x, y, 1.5 exp(-|z|^2 / 0.1))``."""
    height = 1.5 * torch.exp(-(z**2).sum(-1) / 0.1)
    return torch.cat([z, height[..., None]], dim=-1)


# ------------------------------------------------------------------ sphere: closed forms


def test_sphere_dist_matches_great_circle(hypersphere, sphere_solution):
    a, b, dist, result = sphere_solution
    assert bool(result.converged.all())
    truth = hypersphere.metric.dist(hypersphere.spherical_to_extrinsic(a), hypersphere.spherical_to_extrinsic(b))
    assert ((dist - truth).abs() / truth).max() < 1e-6


def test_sphere_log_pushed_forward_matches_hypersphere_log(hypersphere, sphere_solution):
    a, b, _, result = sphere_solution
    pushed = hypersphere.tangent_spherical_to_extrinsic(result.tangent_vec, a)
    truth = hypersphere.metric.log(hypersphere.spherical_to_extrinsic(b), hypersphere.spherical_to_extrinsic(a))
    assert (pushed - truth).norm(dim=-1).max() < 1e-6


def test_sphere_exp_log_round_trip(sphere_space, sphere_solution):
    a, b, _, result = sphere_solution
    back = sphere_space.metric.exp(result.tangent_vec, a)
    assert (back - b).norm(dim=-1).max() < 1e-6
    torch.testing.assert_close(result.residual, (back - b).norm(dim=-1), atol=1e-12, rtol=0)


def test_sphere_discrete_path_lies_on_great_circle(hypersphere, sphere_solution):
    """The discrete geodesic's nodes sit on the great circle through the end points (to O(1/N^2))."""
    a, b, _, result = sphere_solution
    nodes = analytic.sphere_chart(result.path)  # [B, n_nodes, 3]
    normal = torch.linalg.cross(analytic.sphere_chart(a), analytic.sphere_chart(b))
    normal = normal / normal.norm(dim=-1, keepdim=True)
    assert (nodes * normal[:, None]).sum(-1).abs().max() < 1e-3


# ------------------------------------------------------------------ learned-like decoder


def test_mlp_exp_log_round_trip(mlp_space, mlp_solution):
    a, b, log, result = mlp_solution
    assert bool(result.converged.all())
    back = mlp_space.metric.exp(log, a)
    assert (back - b).norm(dim=-1).max() < 1e-6
    torch.testing.assert_close(result.residual, (back - b).norm(dim=-1), atol=1e-12, rtol=0)


def test_mlp_dist_symmetric_zero_diagonal_triangle(mlp_space, mlp_solution):
    a, b, log, _ = mlp_solution
    dist = mlp_space.metric.norm(log, a).reshape(5, 6)
    d_xy, d_yx, d_xz, d_yz, d_xx = dist
    torch.testing.assert_close(d_xy, d_yx, atol=1e-7, rtol=1e-7)
    assert d_xx.abs().max() == 0
    assert bool((d_xz <= d_xy + d_yz + 1e-9).all())


def test_mlp_geodesic_is_no_longer_than_straight_line(mlp_space, mlp_solution):
    a, b, log, result = mlp_solution
    a, b, log, path = a[:24], b[:24], log[:24], result.path[:24]  # the last 6 pairs are (x, x)
    geodesic = gp.path_length(mlp_space, path)
    line = gp.path_length(mlp_space, gp.linear_path(a, b, path.shape[-2]))
    assert bool((geodesic <= line * (1 + 1e-12)).all())
    # and the discrete length agrees with the metric's distance to O(1/N^2)
    dist = mlp_space.metric.norm(log, a)
    assert ((geodesic - dist).abs() / dist).max() < 1e-2


def test_float32_decoder_uses_float32_tolerance(mlp_space, mlp_solution):
    net = analytic.random_mlp((2, 16, 16, 10), seed=1, dtype=torch.float32)  # mlp_space's decoder in float32
    space = gp.DecoderManifold(net, latent_dim=2)
    assert space.metric.log_solver.tol_ == 1e-4
    a, b, log, _ = mlp_solution
    result = space.metric.log_solver.solve(b[:6], a[:6])
    assert bool(result.converged.all())
    rel = (result.tangent_vec - log[:6]).norm(dim=-1) / log[:6].norm(dim=-1)
    assert rel.max() < 1e-3


# ------------------------------------------------------------------ flat decoder


def test_flat_decoder_geodesic_is_straight_line(plane):
    gen = torch.Generator().manual_seed(3)
    a, b = (4 * torch.rand(10, 2, generator=gen, dtype=torch.float64) - 2 for _ in range(2))
    metric = plane.metric
    torch.testing.assert_close(metric.dist(a, b), (b - a).norm(dim=-1), atol=1e-10, rtol=0)
    torch.testing.assert_close(metric.log(b, a), b - a, atol=1e-10, rtol=0)
    times = gs.linspace(0.0, 1.0, 5)
    curve = metric.geodesic(a, end_point=b)(times)  # [10, 5, 2]
    line = a[:, None] + times[None, :, None] * (b - a)[:, None]
    torch.testing.assert_close(curve, line, atol=1e-10, rtol=0)
    path = metric.log_solver.result_.path
    torch.testing.assert_close(path, gp.linear_path(a, b, path.shape[-2]), atol=1e-10, rtol=0)


# ------------------------------------------------------------------ shapes and broadcasting


def test_shapes_single_batched_and_broadcast(plane):
    metric, solver = plane.metric, plane.metric.log_solver
    a, b = gs.array([0.1, 0.2]), gs.array([0.5, -0.3])
    assert metric.log(b, a).shape == (2,)
    assert metric.dist(a, b).shape == ()
    assert solver.result_.converged.shape == () and solver.result_.path.shape == (solver.n_nodes, 2)
    many = gs.random.rand(6, 2)
    log = metric.log(many, a)  # one base point, many points
    assert log.shape == (6, 2)
    torch.testing.assert_close(log, many - a, atol=1e-10, rtol=0)
    assert metric.log(b, many).shape == (6, 2)  # many base points, one point
    grid = metric.dist(many[:, None, :], many[None, :3, :])
    assert grid.shape == (6, 3)
    torch.testing.assert_close(grid, (many[:, None] - many[None, :3]).norm(dim=-1), atol=1e-10, rtol=0)
    result = solver.solve(many[:, None, :], many[None, :3, :])
    assert result.tangent_vec.shape == (6, 3, 2)
    assert result.path.shape == (6, 3, solver.n_nodes, 2)
    assert result.converged.shape == result.residual.shape == (6, 3)
    assert metric.geodesic(a, end_point=many)(gs.linspace(0.0, 1.0, 4)).shape == (6, 4, 2)


def test_chunks_of_pairs_give_the_same_result(plane, monkeypatch):
    from geomstats_pullback.geodesics import log as log_module

    a, b = gs.random.rand(7, 2), gs.random.rand(7, 2)
    whole = plane.metric.log_solver.solve(b, a)
    solver = plane.metric.log_solver
    pair_bytes = log_module.PATH_COPIES * solver.n_nodes * plane.decoder.output_dim * 8
    monkeypatch.setattr(plane.decoder, "memory_budget", 3 * pair_bytes + 1)  # a limit: pairs of 3
    chunked = solver.solve(b, a)  # three chunks: 3 + 3 + 1 pairs
    torch.testing.assert_close(chunked.tangent_vec, whole.tangent_vec, atol=1e-12, rtol=0)
    torch.testing.assert_close(chunked.path, whole.path, atol=1e-12, rtol=0)
    assert chunked.n_exp == 3 * whole.n_exp


def test_coincident_points_give_zero(mlp_space):
    z = gs.array([[0.3, -0.2], [0.1, 0.4]])
    result = mlp_space.metric.log_solver.solve(z, z)
    assert bool(result.converged.all())
    assert result.tangent_vec.abs().max() == 0 and result.residual.abs().max() == 0
    assert mlp_space.metric.dist(z, z).abs().max() == 0
    torch.testing.assert_close(result.path, z[:, None, :].expand_as(result.path))


# ------------------------------------------------------------------ convergence reporting


def test_iteration_cap_warns_and_flags(mlp_space, mlp_solution):
    a, b, _, _ = mlp_solution
    solver = gp.GeodesicBVPSolver(mlp_space, max_iter=1, max_shooting_iter=1)
    with pytest.warns(gp.ConvergenceWarning, match="did not converge"):
        solver.log(b, a)
    result = solver.result_
    assert not bool(result.converged.all())
    assert bool((result.residual[~result.converged] > solver.tol_ * (b - a).norm(dim=-1)[~result.converged]).all())
    assert result.n_exp == 1


def test_without_shooting_the_discrete_estimate_is_close(mlp_space, mlp_solution):
    a, b, _, exact = mlp_solution
    solver = gp.GeodesicBVPSolver(mlp_space, shooting=False)
    rough = solver.solve(b, a)
    moving = slice(0, 24)  # the last 6 pairs are (x, x)
    assert bool(rough.converged.all()) and rough.n_exp == 0
    assert bool(gs.isnan(rough.residual[moving]).all())  # not measured, and says so
    assert rough.residual[24:].abs().max() == 0 and rough.tangent_vec[24:].abs().max() == 0
    rel = (rough.tangent_vec - exact.tangent_vec)[moving].norm(dim=-1) / exact.tangent_vec[moving].norm(dim=-1)
    assert 0 < rel.max() < 3e-4  # measured 1.1e-4 (fourth-order discrete geodesic, 33 nodes)


def test_discrete_estimate_is_fourth_order_accurate(mlp_space, mlp_solution):
    """Doubling the nodes divides the error of the discrete log by about 16 (4 for Shao et al.'s energy alone)."""
    a, b, _, exact = mlp_solution
    moving = slice(0, 24)
    errors = []
    for n_nodes in (17, 33):
        rough = gp.GeodesicBVPSolver(mlp_space, shooting=False, n_nodes=n_nodes).solve(b[moving], a[moving])
        rel = (rough.tangent_vec - exact.tangent_vec[moving]).norm(dim=-1) / exact.tangent_vec[moving].norm(dim=-1)
        errors.append(float(rel.pow(2).mean().sqrt()))
    assert errors[0] / errors[1] > 10


@pytest.mark.parametrize("degree", range(6))
def test_fourth_order_weights_are_exact_on_quintics(degree):

    n_seg = 10
    t = gs.linspace(0.0, 1.0, n_seg + 1)
    values = (t**degree)[None, :, None]  # [1, n, 1]
    weights = 2 * values[:, 1:-1] - values[:, :-2] - values[:, 2:]  # -delta^2 x
    second = degree * (degree - 1) * t[1:-1] ** max(degree - 2, 0) if degree >= 2 else 0 * t[1:-1]
    torch.testing.assert_close(-fourth_order_weights(weights)[0, :, 0] * n_seg**2, second, atol=1e-9, rtol=0)


@pytest.mark.parametrize("n_nodes", [2, 3, 5, 7, 33])
def test_velocity_weights_differentiate_polynomials_exactly(n_nodes):

    t = gs.linspace(0.0, 1.0, n_nodes)
    weights = velocity_weights(n_nodes, like=t)
    for degree in range(min(6, n_nodes - 1) + 1):  # exact up to the stencil's order
        derivative = 1.0 if degree == 1 else 0.0
        assert abs(float(gs.sum(weights * t**degree)) - derivative) < 1e-9


def test_without_shooting_geodesic_is_the_discrete_path(plane):
    solver = gp.GeodesicBVPSolver(plane, shooting=False, n_nodes=9)
    a, b = gs.array([[0.0, 0.0], [1.0, 1.0]]), gs.array([[1.0, 2.0], [0.0, -1.0]])
    curve = solver.geodesic_bvp(b, a)(gs.linspace(0.0, 1.0, 5))
    assert curve.shape == (2, 5, 2)
    torch.testing.assert_close(curve, gp.linear_path(a, b, 5), atol=1e-10, rtol=0)


def test_unreachable_pair_is_flagged_not_raised(sphere_space):
    """A geodesic through the chart's singular pole fails in exp: flagged, the other pairs unharmed."""
    a = gs.array([[0.2, 0.0], [1.2, 0.3]])
    b = gs.array([[0.2, 3.1], [1.4, 0.5]])
    solver = gp.GeodesicBVPSolver(sphere_space, max_shooting_iter=4)
    with pytest.warns(gp.ConvergenceWarning):
        solver.log(b, a)
    assert solver.result_.converged.tolist() == [False, True]


# ------------------------------------------------------------------ graph initialisation


def test_graph_initialisation_goes_around_a_bump():
    """Between (-1, 0) and (1, 0) the straight line climbs over the bump; the shortest way goes around."""
    space = gp.DecoderManifold(bump_decoder, latent_dim=2)
    a, b = gs.array([[-1.0, 0.0]]), gs.array([[1.0, 0.0]])
    grid = torch.stack(torch.meshgrid(torch.linspace(-1.5, 1.5, 25), torch.linspace(-1.5, 1.5, 25), indexing="ij"), -1)
    solver = gp.GeodesicBVPSolver(space, init=grid.reshape(-1, 2).to(torch.float64), n_neighbors=8)
    around = solver.solve(b, a)
    assert bool(around.converged.all())
    dist = space.metric.norm(around.tangent_vec, a)
    straight = gp.path_length(space, gp.linear_path(a, b, 257))
    assert float(dist) < 0.75 * float(straight)
    assert float(around.path[0, :, 1].abs().max()) > 0.3  # it leaves the axis


def test_graph_paths_join_end_points_through_the_graph():
    decoder = gp.as_decoder(analytic.linear_isometry(2, 3), 2)
    points = torch.as_tensor(np.random.default_rng(0).uniform(-1, 1, size=(200, 2)))
    start, end = gs.array([[-0.9, -0.9], [0.0, 0.0]]), gs.array([[0.9, 0.8], [0.0, 0.5]])
    paths, found = graph_paths(decoder, points, start, end, n_neighbors=6, n_segments=10)
    assert paths.shape == (2, 11, 2) and bool(found.all())
    torch.testing.assert_close(paths[:, 0], start)
    torch.testing.assert_close(paths[:, -1], end)
    # nodes evenly spaced in (here isometric) arc length along the graph path: chords no longer than
    # the spacing, most of them equal to it
    steps = (paths[:, 1:] - paths[:, :-1]).norm(dim=-1)
    spacing = steps.max(-1, keepdim=True).values
    assert float((steps / spacing).median()) > 0.99
    # a shortest graph path is longer than the straight line, but not by much
    length = steps.sum(-1)
    straight = (end - start).norm(dim=-1)
    assert bool((10 * spacing[:, 0] >= straight - 1e-12).all()) and bool((length < 1.5 * straight).all())


def test_graph_paths_not_connected_fall_back():
    decoder = gp.as_decoder(analytic.linear_isometry(2, 3), 2)
    points = gs.array([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0]])
    start, end = gs.array([[0.05, 0.0]]), gs.array([[5.05, 5.0]])
    _, found = graph_paths(decoder, points, start, end, n_neighbors=1, n_segments=4)
    assert found.tolist() == [False]


# ------------------------------------------------------------------ building blocks


@pytest.mark.parametrize("dense_max_size", [0, 10**6], ids=["block-recursion", "dense-cholesky"])
def test_block_tridiagonal_solve_matches_dense(dense_max_size, monkeypatch):
    monkeypatch.setattr(_blocktridiag, "DENSE_MAX_SIZE", dense_max_size)
    rng = np.random.default_rng(0)
    n_batch, n_blocks, dim = 3, 6, 2
    lower = rng.normal(size=(n_batch, n_blocks * dim, n_blocks * dim))
    band = np.abs(np.subtract.outer(np.arange(n_blocks * dim) // dim, np.arange(n_blocks * dim) // dim)) <= 1
    dense = lower @ lower.transpose(0, 2, 1) * band + 10 * np.eye(n_blocks * dim)  # SPD, block tridiagonal
    diag = np.stack([dense[:, k * dim : (k + 1) * dim, k * dim : (k + 1) * dim] for k in range(n_blocks)], 1)
    upper = np.stack(
        [dense[:, k * dim : (k + 1) * dim, (k + 1) * dim : (k + 2) * dim] for k in range(n_blocks - 1)], 1
    )
    rhs = rng.normal(size=(n_batch, n_blocks, dim, 3))
    factors, positive = _blocktridiag.factor(torch.as_tensor(diag), torch.as_tensor(upper))
    x = _blocktridiag.solve(factors, torch.as_tensor(rhs))
    expected = np.linalg.solve(dense, rhs.reshape(n_batch, n_blocks * dim, 3)).reshape(rhs.shape)
    assert bool(positive.all())
    np.testing.assert_allclose(x.numpy(), expected, atol=1e-12)
    # an indefinite matrix is reported
    diag[1, 2] -= 50 * np.eye(dim)
    _, positive = _blocktridiag.factor(torch.as_tensor(diag), torch.as_tensor(upper))
    assert positive.tolist() == [True, False, True]


def test_sensitivity_approximates_inverse_jacobian_of_exp(mlp_space):
    """The implicit-differentiation M of the discrete problem is close to (d exp / d v)^{-1}."""
    a, b = gs.array([[-0.5, 0.2]]), gs.array([[0.6, -0.4]])
    path = gp.linear_path(a, b, 33)
    result = discrete_geodesic(
        mlp_space.decoder, 0.0, path, gs.array([1e-4]), xtol=gs.array([1e-10]), max_iter=30, second_order=True
    )
    assert bool(result.converged.all())
    correction = fourth_order_correction(mlp_space.decoder, 0.0, result.path, result.decoded, result.converged)
    path = correction.path
    sens = end_point_sensitivity(mlp_space.decoder, 0.0, path, correction.hessian)
    v = initial_velocity(path)
    step = 1e-6
    columns = [
        (mlp_space.metric.exp(v + step * gs.eye(2)[j], a) - mlp_space.metric.exp(v, a)) / step for j in range(2)
    ]
    jac = torch.stack(columns, -1)[0]
    assert (sens[0] @ jac - torch.eye(2, dtype=jac.dtype)).abs().max() < 2e-3


# ------------------------------------------------------------------ interface


def test_default_log_solver_and_replaceable(mlp_space):
    assert isinstance(mlp_space.metric.log_solver, gp.GeodesicBVPSolver)
    space = gp.DecoderManifold(analytic.linear_isometry(2, 4), latent_dim=2)
    solver = gp.GeodesicBVPSolver(space, n_nodes=9, shooting=False)
    space.metric.log_solver = solver
    space.metric.log(gs.array([1.0, 1.0]), gs.array([0.0, 0.0]))
    assert solver.result_.path.shape == (9, 2)


@pytest.mark.parametrize(
    "kwargs",
    [{"n_nodes": 2}, {"max_iter": -1}, {"tol": 0.0}, {"n_neighbors": 0}, {"n_nodes": 8.5}, {"init": [[0.0, 0.0]]}],
)
def test_bad_options_raise(plane, kwargs):
    with pytest.raises(ValueError):
        gp.GeodesicBVPSolver(plane, **kwargs)


@pytest.mark.parametrize(
    "point, base_point, match",
    [
        (gs.array([0.0, 1.0, 2.0]), gs.array([0.0, 0.0]), "shape"),
        (gs.array([0.0, float("nan")]), gs.array([0.0, 0.0]), "NaN"),
        (gs.zeros((3, 2)), gs.zeros((4, 2)), "broadcast"),
    ],
)
def test_bad_input_raises(plane, point, base_point, match):
    with pytest.raises(ValueError, match=match):
        plane.metric.log(point, base_point)


# ------------------------------------------------------------------ degenerate metrics


def zero_jacobian_decoder(z):
    """A constant map ``R^2 -> R^3``: ``G = 0`` everywhere."""
    return 0 * z.sum(-1, keepdim=True).expand(-1, 3)


def dead_zone_decoder(z):
    """Regular outside the square ``|z_i| <= 0.5``, constant (``G = 0``) inside it.

    ``w = z - clamp(z, -0.5, 0.5)`` and ``(w, w_0 w_1)``: curved where both
    ``w_i > 0``; pairs whose straight line crosses the square have a
    degenerate metric between regular end points.
    """
    w = z - z.clamp(-0.5, 0.5)
    return torch.cat([w, w[..., :1] * w[..., 1:]], dim=-1)


@pytest.fixture(scope="module")
def dead_zone():
    return gp.DecoderManifold(dead_zone_decoder, latent_dim=2)


def test_zero_jacobian_decoder_raises_rank_deficient_and_eps_regularises():
    space = gp.DecoderManifold(zero_jacobian_decoder, latent_dim=2)
    a, b = gs.array([[0.0, 0.0]]), gs.array([[1.0, 1.0]])
    with pytest.raises(gp.RankDeficientJacobianError, match="eps"):
        space.metric.dist(a, b)
    regular = gp.DecoderManifold(zero_jacobian_decoder, latent_dim=2, metric_kwargs={"eps": 1e-4})
    # G = eps I: geodesics are straight lines of length sqrt(eps) |b - a|.
    torch.testing.assert_close(regular.metric.dist(a, b), gs.array([1e-2 * 2**0.5]), atol=1e-12, rtol=1e-9)
    assert bool(regular.metric.log_solver.result_.converged.all())


def test_far_points_on_a_tanh_mlp_raise_rank_deficient(mlp_space):
    """At |z| = 1e6 every tanh saturates: J = 0 at the end points, refused before any Newton step."""
    a, b = gs.array([[1e6, 0.0]]), gs.array([[0.0, 1e6]])
    with pytest.raises(gp.RankDeficientJacobianError, match="2 of 2"):
        mlp_space.metric.dist(a, b)
    # With eps > 0 it is solved: sqrt(eps) |b - a| <= d <= the length of the straight line.
    regular = gp.DecoderManifold(mlp_space.decoder, latent_dim=2, metric_kwargs={"eps": 1e-8})
    dist = float(regular.metric.dist(a, b)[0])
    assert bool(regular.metric.log_solver.result_.converged.all())
    assert 1e-4 * 2**0.5 * 1e6 <= dist <= float(gp.path_length(regular, gp.linear_path(a, b, 257))[0]) * (1 + 1e-9)


def test_degenerate_pair_gives_up_at_capped_damping(dead_zone):
    """Newton's system is singular in the dead zone: damping stops at its cap, the pair is given up."""
    from geomstats_pullback.geodesics.discrete import MAX_DAMPING

    path = gp.linear_path(gs.array([[-1.0, -1.0]]), gs.array([[1.0, 1.0]]), 17)
    xtol = gs.array([1e-8])
    result = discrete_geodesic(
        dead_zone.decoder, 0.0, path, gs.array([1e-4]), xtol=xtol, max_iter=30, second_order=True
    )
    assert result.converged.tolist() == [False]
    assert float(result.damping[0]) == MAX_DAMPING
    assert bool(torch.isfinite(result.path).all())


def test_trial_steps_outside_the_decoders_domain_are_refused_not_raised():
    """sqrt is NaN at negative nodes: those trial paths are refused, the others decoded exactly."""
    from geomstats_pullback.geodesics.discrete import decode_trials

    decoder = gp.DecoderManifold(torch.sqrt, latent_dim=2, region=(gs.array([0.5, 0.5]), gs.array([1.0, 1.0]))).decoder
    nodes = gs.array([[[1.0, 4.0]], [[-1.0, 1.0]], [[9.0, 16.0]], [[float("nan"), 1.0]]])  # [4 paths, 1 node, 2]
    decoded, ok = decode_trials(decoder, nodes, gs.array([True, True, True, False]))
    assert ok.tolist() == [True, False, True, False]
    assert torch.equal(decoded[ok], torch.sqrt(nodes[ok]))


def test_degenerate_pair_is_isolated_bit_for_bit(dead_zone):
    """One pair through the dead zone: flagged; the regular pairs of its batch get exactly their lone results."""
    healthy_a = gs.array([[0.6, 0.7], [1.4, 0.6], [0.9, 1.5]])
    healthy_b = gs.array([[1.5, 1.2], [0.7, 1.3], [1.6, 0.8]])
    a = torch.cat([healthy_a[:1], gs.array([[-1.0, -1.0]]), healthy_a[1:]])
    b = torch.cat([healthy_b[:1], gs.array([[1.0, 1.0]]), healthy_b[1:]])
    solver = dead_zone.metric.log_solver
    with pytest.warns(gp.ConvergenceWarning, match="1 of 4"):
        solver.log(b, a)
    mixed = solver.result_
    assert mixed.converged.tolist() == [True, False, True, True]
    assert bool(torch.isfinite(mixed.tangent_vec).all())
    healthy = [0, 2, 3]
    for i, row in enumerate(healthy):
        alone = solver.solve(healthy_b[i], healthy_a[i])
        assert bool(alone.converged)
        for name in ("tangent_vec", "path", "residual"):
            assert torch.equal(getattr(mixed, name)[row], getattr(alone, name)), name


def test_degenerate_pair_does_not_abort_pairwise_distances(dead_zone):
    """Both pairs with (-1, -1) cross the dead zone: flagged; the job finishes and the third pair is right."""
    X = gs.array([[-1.0, -1.0], [1.0, 1.0], [1.4, 0.7]])
    with pytest.warns(gp.ConvergenceWarning):
        result = gp.pairwise_distances(dead_zone.metric, X, block_size=3, progress=False)
    assert result.converged.tolist() == [[True, False, False], [False, True, True], [False, True, True]]
    expected = dead_zone.metric.dist(X[1], X[2])
    assert float(result.dist[1, 2]) == pytest.approx(float(expected), rel=1e-12)


# ------------------------------------------------------------------ dtypes, empty batches, autograd


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_low_precision_inputs_are_float64_latent_points(sphere_space, dtype):
    a, b = torch.tensor([[1.2, 0.5]], dtype=dtype), torch.tensor([[1.0, -0.5]], dtype=dtype)
    log = sphere_space.metric.log(b, a)
    assert log.dtype == torch.float64
    assert torch.equal(log, sphere_space.metric.log(b.double(), a.double()))
    assert torch.equal(sphere_space.metric.dist(a, b), sphere_space.metric.dist(a.double(), b.double()))


def test_empty_batch_gives_empty_results(sphere_space):
    empty = gs.zeros((0, 2))
    metric = sphere_space.metric
    assert metric.log(empty, empty).shape == (0, 2)
    assert metric.dist(empty, empty).shape == (0,)
    assert metric.log_solver.solve(empty, gs.zeros(2)).path.shape == (0, metric.log_solver.n_nodes, 2)


def test_log_tracking_gradients_emits_no_user_warning(sphere_space, caplog):
    """A debug log line must not convert a tensor that requires grad to a float."""
    caplog.set_level("DEBUG", logger="geomstats_pullback")
    a = torch.tensor([1.2, 0.5], dtype=torch.float64, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        log = sphere_space.metric.log(gs.array([1.0, -0.5]), a)
    assert log.requires_grad
    assert any("Shooting iteration" in message for message in caplog.messages)
