"""Report section "Fréchet means per class": geomstats' FrechetMean against Euclidean means."""

from typing import NamedTuple

import numpy as np
import torch
from geomstats.learning.frechet_mean import FrechetMean

from geomstats_pullback.demo.context import solver_warnings
from geomstats_pullback.demo.pairs import curve_length
from geomstats_pullback.demo.plots import image_mosaic, new_figure, scatter_codes


class FrechetResult(NamedTuple):
    """What :func:`compute_frechet` found.

    Attributes
    ----------
    numbers : dict
        For ``results.json``: means, Fréchet variances at both means, latent shifts per metric.
    euclidean : numpy.ndarray, shape=[n_classes, d]
    means : dict of str to numpy.ndarray, shape=[n_classes, d]
        Fréchet means under the ``"mean"`` and ``"expected"`` metric.
    images : numpy.ndarray, shape=[3, n_classes, 8, 8]
        Decoded Euclidean mean and both Fréchet means.
    max_iter : int
    """

    numbers: dict
    euclidean: np.ndarray
    means: dict
    images: np.ndarray
    max_iter: int


def frechet_variance(space, points, base_point):
    """Mean squared geodesic distance from each base point to its points.

    Distances are the data-space lengths of the discrete geodesics (as in
    the geodesics section): the same number from both ends, unlike the norm
    of an initial velocity read off a discrete path.

    Parameters
    ----------
    space : DecoderManifold
    points : torch.Tensor, shape=[n, C, d]
    base_point : torch.Tensor, shape=[C, d]

    Returns
    -------
    variance : torch.Tensor, shape=[C]
    """
    path = space.metric.log_solver.solve(points, base_point[None]).path  # [n, C, n_nodes, d]
    return (curve_length(space, path) ** 2).mean(dim=0)


def compute_frechet(ctx):
    """Per-class Fréchet means (batched over classes) under both metrics, from the Euclidean means.

    Parameters
    ----------
    ctx : Context

    Returns
    -------
    result : FrechetResult
    """
    config = ctx.config
    rng = np.random.default_rng(config.seed)
    classes = list(range(config.frechet_classes))
    n_points = config.frechet_points
    index = np.stack(
        [rng.choice(np.flatnonzero(ctx.labels == c), size=n_points, replace=False) for c in classes], axis=1
    )
    points = ctx.codes[index]  # [n_points, n_classes, d]: geomstats' batch layout
    euclidean = points.mean(dim=0)  # [n_classes, d]
    numbers = {"classes": classes, "n_points": n_points, "euclidean_mean": euclidean.tolist()}
    means = {}
    for name, space in ctx.spaces:
        estimator = FrechetMean(space, method="batch")
        estimator.set(init_point=euclidean, max_iter=config.frechet_iter, epsilon=1e-6)
        with solver_warnings() as caught:
            means[name] = estimator.fit(points).estimate_
        at_frechet = frechet_variance(space, points, means[name]).tolist()
        at_euclidean = frechet_variance(space, points, euclidean).tolist()
        numbers[name] = {
            "frechet_mean": means[name].tolist(),
            "variance_at_frechet_mean": at_frechet,
            "variance_at_euclidean_mean": at_euclidean,
            "latent_shift": (means[name] - euclidean).norm(dim=-1).tolist(),
            "unconverged_log_calls": len(caught),
            "n_improved": sum(f <= e for f, e in zip(at_frechet, at_euclidean)),
        }
    images = torch.stack([ctx.vae.decode(m) for m in (euclidean, means["mean"], means["expected"])])  # [3, C, 8, 8]
    means = {name: mean.numpy() for name, mean in means.items()}
    return FrechetResult(numbers, euclidean.numpy(), means, images.numpy(), config.frechet_iter)


def render_frechet(result, report, backdrop):
    """Figure and prose of the Fréchet section.

    Parameters
    ----------
    result : FrechetResult
    report : Report
    backdrop : Backdrop
    """
    numbers = result.numbers
    classes = numbers["classes"]
    fig, axes = new_figure(2, 1, width=5.2, height=4.6)
    ax = axes[0, 0]
    scatter_codes(ax, backdrop, size=2, alpha=0.3)
    ax.plot(*result.euclidean.T, "kx", markersize=8, label="Euclidean mean")
    for name, marker, color in (("mean", "o", "crimson"), ("expected", "D", "royalblue")):
        label = f"Fréchet, {name} metric"
        ax.plot(*result.means[name].T, marker, color=color, fillstyle="none", markersize=8, label=label)
    ax.legend(fontsize=7, loc="lower left")
    ax = axes[0, 1]
    ax.imshow(image_mosaic(result.images.reshape(-1, 8, 8), len(classes)), cmap="gray_r", vmin=0, vmax=1)
    ax.set_xticks([4 + 9 * i for i in range(len(classes))], [str(c) for c in classes])
    ax.set_yticks([4, 13, 22], ["Euclidean", "Fréchet (mean)", "Fréchet (expected)"])
    png = report.save_figure(fig, "frechet")
    table = []
    for i, c in enumerate(classes):
        row = [str(c)]
        for name in ("mean", "expected"):
            at_euclidean, at_frechet = (numbers[name][f"variance_at_{k}_mean"][i] for k in ("euclidean", "frechet"))
            row += [at_euclidean, at_frechet, "yes" if at_frechet <= at_euclidean else "NO"]
        table.append((*row, numbers["expected"]["latent_shift"][i]))
    report.add_section(
        "Fréchet means per class",
        paragraphs=[
            f"geomstats' FrechetMean (batched gradient descent, all classes at once) on {numbers['n_points']} codes "
            "per class, started from the Euclidean mean of the codes; every log is a batched discrete-geodesic "
            "solve. The Fréchet mean minimises the mean squared geodesic distance (the Fréchet variance), so "
            "its variance should be at most that of the Euclidean mean; distances here are the data-space "
            "lengths of the discrete geodesics. The descent improved on the Euclidean mean for "
            f"{numbers['mean']['n_improved']} of {len(classes)} classes under the mean metric and "
            f"{numbers['expected']['n_improved']} under the expected metric; where it did not, gradient descent "
            "with a step shared by all classes overshot, or the logs jumped between distinct geodesics "
            "(geodesics of a learned metric need not be unique). Log calls with unconverged pairs during the "
            f"descent: {numbers['mean']['unconverged_log_calls']} (mean metric), "
            f"{numbers['expected']['unconverged_log_calls']} (expected metric), of at most "
            f"{result.max_iter} each.",
        ],
        tables=[
            (
                (
                    "class",
                    "variance at Euclidean (mean metric)",
                    "at Fréchet (mean metric)",
                    "lower",
                    "at Euclidean (expected metric)",
                    "at Fréchet (expected metric)",
                    "lower",
                    "latent shift (expected)",
                ),
                table,
            )
        ],
        figures=[(png, "Euclidean and Fréchet means over the codes, and their decoded images.")],
    )
