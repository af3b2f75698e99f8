"""Property-based fuzzing of the public API: a right answer or a documented error, never anything else.

Every call on fuzzed input (batch shapes ``()``, ``(n,)``, ``(n, m)`` and
broadcasting between arguments, empty batches, inputs as torch tensors of four
dtypes, numpy arrays or lists, NaN or inf at a random entry, ``eps`` in and out
of range) must either

- return finite results of the shape geomstats' conventions give, which obey
  the laws checked here (``exp(log_a b, a) = b`` for converged pairs,
  ``dist(a, b) = dist(b, a)``, ``dist(a, a) = 0``, ``G(z)`` symmetric and
  positive definite where ``eps > 0``), or
- raise a documented exception: ``ValueError`` (and its subclasses in
  :mod:`geomstats_pullback.errors`) for bad input, ``FloatingPointError`` when
  the decoder returns NaN; a solver that misses its tolerance issues a
  :class:`~geomstats_pullback.ConvergenceWarning` and flags the pair.

Examples are drawn by hypothesis with a fixed seed (``derandomize=True``) so
that a run is reproducible; a failure is shrunk to a minimal example.
"""

import functools
import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import geomstats_pullback as gp
from geomstats_pullback import analytic

from cases import SPHERE_REGION
from conftest import fast_solvers

pytestmark = pytest.mark.slow

DIM = 2
# Errors the library documents; anything else escaping a call is a defect.
DOCUMENTED = (ValueError, FloatingPointError)
FUZZ = settings(
    derandomize=True, max_examples=6, deadline=None, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# Round-trip tolerance (latent units) of the cheap solvers in each decoder dtype.
ROUND_TRIP_TOL = {torch.float64: 1e-3, torch.float32: 1e-2}

# "mixed": the first argument a float32 tensor, the others float64 tensors.
INPUT_KINDS = ("float64", "float32", "float16", "bfloat16", "numpy64", "numpy32", "list", "mixed")
EPS_VALUES = (0.0, 1e-8, 1e-3, float("nan"), float("inf"), -1.0)
DECODERS = ("sphere-float64", "sphere-float32", "mlp-float64", "mlp-float32")
# Batch shapes of a first argument, and shapes that broadcast with each.
BATCH_SHAPES = ((), (1,), (3,), (2, 3))
EMPTY_SHAPES = ((0,), (0, 3), (2, 0))


def _partners(shape):
    """Batch shapes that broadcast with ``shape`` (itself, a scalar batch, a suffix, ones)."""
    options = {shape, ()}
    options.update(shape[i:] for i in range(len(shape)))
    options.add(tuple(1 for _ in shape))
    return sorted(options)


@functools.lru_cache(maxsize=None)
def _decoder(name):
    kind, dtype = name.split("-")
    dtype = getattr(torch, dtype)
    if kind == "sphere":
        return analytic.sphere_chart, dtype
    return analytic.random_mlp((2, 8, 5), seed=3, dtype=dtype), dtype


@functools.lru_cache(maxsize=None)
def _space(name, eps):
    decoder, dtype = _decoder(name)
    region = SPHERE_REGION if name.startswith("sphere") else None
    space = fast_solvers(gp.DecoderManifold(decoder, DIM, region=region, dtype=dtype, metric_kwargs={"eps": eps}))
    # Shooting on: its code path handles dtypes and unconverged pairs, which the discrete solver alone does not reach.
    space.metric.log_solver = gp.GeodesicBVPSolver(space, n_nodes=17, max_shooting_iter=4)
    return space


def _region(name):
    if name.startswith("sphere"):
        low, high = (torch.as_tensor(bound, dtype=torch.float64) for bound in SPHERE_REGION)
        # Away from the edges of the regular region, so that a geodesic between two points stays in it.
        return low + 0.3 * (high - low), high - 0.3 * (high - low)
    return -torch.ones(DIM, dtype=torch.float64), torch.ones(DIM, dtype=torch.float64)


def _convert(values, kind, position):
    """``values`` (float64 tensor) as the input kind; returns ``(input, float64 tensor of what it holds)``."""
    if kind == "mixed":
        kind = "float32" if position == 0 else "float64"
    if kind in ("float64", "float32", "float16", "bfloat16"):
        x = values.to(getattr(torch, kind))
        return x, x.to(torch.float64)
    if kind == "numpy64":
        return values.numpy().copy(), values
    if kind == "numpy32":
        x = values.numpy().astype(np.float32)
        return x, torch.from_numpy(x.astype(np.float64))
    x = values.tolist()
    return x, values


@st.composite
def latent(draw, name, shape, *, kind="float64", scale=None, corrupt=False, position=0):
    """A ``shape + [DIM]`` input of kind ``kind``: points in ``name``'s region, or vectors of norm up to ``scale``."""
    seed = draw(st.integers(0, 2**16))
    gen = torch.Generator().manual_seed(seed)
    full = tuple(shape) + (DIM,)
    if scale is None:
        low, high = _region(name)
        values = low + (high - low) * torch.rand(full, generator=gen, dtype=torch.float64)
    else:
        values = scale * (2 * torch.rand(full, generator=gen, dtype=torch.float64) - 1)
    if corrupt and values.numel():
        index = draw(st.integers(0, values.numel() - 1))
        values.view(-1)[index] = draw(st.sampled_from([float("nan"), float("inf"), -float("inf")]))
    return _convert(values, kind, position)


def _call(function, *args, **kwargs):
    """``(result, error, caught warnings)`` of ``function(*args, **kwargs)``; only documented errors are caught."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            return function(*args, **kwargs), None, caught
        except DOCUMENTED as error:
            return None, error, caught


def _expect_refusal(error, corrupt):
    """A call that raised must have had a NaN or inf argument, refused as bad input (not by the decoder)."""
    assert corrupt, error
    assert isinstance(error, ValueError) and "NaN or inf" in str(error), error


def _finite(result, shape):
    assert isinstance(result, torch.Tensor), type(result)
    assert tuple(result.shape) == tuple(shape), (tuple(result.shape), shape)
    assert result.dtype.is_floating_point
    assert torch.isfinite(result).all(), result


def _batch(*shapes):
    return tuple(np.broadcast_shapes(*shapes))


def _warned(caught):
    return any(issubclass(w.category, gp.ConvergenceWarning) for w in caught)


def _converged(metric, batch_shape):
    """Which pairs the last log converged on (all, if no log ran)."""
    result = metric.log_solver.result_
    if result is None:
        return torch.ones(batch_shape, dtype=torch.bool)
    return torch.as_tensor(result.converged).reshape(batch_shape)


# ------------------------------------------------------------------ operations
# Each takes (draw, name, space, kind, shape, corrupt) and checks one call; it
# returns nothing: an assertion error or an undocumented exception fails the test.


def _two_points(draw, name, kind, shape, corrupt):
    other = draw(st.sampled_from(_partners(shape)))
    a, a64 = draw(latent(name, shape, kind=kind, corrupt=corrupt))
    b, b64 = draw(latent(name, other, kind=kind, position=1))
    return (a, a64), (b, b64), _batch(shape, other)


def op_metric_matrix(draw, name, space, kind, shape, corrupt):
    z, _ = draw(latent(name, shape, kind=kind, corrupt=corrupt))
    gram, error, _ = _call(space.metric.metric_matrix, z)
    if error is not None:
        _expect_refusal(error, corrupt)
        return
    _finite(gram, shape + (DIM, DIM))
    torch.testing.assert_close(gram, gram.transpose(-1, -2))
    if space.metric.eps > 0 and gram.numel():
        assert (torch.linalg.eigvalsh(gram.to(torch.float64)) > 0).all()


def op_inner_product(draw, name, space, kind, shape, corrupt):
    z, _ = draw(latent(name, shape, kind=kind, position=1))
    other = draw(st.sampled_from(_partners(shape)))
    u, u64 = draw(latent(name, other, kind=kind, scale=1.0, corrupt=corrupt))
    v, v64 = draw(latent(name, shape, kind=kind, scale=1.0))
    inner, error, _ = _call(space.metric.inner_product, u, v, z)
    if error is not None:
        _expect_refusal(error, corrupt)
        return
    _finite(inner, _batch(shape, other))
    swapped = space.metric.inner_product(v, u, z)
    torch.testing.assert_close(inner, swapped)


def op_squared_norm(draw, name, space, kind, shape, corrupt):
    z, _ = draw(latent(name, shape, kind=kind, corrupt=corrupt))
    other = draw(st.sampled_from(_partners(shape)))
    v, _ = draw(latent(name, other, kind=kind, position=1, scale=1.0))
    sq_norm, error, _ = _call(space.metric.squared_norm, v, z)
    if error is not None:
        _expect_refusal(error, corrupt)
        return
    _finite(sq_norm, _batch(shape, other))
    assert (sq_norm >= 0).all()


def op_exp(draw, name, space, kind, shape, corrupt):
    z, _ = draw(latent(name, shape, kind=kind, position=1))
    other = draw(st.sampled_from(_partners(shape)))
    v, _ = draw(latent(name, other, kind=kind, scale=0.3, corrupt=corrupt))
    end, error, _ = _call(space.metric.exp, v, z)
    if error is not None:
        _expect_refusal(error, corrupt)
        return
    _finite(end, _batch(shape, other) + (DIM,))


def op_log(draw, name, space, kind, shape, corrupt):
    (a, a64), (b, b64), batch_shape = _two_points(draw, name, kind, shape, corrupt)
    metric = space.metric
    metric.log_solver.result_ = None
    log, error, caught = _call(metric.log, b, a)
    if error is not None:
        _expect_refusal(error, corrupt)
        return
    _finite(log, batch_shape + (DIM,))
    converged = _converged(metric, batch_shape)
    if _warned(caught):
        assert not converged.all(), "ConvergenceWarning without an unconverged flag"
    back = metric.exp(log, a)
    expected = torch.broadcast_to(b64, batch_shape + (DIM,))
    gap = torch.linalg.vector_norm(back.to(torch.float64) - expected, dim=-1)
    assert (gap[converged] < ROUND_TRIP_TOL[_decoder(name)[1]]).all(), gap


def op_dist(draw, name, space, kind, shape, corrupt):
    (a, _), (b, _), batch_shape = _two_points(draw, name, kind, shape, corrupt)
    dist, error, _ = _call(space.metric.dist, a, b)
    if error is not None:
        _expect_refusal(error, corrupt)
        return
    _finite(dist, batch_shape)
    assert (dist >= 0).all()
    tol = ROUND_TRIP_TOL[_decoder(name)[1]]
    torch.testing.assert_close(dist, space.metric.dist(b, a), atol=tol, rtol=tol)
    self_dist = space.metric.dist(a, a)
    _finite(self_dist, shape)
    assert (self_dist.abs() < tol).all(), self_dist


def op_geodesic(draw, name, space, kind, shape, corrupt):
    (a, _), (b, _), batch_shape = _two_points(draw, name, kind, shape, corrupt)
    n_t = draw(st.integers(1, 4))
    t = torch.linspace(0.0, 1.0, n_t, dtype=torch.float64)
    curve, error, _ = _call(space.metric.geodesic, a, end_point=b)
    if error is None:
        points, error, _ = _call(curve, t)
    if error is not None:
        _expect_refusal(error, corrupt)
        return
    # geomstats: [n_t, dim] for one geodesic, [B, n_t, dim] for a batch of them.
    _finite(points, batch_shape + (n_t, DIM) if batch_shape else (n_t, DIM))


def op_parallel_transport(draw, name, space, kind, shape, corrupt):
    z, _ = draw(latent(name, shape, kind=kind, position=1))
    other = draw(st.sampled_from(_partners(shape)))
    w, _ = draw(latent(name, other, kind=kind, scale=1.0, corrupt=corrupt))
    v, _ = draw(latent(name, shape, kind=kind, scale=0.3))
    out, error, _ = _call(space.metric.parallel_transport, w, z, direction=v)
    if error is not None:
        _expect_refusal(error, corrupt)
        return
    _finite(out, _batch(shape, other) + (DIM,))


def op_sectional_curvature(draw, name, space, kind, shape, corrupt):
    z, _ = draw(latent(name, shape, kind=kind, corrupt=corrupt))
    # One draw for both vectors, so that they are not equal (hypothesis repeats its draws).
    uv, uv64 = draw(latent(name, shape + (2,), kind="float64", scale=1.0))
    u, _ = _convert(uv[..., 0, :], kind, 1)
    v, _ = _convert(uv[..., 1, :], kind, 0)
    kappa, error, _ = _call(space.metric.sectional_curvature, u, v, z)
    if error is not None:
        _expect_refusal(error, corrupt)
        return
    _finite(kappa, shape)
    if name.startswith("sphere") and space.metric.eps == 0:
        torch.testing.assert_close(kappa, torch.ones_like(kappa), atol=1e-2, rtol=1e-2)


def op_linear_path(draw, name, space, kind, shape, corrupt):
    (a, a64), (b, b64), batch_shape = _two_points(draw, name, kind, shape, corrupt)
    n_nodes = draw(st.integers(2, 5))
    path, error, _ = _call(gp.linear_path, a, b, n_nodes)
    if error is not None:
        _expect_refusal(error, corrupt)
        return
    _finite(path, batch_shape + (n_nodes, DIM))
    torch.testing.assert_close(path[..., 0, :].to(torch.float64), torch.broadcast_to(a64, batch_shape + (DIM,)))
    torch.testing.assert_close(path[..., -1, :].to(torch.float64), torch.broadcast_to(b64, batch_shape + (DIM,)))


def op_path_length(draw, name, space, kind, shape, corrupt):
    n_nodes = draw(st.integers(2, 5))
    path, _ = draw(latent(name, shape + (n_nodes,), kind=kind, corrupt=corrupt))
    length, error, _ = _call(gp.path_length, space, path)
    if error is not None:
        _expect_refusal(error, corrupt)
        return
    _finite(length, shape)
    assert (length >= 0).all()


def op_pairwise_distances(draw, name, space, kind, shape, corrupt):
    n = shape[0] if shape else 1
    m = draw(st.integers(1, 3))
    x, _ = draw(latent(name, (n,), kind=kind, corrupt=corrupt))
    y, _ = draw(latent(name, (m,), kind=kind, position=1))
    square, error, _ = _call(gp.pairwise_distances, space.metric, x, progress=False)
    if error is None:
        rect, error, _ = _call(gp.pairwise_distances, space.metric, x, y, progress=False)
    if error is not None:
        # An empty set of points is refused by name.
        assert isinstance(error, ValueError) and (corrupt or (n == 0 and "X" in str(error))), error
        return
    dist = torch.as_tensor(np.asarray(square.dist))
    _finite(dist, (n, n))
    torch.testing.assert_close(dist, dist.T)
    assert (torch.diagonal(dist) == 0).all()
    _finite(torch.as_tensor(np.asarray(rect.dist)), (n, m))


OPERATIONS = {
    name.removeprefix("op_"): function for name, function in dict(globals()).items() if name.startswith("op_")
}


def _params(kinds):
    params = []
    for op in OPERATIONS:
        for kind in kinds:
            params.append(pytest.param(op, kind, id=f"{op}-{kind}"))
    return params


@pytest.mark.parametrize("op, kind", _params(INPUT_KINDS))
@FUZZ
@given(data=st.data())
def test_public_api_on_fuzzed_input(op, kind, data):
    """Shapes, broadcasting, input dtypes and containers, NaN/inf, decoders and valid eps."""
    name = data.draw(st.sampled_from(DECODERS), label="decoder")
    eps = data.draw(st.sampled_from([e for e in EPS_VALUES if math.isfinite(e) and e >= 0]), label="eps")
    shape = data.draw(st.sampled_from(BATCH_SHAPES), label="batch_shape")
    corrupt = data.draw(st.booleans(), label="nan_or_inf")
    OPERATIONS[op](data.draw, name, _space(name, eps), kind, shape, corrupt)


@pytest.mark.parametrize("op", list(OPERATIONS))
@FUZZ
@given(data=st.data())
def test_public_api_on_empty_batches(op, data):
    """A batch with no element gives an empty result of the right shape."""
    name = data.draw(st.sampled_from(DECODERS), label="decoder")
    shape = data.draw(st.sampled_from(EMPTY_SHAPES), label="batch_shape")
    OPERATIONS[op](data.draw, name, _space(name, 0.0), "float64", shape, False)


@FUZZ
@given(name=st.sampled_from(DECODERS), eps=st.sampled_from(EPS_VALUES))
def test_construction_validates_eps(name, eps):
    """``eps`` outside ``[0, inf)`` is refused by name; a valid one gives a symmetric positive semi-definite ``G``."""
    decoder, dtype = _decoder(name)
    space, error, _ = _call(gp.DecoderManifold, decoder, DIM, dtype=dtype, metric_kwargs={"eps": eps})
    if not (math.isfinite(eps) and eps >= 0):
        assert isinstance(error, ValueError) and "eps" in str(error), error
        return
    assert error is None, error
    gram = space.metric.metric_matrix(torch.tensor([[1.0, 0.5]], dtype=torch.float64))
    _finite(gram, (1, DIM, DIM))
    assert (torch.linalg.eigvalsh(gram.to(torch.float64)) >= -1e-6).all()
