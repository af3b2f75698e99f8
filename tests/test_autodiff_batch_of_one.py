"""Regression: derivatives of a batch of one point (torch.func refused aliased inputs)."""

import torch

import geomstats_pullback as gp
from geomstats_pullback import analytic


def test_jacobian_and_hessian_of_one_point_match_torch_func():
    space = gp.DecoderManifold(analytic.random_mlp((3, 7, 5), seed=4), latent_dim=3)
    z = torch.rand(1, 3, dtype=torch.float64)
    flat = lambda x: space.decoder.decoder(x[None])[0]  # noqa: E731
    torch.testing.assert_close(space.decoder.jacobian(z)[0], torch.func.jacrev(flat)(z[0]))
    torch.testing.assert_close(space.decoder.hessian(z)[0], torch.func.hessian(flat)(z[0]))
