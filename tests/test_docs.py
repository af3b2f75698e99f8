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


def test_markdown_lite_converts_the_subset_used_by_the_docs():
    sys.path.insert(0, str(ROOT / "docs" / "_ext"))
    try:
        from markdown_lite import markdown_to_rst
    finally:
        sys.path.pop(0)
    source = "# Title\n\nText with `code`s and a [link](https://x.org).\n- item\n\n```python\nx = 1\n```\n## Sub\n"
    rst = markdown_to_rst(source)
    assert "Title\n=====\n" in rst
    assert "Sub\n---\n" in rst
    assert "``code``\\ s" in rst
    assert "`link <https://x.org>`__" in rst
    assert "and a `link <https://x.org>`__.\n\n- item" in rst  # blank line before the list
    assert ".. code-block:: python\n\n   x = 1\n" in rst
    table = markdown_to_rst("| a | `b` |\n|---:|:---|\n| 1 | 2 |\n")
    assert ".. list-table::\n   :header-rows: 1\n\n   * - a\n     - ``b``\n   * - 1\n     - 2\n" in table
