"""Input checks shared by the metric, the solvers and the commands: one helper per concept."""

import logging
import math
import warnings

import geomstats.backend as gs
import numpy as np

from geomstats_pullback.errors import ConvergenceWarning


def as_latent(x, dim, name="point"):
    """Return ``x`` as a float64 geomstats array of shape ``[..., dim]``.

    Latent points and vectors are float64 (geomstats' dtype) whatever the
    input's type (integers, float16, bfloat16, float32 are cast), so that the
    solvers never mix precisions; a float32 decoder still runs in float32
    (:class:`~geomstats_pullback.decoders.Decoder` casts at its boundary). The
    cast is differentiable: gradients reach a lower-precision input.

    Raises
    ------
    ValueError
        If the last axis is not ``dim`` or an entry is NaN or inf.
    """
    if not gs.is_array(x):
        x = gs.array(np.asarray(x, dtype=np.float64))
    if x.dtype != gs.float64:
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


def check_integer(value, name, *, low=None, high=None):
    """``value`` as an ``int`` in ``[low, high]``; ``bool`` is refused.

    Raises
    ------
    ValueError
        If ``value`` is not an integer (Python or numpy) or out of range.
    """
    if not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be an integer{_range(low, high)}, got {value!r}.")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be an integer{_range(low, high)}, got {value!r}.")
    return int(value)


def check_float(value, name, *, low=None, strict=False):
    """``value`` as a finite ``float``, at least ``low`` (above it if ``strict``).

    Raises
    ------
    ValueError
        If ``value`` is not a real number, is NaN or inf, or is out of range.
    """
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be a finite number, got {value!r}.")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number, got {value!r}.") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {value!r}.")
    if low is not None and (number < low or (strict and number == low)):
        bound = f"> {low:g}" if strict else f">= {low:g}"
        raise ValueError(f"{name} must be {bound}, got {value!r}.")
    return number


def _range(low, high):
    if low is not None and high is not None:
        return f" in [{low}, {high}]"
    if low is not None:
        return f" >= {low}"
    if high is not None:
        return f" <= {high}"
    return ""


def warn_unconverged(logger, message, *, stacklevel=2):
    """Log ``message`` on ``logger`` and issue it as a :class:`ConvergenceWarning`.

    ``stacklevel`` counts from the caller of this function, as in
    :func:`warnings.warn`.
    """
    logger.log(logging.WARNING, message)
    warnings.warn(message, ConvergenceWarning, stacklevel=stacklevel + 1)


def check_in_range(values, name, *, low, high=None):
    """Return ``values`` (an array) after checking ``low <= values <= high``.

    NaN entries pass: the decoder adapters report them as non-finite output.

    Raises
    ------
    ValueError
        If an entry is below ``low`` or above ``high``.
    """
    outside = values < low
    if high is not None:
        outside = outside | (values > high)
    if bool(outside.any()):
        raise ValueError(
            f"{name} must lie in {_interval(low, high)}; {int(outside.sum())} of {math.prod(values.shape)} "
            f"entries do not (min {float(values.min()):.6g}, max {float(values.max()):.6g})."
        )
    return values


def _interval(low, high):
    return f"[{low:g}, {high:g}]" if high is not None else f"[{low:g}, inf)"
