"""Decoder derivatives (both torch paths, and autograd.numpy) against torch.func's own transforms."""

import logging
import sys

import pytest
import torch
from cases import CASES, case_params

import geomstats_pullback as gp
from geomstats_pullback import analytic
from geomstats_pullback.autodiff import STRATEGIES, TorchDiff
from geomstats_pullback.decoders import AUTO_MIN_DIM, DEFAULT_MEMORY_BUDGET


def _case(name, n_batch, seed=0):
    """A float64 registry case's decoder (``linear``: f'' = 0, graphs that do not reach z) and random inputs."""
    gen = torch.Generator().manual_seed(seed)
    case = CASES[f"{name}-float64"]
    decoder = case.space().decoder
    dim = case.latent_dim
    z, u, v, w = (torch.rand(n_batch, dim, generator=gen, dtype=torch.float64) + 0.5 for _ in range(4))
    return decoder, z, u, v, w


def _references(decoder, z):
    """Per-row Jacobians ``[B, D, d]`` and Hessians ``[B, D, d, d]`` from torch.func."""

    def row(x):
        return decoder._flat(x[None])[0]

    jac = torch.stack([torch.func.jacrev(row)(x) for x in z])
    hess = torch.stack([torch.func.hessian(row)(x) for x in z])
    return jac, hess


@pytest.mark.parametrize("case", case_params(dtypes=(torch.float64,)))
@pytest.mark.parametrize("n_batch", [1, 5])
def test_derivatives_match_torch_func(case, n_batch):
    decoder, z, u, v, w = _case(case.name, n_batch)
    jac, hess = _references(decoder, z)
    second = lambda a, b: torch.einsum("bDij,bi,bj->bD", hess, a, b)  # noqa: E731
    value, pushed = decoder.jvp(z, v)
    torch.testing.assert_close(value, decoder(z))
    torch.testing.assert_close(pushed, torch.einsum("bDi,bi->bD", jac, v))
    torch.testing.assert_close(decoder.jacobian(z), jac)
    torch.testing.assert_close(decoder.second_derivative(z, u, v), second(u, v))
    torch.testing.assert_close(decoder.hessian(z), hess)
    both_jac, both_second = decoder.jacobian_and_second(z, u, torch.stack([u, v, w]))
    torch.testing.assert_close(both_jac, jac)
    torch.testing.assert_close(both_second, torch.stack([second(u, u), second(u, v), second(u, w)]))
    weights = torch.rand(n_batch, decoder.output_dim, dtype=torch.float64)
    torch.testing.assert_close(decoder.weighted_hessian(z, weights), torch.einsum("bDij,bD->bij", hess, weights))


def test_reverse_mode_path_equals_forward_mode_path():
    """Outside autograd the fast reverse-mode path runs; under grad mode torch.func's forward mode."""
    decoder, z, u, v, _ = _case("mlp", 4)
    f = decoder._flat
    with torch.no_grad():
        fast = (TorchDiff.jvp(f, z, v)[1], TorchDiff.jacobian(f, z), TorchDiff.second_derivative(f, z, u, v))
        fast_hessian = TorchDiff.hessian(f, z)
    with torch.enable_grad():
        slow = (TorchDiff.jvp(f, z, v)[1], TorchDiff.jacobian(f, z), TorchDiff.second_derivative(f, z, u, v))
        slow_hessian = TorchDiff.hessian(f, z)
    for a, b in zip(fast + (fast_hessian,), slow + (slow_hessian,)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_gradients_flow_through_the_metric_when_inputs_require_them():
    """``d/dz |J(z) v|^2`` by autograd through the decoder's derivatives equals finite differences."""
    space = gp.DecoderManifold(analytic.random_mlp((2, 16, 6), seed=1), latent_dim=2)
    z = torch.tensor([0.3, -0.2], dtype=torch.float64, requires_grad=True)
    v = torch.tensor([0.7, 0.4], dtype=torch.float64)
    (grad,) = torch.autograd.grad(space.metric.squared_norm(v, z), z)
    step = 1e-6
    basis = torch.eye(2, dtype=torch.float64)
    with torch.no_grad():
        finite = torch.stack(
            [(space.metric.squared_norm(v, z + step * e) - space.metric.squared_norm(v, z - step * e)) / (2 * step)
             for e in basis]
        )
    torch.testing.assert_close(grad, finite, rtol=1e-6, atol=1e-8)


# ------------------------------------------------------------------ Jacobian strategies


def _strategy_inputs(name, n_batch=3, seed=1):
    case = CASES[f"{name}-float64"]
    decoder = case.space().decoder
    gen = torch.Generator().manual_seed(seed)
    z, u, v, w = (0.5 * torch.randn(n_batch, case.latent_dim, generator=gen, dtype=torch.float64) for _ in range(4))
    return decoder, z, u, torch.stack([u, v, w])


@pytest.mark.parametrize("grad_mode", [False, True], ids=["no_grad", "grad"])
@pytest.mark.parametrize("name", ["mlp", "conv8", pytest.param("mnist8", marks=pytest.mark.slow), "mixed8"])
def test_every_strategy_gives_the_same_derivatives(name, grad_mode):
    """J, f''[u, w_k] and the Hessian agree to 1e-12 across the four strategies (float64), and with torch.func."""
    decoder, z, u, directions = _strategy_inputs(name)
    f = decoder._flat
    jac_ref, hess_ref = _references(decoder, z[:2])
    second_ref = torch.einsum("bDij,bi,kbj->kbD", hess_ref, u[:2], directions[:, :2])
    tight = dict(rtol=1e-12, atol=1e-12)
    results = {}
    for s in STRATEGIES:
        try:
            with torch.set_grad_enabled(grad_mode):
                results[s] = (
                    TorchDiff.jacobian(f, z, strategy=s),
                    TorchDiff.jacobian_and_second(f, z, u, directions, strategy=s),
                    TorchDiff.second_derivative(f, z, u, directions[1], strategy=s),
                    TorchDiff.hessian(f, z, strategy=s) if name in ("mlp", "conv8") else None,
                )
        except NotImplementedError as error:  # torch has no forward-over-forward rule for SiLU
            assert name == "mixed8" and "forward AD" in str(error) and (grad_mode or s.startswith("forward"))
    assert "reverse" in results or grad_mode
    if grad_mode and not results:
        return
    results.setdefault("reverse", next(iter(results.values())))
    first = results["reverse"]
    torch.testing.assert_close(first[0][:2], jac_ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(first[1][1][:, :2], second_ref, rtol=1e-10, atol=1e-12)
    for strategy, (jac, (jac2, second), single, hess) in results.items():
        torch.testing.assert_close(jac, first[0], **tight, msg=f"J, {strategy}")
        torch.testing.assert_close(jac2, first[0], **tight, msg=f"J with seconds, {strategy}")
        torch.testing.assert_close(second, first[1][1], **tight, msg=f"f'', {strategy}")
        torch.testing.assert_close(single, first[1][1][1], **tight, msg=f"one f'', {strategy}")
        if hess is not None:
            torch.testing.assert_close(hess[:2], hess_ref, rtol=1e-10, atol=1e-12, msg=f"Hessian, {strategy}")
            torch.testing.assert_close(hess, first[3], **tight, msg=f"Hessian, {strategy}")


def test_auto_strategy_is_timed_once_cached_and_logged(caplog):
    space = CASES["mnist8-float64"].space()
    decoder = space.decoder
    assert decoder.jacobian_strategy == "auto" and decoder.latent_dim >= AUTO_MIN_DIM
    z = CASES["mnist8-float64"].points(5, seed=2)
    with caplog.at_level(logging.DEBUG, logger="geomstats_pullback.decoders"):
        jac = decoder.jacobian(z)
        decoder.jacobian(z)
    chosen = decoder.strategy_choices_[("jacobian", 8, False, "small")]
    assert chosen in STRATEGIES
    assert sum("Jacobian strategy for jacobian calls" in r.getMessage() for r in caplog.records) == 1
    forced = gp.TorchDecoder(decoder.decoder, 8, jacobian_strategy="forward")
    torch.testing.assert_close(forced.jacobian(z), jac, rtol=1e-12, atol=1e-12)
    assert not forced.strategy_choices_
    # Below AUTO_MIN_DIM nothing is timed: the reverse strategy runs.
    small = CASES["mlp-float64"].space().decoder
    small.jacobian(CASES["mlp-float64"].points(3))
    assert not small.strategy_choices_
    with pytest.raises(ValueError, match="jacobian_strategy"):
        gp.TorchDecoder(decoder.decoder, 8, jacobian_strategy="sideways")


class _CapturedBuffer(torch.nn.Module):
    """Writes into a preallocated buffer in place: reverse mode copes, torch.func's forward mode refuses."""

    def __init__(self):
        super().__init__()
        self.net = analytic.random_mlp((8, 16, 6), seed=4)
        self.out = torch.zeros(1, 6, dtype=torch.float64)

    def forward(self, z):
        if self.out.shape[0] != z.shape[0]:
            self.out = torch.zeros(z.shape[0], 6, dtype=torch.float64)
        buffer = self.out.clone()
        self.out.copy_(self.net(z).detach())  # a captured tensor mutated in place
        return self.net(z) + 0 * buffer


def test_auto_skips_a_strategy_the_decoder_refuses_and_a_forced_one_names_the_cause():
    z = torch.rand(4, 8, dtype=torch.float64)
    auto = gp.TorchDecoder(_CapturedBuffer(), 8)
    reference = torch.stack([torch.func.jacrev(lambda x: auto.decoder.net(x[None])[0])(x) for x in z])
    torch.testing.assert_close(auto.jacobian(z), reference)
    assert auto.strategy_choices_[("jacobian", 8, False, "small")].startswith("reverse")
    forced = gp.TorchDecoder(_CapturedBuffer(), 8, jacobian_strategy="forward")
    with pytest.raises(gp.DecoderDifferentiationError, match="in-place operation .* captured"):
        forced.jacobian(z)


# ------------------------------------------------------------------ memory budget


def test_chunked_calls_equal_one_call_and_respect_the_budget():
    case = CASES["conv8-float64"]
    whole = case.space().decoder
    z = case.points(7, seed=3)
    u, v = case.vectors(7, seed=4), case.vectors(7, seed=5)
    one_point = whole.point_bytes("hessian")
    chunked = gp.TorchDecoder(whole.decoder, 8, jacobian_strategy="reverse", memory_budget=2 * one_point)
    assert chunked.batch_limit("hessian") == 2 and chunked.batch_limit("jacobian") > 2
    whole = gp.TorchDecoder(whole.decoder, 8, jacobian_strategy="reverse", memory_budget=10**12)
    assert whole.batch_limit("hessian") >= 7
    for method, args in [
        ("jacobian", (z,)), ("hessian", (z,)), ("second_derivative", (z, u, v)), ("jvp", (z, v)),
        ("jacobian_and_second", (z, u, torch.stack([u, v]))),
        ("weighted_hessian", (z, torch.rand(7, whole.output_dim, dtype=torch.float64))),
    ]:
        torch.testing.assert_close(getattr(chunked, method)(*args), getattr(whole, method)(*args), rtol=1e-13, atol=1e-13)
    # The metric's own methods are chunked the same way.
    space = gp.DecoderManifold(chunked, 8)
    torch.testing.assert_close(space.metric.christoffels(z), gp.DecoderManifold(whole, 8).metric.christoffels(z))


def test_the_process_wide_budget_applies_to_decoders_without_their_own():
    decoder = CASES["conv8-float64"].space().decoder
    previous = gp.set_memory_budget(decoder.point_bytes("jacobian") * 3)
    try:
        assert decoder.budget == (decoder.point_bytes("jacobian") * 3, True)
        assert decoder.batch_limit("jacobian") == 3
    finally:
        gp.set_memory_budget(previous)
    assert decoder.budget == (DEFAULT_MEMORY_BUDGET, False)


def test_batched_strategies_cost_d_times_the_graph():
    decoder = CASES["conv8-float64"].space().decoder
    plain, batched = decoder.point_bytes("jacobian", strategy="reverse"), decoder.point_bytes("jacobian", strategy="reverse_batched")
    assert decoder._graph_bytes > 0
    assert batched - plain == 2 * (decoder.latent_dim - 1) * decoder._graph_bytes


# ------------------------------------------------------------------ devices


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_derivatives_stay_on_the_decoder_device(strategy):
    """On the meta device (shapes only): no tensor of the derivative path is made elsewhere."""
    module = analytic.conv_decoder(3, channels=(4, 2), image_size=8, activation=torch.nn.GELU).to("meta")
    decoder = gp.TorchDecoder(module, 3)
    assert decoder.device.type == "meta" and decoder.data_shape == (1, 8, 8)
    z = torch.zeros(3, 3, dtype=torch.float64, device="meta")
    directions = torch.zeros(2, 3, 3, dtype=torch.float64, device="meta")
    f = decoder._flat
    with torch.no_grad():
        outputs = [
            TorchDiff.jvp(f, z, z)[1], TorchDiff.jacobian(f, z, strategy=strategy),
            *TorchDiff.jacobian_and_second(f, z, z, directions, strategy=strategy),
            TorchDiff.hessian(f, z, strategy=strategy), TorchDiff.weighted_hessian(f, z, torch.zeros(3, 64, device="meta", dtype=torch.float64)),
        ]
    shapes = [(3, 64), (3, 64, 3), (3, 64, 3), (2, 3, 64), (3, 64, 3, 3), (3, 3, 3)]
    assert [tuple(out.shape) for out in outputs] == shapes
    assert all(out.device.type == "meta" for out in outputs)


_FACTORIES = ("zeros", "ones", "empty", "eye", "arange", "full", "rand", "randn", "tensor", "linspace")


def test_no_factory_call_of_the_adapter_omits_the_device(monkeypatch):
    """Every tensor decoders.py and autodiff.py create is placed explicitly (on the decoder's device)."""
    missing, seen = [], []
    for name in _FACTORIES:
        original = getattr(torch, name)

        def recording(*args, _original=original, _name=name, **kwargs):
            caller = sys._getframe(1).f_code.co_filename
            if caller.endswith(("geomstats_pullback/decoders.py", "geomstats_pullback/autodiff.py")):
                seen.append(_name)
                if "device" not in kwargs:
                    missing.append((_name, caller, sys._getframe(1).f_lineno))
            return _original(*args, **kwargs)

        monkeypatch.setattr(torch, name, recording)
    case = CASES["conv8-float64"]
    decoder = gp.TorchDecoder(case.decoder(), 8, memory_budget=10**9)
    z = case.points(3)
    decoder.jacobian(z), decoder.hessian(z[:1]), decoder.jacobian_and_second(z, z, z[None]), decoder.jvp(z, z)
    decoder.weighted_hessian(z, torch.ones(3, decoder.output_dim, dtype=torch.float64))
    assert seen and not missing
