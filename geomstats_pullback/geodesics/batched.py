"""Row updates of batched solver state, isolation of failing rows, and scalars for the solvers' messages.

The solvers keep one row per pair and work on the active rows.
"""

import geomstats.backend as gs

from geomstats_pullback._arrays import ones, zeros


def scatter(full, idx, values):
    """Copy of ``full [B, ...]`` with rows ``idx [A]`` replaced by ``values [A, ...]``."""
    out = gs.copy(full)
    out[idx] = values
    return out


def reported(value):
    """A scalar array as a Python ``float`` for a message, outside autograd.

    ``float`` of a tensor that requires grad warns (and would record nothing
    useful); the value is detached first where the backend tracks gradients.
    """
    detach = getattr(value, "detach", None)
    return float(detach() if detach is not None else value)


def isolate_failures(function, arrays, errors, fill):
    """``function(*arrays)`` on a batch of rows, isolating the rows where it raises.

    A batch where ``function`` raises one of ``errors`` is split in halves
    until the failing rows are alone (``O(f log B)`` extra calls for ``f``
    failing rows); the other rows get the values of a call that succeeded.

    Parameters
    ----------
    function : callable
        Of arrays ``[B, ...]`` each, returning ``[B, ...]``.
    arrays : sequence of array-like, shape=[B, ...] each
    errors : tuple of exception classes
    fill : callable
        ``fill(n)``: the values ``[n, ...]`` of ``n`` failed rows.

    Returns
    -------
    values : array-like, shape=[B, ...]
    ok : array-like, shape=[B], bool
    """
    n_rows = arrays[0].shape[0]
    try:
        return function(*arrays), ones(n_rows, like=arrays[0], dtype=bool)
    except errors:
        if n_rows == 1:
            return fill(1), zeros(1, like=arrays[0], dtype=bool)
        half = n_rows // 2
        first, ok_first = isolate_failures(function, [a[:half] for a in arrays], errors, fill)
        second, ok_second = isolate_failures(function, [a[half:] for a in arrays], errors, fill)
        return gs.concatenate([first, second]), gs.concatenate([ok_first, ok_second])
