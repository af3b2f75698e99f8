"""Shared fixtures. geomstats' backend must be chosen before anything imports it."""

import os

os.environ.setdefault("GEOMSTATS_BACKEND", "pytorch")

import geomstats.backend as gs  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from geomstats.geometry.hypersphere import Hypersphere  # noqa: E402

# geomstats' generic test cases (tests/test_geomstats_cases.py) need its collection hooks:
# tests of a test case that no data function activates carry an "ignore" mark and are deselected.
from geomstats.test.conf import pytest_collection_modifyitems as _geomstats_collection  # noqa: E402
from geomstats.test.conf import pytest_make_parametrize_id  # noqa: E402, F401

import geomstats_pullback as gp  # noqa: E402
from geomstats_pullback import analytic  # noqa: E402

from cases import CASES  # noqa: E402


def pytest_addoption(parser):
    parser.addoption(
        "--heavy", action="store_true",
        help="also run the tests marked heavy (the d=32 CelebA-like and d=64 MLP real-model cases, tens of minutes)",
    )


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    """geomstats' hook (deselects its inactive cases), then skip ``heavy`` tests unless ``--heavy``."""
    _geomstats_collection(session, config, items)
    if not config.getoption("--heavy"):
        skip = pytest.mark.skip(reason="heavy real-model case: run with --heavy")
        for item in items:
            if "heavy" in item.keywords:
                item.add_marker(skip)

# Test tensors are tiny: one thread is as fast and is not slowed tenfold by other processes on a busy machine.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    gs.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def sphere_space():
    """Latent chart of the unit sphere (spherical angles), float64."""
    return CASES["sphere-float64"].space()


@pytest.fixture(scope="session")
def hypersphere():
    """geomstats' own unit sphere in R^3, the ground truth of ``sphere_space``."""
    return Hypersphere(dim=2)


@pytest.fixture(scope="session")
def mlp_space():
    """A small random tanh MLP decoder R^2 -> R^10, float64."""
    return CASES["mlp-float64"].space()


@pytest.fixture(scope="session")
def flat_space():
    """An isometric linear immersion R^2 -> R^5: the Euclidean plane, float64."""
    return CASES["linear-float64"].space()


@pytest.fixture(scope="session")
def mlp3_net():
    """A random tanh MLP R^3 -> R^10 (its Riemann tensor has 6 independent components)."""
    return analytic.random_mlp((3, 16, 16, 10), seed=1)


@pytest.fixture(scope="session")
def mlp3_space(mlp3_net):
    return gp.DecoderManifold(mlp3_net, latent_dim=3)


def random_vecs(n, dim, seed, scale=1.0):
    """Seeded standard Gaussian vectors ``[n, dim]`` in float64, times ``scale``."""
    gen = torch.Generator().manual_seed(seed)
    return scale * torch.randn(n, dim, generator=gen, dtype=torch.float64)


def sphere_points(n, seed=0):
    """Spherical angles away from the poles and the chart's seam, ``[n, 2]``."""
    gen = torch.Generator().manual_seed(seed)
    theta = 0.6 + 1.9 * torch.rand(n, generator=gen, dtype=torch.float64)
    phi = -2.0 + 4.0 * torch.rand(n, generator=gen, dtype=torch.float64)
    return torch.stack([theta, phi], dim=-1)


def fast_solvers(space):
    """``space`` with cheaper solvers: 4 eighth-order steps for exp, discrete geodesics (no shooting) for log.

    For tests of estimators, which call the same ``exp``/``log``/``dist``
    whatever the solvers. The fourth-order discrete geodesics' logs have relative
    errors of about ``1e-8`` (up to ``3e-5``) on the sphere chart and ``1e-6`` to
    ``1e-4`` on small MLPs (33 nodes).
    """
    space.metric.exp_solver = gp.GeodesicIVPSolver(space, n_steps=4)
    space.metric.log_solver = gp.GeodesicBVPSolver(space, shooting=False)
    return space
