"""Discrete latent paths and their length in data space.

Shao, Kumar & Fletcher (2018) compare the data-space length of geodesics with
that of straight latent lines. These functions give both numbers:

>>> import geomstats_pullback as gp
>>> from geomstats_pullback import analytic
>>> space = gp.DecoderManifold(analytic.linear_isometry(2, 5), latent_dim=2)
>>> round(float(gp.path_length(space, gp.linear_path([0.0, 0.0], [3.0, 4.0], 5))), 12)
5.0

A discrete path is an array ``[..., n_nodes, d]`` of latent nodes, traversed
at times ``i / (n_nodes - 1)``. Its length is the length of the polyline
through the decoded nodes, ``sum_i |f(z_{i+1}) - f(z_i)|``: a chord length,
which approaches the length of the smooth latent curve from below as the
nodes get denser (relative error ``O(1 / n_nodes^2)``).
"""

import geomstats.backend as gs
import numpy as np

from geomstats_pullback._arrays import linspace
from geomstats_pullback._validation import as_latent, broadcast_batch, check_integer
from geomstats_pullback.decoders import Decoder, as_decoder


def decode_nodes(decoder, nodes):
    """Decoder on the nodes of flat batches of paths, one call, no input checks.

    Parameters
    ----------
    decoder : Decoder
    nodes : array-like, shape=[B, n_nodes, d]

    Returns
    -------
    decoded : array-like, shape=[B, n_nodes, D]
    """
    n_paths, n_nodes, dim = nodes.shape
    return gs.reshape(decoder(gs.reshape(nodes, (-1, dim))), (n_paths, n_nodes, decoder.output_dim))


def straight_lines(start, end, n_nodes):
    """Straight lines sampled uniformly, no input checks.

    Parameters
    ----------
    start, end : array-like, shape=[B, d]
    n_nodes : int

    Returns
    -------
    path : array-like, shape=[B, n_nodes, d]
    """
    times = linspace(0.0, 1.0, n_nodes, like=start)[None, :, None]
    return start[:, None, :] + times * (end - start)[:, None, :]


def _eps_of(source):
    """The Tikhonov term of a metric or of a space's metric; 0 for a decoder."""
    return getattr(getattr(source, "metric", source), "eps", 0.0)


def _decoder_of(decoder_or_metric, latent_dim):
    """The :class:`Decoder` behind a metric, a space, a decoder or a callable."""
    decoder = getattr(decoder_or_metric, "decoder", decoder_or_metric)
    if isinstance(decoder, Decoder):
        if decoder.latent_dim != latent_dim:
            raise ValueError(f"The decoder has latent_dim {decoder.latent_dim}, the path {latent_dim}.")
        return decoder
    return as_decoder(decoder, latent_dim)


def _as_path(path):
    shape = tuple(np.shape(path))
    if len(shape) < 2 or shape[-2] < 2:
        raise ValueError(f"path must have shape [..., n_nodes >= 2, dim], got shape {shape}.")
    return as_latent(path, shape[-1], "path")


def decoded_path(decoder_or_metric, path):
    """Decode every node of a latent path, flattened: ``[..., n_nodes, D]``.

    Parameters
    ----------
    decoder_or_metric : PullbackMetric, DecoderManifold, Decoder or callable
        Where the decoder is taken from (a torch module or callable is wrapped).
    path : array-like, shape=[..., n_nodes, dim]
        Latent nodes.

    Returns
    -------
    decoded : array-like, shape=[..., n_nodes, D]
    """
    path = _as_path(path)
    decoder = _decoder_of(decoder_or_metric, path.shape[-1])
    decoded = decode_nodes(decoder, gs.reshape(path, (-1,) + path.shape[-2:]))
    return gs.reshape(decoded, path.shape[:-1] + (decoder.output_dim,))


def path_length(decoder_or_metric, path):
    """Length in data space of a discrete latent path.

    Parameters
    ----------
    decoder_or_metric : PullbackMetric, DecoderManifold, Decoder or callable
        Where the decoder is taken from.
    path : array-like, shape=[..., n_nodes, dim]
        Latent nodes.

    Returns
    -------
    length : array-like, shape=[...]
        ``sum_i |f(z_{i+1}) - f(z_i)|``.

    Notes
    -----
    A metric (or a space whose metric has) a Tikhonov term ``eps > 0`` adds
    ``eps |dz|^2`` to each squared step, so that this length is that of the
    metric's discrete energy; a bare decoder has none.
    """
    path = _as_path(path)
    decoded = decoded_path(decoder_or_metric, path)
    squared_steps = gs.sum((decoded[..., 1:, :] - decoded[..., :-1, :]) ** 2, axis=-1)
    eps = _eps_of(decoder_or_metric)
    if eps:
        squared_steps = squared_steps + eps * gs.sum((path[..., 1:, :] - path[..., :-1, :]) ** 2, axis=-1)
    return gs.sum(gs.sqrt(squared_steps), axis=-1)


def linear_path(initial_point, end_point, n_nodes):
    """Straight latent line between two points, sampled uniformly.

    Parameters
    ----------
    initial_point, end_point : array-like, shape=[..., dim]
        End points; broadcast against each other.
    n_nodes : int
        Number of nodes, at least 2 (both end points included).

    Returns
    -------
    path : array-like, shape=[..., n_nodes, dim]
    """
    check_integer(n_nodes, "n_nodes", low=2)
    shape = np.shape(initial_point)
    dim = shape[-1] if shape else 0
    initial_point = as_latent(initial_point, dim, "initial_point")
    end_point = as_latent(end_point, dim, "end_point")
    batch_shape, (start, end) = broadcast_batch(initial_point, end_point)
    return gs.reshape(straight_lines(start, end, n_nodes), batch_shape + (n_nodes, dim))
