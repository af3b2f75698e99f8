r"""Statistics on latent data that use the structure of a pullback metric.

geomstats' own estimators (``geomstats.learning``: ``FrechetMean``,
``TangentPCA``, ``RiemannianKMeans``, ``KNearestNeighborsClassifier``,
``GeodesicRegression``, ...) run unchanged on :class:`DecoderManifold`. They
only see ``exp``/``log``/``dist``, so each of their iterations solves every
geodesic boundary value problem from scratch, shooting included.

:class:`PullbackFrechetMean` computes the same quantity as geomstats'
``FrechetMean`` without any ``exp`` or shooting: it keeps one discrete
geodesic from the current mean to every data point, and at each iteration
moves the mean and improves all paths at once,

.. math::

    v_i = \dot\gamma_i(0) \approx \log_m x_i, \qquad m \leftarrow m + \alpha \sum_i w_i v_i,

where ``gamma_i`` is the discrete geodesic from ``m`` to ``x_i``
(minimiser of the discrete path energy, Shao et al. 2018), refined by one or
two Newton iterations per step and shifted along with the mean (a warm start:
the previous paths are nearly right). The fixed point is the first-order
condition of the Fréchet mean, ``sum_i w_i log_m x_i = 0``; the logs come
from a fourth-order one-sided difference on the paths, accurate to
``O(n_nodes^-4)``. Paths are solved coarse to fine, like the log solver's.

When to use which:

- ``PullbackFrechetMean``: a mean of many points (tens to thousands) on a
  learned decoder; the points' geodesics from the mean must be reachable from
  straight latent lines (the log solver's default start).
- geomstats' ``FrechetMean(space)``: a reference implementation, a few points,
  another optimizer (``method="adaptive"``), or a metric whose ``log`` needs the
  solver's graph initialisation (``metric.log_solver.init``) or shooting to
  reach ``exp(log) = x`` exactly.
"""

import logging
import warnings

import geomstats.backend as gs
from sklearn.base import BaseEstimator

from geomstats_pullback._validation import as_latent
from geomstats_pullback.log_solver import (
    _COARSEST_LEVEL,
    ConvergenceWarning,
    _discrete_geodesic,
    _initial_velocity,
    _refine,
)

logger = logging.getLogger(__name__)


class PullbackFrechetMean(BaseEstimator):
    """Fréchet mean on a pullback metric, with all geodesics from the mean solved together.

    Parameters
    ----------
    space : DecoderManifold
        Equipped latent manifold.
    n_nodes : int
        Nodes of each discrete geodesic, end points included.
    max_iter : int
        Mean updates per resolution level.
    newton_iter : int
        Newton iterations on the discrete paths per mean update.
    tol : float
        Stop when the metric norm of the mean update is at most ``tol`` times
        the root mean squared distance to the points, and every path has
        converged (Newton steps below ``tol`` times its latent length).
    init_point : array-like, shape=[dim], optional
        Starting mean. Default: the weighted mean of the latent points.

    Attributes
    ----------
    estimate_ : array-like, shape=[dim]
        The Fréchet mean.
    logs_ : array-like, shape=[n_samples, dim]
        ``log_{estimate_}(X[i])``, from the discrete geodesics.
    paths_ : array-like, shape=[n_samples, n_nodes, dim]
        Discrete geodesics from the mean to the points.
    variance_ : float
        Weighted mean squared geodesic distance from the mean to the points.
    n_iter_ : int
        Mean updates, all levels.
    converged_ : bool
        Whether the last level met ``tol`` within ``max_iter`` updates.

    Examples
    --------
    >>> import geomstats_pullback as gp
    >>> from geomstats_pullback import analytic
    >>> space = gp.DecoderManifold(analytic.sphere_chart, latent_dim=2)
    >>> mean = gp.PullbackFrechetMean(space).fit([[1.0, 0.0], [1.4, 0.4], [1.2, -0.3]])
    >>> mean.converged_
    True
    """

    def __init__(self, space, *, n_nodes=33, max_iter=50, newton_iter=2, tol=1e-8, init_point=None):
        self.space = space
        self.n_nodes = n_nodes
        self.max_iter = max_iter
        self.newton_iter = newton_iter
        self.tol = tol
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
            If ``max_iter`` updates did not meet ``tol`` at the finest level.
        """
        self._check_params()
        metric = self.space.metric
        dim = self.space.dim
        points = as_latent(X, dim, "X")
        if points.ndim != 2 or points.shape[0] == 0:
            raise ValueError(f"X must have shape [n_samples >= 1, {dim}], got {tuple(points.shape)}.")
        weights = self._normalised_weights(weights, points)
        mean = gs.einsum("n,nd->d", weights, points)
        if self.init_point is not None:
            mean = as_latent(self.init_point, dim, "init_point")
            if mean.ndim != 1:
                raise ValueError(f"init_point must have shape [{dim}], got {tuple(mean.shape)}.")

        levels = [self.n_nodes - 1]
        while levels[0] % 2 == 0 and levels[0] // 2 >= _COARSEST_LEVEL:
            levels.insert(0, levels[0] // 2)
        times = gs.linspace(0.0, 1.0, levels[0] + 1)
        paths = mean + times[None, :, None] * (points - mean)[:, None, :]  # [n, N + 1, d]

        n_iter = 0
        for level in range(len(levels)):
            if level:
                paths = _refine(paths)
            last = level == len(levels) - 1
            tol = self.tol if last else 1e-3
            mean, paths, iters, converged = self._solve_level(metric, points, weights, paths, tol)
            n_iter += iters

        logs = _initial_velocity(paths)
        self.estimate_ = mean
        self.logs_ = logs
        self.paths_ = paths
        self.variance_ = float(gs.sum(weights * metric.squared_norm(logs, mean)))
        self.n_iter_ = n_iter
        self.converged_ = bool(converged)
        if not converged:
            message = (
                f"PullbackFrechetMean did not reach tol={self.tol:g} in max_iter={self.max_iter} "
                "updates; raise max_iter, or compare with geomstats' FrechetMean."
            )
            logger.warning(message)
            warnings.warn(message, ConvergenceWarning, stacklevel=2)
        return self

    def _solve_level(self, metric, points, weights, paths, tol):
        """Alternate mean updates and Newton steps on all paths at one resolution.

        Returns ``(mean, paths, n_updates, converged)``.
        """
        n_seg = paths.shape[1] - 1
        taper = 1.0 - gs.linspace(0.0, 1.0, n_seg + 1)[None, :, None]  # moves the start, keeps the end
        step_size, last_norm = 1.0, float("inf")
        converged = False
        n_updates = 0
        for _ in range(self.max_iter):
            mean = paths[0, 0]
            separation = gs.linalg.norm(points - mean, axis=-1)
            paths, paths_converged, _, _ = _discrete_geodesic(
                metric.decoder,
                metric.eps,
                paths,
                xtol=tol * separation,
                max_iter=self.newton_iter,
                with_sensitivity=False,
            )
            logs = _initial_velocity(paths)  # [n, d]
            step = gs.einsum("n,nd->d", weights, logs)
            step_norm = float(metric.norm(step, mean))
            spread = float(gs.sqrt(gs.sum(weights * metric.squared_norm(logs, mean))))
            if step_norm <= tol * spread and bool(gs.all(paths_converged)):
                converged = True
                break
            if step_norm > last_norm:  # overshoot: shorter steps from now on
                step_size /= 2
            last_norm = step_norm
            paths = paths + step_size * taper * step
            n_updates += 1
        return paths[0, 0], paths, n_updates, converged

    def _check_params(self):
        for name, low in (("n_nodes", 3), ("max_iter", 1), ("newton_iter", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}.")
        if not self.tol > 0:
            raise ValueError(f"tol must be positive, got {self.tol!r}.")

    @staticmethod
    def _normalised_weights(weights, points):
        n_samples = points.shape[0]
        if weights is None:
            return gs.ones(n_samples, dtype=points.dtype) / n_samples
        weights = gs.cast(gs.array(weights), points.dtype)
        if weights.shape != (n_samples,):
            raise ValueError(f"weights must have shape [{n_samples}], got {tuple(weights.shape)}.")
        if not bool(gs.all(weights >= 0)) or not float(gs.sum(weights)) > 0:
            raise ValueError("weights must be non-negative and not all zero.")
        return weights / gs.sum(weights)
