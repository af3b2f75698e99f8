"""Output geometries against geomstats' information geometry (Bernoulli, categorical, Poisson, normal)."""

import math

import geomstats.backend as gs
import pytest
import torch
from cases import CASES, case_params
from geomstats.information_geometry.binomial import BinomialDistributions
from geomstats.information_geometry.categorical import CategoricalDistributions
from geomstats.information_geometry.exponential import ExponentialDistributions
from geomstats.information_geometry.normal import NormalDistributions
from geomstats.information_geometry.poisson import PoissonDistributions
from torch.func import jacrev

import geomstats_pullback as gp
from geomstats_pullback import analytic
from geomstats_pullback.geodesics import GeodesicBVPSolver
from geomstats_pullback.outputs import bernoulli_map, categorical_map, gaussian_map, poisson_map

N_CATEGORIES = 4
BERNOULLI = BinomialDistributions(n_draws=1)
CATEGORICAL = CategoricalDistributions(dim=N_CATEGORIES - 1)
POISSON = PoissonDistributions()
NORMAL = NormalDistributions(sample_dim=1)
FLOOR = 0.1  # std_floor of the Gaussian cases: their std is softplus + 0.2


def _sigmoid_net(net):
    return lambda z: torch.sigmoid(net(z))


def _exp_net(net):
    return lambda z: torch.exp(net(z))


def _softmax_net(net):
    return lambda z: torch.softmax(_grouped(net)(z), dim=-1)


def _mean_std(net, z):
    """Six normal entries from a net of 12 outputs: means and stds (softplus + 0.2), each ``[B, 6]``."""
    out = net(z)
    return out[..., :6], torch.nn.functional.softplus(out[..., 6:]) + 0.2


def _pair(net, log=False):
    def decoder(z):
        mean, std = _mean_std(net, z)
        return mean, torch.log(std) if log else std

    return decoder


def _stochastic(net):
    return gp.StochasticDecoder(lambda z: _mean_std(net, z)[0], lambda z: _mean_std(net, z)[1])


def _theta(net):
    """Normal parameters ``[B, 6, 2]``: geomstats' (mean, std) coordinates per entry."""
    return lambda z: torch.stack(_mean_std(net, z), dim=-1)


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
    "categorical-probabilities": (
        "categorical", {"parametrisation": "probabilities"}, lambda net: _softmax_net(net),
        lambda net: _softmax_net(net), CATEGORICAL, lambda t: t,
    ),
    "categorical-geomstats": (
        CATEGORICAL, {}, lambda net: _softmax_net(net), lambda net: _softmax_net(net), CATEGORICAL, lambda t: t,
    ),
    "bernoulli-geomstats": (BERNOULLI, {}, _sigmoid_net, _sigmoid_net, BERNOULLI, lambda t: t[..., None]),
    "poisson-geomstats": (POISSON, {}, _exp_net, _exp_net, POISSON, lambda t: t[..., None]),
    "gaussian-std": ("gaussian", {"std_floor": FLOOR}, lambda net: _pair(net), lambda net: _theta(net), NORMAL, lambda t: t),
    "gaussian-log-std": (
        "gaussian", {"std_floor": FLOOR, "parametrisation": "log_std"}, lambda net: _pair(net, log=True),
        lambda net: _theta(net), NORMAL, lambda t: t,
    ),
    "gaussian-stochastic-decoder": (
        "gaussian", {"std_floor": FLOOR}, lambda net: _stochastic(net), lambda net: _theta(net), NORMAL, lambda t: t,
    ),
    "gaussian-geomstats": (
        NORMAL, {"std_floor": FLOOR}, lambda net: _pair(net), lambda net: _theta(net), NORMAL, lambda t: t,
    ),
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


@pytest.mark.parametrize("name", ["bernoulli-logits", "categorical", "poisson-log-rates", "gaussian-std"])
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
    tol = space.metric.log_solver.tol_  # shooting's relative tolerance on exp(log) = point
    assert abs(space.metric.dist(z0, z1).item() - closed_form) < tol * closed_form
    family = FAMILIES[name][4]
    times = gs.linspace(0.0, 1.0, 5)
    ours = to_theta(space.metric.geodesic(initial_point=z0, end_point=z1)(times))
    theirs = family.metric.geodesic(initial_point=t0, end_point=t1)(times)
    torch.testing.assert_close(ours.reshape(-1), theirs.reshape(-1), atol=tol, rtol=tol)


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
    with pytest.raises(ValueError, match="output must be one of .*'bernoulli', 'categorical', 'poisson', 'gaussian'"):
        gp.DecoderManifold(lambda z: z, 1, output="normal")
    with pytest.raises(ValueError, match="parametrisation of the categorical family"):
        gp.OutputDecoder(lambda z: z, "categorical", parametrisation="rates")
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


# Plain-operation compositions (every derivative by autograd through elementary operations): the reference of
# the closed-form autograd Functions.
def _plain_gaussian(mean, std, c=FLOOR):
    radius, angle = math.sqrt(2) * c / std, mean / (math.sqrt(2) * c)
    height = torch.acosh(std / c) - torch.sqrt(std**2 - c**2) / std
    return torch.stack([radius * torch.cos(angle), radius * torch.sin(angle), math.sqrt(2) * height], dim=1)


PLAIN = {
    "bernoulli-logits": lambda net: lambda z: 2 * torch.asin(torch.sqrt(torch.sigmoid(net(z)))),
    "bernoulli-probabilities": lambda net: lambda z: 2 * torch.asin(torch.sqrt(torch.sigmoid(net(z)))),
    "categorical": lambda net: lambda z: 2 * torch.sqrt(_softmax_net(net)(z)),
    "categorical-probabilities": lambda net: lambda z: 2 * torch.sqrt(_softmax_net(net)(z)),
    "poisson-log-rates": lambda net: lambda z: 2 * torch.sqrt(torch.exp(net(z))),
    "poisson-rates": lambda net: lambda z: 2 * torch.sqrt(torch.exp(net(z))),
    "gaussian-std": lambda net: lambda z: _plain_gaussian(*_mean_std(net, z)),
    "gaussian-log-std": lambda net: lambda z: _plain_gaussian(*_mean_std(net, z)),
}


@pytest.mark.parametrize("grad_mode", [False, True], ids=["reverse", "torch.func"])
@pytest.mark.parametrize("name", PLAIN)
def test_closed_form_derivatives_match_plain_autograd(name, grad_mode):
    """First and second derivatives, by reverse-over-reverse transposition (no grad) and torch.func (grad mode)."""
    net = analytic.random_mlp((3, 16, 12), seed=5)
    output, output_kwargs, make_decoder, *_ = FAMILIES[name]
    ours = gp.DecoderManifold(make_decoder(net), 3, output=output, output_kwargs=output_kwargs).decoder
    plain = gp.as_decoder(PLAIN[name](net), 3)
    generator = torch.Generator().manual_seed(6)
    z, u, v = (torch.randn(4, 3, generator=generator, dtype=torch.float64) for _ in range(3))
    if grad_mode:
        z = z.requires_grad_(True)
    for method, args in (
        ("__call__", (z,)), ("jvp", (z, u)), ("jacobian", (z,)), ("second_derivative", (z, u, v)),
        ("hessian", (z,)), ("weighted_hessian", (z, u.repeat(1, 8)[:, : plain.output_dim])),
    ):
        expected = getattr(plain, method)(*args)
        actual = getattr(ours, method)(*args)
        torch.testing.assert_close(actual, expected, atol=1e-11, rtol=1e-10, msg=f"{method}")
    if grad_mode:  # a gradient through the geometry: d/dz sum f''(z)[u, v]
        expected = torch.autograd.grad(plain.second_derivative(z, u, v).sum(), z)[0]
        actual = torch.autograd.grad(ours.second_derivative(z, u, v).sum(), z)[0]
        torch.testing.assert_close(actual, expected, atol=1e-10, rtol=1e-10)


def test_vmap_through_the_closed_form_maps():
    x = torch.linspace(-3, 3, 12, dtype=torch.float64).reshape(3, 4)
    for fn in (bernoulli_map, categorical_map, poisson_map):
        torch.testing.assert_close(torch.vmap(torch.func.jacrev(lambda r, fn=fn: fn(r)))(x),
                                   torch.stack([torch.func.jacrev(fn)(row) for row in x]))


def test_pseudosphere_is_a_local_isometry_of_the_half_plane():
    """The Euclidean pullback of the pseudosphere map is (dmu^2 + 2 dsigma^2) / sigma^2, whatever the floor."""
    generator = torch.Generator().manual_seed(7)
    for floor in (0.05, 0.5, 2.0):
        mean = 3 * torch.randn(20, generator=generator, dtype=torch.float64)
        std = floor * (1 + 1e-6 + 5 * torch.rand(20, generator=generator, dtype=torch.float64))
        ones, zeros = torch.ones_like(mean), torch.zeros_like(mean)
        d_mean = torch.func.jvp(lambda m, s: gaussian_map(m, s, floor), (mean, std), (ones, zeros))[1]  # [3, 20]
        d_std = torch.func.jvp(lambda m, s: gaussian_map(m, s, floor), (mean, std), (zeros, ones))[1]
        jac = torch.stack([d_mean, d_std], -1).transpose(0, 1)  # [20, 3, 2]
        metric = jac.transpose(-1, -2) @ jac
        expected = torch.diag_embed(torch.stack([1 / std**2, 2 / std**2], -1))
        torch.testing.assert_close(metric, expected, atol=1e-9, rtol=1e-9)


@pytest.mark.slow
def test_half_plane_chart_reproduces_the_normal_fisher_rao_distance_and_geodesic():
    region = (gs.array([-2.0, -0.5]), gs.array([2.0, 2.0]))
    shift = gs.array([0.0, 1.0])
    space = gp.DecoderManifold(
        lambda z: (z[..., :1], z[..., 1:] + 1), 2, output=NORMAL, output_kwargs={"std_floor": 0.25}, region=region
    )  # latent (a, b) is the normal distribution (mu, sigma) = (a, b + 1): sigma > c at the adapter's probe z = 0
    space.metric.log_solver = GeodesicBVPSolver(space, n_nodes=65)
    start = gs.array([[0.0, 1.0], [-1.0, 0.6], [0.5, 2.0]])
    end = gs.array([[1.0, 2.0], [1.0, 0.7], [0.6, 0.8]])
    expected = NORMAL.metric.dist(start, end)
    start, end = start - shift, end - shift
    torch.testing.assert_close(space.metric.dist(start, end), expected, atol=1e-7, rtol=1e-7)
    times = gs.linspace(0.0, 1.0, 5)
    ours = space.metric.geodesic(initial_point=start[0], end_point=end[0])(times) + shift
    theirs = NORMAL.metric.geodesic(initial_point=start[0] + shift, end_point=end[0] + shift)(times)
    torch.testing.assert_close(ours.reshape(-1, 2), theirs.reshape(-1, 2), atol=1e-7, rtol=1e-7)


def test_gaussian_bad_input():
    def pair(z):
        return z, z + 0.3

    space = gp.DecoderManifold(pair, 2, output="gaussian", output_kwargs={"std_floor": 0.2})
    with pytest.raises(ValueError, match=r"std must exceed std_floor=0.5 .*pseudosphere"):
        gp.DecoderManifold(pair, 2, output="gaussian", output_kwargs={"std_floor": 0.5})
    with pytest.raises(ValueError, match=r"std must exceed std_floor=0.2 .*1 of 2 entries"):
        space.metric.metric_matrix(gs.array([[0.0, -0.1]]))
    with pytest.raises(ValueError, match="needs std_floor"):
        gp.DecoderManifold(pair, 2, output="gaussian")
    with pytest.raises(ValueError, match="std_floor must be a positive"):
        gp.DecoderManifold(pair, 2, output="gaussian", output_kwargs={"std_floor": 0.0})
    with pytest.raises(ValueError, match="std_floor is a parameter of the gaussian family only"):
        gp.DecoderManifold(lambda z: z, 2, output="poisson", output_kwargs={"std_floor": 0.1})
    with pytest.raises(TypeError, match="pair \\(mean, std\\)"):
        gp.DecoderManifold(lambda z: z, 2, output="gaussian", output_kwargs={"std_floor": 0.1})
    with pytest.raises(ValueError, match="one shape"):
        gp.DecoderManifold(lambda z: (z, z[..., :1].abs() + 1), 2, output="gaussian", output_kwargs={"std_floor": 0.1})
    with pytest.raises(ValueError, match="std must exceed std_floor"):
        gp.DecoderManifold(lambda z: (z, z - 5), 2, output="gaussian", output_kwargs={"std_floor": 0.1, "parametrisation": "std"})


def test_gaussian_floor_defaults_to_half_the_declared_min_std():
    from geomstats_pullback.demo.networks import RBFStd

    centres = torch.zeros(3, 2, dtype=torch.float64)
    std = RBFStd(centres, torch.ones(3, dtype=torch.float64), (5,), zeta=1.0, min_std=0.04)
    decoder = gp.StochasticDecoder(analytic.random_mlp((2, 8, 5), seed=1), std)
    space = gp.DecoderManifold(decoder, 2, output="gaussian")
    assert space.decoder.decoder.std_floor == pytest.approx(0.02)
    assert space.output == "gaussian"


def test_geomstats_families_select_the_output_map():
    net = analytic.random_mlp((2, 16, 12), seed=8)
    z = gs.array([[0.3, -0.2], [1.0, 0.5]])
    by_space = gp.DecoderManifold(_sigmoid_net(net), 2, output=BinomialDistributions(n_draws=1))
    by_name = gp.DecoderManifold(net, 2, output="bernoulli")
    assert by_space.output == "bernoulli"
    torch.testing.assert_close(by_space.metric.metric_matrix(z), by_name.metric.metric_matrix(z), atol=1e-12, rtol=1e-10)
    with pytest.raises(ValueError, match="not a supported geomstats family; supported: BinomialDistributions"):
        gp.DecoderManifold(net, 2, output=ExponentialDistributions())
    with pytest.raises(ValueError, match="not a supported geomstats family"):
        gp.DecoderManifold(_sigmoid_net(net), 2, output=BinomialDistributions(n_draws=3))
    with pytest.raises(ValueError, match="NormalDistributions"):
        gp.DecoderManifold(net, 2, output=NormalDistributions(sample_dim=2))
    with pytest.raises(ValueError, match="categorical family has 5 categories; the decoder's last axis has 4"):
        gp.DecoderManifold(_softmax_net(net), 2, output=CategoricalDistributions(dim=4))


def test_categorical_probabilities_must_lie_on_the_simplex():
    with pytest.raises(ValueError, match=r"Categorical probabilities must lie in \[0, inf\)"):
        categorical_map(torch.tensor([[0.5, 0.6, -0.1]], dtype=torch.float64), "probabilities")
    with pytest.raises(ValueError, match="must sum to 1 over the last axis .*1 of 2 distributions"):
        categorical_map(torch.tensor([[0.5, 0.5, 0.0], [0.5, 0.5, 1e-6]], dtype=torch.float64), "probabilities")
    # float32 round-off of a softmax passes.
    p = torch.softmax(torch.randn(3, 100, generator=torch.Generator().manual_seed(0)), dim=-1)
    torch.testing.assert_close(categorical_map(p, "probabilities"), 2 * p.sqrt())


@pytest.mark.parametrize("case", case_params("conv8", slow_float32=True))
def test_conv_decoder_with_gaussian_output(case):
    conv = case.decoder()

    def decoder(z):
        out = conv(z)
        return out, torch.nn.functional.softplus(out) + 0.5

    space = gp.DecoderManifold(
        decoder, case.latent_dim, output="gaussian", output_kwargs={"std_floor": 0.25}, dtype=case.dtype
    )
    assert space.decoder.data_shape == (3, 1, 16, 16)
    z = case.points(2, seed=1)
    vec = case.vectors(2, seed=2) * 0.3
    end = space.metric.exp(vec, z)
    tol = case.tol(1e-6)
    torch.testing.assert_close(space.metric.log(end, z), vec, atol=tol, rtol=tol)


def _derivatives(f, x, orders):
    """``f, f', ..., f^(orders)`` of an elementwise map at ``x`` by repeated double backward."""
    x = x.clone().requires_grad_(True)
    y, out = f(x), []
    for _ in range(orders):
        out.append(y.detach())
        y = torch.autograd.grad(y.sum(), x, create_graph=True)[0]
    return out + [y.detach()]


@pytest.mark.parametrize(
    "name, grid, reference",
    [
        ("bernoulli-logits", (-8.0, 8.0), lambda l: 2 * torch.asin(torch.sqrt(torch.sigmoid(l)))),
        ("bernoulli-probabilities", (0.05, 0.95), lambda p: 2 * torch.asin(torch.sqrt(p))),
        ("poisson-log-rates", (-3.0, 3.0), lambda r: 2 * torch.sqrt(torch.exp(r))),
        ("poisson-rates", (0.1, 3.0), lambda x: 2 * torch.sqrt(x)),
        ("gaussian-height", (0.35, 3.0), lambda y: torch.acosh(y / 0.3) - torch.sqrt(y * y - 0.09) / y),
    ],
)
def test_elementwise_maps_differentiate_to_fourth_order(name, grid, reference):
    """Closed forms up to the second derivative, autograd beyond: all orders against plain operations."""
    maps = {
        "bernoulli-logits": lambda x: bernoulli_map(x),
        "bernoulli-probabilities": lambda x: bernoulli_map(x, "probabilities"),
        "poisson-log-rates": lambda x: poisson_map(x),
        "poisson-rates": lambda x: poisson_map(x, "rates"),
        "gaussian-height": lambda y: gaussian_map(torch.zeros_like(y), y, 0.3)[2] / math.sqrt(2),
    }
    x = torch.linspace(*grid, 13, dtype=torch.float64)
    for ours, theirs in zip(_derivatives(maps[name], x, 4), _derivatives(reference, x, 4)):
        torch.testing.assert_close(ours, theirs, atol=1e-13 * float(theirs.abs().max()), rtol=1e-12)
    logits = torch.randn(3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    plain = lambda l: 2 * torch.sqrt(torch.softmax(l, dim=-1))  # noqa: E731
    direction = torch.randn(3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(10))
    ours, theirs = (_derivatives(lambda t, f=f: f(logits + t[:, None] * direction), torch.zeros(3, dtype=torch.float64), 3)
                    for f in (categorical_map, plain))
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)
