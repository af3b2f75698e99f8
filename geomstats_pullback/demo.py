"""The demo behind ``geomstats-pullback demo``: a VAE on scikit-learn's digits, its geometry, a report.

:func:`run` trains (or loads) a :class:`~geomstats_pullback.models.VAE`,
then runs one small function per report section. Each section computes its
numbers, draws its figures and returns the numbers, which :func:`run` also
writes to ``results.json`` next to ``report.html``.
"""

import dataclasses
import json
import logging
import math
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from tqdm.auto import tqdm

from geomstats_pullback.manifold import DecoderManifold
from geomstats_pullback.models import VAE
from geomstats_pullback.report import Report, new_figure

logger = logging.getLogger(__name__)


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
    grid: int | None = None
    curvature_points: int | None = None
    seed: int = 0
    progress: bool = True

    FULL = {"epochs": 300, "std_epochs": 100, "pairs": 6, "grid": 60, "curvature_points": 300}
    QUICK = {"epochs": 25, "std_epochs": 15, "pairs": 2, "grid": 16, "curvature_points": 24}

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
        "log10_mf_mean_metric": {"min": float(mean_mf.min()), "median": float(mean_mf.median()), "max": float(mean_mf.max())},
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
    steps = ["model", "magnification"]
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
        mean_space=DecoderManifold(vae.decoder_mean, vae.latent_dim, region=codes),
        stochastic_space=DecoderManifold(vae.stochastic_decoder, vae.latent_dim, region=codes),
        low=low,
        high=high,
    )
    sections = {
        "model": lambda: section_model(ctx, report, source),
        "magnification": lambda: section_magnification(ctx, report),
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
