"""Backend guard and the autograd backend, each in a fresh Python process."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.subprocess]

ROOT = Path(__file__).resolve().parents[1]


def run_python(code, backend):
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("GEOMSTATS_BACKEND", None)
    if backend is not None:
        env["GEOMSTATS_BACKEND"] = backend
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True, timeout=300)


def test_import_selects_pytorch_when_nothing_chosen():
    out = run_python("import geomstats_pullback as gp, geomstats.backend as gs; print(gp.BACKEND, gs.__name__)", None)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["pytorch", "geomstats.pytorch"]


def test_numpy_backend_is_refused_with_the_variable_name():
    out = run_python("import geomstats_pullback", "numpy")
    assert out.returncode != 0
    assert "ImportError" in out.stderr and "GEOMSTATS_BACKEND" in out.stderr


def test_geomstats_already_loaded_with_numpy_is_refused():
    out = run_python("import geomstats\nimport geomstats_pullback", None)
    assert "ImportError" in out.stderr and "GEOMSTATS_BACKEND" in out.stderr and "already imported" in out.stderr


def test_root_logger_level_is_left_alone():
    out = run_python("import logging, geomstats_pullback; print(logging.getLogger().level)", None)
    assert out.stdout.strip() == str(30), out.stderr


def test_autograd_backend_sphere():
    """Sphere tests under GEOMSTATS_BACKEND=autograd with the autograd.numpy chart."""
    code = """
    import numpy as np
    import geomstats_pullback as gp
    from geomstats_pullback import analytic
    from geomstats.geometry.hypersphere import Hypersphere
    assert gp.BACKEND == "autograd"
    space = gp.DecoderManifold(analytic.sphere_chart, latent_dim=2)
    assert isinstance(space.decoder, gp.AutogradDecoder)
    rng = np.random.default_rng(0)
    z = np.stack([rng.uniform(0.9, 2.2, 40), rng.uniform(-2, 2, 40)], -1)
    g = space.metric.metric_matrix(z)
    assert np.abs(g - np.stack([np.diag([1.0, np.sin(t) ** 2]) for t in z[:, 0]])).max() < 1e-10
    gamma = space.metric.christoffels(z)
    assert np.abs(gamma[:, 0, 1, 1] + np.sin(z[:, 0]) * np.cos(z[:, 0])).max() < 1e-10
    assert np.abs(gamma[:, 1, 0, 1] - np.cos(z[:, 0]) / np.sin(z[:, 0])).max() < 1e-10
    v = rng.normal(size=(40, 2))
    v = v / space.metric.norm(v, z)[:, None] * 0.7
    sphere = Hypersphere(2)
    ref = sphere.metric.exp(sphere.tangent_spherical_to_extrinsic(v, z), sphere.spherical_to_extrinsic(z))
    err = np.abs(analytic.sphere_chart(space.metric.exp(v, z)) - ref).max()
    assert err < 1e-8, err
    print("ok", err)
    """
    out = run_python(code, "autograd")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok")
