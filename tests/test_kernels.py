"""The pure kernels of geomstats_pullback.kernels, tested without a metric object."""

import geomstats.backend as gs
import pytest
import torch

import geomstats_pullback as gp
from geomstats_pullback import analytic, kernels

from cases import case_params


def full_jacobian(fn, z):
    """``[B, D, d]`` by torch.func, an implementation independent of the package's."""
    return torch.vmap(torch.func.jacrev(lambda x: fn(x[None]).reshape(-1)))(z)


@pytest.fixture(scope="module", params=case_params("mlp", "conv8"))
def decoder(request):
    case = request.param
    return gp.as_decoder(case.decoder(), case.latent_dim)


def tolerance(decoder):
    return 1e-4 if "float32" in str(decoder.dtype) else 1e-9


def points(decoder, n=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return 0.5 * torch.randn(n, decoder.latent_dim, generator=gen, dtype=torch.float64)


def test_gram_is_jtj_plus_eps(decoder):
    z = points(decoder)
    jac = decoder.jacobian(z)
    reference = full_jacobian(decoder.decoder, z.to(next(decoder.decoder.parameters()).dtype)).to(z.dtype)
    torch.testing.assert_close(jac, reference, rtol=tolerance(decoder), atol=tolerance(decoder))
    gram = kernels.gram(jac, eps=0.5)
    eye = torch.eye(decoder.latent_dim, dtype=gram.dtype)
    torch.testing.assert_close(gram, jac.transpose(-1, -2) @ jac + 0.5 * eye)
    assert bool((torch.linalg.eigvalsh(gram)[:, 0] > 0).all())


def test_solve_gram_checked_and_unchecked():
    gram = torch.tensor([[[2.0, 1.0], [1.0, 2.0]], [[1.0, 1.0], [1.0, 1.0]], [[1.0, 0.0], [0.0, 1e-14]]], dtype=torch.float64)
    rhs = torch.ones(3, 2, 1, dtype=torch.float64)
    solution, singular = kernels.solve_gram(gram, rhs, rank_rtol=1e-12)
    assert singular.tolist() == [False, True, True]
    torch.testing.assert_close(solution[0], torch.linalg.solve(gram[0], rhs[0]))
    assert bool(torch.isnan(solution[1:]).all())
    solution, singular = kernels.solve_gram(gram[:1], rhs[:1])
    assert singular.tolist() == [False]
    torch.testing.assert_close(solution[0], torch.linalg.solve(gram[0], rhs[0]))
    with pytest.raises(gp.RankDeficientJacobianError, match="1 of 3"):
        kernels.require_full_rank(torch.tensor([False, True, False]), rank_rtol=1e-12)
    kernels.require_full_rank(torch.tensor([False, False]), rank_rtol=1e-12)


def test_geodesic_acceleration_on_the_sphere_chart():
    """Spherical angles: theta'' = sin cos phi'^2, phi'' = -2 cot(theta) theta' phi'."""
    decoder = gp.as_decoder(analytic.sphere_chart, 2)
    z = torch.tensor([[0.7, 0.3], [1.9, -1.0]], dtype=torch.float64)
    v = torch.tensor([[0.4, -1.1], [-0.2, 0.5]], dtype=torch.float64)
    theta = z[:, 0]
    expected = torch.stack(
        [torch.sin(theta) * torch.cos(theta) * v[:, 1] ** 2, -2 * v[:, 0] * v[:, 1] / torch.tan(theta)], -1
    )
    acceleration = kernels.geodesic_acceleration(decoder, z, v, rank_rtol=1e-12)
    torch.testing.assert_close(acceleration, expected, rtol=1e-12, atol=1e-12)
    rhs = kernels.geodesic_rhs(decoder, torch.stack([z, v], 1))
    torch.testing.assert_close(rhs, torch.stack([v, expected], 1), rtol=1e-12, atol=1e-12)


def test_acceleration_equals_christoffel_contraction(decoder):
    """One linearisation (jacobian_and_second) against the full-Hessian Christoffel symbols."""
    z, v = points(decoder, seed=1), points(decoder, seed=2)
    jac, hess = decoder.jacobian(z), decoder.hessian(z)  # [B, D, d], [B, D, d, d]
    gamma = torch.linalg.solve(kernels.gram(jac), torch.einsum("bak,baij->bkij", jac, hess).flatten(2))
    expected = -torch.einsum("bkij,bi,bj->bk", gamma.unflatten(-1, hess.shape[-2:]), v, v)
    acceleration = kernels.geodesic_acceleration(decoder, z, v)
    scale = expected.abs().max()
    torch.testing.assert_close(acceleration, expected, rtol=0, atol=float(scale) * 10 * tolerance(decoder))


@pytest.mark.parametrize("eps", [0.0, 0.3])
def test_gauss_split_recomposes_and_is_normal(decoder, eps):
    z = points(decoder)
    a, b = points(decoder, 8, seed=3).reshape(4, 2, -1), points(decoder, 8, seed=4).reshape(4, 2, -1)
    jac = decoder.jacobian(z)
    second = kernels.second_derivatives(decoder, z, a, b)  # [B, 2, D]
    tangential, normal = kernels.gauss_split(jac, second, eps=eps, rank_rtol=1e-12)
    data_normal = normal[..., : jac.shape[1]]
    torch.testing.assert_close(second, data_normal + torch.einsum("bai,bki->bka", jac, tangential))
    # The normal part (augmented by -sqrt(eps) Gamma) is orthogonal to the augmented tangent space.
    pairing = torch.einsum("bka,bai->bki", data_normal, jac)
    if eps:
        pairing = pairing - eps * tangential
    scale = float(second.abs().max() * jac.abs().max())
    assert float(pairing.abs().max()) <= 100 * tolerance(decoder) * scale


def test_transport_rhs_extends_the_geodesic_rhs(decoder):
    z, v, w = points(decoder, seed=5), points(decoder, seed=6), points(decoder, seed=7)
    state = torch.stack([z, v, w, 2 * w], 1)  # [B, 4, d]
    rhs = kernels.transport_rhs(decoder, state)
    torch.testing.assert_close(rhs[:, :2], kernels.geodesic_rhs(decoder, state[:, :2]))
    # -Gamma(v, w) is linear in w.
    torch.testing.assert_close(rhs[:, 3], 2 * rhs[:, 2])


def test_require_full_rank_at_a_collapsing_decoder():
    collapse = gp.as_decoder(lambda z: torch.stack([z[..., 0], 2 * z[..., 0]], -1), 2)
    z = gs.array([[0.3, 0.2]])
    with pytest.raises(gp.RankDeficientJacobianError, match="eps"):
        kernels.require_full_rank_at(collapse, z, rank_rtol=1e-12)
    kernels.require_full_rank_at(collapse, z, eps=1e-3, rank_rtol=1e-12)
    torch.testing.assert_close(kernels.cometric(collapse.jacobian(z), eps=1.0, rank_rtol=1e-12)[0, 1, 1], torch.tensor(1.0, dtype=torch.float64))
