"""Geometry on the architectures of real generative models, latent dimension 8 to 64, float32 and float64.

Cases (``tests/cases.py``): GEORCE's MNIST decoder (``mnist8``: Linear,
three transposed convolutions, Linear; GELU), a decoder mixing
convolutions, batch norm and dropout in eval mode with GELU/SiLU/softplus
(``mixed8``), GEORCE's CelebA decoder (``celeba32``: five transposed
convolutions to ``3 x 64 x 64``) and a tanh MLP with a 64-D latent
(``mlp64``); the last two are heavy and run in the slow lane only. Seeded
random weights.

Tolerances per dtype (the decoder's; points stay float64): what a solver
reaches, ``SOLVER_TOL`` (``1e-6`` in float64, ``1e-3`` in float32), for the
exp/log round trip, distance symmetry and transported inner products;
``CURVATURE_TOL`` for sectional curvature against finite differences of the
Christoffel symbols (computed with the float64 decoder), relative to the
curvature scale ``|II|^2 / |u ^ v|^2``.
"""

import geomstats.backend as gs
import pytest
import torch
from cases import CASES, case_params

import geomstats_pullback as gp

REAL = ("mnist8", "mixed8", "celeba32", "mlp64")
CURVATURE_TOL = {torch.float32: 1e-2, torch.float64: 1e-6}
STEP = 1e-4  # central differences of the Christoffel symbols: O(STEP^2) error

pytestmark = pytest.mark.filterwarnings("ignore::geomstats_pullback.ConvergenceWarning")


def _pairs(case, n, seed):
    """``n`` pairs of latent points a short geodesic apart (codes of std 0.5, steps of std 0.2)."""
    start = case.points(n, seed=seed)
    return start, start + case.vectors(n, seed=seed + 1, scale=0.2)


def _relative(actual, expected):
    return float((actual - expected).abs().max() / expected.abs().max())


@pytest.mark.slow
@pytest.mark.parametrize("case", case_params(*REAL))
def test_exp_log_round_trip_and_distance_symmetry(case):
    metric = case.space().metric
    start, end = _pairs(case, 2, seed=10)
    log = metric.log(end, start)
    assert metric.log_solver.result_.converged.all()
    assert _relative(metric.exp(log, start), end) < case.solver_tol
    forward, backward = metric.dist(start, end), metric.dist(end, start)
    torch.testing.assert_close(forward, backward, rtol=case.solver_tol, atol=0)
    # No longer than the decoded straight line.
    straight = gp.path_length(metric.decoder, gp.linear_path(start, end, 65))
    assert bool((forward <= straight * (1 + case.solver_tol)).all())
    # geodesic(..., end_point=...) runs from start to end, and its decoded length is the distance.
    curve = metric.geodesic(start, end_point=end)(gs.linspace(0.0, 1.0, 65))  # [2, 65, d]
    torch.testing.assert_close(curve[:, 0], start)
    assert _relative(curve[:, -1], end) < case.solver_tol
    torch.testing.assert_close(gp.path_length(metric.decoder, curve), forward, rtol=10 * case.solver_tol, atol=0)


@pytest.mark.slow
@pytest.mark.parametrize("case", case_params(*REAL))
def test_parallel_transport_preserves_inner_products(case):
    metric = case.space().metric
    base = case.points(2, seed=20)
    direction = case.vectors(2, seed=21, scale=0.2)
    vec_a, vec_b = case.vectors(2, seed=22), case.vectors(2, seed=23)
    end = metric.exp(direction, base)
    moved = metric.parallel_transport(gs.stack([vec_a, vec_b], axis=1), base[:, None], direction=direction[:, None])
    before = metric.inner_product(vec_a, vec_b, base), metric.squared_norm(vec_a, base)
    after = metric.inner_product(moved[:, 0], moved[:, 1], end), metric.squared_norm(moved[:, 0], end)
    scale = metric.squared_norm(vec_a, base) + metric.squared_norm(vec_b, base)
    for old, new in zip(before, after):
        assert float(((new - old).abs() / scale).max()) < case.solver_tol
    # Not the identity: the metric varies along the geodesic.
    assert float((moved[:, 0] - vec_a).abs().max()) > 10 * case.solver_tol


def _christoffel_contraction(metric, z, a, b):
    """``Gamma(a, b)`` at ``z [d]`` from the metric's Christoffel symbols, ``[d]``."""
    return gs.einsum("kij,i,j->k", metric.christoffels(z), a, b)


def _sectional_by_finite_differences(metric, z, u, v):
    r"""``<R(u, v) v, u> / |u ^ v|^2`` with constant coordinate fields and central differences of ``Gamma``.

    ``R(u, v) v = D_u Gamma(v, v) - D_v Gamma(u, v) + Gamma(u, Gamma(v, v)) - Gamma(v, Gamma(u, v))``.
    """

    def derivative(direction, a, b):
        return (
            _christoffel_contraction(metric, z + STEP * direction, a, b)
            - _christoffel_contraction(metric, z - STEP * direction, a, b)
        ) / (2 * STEP)

    gamma_vv, gamma_uv = _christoffel_contraction(metric, z, v, v), _christoffel_contraction(metric, z, u, v)
    riemann = (
        derivative(u, v, v) - derivative(v, u, v)
        + _christoffel_contraction(metric, z, u, gamma_vv) - _christoffel_contraction(metric, z, v, gamma_uv)
    )
    area = metric.squared_norm(u, z) * metric.squared_norm(v, z) - metric.inner_product(u, v, z) ** 2
    return metric.inner_product(riemann, u, z) / area


@pytest.mark.parametrize(
    "case",
    case_params("mixed8")
    + [pytest.param(p.values[0], id=p.id, marks=[*p.marks, pytest.mark.slow]) for p in case_params("mnist8", "celeba32", "mlp64")],
)
def test_sectional_curvature_matches_finite_differences_of_christoffels(case):
    space = case.space()
    z, u, v = case.points(1, seed=30)[0], case.vectors(1, seed=31)[0], case.vectors(1, seed=32)[0]
    reference = _sectional_by_finite_differences(CASES[f"{case.name}-float64"].space().metric, z, u, v)
    curvature = space.metric.sectional_curvature(u, v, z)
    second = space.metric.second_fundamental_form(z)  # [D, d, d]
    area = space.metric.squared_norm(u, z) * space.metric.squared_norm(v, z) - space.metric.inner_product(u, v, z) ** 2
    scale = float(gs.sum(gs.einsum("aij,i,j->a", second, u, u) ** 2) / area)
    assert abs(float(curvature - reference)) <= CURVATURE_TOL[case.dtype] * scale
    assert abs(float(reference)) > 1e3 * CURVATURE_TOL[torch.float64] * scale  # a curved case: the test can fail


@pytest.mark.slow
@pytest.mark.parametrize("case", case_params("mnist8", "mixed8", "celeba32", dtypes=(torch.float32, torch.float64)))
def test_frechet_mean_is_a_critical_point_of_the_variance(case):
    space = case.space()
    points = case.points(4, seed=40)
    mean = gp.PullbackFrechetMean(space, max_iter=20, tol=max(1e-5, case.solver_tol)).fit(points)  # above the log precision
    assert mean.converged_
    # The gradient of the variance, -2 G sum log, vanishes: the logs sum to about zero.
    logs = space.metric.log(points, mean.estimate_)
    spread = float(space.metric.norm(logs, mean.estimate_).max())
    assert float(space.metric.norm(gs.mean(logs, axis=0), mean.estimate_)) < 1e-2 * spread


@pytest.mark.slow
@pytest.mark.parametrize("case", case_params("mnist8", "mixed8", "celeba32", "mlp64"))
def test_pairwise_distances_agree_with_reversed_pairs(case):
    metric = case.space().metric
    points = case.points(3, seed=50)
    result = gp.pairwise_distances(metric, points, shooting=True, progress=False)  # metric.dist shoots too
    assert bool(result.converged.all())
    rows, cols = torch.triu_indices(3, 3, offset=1)
    reversed_pairs = metric.dist(points[cols], points[rows])  # solved from the other end
    torch.testing.assert_close(torch.as_tensor(result.dist)[rows, cols], reversed_pairs, rtol=case.solver_tol, atol=0)
    straight = gp.path_length(metric.decoder, gp.linear_path(points[rows], points[cols], 65))
    assert bool((reversed_pairs <= straight * (1 + case.solver_tol)).all())
