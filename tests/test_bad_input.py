"""Bad input gets a clear error, never a silent wrong number."""

import geomstats.backend as gs
import pytest
import torch

import geomstats_pullback as gp
from geomstats_pullback import analytic


def test_wrong_latent_dimension(mlp_space):
    with pytest.raises(ValueError, match=r"shape \[\.\.\., 2\]"):
        mlp_space.metric.metric_matrix(gs.zeros((4, 3)))
    with pytest.raises(ValueError, match="tangent_vec"):
        mlp_space.metric.exp(gs.zeros((4, 3)), gs.zeros((4, 2)))


def test_mismatched_batch_shapes(mlp_space):
    with pytest.raises(ValueError, match="do not broadcast"):
        mlp_space.metric.exp(gs.zeros((4, 2)), gs.zeros((3, 2)))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_and_inf_inputs(mlp_space, bad):
    z = gs.zeros((3, 2))
    z[1, 0] = bad
    with pytest.raises(ValueError, match="NaN or inf"):
        mlp_space.metric.metric_matrix(z)
    with pytest.raises(ValueError, match="NaN or inf"):
        mlp_space.metric.exp(gs.zeros((3, 2)), z)
    assert not mlp_space.belongs(z)[1] and mlp_space.belongs(z)[0]


def test_decoder_returning_nan():
    space = gp.DecoderManifold(lambda z: torch.sqrt(z), latent_dim=2, region=(gs.array([0.5, 0.5]), gs.array([1.0, 1.0])))
    with pytest.raises(FloatingPointError, match="NaN or inf"):
        space.metric.metric_matrix(gs.array([[-1.0, 1.0]]))


def test_rank_deficient_jacobian_raises_and_eps_regularises():
    collapse = lambda z: torch.stack([z[..., 0], 2 * z[..., 0], z[..., 0] ** 2], -1)  # noqa: E731  (ignores z_1)
    space = gp.DecoderManifold(collapse, latent_dim=2)
    z = gs.array([[0.3, 0.2]])
    with pytest.raises(gp.RankDeficientJacobianError, match="eps"):
        space.metric.exp(gs.array([[0.1, 0.1]]), z)
    with pytest.raises(gp.RankDeficientJacobianError):
        space.metric.cometric_matrix(z)
    regular = gp.DecoderManifold(collapse, latent_dim=2, metric_kwargs={"eps": 1e-3})
    gram = regular.metric.metric_matrix(z)
    torch.testing.assert_close(gram - space.metric.metric_matrix(z), 1e-3 * torch.eye(2, dtype=z.dtype)[None])
    assert torch.isfinite(regular.metric.exp(gs.array([[0.1, 0.1]]), z)).all()


def test_negative_eps_and_bad_latent_dim():
    with pytest.raises(ValueError, match="eps"):
        gp.DecoderManifold(analytic.sphere_chart, 2, metric_kwargs={"eps": -1.0})
    with pytest.raises(ValueError, match="latent_dim"):
        gp.DecoderManifold(analytic.sphere_chart, 0)
    with pytest.raises(TypeError, match="callable"):
        gp.DecoderManifold("not a decoder", 2)


def test_bad_region():
    with pytest.raises(ValueError, match="low < high"):
        gp.DecoderManifold(analytic.sphere_chart, 2, region=(gs.array([1.0, 1.0]), gs.array([0.0, 2.0])))


# ------------------------------------------------------------- decoders that are not fixed differentiable maps


def test_integer_output_is_refused():
    with pytest.raises(gp.DecoderDifferentiationError, match="torch.int64 values"):
        gp.DecoderManifold(lambda z: z.argmax(-1, keepdim=True), 3)


def test_output_cut_from_the_latent_point_is_refused():
    one_hot = lambda z: torch.nn.functional.one_hot(z.argmax(-1), 3).to(z.dtype) + 0 * z.detach()  # noqa: E731
    with pytest.raises(gp.DecoderDifferentiationError, match="graph is cut"):
        gp.DecoderManifold(one_hot, 3)


@pytest.mark.parametrize("op", ["round", "floor", "sign"])
def test_piecewise_constant_layer_is_refused(op):
    net = analytic.random_mlp((3, 8, 5), seed=0)
    quantised = lambda z: net(getattr(torch, op)(4 * z) / 4 + 0.1 * z)  # noqa: E731  (the z term keeps J full rank)
    with pytest.raises(gp.DecoderDifferentiationError, match=f"piecewise-constant operations .*{op}"):
        gp.DecoderManifold(quantised, 3)
    # The straight-through form is accepted (its metric is that of the map without the rounding).
    straight = lambda z: net(z + (getattr(torch, op)(4 * z) / 4 - z).detach())  # noqa: E731
    gp.DecoderManifold(straight, 3)


def test_batch_norm_in_training_mode_is_refused():
    module = analytic.mixed_conv_decoder(8).train()
    with pytest.raises(ValueError, match=r"batch normalisation in training mode \(4\).*decoder.eval\(\)"):
        gp.DecoderManifold(module, 8)
    gp.DecoderManifold(module.eval(), 8)


def test_dropout_in_training_mode_is_refused_and_mc_dropout_masks_are_not():
    module = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Dropout(0.3), torch.nn.Linear(16, 5))
    module = module.double().train()
    with pytest.raises(ValueError, match=r"different values .*dropout in training mode \(2\)"):
        gp.DecoderManifold(module, 3)
    gp.DecoderManifold(gp.MCDropoutDecoder(module, 2, seed=0), 3)  # fixed masks: a fixed map
    noisy = lambda z: z + 1e-3 * torch.randn_like(z)  # noqa: E731
    with pytest.raises(ValueError, match="randomness inside the decoder"):
        gp.DecoderManifold(noisy, 3)


class _InPlaceTanh(torch.nn.Module):
    """Scales tanh's output in place: the backward pass needs the overwritten output."""

    def __init__(self):
        super().__init__()
        self.net = analytic.random_mlp((8, 16, 6), seed=5)

    def forward(self, z):
        hidden = torch.tanh(z)
        hidden.mul_(2.0)
        return self.net(hidden)


def test_in_place_operation_names_the_cause_and_auto_uses_a_strategy_that_works():
    z = torch.rand(3, 8, dtype=torch.float64)
    forced = gp.TorchDecoder(_InPlaceTanh(), 8, jacobian_strategy="reverse")
    with pytest.raises(gp.DecoderDifferentiationError, match="in-place operation overwrote a tensor"):
        forced.jacobian(z)
    auto = gp.TorchDecoder(_InPlaceTanh(), 8)
    row = lambda x: auto.decoder.net(2 * torch.tanh(x))  # noqa: E731
    expected = torch.stack([torch.func.jacrev(row)(x) for x in z])
    torch.testing.assert_close(auto.jacobian(z), expected)
    assert auto.strategy_choices_[("jacobian", 8, False, "small")].startswith("forward")


def test_memory_budget_too_small_for_one_point():
    space = gp.DecoderManifold(analytic.mnist_conv_decoder(8), 8, memory_budget=1000)
    with pytest.raises(gp.MemoryBudgetError, match=r"1000 bytes is too small for one latent point: a jacobian call"):
        space.metric.metric_matrix(gs.zeros((2, 8)))
    with pytest.raises(ValueError, match="memory_budget"):
        gp.DecoderManifold(analytic.sphere_chart, 2, memory_budget=0)
    previous = gp.set_memory_budget(1000)
    try:
        with pytest.raises(gp.MemoryBudgetError, match="gp.set_memory_budget"):
            gp.DecoderManifold(analytic.mnist_conv_decoder(8), 8).decoder.hessian(gs.zeros((1, 8)))
    finally:
        gp.set_memory_budget(previous)
