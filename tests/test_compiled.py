"""The compiled geodesic right-hand side (geomstats_pullback.compiled) and ``GeodesicIVPSolver(compile=True)``.

Ground truth: the eager reverse-mode kernels (``kernels.geodesic_rhs``), an
independent implementation of the same equation, and the sphere's closed-form
geodesic acceleration. The compiled path is compared with the eager one on
the same inputs; where compilation cannot be used (a decoder that cannot be
sent to a probe process, a probe that crashes) the fallback must give the
eager results and say so in the log.
"""

import ctypes
import logging
import os

import pytest
import torch

import geomstats_pullback as gp
from geomstats_pullback import analytic, compiled, kernels
from geomstats_pullback.geodesics.exp import GeodesicIVPSolver

from cases import CASES


def _states(dim, n=5, seed=1):
    generator = torch.Generator().manual_seed(seed)
    position = 0.6 + 1.8 * torch.rand((n, dim), generator=generator, dtype=torch.float64)
    velocity = torch.randn((n, dim), generator=generator, dtype=torch.float64)
    return torch.stack([position, velocity], dim=1)  # [n, 2, d]


@pytest.mark.parametrize("case_id", ["sphere-float64", "mlp-float64", "conv8-float64", "conv8-float32"])
def test_functional_rhs_matches_eager_kernels(case_id):
    case = CASES[case_id]
    space = case.space()
    decoder = space.metric.decoder
    state = _states(case.latent_dim)
    expected = kernels.geodesic_rhs(decoder, state)
    function = compiled.geodesic_rhs_function(compiled.flat_map(decoder.decoder))
    got = function(state.to(decoder.dtype)).double()
    tol = 1e-4 if decoder.dtype == torch.float32 else 1e-10
    assert torch.allclose(got, expected, rtol=tol, atol=tol * float(expected.abs().max()))


def test_functional_rhs_is_the_sphere_geodesic_equation():
    state = _states(2)
    theta, phi = state[:, 0, 0], state[:, 0, 1]
    dtheta, dphi = state[:, 1, 0], state[:, 1, 1]
    expected = torch.stack([torch.sin(theta) * torch.cos(theta) * dphi**2, -2 * dtheta * dphi / torch.tan(theta)], -1)
    got = compiled.geodesic_rhs_function(compiled.flat_map(analytic.sphere_chart))(state)
    assert torch.allclose(got[:, 1], expected, rtol=1e-12, atol=1e-12)
    assert torch.equal(got[:, 0], state[:, 1])


def test_functional_rhs_with_eps_matches_eager_kernels():
    space = CASES["mlp-float64"].space()
    decoder = space.metric.decoder
    state = _states(2)
    expected = kernels.geodesic_rhs(decoder, state, eps=1e-3)
    got = compiled.geodesic_rhs_function(compiled.flat_map(decoder.decoder), eps=1e-3)(state)
    assert torch.allclose(got, expected, rtol=1e-10, atol=1e-12)


def test_unpicklable_decoder_falls_back_to_eager_and_logs(caplog):
    space = gp.DecoderManifold(lambda z: analytic.sphere_chart(z), latent_dim=2)
    vectors = torch.tensor([[0.3, 0.7], [-0.2, 0.4]], dtype=torch.float64)
    points = torch.tensor([[1.0, 0.2], [1.4, -0.5]], dtype=torch.float64)
    eager = GeodesicIVPSolver(space).exp(vectors, points)
    with caplog.at_level(logging.WARNING, logger="geomstats_pullback.compiled"):
        fallback = GeodesicIVPSolver(space, compile=True).exp(vectors, points)
    assert "cannot be pickled" in caplog.text
    assert torch.equal(fallback, eager)


class CrashingOutsideItsProcess(torch.nn.Module):
    """The sphere chart, except that it crashes (SIGSEGV) in any process other than the one that made it."""

    def __init__(self):
        super().__init__()
        self.owner = os.getpid()

    def forward(self, z):
        if os.getpid() != self.owner:
            ctypes.string_at(0)  # segmentation fault, as a miscompiled kernel would cause
        return analytic.sphere_chart(z)


@pytest.mark.slow
@pytest.mark.subprocess
def test_crash_in_probe_falls_back_to_eager_and_logs(caplog):
    space = gp.DecoderManifold(CrashingOutsideItsProcess(), latent_dim=2)
    vectors = torch.tensor([[0.3, 0.7]], dtype=torch.float64)
    points = torch.tensor([[1.0, 0.2]], dtype=torch.float64)
    eager = GeodesicIVPSolver(space).exp(vectors, points)
    with caplog.at_level(logging.WARNING, logger="geomstats_pullback.compiled"):
        fallback = GeodesicIVPSolver(space, compile=True).exp(vectors, points)
    assert "crashed the probe process (signal 11)" in caplog.text
    assert torch.equal(fallback, eager)


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.parametrize("case_id", ["sphere-float64", "conv8-float32"])
def test_compiled_exp_matches_eager_exp(case_id, caplog):
    """Compiled (or, where this torch build cannot compile the decoder, the logged fallback) equals eager."""
    case = CASES[case_id]
    space = case.space()
    generator = torch.Generator().manual_seed(3)
    points = (0.8 + 1.2 * torch.rand((6, case.latent_dim), generator=generator, dtype=torch.float64))
    vectors = 0.5 * torch.randn((6, case.latent_dim), generator=generator, dtype=torch.float64)
    eager = GeodesicIVPSolver(space).exp(vectors, points)
    with caplog.at_level(logging.INFO, logger="geomstats_pullback.compiled"):
        solver = GeodesicIVPSolver(space, compile=True)
        got = solver.exp(vectors, points)
    assert "compile=True" in caplog.text  # compiled (INFO) or a fallback (WARNING), never silent
    tol = 1e-4 if space.metric.decoder.dtype == torch.float32 else 1e-10
    assert torch.allclose(got, eager, rtol=tol, atol=tol)
    if case_id == "sphere-float64":  # the sphere chart compiles with this torch build
        assert "compiled with backend" in caplog.text
