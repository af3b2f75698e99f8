"""Decoder derivatives (both torch paths, and autograd.numpy) against torch.func's own transforms."""

import pytest
import torch
from cases import CASES, case_params

import geomstats_pullback as gp
from geomstats_pullback import analytic
from geomstats_pullback.autodiff import TorchDiff


def _case(name, n_batch, seed=0):
    """A float64 registry case's decoder (``linear``: f'' = 0, graphs that do not reach z) and random inputs."""
    gen = torch.Generator().manual_seed(seed)
    case = CASES[f"{name}-float64"]
    decoder = case.space().decoder
    dim = case.latent_dim
    z, u, v, w = (torch.rand(n_batch, dim, generator=gen, dtype=torch.float64) + 0.5 for _ in range(4))
    return decoder, z, u, v, w


def _references(decoder, z):
    """Per-row Jacobians ``[B, D, d]`` and Hessians ``[B, D, d, d]`` from torch.func."""

    def row(x):
        return decoder._flat(x[None])[0]

    jac = torch.stack([torch.func.jacrev(row)(x) for x in z])
    hess = torch.stack([torch.func.hessian(row)(x) for x in z])
    return jac, hess


@pytest.mark.parametrize("case", case_params(dtypes=(torch.float64,)))
@pytest.mark.parametrize("n_batch", [1, 5])
def test_derivatives_match_torch_func(case, n_batch):
    decoder, z, u, v, w = _case(case.name, n_batch)
    jac, hess = _references(decoder, z)
    second = lambda a, b: torch.einsum("bDij,bi,bj->bD", hess, a, b)  # noqa: E731
    value, pushed = decoder.jvp(z, v)
    torch.testing.assert_close(value, decoder(z))
    torch.testing.assert_close(pushed, torch.einsum("bDi,bi->bD", jac, v))
    torch.testing.assert_close(decoder.jacobian(z), jac)
    torch.testing.assert_close(decoder.second_derivative(z, u, v), second(u, v))
    torch.testing.assert_close(decoder.hessian(z), hess)
    both_jac, both_second = decoder.jacobian_and_second(z, u, torch.stack([u, v, w]))
    torch.testing.assert_close(both_jac, jac)
    torch.testing.assert_close(both_second, torch.stack([second(u, u), second(u, v), second(u, w)]))
    weights = torch.rand(n_batch, decoder.output_dim, dtype=torch.float64)
    torch.testing.assert_close(decoder.weighted_hessian(z, weights), torch.einsum("bDij,bD->bij", hess, weights))


def test_reverse_mode_path_equals_forward_mode_path():
    """Outside autograd the fast reverse-mode path runs; under grad mode torch.func's forward mode."""
    decoder, z, u, v, _ = _case("mlp", 4)
    f = decoder._flat
    with torch.no_grad():
        fast = (TorchDiff.jvp(f, z, v)[1], TorchDiff.jacobian(f, z), TorchDiff.second_derivative(f, z, u, v))
        fast_hessian = TorchDiff.hessian(f, z)
    with torch.enable_grad():
        slow = (TorchDiff.jvp(f, z, v)[1], TorchDiff.jacobian(f, z), TorchDiff.second_derivative(f, z, u, v))
        slow_hessian = TorchDiff.hessian(f, z)
    for a, b in zip(fast + (fast_hessian,), slow + (slow_hessian,)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_gradients_flow_through_the_metric_when_inputs_require_them():
    """``d/dz |J(z) v|^2`` by autograd through the decoder's derivatives equals finite differences."""
    space = gp.DecoderManifold(analytic.random_mlp((2, 16, 6), seed=1), latent_dim=2)
    z = torch.tensor([0.3, -0.2], dtype=torch.float64, requires_grad=True)
    v = torch.tensor([0.7, 0.4], dtype=torch.float64)
    (grad,) = torch.autograd.grad(space.metric.squared_norm(v, z), z)
    step = 1e-6
    basis = torch.eye(2, dtype=torch.float64)
    with torch.no_grad():
        finite = torch.stack(
            [(space.metric.squared_norm(v, z + step * e) - space.metric.squared_norm(v, z - step * e)) / (2 * step)
             for e in basis]
        )
    torch.testing.assert_close(grad, finite, rtol=1e-6, atol=1e-8)
