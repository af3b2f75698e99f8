"""Report section "Shaping the geometry while training": the VAE fine-tuned with each regulariser.

Starting from the trained VAE, stage 1 (encoder and mean) is continued for
``config.training_epochs`` epochs once without a penalty (the control) and
once with each loss of :mod:`geomstats_pullback.regularizers` added to the
negative ELBO (:meth:`~geomstats_pullback.demo.vae.VAE.fine_tune`). Each
model's mean decoder is then measured at the same images' codes with
:func:`geomstats_pullback.diagnostics.diagnose`: local isometry distortion,
sectional curvature, log magnification, and the reconstruction error.
"""

import copy
from typing import NamedTuple

import numpy as np
import torch

from geomstats_pullback import regularizers
from geomstats_pullback.demo.context import EPS, latent_grid
from geomstats_pullback.demo.plots import new_figure
from geomstats_pullback.diagnostics import diagnose, plot_diagnostics
from geomstats_pullback.manifold import DecoderManifold

#: Codes per batch at which the costly penalties (curvature, geodesic ratio) are evaluated.
SUBSAMPLE = 16
#: Side of the grid of the diagnostics figure, at most.
MAX_DIAGNOSTICS_GRID = 24


def _subsample(z):
    return z[:SUBSAMPLE]


#: Penalty of each run: ``(decoder, codes, generator) -> scalar``, with the weight chosen for the digits VAE
#: (loss per sample ~ tens of nats): large enough to move the geometry in a few epochs.
PENALTIES = {
    "no penalty": None,
    "isometry distortion": lambda f, z, gen: 2.0 * regularizers.isometry_distortion(f, z, generator=gen),
    "log-magnification variance": lambda f, z, gen: 0.5 * regularizers.log_magnification_variance(f, z),
    "curvature": lambda f, z, gen: 2.0 * regularizers.curvature_penalty(f, _subsample(z), generator=gen),
    "geodesic ratio": lambda f, z, gen: 50.0 * regularizers.geodesic_ratio_penalty(
        f, z, n_pairs=SUBSAMPLE // 2, n_nodes=5, max_iter=2, generator=gen
    ),
}


class TrainingResult(NamedTuple):
    """What :func:`compute_training` found.

    Attributes
    ----------
    numbers : dict
        For ``results.json``: per run (``"before"``, then :data:`PENALTIES`'
        names), the global and median distortion, median ``|K|``, variance
        of ``log sqrt(det G)``, reconstruction error and final loss.
    distortion, curvature, log_magnification : dict of str to numpy.ndarray, shape=[n_points]
        Per run, at the codes (curvature of the coordinate plane).
    figures : dict of str to matplotlib.figure.Figure
        Diagnostics maps before and after the isometry penalty.
    """

    numbers: dict
    distortion: dict
    curvature: dict
    log_magnification: dict
    figures: dict


def _measure(vae, images, index, seed, grid=None):
    """Diagnostics of ``vae``'s mean decoder at the codes of ``images[index]`` (and a figure on ``grid [n, n, d]``)."""
    codes = vae.encode(images[index])
    space = DecoderManifold(vae.decoder_mean, vae.latent_dim, region=codes, metric_kwargs={"eps": EPS})
    diag = diagnose(space, codes, generator=seed)
    recon = vae.decode(vae.encode(images)).reshape(len(images), -1).numpy()
    mse = float(np.mean((recon - images.reshape(len(images), -1)) ** 2))
    figure = None
    if grid is not None:
        figure = plot_diagnostics(diagnose(space, grid, generator=seed), codes=codes)
    return diag, mse, figure


def compute_training(ctx):
    """Fine-tune copies of the VAE with each regulariser and measure their geometry.

    Parameters
    ----------
    ctx : Context

    Returns
    -------
    result : TrainingResult
    """
    config = ctx.config
    rng = np.random.default_rng(config.seed)
    index = rng.choice(len(ctx.images), size=min(config.training_points, len(ctx.images)), replace=False)
    grid = latent_grid(ctx, min(config.grid, MAX_DIAGNOSTICS_GRID))[0]

    numbers, distortion, curvature, log_mag, figures = {}, {}, {}, {}, {}
    runs = {"before": (ctx.vae, None), **{name: (None, penalty) for name, penalty in PENALTIES.items()}}
    for name, (vae, penalty) in runs.items():
        losses = ctx.vae.history_["elbo_loss"]
        if vae is None:
            vae = copy.deepcopy(ctx.vae)
            generator = torch.Generator().manual_seed(config.seed)
            loss = None if penalty is None else (lambda f, z, penalty=penalty: penalty(f, z, generator))
            losses = vae.fine_tune(ctx.images, n_epochs=config.training_epochs, penalty=loss, seed=config.seed)
        drawn = name in ("before", "isometry distortion")
        diag, mse, figure = _measure(vae, ctx.images, index, config.seed, grid if drawn else None)
        if figure is not None:
            figures[name] = figure
        distortion[name] = diag.distortion.numpy()
        curvature[name] = diag.sectional_curvature[:, 0].numpy()
        log_mag[name] = torch.log(diag.magnification).numpy()
        numbers[name] = {
            "global_distortion": diag.global_distortion,
            "median_distortion": float(np.median(distortion[name])),
            "median_abs_curvature": float(np.median(np.abs(curvature[name]))),
            "var_log_magnification": float(np.var(log_mag[name])),
            "reconstruction_mse": mse,
            "final_loss": losses[-1],
        }
    numbers["epochs"] = config.training_epochs
    numbers["n_points"] = len(index)
    return TrainingResult(numbers, distortion, curvature, log_mag, figures)


def render_training(result, report):
    """Histograms, table and diagnostics maps of the training section.

    Parameters
    ----------
    result : TrainingResult
    report : Report
    """
    numbers = result.numbers
    fig, axes = new_figure(3, 1, width=4.6)
    panels = (
        (result.distortion, "local isometry distortion d Tr(G^2)/Tr(G)^2 - 1", np.log10, "log10"),
        (result.curvature, "sectional curvature K at the codes", None, None),
        (result.log_magnification, "log sqrt(det G) at the codes", None, None),
    )
    for ax, (values, label, transform, prefix) in zip(axes[0], panels):
        shown = {name: (transform(np.maximum(v, 1e-12)) if transform else v) for name, v in values.items()}
        both = np.concatenate(list(shown.values()))
        bins = np.linspace(*np.quantile(both, [0.01, 0.99]), 30)
        for name, v in shown.items():
            ax.hist(np.clip(v, bins[0], bins[-1]), bins=bins, histtype="step", linewidth=1.3, label=name)
        ax.set_xlabel(f"{prefix} {label}" if prefix else label, fontsize=8)
        ax.set_ylabel("codes")
    axes[0, 0].legend(fontsize=7)
    histograms = report.save_figure(fig, "training")
    figures = [(histograms, "Distributions at the same codes before and after fine-tuning with each regulariser.")]
    for name, figure in result.figures.items():
        slug = name.split()[0]
        figures.append((report.save_figure(figure, f"training_diagnostics_{slug}"), f"diagnose() maps: {name}."))
    keys = (
        "global_distortion", "median_distortion", "median_abs_curvature", "var_log_magnification",
        "reconstruction_mse", "final_loss",
    )
    runs = [name for name in numbers if isinstance(numbers[name], dict)]
    rows = [(name, *(numbers[name][key] for key in keys)) for name in runs]
    report.add_section(
        "Shaping the geometry while training",
        paragraphs=[
            f"The VAE's stage 1 was continued for {numbers['epochs']} epochs without a penalty (control) and with "
            "each loss of geomstats_pullback.regularizers added to the negative ELBO: IRVAE's relaxed isometry "
            "distortion, the variance of log det G, the mean squared sectional curvature and the geodesic-to-"
            f"straight length ratio. Each decoder is measured at the codes of the same {numbers['n_points']} "
            "images with gp.diagnose; compare each row with the control, not only with 'before', since "
            "further training alone changes the geometry.",
        ],
        tables=[
            (
                ("run", "global distortion", "median distortion", "median |K|", "var log sqrt(det G)",
                 "reconstruction MSE", "final loss"),
                rows,
            )
        ],
        figures=figures,
    )
