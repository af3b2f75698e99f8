r"""Geodesics between two points: ``log``, ``dist`` and ``geodesic(..., end_point=...)``.

:class:`GeodesicBVPSolver` is a geomstats ``LogSolver``. It solves a batch of
boundary value problems ``(base_point, point)`` as one vectorised problem, in
two stages, each in a module of its own:

1. **Discrete geodesic** (:mod:`.discrete`, :mod:`.correction`): minimise the
   discrete path energy by damped Newton on a block-tridiagonal system, coarse
   to fine (``N`` segments halved down to 8; Gauss-Newton on the coarse
   levels, Newton on the last up to 32 segments), then two deferred-correction
   steps make it fourth order: its nodes are ``O(1/N^4)`` off the geodesic,
   and so is its initial velocity (:func:`~.stencils.initial_velocity`, a
   sixth-order one-sided difference). Grids finer than 32 segments are reached
   by fourth-order resampling and two correction steps on the fine grid.
   Each Newton iteration costs ``O(B N)`` decoder Jacobians and ``O(B N d^3)``
   algebra.
2. **Shooting** (:mod:`.shooting`): quasi-Newton iterations on
   ``exp(v, z_0) = z_1``, started from the discrete velocity and its
   sensitivity to the end point, make ``exp(log(z_1, z_0), z_0) = z_1`` hold
   for the metric's own ``exp``. Most of the cost: ``shooting=False`` skips
   it (use it for distances, where the fourth-order discrete length suffices).

A pair converged when ``|exp(v, z_0) - z_1| <= tol * |z_1 - z_0|`` (plus a
rounding allowance), latent norms, and ``exp`` met its own error tolerance
there (:mod:`.shooting`). Without shooting, ``log`` is the discrete estimate,
"converged" means that Newton's method on the discrete energy converged (and,
on a non-smooth decoder, that the length settled under grid refinement, see
below), and the residual is not measured (NaN).

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

**Decoders that are not twice differentiable** (ReLU, LeakyReLU, ELU,
max-pooling: :mod:`geomstats_pullback.smoothness`) have no geodesic
equation to shoot with: ``f''`` is zero almost everywhere, or undefined, and
the metric is piecewise constant or merely continuous. There a geodesic is
*the limit, as the grid is refined, of the minimisers of the discrete path
energy*, and its length the limit of their discrete lengths
``L_N = sum_i |f(z_{i+1}) - f(z_i)|``. ``method="discrete"`` (chosen by
``method="auto"`` for such decoders) minimises the discrete energy by Newton's
method (no fourth-order correction: it assumes a smooth decoder), doubles
the number of segments from ``n_nodes - 1`` up to ``max_refinements`` times,
and a pair converged when ``|L_{2N} - L_N| <= length_rtol * L_{2N}`` for the
last two doublings (coarse levels below ``n_nodes - 1`` count; discrete lengths converge at first order in ``1/N`` on piecewise-linear
decoders, at second order on ELU). Its ``log`` points along the first
segment of the finest path, with metric norm ``L``: ``dist`` is the discrete
length. On smooth decoders ``method="discrete"`` is the fourth-order
discrete geodesic above, without shooting.

Whatever the method, the result is never longer than the straight latent
line: its length (data-space polygons on ``4N + 1`` and ``8N + 1`` nodes,
Richardson-extrapolated; decoder calls only, and only where the inscribed
polygon on ``N + 1`` nodes, a lower bound, does not already exceed the
distance found) is compared with the distance found, and
where the line is shorter by more than the tolerance it is returned instead
(``straight_line`` in the result; such a pair is not converged with shooting,
as ``exp(log)`` then misses ``point``).

Hard problems (far-apart points, decoders with holes, as stochastic decoders
have) may need a better start than the straight latent line: pass ``init``, a
set of latent points (e.g. a data set's codes); the start is then the shortest
path in their k-nearest-neighbour graph (:mod:`.graph_init`).
"""

import logging
from dataclasses import dataclass, replace
from typing import NamedTuple

import geomstats.backend as gs
import numpy as np
from geomstats.numerics.geodesic import LogSolver
from geomstats.numerics.path import UniformlySampledDiscretePath

from geomstats_pullback import _arrays, kernels
from geomstats_pullback._validation import as_latent, broadcast_batch, check_float, check_integer, warn_unconverged
from geomstats_pullback.geodesics.batched import reported, scatter
from geomstats_pullback.geodesics.correction import end_point_sensitivity, fourth_order_correction
from geomstats_pullback.geodesics.density import DensityPenalty
from geomstats_pullback.geodesics.discrete import discrete_geodesic
from geomstats_pullback.geodesics.graph_init import graph_paths
from geomstats_pullback.geodesics.shooting import shoot
from geomstats_pullback.geodesics.stencils import initial_velocity, refine, resample
from geomstats_pullback.paths import decode_nodes, straight_lines
from geomstats_pullback.smoothness import is_smooth

logger = logging.getLogger(__name__)

#: Default tolerance by the decoder's float precision (geoopt's convention).
DEFAULT_TOL = {"float32": 1e-4, "float64": 1e-7}
COARSEST_LEVEL = 8  # segments of the coarsest path
#: Finest level solved by Newton's method; finer grids are reached by resampling and correction.
MAX_NEWTON_LEVEL = 32
COARSE_XTOL = 1e-2  # Newton step tolerance on coarse levels, relative to |point - base_point|
FINE_XTOL = 1e-4  # on the last level, before the fourth-order correction
XTOL_FLOOR = 1e-10  # Newton steps below this (times 1 + |point|) are rounding
#: Decoded-path-sized arrays (``[n_nodes, D]``, float64) the solver holds per pair: pairs are solved in
#: chunks whose arrays fit the decoder's memory budget where one is set, else ``UNLIMITED_PATH_BYTES``.
PATH_COPIES = 6
UNLIMITED_PATH_BYTES = 2**28
METHODS = ("auto", "shooting", "discrete")
#: Default ``length_rtol``: relative change of the discrete length under grid refinement (non-smooth decoders).
DEFAULT_LENGTH_RTOL = 1e-3
#: Newton's energy test on non-smooth decoders, relative to ``length_rtol``.
ENERGY_FTOL_FACTOR = 1e-3
#: Smallest relative margin by which the straight line must be shorter to replace a geodesic.
LINE_MARGIN = 1e-6
#: The straight line's length is measured on polygons of this many times ``N`` segments, and twice as many.
LINE_REFINEMENT = 4


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
    length : array-like, shape=[...]
        The distance: ``|tangent_vec|`` in the metric at ``base_point``
        (with a density term: the data-space length of ``path``).
    length_error : array-like, shape=[...]
        ``|L_{2N} - L_N|``, the change of the discrete length under the last
        grid refinement (``method="discrete"`` on a non-smooth decoder); NaN
        where not measured.
    straight_line : array-like, shape=[...], bool
        Where the straight latent line was shorter than the geodesic found
        and was returned instead.
    """

    tangent_vec: object
    path: object
    converged: object
    residual: object
    n_iter: int
    n_exp: int
    length: object = None
    length_error: object = None
    straight_line: object = None


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
    method : {"auto", "shooting", "discrete"}
        ``"shooting"``: the fourth-order discrete geodesic, refined by
        shooting (``exp(log) = point`` to ``tol``; needs a decoder twice
        differentiable). ``"discrete"``: no ``exp`` is called; on a smooth
        decoder ``log`` is the fourth-order discrete estimate, with a relative
        error ``O(1/N^4)`` (``bench_log.py`` measures it), on a non-smooth one
        the discrete energy's minimiser under grid refinement (module
        docstring). ``"auto"`` (default): ``"shooting"`` if
        :func:`~geomstats_pullback.smoothness.is_smooth` says the decoder is
        twice differentiable, else ``"discrete"``.
    shooting : bool, optional
        ``True`` is ``method="shooting"``, ``False`` ``method="discrete"``;
        overrides ``method``. Also an attribute (``solver.shooting = False``).
    length_rtol : float
        Convergence test of ``method="discrete"`` on non-smooth decoders:
        relative change of the discrete length between ``N`` and ``2N``
        segments, met by the last two grid doublings.
    max_refinements : int
        Grid doublings beyond ``n_nodes - 1`` segments allowed to meet
        ``length_rtol`` (each doubles the cost of a Newton iteration).
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
        method="auto",
        shooting=None,
        length_rtol=DEFAULT_LENGTH_RTOL,
        max_refinements=4,
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
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}.")
        self.method = method
        if shooting is not None:
            self.shooting = shooting
        self.length_rtol = check_float(length_rtol, "length_rtol", low=0, strict=True)
        self.max_refinements = check_integer(max_refinements, "max_refinements", low=0)
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
    def shooting(self):
        """Whether ``log`` shoots (:attr:`method_` is ``"shooting"``); settable (sets :attr:`method`)."""
        return self.method_ == "shooting"

    @shooting.setter
    def shooting(self, value):
        self.method = "shooting" if value else "discrete"

    @property
    def method_(self):
        """The method in use: :attr:`method`, with ``"auto"`` resolved by the decoder's smoothness."""
        if self.method != "auto":
            return self.method
        return "shooting" if is_smooth(self._space.decoder) else "discrete"

    @property
    def tol_(self):
        """The tolerance in use: ``tol``, or the default for the decoder's precision."""
        if self.tol is not None:
            return float(self.tol)
        return DEFAULT_TOL[_precision(self._space.decoder)]

    # ------------------------------------------------------------ public API

    def solve(self, point, base_point, *, initial_path=None, method=None):
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
        method : {"shooting", "discrete"}, optional
            Overrides :attr:`method_` for this call.

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
        method = self.method_ if method is None else method
        if method not in METHODS[1:]:
            raise ValueError(f"method must be one of {METHODS[1:]}, got {method!r}.")
        if start.shape[0] == 0:
            empty = _arrays.zeros(batch_shape + (dim,), like=start)
            path = _arrays.zeros(batch_shape + (self.n_nodes, dim), like=start)
            zeros, no = _arrays.zeros(batch_shape, like=start), _arrays.zeros(batch_shape, like=start, dtype=bool)
            result = GeodesicBVPResult(empty, path, ~no, zeros, 0, 0, zeros, zeros, no)
            self.result_ = result
            return result
        metric = self._space.metric
        kernels.require_full_rank_at(
            self._space.decoder,
            gs.concatenate([start, end]),
            eps=metric.eps,
            rank_rtol=getattr(metric, "rank_rtol", kernels.DEFAULT_RANK_RTOL),
        )
        budget, is_limit = self._space.decoder.budget
        pair_bytes = PATH_COPIES * self.n_nodes * self._space.decoder.output_dim * 8
        chunk = max(1, (budget if is_limit else UNLIMITED_PATH_BYTES) // pair_bytes)
        parts = [
            self._solve_flat(
                end[i : i + chunk],
                start[i : i + chunk],
                None if initial_path is None else initial_path[i : i + chunk],
                method,
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
            length=gs.reshape(flat.length, batch_shape),
            length_error=gs.reshape(flat.length_error, batch_shape),
            straight_line=gs.reshape(flat.straight_line, batch_shape),
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
                worst = reported(gs.amax(_arrays.where(converged, 0.0, result.residual)))
                how = (
                    f"largest residual |exp(log) - point| = {worst:.3g}, "
                    f"tol {self.tol_:g} relative to |point - base_point|"
                )
            elif not is_smooth(self._space.decoder):
                worst = reported(gs.amax(_arrays.where(converged, 0.0, result.length_error / result.length)))
                how = (
                    f"largest relative change of the discrete length under grid refinement {worst:.3g}, "
                    f"length_rtol {self.length_rtol:g}; raise max_refinements"
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

    def _solve_flat(self, end, start, initial_path, method):
        """The stages of ``method`` on flat batches ``[B, d]``; returns a flat GeodesicBVPResult."""
        decoder = self._space.decoder
        metric = self._space.metric
        separation = gs.linalg.norm(end - start, axis=-1)  # [B]
        machine_eps = float(np.finfo(_precision(decoder)).eps)
        threshold = self.tol_ * separation + 100 * machine_eps * (1.0 + gs.linalg.norm(end, axis=-1))
        moving = separation > 0
        idx = gs.where(moving)[0]
        not_measured = _arrays.where(moving, float("nan"), 0.0)
        length_error = not_measured
        if self._likely:
            discrete = self._discrete_stage(end, start, idx, separation, initial_path, False)
            tangent_vec = _arrays.where(moving[:, None], initial_velocity(discrete.path), 0.0)
            length = _polygon_length(decoder, metric.eps, discrete.path)  # not |tangent_vec|: not a geodesic
            return GeodesicBVPResult(
                tangent_vec, discrete.path, discrete.converged | ~moving, not_measured, discrete.n_iter, 0,
                length, length_error, _arrays.zeros(moving.shape, like=start, dtype=bool),
            )
        if method == "discrete" and not is_smooth(decoder):
            refined = self._refined_stage(end, start, idx, separation, initial_path)
            path, converged, n_iter = refined.path, refined.converged | ~moving, refined.n_iter
            direction = refined.first_step  # [B, d]
            speed = metric.norm(direction, start)
            scale = _arrays.where(speed > 0, refined.length / _arrays.where(speed > 0, speed, 1.0), 0.0)
            tangent_vec = _arrays.where(moving[:, None], direction * scale[:, None], 0.0)
            length_error = _arrays.where(moving, refined.length_error, 0.0)
            flat = GeodesicBVPResult(tangent_vec, path, converged, not_measured, n_iter, 0)
        else:
            discrete = self._discrete_stage(end, start, idx, separation, initial_path, method == "shooting")
            tangent_vec = _arrays.where(moving[:, None], initial_velocity(discrete.path), 0.0)
            if method == "shooting":
                exp = metric.exp
                shot = shoot(
                    exp, tangent_vec, start, end, idx, discrete.sensitivity, threshold, max_iter=self.max_shooting_iter
                )
                n_iter = discrete.n_iter + shot.n_calls
                flat = GeodesicBVPResult(
                    shot.tangent_vec, discrete.path, shot.converged, shot.residual, n_iter, shot.n_calls
                )
            else:
                flat = GeodesicBVPResult(
                    tangent_vec, discrete.path, discrete.converged | ~moving, not_measured, discrete.n_iter, 0
                )
        return self._no_longer_than_the_line(flat, start, end, moving, length_error, method == "shooting")

    @property
    def _likely(self):
        """Whether the density penalty changes the paths (no correction, no shooting, no straight-line guard)."""
        return self.penalty is not None and self.penalty.active

    def _no_longer_than_the_line(self, flat, start, end, moving, length_error, shooting):
        """Replace the pairs whose straight latent line is shorter than the distance found; adds the length fields."""
        metric = self._space.metric
        decoder = self._space.decoder
        length = metric.norm(flat.tangent_vec, start)  # [B]
        margin = max(LINE_MARGIN, self.tol_ if shooting else self.length_rtol)
        # The line must also beat the path found: on coarse grids |tangent_vec| can overstate its length.
        found = _polygon_length(decoder, metric.eps, flat.path)
        bound = gs.minimum(length, found) * (1 - margin)
        # An inscribed polygon is shorter than the line: where it already reaches the bound, so does the line.
        inscribed = _polygon_length(decoder, metric.eps, straight_lines(start, end, self.n_nodes))
        line = _arrays.where(moving, inscribed, 0.0)
        candidates = gs.where(moving & (inscribed < bound))[0]
        if candidates.shape[0]:
            line = scatter(line, candidates, self._line_length(start[candidates], end[candidates]))
        shorter = moving & (line < bound)
        if not bool(gs.any(shorter)):
            return replace(flat, length=length, length_error=length_error, straight_line=shorter)
        chord = end - start
        speed = metric.norm(chord, start)
        line_vec = chord * (line / _arrays.where(speed > 0, speed, 1.0))[:, None]
        line_path = straight_lines(start, end, self.n_nodes)
        logger.info("%d pair(s): the straight line is shorter than the geodesic found; returned instead.",
                    int(gs.sum(gs.cast(shorter, gs.int64))))
        return GeodesicBVPResult(
            gs.where(shorter[:, None], line_vec, flat.tangent_vec),
            gs.where(shorter[:, None, None], line_path, flat.path),
            flat.converged & ~shorter if shooting else flat.converged,
            flat.residual,
            flat.n_iter,
            flat.n_exp,
            gs.where(shorter, line, length),
            length_error,
            shorter,
        )

    def _line_length(self, start, end):
        """Data-space length of the straight latent lines ``[B]``: polygons on ``4N + 1`` and ``8N + 1`` nodes, extrapolated."""
        decoder = self._space.decoder
        eps = self._space.metric.eps
        n_seg = LINE_REFINEMENT * (self.n_nodes - 1)
        coarse = _polygon_length(decoder, eps, straight_lines(start, end, n_seg + 1))
        fine = _polygon_length(decoder, eps, straight_lines(start, end, 2 * n_seg + 1))
        return fine + (fine - coarse) / 3

    def _refined_stage(self, end, start, idx, separation, initial_path):
        """Minimisers of the discrete energy, the grid doubled until their length settles (non-smooth decoders)."""
        decoder = self._space.decoder
        eps = self._space.metric.eps
        n_pairs, dim = start.shape
        n_seg = self.n_nodes - 1
        if initial_path is None:
            level = n_seg
            while level % 2 == 0 and level // 2 >= COARSEST_LEVEL:
                level //= 2
            path = self._initial_path(start, end, level)
        else:
            level = n_seg
            path = gs.concatenate([start[:, None], initial_path[:, 1:-1], end[:, None]], axis=1)
        out_path = straight_lines(start, end, self.n_nodes)
        length = _arrays.zeros(n_pairs, like=start)
        length_error = _arrays.full(n_pairs, float("inf"), like=start)
        first_step = end - start
        converged = _arrays.zeros(n_pairs, like=start, dtype=bool)
        damping = 1e-4 * _arrays.ones(n_pairs, like=start)
        ftol = ENERGY_FTOL_FACTOR * self.length_rtol
        active = idx  # rows of the pairs still refined; ``path`` holds their paths only
        path = path[active]
        previous = None
        previous_change = _arrays.full(active.shape[0], float("inf"), like=start)  # relative
        n_iter = 0
        while active.shape[0]:
            xtol = FINE_XTOL * separation[active] + XTOL_FLOOR * (1 + gs.linalg.norm(end[active], axis=-1))
            result = discrete_geodesic(
                decoder, eps, path, damping[active], xtol=xtol, max_iter=self.max_iter, second_order=True, ftol=ftol
            )
            n_iter += result.n_iter
            damping = scatter(damping, active, result.damping)
            path = result.path
            current = _polygon_length(decoder, eps, path, result.decoded)
            change = gs.abs(current - previous) if previous is not None else float("inf") * current
            relative_change = change / _arrays.where(current > 0, current, 1.0)
            if level >= n_seg:
                stride = level // n_seg
                out_path = scatter(out_path, active, path[:, ::stride])
                length = scatter(length, active, current)
                first_step = scatter(first_step, active, level * (path[:, 1] - path[:, 0]))
                length_error = scatter(length_error, active, change)
                settled = (relative_change <= self.length_rtol) & (previous_change <= self.length_rtol)
                converged = scatter(converged, active, result.converged & settled)
            if level >= n_seg * 2**self.max_refinements:
                break
            keep = ~converged[active]
            active, path, previous = active[keep], refine(path[keep]), current[keep]
            previous_change = relative_change[keep]
            level *= 2
        return _RefinedStage(out_path, converged, length, length_error, first_step, n_iter)

    def _discrete_stage(self, end, start, idx, separation, initial_path, shooting):
        """Fourth-order discrete geodesics of the pairs ``idx``, coarse to fine (or from ``initial_path``).

        Newton's method runs on the levels up to :data:`MAX_NEWTON_LEVEL`
        segments (Gauss-Newton on all but the last), the last one is
        corrected to fourth order, and a finer ``n_nodes - 1`` is reached by
        resampling it (:func:`~.stencils.resample`, fourth order) and two
        correction steps there: the discrete minimiser on the fine grid,
        ``O(1/N^2)`` off the geodesic, is never needed. Likely geodesics and
        warm starts solve on the finest level.
        """
        decoder = self._space.decoder
        eps = self._space.metric.eps
        n_pairs, dim = start.shape
        n_seg = self.n_nodes - 1
        if initial_path is None:
            levels = _levels(n_seg)
            path = self._initial_path(start, end, levels[0])
        else:
            levels = [n_seg]
            path = gs.concatenate([start[:, None], initial_path[:, 1:-1], end[:, None]], axis=1)
        if not self._likely and initial_path is None:
            levels = [level for level in levels if level <= MAX_NEWTON_LEVEL] or levels[:1]
        damping = 1e-4 * _arrays.ones(n_pairs, like=start)
        sensitivity = gs.tile(_arrays.eye(dim, like=start)[None], (n_pairs, 1, 1))
        converged = _arrays.zeros(n_pairs, like=start, dtype=bool)
        n_iter = 0
        correction = None
        for level_index, level in enumerate(levels):
            if path.shape[1] != level + 1:
                path = resample(path, level + 1)
            last = level_index == len(levels) - 1
            if idx.shape[0] == 0:
                continue
            # Coarse levels only start the next one; the last one is finished by the
            # Newton steps of the fourth-order correction, so it need not converge much further.
            level_tol = FINE_XTOL if last else COARSE_XTOL
            xtol = level_tol * separation[idx] + XTOL_FLOOR * (1 + gs.linalg.norm(end[idx], axis=-1))
            result = discrete_geodesic(
                decoder, eps, path[idx], damping[idx], xtol=xtol, max_iter=self.max_iter, second_order=last,
                density=self.penalty,
            )
            n_iter += result.n_iter
            damping = scatter(damping, idx, result.damping)
            if last:
                converged = scatter(converged, idx, result.converged)
            if not last or self._likely:
                path = scatter(path, idx, result.path)
                continue
            correction = fourth_order_correction(
                decoder, eps, result.path, result.decoded, result.converged, exact=shooting and levels[-1] == n_seg
            )
            n_iter += correction.n_steps
            path = scatter(path, idx, correction.path)
        if levels[-1] < n_seg:
            path = resample(path, self.n_nodes)
            if idx.shape[0]:
                fine = path[idx]
                correction = fourth_order_correction(
                    decoder, eps, fine, decode_nodes(decoder, fine), converged[idx], exact=shooting
                )
                n_iter += correction.n_steps
                path = scatter(path, idx, correction.path)
        if shooting and correction is not None:
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


class _RefinedStage(NamedTuple):
    path: object  # [B, N+1, d], the finest minimiser's nodes at the times of n_nodes nodes
    converged: object  # [B] bool: Newton converged and the length settled under refinement
    length: object  # [B], discrete length on the finest grid
    length_error: object  # [B], its change under the last refinement; inf if none
    first_step: object  # [B, d], finest first segment times its number of segments
    n_iter: int


def _levels(n_segments):
    """Segments per level, coarse to fine: ``n_segments`` halved (rounded up) while at least :data:`COARSEST_LEVEL`."""
    levels = [n_segments]
    while -(-levels[0] // 2) >= COARSEST_LEVEL:
        levels.insert(0, -(-levels[0] // 2))
    return levels


def _polygon_length(decoder, eps, path, decoded=None):
    """Discrete length ``sum_i sqrt(|f_{i+1} - f_i|^2 (+ eps |dz|^2))`` of paths ``[B, n, d]``: ``[B]``."""
    decoded = decode_nodes(decoder, path) if decoded is None else decoded
    squared = gs.sum((decoded[:, 1:] - decoded[:, :-1]) ** 2, axis=-1)
    if eps:
        squared = squared + eps * gs.sum((path[:, 1:] - path[:, :-1]) ** 2, axis=-1)
    return gs.sum(gs.sqrt(squared), axis=-1)


def _concatenate_results(parts):
    """One flat result from the results of consecutive chunks of pairs."""
    names = ("tangent_vec", "path", "converged", "residual")
    lengths = ("length", "length_error", "straight_line")
    return GeodesicBVPResult(
        *(gs.concatenate([getattr(part, name) for part in parts]) for name in names),
        n_iter=max(part.n_iter for part in parts),
        n_exp=sum(part.n_exp for part in parts),
        **{name: gs.concatenate([getattr(part, name) for part in parts]) for name in lengths},
    )
