"""Input checks shared by the metric and the solvers: shapes and finiteness."""

import geomstats.backend as gs
import numpy as np


def as_latent(x, dim, name="point"):
    """Return ``x`` as a float geomstats array of shape ``[..., dim]``.

    Raises
    ------
    ValueError
        If the last axis is not ``dim`` or an entry is NaN or inf.
    """
    if not gs.is_array(x):
        x = gs.array(np.asarray(x, dtype=np.float64))
    if not gs.is_floating(x):
        x = gs.cast(x, gs.float64)
    if x.ndim == 0 or x.shape[-1] != dim:
        raise ValueError(
            f"{name} must have shape [..., {dim}] (latent dimension {dim}), got shape {tuple(x.shape)}."
        )
    if not all_finite(x):
        raise ValueError(f"{name} contains NaN or inf.")
    return x


def broadcast_batch(*arrays):
    """Broadcast ``[..., d]`` arrays to one batch shape and flatten them.

    Returns
    -------
    batch_shape : tuple
        The common batch shape.
    flat : list of array-like, shape=[B, d] each
        The broadcast arrays with the batch flattened.

    Raises
    ------
    ValueError
        If the batch shapes do not broadcast.
    """
    shapes = [tuple(a.shape[:-1]) for a in arrays]
    try:
        batch_shape = tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        raise ValueError(f"Batch shapes {shapes} do not broadcast together.") from None
    flat = [gs.reshape(gs.broadcast_to(a, batch_shape + a.shape[-1:]), (-1, a.shape[-1])) for a in arrays]
    return batch_shape, flat


def all_finite(x):
    """Whether every entry of a geomstats array is finite."""
    return not bool(gs.any(gs.isnan(x))) and bool(gs.all(gs.abs(x) < float("inf")))
