"""The pairs of codes the geodesic sections connect, and the path tools they share.

:func:`compute_pairs` picks the pairs once, before any section runs; the
geodesic and stochastic sections both receive them. :func:`geodesics` is
the demo's geodesic solve (two starts, the better kept); lengths and
decoded images go through :mod:`geomstats_pullback.paths`.
"""

import copy
from typing import NamedTuple

import numpy as np
import torch

from geomstats_pullback.paths import decoded_path, linear_path, path_length

CLASS_PAIRS = ((0, 6), (1, 7), (3, 8), (4, 9), (2, 5), (0, 3), (5, 9), (2, 7))
GAP_CANDIDATES = 512  # random pairs searched for lines through uncertain regions
REFINE = 8  # each segment of a discrete path is split in REFINE to measure lengths
STRIP_IMAGES = 10  # decoded images per path in the strip figures


class Pairs(NamedTuple):
    """Pairs of codes to connect, and the straight lines between them.

    Attributes
    ----------
    start, end : torch.Tensor, shape=[n_pairs, d]
    names : list of str
        ``"a to b"``, with ``" (gap)"`` for the pairs picked for their uncertain line.
    line : torch.Tensor, shape=[n_pairs, n_nodes, d]
        Straight latent lines, as many nodes as the discrete geodesics.
    """

    start: torch.Tensor
    end: torch.Tensor
    names: list
    line: torch.Tensor


def class_core(ctx, label):
    """Indices of the codes of ``label`` at most the median distance from the class's median code.

    Parameters
    ----------
    ctx : Context
    label : int

    Returns
    -------
    index : numpy.ndarray of int, shape=[n_core]
    """
    index = np.flatnonzero(ctx.labels == label)
    codes = ctx.codes[index].numpy()
    dist = np.linalg.norm(codes - np.median(codes, axis=0), axis=1)
    return index[dist <= np.median(dist)]


def refine_path(path, factor=REFINE):
    """Split each segment of latent polylines in ``factor``.

    Parameters
    ----------
    path : torch.Tensor, shape=[..., n, d]
    factor : int

    Returns
    -------
    refined : torch.Tensor, shape=[..., (n - 1) factor + 1, d]
    """
    steps = torch.arange(factor, dtype=path.dtype) / factor  # [k]
    start, delta = path[..., :-1, :], path[..., 1:, :] - path[..., :-1, :]
    inner = start[..., None, :] + steps[:, None] * delta[..., None, :]  # [..., n - 1, k, d]
    inner = inner.reshape(*path.shape[:-2], -1, path.shape[-1])
    return torch.cat([inner, path[..., -1:, :]], dim=-2)


def curve_length(space, path):
    """Data-space length of latent polylines, measured on the refined polyline (metric's ``eps`` included).

    Parameters
    ----------
    space : DecoderManifold
    path : torch.Tensor, shape=[..., n, d]

    Returns
    -------
    length : torch.Tensor, shape=[...]
    """
    return path_length(space.metric, refine_path(path))


def decoder_std_along(vae, path):
    """How far latent paths leave the data, by the decoder's std (mean over pixels).

    Parameters
    ----------
    vae : VAE
    path : torch.Tensor, shape=[..., n, d]

    Returns
    -------
    mean : torch.Tensor, shape=[...]
        Mean std along the refined path.
    excess : torch.Tensor, shape=[...]
        Largest std along the path minus the larger std at its two ends:
        0 for a path that stays as close to the data as its end points.
    """
    std = decoded_path(vae.decoder_std, refine_path(path)).mean(dim=-1)  # [..., n_refined]
    ends = torch.maximum(std[..., 0], std[..., -1])
    return std.mean(dim=-1), std.max(dim=-1).values - ends


def strip_images(space, path, n_images=STRIP_IMAGES):
    """Decoded images evenly spaced along latent paths, for :func:`~geomstats_pullback.demo.plots.strips_figure`.

    Parameters
    ----------
    space : DecoderManifold
        Of the mean decoder (its output is the image).
    path : torch.Tensor, shape=[..., n, d]
    n_images : int

    Returns
    -------
    images : numpy.ndarray, shape=[..., n_images, 8, 8]
    """
    index = np.linspace(0, path.shape[-2] - 1, n_images).round().astype(int)
    decoded = decoded_path(space.metric, path[..., index, :])  # [..., n_images, 64]
    return decoded.reshape(*decoded.shape[:-1], 8, 8).detach().numpy()


def geodesics(space, start, end):
    """Discrete geodesics between ``start[i]`` and ``end[i]``, the shorter of two starts.

    The boundary value solver finds a local geodesic, which through a gap in
    the codes may be a long detour. Each pair is solved twice, in two batched
    solves: from the straight line and from the shortest path through the
    k-NN graph of the codes (``init``); the converged one is kept, or the
    shorter where both (or neither) converged.

    Parameters
    ----------
    space : DecoderManifold
        With a region of codes (``space.region[1]``) and a discrete log solver.
    start, end : torch.Tensor, shape=[n_pairs, d]

    Returns
    -------
    path : torch.Tensor, shape=[n_pairs, n_nodes, d]
    converged : numpy.ndarray of bool, shape=[n_pairs]
    """
    solver = space.metric.log_solver
    through_codes = copy.copy(solver)
    through_codes.init = space.region[1]  # the demo's spaces sample among the codes
    results = [solver.solve(end, start), through_codes.solve(end, start)]
    lengths = torch.stack([path_length(space.metric, result.path) for result in results])  # [2, n_pairs]
    converged = torch.stack([result.converged for result in results])  # [2, n_pairs]
    best = torch.where(converged[0] == converged[1], lengths.argmin(dim=0), converged[1].long())
    rows = torch.arange(best.shape[0])
    path = torch.stack([result.path for result in results])[best, rows]
    return path, np.asarray(converged[best, rows])


def compute_pairs(ctx):
    """Pairs of codes to connect, seeded.

    ``config.pairs`` pairs of typical codes of two digits (:data:`CLASS_PAIRS`),
    then ``config.gap_pairs`` pairs whose straight line crosses the most
    uncertain region: among random pairs of typical codes of different
    digits, those whose line climbs highest in decoder standard deviation
    above its end points.

    Parameters
    ----------
    ctx : Context

    Returns
    -------
    pairs : Pairs
    """
    config = ctx.config
    rng = np.random.default_rng(config.seed)
    class_pairs = [CLASS_PAIRS[i % len(CLASS_PAIRS)] for i in range(config.pairs)]
    starts = [rng.choice(class_core(ctx, a)) for a, _ in class_pairs]
    ends = [rng.choice(class_core(ctx, b)) for _, b in class_pairs]
    names = [f"{a} to {b}" for a, b in class_pairs]
    if config.gap_pairs:
        typical = np.concatenate([class_core(ctx, label) for label in range(10)])
        first, second = rng.choice(typical, size=(2, GAP_CANDIDATES))
        excess = decoder_std_along(ctx.vae, linear_path(ctx.codes[first], ctx.codes[second], 9))[1]  # [C]
        excess[torch.as_tensor(ctx.labels[first] == ctx.labels[second])] = -1.0
        for k in torch.argsort(excess, descending=True)[: config.gap_pairs].tolist():
            starts.append(first[k])
            ends.append(second[k])
            names.append(f"{ctx.labels[first[k]]} to {ctx.labels[second[k]]} (gap)")
    start, end = ctx.codes[starts], ctx.codes[ends]
    return Pairs(start, end, names, linear_path(start, end, config.nodes))
