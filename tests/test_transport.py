"""Parallel transport along geodesics and discrete paths, and analogies."""

import math

import pytest
import torch
from cases import CASES, case_params, with_reference
from conftest import random_vecs, sphere_points

import geomstats_pullback as gp

ATOL = 1e-6


# ------------------------------------------------------------------ along geodesics


def test_sphere_transport_matches_hypersphere(sphere_space, hypersphere):
    """Pushed through the chart, our transport is geomstats' closed-form one on S^2."""
    z = sphere_points(12, seed=1)
    direction = random_vecs(12, 2, 2, scale=0.3)
    vec = random_vecs(12, 2, 3)
    result = sphere_space.metric.parallel_transport(vec, z, direction=direction)
    end = sphere_space.metric.exp(direction, z)
    push = hypersphere.tangent_spherical_to_extrinsic
    expected = hypersphere.metric.parallel_transport(
        push(vec, z), hypersphere.spherical_to_extrinsic(z), direction=push(direction, z)
    )
    assert result.shape == (12, 2)
    assert torch.allclose(push(result, end), expected, atol=ATOL)
    # Not the identity in coordinates: the chart is curved.
    assert float((result - vec).abs().max()) > 0.05


def test_one_geodesic_many_vectors_and_broadcasting(mlp3_space):
    space = gp.DecoderManifold(mlp3_space.decoder, latent_dim=3)
    space.metric.exp_solver = gp.GeodesicIVPSolver(space, n_steps=2)  # shapes and code paths only
    metric = space.metric
    z, direction = random_vecs(1, 3, 4, scale=0.3)[0], random_vecs(1, 3, 5, scale=0.3)[0]
    vecs = random_vecs(6, 3, 6).reshape(2, 3, 3)
    shared = metric.parallel_transport(vecs, z, direction=direction)  # one geodesic carries all vectors
    assert shared.shape == (2, 3, 3)
    one_by_one = metric.parallel_transport(vecs, z.expand(2, 3, 3), direction=direction.expand(2, 3, 3))
    assert torch.allclose(shared, one_by_one, atol=1e-12)
    assert float((shared - vecs).abs().max()) > 1e-3
    several_points = random_vecs(4, 3, 7, scale=0.3)
    assert metric.parallel_transport(vecs[0, 0], several_points, direction=direction).shape == (4, 3)
    assert metric.parallel_transport(vecs[0, 0], z, direction=direction).shape == (3,)


@pytest.mark.parametrize(("space_name", "eps"), [("mlp3_space", 0.0), ("mlp_space", 0.2)])
def test_transport_preserves_inner_products(space_name, eps, request):
    base_space = request.getfixturevalue(space_name)
    dim = base_space.dim
    space = gp.DecoderManifold(base_space.decoder, latent_dim=dim, metric_kwargs={"eps": eps})
    metric = space.metric
    z = random_vecs(8, dim, 8, scale=0.5)
    direction = random_vecs(8, dim, 9, scale=0.3)  # larger: geodesics of the 3-d net run off to saturation
    pair = torch.stack([random_vecs(8, dim, 10), random_vecs(8, dim, 11)])  # [2, 8, d]
    transported = metric.parallel_transport(pair, z, direction=direction)
    end = metric.exp(direction, z)
    before = metric.inner_product(pair[0], pair[1], z)
    after = metric.inner_product(transported[0], transported[1], end)
    assert torch.allclose(after, before, atol=ATOL)
    assert torch.allclose(metric.squared_norm(transported, end), metric.squared_norm(pair, z), atol=ATOL)
    assert float((transported - pair).abs().max()) > 1e-3  # not the identity


@pytest.mark.parametrize("case", case_params("conv8", slow_float32=True))
def test_conv8_transport_preserves_inner_products(case):
    metric = case.space().metric
    z, direction = case.points(2, seed=50), case.vectors(2, seed=51, scale=0.3)
    pair = torch.stack([case.vectors(2, seed=52), case.vectors(2, seed=53)])  # [2, B, d]
    transported = metric.parallel_transport(pair, z, direction=direction)
    end = metric.exp(direction, z)
    before = metric.inner_product(pair[0], pair[1], z)
    scale = float(metric.squared_norm(pair, z).max())
    tol = case.solver_tol * 1e-2 * scale
    torch.testing.assert_close(metric.inner_product(transported[0], transported[1], end), before, atol=tol, rtol=0)
    torch.testing.assert_close(metric.squared_norm(transported, end), metric.squared_norm(pair, z), atol=tol, rtol=0)
    assert float((transported - pair).abs().max()) > 1e-3  # not the identity


@pytest.mark.parametrize("case", case_params(*with_reference()))
def test_transport_matches_the_reference_space(case):
    metric, reference = case.space().metric, case.reference().metric
    z, direction, vec = case.points(6, seed=54), case.vectors(6, seed=55, scale=0.3), case.vectors(6, seed=56)
    result = metric.parallel_transport(vec, z, direction=direction)
    end = metric.exp(direction, z)
    expected = reference.parallel_transport(
        case.tangent_to_reference(vec, z), case.to_reference(z), direction=case.tangent_to_reference(direction, z)
    )
    torch.testing.assert_close(case.tangent_to_reference(result, end), expected, atol=case.tol(ATOL), rtol=0)


def test_transport_errors(mlp_space):
    metric = mlp_space.metric
    z = torch.zeros(2, dtype=torch.float64)
    with pytest.raises(ValueError, match="exactly one"):
        metric.parallel_transport(z, z)
    with pytest.raises(ValueError, match="exactly one"):
        metric.parallel_transport(z, z, direction=z, end_point=z)
    with pytest.raises(ValueError, match="shape"):
        metric.parallel_transport(torch.zeros(3, dtype=torch.float64), z, direction=z)
    with pytest.raises(ValueError, match="NaN"):
        metric.parallel_transport(z, z, direction=torch.tensor([float("nan"), 0.0]))


# ------------------------------------------------------------------ along discrete paths


def _observed_orders(errors):
    return [math.log2(coarse / fine) for coarse, fine in zip(errors[:-1], errors[1:])]


def test_discrete_schemes_converge_to_the_ode(mlp_space):
    """Projection scheme: first order in the node spacing; ODE scheme: second order."""
    metric = mlp_space.metric
    z = torch.tensor([[0.1, 0.3], [0.2, -0.4]], dtype=torch.float64)
    direction = torch.tensor([[0.8, 0.5], [-0.6, 0.4]], dtype=torch.float64)
    vec = torch.tensor([[0.3, -0.5], [1.0, 0.2]], dtype=torch.float64)
    expected = metric.parallel_transport(vec, z, direction=direction)
    errors = {"projection": [], "ode": []}
    finest = 32
    path = metric.geodesic(z, initial_tangent_vec=direction)(torch.linspace(0.0, 1.0, finest + 1))  # [2, 33, 2]
    for n_segments in (8, 16, 32):
        nodes = path[:, :: finest // n_segments]
        for method, errs in errors.items():
            result = gp.transport_along_path(metric, vec, nodes, method=method)
            errs.append(float((result - expected).norm(dim=-1).max()))
    assert all(0.85 < order < 1.15 for order in _observed_orders(errors["projection"])), errors
    assert all(1.8 < order < 2.2 for order in _observed_orders(errors["ode"])), errors
    assert errors["ode"][-1] < 2e-6


def test_projection_keeps_the_norm_and_flat_paths_keep_the_vector(mlp_space, flat_space):
    metric = mlp_space.metric
    path = torch.cumsum(random_vecs(5, 2, 12, scale=0.3), dim=0)  # a coarse, bent path of codes
    vecs = random_vecs(3, 2, 13)
    result = gp.transport_along_path(metric, vecs, path, method="projection")
    assert result.shape == (3, 2)
    assert torch.allclose(metric.squared_norm(result, path[-1]), metric.squared_norm(vecs, path[0]), atol=1e-10)
    # A linear decoder has a constant Jacobian: both schemes are exact.
    for method in ("projection", "ode"):
        assert torch.allclose(gp.transport_along_path(flat_space.metric, vecs, path, method=method), vecs, atol=1e-10)
    # On the cylinder G = I and the Christoffels vanish: the ODE scheme is exact, the
    # projection scheme (J changes along the path) only first-order accurate.
    cylinder = CASES["cylinder-float64"].space().metric
    assert torch.allclose(gp.transport_along_path(cylinder, vecs, path, method="ode"), vecs, atol=1e-10)
    projected = gp.transport_along_path(cylinder, vecs, path, method="projection")
    assert 1e-4 < float((projected - vecs).abs().max()) < 0.1


def test_path_transport_broadcasting_and_errors(mlp_space):
    metric = mlp_space.metric
    paths = torch.cumsum(random_vecs(12, 2, 14, scale=0.2), dim=0).reshape(3, 4, 2)
    vec = random_vecs(1, 2, 15)[0]
    batched = gp.transport_along_path(metric, vec, paths)
    assert batched.shape == (3, 2)
    single = gp.transport_along_path(metric, vec, paths[1])
    assert torch.allclose(batched[1], single, atol=1e-12)
    with pytest.raises(ValueError, match="n_nodes"):
        gp.transport_along_path(metric, vec, paths[:, :1])
    with pytest.raises(ValueError, match="method"):
        gp.transport_along_path(metric, vec, paths, method="schild")
    with pytest.raises(ValueError, match="broadcast"):
        gp.transport_along_path(metric, random_vecs(2, 2, 16), paths)



# ------------------------------------------------------------------ with the log solver


@pytest.mark.slow
def test_end_point_and_geomstats_ladder(sphere_space, hypersphere):
    """end_point= goes through metric.log; geomstats' own pole ladder runs unchanged and agrees."""
    metric = sphere_space.metric
    z0, z1 = sphere_points(2, seed=17), sphere_points(2, seed=18)
    vec = random_vecs(2, 2, 19)
    by_end_point = metric.parallel_transport(vec, z0, end_point=z1)
    push = hypersphere.tangent_spherical_to_extrinsic
    expected = hypersphere.metric.parallel_transport(
        push(vec, z0), hypersphere.spherical_to_extrinsic(z0), end_point=hypersphere.spherical_to_extrinsic(z1)
    )
    assert torch.allclose(push(by_end_point, z1), expected, atol=ATOL)
    # Pole ladder is exact on a symmetric space: it agrees up to the log solver's precision.
    direction = metric.log_solver.result_.tangent_vec[0]  # log(z1, z0) of the end_point call
    ladder = metric.ladder_parallel_transport(vec[0], z0[0], direction, n_rungs=1)
    assert torch.allclose(ladder["transported_tangent_vec"], by_end_point[0], atol=1e-5)


def test_analogy_on_a_flat_decoder_is_vector_arithmetic():
    metric = CASES["torus-float64"].space().metric
    a, a_prime, b = (random_vecs(3, 2, seed, scale=0.5) for seed in (20, 21, 22))
    # Broadcasting: one change applied to several points.
    assert torch.allclose(gp.analogy(metric, a[0], a_prime[0], b), b + (a_prime[0] - a[0]), atol=ATOL)


@pytest.mark.slow
def test_analogy_on_the_sphere_matches_hypersphere(sphere_space, hypersphere):
    metric = sphere_space.metric
    a, b = sphere_points(2, seed=23), sphere_points(2, seed=24)
    a_prime = a + random_vecs(2, 2, 25, scale=0.2)
    result = gp.analogy(metric, a, a_prime, b)
    to_sphere, sphere = hypersphere.spherical_to_extrinsic, hypersphere.metric
    change = sphere.log(to_sphere(a_prime), to_sphere(a))
    expected = sphere.exp(sphere.parallel_transport(change, to_sphere(a), end_point=to_sphere(b)), to_sphere(b))
    assert torch.allclose(to_sphere(result), expected, atol=ATOL)
    # Along the log solver's discrete geodesic: the ODE scheme is second order in its node spacing.
    path = metric.log_solver.solve(b, a).path
    along_path = gp.analogy(metric, a, a_prime, b, path=path)
    spacing = 1.0 / (path.shape[-2] - 1)
    assert float((to_sphere(along_path) - expected).abs().max()) < 0.1 * spacing
    with pytest.raises(ValueError, match="point_b"):
        gp.analogy(metric, a, a_prime, a_prime, path=path)
