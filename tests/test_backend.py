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


HEAVY = ("sklearn", "pandas", "matplotlib")


def _heavy_after(statement):
    out = run_python(f"import sys\n{statement}\nprint(sorted(m for m in {HEAVY!r} if m in sys.modules))", None)
    assert out.returncode == 0, out.stderr
    return out.stdout.split("\n")[-2]


def test_import_and_command_line_do_not_load_matplotlib():
    """The demo (matplotlib) is imported by the ``demo`` command only, not by the package or the parser."""
    assert "matplotlib" not in _heavy_after("import geomstats_pullback, geomstats_pullback.cli")
    assert "matplotlib" not in _heavy_after("from geomstats_pullback import cli; cli.build_parser()")


def test_import_does_not_load_scikit_learn_pandas_or_matplotlib():
    assert _heavy_after("import geomstats_pullback") == "[]"


def test_lazy_frechet_mean_is_the_statistics_class():
    """PullbackFrechetMean is imported on first use (it is a scikit-learn estimator) and is in dir() and __all__."""
    out = run_python(
        """
        import sys
        import geomstats_pullback as gp
        assert "geomstats_pullback.statistics" not in sys.modules
        assert "PullbackFrechetMean" in dir(gp) and "PullbackFrechetMean" in gp.__all__
        from geomstats_pullback.statistics import PullbackFrechetMean
        assert gp.PullbackFrechetMean is PullbackFrechetMean
        from geomstats_pullback import *
        assert PullbackFrechetMean.__module__ == "geomstats_pullback.statistics"
        try:
            gp.NoSuchThing
        except AttributeError as err:
            print(err)
        """,
        None,
    )
    assert out.returncode == 0, out.stderr
    assert "has no attribute 'NoSuchThing'" in out.stdout


def test_demo_package_names_resolve_on_first_use():
    out = run_python(
        """
        import geomstats_pullback.demo as demo
        from geomstats_pullback.demo import DemoConfig, VAE, run
        from geomstats_pullback.demo.config import DemoConfig as Config
        from geomstats_pullback.demo.vae import VAE as Model
        assert callable(run) and run.__module__ == "geomstats_pullback.demo.run" and demo.run is run
        assert (DemoConfig, VAE) == (Config, Model) and set(demo.__all__) <= set(dir(demo))
        """,
        None,
    )
    assert out.returncode == 0, out.stderr
