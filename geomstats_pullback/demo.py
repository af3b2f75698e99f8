"""The demo behind ``geomstats-pullback demo``: a VAE on scikit-learn's digits, its geometry, a report.

:func:`run` trains (or loads) a :class:`~geomstats_pullback.models.VAE`,
then runs one small function per report section. Each section computes its
numbers, draws its figures and returns the numbers, which :func:`run` also
writes to ``results.json`` next to ``report.html``.
"""

import contextlib
import copy
import dataclasses
import json
import logging
import math
import warnings
from pathlib import Path

import geomstats.backend as gs
import numpy as np
import torch
from geomstats.learning.frechet_mean import FrechetMean
from sklearn.datasets import load_digits
from tqdm.auto import tqdm

from geomstats_pullback.curvature import sample_sectional_curvatures
from geomstats_pullback.errors import ConvergenceWarning
from geomstats_pullback.geodesics import GeodesicBVPSolver, GeodesicIVPSolver
from geomstats_pullback.manifold import DecoderManifold
from geomstats_pullback.models import VAE
from geomstats_pullback.paths import linear_path, path_length
from geomstats_pullback.report import Report, new_figure
from geomstats_pullback.analogies import analogy

logger = logging.getLogger(__name__)

EPS = 1e-8  # Tikhonov term of the demo's metrics (see latent_space)
NEWTON_ITER = 100  # per level of the discrete geodesic solver: the paths through gaps need them


@dataclasses.dataclass
class DemoConfig:
    """Options of the demo (the command line's, see ``geomstats-pullback demo --help``).

    ``None`` for a size option means the default of the mode (full or quick).
    """

    out: Path
    checkpoint: Path | None = None
    retrain: bool = False
    quick: bool = False
    latent_dim: int = 2
    epochs: int | None = None
    std_epochs: int | None = None
    pairs: int | None = None
    gap_pairs: int | None = None
    grid: int | None = None
    curvature_points: int | None = None
    nodes: int | None = None
    analogies: int | None = None
    frechet_classes: int | None = None
    frechet_points: int | None = None
    frechet_iter: int | None = None
    exp_steps: int | None = None
    seed: int = 0
    progress: bool = True

    FULL = {
        "epochs": 300,
        "std_epochs": 100,
        "pairs": 6,
        "gap_pairs": 2,
        "grid": 60,
        "curvature_points": 300,
        "nodes": 33,
        "analogies": 4,
        "frechet_classes": 10,
        "frechet_points": 12,
        "frechet_iter": 8,
        "exp_steps": 6,
    }
    QUICK = {
        "epochs": 25,
        "std_epochs": 15,
        "pairs": 2,
        "gap_pairs": 1,
        "grid": 16,
        "curvature_points": 24,
        "nodes": 17,
        "analogies": 1,
        "frechet_classes": 2,
        "frechet_points": 4,
        "frechet_iter": 3,
        "exp_steps": 3,
    }

    def resolved(self):
        """A copy with every ``None`` size replaced by the mode's default."""
        defaults = self.QUICK if self.quick else self.FULL
        values = {k: (v if v is not None else defaults.get(k)) for k, v in dataclasses.asdict(self).items()}
        return dataclasses.replace(self, **values)

    @property
    def checkpoint_path(self):
        """Where the trained VAE is cached."""
        if self.checkpoint is not None:
            return Path(self.checkpoint)
        return Path(self.out) / ("vae-quick.pt" if self.quick else "vae.pt")


@dataclasses.dataclass
class Context:
    """What the sections share."""

    config: DemoConfig
    vae: VAE
    images: np.ndarray  # [n, 8, 8] in [0, 1]
    labels: np.ndarray  # [n]
    codes: torch.Tensor  # [n, d], posterior means
    mean_space: DecoderManifold  # metric J_mu^T J_mu
    stochastic_space: DecoderManifold  # metric J_mu^T J_mu + J_sigma^T J_sigma
    low: np.ndarray  # [d], plotting box
    high: np.ndarray  # [d]
    pairs: dict | None = None  # set by section_geodesics, read by section_stochastic


def load_data():
    """Digits images scaled to ``[0, 1]`` and their labels (scikit-learn, no download).

    Returns
    -------
    images : numpy.ndarray, shape=[1797, 8, 8]
    labels : numpy.ndarray, shape=[1797]
    """
    digits = load_digits()
    return digits.images / 16.0, digits.target


def get_vae(config, images, report):
    """Load the cached VAE if it was trained with these options, else train and cache it.

    An explicit ``--checkpoint`` that exists is always loaded (its options win).
    """
    wanted = VAE(
        latent_dim=config.latent_dim,
        n_epochs=config.epochs,
        std_epochs=config.std_epochs,
        seed=config.seed,
        progress=config.progress,
    )
    path = config.checkpoint_path
    if path.exists() and not config.retrain:
        vae = VAE.load(path, progress=config.progress)
        if config.checkpoint is not None or vae.get_params() == wanted.get_params():
            logger.info("Loaded the VAE from %s", path)
            return vae, "loaded"
        logger.info("%s was trained with other options: retraining", path)
    with report.timed("train VAE"):
        vae = wanted.fit(images)
    path.parent.mkdir(parents=True, exist_ok=True)
    vae.save(path)
    return vae, "trained"


def latent_space(decoder, codes, config):
    """The latent manifold of ``decoder``, sampling among ``codes``, with the demo's solvers.

    Discrete geodesics (the BVP solver without its shooting refinement): the
    demo needs geodesic paths and lengths, which the discrete solution gives
    directly, and no ``exp`` call; ``log`` is then accurate to
    ``O(1 / n_nodes^4)`` (relative). ``exp`` takes
    ``config.exp_steps`` eighth-order steps: the demo shoots only short
    vectors (Fréchet-mean steps, analogies). The metric gets a Tikhonov term
    ``EPS * I``: far from the data the sigmoid output saturates and ``J``
    loses rank, where a geodesic may wander.
    """
    space = DecoderManifold(decoder, codes.shape[-1], region=codes, metric_kwargs={"eps": EPS})
    space.metric.exp_solver = GeodesicIVPSolver(space, n_steps=config.exp_steps)
    space.metric.log_solver = GeodesicBVPSolver(space, n_nodes=config.nodes, shooting=False, max_iter=NEWTON_ITER)
    return space


def latent_box(codes, margin=0.15):
    """Bounding box of the codes, widened by ``margin`` of its size on each side."""
    codes = np.asarray(codes)
    low, high = codes.min(0), codes.max(0)
    pad = margin * (high - low)
    return low - pad, high + pad


def latent_grid(ctx, n):
    """Points of an ``n x n`` grid over the box in latent coordinates 0 and 1.

    Other coordinates (``latent_dim > 2``) are fixed at the codes' mean.

    Returns
    -------
    points : torch.Tensor, shape=[n, n, d]
        ``points[i, j]`` has coordinate 0 from column ``j`` and 1 from row ``i``.
    extent : tuple
        ``(x_min, x_max, y_min, y_max)`` for ``imshow``.
    """
    xs = np.linspace(ctx.low[0], ctx.high[0], n)
    ys = np.linspace(ctx.low[1], ctx.high[1], n)
    points = np.tile(ctx.codes.mean(0).numpy(), (n, n, 1))
    points[..., 0], points[..., 1] = np.meshgrid(xs, ys)
    return torch.as_tensor(points), (xs[0], xs[-1], ys[0], ys[-1])


def scatter_codes(ax, ctx, *, size=4, alpha=0.8, legend=True):
    """Latent codes coloured by digit class, on ``ax``."""
    codes = ctx.codes.numpy()
    points = ax.scatter(codes[:, 0], codes[:, 1], c=ctx.labels, cmap="tab10", s=size, alpha=alpha, vmin=-0.5, vmax=9.5)
    ax.set_xlim(ctx.low[0], ctx.high[0])
    ax.set_ylim(ctx.low[1], ctx.high[1])
    ax.set_aspect("equal")
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    if legend:
        ax.figure.colorbar(points, ax=ax, ticks=range(10), label="digit")
    return points


def image_mosaic(images, n_cols):
    """Tile images ``[n, h, w]`` into one array, row by row, one-pixel gaps."""
    images = np.asarray(images)
    n, h, w = images.shape
    n_rows = math.ceil(n / n_cols)
    mosaic = np.zeros((n_rows * (h + 1) - 1, n_cols * (w + 1) - 1))
    for k, image in enumerate(images):
        i, j = divmod(k, n_cols)
        mosaic[i * (h + 1) : i * (h + 1) + h, j * (w + 1) : j * (w + 1) + w] = image
    return mosaic


# ---------------------------------------------------------------- sections


def section_model(ctx, report, source):
    """Training curves, latent scatter and the decoded latent plane."""
    vae, config = ctx.vae, ctx.config
    history = vae.history_
    fig, axes = new_figure(3, 1, width=4.6)
    ax = axes[0, 0]
    ax.plot(history["elbo_loss"], label="stage 1: -ELBO")
    if history["std_loss"]:
        ax.plot(history["std_loss"], label="stage 2: Gaussian NLL")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss per sample")
    curves = history["elbo_loss"][min(5, len(history["elbo_loss"]) - 1) :] + history["std_loss"]
    ax.set_ylim(min(curves) - 5, max(curves) + 5)  # the first epochs would flatten the rest
    ax.legend()
    scatter_codes(axes[0, 1], ctx)
    axes[0, 1].set_title("latent codes")
    n = 15
    grid, _ = latent_grid(ctx, n)
    decoded = vae.decode(grid.reshape(n * n, -1)).numpy()  # rows: z_2 ascending
    mosaic = image_mosaic(decoded.reshape(n, n, 8, 8)[::-1].reshape(n * n, 8, 8), n)
    axes[0, 2].imshow(mosaic, cmap="gray_r", vmin=0, vmax=1)
    axes[0, 2].set_axis_off()
    axes[0, 2].set_title(f"decoded means, {n}x{n} latent grid\n($z_1$ to the right, $z_2$ up)", fontsize=10)
    path = report.save_figure(fig, "model")
    numbers = {
        "n_images": len(ctx.images),
        "latent_dim": vae.latent_dim,
        "final_elbo_loss": history["elbo_loss"][-1],
        "final_std_loss": history["std_loss"][-1] if history["std_loss"] else float("nan"),
        "noise_std": vae.noise_std_,
        "checkpoint": str(config.checkpoint_path),
        "checkpoint_source": source,
    }
    report.add_section(
        "The model",
        paragraphs=[
            f"A VAE with a {vae.latent_dim}-dimensional latent space, {source} "
            f"({config.checkpoint_path}), on {len(ctx.images)} digit images (8x8, scikit-learn's "
            "load_digits). Stage 1 trains the encoder and the mean decoder on the ELBO; stage 2 fits "
            "the RBF standard deviation network (centres from k-means on the codes).",
        ],
        tables=[
            (
                ("quantity", "value"),
                [
                    ("final -ELBO per sample (stage 1)", numbers["final_elbo_loss"]),
                    ("final Gaussian NLL per sample (stage 2)", numbers["final_std_loss"]),
                    ("stage 1 noise level", numbers["noise_std"]),
                ],
            )
        ],
        figures=[(path, "Training losses, latent codes coloured by class, decoded means on a latent grid.")],
    )
    return numbers


def _log10_magnification(space, points):
    """``log10 sqrt(det G)`` at ``points [..., d]``."""
    flat = points.reshape(-1, points.shape[-1])
    det = torch.linalg.det(space.metric.metric_matrix(flat))
    return (0.5 * torch.log10(det)).reshape(points.shape[:-1])


def section_magnification(ctx, report):
    """Magnification factor ``sqrt(det G)`` of the mean and expected metrics, and the decoder's std."""
    n = ctx.config.grid
    grid, extent = latent_grid(ctx, n)
    chunks = torch.split(grid.reshape(n * n, -1), 1024)
    mean_mf = torch.cat([_log10_magnification(ctx.mean_space, c) for c in chunks]).reshape(n, n)
    stoch_mf = torch.cat([_log10_magnification(ctx.stochastic_space, c) for c in chunks]).reshape(n, n)
    std = ctx.vae.decoder_std(grid).mean(dim=(-1, -2))  # [n, n], mean over pixels
    fig, axes = new_figure(3, 1, width=4.4)
    panels = [
        (mean_mf, "log10 sqrt(det G), mean metric"),
        (stoch_mf, "log10 sqrt(det G), expected metric"),
        (std, "decoder std (mean over pixels)"),
    ]
    for ax, (values, title) in zip(axes[0], panels):
        image = ax.imshow(values.numpy(), origin="lower", extent=extent, cmap="viridis")
        fig.colorbar(image, ax=ax)
        scatter_codes(ax, ctx, size=1, alpha=0.25, legend=False)
        ax.set_title(title, fontsize=10)
    path = report.save_figure(fig, "magnification")
    codes_mf = _log10_magnification(ctx.stochastic_space, ctx.codes)
    numbers = {
        "log10_mf_mean_metric": {
            "min": float(mean_mf.min()),
            "median": float(mean_mf.median()),
            "max": float(mean_mf.max()),
        },
        "log10_mf_expected_metric": {
            "min": float(stoch_mf.min()),
            "median": float(stoch_mf.median()),
            "max": float(stoch_mf.max()),
            "median_at_codes": float(codes_mf.median()),
        },
        "std_at_codes_median": float(ctx.vae.decoder_std(ctx.codes).mean(dim=(-1, -2)).median()),
        "std_far": math.sqrt(1 / ctx.vae.zeta + ctx.vae.min_std**2),
    }
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
    return numbers


# ---------------------------------------------------------------- geodesics

CLASS_PAIRS = ((0, 6), (1, 7), (3, 8), (4, 9), (2, 5), (0, 3), (5, 9), (2, 7))
GAP_CANDIDATES = 512  # random pairs searched for lines through uncertain regions
REFINE = 8  # each segment of a discrete path is split in REFINE to measure lengths


def class_core(ctx, label):
    """Indices of the codes of ``label`` at most the median distance from the class's median code."""
    index = np.flatnonzero(ctx.labels == label)
    codes = ctx.codes[index].numpy()
    dist = np.linalg.norm(codes - np.median(codes, axis=0), axis=1)
    return index[dist <= np.median(dist)]


def choose_pairs(ctx):
    """Pairs of codes to connect, seeded.

    ``config.pairs`` pairs of typical codes of two digits (:data:`CLASS_PAIRS`),
    then ``config.gap_pairs`` pairs whose straight line crosses the most
    uncertain region: among random pairs of typical codes of different
    digits, those whose line climbs highest in decoder standard deviation
    above its end points.

    Returns
    -------
    start, end : torch.Tensor, shape=[n_pairs, d]
    names : list of str
    """
    rng = np.random.default_rng(ctx.config.seed)
    class_pairs = [CLASS_PAIRS[i % len(CLASS_PAIRS)] for i in range(ctx.config.pairs)]
    starts = [rng.choice(class_core(ctx, a)) for a, _ in class_pairs]
    ends = [rng.choice(class_core(ctx, b)) for _, b in class_pairs]
    names = [f"{a} to {b}" for a, b in class_pairs]
    if ctx.config.gap_pairs:
        typical = np.concatenate([class_core(ctx, label) for label in range(10)])
        first, second = rng.choice(typical, size=(2, GAP_CANDIDATES))
        excess = decoder_std_along(ctx, linear_path(ctx.codes[first], ctx.codes[second], 9))[1]  # [C]
        excess[torch.as_tensor(ctx.labels[first] == ctx.labels[second])] = -1.0
        for k in torch.argsort(excess, descending=True)[: ctx.config.gap_pairs].tolist():
            starts.append(first[k])
            ends.append(second[k])
            names.append(f"{ctx.labels[first[k]]} to {ctx.labels[second[k]]} (gap)")
    return ctx.codes[starts], ctx.codes[ends], names


def refine_path(path, factor=REFINE):
    """Split each segment of latent polylines ``[..., n, d]`` in ``factor``: ``[..., (n - 1) factor + 1, d]``."""
    steps = torch.arange(factor, dtype=path.dtype) / factor  # [k]
    start, delta = path[..., :-1, :], path[..., 1:, :] - path[..., :-1, :]
    inner = start[..., None, :] + steps[:, None] * delta[..., None, :]  # [..., n - 1, k, d]
    inner = inner.reshape(*path.shape[:-2], -1, path.shape[-1])
    return torch.cat([inner, path[..., -1:, :]], dim=-2)


def curve_length(space, path):
    """Data-space length of latent polylines ``[..., n, d]``, measured on the refined polyline."""
    return path_length(space, refine_path(path))


def geodesics(space, start, end):
    """Discrete geodesics between ``start[i]`` and ``end[i]``, the shorter of two starts.

    The boundary value solver finds a local geodesic, which through a gap in
    the codes may be a long detour. Each pair is solved twice, in two batched
    solves: from the straight line and from the shortest path through the
    k-NN graph of the codes (``init``); the converged one is kept, or the
    shorter where both (or neither) converged.

    Returns
    -------
    path : torch.Tensor, shape=[n_pairs, n_nodes, d]
    converged : numpy.ndarray of bool, shape=[n_pairs]
    """
    solver = space.metric.log_solver
    through_codes = copy.copy(solver)
    through_codes.init = space.region[1]  # the demo's spaces sample among the codes
    results = [solver.solve(end, start), through_codes.solve(end, start)]
    lengths = torch.stack([path_length(space, result.path) for result in results])  # [2, n_pairs]
    converged = torch.stack([result.converged for result in results])  # [2, n_pairs]
    best = torch.where(converged[0] == converged[1], lengths.argmin(dim=0), converged[1].long())
    rows = torch.arange(best.shape[0])
    path = torch.stack([result.path for result in results])[best, rows]
    return path, np.asarray(converged[best, rows])


def decoder_std_along(ctx, path):
    """How far latent paths ``[..., n, d]`` leave the data, by the decoder's std (mean over pixels).

    Returns
    -------
    mean : torch.Tensor, shape=[...]
        Mean std along the path.
    excess : torch.Tensor, shape=[...]
        Largest std along the path minus the larger std at its two ends:
        0 for a path that stays as close to the data as its end points.
    """
    std = ctx.vae.decoder_std(refine_path(path)).mean(dim=(-1, -2))  # [..., n_refined]
    ends = torch.maximum(std[..., 0], std[..., -1])
    return std.mean(dim=-1), std.max(dim=-1).values - ends


def draw_paths(ax, paths, styles):
    """Latent paths ``{label: [P, n, d]}`` on ``ax`` with matplotlib ``styles`` per label."""
    for label, path in paths.items():
        for i, curve in enumerate(path.numpy()):
            ax.plot(curve[:, 0], curve[:, 1], label=label if i == 0 else None, **styles[label])
    first = next(iter(paths.values())).numpy()
    ax.plot(first[:, 0, 0], first[:, 0, 1], "k^", markersize=6, label="start")
    ax.plot(first[:, -1, 0], first[:, -1, 1], "ks", markersize=6, label="end")
    ax.legend(fontsize=7, loc="lower left")


def strips_figure(ctx, rows, n_images=10):
    """One row of ``n_images`` decoded images, evenly spaced along each path ``[(label, path [n, d])]``."""
    fig, axes = new_figure(1, len(rows), width=9, height=0.95)
    for ax, (label, path) in zip(axes[:, 0], rows):
        index = np.linspace(0, path.shape[0] - 1, n_images).round().astype(int)
        images = ctx.vae.decode(path[index]).numpy()
        ax.imshow(image_mosaic(images, n_images), cmap="gray_r", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    return fig


PATH_STYLES = {
    "straight line": {"color": "k", "linestyle": "--", "linewidth": 1},
    "geodesic, mean metric": {"color": "crimson", "linewidth": 1.6},
    "geodesic, expected metric": {"color": "royalblue", "linewidth": 1.6, "linestyle": "-."},
}


def section_geodesics(ctx, report):
    """Geodesic versus straight-line interpolation under the mean metric (Shao et al.)."""
    start, end, names = choose_pairs(ctx)
    n_nodes = ctx.config.nodes
    geo, converged = geodesics(ctx.mean_space, start, end)
    line = linear_path(start, end, n_nodes)
    geo_length, line_length = curve_length(ctx.mean_space, geo), curve_length(ctx.mean_space, line)
    ratio = geo_length / line_length
    ctx.pairs = {"start": start, "end": end, "names": names, "mean": geo, "line": line}

    fig, axes = new_figure(1, 1, width=6, height=5.4)
    scatter_codes(axes[0, 0], ctx, size=2, alpha=0.35)
    draw_paths(axes[0, 0], {"straight line": line, "geodesic, mean metric": geo}, PATH_STYLES)
    for name, point in zip(names, start.numpy()):
        axes[0, 0].annotate(name, point, fontsize=7, xytext=(3, 3), textcoords="offset points")
    paths_png = report.save_figure(fig, "geodesics")
    kinds = (("line", line), ("geodesic", geo))
    rows = [(f"{name}\n{kind}", path[i]) for i, name in enumerate(names) for kind, path in kinds]
    strips_png = report.save_figure(strips_figure(ctx, rows), "geodesic_strips")

    numbers = {
        "pairs": names,
        "geodesic_length": geo_length.tolist(),
        "linear_length": line_length.tolist(),
        "ratio": ratio.tolist(),
        "converged": converged.tolist(),
        "mean_ratio": float(ratio.mean()),
        "n_nodes": n_nodes,
    }
    table = [
        (name, float(lin), float(g), float(r), "yes" if c else "NO")
        for name, lin, g, r, c in zip(names, line_length, geo_length, ratio, converged)
    ]
    table.append(("mean", "", "", numbers["mean_ratio"], f"{int(converged.sum())}/{len(names)}"))
    report.add_section(
        "Geodesics versus straight lines (mean metric)",
        paragraphs=[
            f"Discrete geodesics with {n_nodes} nodes (Shao et al. 2018) minimise the data-space energy of the "
            "decoded path, in one batched solve for all pairs. Lengths are measured in data space along "
            f"each latent polyline refined {REFINE} times. Shao et al. found the ratio geodesic/straight "
            f"close to 1 on image manifolds; here its mean is {numbers['mean_ratio']:.4g}.",
        ],
        tables=[(("pair", "straight length", "geodesic length", "ratio", "converged"), table)],
        figures=[
            (paths_png, "Straight lines (dashed) and geodesics of the mean metric over the codes."),
            (strips_png, "Decoded images along each straight line and geodesic, evenly spaced in time."),
        ],
    )
    return numbers


def section_stochastic(ctx, report):
    """Mean-only versus expected metric: geodesics of the expected metric stay on the data."""
    pairs = ctx.pairs
    names, line, mean_geo = pairs["names"], pairs["line"], pairs["mean"]
    geo, converged = geodesics(ctx.stochastic_space, pairs["start"], pairs["end"])
    paths = {"line": line, "mean": mean_geo, "expected": geo}
    lengths = {key: curve_length(ctx.stochastic_space, path) for key, path in paths.items()}
    std = {key: decoder_std_along(ctx, path) for key, path in paths.items()}
    excess = {key: value[1] for key, value in std.items()}
    ratio = lengths["expected"] / lengths["line"]

    n = ctx.config.grid
    grid, extent = latent_grid(ctx, n)
    magnification = torch.cat(
        [_log10_magnification(ctx.stochastic_space, c) for c in torch.split(grid.reshape(n * n, -1), 1024)]
    ).reshape(n, n)
    fig, axes = new_figure(1, 1, width=6.4, height=5.4)
    ax = axes[0, 0]
    image = ax.imshow(magnification.numpy(), origin="lower", extent=extent, cmap="Greys", alpha=0.8)
    fig.colorbar(image, ax=ax, label="log10 sqrt(det G), expected metric")
    scatter_codes(ax, ctx, size=1.5, alpha=0.4, legend=False)
    draw_paths(
        ax,
        {"straight line": line, "geodesic, mean metric": mean_geo, "geodesic, expected metric": geo},
        PATH_STYLES,
    )
    paths_png = report.save_figure(fig, "stochastic")
    rows = [
        (f"{name}\n{kind}", path[i])
        for i, name in enumerate(names)
        for kind, path in (("line", line), ("mean", mean_geo), ("expected", geo))
    ]
    strips_png = report.save_figure(strips_figure(ctx, rows), "stochastic_strips")

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
        "excess_std_line": excess["line"].tolist(),
        "excess_std_mean_geodesic": excess["mean"].tolist(),
        "excess_std_expected_geodesic": excess["expected"].tolist(),
    }
    table = [
        (name, float(a), float(b), float(c), float(r), float(p), float(q), float(w), "yes" if ok else "NO")
        for name, a, b, c, r, p, q, w, ok in zip(
            names, lengths["line"], lengths["mean"], lengths["expected"], ratio,
            excess["line"], excess["mean"], excess["expected"], converged,
        )
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
    return numbers


# ---------------------------------------------------------------- curvature


def _quantiles(values, qs=(0.05, 0.25, 0.5, 0.75, 0.95)):
    return {f"q{int(100 * q):02d}": float(v) for q, v in zip(qs, np.quantile(values, qs))}


def section_curvature(ctx, report):
    """Sectional curvature at the codes (Gauss equation), and over the latent plane."""
    rng = np.random.default_rng(ctx.config.seed)
    index = rng.choice(len(ctx.codes), size=min(ctx.config.curvature_points, len(ctx.codes)), replace=False)
    points = ctx.codes[index]
    n_planes = 1 if ctx.vae.latent_dim == 2 else 4
    gs.random.seed(ctx.config.seed)
    curvatures = {
        name: sample_sectional_curvatures(space.metric, points, n_planes=n_planes).curvatures.reshape(-1).numpy()
        for name, space in (("mean", ctx.mean_space), ("expected", ctx.stochastic_space))
    }
    # Scale: K has units 1 / length^2; K L^2 with L the median distance between decoded codes.
    decoded = ctx.vae.decode(points).reshape(len(points), -1)
    scale = float(torch.cdist(decoded, decoded).median())

    n = ctx.config.grid
    grid, extent = latent_grid(ctx, n)
    flat = grid.reshape(n * n, -1)
    e1, e2 = torch.eye(ctx.vae.latent_dim)[:2]
    grid_k = ctx.mean_space.metric.sectional_curvature(e1, e2, flat).reshape(n, n).numpy()

    fig, axes = new_figure(2, 1, width=5)
    ax = axes[0, 0]
    both = np.concatenate(list(curvatures.values()))
    bins = np.linspace(*np.quantile(both, [0.01, 0.99]), 50)
    for name, values in curvatures.items():
        ax.hist(np.clip(values, bins[0], bins[-1]), bins=bins, alpha=0.6, label=f"{name} metric")
    ax.axvline(0, color="k", linewidth=0.8)
    ax.set_xlabel("sectional curvature K at the codes")
    ax.set_ylabel("codes")
    ax.legend()
    ax = axes[0, 1]
    limit = float(np.quantile(np.abs(grid_k), 0.95))
    image = ax.imshow(grid_k, origin="lower", extent=extent, cmap="RdBu_r", vmin=-limit, vmax=limit)
    fig.colorbar(image, ax=ax, label="K, mean metric (clipped at the 95% |K|)")
    scatter_codes(ax, ctx, size=1, alpha=0.25, legend=False)
    png = report.save_figure(fig, "curvature")

    numbers = {"scale": scale, "n_points": len(points)}
    for name, values in curvatures.items():
        numbers[name] = {
            "mean": float(values.mean()),
            **_quantiles(values),
            "median_abs": float(np.median(np.abs(values))),
            "median_abs_scaled": float(np.median(np.abs(values)) * scale**2),
            "fraction_negative": float((values < 0).mean()),
        }
    keys = ("mean", "q05", "q50", "q95", "median_abs", "median_abs_scaled", "fraction_negative")
    rows = [(f"{name} metric", *(numbers[name][key] for key in keys)) for name in curvatures]
    report.add_section(
        "Curvature",
        paragraphs=[
            f"Sectional curvature at {len(points)} codes by the Gauss equation (second derivatives of the "
            "decoder only). K has units of 1/length^2; K L^2, with L = "
            f"{scale:.3g} the median data-space distance between the decoded codes, says whether curvature "
            "matters at the scale of the data (|K| L^2 << 1: nearly flat, as Shao et al. found).",
        ],
        tables=[
            (
                ("metric", "mean K", "5%", "median", "95%", "median |K|", "median |K| L^2", "fraction K < 0"),
                rows,
            )
        ],
        figures=[(png, "Histogram of sectional curvatures at the codes; K of the mean metric over the latent plane.")],
    )
    return numbers


# ---------------------------------------------------------------- analogies

ANALOGY_CLASSES = ((1, 7), (0, 6), (3, 5), (4, 9), (2, 8), (7, 1))


def class_extremes(ctx, label):
    """Codes of ``label`` at both ends of the class's main latent axis (5% and 95% of the projections)."""
    index = class_core(ctx, label)
    codes = ctx.codes[index].numpy()
    centred = codes - codes.mean(0)
    axis = np.linalg.svd(centred, full_matrices=False)[2][0]
    projection = centred @ axis
    low, high = np.quantile(projection, [0.05, 0.95])
    return ctx.codes[index[np.argmin(np.abs(projection - low))]], ctx.codes[index[np.argmin(np.abs(projection - high))]]


def section_analogies(ctx, report):
    """``a : a' :: b : ?`` by parallel transport of ``log_a a'`` to ``b`` (Shao et al.)."""
    triples = []
    for i in range(ctx.config.analogies):
        source, target = ANALOGY_CLASSES[i % len(ANALOGY_CLASSES)]
        a, a_prime = class_extremes(ctx, source)
        b = ctx.codes[class_core(ctx, target)].median(dim=0).values
        triples.append((f"{source} / {target}", a, a_prime, b))
    names = [t[0] for t in triples]
    a, a_prime, b = (torch.stack([t[k] for t in triples]) for k in (1, 2, 3))
    results = {"linear": b + (a_prime - a)}
    converged = {}
    for name, space in (("mean", ctx.mean_space), ("expected", ctx.stochastic_space)):
        path, path_converged = geodesics(space, a, b)  # transport along the discrete geodesic a -> b
        with solver_warnings() as caught:  # from log_a(a') inside analogy
            results[name] = analogy(space.metric, a, a_prime, b, path=path)
        converged[name] = bool(path_converged.all()) and not caught

    def change(x, y):
        return (ctx.vae.decode(y) - ctx.vae.decode(x)).reshape(len(x), -1).norm(dim=-1)

    source_change = change(a, a_prime)
    numbers = {"analogies": names, "source_change": source_change.tolist(), "solves_converged": converged}
    for key, b_prime in results.items():
        numbers[f"{key}_change"] = change(b, b_prime).tolist()
        numbers[f"{key}_std_at_result"] = ctx.vae.decoder_std(b_prime).mean(dim=(-1, -2)).tolist()
        numbers[f"{key}_result"] = b_prime.tolist()

    columns = [
        ("a", a),
        ("a'", a_prime),
        ("b", b),
        ("b + a' - a", results["linear"]),
        ("mean metric", results["mean"]),
        ("expected metric", results["expected"]),
    ]
    images = torch.stack([ctx.vae.decode(points) for _, points in columns], dim=1)  # [n, 6, 8, 8]
    fig, axes = new_figure(len(columns), len(names), width=1.25, height=1.35)
    for i, name in enumerate(names):
        for j, (label, _) in enumerate(columns):
            ax = axes[i, j]
            ax.imshow(images[i, j].numpy(), cmap="gray_r", vmin=0, vmax=1)
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
    report.add_section(
        "Analogies by parallel transport",
        paragraphs=[
            "For each row, a and a' are two codes of one digit at the ends of its cluster's main axis (a change "
            "of style), b a typical code of another digit. The change v = log_a(a') is parallel-transported "
            "along the discrete geodesic from a to b and applied at b: b' = exp_b(PT(v)). The straight-line "
            "analogy b + a' - a is shown for comparison. Decoder std at b' says whether it stayed on the data "
            f"(std far from the data: {math.sqrt(1 / ctx.vae.zeta + ctx.vae.min_std**2):.3g}). All geodesic "
            "solves converged: "
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
    return numbers


# ---------------------------------------------------------------- Frechet means


@contextlib.contextmanager
def solver_warnings():
    """Collect the log solver's convergence warnings instead of printing one per call.

    Yields
    ------
    caught : list of warnings.WarningMessage
    """
    solver_logger = logging.getLogger(GeodesicBVPSolver.__module__)
    level = solver_logger.level
    solver_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            yield caught
    finally:
        solver_logger.setLevel(level)


def frechet_variance(space, points, base_point):
    """Mean squared geodesic distance from ``base_point [C, d]`` to ``points [n, C, d]``, ``[C]``.

    Distances are the data-space lengths of the discrete geodesics (as in
    :func:`section_geodesics`): the same number from both ends, unlike the
    norm of an initial velocity read off a discrete path.
    """
    path = space.metric.log_solver.solve(points, base_point[None]).path  # [n, C, n_nodes, d]
    return (curve_length(space, path) ** 2).mean(dim=0)


def section_frechet(ctx, report):
    """Per-class Fréchet means (geomstats' FrechetMean, batched over classes) against Euclidean means."""
    rng = np.random.default_rng(ctx.config.seed)
    classes = list(range(ctx.config.frechet_classes))
    n_points = ctx.config.frechet_points
    index = np.stack(
        [rng.choice(np.flatnonzero(ctx.labels == c), size=n_points, replace=False) for c in classes], axis=1
    )
    points = ctx.codes[index]  # [n_points, n_classes, d]: geomstats' batch layout
    euclidean = points.mean(dim=0)  # [n_classes, d]
    numbers = {"classes": classes, "n_points": n_points, "euclidean_mean": euclidean.tolist()}
    means = {}
    for name, space in (("mean", ctx.mean_space), ("expected", ctx.stochastic_space)):
        estimator = FrechetMean(space, method="batch")
        estimator.set(init_point=euclidean, max_iter=ctx.config.frechet_iter, epsilon=1e-6)
        with solver_warnings() as caught:
            means[name] = estimator.fit(points).estimate_
        numbers[name] = {
            "frechet_mean": means[name].tolist(),
            "variance_at_frechet_mean": frechet_variance(space, points, means[name]).tolist(),
            "variance_at_euclidean_mean": frechet_variance(space, points, euclidean).tolist(),
            "latent_shift": (means[name] - euclidean).norm(dim=-1).tolist(),
            "unconverged_log_calls": len(caught),
        }

    fig, axes = new_figure(2, 1, width=5.2, height=4.6)
    ax = axes[0, 0]
    scatter_codes(ax, ctx, size=2, alpha=0.3)
    ax.plot(*euclidean.numpy().T, "kx", markersize=8, label="Euclidean mean")
    for name, marker, color in (("mean", "o", "crimson"), ("expected", "D", "royalblue")):
        label = f"Fréchet, {name} metric"
        ax.plot(*means[name].numpy().T, marker, color=color, fillstyle="none", markersize=8, label=label)
    ax.legend(fontsize=7, loc="lower left")
    ax = axes[0, 1]
    rows = torch.stack([ctx.vae.decode(m) for m in (euclidean, means["mean"], means["expected"])])  # [3, C, 8, 8]
    ax.imshow(image_mosaic(rows.reshape(-1, 8, 8).numpy(), len(classes)), cmap="gray_r", vmin=0, vmax=1)
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
    for name in ("mean", "expected"):
        pairs = zip(numbers[name]["variance_at_frechet_mean"], numbers[name]["variance_at_euclidean_mean"])
        numbers[name]["n_improved"] = sum(at_frechet <= at_euclidean for at_frechet, at_euclidean in pairs)
    report.add_section(
        "Fréchet means per class",
        paragraphs=[
            f"geomstats' FrechetMean (batched gradient descent, all classes at once) on {n_points} codes per "
            "class, started from the Euclidean mean of the codes; every log is a batched discrete-geodesic "
            "solve. The Fréchet mean minimises the mean squared geodesic distance (the Fréchet variance), so "
            "its variance should be at most that of the Euclidean mean; distances here are the data-space "
            "lengths of the discrete geodesics. The descent improved on the Euclidean mean for "
            f"{numbers['mean']['n_improved']} of {len(classes)} classes under the mean metric and "
            f"{numbers['expected']['n_improved']} under the expected metric; where it did not, gradient descent "
            "with a step shared by all classes overshot, or the logs jumped between distinct geodesics "
            "(geodesics of a learned metric need not be unique). Log calls with unconverged pairs during the "
            f"descent: {numbers['mean']['unconverged_log_calls']} (mean metric), "
            f"{numbers['expected']['unconverged_log_calls']} (expected metric), of at most "
            f"{ctx.config.frechet_iter} each.",
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
    return numbers


def section_timings(report):
    """Timings as numbers for results.json (the report prints them itself)."""
    return dict(report.timings)


# ---------------------------------------------------------------- driver


def _json_ready(value):
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def run(config):
    """Run the demo and write ``report.html``, ``results.json`` and ``figures/`` under ``config.out``.

    Parameters
    ----------
    config : DemoConfig

    Returns
    -------
    results : dict
        The numbers of every section, and ``timings`` in seconds.
    """
    config = config.resolved()
    out = Path(config.out)
    report = Report(out, "Riemannian geometry of a VAE's latent space (geomstats-pullback demo)")
    images, labels = load_data()
    steps = ["model", "magnification", "geodesics", "stochastic", "curvature", "analogies", "frechet"]
    bar = tqdm(total=len(steps) + 1, desc="demo", disable=not config.progress)
    bar.set_postfix_str("VAE")
    vae, source = get_vae(config, images, report)
    bar.update()
    codes = vae.encode(images)
    low, high = latent_box(codes)
    ctx = Context(
        config=config,
        vae=vae,
        images=images,
        labels=labels,
        codes=codes,
        mean_space=latent_space(vae.decoder_mean, codes, config),
        stochastic_space=latent_space(vae.stochastic_decoder, codes, config),
        low=low,
        high=high,
    )
    sections = {
        "model": lambda: section_model(ctx, report, source),
        "magnification": lambda: section_magnification(ctx, report),
        "geodesics": lambda: section_geodesics(ctx, report),
        "stochastic": lambda: section_stochastic(ctx, report),
        "curvature": lambda: section_curvature(ctx, report),
        "analogies": lambda: section_analogies(ctx, report),
        "frechet": lambda: section_frechet(ctx, report),
    }
    results = {}
    for name in steps:
        bar.set_postfix_str(name)
        with report.timed(name):
            results[name] = sections[name]()
        bar.update()
    bar.close()
    results["timings"] = section_timings(report)
    results["config"] = {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(config).items()}
    report.write()
    (out / "results.json").write_text(json.dumps(_json_ready(results), indent=2), encoding="utf-8")
    return results
