"""The demo end to end in its --quick mode: report, figures, numbers, cache."""

import json

import numpy as np
import pytest
import torch

from geomstats_pullback import cli
from geomstats_pullback.demo.report import format_number
from geomstats_pullback.demo.run import MARKER

FIGURES = (
    "model",
    "magnification",
    "geodesics",
    "geodesic_strips",
    "stochastic",
    "stochastic_strips",
    "curvature",
    "analogies",
    "frechet",
    "sampling",
    "likely_geodesic",
    "likely_geodesic_strips",
    "training",
    "training_diagnostics_before",
    "training_diagnostics_isometry",
    "bernoulli_geodesics",
    "bernoulli_strips",
    "ensemble_variance",
)
# Discrete geodesics are measured on their refined latent polyline: that can exceed the
# discrete optimum's chord length by O(1 / n_nodes^2) of the length.
LENGTH_RTOL = 5e-3


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


@pytest.mark.slow
def test_report_and_figures_exist(demo_run):
    out, results, html = demo_run
    for name in FIGURES:
        png = out / "figures" / f"{name}.png"
        assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert f"figures/{name}.png" in html
    assert html.count("data:image/png;base64,") == len(FIGURES)  # self-contained
    assert (out / "vae-quick.pt").exists()
    assert (out / MARKER).is_file()  # later runs may write here; foreign directories are refused


@pytest.mark.slow
def test_report_shows_the_computed_numbers(demo_run):
    _, results, html = demo_run
    geo, sto, curv, ana, fre = (results[k] for k in ("geodesics", "stochastic", "curvature", "analogies", "frechet"))
    shown = [
        results["model"]["final_elbo_loss"],
        results["model"]["final_std_loss"],
        *results["magnification"]["log10_mf_mean_metric"].values(),
        *list(results["magnification"]["log10_mf_expected_metric"].values())[:3],
        *geo["geodesic_length"],
        *geo["linear_length"],
        *geo["ratio"],
        geo["mean_ratio"],
        *sto["expected_geodesic_length"],
        *sto["mean_geodesic_length"],
        *sto["ratio"],
        sto["mean_ratio"],
        *(curv[m][k] for m in ("mean", "expected") for k in ("mean", "q05", "q50", "q95", "median_abs", "median_abs_scaled")),
        *ana["source_change"],
        *ana["expected_change"],
        *ana["mean_change"],
        *fre["mean"]["variance_at_frechet_mean"],
        *fre["expected"]["variance_at_euclidean_mean"],
    ]
    for value in shown:
        assert format_number(value) in html, value
    for step, seconds in results["timings"].items():
        assert f"<td>{step}</td><td>{format_number(seconds)}</td>" in html


@pytest.mark.slow
def test_numbers_are_sane(demo_run):
    _, results, _ = demo_run
    assert all(isinstance(x, float) for x in _numbers_in(results))
    mag = results["magnification"]
    # The expected metric adds J_sigma^T J_sigma to the mean metric: never smaller.
    assert mag["log10_mf_expected_metric"]["max"] >= mag["log10_mf_mean_metric"]["max"]
    assert mag["std_at_codes_median"] < 0.5 * mag["std_far"]
    assert results["model"]["checkpoint_source"] == "trained"


@pytest.mark.slow
def test_geodesics_are_not_longer_than_straight_lines(demo_run):
    _, results, _ = demo_run
    geo, sto = results["geodesics"], results["stochastic"]
    assert len(geo["pairs"]) == 3 and geo["pairs"][-1].endswith("(gap)")
    assert all(geo["converged"]) and all(sto["converged"])
    for geodesic, line in zip(geo["geodesic_length"], geo["linear_length"]):
        assert 0 < geodesic <= line * (1 + LENGTH_RTOL)
    for geodesic, line in zip(sto["expected_geodesic_length"], sto["linear_length"]):
        assert 0 < geodesic <= line * (1 + LENGTH_RTOL)
    # Under the expected metric, its own geodesic is also not longer than the mean metric's.
    for expected, mean in zip(sto["expected_geodesic_length"], sto["mean_geodesic_length"]):
        assert expected <= mean * (1 + LENGTH_RTOL)


@pytest.mark.slow
def test_expected_metric_geodesics_stay_on_the_data(demo_run):
    """On the pair picked because its straight line crosses uncertain ground, the expected metric's
    geodesic climbs less in decoder std than the line, and than the mean metric's geodesic."""
    _, results, _ = demo_run
    sto = results["stochastic"]
    assert sto["excess_std_line"][-1] > 0.05  # the gap is there
    assert sto["excess_std_expected_geodesic"][-1] < 0.5 * sto["excess_std_line"][-1]
    assert sto["excess_std_expected_geodesic"][-1] < sto["excess_std_mean_geodesic"][-1]
    assert sto["ratio"][-1] < 0.9  # and is much shorter under the expected metric


@pytest.mark.slow
def test_frechet_means_do_not_increase_the_variance(demo_run):
    _, results, _ = demo_run
    for metric in ("mean", "expected"):
        numbers = results["frechet"][metric]
        for at_frechet, at_euclidean in zip(numbers["variance_at_frechet_mean"], numbers["variance_at_euclidean_mean"]):
            assert at_frechet <= at_euclidean * (1 + 1e-6)


@pytest.mark.slow
def test_curvature_and_analogies_are_reported(demo_run):
    _, results, _ = demo_run
    curv = results["curvature"]
    assert curv["n_points"] == 24 and curv["scale"] > 0
    for metric in ("mean", "expected"):
        stats = curv[metric]
        assert stats["q05"] <= stats["q50"] <= stats["q95"]
        assert 0 <= stats["fraction_negative"] <= 1
    ana = results["analogies"]
    assert len(ana["analogies"]) == 1
    for key in ("linear_result", "mean_result", "expected_result"):
        assert all(abs(x) < 1e3 for point in ana[key] for x in point)


# Smallest sizes: the cache tests only need the model section.
TINY = ["--pairs", "1", "--gap-pairs", "0", "--grid", "4", "--curvature-points", "4", "--nodes", "5", "--analogies", "1",
        "--frechet-classes", "1", "--frechet-points", "2", "--frechet-iter", "1", "--exp-steps", "2",
        "--training-points", "4"]


@pytest.mark.slow
def test_second_run_loads_the_cached_checkpoint(demo_run):
    out, first, _ = demo_run
    assert cli.main(["demo", "--out", str(out), "--quick", "--no-progress", *TINY]) == 0
    second = json.loads((out / "results.json").read_text())
    assert second["model"]["checkpoint_source"] == "loaded"
    assert "train VAE" not in second["timings"]
    assert second["model"]["final_elbo_loss"] == first["model"]["final_elbo_loss"]


@pytest.mark.slow
def test_cached_checkpoint_with_other_options_is_retrained(tmp_path, demo_run):
    out, _, _ = demo_run
    target = tmp_path / "other"
    target.mkdir()
    (target / "vae-quick.pt").write_bytes((out / "vae-quick.pt").read_bytes())
    (target / MARKER).write_bytes((out / MARKER).read_bytes())  # an earlier demo output, else refused
    argv = ["demo", "--out", str(target), "--quick", "--no-progress", "--epochs", "2", "--std-epochs", "1", *TINY]
    assert cli.main(argv) == 0
    results = json.loads((target / "results.json").read_text())
    assert results["model"]["checkpoint_source"] == "trained"
    assert "<td>train VAE</td>" in (target / "report.html").read_text()


@pytest.mark.slow
def test_demo_geodesics_keep_the_shorter_of_the_straight_and_graph_starts():
    """Across a bump the straight start converges over it; the codes' graph start goes around, shorter."""
    import geomstats_pullback as gp
    from geomstats_pullback.demo.pairs import geodesics

    def bump(z):
        return torch.cat([z, 1.5 * torch.exp(-(z**2).sum(-1, keepdim=True) / 0.1)], dim=-1)

    axis = torch.linspace(-1.5, 1.5, 25, dtype=torch.float64)
    codes = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
    space = gp.DecoderManifold(bump, latent_dim=2, region=codes)
    space.metric.log_solver = gp.GeodesicBVPSolver(space, shooting=False)
    start = torch.tensor([[-1.0, 0.0], [-1.0, 1.0]], dtype=torch.float64)
    end = torch.tensor([[1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    over = space.metric.log_solver.solve(end, start).path  # straight start only
    path, converged = geodesics(space, start, end)
    assert converged.all()
    assert float(gp.path_length(space, path[0])) < 0.8 * float(gp.path_length(space, over[0]))
    assert float(path[0, :, 1].abs().max()) > 0.3  # around the bump
    torch.testing.assert_close(path[1], over[1], atol=1e-6, rtol=0)  # away from it both starts agree


@pytest.mark.slow
def test_each_regulariser_moves_its_own_measure_below_the_control(demo_run):
    """Fine-tuned with a penalty, the decoder's measured geometry beats the same fine-tuning without it."""
    _, results, html = demo_run
    runs = results["training"]
    control = runs["no penalty"]
    assert runs["isometry distortion"]["global_distortion"] < 0.9 * control["global_distortion"]
    assert runs["log-magnification variance"]["var_log_magnification"] < 0.9 * control["var_log_magnification"]
    assert runs["curvature"]["median_abs_curvature"] < 0.9 * control["median_abs_curvature"]
    for name in ("before", "no penalty", "isometry distortion", "curvature", "geodesic ratio"):
        assert format_number(runs[name]["global_distortion"]) in html
        assert format_number(runs[name]["reconstruction_mse"]) in html


@pytest.mark.slow
def test_bernoulli_section_is_reported(demo_run):
    _, results, html = demo_run
    numbers = results["output_geometry"]
    assert numbers["n_members"] == 3 and all(all(flags) for flags in numbers["converged"].values())
    for metric, kinds in numbers["lengths"].items():
        for kind, lengths in kinds.items():
            for value in lengths:
                assert format_number(value) in html, (metric, kind, value)
    for value in numbers["variance_along_line"] + numbers["variance_along_ensemble_geodesic"]:
        assert format_number(value) in html


@pytest.mark.slow
def test_output_geometry_section_on_a_tiny_config(tmp_path):
    """Euclidean-output and Fisher-Rao geodesics of a Bernoulli decoder, and an ensemble's variance."""
    import math

    from geomstats_pullback.demo.config import DemoConfig
    from geomstats_pullback.demo.context import build_context
    from geomstats_pullback.demo.output_geometry import binarise, compute_output_geometry
    from geomstats_pullback.demo.pairs import REFINE, compute_pairs
    from geomstats_pullback.demo.report import Report

    config = DemoConfig(
        out=tmp_path, quick=True, progress=False, epochs=3, std_epochs=1, pairs=2, gap_pairs=1, nodes=9, grid=4,
        bernoulli_epochs=2, ensemble_members=2,
    ).resolved()
    ctx = build_context(config, Report(tmp_path, "tiny"))
    pairs = compute_pairs(ctx)
    result = compute_output_geometry(ctx, pairs)
    numbers, lengths = result.numbers, result.numbers["lengths"]
    assert binarise(ctx.images).shape == (len(ctx.images), 64)
    assert set(np.unique(binarise(ctx.images))) == {0.0, 1.0}
    assert all(all(flags) for flags in numbers["converged"].values())
    for metric, geodesic in (("euclidean", "euclidean"), ("fisher_rao", "fisher_rao"), ("ensemble", "ensemble")):
        for short, line in zip(lengths[metric][geodesic], lengths[metric]["line"]):
            assert 0 < short <= line * (1 + LENGTH_RTOL), metric
    # Each metric's own geodesic is not longer under it than the other metric's geodesic.
    for own, other in zip(lengths["fisher_rao"]["fisher_rao"], lengths["fisher_rao"]["euclidean"]):
        assert own <= other * (1 + LENGTH_RTOL)
    for own, other in zip(lengths["euclidean"]["euclidean"], lengths["euclidean"]["fisher_rao"]):
        assert own <= other * (1 + LENGTH_RTOL)
    # Per pixel the Fisher information p (1 - p) <= 1/4 divides the Euclidean metric (dp)^2 = (p (1 - p))^2 (dl)^2:
    # G_euclidean <= G_fisher_rao / 4, so sqrt(det G) is at least 4^(d/2) = 4 times smaller (d = 2).
    gap = result.magnification["fisher_rao"] - result.magnification["euclidean"]
    assert float(gap.min()) >= math.log10(4) - 1e-6
    # The variance along the paths, against the members' probabilities at the discrete nodes.
    probabilities = torch.stack([torch.sigmoid(net(result.paths["line"])) for net in result.members])
    expected = probabilities.var(0, unbiased=False).sum(-1)  # [n_pairs, n_nodes]
    np.testing.assert_allclose(result.variance["line"][:, ::REFINE], expected.numpy(), rtol=1e-12, atol=1e-15)
    assert (result.variance["ensemble"] >= 0).all() and result.variance["ensemble"].shape == result.variance["line"].shape
