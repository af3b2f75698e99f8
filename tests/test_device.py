"""Every tensor the package creates lives on the device of the data it derives from.

Without a GPU, the proof uses torch's default device. The decoder and the
points are on the CPU while ``torch.device("meta")`` is the default device: a
tensor that the package made without naming a device (``gs.zeros``,
``gs.eye``, ``gs.array``, ``gs.linspace``, ``gs.random.*``, ``gs.where``
with a Python scalar, a mask, an index array) is then a meta tensor, and
mixing it with the CPU data raises ("Tensor on device meta is not on the
expected device cpu!"), as does reading it on the host (``.item()`` of a
meta tensor). ``torch.as_tensor(x)`` without a device is caught too: under a
default device it moves even a CPU tensor there. Each operation must run
there and give what it gives without the meta default. A device-parametrised test (``cpu``, and ``cuda`` where
there is one) checks that the results are on the points' device.

The meta default cannot see an array made from numpy (``gs.array(ndarray)``
is always a host tensor) or on an explicitly named host: a source scan
checks that the package makes its arrays through
``geomstats_pullback/_arrays.py``, not geomstats' creation functions.

Left out, as geomstats' own code rather than the package's:
``geomstats.numerics.ivp.GSIVPIntegrator.integrate``, through which parallel
transport and ``exp`` with an integrator without error estimate (e.g.
``RK6Integrator``) pass, makes its time grid ``OdeResult.t`` with
``gs.linspace`` on the default device. That grid is never mixed with the
solution, so the tests below run through it without raising, but it is a
small tensor on the default device (the host, unless the user changed it).
"""

import pathlib
import re

import numpy as np
import pytest
import torch

import geomstats_pullback as gp
from geomstats_pullback import analytic
from geomstats_pullback.integrators import RK6Integrator

from cases import CASES, case_params

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _space(decoder, latent_dim, dtype, *, method="auto"):
    """A space with small solvers (few steps, few nodes) and a fixed Jacobian strategy (no timing)."""
    space = gp.DecoderManifold(decoder, latent_dim=latent_dim, dtype=dtype, jacobian_strategy="reverse")
    space.metric.exp_solver = gp.GeodesicIVPSolver(space, n_steps=4, warn=False)
    space.metric.log_solver = gp.GeodesicBVPSolver(space, n_nodes=9, max_iter=10, max_shooting_iter=4, method=method)
    return space


def _relu_decoder(dtype):
    return analytic.random_mlp((2, 16, 16, 10), seed=3, dtype=dtype, activation=torch.nn.ReLU)


def _data(case):
    """Two pairs of points, a velocity and a second vector, all float64 on the CPU."""
    return dict(
        z0=case.points(2, seed=1), z1=case.points(2, seed=2), v=0.3 * case.vectors(2, seed=3),
        w=case.vectors(2, seed=4), t=torch.linspace(0.0, 1.0, 4, dtype=torch.float64),
        codes=case.points(12, seed=5),
    )


def _exp(solver):
    def run(space, d):
        space.metric.exp_solver = solver(space)
        return space.metric.exp(d["v"], d["z0"])

    return run


def _log(solver=None):
    def run(space, d):
        if solver is not None:
            space.metric.log_solver = solver(space)
        return space.metric.log(d["z1"], d["z0"]), space.metric.log_solver.result_.converged

    return run


def _log_and_dist(space, d):
    """``dist`` solves ``log(z1, z0)`` (through the metric's ``squared_dist``): both from one solve."""
    dist = space.metric.dist(d["z0"], d["z1"])
    result = space.metric.log_solver.result_
    return dist, result.tangent_vec, result.converged


def _pairwise(space, d):
    dist = gp.pairwise_distances(space.metric, d["z0"], d["z1"], progress=False).dist
    return torch.from_numpy(np.array(dist))  # a host tensor whatever the default device


def _graph_solver(space, codes):
    return gp.GeodesicBVPSolver(space, n_nodes=9, max_iter=10, method="discrete", init=codes)


def _likely_solver(space, dim):
    prior = gp.GaussianMixtureDensity.standard_normal(dim)
    return gp.GeodesicBVPSolver(space, n_nodes=9, max_iter=10, method="discrete", density=prior, density_weight=0.1)


def _frechet_mean(space, d):
    from geomstats_pullback.statistics import PullbackFrechetMean

    space.metric.log_solver = gp.GeodesicBVPSolver(space, n_nodes=9, max_iter=10, method="discrete")
    return PullbackFrechetMean(space, max_iter=2).fit(d["codes"][:3]).estimate_


#: name -> (method of the log solver, operation(space, data) -> tensor or tuple of tensors)
OPERATIONS = {
    "space_and_random_points": ("auto", lambda s, d: (s.random_point(3), s.random_tangent_vec(d["z0"]))),
    "metric_matrix": ("auto", lambda s, d: s.metric.metric_matrix(d["z0"])),
    "exp_rk8": ("auto", _exp(lambda s: gp.GeodesicIVPSolver(s, n_steps=4, warn=False))),
    "exp_adaptive": ("auto", _exp(lambda s: gp.GeodesicIVPSolver(s, adaptive=True, warn=False))),
    "exp_rk6": ("auto", _exp(lambda s: gp.GeodesicIVPSolver(s, integrator=RK6Integrator(n_steps=4), warn=False))),
    "geodesic_ivp": ("auto", lambda s, d: s.metric.geodesic(d["z0"], initial_tangent_vec=d["v"])(d["t"])),
    "log_and_dist_shooting": ("shooting", _log_and_dist),
    "log_discrete": ("discrete", _log()),
    "log_graph_init": ("discrete", lambda s, d: _log(lambda space: _graph_solver(space, d["codes"]))(s, d)),
    "log_likely": ("discrete", lambda s, d: _log(lambda space: _likely_solver(space, d["z0"].shape[-1]))(s, d)),
    "geodesic_end_point": ("shooting", lambda s, d: s.metric.geodesic(d["z0"], end_point=d["z1"])(d["t"])),
    "parallel_transport": ("shooting", lambda s, d: s.metric.parallel_transport(d["w"], d["z0"], end_point=d["z1"])),
    "sectional_curvature": ("auto", lambda s, d: s.metric.sectional_curvature(d["v"], d["w"], d["z0"])),
    "christoffels_and_curvature": ("auto", lambda s, d: (s.metric.christoffels(d["z0"]),
                                                         s.metric.curvature(d["v"], d["w"], d["v"], d["z0"]))),
    "analogy": ("auto", lambda s, d: gp.analogy(s.metric, d["z0"][0], d["z1"][0], d["z0"][1])),
    "frechet_mean": ("discrete", _frechet_mean),
    "path_length": ("auto", lambda s, d: gp.path_length(s.metric, gp.linear_path(d["z0"], d["z1"], 5))),
    "sample_volume": ("auto", lambda s, d: gp.sample_volume(s, 8, n_chains=4, burn_in=4, thin=1, seed=0).samples),
    "geodesic_random_walk": (
        "auto", lambda s, d: gp.geodesic_random_walk(s, 4, step_size=0.1, n_chains=2, burn_in=2, thin=1, seed=0).samples,
    ),
    "pairwise_distances": ("discrete", _pairwise),
}

#: Operations whose float32 and conv8 variants run in the quick lane as well (the others: slow).
QUICK = {"space_and_random_points", "metric_matrix", "exp_rk8", "log_discrete", "sectional_curvature", "path_length",
         "sample_volume"}


def _run(case, name, data, decoder):
    """The operation on a space built here (under the caller's default device) around a decoder built outside."""
    method, operation = OPERATIONS[name]
    space = _space(decoder, case.latent_dim, case.dtype, method=method)
    torch.manual_seed(0)  # random_point / random_tangent_vec draw from torch's generator
    return operation(space, data)


def _as_tuple(result):
    return result if isinstance(result, tuple) else (result,)


def _assert_same(actual, expected, dtype):
    tol = 1e-12 if dtype == torch.float64 else 1e-6
    for got, want in zip(_as_tuple(actual), _as_tuple(expected), strict=True):
        assert got.device == want.device == torch.device("cpu")
        torch.testing.assert_close(got, want, rtol=tol, atol=tol, equal_nan=True)


def _params():
    params = []
    for name in OPERATIONS:
        for param in case_params("mlp", "conv8"):
            (case,) = param.values
            quick = case.id == "mlp-float64" or (name in QUICK and case.name == "mlp")
            marks = list(param.marks) + ([] if quick else [pytest.mark.slow])
            params.append(pytest.param(case, name, id=f"{name}-{case.id}", marks=marks))
    return params


@pytest.mark.filterwarnings("ignore::geomstats_pullback.errors.ConvergenceWarning")  # small solvers: flags may be raised
@pytest.mark.parametrize("case, name", _params())
def test_no_tensor_on_the_default_device(case, name):
    """With ``meta`` as the default device, each operation runs on CPU data and gives the same result."""
    data, decoder = _data(case), case.decoder()
    expected = _run(case, name, data, decoder)
    with torch.device("meta"):
        actual = _run(case, name, data, decoder)
    _assert_same(actual, expected, case.dtype)


@pytest.mark.filterwarnings("ignore::geomstats_pullback.errors.ConvergenceWarning")  # few refinements: not all settle
@pytest.mark.parametrize("dtype", [torch.float64, pytest.param(torch.float32, marks=pytest.mark.slow)])
def test_non_smooth_decoder_refined_discrete_geodesics_stay_off_the_default_device(dtype):
    """The grid-refinement path of ``log`` on a ReLU decoder (no shooting), under the meta default."""
    case = CASES[f"mlp-{str(dtype).removeprefix('torch.')}"]
    data, decoder = _data(case), _relu_decoder(dtype)

    def solve():
        space = _space(decoder, 2, dtype)
        space.metric.log_solver.max_refinements = 2
        assert space.metric.log_solver.method_ == "discrete"
        log = space.metric.log(data["z1"], data["z0"])
        return log, space.metric.log_solver.result_.length, space.metric.dist(data["z0"], data["z1"])

    expected = solve()
    with torch.device("meta"):
        actual = solve()
    _assert_same(actual, expected, dtype)


def test_auto_jacobian_strategy_timing_stays_off_the_default_device():
    """``jacobian_strategy="auto"`` times the strategies on the first calls at ``d >= 8``: also under the meta default."""
    case = CASES["conv8-float64"]
    data, decoder = _data(case), case.decoder()
    expected = _space(decoder, 8, torch.float64).metric.exp(data["v"], data["z0"])
    with torch.device("meta"):
        space = gp.DecoderManifold(decoder, latent_dim=8, dtype=torch.float64)
        space.metric.exp_solver = gp.GeodesicIVPSolver(space, n_steps=4, warn=False)
        actual = space.metric.exp(data["v"], data["z0"])
    assert space.decoder.strategy_choices_  # the timing ran
    torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-12)  # strategies agree to rounding


def test_the_meta_default_device_catches_a_tensor_made_without_a_device():
    """The trick can fail: ``gs.zeros`` without a device under the meta default does not mix with CPU data."""
    import geomstats.backend as gs

    z = torch.zeros(3, dtype=torch.float64)
    with torch.device("meta"), pytest.raises((RuntimeError, NotImplementedError)):
        float((z + gs.zeros(3, dtype=z.dtype)).sum())


@pytest.mark.parametrize("device", DEVICES)
def test_results_live_on_the_points_device(device):
    """exp, log and dist on points and a decoder on ``device``: results there, equal to the CPU's."""
    case = CASES["mlp-float64"]
    data = _data(case)
    moved = {key: value.to(device) for key, value in data.items()}
    results = {}
    for where, values in {"cpu": data, device: moved}.items():
        space = _space(case.decoder().to(where), case.latent_dim, case.dtype, method="shooting")
        metric = space.metric
        results[where] = (
            metric.exp(values["v"], values["z0"]),
            metric.log(values["z1"], values["z0"]),
            metric.dist(values["z0"], values["z1"]),
            space.random_point(2),
        )
        for result in results[where]:
            assert result.device.type == torch.device(where).type
    for got, want in zip(results[device][:3], results["cpu"][:3]):  # random draws differ between devices
        torch.testing.assert_close(got.cpu(), want, rtol=1e-7, atol=1e-9)


PACKAGE = pathlib.Path(gp.__file__).parent
#: geomstats functions that make arrays on the default device (or, from numpy, on the host).
CREATION = re.compile(r"\bgs\.(zeros|ones|eye|array|linspace|arange|full|empty|from_numpy|to_numpy|random)\b")
#: Input conversion of lists and numpy arrays, which have no device: host arrays by design.
HOST_INPUT = "gs.array(np.asarray("


def test_the_package_makes_arrays_through_the_device_helpers():
    """No geomstats creation function outside ``_arrays.py`` (the demo, a user of the package, aside)."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative == "_arrays.py" or relative.startswith("demo/"):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if CREATION.search(line) and HOST_INPUT not in line:
                found.append(f"{relative}:{number}: {line.strip()}")
    assert not found, "arrays made without the input's device (use geomstats_pullback._arrays):\n" + "\n".join(found)
