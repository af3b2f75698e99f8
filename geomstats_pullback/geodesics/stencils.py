r"""Finite-difference stencils on discrete paths ``[B, n_nodes, ...]``.

Nodes are uniformly spaced in time, ``h = 1 / (n_nodes - 1)``.

- :func:`second_difference`: ``2 x_k - x_{k-1} - x_{k+1} = -h^2 x'' + O(h^4)``
  (the discrete energy's stationarity condition).
- :func:`fourth_order_weights`: the same quantity to ``O(h^6)``, from those
  second differences (the deferred correction of the discrete geodesic).
- :func:`velocity_weights` / :func:`initial_velocity`: one-sided difference of
  order ``min(6, n_nodes - 1)`` for ``x'(0)``.
- :func:`resample` / :func:`refine`: change the spacing by cubic (fourth-order)
  interpolation.
"""

import math

import geomstats.backend as gs
import numpy as np

from geomstats_pullback._arrays import asarray

#: Order of the one-sided difference giving the initial velocity from the nodes.
VELOCITY_ORDER = 6


def second_difference(values):
    """``2 x_k - x_{k-1} - x_{k+1}`` at the interior nodes of ``values [B, n, ...]``: ``[B, n - 2, ...]``."""
    return 2 * values[:, 1:-1] - values[:, :-2] - values[:, 2:]


def fourth_order_weights(weights):
    """From second differences ``w = -delta^2 x`` at the interior nodes to fourth-order ones, ``[B, n - 2, ...]``.

    ``-h^2 x'' = w - delta^2 w / 12 + O(h^6)`` (the five-point difference), and
    next to the ends ``w_1 + (-2 w_1 + 5 w_2 - 4 w_3 + w_4) / 12`` (the
    six-point one-sided difference). Needs at least four interior nodes.
    """
    inner = weights[:, 1:-1] - (weights[:, :-2] - 2 * weights[:, 1:-1] + weights[:, 2:]) / 12
    first = weights[:, 0] + (-2 * weights[:, 0] + 5 * weights[:, 1] - 4 * weights[:, 2] + weights[:, 3]) / 12
    last = weights[:, -1] + (-2 * weights[:, -1] + 5 * weights[:, -2] - 4 * weights[:, -3] + weights[:, -4]) / 12
    return gs.concatenate([first[:, None], inner, last[:, None]], axis=1)


def velocity_weights(n_nodes, *, like):
    """Weights ``[n_nodes]`` of the one-sided difference giving ``v = sum_j w_j z_j``, on ``like``'s device and dtype.

    Of order ``min(6, n_nodes - 1)``: ``w_j = N (-1)^(j+1) C(m, j) / j`` on the
    first ``m + 1`` nodes, ``w_0 = -sum_j w_j``.
    """
    order = min(VELOCITY_ORDER, n_nodes - 1)
    stencil = [(-1) ** (j + 1) * math.comb(order, j) / j for j in range(1, order + 1)]
    weights = np.zeros(n_nodes)
    weights[: order + 1] = (n_nodes - 1) * np.array([-sum(stencil)] + stencil)
    return asarray(weights, like=like)


def initial_velocity(path):
    """Initial velocity of a discrete geodesic ``[B, N+1, d] -> [B, d]`` (sixth-order difference)."""
    weights = velocity_weights(path.shape[1], like=path)
    return gs.einsum("j,bjd->bd", weights, path)


def resample(path, n_nodes):
    """Paths ``[B, n, d]`` on uniform times resampled at ``n_nodes`` uniform times: ``[B, n_nodes, d]``.

    Cubic Lagrange interpolation on the four nodes around each time (the
    first or last four next to the ends): fourth-order accurate, so a
    fourth-order discrete geodesic stays one on the new grid. Paths of fewer
    than four nodes are interpolated linearly.
    """
    n_old = path.shape[1]
    times = np.linspace(0.0, n_old - 1.0, n_nodes)  # in units of the old spacing
    width = 4 if n_old >= 4 else 2
    first = np.clip(np.floor(times).astype(int) - (width // 2 - 1), 0, n_old - width)  # [n_nodes]
    stencil = first[:, None] + np.arange(width)  # [n_nodes, width]
    weights = np.ones((n_nodes, width))
    for j in range(width):
        for m in range(width):
            if m != j:
                weights[:, j] *= (times - stencil[:, m]) / (stencil[:, j] - stencil[:, m])
    weights = asarray(weights, like=path)
    return gs.einsum("nw,bnwd->bnd", weights, path[:, asarray(stencil, like=path, dtype=gs.int64)])


def refine(path):
    """Double the resolution of paths ``[B, N+1, d] -> [B, 2N+1, d]`` (cubic midpoints, :func:`resample`)."""
    return resample(path, 2 * path.shape[1] - 1)
