r"""Statistics on latent data that use the structure of a pullback metric.

geomstats' own estimators (``geomstats.learning``: ``FrechetMean``,
``TangentPCA``, ``RiemannianKMeans``, ``KNearestNeighborsClassifier``,
``KernelDensityEstimationClassifier``, ``RiemannianMeanShift``,
``GeodesicRegression``, ...) run unchanged on :class:`DecoderManifold`
(``tests/test_statistics.py``). They
only see ``exp``/``log``/``dist``, so each of their iterations solves every
geodesic boundary value problem from scratch, shooting included.

:class:`PullbackFrechetMean` computes the same quantity as geomstats'
``FrechetMean`` (the point where ``sum_i w_i log_m x_i = 0``) with the
metric's own log solver, used the way a mean needs it: it keeps the discrete
geodesic from the current mean to every data point, and each update

.. math:: m \leftarrow m + \alpha \sum_i w_i \log_m x_i

shifts those paths with the mean, so that the next batched solve starts from
nearly converged paths (``GeodesicBVPSolver.solve(..., initial_path=...)``: one
or two Newton iterations instead of a coarse-to-fine solve from straight
lines). The iterations run on discrete geodesics alone (no ``exp``, logs
accurate to ``O(1/n_nodes^4)``); the last ones, warm started as well, add the
solver's shooting, so that the mean satisfies the first-order condition with
the metric's exact ``log``.

When to use which:

- ``PullbackFrechetMean``: means on a learned decoder, of many points (tens
  to thousands), with the log solver's settings (``metric.log_solver``:
  nodes, tolerance, graph initialisation).
- geomstats' ``FrechetMean(space)``: the reference implementation; a few
  points; its other optimizers (``method="adaptive"``, ``"batch"`` for many
  means at once); a metric whose log solver is not a ``GeodesicBVPSolver``.
  Each of its iterations solves every boundary value problem from scratch,
  shooting included, and its default stopping rule (``epsilon=1e-4`` on the
  squared norm of the mean log) is loose: tighten it with
  ``.set(epsilon=...)`` for accurate means.

Times and residuals of both, at several stopping rules, are measured by
``benchmarks/bench_statistics.py`` (the docs' benchmarks page).
"""

import copy
import logging

import geomstats.backend as gs
from sklearn.base import BaseEstimator

from geomstats_pullback._arrays import asarray, linspace, ones
from geomstats_pullback._validation import as_latent, check_integer, warn_unconverged
from geomstats_pullback.geodesics import GeodesicBVPSolver

logger = logging.getLogger(__name__)


class PullbackFrechetMean(BaseEstimator):
    """Fréchet mean on a pullback metric, with warm-started geodesics from the mean.

    Parameters
    ----------
    space : DecoderManifold
        Equipped latent manifold; its ``metric.log_solver`` (a
        :class:`~geomstats_pullback.log_solver.GeodesicBVPSolver`) gives the
        settings of the boundary value problems (nodes, tolerance, graph
        initialisation of the first solve).
    max_iter : int
        Mean updates per stage (discrete, then exact).
    tol : float
        A stage stops when the metric norm of the mean log,
        ``|sum_i w_i log_m x_i|``, is at most ``tol`` times the root mean
        squared distance to the points; it converged if every boundary value
        problem of its last solve converged too. Keep ``tol`` above the log
        solver's own relative tolerance (``1e-7`` in float64).
    refine : bool
        Finish with the log solver's shooting (exact logs). Without it, the
        mean is that of the discrete geodesics: logs have a relative error
        ``O(1/n_nodes^4)``, no ``exp`` is called.
    init_point : array-like, shape=[dim], optional
        Starting mean. Default: the weighted mean of the latent points.

    Attributes
    ----------
    estimate_ : array-like, shape=[dim]
        The Fréchet mean.
    logs_ : array-like, shape=[n_samples, dim]
        ``log_{estimate_}(X[i])``, from the last solve (the mean does not move
        after it).
    paths_ : array-like, shape=[n_samples, n_nodes, dim]
        Discrete geodesics from the mean to the points.
    variance_ : float
        Weighted mean squared geodesic distance from the mean to the points.
    n_iter_ : int
        Mean updates, both stages.
    n_solves_ : int
        Batched calls of the log solver (each solves all ``n_samples`` problems).
    converged_ : bool
        Whether the last stage met ``tol`` within ``max_iter`` updates, with
        every boundary value problem converged.

    Notes
    -----
    The mean moves in latent coordinates, ``m + step`` (a retraction; the
    fixed point is the same as with ``exp``), with the step halved whenever
    the mean log grows.

    Examples
    --------
    >>> import geomstats_pullback as gp
    >>> from geomstats_pullback import analytic
    >>> space = gp.DecoderManifold(analytic.sphere_chart, latent_dim=2)
    >>> mean = gp.PullbackFrechetMean(space).fit([[1.0, 0.0], [1.4, 0.4], [1.2, -0.3]])
    >>> mean.converged_
    True
    """

    def __init__(self, space, *, max_iter=50, tol=1e-5, refine=True, init_point=None):
        self.space = space
        self.max_iter = max_iter
        self.tol = tol
        self.refine = refine
        self.init_point = init_point

    def fit(self, X, y=None, weights=None):
        """Compute the weighted Fréchet mean of latent points.

        Parameters
        ----------
        X : array-like, shape=[n_samples, dim]
            Latent points.
        y : None
            Ignored.
        weights : array-like, shape=[n_samples], optional
            Non-negative weights, not all zero. Default: equal weights.

        Returns
        -------
        self : PullbackFrechetMean

        Warns
        -----
        ConvergenceWarning
            If the last stage did not meet ``tol`` within ``max_iter`` updates, or
            a boundary value problem did not converge.
        """
        self._check_params()
        dim = self.space.dim
        points = as_latent(X, dim, "X")
        if points.ndim != 2 or points.shape[0] == 0:
            raise ValueError(f"X must have shape [n_samples >= 1, {dim}], got {tuple(points.shape)}.")
        weights = self._normalised_weights(weights, points)
        if self.init_point is None:
            mean = gs.einsum("n,nd->d", weights, points)
        else:
            mean = as_latent(self.init_point, dim, "init_point")
            if mean.ndim != 1:
                raise ValueError(f"init_point must have shape [{dim}], got {tuple(mean.shape)}.")

        solver = self.space.metric.log_solver
        if not isinstance(solver, GeodesicBVPSolver):
            raise TypeError(
                "PullbackFrechetMean warm-starts the metric's log solver, which must be a "
                f"GeodesicBVPSolver, not {type(solver).__name__}; use geomstats' FrechetMean instead."
            )
        discrete = copy.copy(solver)
        discrete.shooting = False
        stages = [discrete]
        if self.refine:
            exact = copy.copy(solver)
            exact.shooting = True
            stages.append(exact)

        state = {"mean": mean, "path": None, "n_iter": 0, "n_solves": 0}
        for stage_solver in stages:
            converged = self._iterate(stage_solver, points, weights, state)

        logs = state["logs"]
        self.estimate_ = state["mean"]
        self.logs_ = logs
        self.paths_ = state["path"]
        self.variance_ = float(gs.sum(weights * self.space.metric.squared_norm(logs, state["mean"])))
        self.n_iter_ = state["n_iter"]
        self.n_solves_ = state["n_solves"]
        self.converged_ = bool(converged)
        if not converged:
            message = (
                f"PullbackFrechetMean did not reach tol={self.tol:g} in max_iter={self.max_iter} updates "
                "(or a boundary value problem did not converge, see metric.log_solver); raise "
                "max_iter, or compare with geomstats' FrechetMean."
            )
            warn_unconverged(logger, message)
        return self

    def _iterate(self, solver, points, weights, state):
        """Mean updates, one warm-started batched solve each, until ``tol``.

        ``state`` holds the mean, the paths from it, the last logs and counts;
        updated in place. Returns whether ``tol`` was met with every problem converged.
        """
        metric = self.space.metric
        step_size, last_norm = 1.0, float("inf")
        for update in range(self.max_iter + 1):
            mean = state["mean"]
            result = solver.solve(points, mean, initial_path=state["path"])
            state["n_solves"] += 1
            logs = result.tangent_vec  # [n, d]
            state["logs"], state["path"] = logs, result.path
            step = gs.einsum("n,nd->d", weights, logs)
            step_norm = float(metric.norm(step, mean))
            spread = float(gs.sqrt(gs.sum(weights * metric.squared_norm(logs, mean))))
            if step_norm <= self.tol * spread:
                return bool(gs.all(result.converged))
            if update == self.max_iter:
                return False
            if step_norm > last_norm:  # overshoot: shorter steps from now on
                step_size /= 2
            last_norm = step_norm
            # Move the mean; shift every path with it, tapering to its fixed end point.
            taper = 1.0 - linspace(0.0, 1.0, result.path.shape[-2], like=result.path)[:, None]  # [n_nodes, 1]
            state["mean"] = mean + step_size * step
            state["path"] = result.path + step_size * taper * step
            state["n_iter"] += 1
        return False

    def _check_params(self):
        check_integer(self.max_iter, "max_iter", low=1)
        if not self.tol > 0:
            raise ValueError(f"tol must be positive, got {self.tol!r}.")

    @staticmethod
    def _normalised_weights(weights, points):
        n_samples = points.shape[0]
        if weights is None:
            return ones(n_samples, like=points) / n_samples
        weights = asarray(weights, like=points)
        if weights.shape != (n_samples,):
            raise ValueError(f"weights must have shape [{n_samples}], got {tuple(weights.shape)}.")
        if not bool(gs.all(weights >= 0)) or not float(gs.sum(weights)) > 0:
            raise ValueError("weights must be non-negative and not all zero.")
        return weights / gs.sum(weights)
