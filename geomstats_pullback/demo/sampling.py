"""Report section "Sampling by the Riemannian volume, and a likely geodesic".

Two generation tools of :mod:`geomstats_pullback.sampling` and
:mod:`geomstats_pullback.geodesics.density`, on the mean metric:

- decoded samples of the Riemannian volume ``sqrt(det G)`` restricted to the
  codes' support (:func:`~geomstats_pullback.sample_volume`), beside decoded
  samples of the prior ``N(0, I)``;
- a likely geodesic (energy plus ``lambda int -log p``, ``p`` the codes'
  kernel density estimate) beside the plain geodesic between the same two
  codes, drawn over ``log p``.
"""

from typing import NamedTuple

import numpy as np
import torch

from geomstats_pullback.demo.context import NEWTON_ITER, latent_grid, solver_warnings
from geomstats_pullback.demo.plots import draw_paths, heat_map, image_mosaic, new_figure, scatter_codes, strips_figure
from geomstats_pullback.geodesics import GeodesicBVPSolver
from geomstats_pullback.geodesics.density import GaussianMixtureDensity
from geomstats_pullback.paths import path_length
from geomstats_pullback.sampling import CodeSupport, effective_sample_size, sample_volume

N_CHAINS = 16
THIN = 2
SHOWN = 36  # decoded samples of each law in the figure: the last volume samples drawn
DENSITY_SCALE = 10.0  # lambda in units of the geodesic's energy per unit spread of -log p over the codes
KDE_CODES = 400  # codes in the kernel density estimate (a random subset): O(KDE_CODES d^2) per evaluation
STRIP_IMAGES = 9
PATH_STYLES = {
    "geodesic": {"color": "crimson", "linewidth": 1.6},
    "likely geodesic": {"color": "white", "linewidth": 1.8, "linestyle": "--"},
}


class SamplingResult(NamedTuple):
    """What :func:`compute_sampling` found.

    Attributes
    ----------
    numbers : dict
        For ``results.json``: sampler acceptance and ESS, fractions in the data
        region, lengths and mean log densities of both paths.
    volume_samples, prior_samples : numpy.ndarray, shape=[n, d]
    volume_images, prior_images : numpy.ndarray, shape=[n, h, w]
    paths : dict of str to numpy.ndarray, shape=[1, n_nodes, d]
        ``"geodesic"`` and ``"likely geodesic"``.
    strips : list of (str, numpy.ndarray of shape [STRIP_IMAGES, h, w])
    log_density : numpy.ndarray, shape=[grid, grid]
        ``log p`` of the kernel density estimate on the latent grid.
    extent : tuple
    """

    numbers: dict
    volume_samples: np.ndarray
    prior_samples: np.ndarray
    volume_images: np.ndarray
    prior_images: np.ndarray
    paths: dict
    strips: list
    log_density: np.ndarray
    extent: tuple


def _images(ctx, z):
    with torch.no_grad():
        return ctx.vae.decode(z).reshape(z.shape[0], *ctx.images.shape[1:]).numpy()


def _strip(ctx, path):
    index = np.linspace(0, path.shape[0] - 1, STRIP_IMAGES).round().astype(int)
    return _images(ctx, path[index])


def compute_sampling(ctx):
    """Volume versus prior samples, and a likely versus a plain geodesic, on the mean metric.

    The density weight ``lambda`` is :data:`DENSITY_SCALE` times the plain
    geodesic's energy (its squared length) divided by the spread (max - min)
    of ``-log p`` over the codes: the density term then outweighs the energy.

    Parameters
    ----------
    ctx : Context

    Returns
    -------
    result : SamplingResult
    """
    config, space, codes = ctx.config, ctx.mean_space, ctx.codes
    n = min(SHOWN, config.volume_samples)
    support = CodeSupport(codes)
    volume = sample_volume(
        space, config.volume_samples, region=support, n_chains=N_CHAINS,
        burn_in=config.sampler_burn_in, thin=THIN, seed=config.seed,
    )
    shown = volume.samples[-n:]
    gen = torch.Generator().manual_seed(config.seed)
    prior = torch.randn(n, codes.shape[1], generator=gen, dtype=codes.dtype)

    subset = torch.randperm(codes.shape[0], generator=gen)[:KDE_CODES]
    density = GaussianMixtureDensity.kde(codes[subset])
    labels = np.asarray(ctx.labels)
    first = int(np.nonzero(labels == 0)[0][0])
    second = int(np.nonzero(labels == 1)[0][0])
    z0, z1 = codes[first], codes[second]
    plain = GeodesicBVPSolver(space, n_nodes=config.nodes, shooting=False, max_iter=NEWTON_ITER)
    with solver_warnings():
        geodesic = plain.solve(z1, z0)
        energy = float(path_length(space, geodesic.path)) ** 2
        spread = float((-density(codes[subset])).max() - (-density(codes[subset])).min())
        weight = DENSITY_SCALE * energy / spread
        likely = GeodesicBVPSolver(
            space, n_nodes=config.nodes, shooting=False, max_iter=NEWTON_ITER, density=density, density_weight=weight
        ).solve(z1, z0)
    paths = {"geodesic": geodesic.path[None].numpy(), "likely geodesic": likely.path[None].numpy()}
    grid, extent = latent_grid(ctx, config.grid)
    with torch.no_grad():
        log_density = density(grid).numpy()
    volume_ess = effective_sample_size(volume.chains)
    numbers = {
        "n_samples": n,
        "n_drawn": int(volume.samples.shape[0]),
        "acceptance_rate": float(volume.acceptance_rate.mean()),
        "step_size": volume.step_size,
        "effective_sample_size": [float(v) for v in volume_ess],
        "volume_in_support": float(support(shown).double().mean()),
        "prior_in_support": float(support(prior).double().mean()),
        "mean_log10_mf_volume": float(volume.log_density.mean()) / np.log(10),
        "density_weight": weight,
        "pair": [int(labels[first]), int(labels[second])],
        "geodesic_length": float(path_length(space, geodesic.path)),
        "likely_length": float(path_length(space, likely.path)),
        "geodesic_mean_log_density": float(density(geodesic.path).mean()),
        "likely_mean_log_density": float(density(likely.path).mean()),
        "converged": [bool(geodesic.converged), bool(likely.converged)],
    }
    strips = [
        ("geodesic", _strip(ctx, geodesic.path)),
        ("likely\ngeodesic", _strip(ctx, likely.path)),
    ]
    return SamplingResult(
        numbers, shown.numpy(), prior.numpy(), _images(ctx, shown), _images(ctx, prior),
        paths, strips, log_density, extent,
    )


def render_sampling(result, report, backdrop):
    """Figures and prose of the sampling section.

    Parameters
    ----------
    result : SamplingResult
    report : Report
    backdrop : Backdrop
    """
    numbers = result.numbers
    n_cols = int(np.ceil(np.sqrt(numbers["n_samples"])))
    fig, axes = new_figure(3, 1, width=4.4)
    ax = axes[0, 0]
    scatter_codes(ax, backdrop, size=2, alpha=0.25, legend=False)
    ax.plot(*result.volume_samples[:, :2].T, "k.", markersize=4, label="volume")
    ax.plot(*result.prior_samples[:, :2].T, "rx", markersize=4, label="prior")
    ax.legend(fontsize=7, loc="lower left")
    ax.set_title("latent samples", fontsize=10)
    for ax, images, title in (
        (axes[0, 1], result.volume_images, "Riemannian volume on the data"),
        (axes[0, 2], result.prior_images, "prior N(0, I)"),
    ):
        ax.imshow(image_mosaic(images, n_cols), cmap="gray_r", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(title, fontsize=10)
    samples_png = report.save_figure(fig, "sampling")
    fig, axes = new_figure(1, 1, width=6, height=5.4)
    heat_map(axes[0, 0], result.log_density, result.extent, backdrop, cmap="magma", label="log p (codes' KDE)")
    draw_paths(axes[0, 0], result.paths, styles=PATH_STYLES)
    likely_png = report.save_figure(fig, "likely_geodesic")
    strips_png = report.save_figure(strips_figure(result.strips), "likely_geodesic_strips")
    ess = numbers["effective_sample_size"]
    report.add_section(
        "Sampling by the Riemannian volume, and a likely geodesic",
        paragraphs=[
            f"{numbers['n_samples']} of {numbers['n_drawn']} samples of sqrt(det G) restricted to the codes' "
            "support (balls around the codes, radii their 8th-neighbour distances), by random-walk Metropolis-Hastings with "
            f"{N_CHAINS} chains (acceptance rate {numbers['acceptance_rate']:.3g}, effective sample size "
            f"{min(ess):.3g} to {max(ess):.3g}), beside as many samples of the prior: "
            f"{100 * numbers['prior_in_support']:.3g}% of the prior samples fall in the data region, "
            f"against {100 * numbers['volume_in_support']:.3g}% of the volume samples.",
            f"The likely geodesic between a {numbers['pair'][0]} and a {numbers['pair'][1]} minimises the energy "
            f"plus {numbers['density_weight']:.3g} times the integral of -log p, p the codes' kernel density "
            "estimate: it trades length for staying where the codes are.",
        ],
        tables=[
            (
                ("path", "data-space length", "mean log p", "converged"),
                [
                    ("geodesic", numbers["geodesic_length"], numbers["geodesic_mean_log_density"],
                     "yes" if numbers["converged"][0] else "NO"),
                    ("likely geodesic", numbers["likely_length"], numbers["likely_mean_log_density"],
                     "yes" if numbers["converged"][1] else "NO"),
                ],
            )
        ],
        figures=[
            (samples_png, "Latent positions and decoded images of volume samples (data region) and prior samples."),
            (likely_png, "Geodesic and likely geodesic over the log density of the codes."),
            (strips_png, "Decoded images along the geodesic and the likely geodesic."),
        ],
    )
