"""Report section "Magnification factor": ``sqrt(det G)`` of both metrics and the decoder's std.

The expected metric's grid computed here is also the background of the
stochastic section's figure: :func:`compute_magnification` computes it once.
"""

import math
from typing import NamedTuple

import numpy as np
import torch

from geomstats_pullback.demo.context import latent_grid
from geomstats_pullback.demo.plots import heat_map, new_figure

CHUNK = 1024  # grid points per metric evaluation


class MagnificationResult(NamedTuple):
    """What :func:`compute_magnification` found.

    Attributes
    ----------
    numbers : dict
        For ``results.json``: summaries of the grids, std at and far from the codes.
    mean, expected : numpy.ndarray, shape=[grid, grid]
        ``log10 sqrt(det G)`` of the mean and the expected metric.
    std : numpy.ndarray, shape=[grid, grid]
        Decoder standard deviation, mean over pixels.
    extent : tuple
        ``(x_min, x_max, y_min, y_max)`` of the grids.
    """

    numbers: dict
    mean: np.ndarray
    expected: np.ndarray
    std: np.ndarray
    extent: tuple


def log10_magnification(space, points):
    """``log10 sqrt(det G)`` at latent points.

    Parameters
    ----------
    space : DecoderManifold
    points : torch.Tensor, shape=[..., d]

    Returns
    -------
    values : torch.Tensor, shape=[...]
    """
    flat = points.reshape(-1, points.shape[-1])
    values = [torch.linalg.det(space.metric.metric_matrix(chunk)) for chunk in torch.split(flat, CHUNK)]
    return (0.5 * torch.log10(torch.cat(values))).reshape(points.shape[:-1])


def _summary(values):
    return {"min": float(values.min()), "median": float(values.median()), "max": float(values.max())}


def compute_magnification(ctx):
    """Magnification factors of both metrics and the decoder's std on the latent grid.

    Parameters
    ----------
    ctx : Context

    Returns
    -------
    result : MagnificationResult
    """
    grid, extent = latent_grid(ctx, ctx.config.grid)
    mean_mf = log10_magnification(ctx.mean_space, grid)
    expected_mf = log10_magnification(ctx.stochastic_space, grid)
    std = ctx.vae.decoder_std(grid).mean(dim=(-1, -2))  # [n, n], mean over pixels
    codes_mf = log10_magnification(ctx.stochastic_space, ctx.codes)
    numbers = {
        "log10_mf_mean_metric": _summary(mean_mf),
        "log10_mf_expected_metric": {**_summary(expected_mf), "median_at_codes": float(codes_mf.median())},
        "std_at_codes_median": float(ctx.vae.decoder_std(ctx.codes).mean(dim=(-1, -2)).median()),
        "std_far": math.sqrt(1 / ctx.vae.zeta + ctx.vae.min_std**2),
    }
    return MagnificationResult(numbers, mean_mf.numpy(), expected_mf.numpy(), std.numpy(), extent)


def render_magnification(result, report, backdrop):
    """Figure and prose of the magnification section.

    Parameters
    ----------
    result : MagnificationResult
    report : Report
    backdrop : Backdrop
    """
    numbers = result.numbers
    fig, axes = new_figure(3, 1, width=4.4)
    panels = [
        (result.mean, "log10 sqrt(det G), mean metric"),
        (result.expected, "log10 sqrt(det G), expected metric"),
        (result.std, "decoder std (mean over pixels)"),
    ]
    for ax, (values, title) in zip(axes[0], panels):
        heat_map(ax, values, result.extent, backdrop)
        ax.set_title(title, fontsize=10)
    path = report.save_figure(fig, "magnification")
    rows = [
        ("mean metric", *numbers["log10_mf_mean_metric"].values()),
        ("expected metric", *list(numbers["log10_mf_expected_metric"].values())[:3]),
    ]
    report.add_section(
        "Magnification factor",
        paragraphs=[
            "The magnification factor sqrt(det G(z)) measures how much the decoder stretches a small "
            "latent area. With the mean decoder alone it is large where the decoded digits change fast. "
            "The expected metric adds the stretch of the standard deviation, which jumps from "
            f"{numbers['std_at_codes_median']:.3g} (median over the codes) to {numbers['std_far']:.3g} "
            "far from them: a wall around the data that geodesics avoid crossing.",
        ],
        tables=[(("log10 sqrt(det G) over the grid", "min", "median", "max"), rows)],
        figures=[(path, "Magnification factors on a latent grid, and the decoder's standard deviation.")],
    )
