"""The demo end to end in its --quick mode: report, figures, numbers, cache."""

import json
import re

import pytest
import torch

from geomstats_pullback import cli
from geomstats_pullback.report import format_number


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    threads = torch.get_num_threads()
    try:
        status = cli.main(["demo", "--out", str(out), "--quick", "--no-progress", "--threads", "1"])
    finally:
        torch.set_num_threads(threads)
    assert status == 0
    results = json.loads((out / "results.json").read_text())
    html = (out / "report.html").read_text()
    return out, results, html


def _numbers_in(tree):
    if isinstance(tree, dict):
        for value in tree.values():
            yield from _numbers_in(value)
    elif isinstance(tree, list):
        for value in tree:
            yield from _numbers_in(value)
    elif isinstance(tree, float):
        yield tree


def test_report_and_figures_exist(demo_run):
    out, results, html = demo_run
    for name in ("model", "magnification"):
        png = out / "figures" / f"{name}.png"
        assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert f"figures/{name}.png" in html
    assert html.count("data:image/png;base64,") >= 2  # self-contained
    assert (out / "vae-quick.pt").exists()


def test_report_shows_the_computed_numbers(demo_run):
    _, results, html = demo_run
    shown = [
        results["model"]["final_elbo_loss"],
        results["model"]["final_std_loss"],
        *results["magnification"]["log10_mf_mean_metric"].values(),
        *list(results["magnification"]["log10_mf_expected_metric"].values())[:3],
    ]
    for value in shown:
        assert format_number(value) in html, value
    for step, seconds in results["timings"].items():
        assert f"<td>{step}</td><td>{format_number(seconds)}</td>" in html


def test_numbers_are_sane(demo_run):
    _, results, _ = demo_run
    assert all(isinstance(x, float) for x in _numbers_in(results))
    mag = results["magnification"]
    # The expected metric adds J_sigma^T J_sigma to the mean metric: never smaller.
    assert mag["log10_mf_expected_metric"]["max"] >= mag["log10_mf_mean_metric"]["max"]
    assert mag["std_at_codes_median"] < 0.5 * mag["std_far"]
    assert results["model"]["checkpoint_source"] == "trained"


def test_second_run_loads_the_cached_checkpoint(demo_run):
    out, first, _ = demo_run
    assert cli.main(["demo", "--out", str(out), "--quick", "--no-progress"]) == 0
    second = json.loads((out / "results.json").read_text())
    assert second["model"]["checkpoint_source"] == "loaded"
    assert "train VAE" not in second["timings"]
    assert second["model"]["final_elbo_loss"] == first["model"]["final_elbo_loss"]
    assert second["magnification"] == first["magnification"]


def test_cached_checkpoint_with_other_options_is_retrained(tmp_path, demo_run):
    out, _, _ = demo_run
    target = tmp_path / "other"
    target.mkdir()
    (target / "vae-quick.pt").write_bytes((out / "vae-quick.pt").read_bytes())
    assert cli.main(["demo", "--out", str(target), "--quick", "--no-progress", "--epochs", "2", "--std-epochs", "1"]) == 0
    results = json.loads((target / "results.json").read_text())
    assert results["model"]["checkpoint_source"] == "trained"
    assert re.search(r"<td>train VAE</td>", (target / "report.html").read_text())
