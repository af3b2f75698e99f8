"""The demo's driver: build the context, compute every section, then render the report.

Data flow (each arrow an argument, nothing shared by side effect)::

    config -> context -> pairs -> geodesics -> stochastic (pairs, geodesics)
               context -> model, magnification, curvature, analogies, frechet, sampling, training
               context, pairs -> output_geometry
    results -> render_* (stochastic also gets magnification's grid) -> report.html
    results.numbers -> results.json
"""

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from geomstats_pullback.demo.analogies import compute_analogies, render_analogies
from geomstats_pullback.demo.context import build_context
from geomstats_pullback.demo.curvature import compute_curvature, render_curvature
from geomstats_pullback.demo.frechet import compute_frechet, render_frechet
from geomstats_pullback.demo.geodesics import (
    compute_geodesics,
    compute_stochastic,
    render_geodesics,
    render_stochastic,
)
from geomstats_pullback.demo.magnification import compute_magnification, render_magnification
from geomstats_pullback.demo.model import compute_model, render_model
from geomstats_pullback.demo.output_geometry import compute_output_geometry, render_output_geometry
from geomstats_pullback.demo.pairs import compute_pairs
from geomstats_pullback.demo.report import Report
from geomstats_pullback.demo.sampling import compute_sampling, render_sampling
from geomstats_pullback.demo.training import compute_training, render_training

MARKER = ".geomstats-pullback-demo"
TITLE = "Riemannian geometry of a VAE's latent space (geomstats-pullback demo)"
SECTIONS = (
    "model", "magnification", "geodesics", "stochastic", "curvature", "analogies", "frechet", "sampling", "training",
    "output_geometry",
)


def _json_ready(value):
    """``value`` with numpy scalars as Python numbers and non-finite floats as ``None``."""
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def compute(ctx, report, progress=None):
    """Every section's result, each step timed in ``report.timings``.

    Parameters
    ----------
    ctx : Context
    report : Report
        Only its :meth:`~Report.timed` is used.
    progress : tqdm, optional
        Advanced once per step.

    Returns
    -------
    results : dict of str to NamedTuple
        Section name to its ``compute_*`` result, in :data:`SECTIONS` order.
    """

    def step(name, compute_section, *args):
        if progress is not None:
            progress.set_postfix_str(name)
        with report.timed(name):
            result = compute_section(*args)
        if progress is not None:
            progress.update()
        return result

    model = step("model", compute_model, ctx)
    magnification = step("magnification", compute_magnification, ctx)
    pairs = step("pairs", compute_pairs, ctx)
    geodesics = step("geodesics", compute_geodesics, ctx, pairs)
    stochastic = step("stochastic", compute_stochastic, ctx, pairs, geodesics)
    curvature = step("curvature", compute_curvature, ctx)
    analogies = step("analogies", compute_analogies, ctx)
    frechet = step("frechet", compute_frechet, ctx)
    sampling = step("sampling", compute_sampling, ctx)
    training = step("training", compute_training, ctx)
    output_geometry = step("output_geometry", compute_output_geometry, ctx, pairs)
    return {
        "model": model,
        "magnification": magnification,
        "geodesics": geodesics,
        "stochastic": stochastic,
        "curvature": curvature,
        "analogies": analogies,
        "frechet": frechet,
        "sampling": sampling,
        "training": training,
        "output_geometry": output_geometry,
    }


def render(results, ctx, report):
    """Draw every section's figures and prose into ``report``.

    Parameters
    ----------
    results : dict of str to NamedTuple
        From :func:`compute`.
    ctx : Context
    report : Report
    """
    backdrop = ctx.backdrop
    render_model(results["model"], report, backdrop)
    render_magnification(results["magnification"], report, backdrop)
    render_geodesics(results["geodesics"], report, backdrop)
    render_stochastic(results["stochastic"], report, backdrop, results["magnification"])
    render_curvature(results["curvature"], report, backdrop)
    render_analogies(results["analogies"], report)
    render_frechet(results["frechet"], report, backdrop)
    render_sampling(results["sampling"], report, backdrop)
    render_training(results["training"], report)
    render_output_geometry(results["output_geometry"], report, backdrop)


def claim_output_dir(out, *, force=False):
    """Create ``out`` (parents included) and mark it as a demo output directory.

    A directory that already holds files is used only if it holds the marker
    file :data:`MARKER` of an earlier demo run, or if ``force`` is true: the
    demo never overwrites another program's ``results.json`` or
    ``report.html`` unasked.

    Parameters
    ----------
    out : str or os.PathLike
    force : bool

    Raises
    ------
    FileExistsError
        If ``out`` is a non-empty directory without the marker and ``force`` is false.
    OSError
        If ``out`` cannot be created.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    marker = out / MARKER
    if not force and not marker.is_file() and any(out.iterdir()):
        raise FileExistsError(
            f"{out} is not empty and is not the output of an earlier demo run (no {MARKER} file): "
            "pass another directory, or --force (force=True) to write into it anyway"
        )
    marker.write_text("Written by `geomstats-pullback demo`: this directory holds its output.\n", encoding="utf-8")


def run(config):
    """Run the demo and write ``report.html``, ``results.json`` and ``figures/`` under ``config.out``.

    Parameters
    ----------
    config : DemoConfig

    Returns
    -------
    results : dict
        The numbers of every section, ``timings`` in seconds and the resolved ``config``.

    Raises
    ------
    FileExistsError
        If ``config.out`` holds files and is not an earlier demo output (see
        :func:`claim_output_dir`), unless ``config.force``.
    """
    config = config.resolved()
    out = Path(config.out)
    claim_output_dir(out, force=config.force)
    report = Report(out, TITLE)
    bar = tqdm(total=len(SECTIONS) + 3, desc="demo", disable=not config.progress)
    bar.set_postfix_str("VAE")
    ctx = build_context(config, report)
    bar.update()
    results = compute(ctx, report, bar)
    bar.set_postfix_str("report")
    with report.timed("render"):
        render(results, ctx, report)
    bar.update()
    bar.close()
    numbers = {name: result.numbers for name, result in results.items()}
    numbers["timings"] = dict(report.timings)
    numbers["config"] = {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(config).items()}
    report.write()
    (out / "results.json").write_text(json.dumps(_json_ready(numbers), indent=2), encoding="utf-8")
    return numbers
