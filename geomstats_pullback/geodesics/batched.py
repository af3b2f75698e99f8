"""Row updates of batched solver state: the solvers keep one row per pair and work on the active rows."""

import geomstats.backend as gs


def scatter(full, idx, values):
    """Copy of ``full [B, ...]`` with rows ``idx [A]`` replaced by ``values [A, ...]``."""
    out = gs.copy(full)
    out[idx] = values
    return out
