"""Row updates of batched solver state, and scalars for the solvers' messages.

The solvers keep one row per pair and work on the active rows.
"""

import geomstats.backend as gs


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
