"""Report section "Curvature": sectional curvature at the codes (Gauss equation) and over the plane."""

from typing import NamedTuple

import geomstats.backend as gs
import numpy as np
import torch

from geomstats_pullback.curvature import sample_sectional_curvatures
from geomstats_pullback.demo.context import latent_grid
from geomstats_pullback.demo.plots import heat_map, new_figure

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


class CurvatureResult(NamedTuple):
    """What :func:`compute_curvature` found.

    Attributes
    ----------
    numbers : dict
        For ``results.json``: the length scale and statistics of ``K`` per metric.
    curvatures : dict of str to numpy.ndarray, shape=[n_points * n_planes]
        Sectional curvatures at the codes, ``"mean"`` and ``"expected"`` metric.
    grid : numpy.ndarray, shape=[grid, grid]
        ``K`` of the mean metric in the plane of coordinates 0 and 1.
    extent : tuple
        ``(x_min, x_max, y_min, y_max)`` of the grid.
    """

    numbers: dict
    curvatures: dict
    grid: np.ndarray
    extent: tuple


def _quantiles(values, qs=QUANTILES):
    return {f"q{int(100 * q):02d}": float(v) for q, v in zip(qs, np.quantile(values, qs))}


def compute_curvature(ctx):
    """Sectional curvature at sampled codes under both metrics, and of the mean metric on the grid.

    Parameters
    ----------
    ctx : Context

    Returns
    -------
    result : CurvatureResult
    """
    config = ctx.config
    rng = np.random.default_rng(config.seed)
    index = rng.choice(len(ctx.codes), size=min(config.curvature_points, len(ctx.codes)), replace=False)
    points = ctx.codes[index]
    n_planes = 1 if ctx.vae.latent_dim == 2 else 4
    gs.random.seed(config.seed)
    curvatures = {
        name: sample_sectional_curvatures(space.metric, points, n_planes=n_planes).curvatures.reshape(-1).numpy()
        for name, space in ctx.spaces
    }
    # K has units 1 / length^2; K L^2 with L the median distance between decoded codes.
    decoded = ctx.vae.decode(points).reshape(len(points), -1)
    scale = float(torch.cdist(decoded, decoded).median())
    n = config.grid
    grid, extent = latent_grid(ctx, n)
    e1, e2 = torch.eye(ctx.vae.latent_dim)[:2]
    grid_k = ctx.mean_space.metric.sectional_curvature(e1, e2, grid.reshape(n * n, -1)).reshape(n, n).numpy()
    numbers = {"scale": scale, "n_points": len(points)}
    for name, values in curvatures.items():
        numbers[name] = {
            "mean": float(values.mean()),
            **_quantiles(values),
            "median_abs": float(np.median(np.abs(values))),
            "median_abs_scaled": float(np.median(np.abs(values)) * scale**2),
            "fraction_negative": float((values < 0).mean()),
        }
    return CurvatureResult(numbers, curvatures, grid_k, extent)


def render_curvature(result, report, backdrop):
    """Figure and prose of the curvature section.

    Parameters
    ----------
    result : CurvatureResult
    report : Report
    backdrop : Backdrop
    """
    numbers = result.numbers
    fig, axes = new_figure(2, 1, width=5)
    ax = axes[0, 0]
    both = np.concatenate(list(result.curvatures.values()))
    bins = np.linspace(*np.quantile(both, [0.01, 0.99]), 50)
    for name, values in result.curvatures.items():
        ax.hist(np.clip(values, bins[0], bins[-1]), bins=bins, alpha=0.6, label=f"{name} metric")
    ax.axvline(0, color="k", linewidth=0.8)
    ax.set_xlabel("sectional curvature K at the codes")
    ax.set_ylabel("codes")
    ax.legend()
    limit = float(np.quantile(np.abs(result.grid), 0.95))
    heat_map(
        axes[0, 1],
        result.grid,
        result.extent,
        backdrop,
        cmap="RdBu_r",
        vmin=-limit,
        vmax=limit,
        label="K, mean metric (clipped at the 95% |K|)",
    )
    png = report.save_figure(fig, "curvature")
    keys = ("mean", "q05", "q50", "q95", "median_abs", "median_abs_scaled", "fraction_negative")
    rows = [(f"{name} metric", *(numbers[name][key] for key in keys)) for name in result.curvatures]
    report.add_section(
        "Curvature",
        paragraphs=[
            f"Sectional curvature at {numbers['n_points']} codes by the Gauss equation (second derivatives of "
            "the decoder only). K has units of 1/length^2; K L^2, with L = "
            f"{numbers['scale']:.3g} the median data-space distance between the decoded codes, says whether "
            "curvature matters at the scale of the data (|K| L^2 << 1: nearly flat, as Shao et al. found).",
        ],
        tables=[
            (
                ("metric", "mean K", "5%", "median", "95%", "median |K|", "median |K| L^2", "fraction K < 0"),
                rows,
            )
        ],
        figures=[(png, "Histogram of sectional curvatures at the codes; K of the mean metric over the latent plane.")],
    )
