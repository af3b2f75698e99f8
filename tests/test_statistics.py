"""Statistics on latent data: geomstats' estimators unchanged, and PullbackFrechetMean.

geomstats' FrechetMean (default, adaptive, batch), TangentPCA, RiemannianKMeans,
KNearestNeighborsClassifier, KernelDensityEstimationClassifier,
RiemannianMeanShift and GeodesicRegression run on DecoderManifold.

Ground truths: geomstats' ``Hypersphere(2)`` through the sphere chart, the
first-order condition of the Fréchet mean with the metric's own ``log``, data
generated along known geodesics, and a classification task whose labels follow
the geometry of the sphere.
"""

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import geomstats.backend as gs
import numpy as np
import pytest
import torch
from conftest import fast_solvers
from geomstats.geometry.hypersphere import Hypersphere
from geomstats.learning.frechet_mean import FrechetMean
from geomstats.learning.geodesic_regression import GeodesicRegression
from geomstats.learning.kernel_density_estimation_classifier import KernelDensityEstimationClassifier
from geomstats.learning.kmeans import RiemannianKMeans
from geomstats.learning.knn import KNearestNeighborsClassifier
from geomstats.learning.riemannian_mean_shift import RiemannianMeanShift
from sklearn.neighbors import KNeighborsClassifier

import geomstats_pullback as gp
from geomstats_pullback import analytic
from geomstats_pullback.errors import ConvergenceWarning


def uniform(n, low, high, seed):
    """``n`` points uniform in the box ``[low, high]``, ``[n, 2]``."""
    gen = torch.Generator().manual_seed(seed)
    low, high = torch.tensor(low, dtype=torch.float64), torch.tensor(high, dtype=torch.float64)
    return low + (high - low) * torch.rand(n, 2, generator=gen, dtype=torch.float64)


def sphere_mean(points):
    """Ground truth: geomstats' Fréchet mean on Hypersphere(2) of the pushed points, in angles."""
    mean = FrechetMean(Hypersphere(2)).set(epsilon=1e-16, max_iter=200).fit(analytic.sphere_chart(points)).estimate_
    return torch.stack([torch.arccos(mean[2]), torch.atan2(mean[1], mean[0])])


@pytest.fixture(scope="module")
def sphere():
    return gp.DecoderManifold(analytic.sphere_chart, latent_dim=2)


@pytest.fixture(scope="module")
def mlp():
    return gp.DecoderManifold(analytic.random_mlp((2, 16, 16, 10), seed=1), latent_dim=2)


@pytest.fixture(scope="module")
def sphere_fast():
    return fast_solvers(gp.DecoderManifold(analytic.sphere_chart, latent_dim=2))


@pytest.fixture(scope="module")
def mlp_fast():
    return fast_solvers(gp.DecoderManifold(analytic.random_mlp((2, 16, 16, 10), seed=1), latent_dim=2))


# ---------------------------------------------------------------- Fréchet mean


def test_pullback_frechet_mean_matches_hypersphere(sphere):
    X = uniform(12, [0.9, -1.0], [2.2, 1.0], seed=0)
    mean = gp.PullbackFrechetMean(sphere).fit(X)
    assert mean.converged_
    torch.testing.assert_close(mean.estimate_, sphere_mean(X), atol=1e-5, rtol=0)
    exact_logs = sphere.metric.log(X, mean.estimate_)
    torch.testing.assert_close(mean.logs_, exact_logs, atol=1e-5, rtol=0)
    assert mean.variance_ == pytest.approx(float(torch.mean(sphere.metric.squared_norm(exact_logs, mean.estimate_))))


def test_pullback_frechet_mean_weights_equal_repeated_points(sphere):
    X = uniform(4, [0.9, -1.0], [2.2, 1.0], seed=1)
    weighted = gp.PullbackFrechetMean(sphere).fit(X, weights=gs.array([3.0, 1.0, 1.0, 2.0]))
    repeated = gp.PullbackFrechetMean(sphere).fit(X[[0, 0, 0, 1, 2, 3, 3]])
    torch.testing.assert_close(weighted.estimate_, repeated.estimate_, atol=1e-7, rtol=0)


def test_pullback_frechet_mean_first_order_condition_on_mlp(mlp):
    X = mlp.random_point(16)
    mean = gp.PullbackFrechetMean(mlp, tol=1e-6).fit(X)
    assert mean.converged_
    logs = mlp.metric.log(X, mean.estimate_)  # the metric's own log: shooting, exp(log) = x
    residual = float(mlp.metric.norm(torch.mean(logs, dim=0), mean.estimate_))
    assert residual <= 1e-6 * mean.variance_**0.5
    assert mean.n_solves_ <= mean.n_iter_ + 2
    # the mean is not the latent average: the metric matters
    assert float(torch.linalg.norm(mean.estimate_ - X.mean(0))) > 1e-2


def test_geomstats_frechet_mean_matches_hypersphere(sphere_fast):
    X = uniform(5, [0.9, -1.0], [2.2, 1.0], seed=2)
    estimate = FrechetMean(sphere_fast).set(epsilon=1e-12, max_iter=100).fit(X).estimate_
    torch.testing.assert_close(estimate, sphere_mean(X), atol=1e-5, rtol=0)


@pytest.mark.slow
def test_geomstats_adaptive_frechet_mean_matches_hypersphere(sphere_fast):
    X = uniform(5, [0.9, -1.0], [2.2, 1.0], seed=2)
    estimate = FrechetMean(sphere_fast, method="adaptive").set(epsilon=1e-7, max_iter=100).fit(X).estimate_
    torch.testing.assert_close(estimate, sphere_mean(X), atol=1e-5, rtol=0)


def test_geomstats_batch_frechet_mean(sphere_fast):
    X = torch.stack([uniform(4, [0.9, -1.0], [2.2, 1.0], seed=3), uniform(4, [0.9, -1.0], [2.2, 1.0], seed=4)], dim=1)
    estimate = FrechetMean(sphere_fast, method="batch").set(epsilon=1e-14, max_iter=100).fit(X).estimate_  # [2, 2]
    torch.testing.assert_close(estimate, torch.stack([sphere_mean(X[:, 0]), sphere_mean(X[:, 1])]), atol=1e-5, rtol=0)


@pytest.mark.slow
def test_geomstats_frechet_mean_agrees_with_pullback_frechet_mean_on_mlp(mlp):
    # Both with the default solvers (shooting).
    X = mlp.random_point(6)
    ours = gp.PullbackFrechetMean(mlp).fit(X).estimate_
    generic = FrechetMean(mlp).set(epsilon=1e-12, max_iter=50).fit(X).estimate_
    torch.testing.assert_close(generic, ours, atol=1e-5, rtol=0)


def test_pullback_frechet_mean_warns_when_it_stops_early(mlp):
    with pytest.warns(ConvergenceWarning, match="max_iter"):
        mean = gp.PullbackFrechetMean(mlp, max_iter=1, tol=1e-12, refine=False).fit(mlp.random_point(5))
    assert not mean.converged_


def test_pullback_frechet_mean_refuses_bad_input(sphere):
    X = uniform(3, [0.9, -1.0], [2.2, 1.0], seed=5)
    with pytest.raises(ValueError, match="X must have shape"):
        gp.PullbackFrechetMean(sphere).fit(X[0])
    with pytest.raises(ValueError, match="NaN"):
        gp.PullbackFrechetMean(sphere).fit(torch.where(X == X[1, 0], float("nan"), X))
    with pytest.raises(ValueError, match="weights"):
        gp.PullbackFrechetMean(sphere).fit(X, weights=gs.array([1.0, -1.0, 1.0]))
    with pytest.raises(ValueError, match="max_iter"):
        gp.PullbackFrechetMean(sphere, max_iter=0).fit(X)
    estimator = gp.PullbackFrechetMean(sphere, tol=1e-6)
    assert estimator.get_params()["tol"] == 1e-6 and not hasattr(estimator, "estimate_")


def test_log_solver_warm_start_gives_the_same_log_in_fewer_iterations(mlp):
    solver = mlp.metric.log_solver
    points, base = mlp.random_point(6), gs.array([0.1, 0.2])
    first = solver.solve(points, base)
    moved = base + gs.array([0.02, -0.01])
    cold = solver.solve(points, moved)
    warm = solver.solve(points, moved, initial_path=first.path)
    assert bool(gs.all(warm.converged))
    torch.testing.assert_close(warm.tangent_vec, cold.tangent_vec, atol=1e-8, rtol=0)
    assert warm.n_iter - warm.n_exp < cold.n_iter - cold.n_exp  # Newton iterations
    with pytest.raises(ValueError, match="initial_path"):
        solver.solve(points, moved, initial_path=first.path[:, :-1])


# ---------------------------------------------------------------- squared_dist gradients


def test_squared_dist_gradients_are_the_closed_forms(sphere):
    a = torch.tensor([[1.0, 0.2], [1.4, -0.3]], requires_grad=True)
    b = torch.tensor([1.6, 0.7], requires_grad=True)  # broadcast against a
    sphere.metric.squared_dist(a, b).sum().backward()
    a_, b_ = a.detach().clone().requires_grad_(), b.detach().clone().requires_grad_()
    Hypersphere(2).metric.squared_dist(analytic.sphere_chart(a_), analytic.sphere_chart(b_)).sum().backward()
    torch.testing.assert_close(a.grad, a_.grad, atol=1e-6, rtol=0)
    torch.testing.assert_close(b.grad, b_.grad, atol=1e-6, rtol=0)


def test_squared_dist_gradient_matches_finite_differences_on_mlp(mlp):
    a, b = mlp.random_point(1), mlp.random_point(1)
    a_ = a.clone().requires_grad_()
    mlp.metric.squared_dist(a_, b).backward()
    step = 1e-4
    shifts = step * torch.eye(2, dtype=torch.float64)
    plus = mlp.metric.squared_dist(a + shifts, b)
    minus = mlp.metric.squared_dist(a - shifts, b)
    torch.testing.assert_close(a_.grad, (plus - minus) / (2 * step), atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- other estimators


@pytest.mark.slow
def test_riemannian_kmeans_separates_two_clusters(mlp_fast):
    left, right = uniform(4, [-0.9, -0.3], [-0.6, 0.3], seed=6), uniform(4, [0.6, -0.3], [0.9, 0.3], seed=7)
    X = torch.cat([left, right])
    kmeans = RiemannianKMeans(mlp_fast, n_clusters=2, init="random").fit(X)
    labels = kmeans.labels_.numpy()
    assert len(set(labels[:4])) == 1 and len(set(labels[4:])) == 1 and labels[0] != labels[4]
    np.testing.assert_array_equal(kmeans.predict(X).numpy(), labels)


@pytest.mark.slow
@pytest.mark.subprocess
def test_tangent_pca_of_points_along_a_geodesic_has_one_component(tmp_path):
    # In a separate process: scikit-learn's array API mode (see the script) is process-wide.
    script = Path(__file__).with_name("_tangent_pca_array_api.py")
    root = str(Path(__file__).parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "out.json")], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "out.json").read_text())
    assert result["explained_variance_ratio"][0] > 1 - 1e-8
    assert result["cosine"] > 1 - 1e-8  # the component is the geodesic's direction
    assert result["scores_shape"] == [7, 2]


def polar_cap_task(n, seed):
    """Sphere chart near the north pole; label: polar angle below 0.8.

    The azimuth spans 2.4 rad but counts ``sin(theta)`` (0.4 to 0.9) times
    less on the sphere than in latent coordinates, so latent Euclidean
    neighbours are found along the azimuth, across the label boundary, while
    geodesic neighbours share the polar angle, which decides the label.
    """
    X = uniform(n, [0.4, -1.2], [1.2, 1.2], seed=seed)
    return X, (X[:, 0] < 0.8).numpy().astype(int)


@pytest.mark.slow
def test_geodesic_knn_with_sklearn_precomputed_beats_latent_knn(sphere_fast):
    sphere = sphere_fast
    X, y = polar_cap_task(40, seed=8)
    Q, y_q = polar_cap_task(40, seed=9)
    train = gp.pairwise_distances(sphere.metric, X, block_size=512, progress=False)
    query = gp.pairwise_distances(sphere.metric, Q, X, block_size=512, progress=False)
    assert train.converged.all() and query.converged.all()
    geodesic = KNeighborsClassifier(n_neighbors=3, metric="precomputed").fit(train.dist, y)
    latent = KNeighborsClassifier(n_neighbors=3).fit(X.numpy(), y)
    accuracy_geodesic = np.mean(geodesic.predict(query.dist) == y_q)
    accuracy_latent = np.mean(latent.predict(Q.numpy()) == y_q)
    assert accuracy_geodesic >= accuracy_latent
    assert accuracy_geodesic >= 0.9
    # geomstats' own estimator (distances pair by pair) predicts the same
    knn = KNearestNeighborsClassifier(sphere, n_neighbors=3).fit(X[:10], y[:10])
    reference = KNeighborsClassifier(n_neighbors=3, metric="precomputed").fit(train.dist[:10, :10], y[:10])
    np.testing.assert_array_equal(knn.predict(Q[:3]), reference.predict(query.dist[:3, :10]))


def test_kernel_density_classifier_runs(mlp_fast):
    left, right = uniform(3, [-0.9, -0.3], [-0.6, 0.3], seed=10), uniform(3, [0.6, -0.3], [0.9, 0.3], seed=11)
    kde = KernelDensityEstimationClassifier(mlp_fast, bandwidth=1.0).fit(torch.cat([left, right]), [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(kde.predict(gs.array([[-0.8, 0.0], [0.8, 0.1]])), [0, 1])


@pytest.mark.slow
def test_riemannian_mean_shift_finds_the_means_of_two_clusters(mlp_fast):
    left, right = uniform(4, [-0.9, -0.3], [-0.6, 0.3], seed=6), uniform(4, [0.6, -0.3], [0.9, 0.3], seed=7)
    X = torch.cat([left, right])  # clusters about 0.05 across, 0.3 apart (geodesic distances)
    gs.random.seed(1)  # the estimator starts from random data points: here one in each cluster
    shift = RiemannianMeanShift(mlp_fast, bandwidth=0.15, n_clusters=2, tol=1e-4, max_iter=20).fit(X)
    means = torch.stack([gp.PullbackFrechetMean(mlp_fast).fit(part).estimate_ for part in (left, right)])
    order = torch.argsort(shift.cluster_centers_[:, 0])
    torch.testing.assert_close(shift.cluster_centers_[order], means, atol=1e-4, rtol=0)
    np.testing.assert_array_equal(shift.predict(X).numpy(), np.repeat(order.numpy(), 4))


@pytest.mark.slow
def test_geodesic_regression_recovers_a_geodesic(sphere_fast):
    # The extrinsic variant (scipy's CG on the same loss) recovers the same
    # geodesic too, three times slower: left out to keep the suite short.
    sphere = sphere_fast
    intercept, coef = gs.array([1.3, 0.2]), gs.array([0.3, 0.5])
    times = gs.linspace(-1.0, 1.0, 8)
    y = sphere.metric.exp(times[:, None] * coef, intercept)
    y = y + 0.003 * torch.randn(y.shape, generator=torch.Generator().manual_seed(12), dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        regression = GeodesicRegression(sphere, method="riemannian", center_X=False, initialization="frechet")
        regression.fit(times, y)
    # noise 0.003 per coordinate on 8 points: parameters within a few noise levels
    torch.testing.assert_close(regression.intercept_, intercept, atol=6e-3, rtol=0)
    torch.testing.assert_close(regression.coef_, coef, atol=6e-3, rtol=0)
    torch.testing.assert_close(regression.predict(times), y, atol=1e-2, rtol=0)
