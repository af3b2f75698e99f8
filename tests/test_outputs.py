"""Output geometries against geomstats' information geometry (Bernoulli, categorical, Poisson)."""

import math

import geomstats.backend as gs
import pytest
import torch
from cases import CASES
from geomstats.information_geometry.binomial import BinomialDistributions
from geomstats.information_geometry.categorical import CategoricalDistributions
from geomstats.information_geometry.poisson import PoissonDistributions
from torch.func import jacrev

import geomstats_pullback as gp
from geomstats_pullback import analytic
from geomstats_pullback.geodesics import GeodesicBVPSolver
from geomstats_pullback.outputs import bernoulli_map, categorical_map, poisson_map

N_CATEGORIES = 4
BERNOULLI = BinomialDistributions(n_draws=1)
CATEGORICAL = CategoricalDistributions(dim=N_CATEGORIES - 1)
POISSON = PoissonDistributions()


def _sigmoid_net(net):
    return lambda z: torch.sigmoid(net(z))


def _exp_net(net):
    return lambda z: torch.exp(net(z))


def _grouped(net):
    """Decoder outputs ``[B, 12]`` as ``[B, 3, 4]``: three categoricals over the last axis."""
    return lambda z: net(z).reshape(z.shape[0], -1, N_CATEGORIES)


# name -> (output, output_kwargs, decoder from a net, parameters theta from a net, family, family points from theta)
FAMILIES = {
    "bernoulli-logits": ("bernoulli", {}, lambda net: net, lambda net: _sigmoid_net(net), BERNOULLI, lambda t: t[..., None]),
    "bernoulli-probabilities": (
        "bernoulli", {"parametrisation": "probabilities"}, _sigmoid_net, _sigmoid_net, BERNOULLI, lambda t: t[..., None],
    ),
    "categorical": ("categorical", {}, _grouped, lambda net: lambda z: torch.softmax(_grouped(net)(z), dim=-1), CATEGORICAL, lambda t: t),
    "poisson-log-rates": ("poisson", {}, lambda net: net, _exp_net, POISSON, lambda t: t[..., None]),
    "poisson-rates": ("poisson", {"parametrisation": "rates"}, _exp_net, _exp_net, POISSON, lambda t: t[..., None]),
}


def _space(name, net, latent_dim=2, **kwargs):
    output, output_kwargs, make_decoder, *_ = FAMILIES[name]
    return gp.DecoderManifold(make_decoder(net), latent_dim, output=output, output_kwargs=output_kwargs, **kwargs)


def _fisher_pullback(name, net, z):
    """Ground truth ``J^T F(theta(z)) J`` with ``F`` from geomstats' Fisher metric of the family, ``[B, d, d]``."""
    *_, make_theta, family, to_family = FAMILIES[name]
    theta_fn = make_theta(net)
    out = []
    for point in z:
        theta = theta_fn(point[None])[0]
        jac = jacrev(lambda x: theta_fn(x[None])[0])(point)  # [*data_shape, d]
        fisher = family.metric.metric_matrix(to_family(theta))  # [..., k, k]
        jac = jac.reshape(fisher.shape[:-2] + (fisher.shape[-1], point.shape[-1]))  # [..., k, d]
        out.append(torch.einsum("...ki,...kl,...lj->ij", jac, fisher, jac))
    return torch.stack(out)


@pytest.mark.parametrize("name", FAMILIES)
def test_metric_matrix_is_fisher_pullback(name):
    net = analytic.random_mlp((2, 16, 16, 12), seed=3)
    space = _space(name, net)
    z = space.random_point(5) * 2
    expected = _fisher_pullback(name, net, z)
    torch.testing.assert_close(space.metric.metric_matrix(z), expected, atol=1e-10, rtol=1e-10)


def _family_distance(name, theta_a, theta_b):
    """Product-manifold Fisher–Rao distance from geomstats' family metric, ``[B]``."""
    *_, family, to_family = FAMILIES[name]
    squared = family.metric.squared_dist(to_family(theta_a), to_family(theta_b))
    return squared.reshape(theta_a.shape[0], -1).sum(-1).sqrt()


@pytest.mark.parametrize("name", ["bernoulli-logits", "categorical", "poisson-log-rates"])
def test_latent_length_bounds_fisher_rao_distance(name):
    net = analytic.random_mlp((2, 16, 16, 12), seed=4)
    space = _space(name, net)
    z = space.random_point(6) * 2
    make_theta = FAMILIES[name][3]
    theta = make_theta(net)(z)
    lower = _family_distance(name, theta[:3], theta[3:])
    length = space.metric.dist(z[:3], z[3:])
    assert bool((lower > 1e-3).all())
    assert bool((length >= lower * (1 - 1e-6)).all()), (length, lower)
    assert bool((length <= 3 * lower).all()), (length, lower)  # the bound is informative, not vacuous


# One-parameter identity charts: (name, latent -> family parameter, latent -> decoder output, region, end points)
CHARTS = {
    "bernoulli-logits": (torch.sigmoid, lambda z: z, (-4.0, 4.0), (-3.0, 2.5)),
    "bernoulli-probabilities": (lambda z: z, lambda z: z, (0.01, 0.99), (0.05, 0.9)),
    "poisson-log-rates": (torch.exp, lambda z: z, (-2.0, 3.0), (-1.5, 2.0)),
    "poisson-rates": (lambda z: z, lambda z: z, (0.05, 20.0), (0.3, 12.0)),
}


def _chart_space(name):
    output, output_kwargs, *_ = FAMILIES[name]
    _, decoder, (low, high), _ = CHARTS[name]
    region = (gs.array([low]), gs.array([high]))
    space = gp.DecoderManifold(decoder, 1, output=output, output_kwargs=output_kwargs, region=region)
    space.metric.log_solver = GeodesicBVPSolver(space, n_nodes=65)  # the default's residual is ~1e-7
    return space


@pytest.mark.parametrize("name", CHARTS)
def test_identity_chart_distance_and_geodesic(name):
    to_theta, _, _, (a, b) = CHARTS[name]
    space = _chart_space(name)
    z0, z1 = gs.array([a]), gs.array([b])
    t0, t1 = to_theta(z0), to_theta(z1)
    if name.startswith("bernoulli"):
        closed_form = 2 * abs(math.asin(math.sqrt(t1.item())) - math.asin(math.sqrt(t0.item())))
    else:
        closed_form = 2 * abs(math.sqrt(t1.item()) - math.sqrt(t0.item()))
    assert abs(space.metric.dist(z0, z1).item() - closed_form) < 1e-8
    family = FAMILIES[name][4]
    times = gs.linspace(0.0, 1.0, 5)
    ours = to_theta(space.metric.geodesic(initial_point=z0, end_point=z1)(times))
    theirs = family.metric.geodesic(initial_point=t0, end_point=t1)(times)
    torch.testing.assert_close(ours.reshape(-1), theirs.reshape(-1), atol=1e-8, rtol=1e-8)


def _simplex_chart(z):
    return torch.cat([z, torch.zeros_like(z[..., :1])], dim=-1)


def test_categorical_chart_distance_and_geodesic():
    region = (gs.array([-2.0, -2.0]), gs.array([2.0, 2.0]))
    space = gp.DecoderManifold(_simplex_chart, 2, output="categorical", region=region)
    space.metric.log_solver = GeodesicBVPSolver(space, n_nodes=65)
    simplex = CategoricalDistributions(dim=2)
    z0, z1 = gs.array([1.5, -1.0]), gs.array([-1.0, 0.5])
    p, q = (torch.softmax(_simplex_chart(z), dim=-1) for z in (z0, z1))
    closed_form = 2 * torch.arccos(torch.sqrt(p * q).sum()).item()
    assert abs(space.metric.dist(z0, z1).item() - closed_form) < 1e-8
    times = gs.linspace(0.0, 1.0, 5)
    ours = torch.softmax(_simplex_chart(space.metric.geodesic(initial_point=z0, end_point=z1)(times)), dim=-1)
    theirs = simplex.metric.geodesic(initial_point=p, end_point=q)(times)
    torch.testing.assert_close(ours.reshape(-1, 3), theirs.reshape(-1, 3), atol=1e-8, rtol=1e-8)


def test_extreme_logits_are_finite():
    big = torch.tensor([-1000.0, 1000.0], dtype=torch.float64)
    torch.testing.assert_close(bernoulli_map(big), torch.tensor([0.0, math.pi], dtype=torch.float64))
    torch.testing.assert_close(categorical_map(torch.tensor([1000.0, -1000.0, 0.0])), torch.tensor([2.0, 0.0, 0.0]))
    assert bool(torch.isfinite(poisson_map(big)).all())
    space = gp.DecoderManifold(lambda z: 1000 * z, 2, output="bernoulli")
    matrix = space.metric.metric_matrix(gs.array([[1.0, -1.0], [0.0, 0.5]]))
    assert bool(torch.isfinite(matrix).all())
    torch.testing.assert_close(matrix[1], torch.diag(torch.tensor([250000.0, 1000**2 / (4 * math.cosh(250) ** 2)])))
    space = gp.DecoderManifold(lambda z: 1000 * z, 2, output="categorical")
    assert bool(torch.isfinite(space.metric.metric_matrix(gs.array([[1.0, -1.0]]))).all())


def test_overflowing_log_rates_raise():
    space = gp.DecoderManifold(lambda z: 1000 * z, 2, output="poisson", dtype=torch.float32)
    with pytest.raises(FloatingPointError, match="NaN or inf"):
        space.metric.metric_matrix(gs.array([[1.0, 0.0]]))


def test_bad_input_raises():
    with pytest.raises(ValueError, match=r"Bernoulli probabilities must lie in \[0, 1\]"):
        gp.DecoderManifold(lambda z: z + 2, 1, output="bernoulli", output_kwargs={"parametrisation": "probabilities"})
    with pytest.raises(ValueError, match=r"Poisson rates must lie in \[0, inf\)"):
        gp.DecoderManifold(lambda z: z - 1, 1, output="poisson", output_kwargs={"parametrisation": "rates"})
    with pytest.raises(ValueError, match="output must be one of .*'bernoulli', 'categorical', 'poisson'"):
        gp.DecoderManifold(lambda z: z, 1, output="gaussian")
    with pytest.raises(ValueError, match="parametrisation of the categorical family"):
        gp.OutputDecoder(lambda z: z, "categorical", parametrisation="probabilities")
    with pytest.raises(ValueError, match="family must be one of"):
        gp.OutputDecoder(lambda z: z, "normal")
    with pytest.raises(ValueError, match="output_kwargs"):
        gp.DecoderManifold(lambda z: z, 1, output_kwargs={"parametrisation": "rates"})
    with pytest.raises(TypeError, match="adapter"):
        gp.DecoderManifold(gp.as_decoder(lambda z: z, 1), 1, output="poisson")
    # Probabilities 0 and 1 have an infinite metric (documented): an error, not a number.
    space = gp.DecoderManifold(lambda z: z, 1, output="bernoulli", output_kwargs={"parametrisation": "probabilities"}, region=(gs.array([0.1]), gs.array([0.9])))
    with pytest.raises(FloatingPointError):
        space.metric.metric_matrix(gs.array([[0.0]]))


def test_output_decoder_follows_module_mode():
    net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Dropout(0.5))
    assert gp.OutputDecoder(net, "bernoulli").training
    assert not gp.OutputDecoder(net.eval(), "bernoulli").training


def test_conv_decoder_with_bernoulli_output():
    case = CASES["conv8-float64"]
    space = gp.DecoderManifold(case.decoder(), case.latent_dim, output="bernoulli")
    assert space.decoder.data_shape == (1, 16, 16)
    z = case.points(2, seed=1)
    vec = case.vectors(2, seed=2) * 0.3
    end = space.metric.exp(vec, z)
    torch.testing.assert_close(space.metric.log(end, z), vec, atol=1e-6, rtol=1e-6)
    metric = space.metric.metric_matrix(z)
    euclidean = gp.DecoderManifold(case.decoder(), case.latent_dim).metric.metric_matrix(z)
    # Fisher information p (1 - p) <= 1/4 per pixel: the Bernoulli metric is at most a quarter of the Euclidean one.
    assert bool((torch.linalg.eigvalsh(euclidean / 4 - metric) > -1e-10).all())
