"""Curvature by the Gauss equation, against geomstats' Hypersphere, flat decoders,
finite differences of the Christoffels and geomstats' generic (autograd) curvature."""

import math
import os
import subprocess
import sys
from pathlib import Path

import geomstats.backend as gs
import numpy as np
import pytest
import torch
from cases import case_params, with_reference
from conftest import random_vecs, sphere_points
from geomstats.geometry.riemannian_metric import RiemannianMetric

import geomstats_pullback as gp

ATOL = 1e-6


# ------------------------------------------------------------------ sphere


def test_sphere_sectional_curvature_is_one(sphere_space, hypersphere):
    z = sphere_points(16, seed=1)
    u, v = random_vecs(16, 2, 2), random_vecs(16, 2, 3)
    result = sphere_space.metric.sectional_curvature(u, v, z)
    x = hypersphere.spherical_to_extrinsic(z)
    expected = hypersphere.metric.sectional_curvature(
        hypersphere.tangent_spherical_to_extrinsic(u, z), hypersphere.tangent_spherical_to_extrinsic(v, z), x
    )
    assert result.shape == (16,)
    assert torch.allclose(expected, torch.ones(16, dtype=torch.float64), atol=ATOL)
    assert torch.allclose(result, expected, atol=ATOL)


def test_sphere_curvature_operator_matches_hypersphere(sphere_space, hypersphere):
    """R(u, v) w pushed through the chart equals geomstats' Hypersphere's: same sign convention."""
    z = sphere_points(8, seed=4)
    u, v, w = (random_vecs(8, 2, seed) for seed in (5, 6, 7))
    result = sphere_space.metric.curvature(u, v, w, z)
    push = hypersphere.tangent_spherical_to_extrinsic
    expected = hypersphere.metric.curvature(push(u, z), push(v, z), push(w, z), hypersphere.spherical_to_extrinsic(z))
    assert torch.allclose(push(result, z), expected, atol=ATOL)
    # And it is not trivially zero: on the unit sphere R(u, v) w = <v, w> u - <u, w> v.
    assert float(expected.abs().max()) > 0.1


def test_sphere_riemann_tensor_scalar_and_second_fundamental_form(sphere_space, hypersphere):
    metric = sphere_space.metric
    z = sphere_points(5, seed=8)
    u, v, w = (random_vecs(5, 2, seed) for seed in (9, 10, 11))
    riemann = metric.riemann_tensor(z)
    assert riemann.shape == (5, 2, 2, 2, 2)
    # geomstats' layout: curvature(X, Y, Z)^l = R_{ijk}^l X^j Y^k Z^i.
    from_tensor = gs.einsum("...ijkl,...j,...k,...i->...l", riemann, u, v, w)
    assert torch.allclose(from_tensor, metric.curvature(u, v, w, z), atol=ATOL)
    assert torch.allclose(metric.scalar_curvature(z), 2 * torch.ones(5, dtype=torch.float64), atol=ATOL)
    # geomstats' generic Ricci/scalar derivations from our riemann_tensor agree.
    assert torch.allclose(RiemannianMetric.scalar_curvature(metric, z), metric.scalar_curvature(z), atol=ATOL)
    # Unit sphere: II_ij = -g_ij x (inward normal), trace -2 x.
    x = hypersphere.spherical_to_extrinsic(z)
    expected_ii = -gs.einsum("bij,ba->baij", metric.metric_matrix(z), x)
    assert torch.allclose(metric.second_fundamental_form(z), expected_ii, atol=ATOL)
    assert torch.allclose(metric.mean_curvature_vector(z), -2 * x, atol=ATOL)


# ------------------------------------------------------------------ flat decoders


@pytest.mark.parametrize("case", case_params("torus", "cylinder"))
def test_flat_decoders_have_zero_curvature(case):
    metric = case.space().metric
    ATOL = case.tol(1e-6)  # noqa: N806
    z = random_vecs(6, 2, 12)
    u, v = random_vecs(6, 2, 13), random_vecs(6, 2, 14)
    assert torch.allclose(metric.sectional_curvature(u, v, z), torch.zeros(6, dtype=torch.float64), atol=ATOL)
    assert torch.allclose(metric.riemann_tensor(z), torch.zeros(6, 2, 2, 2, 2, dtype=torch.float64), atol=ATOL)
    assert torch.allclose(metric.scalar_curvature(z), torch.zeros(6, dtype=torch.float64), atol=ATOL)
    # The immersion itself is curved (non-zero II): flatness comes from the Gauss equation's cancellation.
    assert float(metric.second_fundamental_form(z).abs().max()) > 0.5


# ------------------------------------------------------------------ random MLP


def _christoffels_from_metric(metric, z, step=1e-4):
    """Gamma^l_{ij} [B, l, i, j] from central finite differences of the metric matrix (Levi-Civita formula)."""
    batch, dim = z.shape
    eye = torch.eye(dim, dtype=z.dtype)
    shifted = torch.stack([z[:, None] + step * eye, z[:, None] - step * eye], 1)  # [B, 2, k, d]
    gram = metric.metric_matrix(shifted.reshape(-1, dim)).reshape(batch, 2, dim, dim, dim)  # [B, 2, k, i, j]
    dg = ((gram[:, 0] - gram[:, 1]) / (2 * step)).permute(0, 2, 3, 1)  # [B, i, j, k] = d_k g_ij
    first_kind = 0.5 * (dg.permute(0, 1, 3, 2) + dg - dg.permute(0, 3, 1, 2))  # [B, l, i, j] = Gamma_{l,ij}
    return torch.einsum("blk,bkij->blij", torch.linalg.inv(metric.metric_matrix(z)), first_kind)


def _riemann_from_christoffels(christoffels, z, step=1e-4):
    """Textbook R_{ijk}^l from central finite differences of ``christoffels(z)`` (geomstats' layout)."""
    dim = z.shape[-1]
    gamma = christoffels(z)  # [B, l, k, i] = Gamma^l_{ki}
    eye = torch.eye(dim, dtype=z.dtype)
    # d_gamma[b, j, l, k, i] = d_j Gamma^l_{ki}
    shifts = [step * eye[j] for j in range(dim)]
    d_gamma = torch.stack([(christoffels(z + shift) - christoffels(z - shift)) / (2 * step) for shift in shifts], dim=1)
    return (
        gs.einsum("bjlki->bijkl", d_gamma)
        - gs.einsum("bklji->bijkl", d_gamma)
        + gs.einsum("bljm,bmki->bijkl", gamma, gamma)
        - gs.einsum("blkm,bmji->bijkl", gamma, gamma)
    )


def test_mlp_riemann_tensor_matches_finite_differences_of_christoffels(mlp3_space):
    metric = mlp3_space.metric
    z = random_vecs(4, 3, 15) * 0.5
    expected = _riemann_from_christoffels(metric.christoffels, z)
    result = metric.riemann_tensor(z)
    assert float(expected.abs().max()) > 1e-2  # a curved example
    assert torch.allclose(result, expected, atol=ATOL)


@pytest.mark.parametrize("case", case_params("conv8", slow_float32=True))
def test_conv8_riemann_tensor_matches_finite_differences_of_the_metric(case):
    """Gauss equation in the decoder's dtype against second differences of the float64 metric matrix."""
    z = case.points(2, seed=30)
    truth = case.space(dtype=torch.float64).metric
    expected = _riemann_from_christoffels(lambda x: _christoffels_from_metric(truth, x, step=1e-4), z, step=1e-3)
    metric = case.space().metric
    riemann = metric.riemann_tensor(z)
    scale = float(expected.abs().max())
    assert scale > 1e-3  # a curved example
    torch.testing.assert_close(riemann, expected, atol=case.tol(1e-6) * 10 * scale, rtol=0)
    u, v = case.vectors(2, seed=31), case.vectors(2, seed=32)
    sectional = metric.sectional_curvature(u, v, z)
    gram = truth.metric_matrix(z)
    r_uvv = gs.einsum("bijkl,bj,bk,bi->bl", expected, u, v, v)
    area = (
        gs.einsum("bi,bij,bj->b", u, gram, u) * gs.einsum("bi,bij,bj->b", v, gram, v)
        - gs.einsum("bi,bij,bj->b", u, gram, v) ** 2
    )
    expected_sectional = gs.einsum("bl,blm,bm->b", r_uvv, gram, u) / area
    scale = float(expected_sectional.abs().max())
    torch.testing.assert_close(sectional, expected_sectional, atol=case.tol(1e-6) * 10 * scale, rtol=0)
    torch.testing.assert_close(metric.sectional_curvature(v, u, z), sectional, atol=case.tol(1e-9) * scale, rtol=0)


@pytest.mark.parametrize("case", case_params(*with_reference(curvature=True)))
def test_constant_curvature_cases(case):
    metric = case.space().metric
    z = case.points(6, seed=33)
    u, v = case.vectors(6, seed=34), case.vectors(6, seed=35)
    expected = torch.full((6,), case.sectional_curvature, dtype=torch.float64)
    torch.testing.assert_close(metric.sectional_curvature(u, v, z), expected, atol=case.tol(1e-6), rtol=0)


@pytest.mark.slow
@pytest.mark.subprocess
def test_mlp_curvature_matches_geomstats_generic_on_autograd(mlp3_net, mlp3_space, tmp_path):
    """geomstats' own Christoffel-autodiff curvature, computed in a process on the autograd backend."""
    layers = [layer for layer in mlp3_net if isinstance(layer, torch.nn.Linear)]
    arrays = {}
    for i, layer in enumerate(layers):
        arrays[f"weight_{i}"] = layer.weight.detach().numpy()
        arrays[f"bias_{i}"] = layer.bias.detach().numpy()
    points = random_vecs(2, 3, 16) * 0.5
    np.savez(tmp_path / "in.npz", points=points.numpy(), **arrays)
    script = Path(__file__).with_name("_geomstats_autograd_curvature.py")
    env = dict(os.environ, GEOMSTATS_BACKEND="autograd")
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "in.npz"), str(tmp_path / "out.npz")],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    reference = {key: torch.as_tensor(value) for key, value in np.load(tmp_path / "out.npz").items()}

    metric = mlp3_space.metric
    riemann = metric.riemann_tensor(points)
    assert float(reference["riemann"].abs().max()) > 1e-2
    assert torch.allclose(riemann, reference["riemann"], atol=ATOL)
    assert torch.allclose(metric.second_fundamental_form(points), reference["second_fundamental_form"], atol=ATOL)
    assert torch.allclose(metric.mean_curvature_vector(points), reference["mean_curvature"], atol=ATOL)

    # Sectional and scalar curvature: geomstats' formulas applied to the reference tensor.
    u, v = random_vecs(2, 3, 17), random_vecs(2, 3, 18)
    gram = metric.metric_matrix(points)
    r_uvv = gs.einsum("bijkl,bj,bk,bi->bl", reference["riemann"], u, v, v)
    area = (
        gs.einsum("bi,bij,bj->b", u, gram, u) * gs.einsum("bi,bij,bj->b", v, gram, v)
        - gs.einsum("bi,bij,bj->b", u, gram, v) ** 2
    )
    expected_sectional = gs.einsum("bl,blm,bm->b", r_uvv, gram, u) / area
    assert torch.allclose(metric.sectional_curvature(u, v, points), expected_sectional, atol=ATOL)
    ricci = gs.einsum("bijkj->bik", reference["riemann"])
    expected_scalar = gs.einsum("bij,bij->b", metric.cometric_matrix(points), ricci)
    assert torch.allclose(metric.scalar_curvature(points), expected_scalar, atol=ATOL)


def test_tikhonov_term_is_the_augmented_immersion(mlp3_net):
    """G + eps I is the pullback through z -> (f(z), sqrt(eps) z): same curvature."""
    eps = 0.3

    def augmented(z):
        return torch.cat([mlp3_net(z), math.sqrt(eps) * z], dim=-1)

    with_eps = gp.DecoderManifold(mlp3_net, latent_dim=3, metric_kwargs={"eps": eps}).metric
    stacked = gp.DecoderManifold(augmented, latent_dim=3).metric
    z = random_vecs(3, 3, 19) * 0.5
    u, v, w = (random_vecs(3, 3, seed) for seed in (20, 21, 22))
    assert torch.allclose(with_eps.riemann_tensor(z), stacked.riemann_tensor(z), atol=ATOL)
    assert torch.allclose(with_eps.curvature(u, v, w, z), stacked.curvature(u, v, w, z), atol=ATOL)
    assert torch.allclose(with_eps.sectional_curvature(u, v, z), stacked.sectional_curvature(u, v, z), atol=ATOL)
    assert torch.allclose(with_eps.scalar_curvature(z), stacked.scalar_curvature(z), atol=ATOL)
    # The data-space block of the augmented second fundamental form.
    assert torch.allclose(with_eps.second_fundamental_form(z), stacked.second_fundamental_form(z)[:, :10], atol=ATOL)


# ------------------------------------------------------------------ shapes, errors, sampling


def test_broadcasting(mlp3_space):
    metric = mlp3_space.metric
    z = random_vecs(1, 3, 23)[0]
    u, v = random_vecs(5, 3, 24), random_vecs(5, 3, 25)
    one_point = metric.sectional_curvature(u, v, z)
    assert one_point.shape == (5,)
    assert torch.allclose(one_point, metric.sectional_curvature(u, v, z.expand(5, 3)), atol=1e-12)
    assert metric.sectional_curvature(u[0], v[0], z).shape == ()
    assert metric.curvature(u, v, u[0], z).shape == (5, 3)
    assert metric.riemann_tensor(z).shape == (3, 3, 3, 3)
    assert metric.ricci_tensor(z).shape == (3, 3)  # geomstats' derivation from riemann_tensor
    batch = random_vecs(6, 3, 26).reshape(2, 3, 3)
    assert metric.scalar_curvature(batch).shape == (2, 3)
    assert metric.second_fundamental_form(batch).shape == (2, 3, 10, 3, 3)
    assert metric.mean_curvature_vector(batch).shape == (2, 3, 10)


def test_bad_input_raises(mlp_space):
    metric = mlp_space.metric
    z = torch.zeros(2, dtype=torch.float64)
    u = torch.tensor([1.0, 2.0], dtype=torch.float64)
    with pytest.raises(ValueError, match="span a plane"):
        metric.sectional_curvature(u, 3 * u, z)
    with pytest.raises(ValueError, match="shape"):
        metric.sectional_curvature(u, torch.ones(3, dtype=torch.float64), z)
    with pytest.raises(ValueError, match="NaN"):
        metric.riemann_tensor(torch.tensor([float("nan"), 0.0], dtype=torch.float64))


def test_sample_sectional_curvatures(sphere_space, mlp3_space):
    sample = gp.sample_sectional_curvatures(sphere_space.metric, sphere_points(4, seed=27), n_planes=3)
    assert sample.curvatures.shape == (4, 3)
    assert torch.allclose(sample.curvatures, torch.ones(4, 3, dtype=torch.float64), atol=ATOL)

    metric = mlp3_space.metric
    points = random_vecs(5, 3, 28) * 0.5
    sample = gp.sample_sectional_curvatures(metric, points, n_planes=7)
    assert sample.tangent_vec_a.shape == (5, 7, 3)
    direct = metric.sectional_curvature(sample.tangent_vec_a, sample.tangent_vec_b, points[:, None])
    assert torch.allclose(sample.curvatures, direct, atol=1e-12)
    # Planes drawn uniformly for G: vectors are standard Gaussian in a G-orthonormal frame, E[u u^T] = G^{-1}.
    many = gp.sample_sectional_curvatures(metric, points[:1], n_planes=4000)
    vecs = torch.cat([many.tangent_vec_a[0], many.tangent_vec_b[0]])
    second_moment = vecs.T @ vecs / vecs.shape[0]
    assert torch.allclose(second_moment @ metric.metric_matrix(points[0]), torch.eye(3, dtype=torch.float64), atol=0.1)
    with pytest.raises(ValueError, match="n_planes"):
        gp.sample_sectional_curvatures(metric, points, n_planes=0)
