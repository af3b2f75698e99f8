"""The Sphinx site builds without a single warning (``sphinx-build -W``)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytest.importorskip("sphinx")


@pytest.mark.slow
@pytest.mark.subprocess
def test_docs_build_without_warnings(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", "-q", "docs", str(tmp_path / "html")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    index = (tmp_path / "html" / "index.html").read_text(encoding="utf-8")
    assert "geomstats-pullback" in index
    api = (tmp_path / "html" / "api.html").read_text(encoding="utf-8")
    for name in ("DecoderManifold", "PullbackMetric", "StochasticDecoder", "VAE"):
        assert name in api, name
    demo = (tmp_path / "html" / "demo.html").read_text(encoding="utf-8")
    assert "--quick" in demo  # the generated --help
    assert (tmp_path / "html" / "_images" / "magnification.png").exists()
    distributed = (tmp_path / "html" / "distributed.html").read_text(encoding="utf-8")
    assert "<h1>" in distributed and "```" not in distributed  # Markdown parsed, not shown as text
    benchmarks = (tmp_path / "html" / "benchmarks.html").read_text(encoding="utf-8")
    for script in sorted((ROOT / "benchmarks").glob("bench_*.py")):
        assert script.name in benchmarks, script.name
    measured = list((ROOT / "docs" / "benchmarks").glob("bench_*.md"))
    assert benchmarks.count("Output of") == len(measured)  # each table the scripts wrote is on the page
    assert benchmarks.count("Not measured yet") == len(list((ROOT / "benchmarks").glob("bench_*.py"))) - len(measured)

