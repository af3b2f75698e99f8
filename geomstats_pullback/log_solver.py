r"""Geodesics between two points: ``log``, ``dist`` and ``geodesic(..., end_point=...)``.

:class:`GeodesicBVPSolver` is a geomstats ``LogSolver``. It solves a batch of
boundary value problems ``(base_point, point)`` as one vectorised problem, in
two stages.

1. **Discrete geodesic** (Shao, Kumar & Fletcher, 2018). Minimise the path
   energy in data space over the interior nodes ``z_1 .. z_{N-1}`` of a path
   with fixed ends ``z_0 = base_point``, ``z_N = point``:

   .. math:: E(z) = N \sum_{i<N} |f(z_{i+1}) - f(z_i)|^2 \; (+\, \epsilon N |z_{i+1} - z_i|^2).

   Its gradient couples each node with its two neighbours, so its Hessian is
   block tridiagonal with ``d x d`` blocks: the Gauss-Newton part
   ``2N J_k^T J_k`` / ``-N J_k^T J_{k+1}`` plus the second-order part
   ``N sum_a w_a f''_a(z_k)``, ``w = 2 f_k - f_{k-1} - f_{k+1}``. Newton's
   method with Levenberg-Marquardt damping solves it with a batched block
   LDL^T factorisation (:mod:`geomstats_pullback._blocktridiag`, ``O(N d^3)``),
   coarse to fine (``N/4``, ``N/2``, ``N`` segments; Gauss-Newton only on the
   coarse ones). One call of the decoder's Jacobian covers all nodes of all
   pairs. The minimiser's nodes are ``O(1/N^2)`` off the geodesic; two
   deferred-correction steps with the same Hessian replace the second
   difference in its stationarity condition by a fourth-order one, which
   brings them ``O(1/N^4)`` close (:func:`_fourth_order_correction`).

2. **Shooting.** The discrete path gives the initial velocity (sixth-order
   one-sided difference of its nodes; relative error at ``N = 32`` on the
   2-64-64-784 MLP: median ``2e-8``, largest ``3e-6``), and, by implicit
   differentiation of the discrete problem, its derivative with respect to
   the end point, ``M ~ (d exp / d v)^{-1}``. Quasi-Newton iterations
   ``v <- v - M (exp(v, z_0) - z_1)``, with Broyden updates of ``M``, then
   make ``exp(log(z_1, z_0), z_0) = z_1`` hold for the metric's own ``exp``.
   Each iteration is one batched ``exp`` call on the pairs not yet converged:
   the first call converges most pairs, the second the others. These calls
   are most of the cost; ``shooting=False`` skips them.

A pair converged when ``|exp(v, z_0) - z_1| <= tol * |z_1 - z_0|`` (plus a
rounding allowance), latent norms. Without shooting, ``log`` is the discrete
estimate, "converged" means that Newton's method on the discrete energy
converged, and the residual is not measured (NaN).

Pairs where ``exp`` fails (NaN, a singular metric along the way, as in a
chart's singular point) are isolated and flagged as not converged; the other
pairs of the batch are unaffected.

Hard problems (far-apart points, decoders with holes, as stochastic decoders
have) may need a better start than the straight latent line: pass ``init``, a
set of latent points (e.g. a data set's codes); the start is then the shortest
path in their k-nearest-neighbour graph, with data-space edge lengths
(Dijkstra, :func:`scipy.sparse.csgraph.dijkstra`).
"""

import logging
import math
from dataclasses import dataclass

import geomstats.backend as gs
import numpy as np
from geomstats.numerics.geodesic import LogSolver
from geomstats.numerics.path import UniformlySampledDiscretePath

from geomstats_pullback import _blocktridiag
from geomstats_pullback._validation import as_latent, broadcast_batch, check_float, check_integer, warn_unconverged
from geomstats_pullback.errors import RankDeficientJacobianError

logger = logging.getLogger(__name__)

# Default tolerance by the decoder's float precision (geoopt's convention).
_DEFAULT_TOL = {"float32": 1e-4, "float64": 1e-7}
# Order of the one-sided difference giving the initial velocity from the nodes.
_VELOCITY_ORDER = 6
_CORRECTIONS = 2  # deferred-correction steps from the second- to the fourth-order discrete geodesic
_MAX_DAMPING_TRIES = 12
_COARSEST_LEVEL = 8  # segments of the coarsest path
_COARSE_XTOL = 1e-3  # Newton step tolerance on coarse levels, relative to |point - base_point|
_FINE_XTOL = 1e-4  # on the last level, before the fourth-order correction
_SECOND_ORDER_REFRESH = 3  # Newton iterations between recomputations of the second-order term
_NEAR_NEWTON_DAMPING = 1e-3  # Levenberg-Marquardt parameters below which a step is nearly Newton's
_XTOL_FLOOR = 1e-10  # Newton steps below this (times 1 + |point|) are rounding
_MAX_JACOBIAN_ENTRIES = 2**26  # pairs are solved in chunks whose path Jacobians fit this many floats


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
        called (two to three times faster), ``log`` has a relative error
        ``O(1/N^4)`` (at 33 nodes on the 2-64-64-784 MLP: median ``2e-8``,
        largest ``3e-6``; up to ``1e-4`` on sharper decoders) and
        ``exp(log)`` does not return exactly to ``point``.
    init : array-like, shape=[n_points, dim], optional
        Latent points whose k-nearest-neighbour graph gives the initial paths
        (shortest paths, data-space edge lengths). Default: straight lines.
    n_neighbors : int
        ``k`` of that graph.

    Attributes
    ----------
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
        return _DEFAULT_TOL[_precision(self._space.decoder)]

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
            Also kept as :attr:`result_`.
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
        jacobian_entries = self.n_nodes * self._space.decoder.output_dim * dim
        chunk = max(1, _MAX_JACOBIAN_ENTRIES // jacobian_entries)
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
                worst = float(gs.amax(gs.where(converged, 0.0, result.residual)))
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
        metric = self._space.metric
        decoder = self._space.decoder
        n_pairs, dim = start.shape
        tol = self.tol_
        separation = gs.linalg.norm(end - start, axis=-1)  # [B]
        machine_eps = float(np.finfo(_precision(decoder)).eps)
        threshold = tol * separation + 100 * machine_eps * (1.0 + gs.linalg.norm(end, axis=-1))

        n_segments = self.n_nodes - 1
        levels = [n_segments]
        if initial_path is None:
            while levels[0] % 2 == 0 and levels[0] // 2 >= _COARSEST_LEVEL:
                levels.insert(0, levels[0] // 2)
            path = self._initial_path(start, end, levels[0])
        else:
            path = gs.concatenate([start[:, None], initial_path[:, 1:-1], end[:, None]], axis=1)

        moving = separation > 0
        idx = gs.where(moving)[0]
        damping = 1e-4 * gs.ones(n_pairs, dtype=start.dtype)
        n_iter = 0
        sensitivity = gs.tile(gs.eye(dim, dtype=start.dtype)[None], (n_pairs, 1, 1))
        bvp_converged = ~moving
        for level in range(len(levels)):
            if level:
                path = _refine(path)
            last = level == len(levels) - 1
            # Coarse levels only start the next one; the last one is finished by the exact
            # Newton steps of the fourth-order correction, so it need not converge much further.
            level_tol = _FINE_XTOL if last else _COARSE_XTOL
            if idx.shape[0] == 0:
                continue
            sub_path, sub_conv, iters, sub_sens, sub_damping = _discrete_geodesic(
                decoder,
                metric.eps,
                path[idx],
                damping[idx],
                xtol=level_tol * separation[idx] + _XTOL_FLOOR * (1 + gs.linalg.norm(end[idx], axis=-1)),
                max_iter=self.max_iter,
                second_order=last,
                with_sensitivity=last and self.shooting,
            )
            path = _scatter(path, idx, sub_path)
            damping = _scatter(damping, idx, sub_damping)
            n_iter += iters
            if last:
                bvp_converged = _scatter(bvp_converged, idx, sub_conv)
            if sub_sens is not None:
                sensitivity = _scatter(sensitivity, idx, sub_sens)

        tangent_vec = gs.where(moving[:, None], _initial_velocity(path), 0.0)
        if self.shooting:
            tangent_vec, residual, converged, n_exp = _shoot(
                metric.exp, tangent_vec, start, end, idx, sensitivity, threshold, max_iter=self.max_shooting_iter
            )
            return GeodesicBVPResult(tangent_vec, path, converged, residual, n_iter + n_exp, n_exp)
        residual = gs.where(moving, float("nan"), 0.0)  # not measured: no exp call without shooting
        return GeodesicBVPResult(tangent_vec, path, bvp_converged, residual, n_iter, 0)

    def _initial_path(self, start, end, n_segments):
        """Straight lines, or shortest paths in the graph of :attr:`init`: ``[B, n + 1, d]``."""
        times = gs.linspace(0.0, 1.0, n_segments + 1)[None, :, None]
        line = start[:, None, :] + times * (end - start)[:, None, :]
        if self.init is None:
            return line
        graph_path, found = _graph_paths(self._space.decoder, self.init, start, end, self.n_neighbors, n_segments)
        if not bool(gs.all(found)):
            logger.info(
                "%d pair(s) are not connected through the k-NN graph of init; "
                "they start from the straight line.",
                int(gs.sum(gs.cast(~found, gs.int64))),
            )
        return gs.where(found[:, None, None], graph_path, line)


# ---------------------------------------------------------------- kernels
# Pure functions on flat batches; shapes in comments: B pairs, N segments,
# d latent dimension, D data dimension.


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


def _guarded_exp(exp, tangent_vec, base_point):
    """``exp`` on a batch, isolating the pairs where it fails.

    A failing batch (NaN from the decoder, a singular metric along the way) is
    split in halves until the failing pairs are alone; their end points come
    back as NaN.

    Returns
    -------
    end_point : [B, d]
    ok : [B] bool
    """
    try:
        end_point = exp(tangent_vec, base_point)
    except (FloatingPointError, RankDeficientJacobianError):
        n_pairs = tangent_vec.shape[0]
        if n_pairs == 1:
            return gs.zeros_like(tangent_vec) * float("nan"), gs.zeros(1, dtype=bool)
        half = n_pairs // 2
        first, ok_first = _guarded_exp(exp, tangent_vec[:half], base_point[:half])
        second, ok_second = _guarded_exp(exp, tangent_vec[half:], base_point[half:])
        return gs.concatenate([first, second]), gs.concatenate([ok_first, ok_second])
    ok = ~gs.any(gs.isnan(end_point), axis=-1) & gs.all(gs.abs(end_point) < float("inf"), axis=-1)
    return end_point, ok


def _scatter(full, idx, values):
    """Copy of ``full`` with rows ``idx`` replaced by ``values``."""
    out = gs.copy(full)
    out[idx] = values
    return out


def _energy(decoded, path, eps):
    """Discrete energy ``N sum |f_{i+1} - f_i|^2 (+ eps N sum |dz|^2)``: ``[B]``."""
    n_seg = path.shape[1] - 1
    energy = n_seg * gs.sum((decoded[:, 1:] - decoded[:, :-1]) ** 2, axis=(1, 2))
    if eps:
        energy = energy + eps * n_seg * gs.sum((path[:, 1:] - path[:, :-1]) ** 2, axis=(1, 2))
    return energy


def _decode(decoder, nodes):
    """Decoder on nodes ``[B, n, d] -> [B, n, D]``."""
    n_pairs, n_nodes, dim = nodes.shape
    return gs.reshape(decoder(gs.reshape(nodes, (-1, dim))), (n_pairs, n_nodes, -1))


def _second_difference(values):
    """``2 x_k - x_{k-1} - x_{k+1}`` at the interior nodes of ``values [B, n, ...]``: ``[B, n - 2, ...]``."""
    return 2 * values[:, 1:-1] - values[:, :-2] - values[:, 2:]


def _interior_jacobians(decoder, path):
    """Jacobians at the interior nodes of ``path [B, N+1, d]``, one decoder call: ``[B*(N-1), D, d]``."""
    return decoder.jacobian(gs.reshape(path[:, 1:-1], (-1, path.shape[-1])))


def _newton_system(decoder, eps, path, decoded):
    """Half-gradient and Gauss-Newton blocks of the (halved) Hessian of the discrete energy.

    Returns
    -------
    grad : [B, N-1, d]
    gauss_newton : [B, N-1, d, d]
        Diagonal blocks ``2N (J_k^T J_k + eps I)``.
    upper : [B, N-2, d, d]
        Off-diagonal blocks ``-N (J_k^T J_{k+1} + eps I)``.
    jac : [B, N-1, D, d]
        Jacobians at the interior nodes.
    weights : [B, N-1, D]
        Second differences ``2 f_k - f_{k-1} - f_{k+1}``.
    """
    n_pairs, n_nodes, dim = path.shape
    n_seg = n_nodes - 1
    flat_jac = _interior_jacobians(decoder, path)  # [B*(N-1), D, d]
    jac = gs.reshape(flat_jac, (n_pairs, n_seg - 1, -1, dim))  # [B, N-1, D, d]
    weights = _second_difference(decoded)  # [B, N-1, D]
    grad = n_seg * gs.einsum("bkai,bka->bki", jac, weights)
    gauss_newton = 2 * n_seg * gs.einsum("bkai,bkaj->bkij", jac, jac)
    # Products of consecutive Jacobians on the flat (contiguous) batch: slicing the
    # node axis of [B, N-1, D, d] first would make einsum copy both operands (7x slower).
    consecutive = gs.einsum("kai,kaj->kij", flat_jac[:-1], flat_jac[1:])  # [B*(N-1) - 1, d, d]
    consecutive = gs.concatenate([consecutive, gs.zeros_like(consecutive[:1])])
    upper = -n_seg * gs.reshape(consecutive, (n_pairs, n_seg - 1, dim, dim))[:, :-1]
    if eps:
        eye = gs.eye(dim, dtype=path.dtype)
        grad = grad + eps * n_seg * _second_difference(path)
        gauss_newton = gauss_newton + 2 * eps * n_seg * eye
        upper = upper - eps * n_seg * eye
    return grad, gauss_newton, upper, jac, weights


def _second_order_term(decoder, path, weights, *, every_node=False):
    """Second-order part of the (halved) Hessian's diagonal blocks, ``N sum_a w_a f''_a(z_k)``: ``[B, N-1, d, d]``.

    Unless ``every_node``, the decoder's second derivatives are evaluated at
    every other interior node (and the last one) and interpolated linearly in
    between: the term varies smoothly along the path, and the interpolation
    error, ``O(1/N^2)`` relative, only slows Newton's method down by as much.
    """
    n_pairs, n_nodes, dim = path.shape
    n_interior = n_nodes - 2
    step = 1 if every_node else 2
    sampled = np.union1d(np.arange(0, n_interior, step), [n_interior - 1])  # [S]
    points = gs.reshape(path[:, 1:-1][:, sampled], (-1, dim))
    second = decoder.weighted_hessian(points, gs.reshape(weights[:, sampled], (points.shape[0], -1)))
    second = gs.reshape(second, (n_pairs, sampled.shape[0], dim, dim))
    out = gs.zeros((n_pairs, n_interior, dim, dim), dtype=path.dtype)
    out[:, sampled] = second
    between = np.setdiff1d(np.arange(n_interior), sampled)  # odd nodes; both neighbours are sampled
    if between.shape[0]:
        out[:, between] = (out[:, between - 1] + out[:, between + 1]) / 2
    return (n_nodes - 1) * out


def _discrete_geodesic(decoder, eps, path, damping, *, xtol, max_iter, second_order, with_sensitivity):
    """Minimise the discrete energy over interior nodes: damped Newton, batched.

    Each iteration factorises ``H + lambda s I`` (``s`` the Gauss-Newton
    diagonal scale of each node, ``lambda`` per pair) and accepts the step
    where the energy does not increase; ``lambda`` shrinks tenfold on success
    and grows tenfold on failure. The Gauss-Newton blocks are recomputed every
    iteration, the second-order part (if ``second_order``) every
    ``_SECOND_ORDER_REFRESH`` iterations: it changes slowly, and the step
    acceptance keeps the method monotone. Without it, this is Levenberg-Marquardt
    on the least-squares residuals (linear convergence; enough for coarse levels).

    Parameters
    ----------
    path : [B, N+1, d]
        Initial paths; end points stay fixed.
    damping : [B]
        Initial Levenberg-Marquardt parameters.
    xtol : [B]
        A pair converged when a nearly undamped step is below ``xtol`` (max norm).
    max_iter : int
    second_order : bool
        Newton (exact Hessian) rather than Gauss-Newton.
    with_sensitivity : bool
        Also return ``dv/dz_N`` (see :func:`_sensitivity`).

    Returns
    -------
    path : [B, N+1, d]
    converged : [B] bool
    n_iter : int
    sensitivity : [B, d, d] or None
    damping : [B]
    """
    n_pairs, n_nodes, dim = path.shape
    eye = gs.eye(dim, dtype=path.dtype)
    decoded = _decode(decoder, path)
    energy = _energy(decoded, path, eps)
    converged = gs.zeros(n_pairs, dtype=bool)
    second = gs.zeros((n_pairs, n_nodes - 2, dim, dim), dtype=path.dtype)
    n_iter = 0
    for iteration in range(max_iter):
        active = gs.where(~converged)[0]
        if active.shape[0] == 0:
            break
        n_iter += 1
        logger.debug("Newton iteration %d, %d segments, %d active pairs", iteration, n_nodes - 1, active.shape[0])
        grad, gauss_newton, upper, _, weights = _newton_system(decoder, eps, path[active], decoded[active])
        if second_order and iteration % _SECOND_ORDER_REFRESH == 0:
            second = _scatter(second, active, _second_order_term(decoder, path[active], weights))
        diag = gauss_newton + second[active]
        scale = gs.einsum("bkii->bk", gauss_newton) / dim  # [A, N-1]
        pending = gs.ones(active.shape[0], dtype=bool)
        for _ in range(_MAX_DAMPING_TRIES):
            sel = gs.where(pending)[0]
            if sel.shape[0] == 0:
                break
            rows = active[sel]
            lam = damping[rows]
            damped = diag[sel] + (lam[:, None] * scale[sel])[..., None, None] * eye
            factors, positive = _blocktridiag.factor(damped, upper[sel])
            step = _blocktridiag.solve(factors, -grad[sel][..., None])[..., 0]  # [S, N-1, d]
            trial = gs.concatenate([path[rows, :1], path[rows, 1:-1] + step, path[rows, -1:]], axis=1)
            trial_decoded = gs.concatenate(
                [decoded[rows, :1], _decode(decoder, trial[:, 1:-1]), decoded[rows, -1:]], axis=1
            )
            trial_energy = _energy(trial_decoded, trial, eps)
            step_size = gs.amax(gs.reshape(gs.abs(step), (step.shape[0], -1)), axis=1)
            near_newton = lam <= _NEAR_NEWTON_DAMPING
            small = positive & (step_size <= xtol[rows]) & near_newton
            # A relative slack of 1e-12 keeps rounding from blocking the last steps.
            accept = positive & (trial_energy <= energy[rows] * (1 + 1e-12))
            take = gs.where(accept)[0]
            path = _scatter(path, rows[take], trial[take])
            decoded = _scatter(decoded, rows[take], trial_decoded[take])
            energy = _scatter(energy, rows[take], trial_energy[take])
            damping = _scatter(damping, rows, gs.where(accept, gs.maximum(lam / 10, 1e-12), lam * 10))
            converged = _scatter(converged, rows, converged[rows] | small)
            pending = _scatter(pending, sel, ~(accept | small))
    sensitivity = None
    if second_order:
        path, n_corrections, jac, factors, positive = _fourth_order_correction(decoder, eps, path, decoded, converged)
        n_iter += n_corrections
        if with_sensitivity:
            sensitivity = _sensitivity(decoder, eps, path, jac, factors, positive)
    return path, converged, n_iter, sensitivity, damping


def _exact_hessian(decoder, eps, path, decoded):
    """Exact Hessian of the discrete energy at ``path`` (second-order term at every node), factorised.

    ``decoded [B, N+1, D]`` is the decoder at ``path``.

    Returns
    -------
    jac : [B, N-1, D, d]
    weights : [B, N-1, D]
        Second differences ``2 f_k - f_{k-1} - f_{k+1}``.
    factors : block LDL^T factors (see :mod:`~geomstats_pullback._blocktridiag`)
    positive : [B] bool
        Whether the Hessian is positive definite.
    """
    _, gauss_newton, upper, jac, weights = _newton_system(decoder, eps, path, decoded)
    hessian = gauss_newton + _second_order_term(decoder, path, weights, every_node=True)
    factors, positive = _blocktridiag.factor(hessian, upper)
    return jac, weights, factors, positive


def _fourth_order_weights(weights):
    """From second differences ``w = -delta^2 x`` at the interior nodes to fourth-order ones, ``[B, n - 2, ...]``.

    ``-h^2 x'' = w - delta^2 w / 12 + O(h^6)`` (the five-point difference), and
    next to the ends ``w_1 + (-2 w_1 + 5 w_2 - 4 w_3 + w_4) / 12`` (the
    six-point one-sided difference). Needs at least four interior nodes.
    """
    inner = weights[:, 1:-1] - (weights[:, :-2] - 2 * weights[:, 1:-1] + weights[:, 2:]) / 12
    first = weights[:, 0] + (-2 * weights[:, 0] + 5 * weights[:, 1] - 4 * weights[:, 2] + weights[:, 3]) / 12
    last = weights[:, -1] + (-2 * weights[:, -1] + 5 * weights[:, -2] - 4 * weights[:, -3] + weights[:, -4]) / 12
    return gs.concatenate([first[:, None], inner, last[:, None]], axis=1)


def _fourth_order_correction(decoder, eps, path, decoded, converged, n_steps=_CORRECTIONS):
    r"""Deferred correction of a discrete geodesic ``[B, N+1, d]`` to fourth order.

    The minimiser of the discrete energy solves
    ``J_k^T (2 f_k - f_{k-1} - f_{k+1}) = 0``: the second difference of the
    decoded path is normal to the decoder's image, and the nodes are
    ``O(1/N^2)`` off the geodesic. With a fourth-order difference instead
    (:func:`_fourth_order_weights`) they are ``O(1/N^4)`` off. Each step
    solves for that condition with the energy's exact Hessian at the starting
    path (its operator differs from the condition's by ``O(1/N^2)`` on smooth
    errors: two steps reach it). ``decoded [B, N+1, D]`` is the decoder at
    ``path``. Pairs whose Newton iterations did not converge
    (``converged [B]``), or whose Hessian is not positive definite, are left
    alone.

    Returns
    -------
    path : [B, N+1, d]
    n_steps : int
        Correction steps made (none with fewer than six nodes).
    jac, factors, positive
        Jacobians before the last step and the Hessian's factors (see
        :func:`_exact_hessian`), for :func:`_sensitivity`.
    """
    n_pairs, n_nodes, dim = path.shape
    n_seg = n_nodes - 1
    jac, weights, factors, positive = _exact_hessian(decoder, eps, path, decoded)
    if n_nodes < 6:  # the one-sided differences need four interior nodes
        return path, 0, jac, factors, positive
    for step_index in range(n_steps):
        if step_index:
            jac = gs.reshape(_interior_jacobians(decoder, path), jac.shape)
            weights = _second_difference(_decode(decoder, path))
        residual = n_seg * gs.einsum("bkai,bka->bki", jac, _fourth_order_weights(weights))
        if eps:
            residual = residual + eps * n_seg * _fourth_order_weights(_second_difference(path))
        step = _blocktridiag.solve(factors, -residual[..., None])[..., 0]
        step = gs.where((positive & converged)[:, None, None], step, 0.0)
        path = gs.concatenate([path[:, :1], path[:, 1:-1] + step, path[:, -1:]], axis=1)
    return path, n_steps, jac, factors, positive


def _velocity_weights(n_nodes, dtype):
    """Weights ``[n_nodes]`` of the one-sided difference giving ``v = sum_j w_j z_j``.

    Of order ``min(6, n_nodes - 1)``: ``w_j = N (-1)^(j+1) C(m, j) / j`` on the
    first ``m + 1`` nodes, ``w_0 = -sum_j w_j``.
    """
    order = min(_VELOCITY_ORDER, n_nodes - 1)
    stencil = [(-1) ** (j + 1) * math.comb(order, j) / j for j in range(1, order + 1)]
    weights = np.zeros(n_nodes)
    weights[: order + 1] = (n_nodes - 1) * np.array([-sum(stencil)] + stencil)
    return gs.array(weights, dtype=dtype)


def _initial_velocity(path):
    """Initial velocity of a discrete geodesic ``[B, N+1, d] -> [B, d]`` (sixth-order difference)."""
    weights = _velocity_weights(path.shape[1], path.dtype)
    return gs.einsum("j,bjd->bd", weights, path)


def _sensitivity(decoder, eps, path, jac, factors, positive):
    """Derivative of the discrete initial velocity with respect to the end point: ``[B, d, d]``.

    Implicit differentiation of the stationarity condition with the exact
    Hessian ``H`` of the discrete energy (factors from :func:`_exact_hessian`,
    Jacobians ``jac [B, N-1, D, d]`` at the interior nodes): interior nodes
    move by ``X = H^{-1} (N J_{N-1}^T J_N)`` (right-hand side in the last block)
    per unit move of ``z_N``; then ``dv/dz_N = sum_j w_j X_j`` (``X_N = I``).
    Pairs whose ``H`` is not positive definite (not at a minimum) get the identity.
    """
    n_pairs, n_nodes, dim = path.shape
    n_seg = n_nodes - 1
    eye = gs.eye(dim, dtype=path.dtype)
    identity = gs.tile(eye[None], (n_pairs, 1, 1))
    if n_nodes < 3:
        return identity
    jac_end = decoder.jacobian(path[:, -1])  # [B, D, d]
    coupling_end = n_seg * gs.einsum("bai,baj->bij", jac[:, -1], jac_end) + eps * n_seg * eye
    rhs = gs.zeros((n_pairs, n_seg - 1, dim, dim), dtype=path.dtype)
    rhs[:, -1] = coupling_end
    moved = _blocktridiag.solve(factors, rhs)  # [B, N-1, d, d]
    weights = _velocity_weights(n_nodes, path.dtype)
    sens = gs.einsum("j,bjik->bik", weights[1:-1], moved) + weights[-1] * eye
    return gs.where(positive[:, None, None], sens, identity)


def _shoot(exp, tangent_vec, start, end, idx, sensitivity, threshold, *, max_iter):
    """Quasi-Newton shooting on ``exp(v, start) = end`` for the pairs ``idx``.

    Broyden's ("good") update of the inverse Jacobian ``M`` after each step;
    a step that does not reduce the residual is halved.

    Returns
    -------
    tangent_vec : [B, d]
    residual : [B]
    converged : [B] bool
    n_calls : int
    """
    n_pairs, dim = start.shape
    residual = gs.zeros(n_pairs, dtype=start.dtype)
    converged = gs.ones(n_pairs, dtype=bool)
    if idx.shape[0] == 0:
        return tangent_vec, residual, converged, 0
    converged = _scatter(converged, idx, gs.zeros(idx.shape[0], dtype=bool))
    residual = _scatter(residual, idx, float("inf") * gs.ones(idx.shape[0], dtype=start.dtype))
    inverse_jac = gs.copy(sensitivity)
    best = gs.copy(tangent_vec)
    best_error = gs.zeros_like(start)  # exp(best) - end
    trial = gs.copy(tangent_vec)
    n_calls = 0
    active = idx
    for _ in range(max_iter):
        if active.shape[0] == 0:
            break
        n_calls += 1
        reached, ok = _guarded_exp(exp, trial[active], start[active])
        error = gs.where(ok[:, None], reached - end[active], gs.zeros_like(reached))  # [A, d]
        norm = gs.where(ok, gs.linalg.norm(error, axis=-1), float("inf"))
        logger.debug(
            "Shooting iteration %d: %d pairs, largest residual %.3g", n_calls, active.shape[0], float(gs.amax(norm))
        )
        improved = norm < residual[active]
        # Broyden update from the secant (trial - best, error - best_error), where a best exists.
        secant = ok & (residual[active] < float("inf"))
        if bool(gs.any(secant)):
            s = trial[active] - best[active]
            y = error - best_error[active]
            m = inverse_jac[active]
            my = gs.einsum("bij,bj->bi", m, y)
            sm = gs.einsum("bi,bij->bj", s, m)
            denom = gs.sum(sm * y, axis=-1)
            valid = secant & (gs.abs(denom) > 1e-12 * gs.linalg.norm(s, axis=-1) * gs.linalg.norm(y, axis=-1))
            safe = gs.where(valid, denom, gs.ones_like(denom))
            update = gs.einsum("bi,bj->bij", s - my, sm) / safe[:, None, None]
            inverse_jac = _scatter(inverse_jac, active, m + gs.where(valid[:, None, None], update, 0 * update))
        keep = gs.where(improved)[0]
        rows = active[keep]
        best = _scatter(best, rows, trial[rows])
        best_error = _scatter(best_error, rows, error[keep])
        residual = _scatter(residual, rows, norm[keep])
        converged = _scatter(converged, rows, norm[keep] <= threshold[rows])
        # Next trial: a quasi-Newton step from the best point, or half the failed step.
        newton = best[active] - gs.einsum("bij,bj->bi", inverse_jac[active], best_error[active])
        halved = (best[active] + trial[active]) / 2
        trial = _scatter(trial, active, gs.where(improved[:, None], newton, halved))
        # Pairs whose very first exp failed have no point to step back to: give up on them.
        active = active[~converged[active] & (residual[active] < float("inf"))]
    return best, residual, converged, n_calls


def _refine(path):
    """Double the resolution of paths ``[B, N+1, d] -> [B, 2N+1, d]`` (cubic midpoints)."""
    n_pairs, n_nodes, dim = path.shape
    if n_nodes >= 4:
        inner = (-path[:, :-3] + 9 * path[:, 1:-2] + 9 * path[:, 2:-1] - path[:, 3:]) / 16
        first = (3 * path[:, :1] + 6 * path[:, 1:2] - path[:, 2:3]) / 8
        last = (3 * path[:, -1:] + 6 * path[:, -2:-1] - path[:, -3:-2]) / 8
        mids = gs.concatenate([first, inner, last], axis=1)
    else:
        mids = (path[:, :-1] + path[:, 1:]) / 2
    out = gs.zeros((n_pairs, 2 * n_nodes - 1, dim), dtype=path.dtype)
    out[:, ::2] = path
    out[:, 1::2] = mids
    return out


def _graph_paths(decoder, points, start, end, n_neighbors, n_segments):
    """Shortest paths between ``start`` and ``end`` through the k-NN graph of ``points``.

    The graph joins each point (and each end point) to its ``n_neighbors``
    nearest points in latent space, with data-space edge lengths
    ``|f(a) - f(b)|``; one Dijkstra call serves all pairs. Paths are
    resampled to ``n_segments + 1`` nodes evenly spaced in data-space arc length.

    Returns
    -------
    paths : [B, n_segments + 1, d]
    found : [B] bool
        False where ``end`` is not reachable from ``start``.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import dijkstra
    from scipy.spatial import cKDTree

    n_pairs, dim = start.shape
    nodes = gs.concatenate([points, start, end], axis=0)
    nodes_np = np.asarray(gs.to_numpy(nodes))
    decoded = np.asarray(gs.to_numpy(decoder(nodes)))
    n_points = points.shape[0]
    k = min(n_neighbors, n_points - 1)
    tree = cKDTree(nodes_np[:n_points])
    _, neighbors = tree.query(nodes_np, k=k + 1)  # [n + 2B, k + 1], own index first for set points
    sources = np.repeat(np.arange(nodes_np.shape[0]), k + 1)
    targets = neighbors.reshape(-1)
    keep = sources != targets
    sources, targets = sources[keep], targets[keep]
    lengths = np.linalg.norm(decoded[sources] - decoded[targets], axis=-1)
    lengths = np.maximum(lengths, 1e-300)  # scipy drops explicit zeros
    graph = coo_matrix((lengths, (sources, targets)), shape=(nodes_np.shape[0],) * 2).tocsr()
    start_ids = n_points + np.arange(n_pairs)
    end_ids = n_points + n_pairs + np.arange(n_pairs)
    dist, predecessors = dijkstra(graph, directed=False, indices=start_ids, return_predecessors=True)
    found = np.isfinite(dist[np.arange(n_pairs), end_ids])
    # Walk back from every end at once; a finished walk stays on its start.
    walk = [np.where(found, end_ids, start_ids)]
    while np.any(walk[-1] != start_ids):
        current = walk[-1]
        walk.append(np.where(current != start_ids, predecessors[np.arange(n_pairs), current], current))
    order = np.stack(walk[::-1], axis=1)  # [B, L], start first (repeated for short paths)
    vertices = nodes_np[order]  # [B, L, d]
    steps = np.linalg.norm(np.diff(decoded[order], axis=1), axis=-1)  # [B, L-1]
    arc = np.concatenate([np.zeros((n_pairs, 1)), np.cumsum(steps, axis=1)], axis=1)  # [B, L]
    total = np.maximum(arc[:, -1:], 1e-300)
    targets_s = np.linspace(0.0, 1.0, n_segments + 1)[None, :] * total  # [B, n+1]
    segment = np.clip((arc[:, None, :] <= targets_s[:, :, None]).sum(-1) - 1, 0, arc.shape[1] - 2)
    rows = np.arange(n_pairs)[:, None]
    left, right = arc[rows, segment], arc[rows, segment + 1]
    frac = np.clip((targets_s - left) / np.maximum(right - left, 1e-300), 0.0, 1.0)[..., None]
    paths = vertices[rows, segment] * (1 - frac) + vertices[rows, segment + 1] * frac
    paths[:, 0], paths[:, -1] = nodes_np[start_ids], nodes_np[end_ids]
    return gs.array(paths, dtype=start.dtype), gs.array(found)
