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
   coarse to fine (``N/4``, ``N/2``, ``N`` segments). One call of the
   decoder's Jacobian covers all nodes of all pairs.

2. **Shooting.** The discrete path gives the initial velocity to
   ``O(1/N^4)`` (fourth-order one-sided difference), and, by implicit
   differentiation of the discrete problem, its derivative with respect to the
   end point, ``M ~ (d exp / d v)^{-1}``. Quasi-Newton iterations
   ``v <- v - M (exp(v, z_0) - z_1)``, with Broyden updates of ``M``, then
   make ``exp(log(z_1, z_0), z_0) = z_1`` hold for the metric's own ``exp``.
   Each iteration is one batched ``exp`` call on the pairs not yet converged;
   two or three are typical.

A pair converged when ``|exp(v, z_0) - z_1| <= tol * |z_1 - z_0|`` (plus a
rounding allowance), latent norms. Without shooting, ``log`` is the discrete
estimate and "converged" means that Newton's method on the discrete energy
converged.

Hard problems (far-apart points, decoders with holes, as stochastic decoders
have) may need a better start than the straight latent line: pass ``init``, a
set of latent points (e.g. a data set's codes); the start is then the shortest
path in their k-nearest-neighbour graph, with data-space edge lengths
(Dijkstra, :func:`scipy.sparse.csgraph.dijkstra`).
"""

import logging
import warnings
from dataclasses import dataclass

import geomstats.backend as gs
import numpy as np
from geomstats.numerics.geodesic import LogSolver
from geomstats.numerics.path import UniformlySampledDiscretePath

from geomstats_pullback import _blocktridiag
from geomstats_pullback._validation import as_latent, broadcast_batch

logger = logging.getLogger(__name__)

# Default tolerance by the decoder's float precision (geoopt's convention).
_DEFAULT_TOL = {"float32": 1e-4, "float64": 1e-7}
# Fourth-order one-sided difference: v = N * sum_j c_j z_j + O(1/N^4).
_VELOCITY_STENCIL = np.array([-25.0, 48.0, -36.0, 16.0, -3.0]) / 12.0
_MAX_DAMPING_TRIES = 12
_COARSEST_LEVEL = 8


def _precision(decoder):
    """``"float32"`` for decoders evaluated in single (or half) precision, else ``"float64"``."""
    dtype = str(getattr(decoder, "dtype", "float64"))
    return "float32" if ("float32" in dtype or "float16" in dtype) else "float64"


class ConvergenceWarning(UserWarning):
    """A geodesic boundary value problem did not converge for some pairs."""


@dataclass(frozen=True)
class GeodesicBVPResult:
    """Outcome of :meth:`GeodesicBVPSolver.solve`.

    Attributes
    ----------
    tangent_vec : array-like, shape=[..., dim]
        The logarithm: initial velocity of the geodesic from ``base_point``.
    path : array-like, shape=[..., n_nodes, dim]
        The discrete geodesic (minimiser of the discrete energy), end points
        included.
    converged : array-like, shape=[...], bool
        Whether each pair met the tolerance (see :class:`GeodesicBVPSolver`).
    residual : array-like, shape=[...]
        ``|exp(tangent_vec, base_point) - point|``, latent Euclidean norm.
    n_iter : int
        Newton iterations on the discrete energy (all levels) plus shooting
        iterations.
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
        Refine the discrete estimate by shooting. Without it, ``log`` has
        error ``O(1/N^4)`` and ``exp(log)`` does not return to ``point``.
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
        for name, value, low in (
            ("n_nodes", n_nodes, 3),
            ("max_iter", max_iter, 0),
            ("max_shooting_iter", max_shooting_iter, 0),
            ("n_neighbors", n_neighbors, 1),
        ):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}.")
        if tol is not None and not tol > 0:
            raise ValueError(f"tol must be positive, got {tol!r}.")
        self._space = space
        self.n_nodes = int(n_nodes)
        self.max_iter = int(max_iter)
        self.max_shooting_iter = int(max_shooting_iter)
        self.tol = tol
        self.shooting = bool(shooting)
        self.n_neighbors = int(n_neighbors)
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

    def solve(self, point, base_point):
        """Solve the geodesic boundary value problems, batched.

        Parameters
        ----------
        point : array-like, shape=[..., dim]
            End points.
        base_point : array-like, shape=[..., dim]
            Start points; broadcast against ``point``.

        Returns
        -------
        result : GeodesicBVPResult
            Also kept as :attr:`result_`.
        """
        dim = self._space.dim
        point = as_latent(point, dim, "point")
        base_point = as_latent(base_point, dim, "base_point")
        batch_shape, (end, start) = broadcast_batch(point, base_point)
        flat = self._solve_flat(end, start)
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
            message = (
                f"The geodesic boundary value problem did not converge for {n_failed} of "
                f"{int(np.prod(converged.shape))} pair(s) (largest residual "
                f"|exp(log) - point| = {float(gs.amax(result.residual)):.3g}, tol {self.tol_:g} "
                "relative to |point - base_point|). Inspect metric.log_solver.result_; "
                "raise max_iter/max_shooting_iter or n_nodes, or pass init=<latent points> "
                "for a graph initialisation."
            )
            logger.warning(message)
            warnings.warn(message, ConvergenceWarning, stacklevel=2)
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

    def _solve_flat(self, end, start):
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
        while levels[0] % 2 == 0 and levels[0] // 2 >= _COARSEST_LEVEL:
            levels.insert(0, levels[0] // 2)
        path = self._initial_path(start, end, levels[0])

        moving = separation > 0
        n_iter = 0
        sensitivity = None
        bvp_converged = ~moving
        for level, n_seg in enumerate(levels):
            if level:
                path = _refine(path)
            last = level == len(levels) - 1
            xtol = (tol if last else 1e-3) * separation
            idx = gs.where(moving)[0]
            if idx.shape[0] == 0:
                break
            sub_path, sub_conv, iters, sub_sens = _discrete_geodesic(
                decoder, metric.eps, path[idx], xtol=xtol[idx], max_iter=self.max_iter, with_sensitivity=last
            )
            path = _scatter(path, idx, sub_path)
            n_iter += iters
            if last:
                bvp_converged = _scatter(bvp_converged, idx, sub_conv)
                sensitivity = sub_sens

        tangent_vec = _initial_velocity(path)
        n_exp = 0
        if self.shooting:
            idx = gs.where(moving)[0]
            tangent_vec, residual, converged, shots = _shoot(
                metric.exp,
                tangent_vec,
                start,
                end,
                idx,
                sensitivity,
                threshold,
                max_iter=self.max_shooting_iter,
            )
            n_iter += shots
            n_exp += shots
        else:
            idx = gs.where(moving)[0]
            residual = gs.zeros(n_pairs, dtype=start.dtype)
            if idx.shape[0]:
                reached = metric.exp(tangent_vec[idx], start[idx])
                residual = _scatter(residual, idx, gs.linalg.norm(reached - end[idx], axis=-1))
                n_exp += 1
            converged = bvp_converged
        return GeodesicBVPResult(tangent_vec, path, converged, residual, n_iter, n_exp)

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


def _contracted_hessian(decoder, points, weights):
    """``sum_a weights_a f''_a(z)[e_i, e_j]`` for ``points [M, d]``, ``weights [M, D]``: ``[M, d, d]``.

    Batches the ``d (d + 1) / 2`` second directional derivatives in chunks
    of at most ``2**24`` decoded entries.
    """
    n_points, dim = points.shape
    rows, cols = np.triu_indices(dim)
    eye = gs.eye(dim, dtype=points.dtype)
    per_call = max(1, 2**24 // max(1, n_points * weights.shape[-1]))
    values = []
    for first in range(0, rows.shape[0], per_call):
        pairs = slice(first, first + per_call)
        n_here = rows[pairs].shape[0]
        z = gs.tile(points, (n_here, 1))
        u = gs.repeat(eye[rows[pairs]], n_points, axis=0)
        v = gs.repeat(eye[cols[pairs]], n_points, axis=0)
        second = decoder.second_derivative(z, u, v)  # [P*M, D]
        values.append(gs.sum(gs.reshape(second, (n_here, n_points, -1)) * weights[None], axis=-1))
    upper = gs.concatenate(values, axis=0)  # [P, M]
    out = gs.zeros((n_points, dim, dim), dtype=points.dtype)
    out[:, rows, cols] = gs.transpose(upper)
    out[:, cols, rows] = gs.transpose(upper)
    return out


def _newton_system(decoder, eps, path, decoded):
    """Half-gradient and block-tridiagonal Hessian (halved) of the discrete energy.

    Returns
    -------
    grad : [B, N-1, d]
    diag : [B, N-1, d, d]
        Diagonal blocks, Gauss-Newton plus second-order part.
    upper : [B, N-2, d, d]
    scale : [B, N-1]
        Gauss-Newton diagonal scale (for damping).
    """
    n_pairs, n_nodes, dim = path.shape
    n_seg = n_nodes - 1
    interior = gs.reshape(path[:, 1:-1], (-1, dim))
    jac = gs.reshape(decoder.jacobian(interior), (n_pairs, n_seg - 1, -1, dim))  # [B, N-1, D, d]
    weights = 2 * decoded[:, 1:-1] - decoded[:, :-2] - decoded[:, 2:]  # [B, N-1, D]
    grad = n_seg * gs.einsum("bkai,bka->bki", jac, weights)
    gauss_newton = 2 * n_seg * gs.einsum("bkai,bkaj->bkij", jac, jac)
    upper = -n_seg * gs.einsum("bkai,bkaj->bkij", jac[:, :-1], jac[:, 1:])
    second = _contracted_hessian(decoder, interior, gs.reshape(weights, (interior.shape[0], -1)))
    diag = gauss_newton + n_seg * gs.reshape(second, (n_pairs, n_seg - 1, dim, dim))
    if eps:
        eye = gs.eye(dim, dtype=path.dtype)
        grad = grad + eps * n_seg * (2 * path[:, 1:-1] - path[:, :-2] - path[:, 2:])
        gauss_newton = gauss_newton + 2 * eps * n_seg * eye
        diag = diag + 2 * eps * n_seg * eye
        upper = upper - eps * n_seg * eye
    scale = gs.einsum("bkii->bk", gauss_newton) / dim
    return grad, diag, upper, scale, jac


def _discrete_geodesic(decoder, eps, path, *, xtol, max_iter, with_sensitivity):
    """Minimise the discrete energy over interior nodes: damped Newton, batched.

    Parameters
    ----------
    path : [B, N+1, d]
        Initial paths; end points stay fixed.
    xtol : [B]
        A pair converged when an undamped-enough Newton step is below ``xtol``
        (max norm).
    with_sensitivity : bool
        Also return ``dv/dz_N`` (see :func:`_sensitivity`).

    Returns
    -------
    path : [B, N+1, d]
    converged : [B] bool
    n_iter : int
    sensitivity : [B, d, d] or None
    """
    n_pairs, n_nodes, dim = path.shape
    decoded = _decode(decoder, path)
    energy = _energy(decoded, path, eps)
    damping = 1e-4 * gs.ones(n_pairs, dtype=path.dtype)
    converged = gs.zeros(n_pairs, dtype=bool)
    factors = None
    if n_nodes == 2 or max_iter == 0:
        converged = gs.ones(n_pairs, dtype=bool) if n_nodes == 2 else converged
    n_iter = 0
    last_system = [None] * n_pairs if with_sensitivity else None
    stored = None
    for _ in range(max_iter):
        active = gs.where(~converged)[0]
        if active.shape[0] == 0:
            break
        n_iter += 1
        grad, diag, upper, scale, jac = _newton_system(decoder, eps, path[active], decoded[active])
        pending = gs.ones(active.shape[0], dtype=bool)
        for _ in range(_MAX_DAMPING_TRIES):
            sel = gs.where(pending)[0]
            if sel.shape[0] == 0:
                break
            rows = active[sel]
            lam = damping[rows]
            eye = gs.eye(dim, dtype=path.dtype)
            damped = diag[sel] + (lam[:, None] * scale[sel])[..., None, None] * eye
            factors, positive = _blocktridiag.factor(damped, upper[sel])
            step = _blocktridiag.solve(factors, -grad[sel][..., None])[..., 0]  # [S, N-1, d]
            trial = gs.concatenate([path[rows, :1], path[rows, 1:-1] + step, path[rows, -1:]], axis=1)
            trial_decoded = gs.concatenate(
                [decoded[rows, :1], _decode(decoder, trial[:, 1:-1]), decoded[rows, -1:]], axis=1
            )
            trial_energy = _energy(trial_decoded, trial, eps)
            step_size = gs.amax(gs.reshape(gs.abs(step), (step.shape[0], -1)), axis=1)
            small = positive & (step_size <= xtol[rows]) & (lam <= 1e-3)
            accept = positive & (trial_energy <= energy[rows])
            take = gs.where(accept)[0]
            path = _scatter(path, rows[take], trial[take])
            decoded = _scatter(decoded, rows[take], trial_decoded[take])
            energy = _scatter(energy, rows[take], trial_energy[take])
            damping = _scatter(damping, rows, gs.where(accept, gs.maximum(lam / 10, 1e-12), lam * 10))
            converged = _scatter(converged, rows, converged[rows] | small)
            if with_sensitivity:
                done = gs.where(accept | small)[0]
                stored = _store(stored, rows[done], factors, done, jac[sel][done], n_pairs)
            pending = _scatter(pending, sel, ~(accept | small))
    sensitivity = None
    if with_sensitivity:
        sensitivity = _sensitivity(decoder, eps, path, stored)
    return path, converged, n_iter, sensitivity


def _store(stored, rows, factors, done, jac, n_pairs):
    """Keep, per pair, the factors of its last Newton system and the Jacobian at node N-1."""
    inv_pivots, coupling = factors
    if stored is None:
        stored = (
            gs.zeros((n_pairs,) + inv_pivots.shape[1:], dtype=inv_pivots.dtype),
            gs.zeros((n_pairs,) + coupling.shape[1:], dtype=coupling.dtype),
            gs.zeros((n_pairs,) + jac.shape[2:], dtype=jac.dtype),
            gs.zeros(n_pairs, dtype=bool),
        )
    pivots_all, coupling_all, jac_all, has = stored
    return (
        _scatter(pivots_all, rows, inv_pivots[done]),
        _scatter(coupling_all, rows, coupling[done]),
        _scatter(jac_all, rows, jac[:, -1]),
        _scatter(has, rows, gs.ones(rows.shape[0], dtype=bool)),
    )


def _velocity_weights(n_nodes, dtype):
    """Weights ``[n_nodes]`` of the one-sided difference giving ``v = sum_j w_j z_j``."""
    n_seg = n_nodes - 1
    if n_nodes >= 5:
        stencil = _VELOCITY_STENCIL
    elif n_nodes >= 3:
        stencil = np.array([-1.5, 2.0, -0.5])
    else:
        stencil = np.array([-1.0, 1.0])
    weights = np.zeros(n_nodes)
    weights[: stencil.shape[0]] = n_seg * stencil
    return gs.array(weights, dtype=dtype)


def _initial_velocity(path):
    """Initial velocity of a discrete geodesic ``[B, N+1, d] -> [B, d]``, error ``O(1/N^4)``."""
    weights = _velocity_weights(path.shape[1], path.dtype)
    return gs.einsum("j,bjd->bd", weights, path)


def _sensitivity(decoder, eps, path, stored):
    """Derivative of the discrete initial velocity with respect to the end point: ``[B, d, d]``.

    Implicit differentiation of the stationarity condition: interior nodes
    move by ``X = H^{-1} (N J_{N-1}^T J_N)`` (right-hand side in the last block)
    per unit move of ``z_N``; then ``dv/dz_N = sum_j w_j X_j`` (``X_N = I``).
    Pairs without a stored system (none was factorised) get the identity.
    """
    n_pairs, n_nodes, dim = path.shape
    n_seg = n_nodes - 1
    eye = gs.eye(dim, dtype=path.dtype)
    weights = _velocity_weights(n_nodes, path.dtype)
    identity = gs.tile(eye[None], (n_pairs, 1, 1))
    if stored is None or n_nodes < 3:
        return identity
    inv_pivots, coupling, jac_last, has = stored
    jac_end = decoder.jacobian(path[:, -1])  # [B, D, d]
    coupling_end = n_seg * gs.einsum("bai,baj->bij", jac_last, jac_end) + eps * n_seg * eye
    rhs = gs.zeros((n_pairs, n_seg - 1, dim, dim), dtype=path.dtype)
    rhs[:, -1] = coupling_end
    moved = _blocktridiag.solve((inv_pivots, coupling), rhs)  # [B, N-1, d, d]
    sens = gs.einsum("j,bjik->bik", weights[1:-1], moved) + weights[-1] * eye
    return gs.where(has[:, None, None], sens, identity)


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
        error = exp(trial[active], start[active]) - end[active]  # [A, d]
        norm = gs.linalg.norm(error, axis=-1)
        improved = norm < residual[active]
        first = residual[active] == float("inf")
        # Broyden update from the secant (trial - best, error - best_error), where a best exists.
        secant = ~first
        if bool(gs.any(secant)):
            s = trial[active] - best[active]
            y = error - best_error[active]
            m = inverse_jac[active]
            my = gs.einsum("bij,bj->bi", m, y)
            sm = gs.einsum("bi,bij->bj", s, m)
            denom = gs.sum(sm * y, axis=-1)
            ok = secant & (gs.abs(denom) > 1e-12 * gs.linalg.norm(s, axis=-1) * gs.linalg.norm(y, axis=-1))
            safe = gs.where(ok, denom, gs.ones_like(denom))
            update = gs.einsum("bi,bj->bij", s - my, sm) / safe[:, None, None]
            inverse_jac = _scatter(inverse_jac, active, m + gs.where(ok[:, None, None], update, 0 * update))
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
        active = active[~converged[active]]
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
