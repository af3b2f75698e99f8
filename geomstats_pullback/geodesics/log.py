r"""Geodesics between two points: ``log``, ``dist`` and ``geodesic(..., end_point=...)``.

:class:`GeodesicBVPSolver` is a geomstats ``LogSolver``. It solves a batch of
boundary value problems ``(base_point, point)`` as one vectorised problem, in
two stages, each in a module of its own:

1. **Discrete geodesic** (:mod:`.discrete`, :mod:`.correction`): minimise the
   discrete path energy by damped Newton on a block-tridiagonal system, coarse
   to fine (``N/4``, ``N/2``, ``N`` segments; Gauss-Newton on the coarse
   levels), then two deferred-correction steps make it fourth order: its nodes
   are ``O(1/N^4)`` off the geodesic, and so is its initial velocity
   (:func:`~.stencils.initial_velocity`, a sixth-order one-sided difference).
   Each Newton iteration costs ``O(B N)`` decoder Jacobians and ``O(B N d^3)``
   algebra.
2. **Shooting** (:mod:`.shooting`): quasi-Newton iterations on
   ``exp(v, z_0) = z_1``, started from the discrete velocity and its
   sensitivity to the end point, make ``exp(log(z_1, z_0), z_0) = z_1`` hold
   for the metric's own ``exp``. Most of the cost: ``shooting=False`` skips
   it (use it for distances, where the fourth-order discrete length suffices).

A pair converged when ``|exp(v, z_0) - z_1| <= tol * |z_1 - z_0|`` (plus a
rounding allowance), latent norms. Without shooting, ``log`` is the discrete
estimate, "converged" means that Newton's method on the discrete energy
converged, and the residual is not measured (NaN).

Pairs where ``exp`` fails (NaN, a singular metric along the way, as in a
chart's singular point) are isolated and flagged as not converged; the other
pairs of the batch are unaffected. So are pairs whose discrete stage cannot
proceed (a metric degenerate between the end points: :mod:`.discrete` caps
its damping and gives them up). A metric singular at an end point is refused
up front (:class:`~geomstats_pullback.errors.RankDeficientJacobianError`,
unless ``eps > 0`` regularises it).

With ``density=log_p`` and ``density_weight=lam > 0`` the solver returns
*likely geodesics* instead (:mod:`.density`): minimisers of the energy plus
``lam * int -log p``. They are not geodesics of the metric, so neither the
fourth-order correction nor shooting applies: ``path`` is the discrete
minimiser (``O(1/N^2)``), ``tangent_vec`` its initial velocity, ``residual``
NaN. ``density_weight=0`` gives the geodesic, exactly as without ``density``.

Hard problems (far-apart points, decoders with holes, as stochastic decoders
have) may need a better start than the straight latent line: pass ``init``, a
set of latent points (e.g. a data set's codes); the start is then the shortest
path in their k-nearest-neighbour graph (:mod:`.graph_init`).
"""

import logging
from dataclasses import dataclass
from typing import NamedTuple

import geomstats.backend as gs
import numpy as np
from geomstats.numerics.geodesic import LogSolver
from geomstats.numerics.path import UniformlySampledDiscretePath

from geomstats_pullback import kernels
from geomstats_pullback._validation import as_latent, broadcast_batch, check_float, check_integer, warn_unconverged
from geomstats_pullback.geodesics.batched import reported, scatter
from geomstats_pullback.geodesics.correction import end_point_sensitivity, fourth_order_correction
from geomstats_pullback.geodesics.density import DensityPenalty
from geomstats_pullback.geodesics.discrete import discrete_geodesic
from geomstats_pullback.geodesics.graph_init import graph_paths
from geomstats_pullback.geodesics.shooting import shoot
from geomstats_pullback.geodesics.stencils import initial_velocity, refine
from geomstats_pullback.paths import straight_lines

logger = logging.getLogger(__name__)

#: Default tolerance by the decoder's float precision (geoopt's convention).
DEFAULT_TOL = {"float32": 1e-4, "float64": 1e-7}
COARSEST_LEVEL = 8  # segments of the coarsest path
COARSE_XTOL = 1e-3  # Newton step tolerance on coarse levels, relative to |point - base_point|
FINE_XTOL = 1e-4  # on the last level, before the fourth-order correction
XTOL_FLOOR = 1e-10  # Newton steps below this (times 1 + |point|) are rounding
MAX_JACOBIAN_ENTRIES = 2**26  # pairs are solved in chunks whose path Jacobians fit this many floats


def _precision(decoder):
    """``"float32"`` for decoders evaluated in single (or half) precision, else ``"float64"``."""
    dtype = str(getattr(decoder, "dtype", "float64"))
    return "float32" if ("float32" in dtype or "float16" in dtype) else "float64"


@dataclass(frozen=True)
class GeodesicBVPResult:
    """Outcome of :meth:`GeodesicBVPSolver.solve`.

    Attributes
    ----------
    tangent_vec : array-like, shape=[..., dim]
        The logarithm: initial velocity of the geodesic from ``base_point``.
    path : array-like, shape=[..., n_nodes, dim]
        The discrete geodesic (fourth-order corrected minimiser of the
        discrete energy), end points included.
    converged : array-like, shape=[...], bool
        Whether each pair met the tolerance (see :class:`GeodesicBVPSolver`).
    residual : array-like, shape=[...]
        ``|exp(tangent_vec, base_point) - point|``, latent Euclidean norm;
        NaN where it was not measured (without shooting; ``inf`` where every
        ``exp`` failed).
    n_iter : int
        Newton iterations on the discrete energy (all levels, correction
        steps included) plus shooting iterations.
    n_exp : int
        Batched ``exp`` calls made (shooting iterations and final check).
    """

    tangent_vec: object
    path: object
    converged: object
    residual: object
    n_iter: int
    n_exp: int


class GeodesicBVPSolver(LogSolver):
    """Batched geodesic boundary value problem: discrete energy, then shooting.

    Parameters
    ----------
    space : DecoderManifold
        Equipped latent manifold (its ``metric.exp`` is used for shooting).
    n_nodes : int
        Nodes of the discrete geodesic, end points included (``N + 1``).
        Keyword-only, like all options.
    max_iter : int
        Newton iterations on the discrete energy, per resolution level.
    max_shooting_iter : int
        Shooting iterations (batched ``exp`` calls).
    tol : float, optional
        Relative tolerance on ``|exp(log) - point| / |point - base_point|``.
        Default: ``1e-7`` for float64 decoders, ``1e-4`` for float32 ones.
    shooting : bool
        Refine the discrete estimate by shooting. Without it, no ``exp`` is
        called, ``log`` has a relative error ``O(1/N^4)`` (``bench_log.py``
        measures it) and ``exp(log)`` does not return exactly to ``point``.
    init : array-like, shape=[n_points, dim], optional
        Latent points whose k-nearest-neighbour graph gives the initial paths
        (shortest paths, data-space edge lengths). Default: straight lines.
    n_neighbors : int
        ``k`` of that graph.
    density : callable, optional
        A latent log density ``log p: [..., d] -> [...]`` (torch, twice
        differentiable; e.g. a :class:`~.density.GaussianMixtureDensity`):
        solve for likely geodesics (see the module's docstring).
    density_weight : float
        ``lambda >= 0``, the weight of ``int -log p`` against the energy.

    Attributes
    ----------
    penalty : DensityPenalty or None
        The density term made of ``density`` and ``density_weight``.
    result_ : GeodesicBVPResult or None
        Result of the last call of :meth:`solve` (or :meth:`log`).

    Examples
    --------
    >>> import geomstats_pullback as gp
    >>> from geomstats_pullback import analytic
    >>> space = gp.DecoderManifold(analytic.sphere_chart, latent_dim=2)
    >>> result = space.metric.log_solver.solve([1.2, 0.5], [1.0, -0.5])
    >>> bool(result.converged)
    True
    """

    def __init__(
        self,
        space,
        *,
        n_nodes=33,
        max_iter=30,
        max_shooting_iter=8,
        tol=None,
        shooting=True,
        init=None,
        n_neighbors=8,
        density=None,
        density_weight=1.0,
    ):
        super().__init__(solves_bvp=True)
        self._space = space
        self.n_nodes = check_integer(n_nodes, "n_nodes", low=3)
        self.max_iter = check_integer(max_iter, "max_iter", low=0)
        self.max_shooting_iter = check_integer(max_shooting_iter, "max_shooting_iter", low=0)
        self.tol = None if tol is None else check_float(tol, "tol", low=0, strict=True)
        self.shooting = bool(shooting)
        self.n_neighbors = check_integer(n_neighbors, "n_neighbors", low=1)
        self.init = init
        self.penalty = None if density is None else DensityPenalty(density, density_weight)
        self.result_ = None

    @property
    def init(self):
        """Latent points ``[n_points, dim]`` of the graph initialisation, or None."""
        return self._init

    @init.setter
    def init(self, points):
        if points is not None:
            points = as_latent(points, self._space.dim, "init")
            if points.ndim != 2 or points.shape[0] < 2:
                raise ValueError(f"init must have shape [n_points >= 2, dim], got {tuple(points.shape)}.")
        self._init = points

    @property
    def tol_(self):
        """The tolerance in use: ``tol``, or the default for the decoder's precision."""
        if self.tol is not None:
            return float(self.tol)
        return DEFAULT_TOL[_precision(self._space.decoder)]

    # ------------------------------------------------------------ public API

    def solve(self, point, base_point, *, initial_path=None):
        """Solve the geodesic boundary value problems, batched.

        Parameters
        ----------
        point : array-like, shape=[..., dim]
            End points.
        base_point : array-like, shape=[..., dim]
            Start points; broadcast against ``point``.
        initial_path : array-like, shape=[..., n_nodes, dim], optional
            A warm start: paths to start Newton's method from on the finest
            level directly (e.g. the ``path`` of an earlier result whose end
            points moved a little); their end nodes are replaced by
            ``base_point`` and ``point``. Default: straight lines (or the
            graph paths of :attr:`init`), coarse to fine.

        Returns
        -------
        result : GeodesicBVPResult
            Also kept as :attr:`result_`. Empty arrays for an empty batch.

        Raises
        ------
        RankDeficientJacobianError
            If the metric is singular at an end point (see
            :func:`~geomstats_pullback.kernels.require_full_rank_at`).
        """
        dim = self._space.dim
        point = as_latent(point, dim, "point")
        base_point = as_latent(base_point, dim, "base_point")
        batch_shape, (end, start) = broadcast_batch(point, base_point)
        if initial_path is not None:
            initial_path = as_latent(initial_path, dim, "initial_path")
            shape = batch_shape + (self.n_nodes, dim)
            if initial_path.ndim < 2 or initial_path.shape[-2] != self.n_nodes:
                raise ValueError(f"initial_path must have shape {shape}, got {tuple(initial_path.shape)}.")
            initial_path = gs.reshape(gs.broadcast_to(initial_path, shape), (-1, self.n_nodes, dim))
        if start.shape[0] == 0:
            empty = gs.zeros(batch_shape + (dim,), dtype=start.dtype)
            path = gs.zeros(batch_shape + (self.n_nodes, dim), dtype=start.dtype)
            result = GeodesicBVPResult(empty, path, gs.ones(batch_shape, dtype=bool), gs.zeros(batch_shape), 0, 0)
            self.result_ = result
            return result
        metric = self._space.metric
        kernels.require_full_rank_at(
            self._space.decoder,
            gs.concatenate([start, end]),
            eps=metric.eps,
            rank_rtol=getattr(metric, "rank_rtol", kernels.DEFAULT_RANK_RTOL),
        )
        jacobian_entries = self.n_nodes * self._space.decoder.output_dim * dim
        chunk = max(1, MAX_JACOBIAN_ENTRIES // jacobian_entries)
        parts = [
            self._solve_flat(
                end[i : i + chunk],
                start[i : i + chunk],
                None if initial_path is None else initial_path[i : i + chunk],
            )
            for i in range(0, start.shape[0], chunk)
        ]
        flat = _concatenate_results(parts) if len(parts) > 1 else parts[0]
        result = GeodesicBVPResult(
            tangent_vec=gs.reshape(flat.tangent_vec, batch_shape + (dim,)),
            path=gs.reshape(flat.path, batch_shape + (self.n_nodes, dim)),
            converged=gs.reshape(flat.converged, batch_shape),
            residual=gs.reshape(flat.residual, batch_shape),
            n_iter=flat.n_iter,
            n_exp=flat.n_exp,
        )
        self.result_ = result
        return result

    def log(self, point, base_point):
        """Logarithm map, batched; warns where a pair did not converge.

        Parameters
        ----------
        point : array-like, shape=[..., dim]
            End points.
        base_point : array-like, shape=[..., dim]
            Start points; broadcast against ``point``.

        Returns
        -------
        tangent_vec : array-like, shape=[..., dim]
            Initial velocities at ``base_point``.

        Warns
        -----
        ConvergenceWarning
            If some pair did not converge (also logged); see :attr:`result_`.
        """
        result = self.solve(point, base_point)
        converged = result.converged
        n_failed = int(gs.sum(gs.cast(~converged, gs.int64)))
        if n_failed:
            if self.shooting:
                worst = reported(gs.amax(gs.where(converged, 0.0, result.residual)))
                how = (
                    f"largest residual |exp(log) - point| = {worst:.3g}, "
                    f"tol {self.tol_:g} relative to |point - base_point|"
                )
            else:
                how = "Newton's method on the discrete energy did not converge"
            message = (
                f"The geodesic boundary value problem did not converge for {n_failed} of "
                f"{int(np.prod(converged.shape))} pair(s) ({how}). Inspect metric.log_solver.result_; "
                "raise max_iter/max_shooting_iter or n_nodes, or pass init=<latent points> "
                "for a graph initialisation."
            )
            warn_unconverged(logger, message)
        return result.tangent_vec

    def geodesic_bvp(self, point, base_point):
        """Geodesic from ``base_point`` to ``point``, as a function of time.

        Parameters
        ----------
        point : array-like, shape=[..., dim]
        base_point : array-like, shape=[..., dim]

        Returns
        -------
        path : callable
            ``path(t)`` for ``t`` of shape ``[n_t]`` returns ``[..., n_t, dim]``:
            the geodesic ``exp(t log(point, base_point), base_point)``; without
            shooting, the piecewise-linear discrete geodesic.
        """
        tangent_vec = self.log(point, base_point)
        if not self.shooting:
            return UniformlySampledDiscretePath(self.result_.path)
        base_point = gs.broadcast_to(as_latent(base_point, self._space.dim, "base_point"), tangent_vec.shape)
        return self._space.metric.geodesic(initial_point=base_point, initial_tangent_vec=tangent_vec)

    # ------------------------------------------------------------ algorithm

    def _solve_flat(self, end, start, initial_path=None):
        """Both stages on flat batches ``[B, d]``; returns a flat GeodesicBVPResult."""
        decoder = self._space.decoder
        separation = gs.linalg.norm(end - start, axis=-1)  # [B]
        machine_eps = float(np.finfo(_precision(decoder)).eps)
        threshold = self.tol_ * separation + 100 * machine_eps * (1.0 + gs.linalg.norm(end, axis=-1))
        moving = separation > 0
        idx = gs.where(moving)[0]
        discrete = self._discrete_stage(end, start, idx, separation, initial_path)
        tangent_vec = gs.where(moving[:, None], initial_velocity(discrete.path), 0.0)
        if self.shooting and not self._likely:
            exp = self._space.metric.exp
            shot = shoot(exp, tangent_vec, start, end, idx, discrete.sensitivity, threshold, max_iter=self.max_shooting_iter)
            n_iter = discrete.n_iter + shot.n_calls
            return GeodesicBVPResult(shot.tangent_vec, discrete.path, shot.converged, shot.residual, n_iter, shot.n_calls)
        residual = gs.where(moving, float("nan"), 0.0)  # not measured: no exp call without shooting
        return GeodesicBVPResult(tangent_vec, discrete.path, discrete.converged | ~moving, residual, discrete.n_iter, 0)

    @property
    def _likely(self):
        """Whether the density penalty changes the paths (no correction, no shooting)."""
        return self.penalty is not None and self.penalty.active

    def _discrete_stage(self, end, start, idx, separation, initial_path):
        """Fourth-order discrete geodesics of the pairs ``idx``, coarse to fine (or from ``initial_path``)."""
        decoder = self._space.decoder
        eps = self._space.metric.eps
        n_pairs, dim = start.shape
        levels = [self.n_nodes - 1]
        if initial_path is None:
            while levels[0] % 2 == 0 and levels[0] // 2 >= COARSEST_LEVEL:
                levels.insert(0, levels[0] // 2)
            path = self._initial_path(start, end, levels[0])
        else:
            path = gs.concatenate([start[:, None], initial_path[:, 1:-1], end[:, None]], axis=1)
        damping = 1e-4 * gs.ones(n_pairs, dtype=start.dtype)
        sensitivity = gs.tile(gs.eye(dim, dtype=start.dtype)[None], (n_pairs, 1, 1))
        converged = gs.zeros(n_pairs, dtype=bool)
        n_iter = 0
        for level in range(len(levels)):
            if level:
                path = refine(path)
            last = level == len(levels) - 1
            if idx.shape[0] == 0:
                continue
            # Coarse levels only start the next one; the last one is finished by the exact
            # Newton steps of the fourth-order correction, so it need not converge much further.
            level_tol = FINE_XTOL if last else COARSE_XTOL
            xtol = level_tol * separation[idx] + XTOL_FLOOR * (1 + gs.linalg.norm(end[idx], axis=-1))
            result = discrete_geodesic(
                decoder, eps, path[idx], damping[idx], xtol=xtol, max_iter=self.max_iter, second_order=last,
                density=self.penalty,
            )
            n_iter += result.n_iter
            damping = scatter(damping, idx, result.damping)
            if not last or self._likely:
                path = scatter(path, idx, result.path)
                if last:
                    converged = scatter(converged, idx, result.converged)
                continue
            correction = fourth_order_correction(decoder, eps, result.path, result.decoded, result.converged)
            n_iter += correction.n_steps
            path = scatter(path, idx, correction.path)
            converged = scatter(converged, idx, result.converged)
            if self.shooting:
                sens = end_point_sensitivity(decoder, eps, correction.path, correction.hessian)
                sensitivity = scatter(sensitivity, idx, sens)
        return _DiscreteStage(path, converged, sensitivity, n_iter)

    def _initial_path(self, start, end, n_segments):
        """Straight lines, or shortest paths in the graph of :attr:`init`: ``[B, n + 1, d]``."""
        line = straight_lines(start, end, n_segments + 1)
        if self.init is None:
            return line
        graph_path, found = graph_paths(self._space.decoder, self.init, start, end, self.n_neighbors, n_segments)
        if not bool(gs.all(found)):
            logger.info(
                "%d pair(s) are not connected through the k-NN graph of init; "
                "they start from the straight line.",
                int(gs.sum(gs.cast(~found, gs.int64))),
            )
        return gs.where(found[:, None, None], graph_path, line)


class _DiscreteStage(NamedTuple):
    path: object  # [B, N+1, d], fourth-order discrete geodesics
    converged: object  # [B] bool: Newton's method converged on the last level
    sensitivity: object  # [B, d, d] dv/dz_N, identity where not computed
    n_iter: int


def _concatenate_results(parts):
    """One flat result from the results of consecutive chunks of pairs."""
    return GeodesicBVPResult(
        *(
            gs.concatenate([getattr(part, name) for part in parts])
            for name in ("tangent_vec", "path", "converged", "residual")
        ),
        n_iter=max(part.n_iter for part in parts),
        n_exp=sum(part.n_exp for part in parts),
    )
