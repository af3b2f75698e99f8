"""Report section "Bernoulli decoder on binarised digits": Fisher–Rao versus Euclidean output geometry.

Decoders of Bernoulli logits are trained on the binarised digits (pixels
``> 0.5`` after scaling to ``[0, 1]``), from the VAE's latent codes held
fixed: every decoder shares the latent space of the other sections, and the
same pairs of codes are connected. Two metrics on one decoder ``l(z)``
(logits) are compared:

- Euclidean outputs: the pullback of ``R^64`` through the pixel
  probabilities ``p(z) = sigmoid(l(z))``, ``J_p^T J_p``;
- Fisher–Rao outputs: the pullback of the Fisher–Rao metric of the
  Bernoulli pixels, ``J_l^T diag(p (1 - p)) J_l``
  (``DecoderManifold(l, output="bernoulli")``).

Then an ensemble of decoders trained from different seeds (member 0 is the
decoder above) with its expected Fisher–Rao metric
``(1/M) sum_m J_m^T F_m J_m`` (:class:`~geomstats_pullback.ensembles.EnsembleDecoder`
of per-member :class:`~geomstats_pullback.outputs.OutputDecoder`): the
members' disagreement (pixel variance of the probabilities across members)
along its geodesics against along the straight lines.
"""

from typing import NamedTuple

import numpy as np
import torch

from geomstats_pullback.demo.context import latent_grid, latent_space
from geomstats_pullback.demo.magnification import log10_magnification
from geomstats_pullback.demo.networks import mlp
from geomstats_pullback.demo.pairs import curve_length, geodesics, refine_path, strip_images
from geomstats_pullback.demo.plots import draw_paths, heat_map, new_figure, strips_figure
from geomstats_pullback.ensembles import EnsembleDecoder
from geomstats_pullback.outputs import OutputDecoder

THRESHOLD = 0.5  # pixels above it (in [0, 1]) are on
HIDDEN = (64, 64)  # hidden tanh layers of each Bernoulli decoder
LEARNING_RATE = 1e-2  # Adam's step size
BATCH_SIZE = 128
KINDS = ("line", "euclidean", "fisher_rao")
PATH_STYLES = {
    "straight line": {"color": "k", "linestyle": "--", "linewidth": 1},
    "geodesic, Euclidean outputs": {"color": "crimson", "linewidth": 1.6},
    "geodesic, Fisher-Rao outputs": {"color": "royalblue", "linewidth": 1.6, "linestyle": "-."},
    "geodesic, ensemble": {"color": "darkorange", "linewidth": 1.6},
}
LABELS = {
    "line": "straight line",
    "euclidean": "geodesic, Euclidean outputs",
    "fisher_rao": "geodesic, Fisher-Rao outputs",
    "ensemble": "geodesic, ensemble",
}


class OutputGeometryResult(NamedTuple):
    """What :func:`compute_output_geometry` found.

    Attributes
    ----------
    numbers : dict
        For ``results.json``: training losses, lengths under both metrics,
        convergence, ensemble variance along the paths.
    names : list of str
        The pairs.
    paths : dict of str to torch.Tensor, shape=[n_pairs, n_nodes, d]
        ``"line"``, ``"euclidean"``, ``"fisher_rao"`` and ``"ensemble"``.
    magnification : dict of str to numpy.ndarray, shape=[grid, grid]
        ``log10 sqrt(det G)`` of the ``"euclidean"`` and ``"fisher_rao"`` metrics.
    extent : tuple
        ``(x_min, x_max, y_min, y_max)`` of the grids.
    strips : list of (str, numpy.ndarray of shape [n_images, 8, 8])
        Pixel probabilities along each geodesic.
    times : numpy.ndarray, shape=[n_refined]
        Times of the refined paths at which the variance is taken.
    variance : dict of str to numpy.ndarray, shape=[n_pairs, n_refined]
        Pixel variance of the members' probabilities, summed over pixels,
        along the ``"line"`` and the ``"ensemble"`` geodesic.
    members : list of torch.nn.Module
        The trained decoders of logits, ``[..., d] -> [..., 64]``; the first
        one carries the Euclidean and Fisher–Rao metrics.
    """

    numbers: dict
    names: list
    paths: dict
    magnification: dict
    extent: tuple
    strips: list
    times: np.ndarray
    variance: dict
    members: list


def binarise(images):
    """Binary images: ``1.0`` where a pixel in ``[0, 1]`` exceeds :data:`THRESHOLD`.

    Parameters
    ----------
    images : numpy.ndarray, shape=[n, 8, 8]

    Returns
    -------
    binary : numpy.ndarray, shape=[n, 64]
    """
    return (np.asarray(images).reshape(len(images), -1) > THRESHOLD).astype(float)


def fit_bernoulli_decoder(codes, targets, *, seed, n_epochs):
    """A tanh MLP of Bernoulli logits from fixed latent codes, by Adam on the cross-entropy.

    Parameters
    ----------
    codes : torch.Tensor, shape=[n, d]
    targets : torch.Tensor, shape=[n, D]
        Binary, in the codes' dtype.
    seed : int
        Seed of the initialisation and of the batches (a forked torch
        generator: the global state is untouched).
    n_epochs : int
        Passes over the codes in shuffled batches of :data:`BATCH_SIZE`.

    Returns
    -------
    decoder : torch.nn.Module
        ``[..., d] -> [..., D]`` logits, in eval mode, parameters frozen.
    loss : float
        Final binary cross-entropy per image (nats).
    """

    def cross_entropy(index):
        logits = net(codes[index])
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, targets[index], reduction="sum") / len(index)

    n = codes.shape[0]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = mlp([codes.shape[-1], *HIDDEN, targets.shape[-1]], codes.dtype)
        optimizer = torch.optim.Adam(net.parameters(), lr=LEARNING_RATE)
        for _ in range(n_epochs):
            for index in torch.randperm(n).split(BATCH_SIZE):
                loss = cross_entropy(index)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    with torch.no_grad():
        final = float(cross_entropy(torch.arange(n)))
    return net.eval().requires_grad_(False), final


class _Probabilities(torch.nn.Module):
    """``sigmoid(logits(z))``: the decoder read as a map into ``R^D`` (Euclidean outputs)."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits
        self.training = False

    def forward(self, z):
        return torch.sigmoid(self.logits(z))


def member_variance(members, path):
    """Variance across members of the pixel probabilities, summed over pixels, along refined paths.

    Parameters
    ----------
    members : EnsembleDecoder
        Of logit decoders.
    path : torch.Tensor, shape=[..., n, d]

    Returns
    -------
    variance : torch.Tensor, shape=[..., n_refined]
        ``n_refined = (n - 1) REFINE + 1`` (:func:`~geomstats_pullback.demo.pairs.refine_path`).
    """
    with torch.no_grad():
        probabilities = torch.sigmoid(members.members_output(refine_path(path)))  # [M, ..., n_refined, D]
    return probabilities.var(0, unbiased=False).sum(-1)


def _retry_from(space, pairs, paths, converged, start_kind):
    """The ensemble's geodesics, pairs that did not converge solved again from the ``start_kind`` geodesic.

    Member 0 of the ensemble carries the Fisher–Rao metric, whose geodesic is
    a close start where the straight line and the codes' graph are not.

    Returns
    -------
    path : torch.Tensor, shape=[n_pairs, n_nodes, d]
    converged : numpy.ndarray of bool, shape=[n_pairs]
    """
    path, done = paths["ensemble"], converged["ensemble"]
    if done.all():
        return path, done
    retry = space.metric.log_solver.solve(pairs.end, pairs.start, initial_path=paths[start_kind])
    better = torch.as_tensor(~done) & torch.as_tensor(retry.converged)
    return torch.where(better[:, None, None], retry.path, path), done | better.numpy()


def compute_output_geometry(ctx, pairs):
    """Euclidean versus Fisher–Rao geodesics of a Bernoulli decoder, and an ensemble's variance.

    Parameters
    ----------
    ctx : Context
    pairs : Pairs

    Returns
    -------
    result : OutputGeometryResult
    """
    config = ctx.config
    codes = ctx.codes
    targets = torch.as_tensor(binarise(ctx.images), dtype=codes.dtype)
    fitted = [
        fit_bernoulli_decoder(codes, targets, seed=config.seed + m, n_epochs=config.bernoulli_epochs)
        for m in range(config.ensemble_members)
    ]
    decoder = fitted[0][0]
    spaces = {
        "euclidean": latent_space(_Probabilities(decoder), codes, config),
        "fisher_rao": latent_space(OutputDecoder(decoder, "bernoulli"), codes, config),
        "ensemble": latent_space(
            EnsembleDecoder([OutputDecoder(net, "bernoulli") for net, _ in fitted]), codes, config
        ),
    }
    paths, converged = {"line": pairs.line}, {}
    for key, space in spaces.items():
        paths[key], converged[key] = geodesics(space, pairs.start, pairs.end)
    paths["ensemble"], converged["ensemble"] = _retry_from(spaces["ensemble"], pairs, paths, converged, "fisher_rao")
    lengths = {
        metric: {kind: curve_length(spaces[metric], paths[kind]).tolist() for kind in KINDS}
        for metric in ("euclidean", "fisher_rao")
    }
    lengths["ensemble"] = {kind: curve_length(spaces["ensemble"], paths[kind]).tolist() for kind in ("line", "ensemble")}
    grid, extent = latent_grid(ctx, config.grid)
    magnification = {key: log10_magnification(spaces[key], grid).numpy() for key in ("euclidean", "fisher_rao")}
    images = {key: strip_images(spaces["euclidean"], paths[key]) for key in ("euclidean", "fisher_rao")}
    strips = [(f"{name}\n{key}", images[key][i]) for i, name in enumerate(pairs.names) for key in images]
    members = EnsembleDecoder([net for net, _ in fitted])
    variance = {key: member_variance(members, paths[key]) for key in ("line", "ensemble")}
    n_refined = variance["line"].shape[-1]
    numbers = {
        "pairs": pairs.names,
        "n_members": config.ensemble_members,
        "training_epochs": config.bernoulli_epochs,
        "cross_entropy": [loss for _, loss in fitted],
        "lengths": lengths,
        "converged": {key: value.tolist() for key, value in converged.items()},
        "variance_along_line": variance["line"].mean(-1).tolist(),
        "variance_along_ensemble_geodesic": variance["ensemble"].mean(-1).tolist(),
    }
    return OutputGeometryResult(
        numbers,
        list(pairs.names),
        paths,
        magnification,
        extent,
        strips,
        np.linspace(0.0, 1.0, n_refined),
        {key: value.numpy() for key, value in variance.items()},
        [net for net, _ in fitted],
    )


def render_output_geometry(result, report, backdrop):
    """Figures and prose of the Bernoulli section.

    Parameters
    ----------
    result : OutputGeometryResult
    report : Report
    backdrop : Backdrop
    """
    numbers = result.numbers
    fig, axes = new_figure(2, 1, width=5.2, height=4.6)
    titles = {"euclidean": "Euclidean outputs (probabilities)", "fisher_rao": "Fisher-Rao outputs (Bernoulli)"}
    for ax, key in zip(axes[0], ("euclidean", "fisher_rao")):
        heat_map(
            ax, result.magnification[key], result.extent, backdrop, cmap="Greys", alpha=0.8,
            label="log10 sqrt(det G)", codes_size=1.5, codes_alpha=0.4,
        )
        kinds = ("line", key, "ensemble") if key == "fisher_rao" else ("line", key)
        paths = {LABELS[kind]: result.paths[kind] for kind in kinds}
        draw_paths(ax, paths, styles=PATH_STYLES)
        ax.set_title(titles[key], fontsize=10)
    paths_png = report.save_figure(fig, "bernoulli_geodesics")
    strips_png = report.save_figure(strips_figure(result.strips), "bernoulli_strips")
    fig, axes = new_figure(1, 1, width=6.4, height=3.6)
    ax = axes[0, 0]
    colours = [f"C{i}" for i in range(len(result.names))]
    for i, (name, colour) in enumerate(zip(result.names, colours)):
        ax.plot(result.times, result.variance["line"][i], color=colour, linestyle="--", linewidth=1)
        ax.plot(result.times, result.variance["ensemble"][i], color=colour, linewidth=1.6, label=name)
    ax.set_xlabel("t (dashed: straight line, solid: ensemble geodesic)")
    ax.set_ylabel("pixel variance across members")
    ax.legend(fontsize=7)
    variance_png = report.save_figure(fig, "ensemble_variance")
    lengths, converged = numbers["lengths"], numbers["converged"]
    rows = [
        (
            name,
            *(lengths[metric][kind][i] for metric in ("euclidean", "fisher_rao") for kind in KINDS),
            "yes" if converged["euclidean"][i] and converged["fisher_rao"][i] else "NO",
        )
        for i, name in enumerate(result.names)
    ]
    ensemble_rows = [
        (
            name,
            lengths["ensemble"]["line"][i],
            lengths["ensemble"]["ensemble"][i],
            numbers["variance_along_line"][i],
            numbers["variance_along_ensemble_geodesic"][i],
            "yes" if converged["ensemble"][i] else "NO",
        )
        for i, name in enumerate(result.names)
    ]
    report.add_section(
        "Bernoulli decoder on binarised digits",
        paragraphs=[
            f"{numbers['n_members']} decoders of Bernoulli logits are trained on the binarised digits "
            f"(pixels > {THRESHOLD}), from the VAE's codes held fixed ({numbers['training_epochs']} epochs "
            "of Adam each, from different seeds; final cross-entropy per image: "
            f"{', '.join(f'{loss:.4g}' for loss in numbers['cross_entropy'])} nats). The first decoder's latent "
            "space carries two metrics: the Euclidean pullback of its pixel probabilities, J_p^T J_p, and the "
            "pullback of the Bernoulli Fisher-Rao metric, J_l^T diag(p (1 - p)) J_l "
            "(DecoderManifold(decoder, output='bernoulli')). Per pixel the Fisher-Rao metric is the Euclidean "
            "one divided by p (1 - p): it stretches the latent space where pixels are nearly certain and change, "
            "so its geodesics avoid flipping confident pixels.",
            "The ensemble's metric is the members' mean Fisher-Rao pullback, EnsembleDecoder([OutputDecoder(f_m, "
            "'bernoulli'), ...]). Along its geodesics and along the straight lines the variance of the pixel "
            "probabilities across members (summed over pixels) measures how much the members disagree.",
        ],
        tables=[
            (
                (
                    "pair",
                    "Euclidean length: straight",
                    "Euclidean geodesic",
                    "Fisher-Rao geodesic",
                    "Fisher-Rao length: straight",
                    "Euclidean geodesic",
                    "Fisher-Rao geodesic",
                    "converged",
                ),
                rows,
            ),
            (
                (
                    "pair",
                    "ensemble length: straight",
                    "ensemble geodesic",
                    "mean variance: straight",
                    "ensemble geodesic",
                    "converged",
                ),
                ensemble_rows,
            ),
        ],
        figures=[
            (
                paths_png,
                "Straight lines and geodesics over each metric's magnification factor (dark: expensive); right, "
                "also the geodesics of the ensemble's expected Fisher-Rao metric.",
            ),
            (strips_png, "Pixel probabilities along the Euclidean-output and the Fisher-Rao geodesic of each pair."),
            (variance_png, "Pixel variance across the ensemble's members along the straight lines and its geodesics."),
        ],
    )
