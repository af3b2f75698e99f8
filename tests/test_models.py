"""The VAE of geomstats_pullback.demo.vae: determinism, checkpoints, decoder uncertainty."""

import re

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.exceptions import NotFittedError

import geomstats_pullback as gp
from geomstats_pullback.demo import vae as vae_module
from geomstats_pullback.demo.vae import VAE, RBFStd
from geomstats_pullback.errors import CheckpointError

SMALL = dict(hidden=(16, 16), n_epochs=8, std_epochs=8, n_centres=12, batch_size=64, progress=False)


@pytest.fixture(scope="module")
def images():
    return load_digits().images[:300] / 16.0


@pytest.fixture(scope="module")
def vae(images):
    return VAE(seed=3, **SMALL).fit(images)


def _states(model):
    return {f"{name}.{key}": value for name, module in model._modules().items() for key, value in module.state_dict().items()}


@pytest.mark.slow
def test_fit_is_deterministic_under_seed(images, vae):
    again = VAE(seed=3, **SMALL).fit(images)
    other = VAE(seed=4, **SMALL).fit(images)
    states, states_again, states_other = _states(vae), _states(again), _states(other)
    assert states.keys() == states_again.keys()
    for key in states:
        assert torch.equal(states[key], states_again[key]), key
    assert vae.history_ == again.history_
    assert not torch.equal(states["mean.0.weight"], states_other["mean.0.weight"])


@pytest.mark.slow
def test_fit_leaves_global_rng_alone(images):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    VAE(seed=0, **{**SMALL, "n_epochs": 1, "std_epochs": 1}).fit(images)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.slow
def test_training_decreases_both_losses(vae):
    for key in ("elbo_loss", "std_loss"):
        losses = vae.history_[key]
        assert len(losses) == 8
        assert losses[-1] < losses[0], key


@pytest.mark.slow
def test_save_load_round_trip(tmp_path, images, vae):
    path = tmp_path / "vae.pt"
    vae.save(path)
    loaded = VAE.load(path)
    assert loaded.get_params() == vae.get_params()
    assert loaded.history_ == vae.history_
    assert loaded.data_shape_ == (8, 8)
    assert loaded.noise_std_ == vae.noise_std_
    codes = vae.encode(images[:20])
    assert torch.equal(loaded.encode(images[:20]), codes)
    assert torch.equal(loaded.decode(codes), vae.decode(codes))
    assert torch.equal(loaded.decoder_std(codes), vae.decoder_std(codes))
    metric, metric_loaded = (gp.DecoderManifold(m.stochastic_decoder, 2).metric for m in (vae, loaded))
    assert torch.equal(metric.metric_matrix(codes), metric_loaded.metric_matrix(codes))
    assert not loaded.decoder_mean.training and not any(p.requires_grad for p in loaded.decoder_mean.parameters())


def test_load_rejects_other_files(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="checkpoint"):
        VAE.load(junk)
    torch.save({"format": 999}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="format"):
        VAE.load(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError):
        VAE.load(tmp_path / "missing.pt")


@pytest.fixture(scope="module")
def checkpoint(images, tmp_path_factory):
    """The fields of a checkpoint of a tiny VAE (one epoch), to be damaged one at a time."""
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    tiny = dict(hidden=(4,), n_epochs=1, std_epochs=1, n_centres=3, batch_size=64, progress=False)
    VAE(**tiny).fit(images[:20]).save(path)
    return torch.load(path, weights_only=True)


def _damaged(checkpoint, tmp_path, change):
    fields = {key: dict(value) if isinstance(value, dict) else value for key, value in checkpoint.items()}
    change(fields)
    torch.save(fields, tmp_path / "damaged.pt")
    return tmp_path / "damaged.pt"


def _set(path, value):
    def change(fields):
        *parents, last = path.split(".")
        target = fields
        for key in parents:
            target = target[key]
        if value is DELETE:
            del target[last]
        else:
            target[last] = value

    return change


DELETE = object()


@pytest.mark.parametrize(
    "path, value, message",
    [
        ("history", DELETE, "field 'history' is missing"),
        ("extra", 1, "field 'extra' is unknown"),
        ("params.zeta", DELETE, "field 'params.zeta' is missing"),
        ("params.dropout", 0.5, "field 'params.dropout' is unknown"),
        ("params.hidden", [1e5, 1e5], "field 'params.hidden' is invalid"),
        ("params.latent_dim", True, "field 'params.latent_dim' is invalid"),
        ("params.seed", -1, "field 'params.seed' is invalid"),
        ("params.dtype", "float99", "field 'params.dtype' is invalid"),
        ("params.learning_rate", "fast", "field 'params' is invalid"),
        ("params", [1, 2], "field 'params' must be a dict"),
        ("data_shape", [8, 0], "field 'data_shape' is invalid"),
        ("n_centres", 2.5, "field 'n_centres' is invalid"),
        ("state.std", DELETE, "field 'state.std' is missing"),
        ("state.mean", {"0.weight": torch.zeros(3, 3)}, "field 'state.mean' does not fit the networks"),
        ("log_noise_std", "x", "field 'log_noise_std' must be a finite scalar tensor"),
        ("history.std_loss", DELETE, "field 'history.std_loss' is missing"),
    ],
)
def test_load_names_the_bad_field(checkpoint, tmp_path, path, value, message):
    damaged = _damaged(checkpoint, tmp_path, _set(path, value))
    with pytest.raises(CheckpointError, match=re.escape(message)):
        VAE.load(damaged)


def test_load_refuses_huge_networks_before_allocating(checkpoint, tmp_path, monkeypatch):
    """hidden=[100000, 100000] would be 80 GB of weights: refused before any network is built."""

    def no_allocation(*args, **kwargs):
        raise AssertionError("a network was allocated")

    monkeypatch.setattr(vae_module, "mlp", no_allocation)
    damaged = _damaged(checkpoint, tmp_path, _set("params.hidden", [100_000, 100_000]))
    with pytest.raises(CheckpointError, match="networks too large.*MAX_PARAMETERS"):
        VAE.load(damaged)
    damaged = _damaged(checkpoint, tmp_path, _set("n_centres", 10**9))
    with pytest.raises(CheckpointError, match="networks too large"):
        VAE.load(damaged)
    with pytest.raises(ValueError, match="MAX_PARAMETERS"):
        VAE(hidden=(100_000, 100_000), progress=False).fit(np.zeros((4, 8, 8)))


def test_undamaged_tiny_checkpoint_loads(checkpoint, tmp_path):
    """The damage tests start from a checkpoint that loads."""
    loaded = VAE.load(_damaged(checkpoint, tmp_path, lambda fields: None))
    assert loaded.hidden == (4,) and loaded.data_shape_ == (8, 8)
    assert vae_module.VAE(**vae_module.VAE().get_params())._n_parameters(64, 48) < vae_module.MAX_PARAMETERS


@pytest.mark.slow
def test_std_grows_away_from_data(images):
    model = VAE(seed=0, **{**SMALL, "n_epochs": 30, "std_epochs": 30}).fit(images)
    codes = model.encode(images)
    radius = float(codes.norm(dim=1).max())
    angles = torch.linspace(0, 2 * np.pi, 64)
    far = 3 * radius * torch.stack([angles.cos(), angles.sin()], dim=-1)
    std_data = model.decoder_std(codes).mean(dim=(1, 2))  # [n]
    std_far = model.decoder_std(far).mean(dim=(1, 2))
    limit = np.sqrt(1 / model.zeta + model.min_std**2)
    np.testing.assert_allclose(std_far.numpy(), limit, rtol=1e-6)
    assert float(std_data.max()) < 0.6 * limit
    # The decoder is confident where the data are: below stage 1's shared noise level on most codes.
    assert float(std_data.median()) < 2 * model.noise_std_


def test_rbf_std_matches_formula():
    gen = torch.Generator().manual_seed(0)
    centres = torch.randn(5, 2, generator=gen, dtype=torch.float64)
    bandwidths = torch.rand(5, generator=gen, dtype=torch.float64) + 0.5
    net = RBFStd(centres, bandwidths, (3, 2), zeta=0.7, min_std=0.05)
    with torch.no_grad():
        net.log_weight.copy_(torch.randn(5, 6, generator=gen, dtype=torch.float64))
    z = torch.randn(4, 2, generator=gen, dtype=torch.float64)
    c, lam, w = centres.numpy(), bandwidths.numpy(), np.exp(net.log_weight.detach().numpy())
    phi = np.exp(-lam * ((z.numpy()[:, None, :] - c) ** 2).sum(-1))
    expected = np.sqrt(1 / (phi @ w + 0.7) + 0.05**2).reshape(4, 3, 2)
    np.testing.assert_allclose(net(z).detach().numpy(), expected, rtol=1e-12)


@pytest.mark.slow
def test_expected_metric_is_mean_plus_std_pullback(vae, images):
    """The stochastic decoder's metric equals J_mu^T J_mu + J_sigma^T J_sigma (independent autograd)."""
    z = vae.encode(images[:4])
    metric = gp.DecoderManifold(vae.stochastic_decoder, 2).metric
    jac_mu = torch.autograd.functional.jacobian(lambda x: vae.decoder_mean(x).reshape(-1), z[0])
    jac_sigma = torch.autograd.functional.jacobian(lambda x: vae.decoder_std(x).reshape(-1), z[0])
    expected = jac_mu.T @ jac_mu + jac_sigma.T @ jac_sigma
    torch.testing.assert_close(metric.metric_matrix(z[0]), expected, rtol=1e-10, atol=1e-12)
    mean_only = gp.DecoderManifold(vae.decoder_mean, 2).metric.metric_matrix(z[0])
    torch.testing.assert_close(mean_only, jac_mu.T @ jac_mu, rtol=1e-10, atol=1e-12)


@pytest.mark.slow
def test_latent_dim_is_configurable(images):
    model = VAE(latent_dim=3, **{**SMALL, "n_epochs": 1, "std_epochs": 1}).fit(images)
    codes = model.encode(images[:5])
    assert codes.shape == (5, 3)
    assert model.decode(codes).shape == (5, 8, 8)
    assert gp.DecoderManifold(model.decoder_mean, 3).metric.metric_matrix(codes).shape == (5, 3, 3)


def test_errors(images):
    with pytest.raises(NotFittedError):
        VAE().decoder_mean
    with pytest.raises(NotFittedError):
        VAE().encode(images)
    bad = images.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        VAE(**SMALL).fit(bad)
    with pytest.raises(ValueError, match="latent_dim"):
        VAE(latent_dim=0).fit(images)
    with pytest.raises(ValueError, match="dtype"):
        VAE(dtype="int32", **SMALL).fit(images)
    with pytest.raises(ValueError, match="at least 2 samples"):
        VAE(**SMALL).fit(images[:1])


@pytest.mark.slow
def test_encode_rejects_wrong_sample_shape(vae, images):
    with pytest.raises(ValueError, match=r"\(8, 8\)"):
        vae.encode(images.reshape(len(images), -1))
    with pytest.raises(ValueError, match=r"\[\.\.\., 2\]"):
        vae.decode(torch.zeros(3, 5))
