"""Report section "The model": training curves, latent codes, decoded latent plane."""

from typing import NamedTuple

import numpy as np

from geomstats_pullback.demo.context import latent_grid
from geomstats_pullback.demo.plots import image_mosaic, new_figure, scatter_codes

MOSAIC_SIDE = 15  # decoded images per axis of the latent plane


class ModelResult(NamedTuple):
    """What :func:`compute_model` found.

    Attributes
    ----------
    numbers : dict
        For ``results.json``: sizes, final losses, noise level, checkpoint.
    elbo_loss, std_loss : list of float
        Loss per epoch of stages 1 and 2.
    mosaic : numpy.ndarray, shape=[MOSAIC_SIDE * 9 - 1, MOSAIC_SIDE * 9 - 1]
        Decoded means on the latent grid, ``z_2`` up.
    """

    numbers: dict
    elbo_loss: list
    std_loss: list
    mosaic: np.ndarray


def compute_model(ctx):
    """Training history, the decoded latent plane and the model's numbers.

    Parameters
    ----------
    ctx : Context

    Returns
    -------
    result : ModelResult
    """
    vae, config, n = ctx.vae, ctx.config, MOSAIC_SIDE
    history = vae.history_
    grid, _ = latent_grid(ctx, n)
    decoded = vae.decode(grid.reshape(n * n, -1)).numpy()  # [n * n, 8, 8], rows: z_2 ascending
    mosaic = image_mosaic(decoded.reshape(n, n, 8, 8)[::-1].reshape(n * n, 8, 8), n)
    numbers = {
        "n_images": len(ctx.images),
        "latent_dim": vae.latent_dim,
        "final_elbo_loss": history["elbo_loss"][-1],
        "final_std_loss": history["std_loss"][-1] if history["std_loss"] else float("nan"),
        "noise_std": vae.noise_std_,
        "checkpoint": str(config.checkpoint_path),
        "checkpoint_source": ctx.source,
    }
    return ModelResult(numbers, list(history["elbo_loss"]), list(history["std_loss"]), mosaic)


def render_model(result, report, backdrop):
    """Figure and prose of the model section.

    Parameters
    ----------
    result : ModelResult
    report : Report
    backdrop : Backdrop
    """
    numbers = result.numbers
    fig, axes = new_figure(3, 1, width=4.6)
    ax = axes[0, 0]
    ax.plot(result.elbo_loss, label="stage 1: -ELBO")
    if result.std_loss:
        ax.plot(result.std_loss, label="stage 2: Gaussian NLL")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss per sample")
    curves = result.elbo_loss[min(5, len(result.elbo_loss) - 1) :] + result.std_loss
    ax.set_ylim(min(curves) - 5, max(curves) + 5)  # the first epochs would flatten the rest
    ax.legend()
    scatter_codes(axes[0, 1], backdrop)
    axes[0, 1].set_title("latent codes")
    axes[0, 2].imshow(result.mosaic, cmap="gray_r", vmin=0, vmax=1)
    axes[0, 2].set_axis_off()
    n = MOSAIC_SIDE
    axes[0, 2].set_title(f"decoded means, {n}x{n} latent grid\n($z_1$ to the right, $z_2$ up)", fontsize=10)
    path = report.save_figure(fig, "model")
    report.add_section(
        "The model",
        paragraphs=[
            f"A VAE with a {numbers['latent_dim']}-dimensional latent space, {numbers['checkpoint_source']} "
            f"({numbers['checkpoint']}), on {numbers['n_images']} digit images (8x8, scikit-learn's "
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
