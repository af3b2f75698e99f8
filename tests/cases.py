"""One registry of analytic test cases: decoder, latent dimension, reference space, dtype.

Every case runs in float32 and float64 (the dtype the decoder is evaluated in;
points and results stay in geomstats' float64). A case with a reference
geomstats space says how latent points and tangent vectors map to it, so that
exp, log, distances, transport and curvature can be compared with the
reference's closed forms; a case without one (``mlp``, ``conv8``) is checked
on the laws every pullback metric obeys, against finite differences computed
with its float64 decoder.

The real-model cases (``mnist8``, ``mixed8``, ``celeba32``, ``mlp64``: the
architectures of :mod:`geomstats_pullback.analytic` at latent dimensions 8 to
64) are opt-in: ``case_params()`` without names leaves them out, so that the
tests over every case stay quick; name them to use them. ``celeba32`` and
``mlp64`` are ``heavy``: tests that name them mark them ``slow``
(``case_params(..., slow_heavy=True)``).

Use ``case_params(...)`` in ``pytest.mark.parametrize`` (ids such as
``sphere-float64``), or ``CASES["sphere-float64"]`` for one case.
"""

from dataclasses import dataclass
from typing import Callable, Optional

import geomstats.backend as gs
import pytest
import torch
from geomstats.geometry.euclidean import Euclidean
from geomstats.geometry.hypersphere import Hypersphere

import geomstats_pullback as gp
from geomstats_pullback import analytic

DTYPES = (torch.float32, torch.float64)

# Tolerance of laws evaluated in the decoder's dtype (geoopt's convention).
LAW_TOL = {torch.float32: 1e-4, torch.float64: 1e-7}
# What an iterative solver (exp/log round trip, transport) reaches in each dtype.
SOLVER_TOL = {torch.float32: 1e-3, torch.float64: 1e-6}


def _identity_tangent(tangent_vec, base_point):
    return tangent_vec


@dataclass(frozen=True)
class Case:
    """An analytic decoder evaluated in one dtype.

    Attributes
    ----------
    name : str
    make_decoder : callable
        ``make_decoder(dtype) -> decoder``; a plain function of ``[B, d]`` for
        the closed-form charts, a seeded ``torch.nn.Module`` otherwise.
    latent_dim : int
    dtype : torch.dtype
    region : tuple of two arrays, optional
        Sampling box ``(low, high)`` where the chart is regular.
    reference : callable, optional
        ``reference() -> geomstats Manifold`` whose metric equals the pullback.
    to_reference : callable, optional
        Latent points ``[..., d]`` to reference points.
    tangent_to_reference : callable, optional
        ``(tangent_vec, base_point) -> reference tangent vector``.
    sectional_curvature : float, optional
        Constant sectional curvature, where there is one.
    opt_in : bool
        Left out of ``case_params()`` unless named.
    heavy : bool
        Seconds per geometric operation: slow tests only.
    """

    name: str
    make_decoder: Callable
    latent_dim: int
    dtype: torch.dtype
    region: Optional[tuple] = None
    reference: Optional[Callable] = None
    to_reference: Optional[Callable] = None
    tangent_to_reference: Optional[Callable] = None
    sectional_curvature: Optional[float] = None
    opt_in: bool = False
    heavy: bool = False

    @property
    def id(self):
        return f"{self.name}-{str(self.dtype).removeprefix('torch.')}"

    @property
    def law_tol(self):
        return LAW_TOL[self.dtype]

    @property
    def solver_tol(self):
        return SOLVER_TOL[self.dtype]

    def tol(self, float64_tol):
        """A float64 test's own tolerance, kept in float64 and loosened to the law tolerance in float32."""
        return float64_tol if self.dtype == torch.float64 else max(float64_tol, self.law_tol)

    def assert_close(self, actual, expected, *, atol=1e-7, rtol=1e-7):
        """``torch.testing.assert_close`` with a float64 test's tolerances, loosened in float32."""
        torch.testing.assert_close(actual, expected, atol=self.tol(atol), rtol=self.tol(rtol))

    def decoder(self, dtype=None):
        return self.make_decoder(dtype or self.dtype)

    def space(self, *, region=None, dtype=None, **metric_kwargs):
        """A fresh ``DecoderManifold`` (its solvers may be swapped by the caller)."""
        dtype = dtype or self.dtype
        return gp.DecoderManifold(
            self.decoder(dtype), latent_dim=self.latent_dim, region=region if region is not None else self.region,
            dtype=dtype, metric_kwargs=metric_kwargs or None,
        )

    def points(self, n, seed=0, scale=0.5):
        """``[n, d]`` float64 points: uniform in ``region``, else Gaussian of std ``scale``."""
        gen = torch.Generator().manual_seed(seed)
        if self.region is None:
            return scale * torch.randn(n, self.latent_dim, generator=gen, dtype=torch.float64)
        low, high = (torch.as_tensor(bound, dtype=torch.float64) for bound in self.region)
        return low + (high - low) * torch.rand(n, self.latent_dim, generator=gen, dtype=torch.float64)

    def vectors(self, n, seed=0, scale=1.0):
        gen = torch.Generator().manual_seed(seed)
        return scale * torch.randn(n, self.latent_dim, generator=gen, dtype=torch.float64)


def _sphere_reference():
    return Hypersphere(dim=2)


def _sphere_points(z):
    return Hypersphere(dim=2).spherical_to_extrinsic(z)


def _sphere_tangent(tangent_vec, base_point):
    return Hypersphere(dim=2).tangent_spherical_to_extrinsic(tangent_vec, base_point)


def _plane():
    return Euclidean(dim=2)


def _fixed(function):
    return lambda dtype: function


SPHERE_REGION = (gs.array([0.6, -2.5]), gs.array([2.5, 2.5]))
FLAT_REGION = (gs.array([-1.0, -1.0]), gs.array([1.0, 1.0]))

_BLUEPRINTS = {
    # Spherical angles (theta, phi): Hypersphere(2) through spherical_to_extrinsic.
    "sphere": dict(
        make_decoder=_fixed(analytic.sphere_chart), latent_dim=2, region=SPHERE_REGION, reference=_sphere_reference,
        to_reference=_sphere_points, tangent_to_reference=_sphere_tangent, sectional_curvature=1.0,
    ),
    # Flat torus in R^4 and unit cylinder in R^3: metric I, the plane in the chart.
    "torus": dict(
        make_decoder=_fixed(analytic.flat_torus), latent_dim=2, region=FLAT_REGION, reference=_plane,
        to_reference=lambda z: z, tangent_to_reference=_identity_tangent, sectional_curvature=0.0,
    ),
    "cylinder": dict(
        make_decoder=_fixed(analytic.cylinder), latent_dim=2, region=FLAT_REGION, reference=_plane,
        to_reference=lambda z: z, tangent_to_reference=_identity_tangent, sectional_curvature=0.0,
    ),
    # z -> Q z, Q^T Q = I, R^2 -> R^5: Euclidean(2).
    "linear": dict(
        make_decoder=lambda dtype: analytic.linear_isometry(2, 5, seed=2, dtype=dtype), latent_dim=2, reference=_plane,
        to_reference=lambda z: z, tangent_to_reference=_identity_tangent, sectional_curvature=0.0,
    ),
    # A random tanh MLP R^2 -> R^10: laws only.
    "mlp": dict(make_decoder=lambda dtype: analytic.random_mlp((2, 16, 16, 10), seed=1, dtype=dtype), latent_dim=2),
    # A random convolutional decoder R^8 -> 1x16x16 images (softplus): laws only.
    "conv8": dict(
        make_decoder=lambda dtype: analytic.conv_decoder(8, channels=(4, 2), image_size=16, seed=0, dtype=dtype, activation=torch.nn.Softplus),
        latent_dim=8,
    ),
    # GEORCE's MNIST decoder (Linear, three transposed convolutions, Linear; GELU): R^8 -> 1x28x28.
    "mnist8": dict(make_decoder=lambda dtype: analytic.mnist_conv_decoder(8, seed=0, dtype=dtype), latent_dim=8, opt_in=True),
    # Conv, BatchNorm (eval), Dropout (eval), GELU/SiLU/softplus: R^8 -> 1x16x16.
    "mixed8": dict(make_decoder=lambda dtype: analytic.mixed_conv_decoder(8, seed=0, dtype=dtype), latent_dim=8, opt_in=True),
    # GEORCE's CelebA decoder (five 4x4 transposed convolutions, GELU): R^32 -> 3x64x64.
    "celeba32": dict(
        make_decoder=lambda dtype: analytic.celeba_conv_decoder(32, seed=0, dtype=dtype), latent_dim=32, opt_in=True,
        heavy=True,
    ),
    # A tanh MLP with a 64-D latent: R^64 -> R^784.
    "mlp64": dict(
        make_decoder=lambda dtype: analytic.random_mlp((64, 128, 128, 784), seed=3, dtype=dtype), latent_dim=64,
        opt_in=True, heavy=True,
    ),
}

CASES = {case.id: case for case in (Case(name, dtype=dtype, **fields) for name, fields in _BLUEPRINTS.items() for dtype in DTYPES)}


def case_params(*names, dtypes=DTYPES, slow_float32=False, slow_heavy=True):
    """``pytest.param``s of the named cases (all but the opt-in ones if none) in ``dtypes``, with ids like ``sphere-float64``.

    ``slow_float32`` marks the float32 variants ``slow``: for tests whose
    float64 run already guards the code path and whose float32 run is long.
    ``slow_heavy`` marks the heavy cases ``slow``. Heavy cases are also
    marked ``heavy``: skipped unless pytest runs with ``--heavy``.
    """
    params = []
    for case in CASES.values():
        if (names and case.name not in names) or (not names and case.opt_in) or case.dtype not in dtypes:
            continue
        slow = (slow_float32 and case.dtype == torch.float32) or (slow_heavy and case.heavy)
        marks = ([pytest.mark.slow] if slow else []) + ([pytest.mark.heavy] if case.heavy else [])
        params.append(pytest.param(case, id=case.id, marks=marks))
    return params


def with_reference(*, curvature=False):
    """Names of the cases that have a reference space (and a constant curvature, if asked)."""
    return tuple(
        name for name, fields in _BLUEPRINTS.items()
        if fields.get("reference") and (not curvature or fields.get("sectional_curvature") is not None)
    )
