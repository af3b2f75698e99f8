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
