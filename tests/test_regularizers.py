"""Geometric regularisers: zero on flat charts, gradients against finite differences, training moves the geometry."""

import copy

import numpy as np
import pytest
import torch

import geomstats_pullback as gp
from geomstats_pullback import analytic, regularizers
from geomstats_pullback.demo.context import load_data
from geomstats_pullback.demo.vae import VAE

from cases import CASES

REGULARIZERS = {
    "distortion": lambda f, z, seed: regularizers.isometry_distortion(f, z, generator=seed),
    "log_magnification": lambda f, z, seed: regularizers.log_magnification_variance(
        f, z, mixup_eta=0.2, generator=seed
    ),
    "curvature": lambda f, z, seed: regularizers.curvature_penalty(f, z, generator=seed),
    "geodesic_ratio": lambda f, z, seed: regularizers.geodesic_ratio_penalty(
        f, z, n_pairs=6, n_nodes=6, max_iter=20, generator=seed
    ),
}
# Zero to rounding on a flat chart: spherical probes make the distortion estimate exact where H = c I, the
# log-determinant is constant, K = 0 identically, and the discrete geodesic is the straight line it starts from.
ZERO_TOL = {torch.float64: 1e-10, torch.float32: 1e-5}


def _flat_decoder(name, dtype):
    if name == "linear":
        return analytic.linear_isometry(2, 5, seed=2, dtype=dtype)
    return analytic.flat_torus


def _codes(n, dim, dtype, seed=0, scale=0.8):
    gen = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(n, dim, generator=gen, dtype=torch.float64)).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("chart", ["linear", "torus"])
@pytest.mark.parametrize("name", list(REGULARIZERS))
def test_zero_on_flat_charts(name, chart, dtype):
    z = _codes(16, 2, dtype).requires_grad_(True)
    value = REGULARIZERS[name](_flat_decoder(chart, dtype), z, 3)
    assert value.dtype == dtype and value.ndim == 0
    assert abs(value.item()) <= ZERO_TOL[dtype]


def test_zero_for_every_seed_on_scaled_isometry():
    """Spherical probes: the distortion estimate has zero variance where H = c I (not only mean zero)."""
    lin = analytic.linear_isometry(3, 7, seed=1)
    z = _codes(5, 3, torch.float64)
    values = [regularizers.isometry_distortion(lambda x: 3.0 * lin(x), z, generator=s).item() for s in range(20)]
    assert max(abs(v) for v in values) < 1e-12
    gaussian = [regularizers.isometry_distortion(lin, z, probes="gaussian", generator=s).item() for s in range(20)]
    assert np.std(gaussian) > 1e-3  # IRVAE's Gaussian probes do fluctuate: the test can tell them apart


def _exact_distortion(decoder, z):
    jac = torch.func.vmap(torch.func.jacrev(lambda x: decoder(x[None])[0]))(z)  # [B, D, d]
    h = jac.mT @ jac
    trace = torch.diagonal(h, dim1=-2, dim2=-1).sum(-1)
    trace_sq = (h * h).sum((-2, -1))
    return z.shape[-1] * trace_sq.mean() / trace.mean() ** 2 - 1


def test_distortion_estimator_is_unbiased_to_its_ratio_bias():
    """The mean over seeds approaches IRVAE's exact measure d E[Tr H^2]/E[Tr H]^2 - 1 (computed with jacrev)."""
    net = analytic.random_mlp((2, 16, 16, 10), seed=1)
    z = _codes(64, 2, torch.float64)
    exact = float(_exact_distortion(net, z))
    estimates = np.array(
        [regularizers.isometry_distortion(net, z, mixup_eta=None, n_probes=4, generator=s).item() for s in range(100)]
    )
    standard_error = estimates.std() / np.sqrt(len(estimates))
    # Ratio-estimator bias is O(1 / (B n_probes)) relative; allow it plus three standard errors.
    assert abs(estimates.mean() - exact) < 3 * standard_error + exact / (64 * 4)
    assert estimates.std() > 0


def _mlp(seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(2, 12), torch.nn.Tanh(), torch.nn.Linear(12, 12), torch.nn.Tanh(), torch.nn.Linear(12, 6)
    ).to(dtype)


@pytest.mark.parametrize("name", list(REGULARIZERS))
def test_parameter_gradients_match_finite_differences(name):
    net = _mlp()
    z = _codes(8, 2, torch.float64)
    params = list(net.parameters())
    loss = REGULARIZERS[name](net, z, 5)
    grads = torch.autograd.grad(loss, params, allow_unused=True, materialize_grads=True)  # J ignores output biases
    gen = torch.Generator().manual_seed(9)
    direction = [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in params]
    analytic_slope = sum(float((g * d).sum()) for g, d in zip(grads, direction))
    step = 1e-5

    def value_at(t):
        moved = copy.deepcopy(net)
        with torch.no_grad():
            for p, d in zip(moved.parameters(), direction):
                p.add_(t * d)
        return REGULARIZERS[name](moved, z, 5).item()

    fd_slope = (value_at(step) - value_at(-step)) / (2 * step)
    # The geodesic ratio holds its nodes fixed: exact by the envelope theorem once the solver has converged.
    assert analytic_slope == pytest.approx(fd_slope, rel=1e-5, abs=1e-9)


def test_geodesic_ratio_is_positive_on_a_curved_decoder():
    """Straight lines are not geodesics of a random MLP: the penalty is positive, and never negative."""
    net = _mlp(seed=3)
    z = _codes(8, 2, torch.float64)
    values = [regularizers.geodesic_ratio_penalty(net, z, generator=s).item() for s in range(3)]
    assert min(values) > 1e-6


def test_gradients_reach_the_encoder_through_the_codes():
    net = _mlp()
    encoder = torch.nn.Linear(3, 2).double()
    z = encoder(torch.randn(10, 3, dtype=torch.float64))
    regularizers.isometry_distortion(net, z, generator=0).backward()
    assert encoder.weight.grad is not None and float(encoder.weight.grad.abs().sum()) > 0


@pytest.mark.parametrize("name", list(REGULARIZERS))
def test_conv8_float32(name):
    """Latent dimension 8, conv layers, float32: finite values, float32 results and parameter gradients."""
    net = CASES["conv8-float32"].decoder().requires_grad_(True)
    z = _codes(6, 8, torch.float32, scale=0.5)
    value = REGULARIZERS[name](net, z, 1)
    assert value.dtype == torch.float32 and torch.isfinite(value)
    value.backward()
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert len(grads) >= len(list(net.parameters())) - 1  # the last bias moves no derivative of f
    assert all(bool(torch.isfinite(g).all()) for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


def test_curvature_penalty_is_one_on_the_sphere():
    """Gauss-equation curvature of the sphere chart is 1 everywhere: E[K^2] = 1."""
    z = torch.stack([torch.linspace(0.7, 2.4, 9), torch.linspace(-2, 2, 9)], dim=-1).double()
    assert regularizers.curvature_penalty(analytic.sphere_chart, z, generator=0).item() == pytest.approx(1.0, abs=1e-9)


def test_log_magnification_on_the_sphere():
    """log det G = 2 log sin(theta) on the sphere chart."""
    z = torch.stack([torch.linspace(0.7, 2.4, 9), torch.linspace(-2, 2, 9)], dim=-1).double()
    expected = 2 * torch.log(torch.sin(z[:, 0]))
    torch.testing.assert_close(regularizers.log_magnification(analytic.sphere_chart, z), expected)


def test_bad_input():
    net = _mlp()
    with pytest.raises(ValueError, match="shape"):
        regularizers.isometry_distortion(net, torch.zeros(2))
    with pytest.raises(ValueError, match="probes"):
        regularizers.isometry_distortion(net, torch.zeros(3, 2, dtype=torch.float64), probes="rademacher")
    with pytest.raises(ValueError, match="at least 2"):
        regularizers.log_magnification_variance(net, torch.zeros(1, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="n_nodes"):
        regularizers.geodesic_ratio_penalty(net, torch.zeros(3, 2, dtype=torch.float64), n_nodes=2)


def test_training_with_the_penalty_reduces_distortion():
    """Seeded fine-tuning on digits: with the isometry penalty the measured (exact) distortion ends lower."""
    images = load_data()[0][:600]
    vae = VAE(hidden=(32, 32), n_epochs=8, std_epochs=0, n_centres=8, progress=False, seed=0).fit(images)

    def measured(model):
        codes = model.encode(images)
        space = gp.DecoderManifold(model.decoder_mean, 2, region=codes)
        return gp.diagnose(space, codes[::3]).global_distortion

    control, regularised = copy.deepcopy(vae), copy.deepcopy(vae)
    control.fine_tune(images, n_epochs=4)
    gen = torch.Generator().manual_seed(0)
    penalty = lambda f, z: 5.0 * regularizers.isometry_distortion(f, z, generator=gen)  # noqa: E731
    regularised.fine_tune(images, n_epochs=4, penalty=penalty)
    before, after = measured(control), measured(regularised)
    assert after < 0.7 * before, (before, after)


@pytest.fixture
def float32_default():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    yield
    torch.set_default_dtype(previous)


@pytest.mark.parametrize("name", list(REGULARIZERS))
def test_independent_of_the_default_dtype(name, float32_default):
    """A float32 training script may set torch's default dtype back to float32 after importing geomstats."""
    net = _mlp(dtype=torch.float32)
    z = _codes(8, 2, torch.float32)
    value = REGULARIZERS[name](net, z, 2)
    value.backward()
    torch.set_default_dtype(torch.float64)
    reference = REGULARIZERS[name](net, z, 2)
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(reference.item(), rel=1e-4, abs=1e-6)
