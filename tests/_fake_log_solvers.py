"""TEMPORARY stand-ins for the batched log solver of branch `log` (removed once it lands).

Same interface: ``solve(point, base_point) -> result`` with ``tangent_vec``,
``converged``; ``log(point, base_point)``.
"""

import collections

import geomstats.backend as gs

from geomstats_pullback import analytic

Result = collections.namedtuple("Result", "tangent_vec path converged residual n_iter")


class StraightLineLog:
    """``log = point - base_point``: exact on a flat (isometric linear) decoder."""

    def __init__(self, metric, *, max_dist=float("inf")):
        self.metric = metric
        self.max_dist = max_dist  # pairs farther apart (latent) are flagged as not converged

    def solve(self, point, base_point):
        vec = point - base_point
        converged = gs.linalg.norm(vec, axis=-1) <= self.max_dist
        return Result(vec, None, converged, gs.zeros(vec.shape[:-1]), 1)

    def log(self, point, base_point):
        return self.solve(point, base_point).tangent_vec


class SphereLog(StraightLineLog):
    """Exact log of the sphere chart: geomstats-style sphere log pulled back by ``J^+``."""

    def solve(self, point, base_point):
        fx, fy = analytic.sphere_chart(base_point), analytic.sphere_chart(point)
        cos = gs.clip(gs.sum(fx * fy, axis=-1), -1.0, 1.0)
        angle = gs.arccos(cos)
        perp = fy - cos[..., None] * fx
        norm = gs.linalg.norm(perp, axis=-1)
        log_ext = gs.where((norm > 0)[..., None], angle[..., None] * perp / gs.where(norm > 0, norm, 1.0)[..., None], 0.0)
        jac = self.metric.decoder.jacobian(base_point)
        gram = gs.einsum("bai,baj->bij", jac, jac)
        vec = gs.linalg.solve(gram, gs.einsum("bai,ba->bi", jac, log_ext)[..., None])[..., 0]
        return Result(vec, None, angle <= self.max_dist, gs.zeros(vec.shape[:-1]), 1)
