"""geomstats' own generic metric test cases, run on our pullback metric.

The test functions are geomstats' (``geomstats.test_cases``); the data classes
below choose which of them run, on which random data and with which
tolerances (the generic ``*TestData`` classes are not in geomstats' wheel).
``DataBasedParametrizer`` turns every ``<name>_test_data`` method into a
parametrised ``test_<name>``; ``<name>_vec_test_data`` generates geomstats'
vectorisation tests (one point against many, many against many).

- ``TestSphereChartMetric`` / ``TestMLPMetric``: the metric's laws (exp after
  log, log after exp, symmetric and positive distances, dist = |log|, SPD
  metric matrix, parallel transport preserves norms, curvature symmetries) on
  the spherical-angle chart of the unit sphere and on a small random MLP.
- ``TestSphereChartVsHypersphere``: the chart against geomstats'
  ``Hypersphere(2)`` through the chart map (points) and its differential
  (tangent vectors): exp, log, distances, norms, geodesics, transport and
  sectional curvature must agree.

Random points come from ``space.random_point`` (its ``region``) and tangent
vectors from ``space.random_tangent_vec`` (a tenth of the region's size,
halved by geomstats' data generator).
"""

import geomstats.backend as gs
import pytest
from cases import CASES
from geomstats.geometry.hypersphere import Hypersphere
from geomstats.test.data import TestData
from geomstats.test.parametrizers import DataBasedParametrizer
from geomstats.test.utils import PointTransformer
from geomstats.test_cases.geometry.riemannian_metric import (
    RiemannianMetricComparisonTestCase,
    RiemannianMetricTestCase,
)

from geomstats_pullback import analytic

# Away from the poles (theta = 0, pi) where the chart degenerates, and less
# than pi apart in azimuth so that the chart's geodesics are the minimising
# ones of the sphere.
SPHERE_REGION = (gs.array([0.8, -1.2]), gs.array([2.3, 1.2]))


def _random_tests(data, *names):
    """``<name>_test_data`` methods on random points for each of ``names``."""
    for name in names:
        setattr(data, f"{name}_test_data", lambda self: self.generate_random_data())
    return data


def _vec_tests(data, *names):
    """``<name>_vec_test_data`` methods: geomstats generates the vectorisation tests."""
    for name in names:
        setattr(data, f"{name}_vec_test_data", lambda self: self.generate_vec_data())
    return data


class LocalLawsTestData(TestData):
    """Laws checked at points and along geodesics from initial velocities.

    One batch size (three points, or two repetitions for the vectorisation
    tests) keeps runs short: on our metric a batch costs what one point costs.
    """

    N_RANDOM_POINTS = [3]
    N_VEC_REPS = [2]
    N_TIME_POINTS = [3]
    trials = 1

    tolerances = {
        "dist_point_to_itself_is_zero": {"atol": 1e-8},
        "parallel_transport_ivp_norm": {"atol": 1e-6},
        "exp_vec": {"atol": 1e-8},
    }


_random_tests(
    LocalLawsTestData,
    "metric_matrix_is_spd",
    "inner_product_is_symmetric",
    "norm_is_positive",
    "normalize_is_unitary",
    "dist_point_to_itself_is_zero",
    "parallel_transport_ivp_norm",
    "covariant_riemann_tensor_is_skew_symmetric_1",
    "covariant_riemann_tensor_is_skew_symmetric_2",
    "covariant_riemann_tensor_bianchi_identity",
    "covariant_riemann_tensor_is_interchange_symmetric",
)
_vec_tests(
    LocalLawsTestData,
    "metric_matrix",
    "cometric_matrix",
    "inner_product",
    "squared_norm",
    "christoffels",
    "geodesic_equation",
    "sectional_curvature",
    "exp",
)


class GeodesicLawsTestData(LocalLawsTestData):
    """Also the laws of the boundary value problem: log, distances, geodesics between points.

    Left out to keep the file short: ``geodesic_bvp_reverse`` (two more
    boundary value problems per point; ``dist_is_symmetric`` and
    ``geodesic_boundary_points`` check the same solver), ``geodesic_ivp_vec``
    (``exp_vec`` covers the broadcasting); as implied by construction,
    ``*_belongs`` and ``log_is_tangent`` (the latent space is open: every
    finite point belongs).
    """

    tolerances = {
        **LocalLawsTestData.tolerances,
        # log: shooting to a relative tolerance 1e-7 (latent norm).
        "exp_after_log": {"atol": 1e-6},
        "log_after_exp": {"atol": 1e-6},
        "dist_is_symmetric": {"atol": 1e-6},
        "squared_dist_is_symmetric": {"atol": 1e-6},
        "dist_is_log_norm": {"atol": 1e-12},
        "dist_triangle_inequality": {"atol": 1e-6},
        "geodesic_boundary_points": {"atol": 1e-6},
        "parallel_transport_bvp_norm": {"atol": 1e-6},
        "log_vec": {"atol": 1e-6},
    }


_random_tests(
    GeodesicLawsTestData,
    "exp_geodesic_ivp",
    "exp_after_log",
    "log_after_exp",
    "dist_is_symmetric",
    "squared_dist_is_symmetric",
    "dist_is_positive",
    "dist_is_log_norm",
    "dist_triangle_inequality",
    "geodesic_boundary_points",
    "parallel_transport_bvp_norm",
)
_vec_tests(GeodesicLawsTestData, "log")


class TestSphereChartMetric(RiemannianMetricTestCase, metaclass=DataBasedParametrizer):
    """Local laws; log and distances are compared with Hypersphere below."""

    space = CASES["sphere-float64"].space(region=SPHERE_REGION)
    tangent_to_multiple = True  # one vector may serve many base points, and conversely
    testing_data = LocalLawsTestData()


class TestMLPMetric(RiemannianMetricTestCase, metaclass=DataBasedParametrizer):
    """Local and geodesic laws; about 15 s of boundary value problems, so in the slow lane."""

    pytestmark = pytest.mark.slow
    space = CASES["mlp-float64"].space()
    tangent_to_multiple = True
    testing_data = GeodesicLawsTestData()


class SphereChartTransformer(PointTransformer):
    """Spherical angles ``(theta, phi)`` to the unit sphere in ``R^3`` and back.

    Written from the closed forms (not from the decoder), as an independent
    reference: ``e_theta = d/d theta`` is a unit vector, ``|e_phi| = sin theta``.
    """

    @staticmethod
    def _frame(angles):
        theta, phi = angles[..., 0], angles[..., 1]
        e_theta = gs.stack([gs.cos(theta) * gs.cos(phi), gs.cos(theta) * gs.sin(phi), -gs.sin(theta)], axis=-1)
        e_phi = gs.stack([-gs.sin(theta) * gs.sin(phi), gs.sin(theta) * gs.cos(phi), gs.zeros_like(theta)], axis=-1)
        return e_theta, e_phi

    def transform_point(self, point):
        return analytic.sphere_chart(point)

    def transform_tangent_vec(self, tangent_vec, base_point):
        e_theta, e_phi = self._frame(base_point)
        return tangent_vec[..., :1] * e_theta + tangent_vec[..., 1:] * e_phi

    def inverse_transform_point(self, other_point):
        theta = gs.arccos(gs.clip(other_point[..., 2], -1.0, 1.0))
        phi = gs.arctan2(other_point[..., 1], other_point[..., 0])
        return gs.stack([theta, phi], axis=-1)

    def inverse_transform_tangent_vec(self, other_tangent_vec, other_base_point):
        angles = self.inverse_transform_point(other_base_point)
        e_theta, e_phi = self._frame(angles)
        d_theta = gs.sum(other_tangent_vec * e_theta, axis=-1)
        d_phi = gs.sum(other_tangent_vec * e_phi, axis=-1) / gs.sin(angles[..., 0]) ** 2
        return gs.stack([d_theta, d_phi], axis=-1)


class SphereChartVsHypersphereTestData(TestData):
    N_RANDOM_POINTS = [3]
    N_TIME_POINTS = [3]
    trials = 1

    tolerances = {
        "exp_random": {"atol": 1e-7},
        "log_random": {"atol": 1e-6},
        "squared_dist_random": {"atol": 1e-6},
        "dist_random": {"atol": 1e-6},
        "geodesic_ivp_random": {"atol": 1e-7},
        "geodesic_bvp_random": {"atol": 1e-6},
        "parallel_transport_ivp_random": {"atol": 1e-6},
        "parallel_transport_bvp_random": {"atol": 1e-6},
        "sectional_curvature_random": {"atol": 1e-8},
    }

    def geodesic_ivp_random_test_data(self):
        return self.generate_random_data_with_time()

    def geodesic_bvp_random_test_data(self):
        return self.generate_random_data_with_time()


_random_tests(
    SphereChartVsHypersphereTestData,
    "inner_product_random",
    "squared_norm_random",
    "norm_random",
    "exp_random",
    "log_random",
    "squared_dist_random",
    "dist_random",
    "parallel_transport_ivp_random",
    "parallel_transport_bvp_random",
    "sectional_curvature_random",
)


class TestSphereChartVsHypersphere(RiemannianMetricComparisonTestCase, metaclass=DataBasedParametrizer):
    space = CASES["sphere-float64"].space(region=SPHERE_REGION)
    other_space = Hypersphere(dim=2)
    point_transformer = SphereChartTransformer()
    testing_data = SphereChartVsHypersphereTestData()
