"""PullbackMetric against closed forms, finite differences and geomstats' stock pullback metric."""

import geomstats.backend as gs
import pytest
import torch
from cases import CASES, case_params, with_reference
from conftest import sphere_points
from geomstats.numerics.ivp import GSIVPIntegrator

import geomstats_pullback as gp
from geomstats_pullback import analytic
from geomstats_pullback.reference import StockPullbackSpace


def sphere_christoffels(z):
    """Closed form for G = diag(1, sin^2 theta): Gamma^theta_phiphi, Gamma^phi_thetaphi."""
    theta = z[..., 0]
    gamma = torch.zeros(z.shape[:-1] + (2, 2, 2), dtype=z.dtype)
    gamma[..., 0, 1, 1] = -torch.sin(theta) * torch.cos(theta)
    gamma[..., 1, 0, 1] = gamma[..., 1, 1, 0] = torch.cos(theta) / torch.sin(theta)
    return gamma


def geodesics_away_from_poles(hypersphere, z, v, margin=0.9):
    """Keep (z, v) whose great circle for t in [0, 1] stays at |x_3| < margin (chart regular)."""
    times = gs.linspace(0.0, 1.0, 41)
    path = hypersphere.metric.geodesic(
        hypersphere.spherical_to_extrinsic(z), initial_tangent_vec=hypersphere.tangent_spherical_to_extrinsic(v, z)
    )(times)
    keep = (path[..., 2].abs() < margin).all(-1)
    return z[keep], v[keep]


def test_sphere_metric_matrix_is_diag_one_sin2(sphere_space):
    z = sphere_points(50)
    expected = torch.diag_embed(torch.stack([torch.ones(50, dtype=z.dtype), torch.sin(z[:, 0]) ** 2], -1))
    torch.testing.assert_close(sphere_space.metric.metric_matrix(z), expected, atol=1e-10, rtol=0)
    torch.testing.assert_close(sphere_space.metric.cometric_matrix(z), torch.linalg.inv(expected), atol=1e-10, rtol=0)


def test_sphere_christoffels_closed_form(sphere_space):
    z = sphere_points(30)
    torch.testing.assert_close(sphere_space.metric.christoffels(z), sphere_christoffels(z), atol=1e-10, rtol=0)


def test_sphere_exp_matches_hypersphere(sphere_space, hypersphere):
    z = sphere_points(300, seed=3)
    v = gs.random.normal(size=(300, 2))
    v = v / sphere_space.metric.norm(v, z)[:, None] * 1.5 * gs.random.rand(300, 1)
    z, v = geodesics_away_from_poles(hypersphere, z, v)
    assert z.shape[0] > 100
    ours = analytic.sphere_chart(sphere_space.metric.exp(v, z))
    ref = hypersphere.metric.exp(hypersphere.tangent_spherical_to_extrinsic(v, z), hypersphere.spherical_to_extrinsic(z))
    assert (ours - ref).norm(dim=-1).max() < 1e-8


def test_sphere_geodesic_ivp_matches_hypersphere(sphere_space, hypersphere):
    z, v = sphere_points(1)[0], gs.array([0.4, 0.3])
    times = gs.linspace(0.0, 1.0, 7)
    ours = analytic.sphere_chart(sphere_space.metric.geodesic(z, initial_tangent_vec=v)(times))
    ref = hypersphere.metric.geodesic(
        hypersphere.spherical_to_extrinsic(z), initial_tangent_vec=hypersphere.tangent_spherical_to_extrinsic(v, z)
    )(times)
    assert ours.shape == (7, 3)
    torch.testing.assert_close(ours, ref, atol=1e-9, rtol=0)


def test_flat_decoder_exp_is_straight_line_and_christoffels_vanish(flat_space):
    z, v = gs.random.normal(size=(20, 2)), gs.random.normal(size=(20, 2))
    torch.testing.assert_close(flat_space.metric.exp(v, z), z + v, atol=1e-12, rtol=0)
    torch.testing.assert_close(flat_space.metric.christoffels(z), torch.zeros(20, 2, 2, 2, dtype=z.dtype), atol=1e-12, rtol=0)
    torch.testing.assert_close(flat_space.metric.metric_matrix(z), torch.eye(2, dtype=z.dtype).expand(20, 2, 2), atol=1e-12, rtol=0)


def test_mlp_matches_stock_pullback_metric(mlp_space):
    stock = StockPullbackSpace(mlp_space.decoder.decoder, latent_dim=2)
    z = mlp_space.random_point(4)
    torch.testing.assert_close(mlp_space.metric.metric_matrix(z), stock.metric.metric_matrix(z), atol=1e-12, rtol=0)
    torch.testing.assert_close(
        mlp_space.metric.inner_product_derivative_matrix(z), stock.metric.inner_product_derivative_matrix(z), atol=1e-12, rtol=0
    )
    torch.testing.assert_close(mlp_space.metric.christoffels(z), stock.metric.christoffels(z), atol=1e-10, rtol=0)
    state = torch.stack([z, gs.random.normal(size=(4, 2))], dim=-2)
    torch.testing.assert_close(mlp_space.metric.geodesic_equation(state), stock.metric.geodesic_equation(state), atol=1e-10, rtol=0)


def test_mlp_metric_matrix_matches_finite_differences(mlp_space):
    z, h = mlp_space.random_point(5), 1e-6
    decode = mlp_space.decoder
    columns = [(decode(z + h * e) - decode(z - h * e)) / (2 * h) for e in torch.eye(2, dtype=z.dtype)]
    jac = torch.stack(columns, dim=-1)
    torch.testing.assert_close(mlp_space.metric.metric_matrix(z), jac.mT @ jac, atol=1e-8, rtol=0)


def test_mlp_geodesic_equation_matches_finite_difference_of_metric(mlp_space):
    """z'' = -Gamma(z)[v, v] with Gamma from central differences of G (Levi-Civita formula)."""
    z, v, h = mlp_space.random_point(3), gs.random.normal(size=(3, 2)), 1e-5
    dg = torch.stack(
        [(mlp_space.metric.metric_matrix(z + h * e) - mlp_space.metric.metric_matrix(z - h * e)) / (2 * h) for e in torch.eye(2, dtype=z.dtype)],
        dim=-1,
    )  # [B, i, j, k] = d_k g_ij
    first_kind = 0.5 * (dg.permute(0, 1, 3, 2) + dg - dg.permute(0, 3, 1, 2))  # [B, l, i, j] ... Gamma_{l,ij}
    gamma = torch.einsum("blk,bkij->blij", torch.linalg.inv(mlp_space.metric.metric_matrix(z)), first_kind)
    expected = -torch.einsum("bkij,bi,bj->bk", gamma, v, v)
    state = torch.stack([z, v], dim=-2)
    torch.testing.assert_close(mlp_space.metric.geodesic_equation(state)[:, 1], expected, atol=1e-7, rtol=0)


def test_inner_product_and_norms_are_consistent(mlp_space):
    z, u, v = mlp_space.random_point(6), gs.random.normal(size=(6, 2)), gs.random.normal(size=(6, 2))
    gram = mlp_space.metric.metric_matrix(z)
    torch.testing.assert_close(mlp_space.metric.inner_product(u, v, z), torch.einsum("bi,bij,bj->b", u, gram, v))
    torch.testing.assert_close(mlp_space.metric.squared_norm(v, z), torch.einsum("bi,bij,bj->b", v, gram, v))
    torch.testing.assert_close(mlp_space.metric.norm(v, z), mlp_space.metric.squared_norm(v, z).sqrt())


def test_exp_broadcasts_both_ways(mlp_space):
    mlp_space = gp.DecoderManifold(mlp_space.decoder, latent_dim=2)
    mlp_space.metric.exp_solver = gp.GeodesicIVPSolver(mlp_space, n_steps=2)  # shapes and code paths only
    z, v = mlp_space.random_point(5), gs.random.normal(size=(5, 2)) * 0.3
    batched = mlp_space.metric.exp(v, z)
    assert batched.shape == (5, 2)
    one_base = mlp_space.metric.exp(v, z[0])
    one_vec = mlp_space.metric.exp(v[0], z)
    for i in (0, 3):
        torch.testing.assert_close(one_base[i], mlp_space.metric.exp(v[i], z[0]), atol=1e-12, rtol=0)
        torch.testing.assert_close(one_vec[i], mlp_space.metric.exp(v[0], z[i]), atol=1e-12, rtol=0)
    torch.testing.assert_close(batched[2], mlp_space.metric.exp(v[2], z[2]), atol=1e-12, rtol=0)
    assert mlp_space.metric.exp(v[0], z[0]).shape == (2,)
    grid = mlp_space.metric.exp(v[:, None, :].expand(5, 3, 2), z[0])
    assert grid.shape == (5, 3, 2)


def test_geodesic_ivp_batched_shapes(mlp_space):
    z, v = mlp_space.random_point(4), gs.random.normal(size=(4, 2)) * 0.3
    path = mlp_space.metric.geodesic(z, initial_tangent_vec=v)(gs.linspace(0.0, 1.0, 5))
    assert path.shape == (4, 5, 2)
    torch.testing.assert_close(path[:, 0], z, atol=1e-14, rtol=0)
    torch.testing.assert_close(path[:, -1], mlp_space.metric.exp(v, z), atol=1e-12, rtol=0)


def test_user_can_swap_integrator(sphere_space):
    metric = CASES["sphere-float64"].space().metric
    z, v = sphere_points(5), gs.random.normal(size=(5, 2)) * 0.3
    default = metric.exp(v, z)
    metric.exp_solver.integrator = GSIVPIntegrator(n_steps=64, step_type="rk4")
    assert metric.exp_solver.solves_ivp
    torch.testing.assert_close(metric.exp(v, z), default, atol=1e-7, rtol=0)


def test_float32_decoder_with_float64_points():
    space64, space32 = CASES["mlp-float64"].space(), CASES["mlp-float32"].space()
    assert space32.decoder.dtype == torch.float32
    z = space64.random_point(8)
    g32 = space32.metric.metric_matrix(z)
    assert g32.dtype == torch.float64
    torch.testing.assert_close(g32, space64.metric.metric_matrix(z), rtol=1e-5, atol=1e-6)
    v = 0.3 * gs.random.normal(size=(8, 2))
    torch.testing.assert_close(space32.metric.exp(v, z), space64.metric.exp(v, z), rtol=0, atol=1e-5)


def test_image_decoder_is_flattened():
    net = analytic.random_mlp((2, 12, 48), seed=5)
    image_decoder = lambda z: net(z).reshape(-1, 3, 4, 4)  # noqa: E731
    space, flat = gp.DecoderManifold(image_decoder, 2), gp.DecoderManifold(net, 2)
    assert space.decoder.data_shape == (3, 4, 4) and space.decoder.output_dim == 48
    z = space.random_point(3)
    torch.testing.assert_close(space.metric.metric_matrix(z), flat.metric.metric_matrix(z))


def test_stochastic_decoder_metric_is_sum_of_pullbacks():
    mean, std = analytic.random_mlp((2, 8, 6), seed=6), analytic.random_mlp((2, 8, 6), seed=7)
    stochastic = gp.DecoderManifold(gp.StochasticDecoder(mean, std), 2)
    z = stochastic.random_point(5)
    expected = gp.DecoderManifold(mean, 2).metric.metric_matrix(z) + gp.DecoderManifold(std, 2).metric.metric_matrix(z)
    torch.testing.assert_close(stochastic.metric.metric_matrix(z), expected)
    assert stochastic.decoder.output_dim == 12


def test_random_point_regions(mlp_space):
    box = gp.DecoderManifold(mlp_space.decoder, 2, region=(gs.array([2.0, -1.0]), gs.array([3.0, 0.0])))
    points = box.random_point(200)
    assert points.shape == (200, 2) and box.belongs(points).all()
    assert (points[:, 0] >= 2).all() and (points[:, 0] <= 3).all() and (points[:, 1] <= 0).all()
    codes = gs.random.normal(size=(7, 2))
    sampled = gp.DecoderManifold(mlp_space.decoder, 2, region=codes).random_point(50)
    assert all(((codes - p).abs().sum(-1) == 0).any() for p in sampled)
    assert mlp_space.random_point().shape == (2,)


def test_geomstats_estimators_instantiate_and_exp_batched(mlp_space):
    from geomstats.learning.frechet_mean import FrechetMean
    from geomstats.learning.pca import TangentPCA

    for estimator in (FrechetMean(mlp_space), TangentPCA(mlp_space)):
        metric = estimator.space.metric
        assert isinstance(metric, gp.PullbackMetric)
        z, v = mlp_space.random_point(6), 0.2 * gs.random.normal(size=(6, 2))
        assert metric.exp(v, z).shape == (6, 2)


# ------------------------------------------------------------------ laws on every registry case


def _jacobian_products(case, z, u, v, step=1e-5):
    """``<J u, J v>`` with ``J u`` from central differences of the float64 decoder."""
    decode = case.space(dtype=torch.float64).decoder

    def push(w):
        return (decode(z + step * w) - decode(z - step * w)) / (2 * step)

    return (push(u) * push(v)).sum(-1)


@pytest.mark.parametrize("case", case_params())
def test_metric_is_spd_and_inner_product_is_the_jacobian_product(case):
    space = case.space()
    z, u, v = case.points(4, seed=40), case.vectors(4, seed=41), case.vectors(4, seed=42)
    gram = space.metric.metric_matrix(z)
    assert gram.shape == (4, case.latent_dim, case.latent_dim)
    torch.testing.assert_close(gram, gram.mT, atol=case.tol(1e-12), rtol=0)
    assert float(torch.linalg.eigvalsh(gram).min()) > 1e-3
    expected = _jacobian_products(case, z, u, v)
    scale = float(expected.abs().max()) + 1.0
    torch.testing.assert_close(space.metric.inner_product(u, v, z), expected, atol=case.tol(1e-7) * scale, rtol=0)
    torch.testing.assert_close(space.metric.squared_norm(u, z), _jacobian_products(case, z, u, u), atol=case.tol(1e-7) * scale, rtol=0)


@pytest.mark.parametrize("case", case_params(*with_reference()))
def test_exp_matches_the_reference_space(case):
    space, reference = case.space(), case.reference()
    z = case.points(20, seed=43)
    v = case.vectors(20, seed=44)
    v = 0.5 * v / space.metric.norm(v, z)[:, None]  # short geodesics stay inside the chart's regular region
    ours = case.to_reference(space.metric.exp(v, z))
    expected = reference.metric.exp(case.tangent_to_reference(v, z), case.to_reference(z))
    torch.testing.assert_close(ours, expected, atol=case.tol(1e-8), rtol=0)
    torch.testing.assert_close(
        space.metric.norm(v, z), reference.metric.norm(case.tangent_to_reference(v, z), case.to_reference(z)),
        atol=case.tol(1e-10), rtol=0,
    )


@pytest.mark.parametrize("case", case_params("conv8", slow_float32=True))
def test_conv8_exp_log_round_trip(case):
    space = case.space()
    z, v = case.points(2, seed=45), case.vectors(2, seed=46, scale=0.3)
    end = space.metric.exp(v, z)
    assert float((end - z).abs().max()) > 0.1
    torch.testing.assert_close(space.metric.log(end, z), v, atol=case.solver_tol * float(v.abs().max()), rtol=0)
    torch.testing.assert_close(space.metric.dist(z, end), space.metric.norm(v, z), atol=case.solver_tol, rtol=0)


# ---------------------------------------------------------------- input dtypes and empty batches


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.int64])
def test_input_dtypes_are_cast_to_float64(mlp_space, dtype):
    """Latent points are float64 whatever the input type: same result as the float64 of the same values."""
    metric = mlp_space.metric
    z, v = torch.tensor([[0.5, -0.25], [1.0, 0.75]]).to(dtype), torch.tensor([[0.25, 0.5]]).to(dtype)
    z64, v64 = z.double(), v.double()
    assert metric.metric_matrix(z).dtype == torch.float64
    assert torch.equal(metric.metric_matrix(z), metric.metric_matrix(z64))
    assert torch.equal(metric.inner_product(v, v, z), metric.inner_product(v64, v64, z64))
    assert torch.equal(metric.scalar_curvature(z), metric.scalar_curvature(z64))


def test_empty_batches_give_empty_results(mlp_space):
    metric, empty = mlp_space.metric, gs.zeros((0, 2))
    output_dim = metric.decoder.output_dim
    expected = {
        "metric_matrix": (0, 2, 2),
        "cometric_matrix": (0, 2, 2),
        "inner_product_derivative_matrix": (0, 2, 2, 2),
        "christoffels": (0, 2, 2, 2),
        "second_fundamental_form": (0, output_dim, 2, 2),
        "mean_curvature_vector": (0, output_dim),
        "riemann_tensor": (0, 2, 2, 2, 2),
        "scalar_curvature": (0,),
    }
    for name, shape in expected.items():
        assert getattr(metric, name)(empty).shape == shape, name
    assert metric.inner_product(empty, empty, empty).shape == (0,)
    assert metric.inner_product(empty, empty, gs.zeros(2)).shape == (0,)
    assert metric.squared_norm(empty, gs.zeros((3, 0, 2))).shape == (3, 0)
    assert metric.sectional_curvature(empty, empty, empty).shape == (0,)
    assert metric.curvature(empty, empty, empty, empty).shape == (0, 2)
    assert metric.squared_dist(empty, empty).shape == (0,)
    assert metric.dist(empty, gs.zeros(2)).shape == (0,)
    assert metric.log(empty, empty).shape == (0, 2)
