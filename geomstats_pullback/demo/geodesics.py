"""Report sections "Geodesics versus straight lines" and "Mean-only versus expected metric".

Both connect the same :class:`~geomstats_pullback.demo.pairs.Pairs`; the
stochastic section compares its geodesics with those of
:func:`compute_geodesics`, which it receives as an argument.
"""

from typing import NamedTuple

import numpy as np
import torch

from geomstats_pullback.demo.pairs import REFINE, Pairs, curve_length, decoder_std_along, geodesics, strip_images
from geomstats_pullback.demo.plots import draw_paths, heat_map, new_figure, scatter_codes, strips_figure


class GeodesicsResult(NamedTuple):
    """Geodesics of the mean metric against straight lines.

    Attributes
    ----------
    numbers : dict
        For ``results.json``: lengths, ratios, convergence per pair.
    pairs : Pairs
    path : torch.Tensor, shape=[n_pairs, n_nodes, d]
        Discrete geodesics of the mean metric.
    converged : numpy.ndarray of bool, shape=[n_pairs]
    strips : list of (str, numpy.ndarray of shape [n_images, 8, 8])
        Decoded images along each line and geodesic.
    """

    numbers: dict
    pairs: Pairs
    path: torch.Tensor
    converged: np.ndarray
    strips: list


class StochasticResult(NamedTuple):
    """Geodesics of the expected metric against the mean metric's and straight lines.

    Attributes
    ----------
    numbers : dict
        For ``results.json``: lengths under the expected metric, decoder std along the paths.
    paths : dict of str to torch.Tensor, shape=[n_pairs, n_nodes, d]
        ``"line"``, ``"mean"`` and ``"expected"`` paths.
    converged : numpy.ndarray of bool, shape=[n_pairs]
    strips : list of (str, numpy.ndarray of shape [n_images, 8, 8])
    names : list of str
    """

    numbers: dict
    paths: dict
    converged: np.ndarray
    strips: list
    names: list


def compute_geodesics(ctx, pairs):
    """Geodesic versus straight-line interpolation under the mean metric (Shao et al.).

    Parameters
    ----------
    ctx : Context
    pairs : Pairs

    Returns
    -------
    result : GeodesicsResult
    """
    space = ctx.mean_space
    geo, converged = geodesics(space, pairs.start, pairs.end)
    geo_length, line_length = curve_length(space, geo), curve_length(space, pairs.line)
    ratio = geo_length / line_length
    line_images, geo_images = strip_images(space, pairs.line), strip_images(space, geo)
    strips = [
        (f"{name}\n{kind}", images[i])
        for i, name in enumerate(pairs.names)
        for kind, images in (("line", line_images), ("geodesic", geo_images))
    ]
    numbers = {
        "pairs": pairs.names,
        "geodesic_length": geo_length.tolist(),
        "linear_length": line_length.tolist(),
        "ratio": ratio.tolist(),
        "converged": converged.tolist(),
        "mean_ratio": float(ratio.mean()),
        "n_nodes": ctx.config.nodes,
    }
    return GeodesicsResult(numbers, pairs, geo, converged, strips)


def render_geodesics(result, report, backdrop):
    """Figures and prose of the geodesics section.

    Parameters
    ----------
    result : GeodesicsResult
    report : Report
    backdrop : Backdrop
    """
    numbers, names = result.numbers, result.pairs.names
    fig, axes = new_figure(1, 1, width=6, height=5.4)
    ax = axes[0, 0]
    scatter_codes(ax, backdrop, size=2, alpha=0.35)
    draw_paths(ax, {"straight line": result.pairs.line, "geodesic, mean metric": result.path})
    for name, point in zip(names, result.pairs.start.numpy()):
        ax.annotate(name, point, fontsize=7, xytext=(3, 3), textcoords="offset points")
    paths_png = report.save_figure(fig, "geodesics")
    strips_png = report.save_figure(strips_figure(result.strips), "geodesic_strips")
    converged = result.converged
    table = [
        (name, lin, g, r, "yes" if c else "NO")
        for name, lin, g, r, c in zip(
            names, numbers["linear_length"], numbers["geodesic_length"], numbers["ratio"], converged
        )
    ]
    table.append(("mean", "", "", numbers["mean_ratio"], f"{int(converged.sum())}/{len(names)}"))
    report.add_section(
        "Geodesics versus straight lines (mean metric)",
        paragraphs=[
            f"Discrete geodesics with {numbers['n_nodes']} nodes (Shao et al. 2018) minimise the data-space energy "
            "of the decoded path, in one batched solve for all pairs. Lengths are measured in data space along "
            f"each latent polyline refined {REFINE} times. Shao et al. found the ratio geodesic/straight "
            f"close to 1 on image manifolds; here its mean is {numbers['mean_ratio']:.4g}.",
        ],
        tables=[(("pair", "straight length", "geodesic length", "ratio", "converged"), table)],
        figures=[
            (paths_png, "Straight lines (dashed) and geodesics of the mean metric over the codes."),
            (strips_png, "Decoded images along each straight line and geodesic, evenly spaced in time."),
        ],
    )


def compute_stochastic(ctx, pairs, mean_geodesics):
    """Mean-only versus expected metric: geodesics of the expected metric stay on the data.

    Parameters
    ----------
    ctx : Context
    pairs : Pairs
    mean_geodesics : GeodesicsResult
        The mean metric's geodesics between the same pairs.

    Returns
    -------
    result : StochasticResult
    """
    space = ctx.stochastic_space
    geo, converged = geodesics(space, pairs.start, pairs.end)
    paths = {"line": pairs.line, "mean": mean_geodesics.path, "expected": geo}
    lengths = {key: curve_length(space, path) for key, path in paths.items()}
    std = {key: decoder_std_along(ctx.vae, path) for key, path in paths.items()}
    ratio = lengths["expected"] / lengths["line"]
    images = {key: strip_images(ctx.mean_space, path) for key, path in paths.items()}
    strips = [(f"{name}\n{key}", images[key][i]) for i, name in enumerate(pairs.names) for key in paths]
    numbers = {
        "expected_geodesic_length": lengths["expected"].tolist(),
        "linear_length": lengths["line"].tolist(),
        "mean_geodesic_length": lengths["mean"].tolist(),
        "ratio": ratio.tolist(),
        "mean_ratio": float(ratio.mean()),
        "converged": converged.tolist(),
        "std_along_line": float(std["line"][0].mean()),
        "std_along_mean_geodesic": float(std["mean"][0].mean()),
        "std_along_expected_geodesic": float(std["expected"][0].mean()),
        "excess_std_line": std["line"][1].tolist(),
        "excess_std_mean_geodesic": std["mean"][1].tolist(),
        "excess_std_expected_geodesic": std["expected"][1].tolist(),
    }
    return StochasticResult(numbers, paths, converged, strips, pairs.names)


def render_stochastic(result, report, backdrop, magnification):
    """Figures and prose of the stochastic section.

    Parameters
    ----------
    result : StochasticResult
    report : Report
    backdrop : Backdrop
    magnification : MagnificationResult
        Its expected metric's grid is the figure's background.
    """
    numbers = result.numbers
    fig, axes = new_figure(1, 1, width=6.4, height=5.4)
    ax = axes[0, 0]
    heat_map(
        ax,
        magnification.expected,
        magnification.extent,
        backdrop,
        cmap="Greys",
        alpha=0.8,
        label="log10 sqrt(det G), expected metric",
        codes_size=1.5,
        codes_alpha=0.4,
    )
    labels = {"line": "straight line", "mean": "geodesic, mean metric", "expected": "geodesic, expected metric"}
    draw_paths(ax, {labels[key]: path for key, path in result.paths.items()})
    paths_png = report.save_figure(fig, "stochastic")
    strips_png = report.save_figure(strips_figure(result.strips), "stochastic_strips")
    columns = (
        "linear_length",
        "mean_geodesic_length",
        "expected_geodesic_length",
        "ratio",
        "excess_std_line",
        "excess_std_mean_geodesic",
        "excess_std_expected_geodesic",
    )
    table = [
        (name, *(numbers[key][i] for key in columns), "yes" if ok else "NO")
        for i, (name, ok) in enumerate(zip(result.names, result.converged))
    ]
    report.add_section(
        "Mean-only versus expected metric",
        paragraphs=[
            "The expected metric of the Gaussian decoder adds J_sigma^T J_sigma to the mean's metric "
            "(Arvanitidis et al. 2018). The decoder's standard deviation grows away from the codes, so "
            "leaving the data is expensive and geodesics of the expected metric follow the codes.",
            "Lengths below are measured under the expected metric. The excess std is the largest decoder "
            "standard deviation met along a path minus that at its end points: 0 for a path that stays on "
            "the data (the '(gap)' pairs were picked because their straight line climbs highest). Mean "
            "decoder std along the paths (lower: closer to the data): "
            "straight lines "
            f"{numbers['std_along_line']:.4g}, mean-metric geodesics {numbers['std_along_mean_geodesic']:.4g}, "
            f"expected-metric geodesics {numbers['std_along_expected_geodesic']:.4g}.",
        ],
        tables=[
            (
                (
                    "pair",
                    "length: straight",
                    "mean-metric geodesic",
                    "expected-metric geodesic",
                    "ratio",
                    "excess std: straight",
                    "mean-metric geodesic",
                    "expected-metric geodesic",
                    "converged",
                ),
                table,
            ),
            (
                ("lengths under the expected metric", "mean ratio geodesic/straight"),
                [("all pairs", numbers["mean_ratio"])],
            ),
        ],
        figures=[
            (paths_png, "Paths over the expected metric's magnification factor (dark: expensive)."),
            (strips_png, "Decoded images along the straight line, the mean-metric and the expected-metric geodesic."),
        ],
    )
