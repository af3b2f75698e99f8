"""Report section "Analogies by parallel transport": ``a : a' :: b : ?`` (Shao et al.)."""

import math
from typing import NamedTuple

import numpy as np
import torch

from geomstats_pullback.demo.context import solver_warnings
from geomstats_pullback.demo.pairs import class_core, geodesics
from geomstats_pullback.demo.plots import new_figure
from geomstats_pullback.paths import decoded_path
from geomstats_pullback.analogies import analogy

ANALOGY_CLASSES = ((1, 7), (0, 6), (3, 5), (4, 9), (2, 8), (7, 1))
COLUMNS = ("a", "a'", "b", "b + a' - a", "mean metric", "expected metric")


class AnalogiesResult(NamedTuple):
    """What :func:`compute_analogies` found.

    Attributes
    ----------
    numbers : dict
        For ``results.json``: image changes, decoder std and answers per analogy.
    images : numpy.ndarray, shape=[n_analogies, len(COLUMNS), 8, 8]
        Decoded ``a, a', b`` and the three answers ``b'``.
    std_far : float
        Decoder std far from the data.
    """

    numbers: dict
    images: np.ndarray
    std_far: float


def class_extremes(ctx, label):
    """Codes of ``label`` at both ends of the class's main latent axis (5% and 95% of the projections).

    Parameters
    ----------
    ctx : Context
    label : int

    Returns
    -------
    low, high : torch.Tensor, shape=[d]
    """
    index = class_core(ctx, label)
    codes = ctx.codes[index].numpy()
    centred = codes - codes.mean(0)
    axis = np.linalg.svd(centred, full_matrices=False)[2][0]
    projection = centred @ axis
    low, high = np.quantile(projection, [0.05, 0.95])
    return ctx.codes[index[np.argmin(np.abs(projection - low))]], ctx.codes[index[np.argmin(np.abs(projection - high))]]


def _image_change(space, x, y):
    """``|f(y) - f(x)|`` for codes ``x, y [n, d]`` under the mean decoder ``f``: ``[n]``."""
    decoded = decoded_path(space.metric, torch.stack([x, y], dim=-2))  # [n, 2, D]
    return (decoded[:, 1] - decoded[:, 0]).norm(dim=-1)


def compute_analogies(ctx):
    """``a : a' :: b : ?`` by parallel transport of ``log_a a'`` to ``b``, under both metrics.

    Parameters
    ----------
    ctx : Context

    Returns
    -------
    result : AnalogiesResult
    """
    triples = []
    for i in range(ctx.config.analogies):
        source, target = ANALOGY_CLASSES[i % len(ANALOGY_CLASSES)]
        a, a_prime = class_extremes(ctx, source)
        b = ctx.codes[class_core(ctx, target)].median(dim=0).values
        triples.append((f"{source} / {target}", a, a_prime, b))
    names = [t[0] for t in triples]
    a, a_prime, b = (torch.stack([t[k] for t in triples]) for k in (1, 2, 3))
    answers = {"linear": b + (a_prime - a)}
    converged = {}
    for name, space in ctx.spaces:
        path, path_converged = geodesics(space, a, b)  # transport along the discrete geodesic a -> b
        with solver_warnings() as caught:  # from log_a(a') inside analogy
            answers[name] = analogy(space.metric, a, a_prime, b, path=path)
        converged[name] = bool(path_converged.all()) and not caught

    numbers = {
        "analogies": names,
        "source_change": _image_change(ctx.mean_space, a, a_prime).tolist(),
        "solves_converged": converged,
    }
    for key, b_prime in answers.items():
        numbers[f"{key}_change"] = _image_change(ctx.mean_space, b, b_prime).tolist()
        numbers[f"{key}_std_at_result"] = ctx.vae.decoder_std(b_prime).mean(dim=(-1, -2)).tolist()
        numbers[f"{key}_result"] = b_prime.tolist()
    points = (a, a_prime, b, answers["linear"], answers["mean"], answers["expected"])
    images = torch.stack([ctx.vae.decode(p) for p in points], dim=1).numpy()  # [n, 6, 8, 8]
    return AnalogiesResult(numbers, images, math.sqrt(1 / ctx.vae.zeta + ctx.vae.min_std**2))


def render_analogies(result, report):
    """Figure and prose of the analogies section.

    Parameters
    ----------
    result : AnalogiesResult
    report : Report
    """
    numbers = result.numbers
    names = numbers["analogies"]
    fig, axes = new_figure(len(COLUMNS), len(names), width=1.25, height=1.35)
    for i, name in enumerate(names):
        for j, label in enumerate(COLUMNS):
            ax = axes[i, j]
            ax.imshow(result.images[i, j], cmap="gray_r", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(label, fontsize=8)
        axes[i, 0].set_ylabel(name, fontsize=8)
    png = report.save_figure(fig, "analogies")
    keys = (
        "source_change",
        "linear_change",
        "mean_change",
        "expected_change",
        "mean_std_at_result",
        "expected_std_at_result",
    )
    rows = [(name, *(numbers[key][i] for key in keys)) for i, name in enumerate(names)]
    converged = numbers["solves_converged"]
    report.add_section(
        "Analogies by parallel transport",
        paragraphs=[
            "For each row, a and a' are two codes of one digit at the ends of its cluster's main axis (a change "
            "of style), b a typical code of another digit. The change v = log_a(a') is parallel-transported "
            "along the discrete geodesic from a to b and applied at b: b' = exp_b(PT(v)). The straight-line "
            "analogy b + a' - a is shown for comparison. Decoder std at b' says whether it stayed on the data "
            f"(std far from the data: {result.std_far:.3g}). All geodesic solves converged: "
            + ", ".join(f"{name} metric {'yes' if ok else 'NO'}" for name, ok in converged.items())
            + ".",
        ],
        tables=[
            (
                (
                    "classes (a / b)",
                    "|f(a') - f(a)|",
                    "|f(b') - f(b)| linear",
                    "mean metric",
                    "expected metric",
                    "std at b' (mean)",
                    "std at b' (expected)",
                ),
                rows,
            )
        ],
        figures=[(png, "Analogies: a, a', b and the three answers b'.")],
    )
