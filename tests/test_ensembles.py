"""Ensemble and MC-dropout decoders: the expected metric (1/M) sum_m J_m^T J_m, against per-member Jacobians."""

import pytest
import torch

import geomstats_pullback as gp
from geomstats_pullback import analytic
from cases import CASES, LAW_TOL, case_params

DTYPES = (torch.float32, torch.float64)


def _expected_metric(members, z, dtype):
    """``(1/M) sum_m J_m^T J_m`` from ``torch.func.jacrev`` per member, ``[B, d, d]`` in float64."""
    total = 0.0
    for member in members:
        jac = torch.vmap(torch.func.jacrev(lambda x, f=member: f(x[None])[0].reshape(-1)))(z.to(dtype))
        jac = jac.to(torch.float64)  # [B, D, d]
        total = total + jac.transpose(-1, -2) @ jac
    return total / len(members)


def _dropout_mlp(dtype=torch.float64, seed=0, layer=torch.nn.Dropout):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Linear(2, 16), torch.nn.Tanh(), layer(0.3), torch.nn.Linear(16, 16), torch.nn.Tanh(),
        layer(0.5), torch.nn.Linear(16, 10),
    )
    return net.to(dtype).eval().requires_grad_(False)


def test_identical_members_give_the_single_decoder_metric():
    net = analytic.random_mlp((2, 16, 16, 10), seed=1)
    single = gp.DecoderManifold(net, latent_dim=2)
    ensemble = gp.DecoderManifold(gp.EnsembleDecoder([net] * 4), latent_dim=2)
    z = CASES["mlp-float64"].points(6, seed=1)
    v = CASES["mlp-float64"].vectors(6, seed=2, scale=0.5)
    torch.testing.assert_close(ensemble.metric.metric_matrix(z), single.metric.metric_matrix(z), atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(ensemble.metric.dist(z[:3], z[3:]), single.metric.dist(z[:3], z[3:]), atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(ensemble.metric.exp(v, z), single.metric.exp(v, z), atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).removeprefix("torch."))
def test_ensemble_metric_equals_mean_of_member_metrics_on_mlps(dtype):
    members = [analytic.random_mlp((2, 16, 16, 10), seed=seed, dtype=dtype) for seed in (0, 1, 2)]
    space = gp.DecoderManifold(gp.EnsembleDecoder(members), latent_dim=2)
    z = CASES["mlp-float64"].points(5, seed=3)
    expected = _expected_metric(members, z, dtype)
    tol = LAW_TOL[dtype]
    torch.testing.assert_close(space.metric.metric_matrix(z), expected, atol=tol, rtol=tol)
    # Not the metric of one member: the members differ.
    single = _expected_metric(members[:1], z, dtype)
    assert (single - expected).abs().max() > 100 * tol


@pytest.mark.parametrize("case", case_params("conv8"))
def test_ensemble_metric_equals_mean_of_member_metrics_on_conv_decoders(case):
    members = [
        analytic.conv_decoder(8, channels=(4, 2), image_size=16, seed=seed, dtype=case.dtype, activation=torch.nn.Softplus)
        for seed in (0, 1)
    ]
    ensemble = gp.EnsembleDecoder(members)
    assert ensemble.latent_dim == 8 and ensemble.data_shape == (1, 16, 16)
    space = gp.DecoderManifold(ensemble, latent_dim=8)
    z = case.points(3, seed=4)
    expected = _expected_metric(members, z, case.dtype)
    torch.testing.assert_close(space.metric.metric_matrix(z), expected, atol=case.law_tol, rtol=case.law_tol)


def test_mc_dropout_is_deterministic_and_its_metric_is_the_mean_over_its_masks():
    net = _dropout_mlp()
    decoder = gp.MCDropoutDecoder(net, 3, seed=7)
    space = gp.DecoderManifold(decoder, latent_dim=2)
    z = CASES["mlp-float64"].points(4, seed=5)
    first, second = space.metric.metric_matrix(z), space.metric.metric_matrix(z)
    assert torch.equal(first, second)
    assert torch.equal(decoder(z), decoder(z))
    # Same seed, same masks; another seed, other masks.
    assert torch.equal(gp.MCDropoutDecoder(net, 3, seed=7)(z), decoder(z))
    assert not torch.equal(gp.MCDropoutDecoder(net, 3, seed=8)(z), decoder(z))
    # A point's mask does not depend on its batch.
    torch.testing.assert_close(decoder(z[1:2]), decoder(z)[1:2], atol=1e-14, rtol=0)

    for sample in decoder.masks:
        assert [mask.shape for mask in sample] == [(16,), (16,)]
        assert {float(v) for v in sample[0]} == {0.0, 1 / 0.7} and {float(v) for v in sample[1]} == {0.0, 2.0}
    members = [lambda x, m=masks: _run_with(list(net), m, x) for masks in decoder.masks]
    expected = _expected_metric(members, z, torch.float64)
    torch.testing.assert_close(first, expected, atol=1e-12, rtol=1e-12)
    plain = _expected_metric([net], z, torch.float64)
    assert (plain - expected).abs().max() > 1e-3


def _run_with(layers, masks, x):
    """``layers`` in order, each dropout layer replaced by a multiplication by the next mask."""
    masks = iter(masks)
    for layer in layers:
        x = x * next(masks) if isinstance(layer, torch.nn.Dropout) else layer(x)
    return x


def test_mc_dropout_ignores_the_module_mode_and_drops_whole_channels_in_dropout2d():
    net = _dropout_mlp().train()
    decoder = gp.MCDropoutDecoder(net, 2, seed=0)
    z = CASES["mlp-float64"].points(3, seed=6)
    assert torch.equal(decoder(z), decoder(z))
    conv = torch.nn.Sequential(
        torch.nn.Linear(2, 4 * 4 * 4), torch.nn.Unflatten(-1, (4, 4, 4)), torch.nn.Dropout2d(0.5), torch.nn.Tanh(),
    ).double().eval()
    masks = gp.MCDropoutDecoder(conv, 3, seed=1).masks
    assert all(sample[0].shape == (4, 1, 1) for sample in masks)
    assert {float(v) for sample in masks for v in sample[0].flatten()} <= {0.0, 2.0}


def test_variance_along_a_geodesic_and_the_straight_line_from_members_output():
    members = [analytic.random_mlp((2, 16, 16, 10), seed=seed) for seed in range(5)]
    ensemble = gp.EnsembleDecoder(members)
    space = gp.DecoderManifold(ensemble, latent_dim=2)
    a, b = torch.tensor([[-0.5, 0.3]], dtype=torch.float64), torch.tensor([[0.6, -0.2]], dtype=torch.float64)
    t = torch.linspace(0, 1, 7, dtype=torch.float64)
    geodesic = space.metric.geodesic(initial_point=a, end_point=b)(t)[0]  # [T, d]
    line = a + t[:, None] * (b - a)  # [T, d]
    for path in (geodesic, line):
        outputs = ensemble.members_output(path)  # [M, T, D]
        assert outputs.shape == (5, 7, 10)
        expected = torch.stack([member(path) for member in members])
        torch.testing.assert_close(outputs, expected, atol=0, rtol=0)
        torch.testing.assert_close(ensemble.mean(path), expected.mean(0), atol=1e-15, rtol=0)
        variance = outputs.var(0, unbiased=False).sum(-1)  # [T]
        assert variance.shape == (7,) and bool((variance >= 0).all())
    torch.testing.assert_close(geodesic[[0, -1]], torch.cat([a, b]), atol=1e-6, rtol=0)
    # The stacked output is the members' outputs over sqrt(M).
    torch.testing.assert_close(ensemble(line), ensemble.members_output(line).permute(1, 0, 2).reshape(7, -1) / 5**0.5)


def test_bad_ensembles_raise_clear_errors():
    with pytest.raises(ValueError, match="non-empty"):
        gp.EnsembleDecoder([])
    with pytest.raises(ValueError, match="sequence"):
        gp.EnsembleDecoder(analytic.random_mlp((2, 4, 3)))
    with pytest.raises(ValueError, match="latent dimension"):
        gp.EnsembleDecoder([analytic.random_mlp((2, 4, 3)), analytic.random_mlp((3, 4, 3))])
    weights = {n: torch.ones(n, 4, dtype=torch.float64) for n in (2, 3)}
    with pytest.raises(ValueError, match=r"members\[1\] cannot decode a latent point of dimension 2"):
        gp.EnsembleDecoder([lambda z: z @ weights[2], lambda z: z @ weights[3]], latent_dim=2)
    with pytest.raises(ValueError, match="output shape"):
        gp.EnsembleDecoder([analytic.random_mlp((2, 4, 3)), analytic.random_mlp((2, 4, 5))])
    with pytest.raises(ValueError, match="one dtype and device"):
        gp.EnsembleDecoder([analytic.random_mlp((2, 4, 3)), analytic.random_mlp((2, 4, 3), dtype=torch.float32)])
    with pytest.raises(ValueError, match="latent_dim cannot be inferred"):
        gp.EnsembleDecoder([lambda z: z])
    with pytest.raises(ValueError, match=r"members\[1\] must be callable"):
        gp.EnsembleDecoder([analytic.random_mlp((2, 4, 3)), 3])
    with pytest.raises(ValueError, match="no torch.nn.Dropout"):
        gp.MCDropoutDecoder(analytic.random_mlp((2, 4, 3)), 2, seed=0)
    with pytest.raises(ValueError, match="n_samples"):
        gp.MCDropoutDecoder(_dropout_mlp(), 0, seed=0)
    with pytest.raises(ValueError, match="seed"):
        gp.MCDropoutDecoder(_dropout_mlp(), 2, seed=-1)
    with pytest.raises(ValueError, match="alpha-dropout"):
        gp.MCDropoutDecoder(torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.AlphaDropout(0.2)).double(), 2, seed=0)


def test_ensemble_follows_its_members_mode():
    net = _dropout_mlp()
    assert not gp.EnsembleDecoder([net, net]).training
    assert gp.EnsembleDecoder([net, _dropout_mlp().train()]).training


def test_metric_gradient_through_the_ensemble_matches_per_member_autodiff():
    """Under grad mode the derivatives run through torch.func's forward mode (the stacking's jvp rule)."""
    members = [analytic.random_mlp((2, 16, 16, 10), seed=seed) for seed in range(3)]
    space = gp.DecoderManifold(gp.EnsembleDecoder(members), latent_dim=2)
    z = CASES["mlp-float64"].points(4, seed=7).requires_grad_(True)
    metric = space.metric.metric_matrix(z)
    torch.testing.assert_close(metric.detach(), space.metric.metric_matrix(z.detach()), atol=1e-14, rtol=0)
    metric.sum().backward()

    def total(point):
        return _expected_metric(members, point[None], torch.float64).sum()

    expected = torch.stack([torch.func.grad(total)(point) for point in z.detach()])
    torch.testing.assert_close(z.grad, expected, atol=1e-12, rtol=1e-12)


def test_output_geometry_of_an_ensemble_is_per_member():
    """output= on an ensemble is refused; OutputDecoder per member gives the mean of the members' Fisher metrics."""
    members = [analytic.random_mlp((2, 8, 5), seed=seed) for seed in (0, 1)]
    with pytest.raises(TypeError, match="per member"):
        gp.DecoderManifold(gp.EnsembleDecoder(members), 2, output="bernoulli")
    ensemble = gp.DecoderManifold(gp.EnsembleDecoder([gp.OutputDecoder(m, "bernoulli") for m in members]), 2)
    singles = [gp.DecoderManifold(m, 2, output="bernoulli") for m in members]
    z = torch.tensor([[0.1, -0.3], [0.5, 0.2]], dtype=torch.float64)
    expected = sum(space.metric.metric_matrix(z) for space in singles) / 2
    torch.testing.assert_close(ensemble.metric.metric_matrix(z), expected, rtol=1e-12, atol=1e-12)
