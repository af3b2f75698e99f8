r"""A small variational autoencoder whose decoder's uncertainty grows away from the data.

The decoder is Gaussian, ``x | z ~ N(mu(z), diag(sigma(z)^2))``. Training has
two stages, as in Arvanitidis, Hansen & Hauberg, "Latent Space Oddity: on the
Curvature of Deep Generative Models" (ICLR 2018):

1. encoder and mean ``mu`` are trained on the evidence lower bound, with one
   learned noise level shared by all pixels;
2. with both frozen, the standard deviation is an RBF network on the latent
   codes (centres from k-means, bandwidths from the clusters' spread),

   .. math:: \beta(z) = W^T \phi(z) + \zeta, \qquad
             \phi_k(z) = \exp(-\lambda_k |z - c_k|^2), \qquad
             \sigma(z) = \sqrt{1 / \beta(z) + \sigma_{\min}^2},

   with ``W >= 0`` trained on the Gaussian likelihood. Far from the codes
   ``phi -> 0`` and ``sigma -> (1/zeta + sigma_min^2)^{1/2}``: the decoder
   says it does not know, and the expected metric
   ``J_mu^T J_mu + J_sigma^T J_sigma`` grows where the codes end.

The fitted maps plug into the geometry::

    vae = VAE(latent_dim=2).fit(images)
    space = gp.DecoderManifold(vae.decoder_mean, 2)                 # mean only
    space = gp.DecoderManifold(vae.stochastic_decoder, 2)           # expected metric

Both maps are smooth (tanh, sigmoid, Gaussian RBF), as the geodesic equation
and curvature need second derivatives. Training is deterministic under
``seed`` (on one machine and torch version): all randomness comes from a
forked torch generator and k-means' own ``random_state``.
"""

import math
import pickle

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.exceptions import NotFittedError
from tqdm.auto import tqdm

from geomstats_pullback._validation import check_integer
from geomstats_pullback.decoders import StochasticDecoder
from geomstats_pullback.demo.networks import RBFStd, Reshape, mlp, rbf_bandwidths
from geomstats_pullback.errors import CheckpointError

CHECKPOINT_FORMAT = 1
CHECKPOINT_FIELDS = ("format", "params", "data_shape", "n_centres", "state", "log_noise_std", "history")
MAX_PARAMETERS = 50_000_000  # weights of the three networks together: 400 MB in float64
MAX_SEED = 2**32 - 1  # scikit-learn's random_state is an unsigned 32-bit integer


class VAE:
    """Variational autoencoder with a Gaussian decoder (mean and RBF standard deviation).

    scikit-learn conventions: ``__init__`` stores the options, :meth:`fit`
    learns and returns ``self``, learned attributes end in ``_``.

    Parameters
    ----------
    latent_dim : int
        Latent dimension ``d``.
    hidden : tuple of int
        Widths of the hidden tanh layers of the encoder and of the mean decoder.
    n_epochs : int
        Epochs of stage 1 (encoder and mean).
    std_epochs : int
        Epochs of stage 2 (RBF standard deviation).
    batch_size : int
    learning_rate : float
        Adam's step size (both stages).
    n_centres : int
        Number of RBF centres (k-means clusters of the latent codes).
    rbf_scale : float
        Bandwidth multiplier: larger values widen the RBFs, so the standard
        deviation starts growing further from the codes.
    zeta : float
        Precision far from the data; the standard deviation there tends to
        ``(1 / zeta + min_std^2)^{1/2}``.
    min_std : float
        Floor of the decoder's standard deviation.
    seed : int
        Seed of the initialisation, the batches, the reparametrisation noise
        and k-means.
    dtype : torch.dtype or str
        Precision of the networks. float64 (default) keeps the geometry
        (geodesic solvers, curvature) at double precision.
    progress : bool
        Show tqdm progress bars during :meth:`fit`.

    Notes
    -----
    The three networks together may hold at most :data:`MAX_PARAMETERS`
    weights (``hidden``, ``latent_dim``, the sample size and ``n_centres``
    set their number); larger models are refused before anything is
    allocated, by :meth:`fit` and by :meth:`load`.

    Attributes
    ----------
    data_shape_ : tuple
        Shape of one training sample.
    history_ : dict
        ``{"elbo_loss": [...], "std_loss": [...]}``, the mean loss per epoch
        of each stage (negative ELBO and Gaussian negative log-likelihood, per
        sample).

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> import geomstats_pullback as gp
    >>> from geomstats_pullback.demo.vae import VAE
    >>> images = load_digits().images / 16.0
    >>> vae = VAE(n_epochs=2, std_epochs=1, progress=False).fit(images)
    >>> space = gp.DecoderManifold(vae.decoder_mean, 2)
    >>> space.metric.metric_matrix(vae.encode(images[:3])).shape
    torch.Size([3, 2, 2])
    """

    def __init__(
        self,
        latent_dim=2,
        *,
        hidden=(64, 64),
        n_epochs=300,
        std_epochs=150,
        batch_size=128,
        learning_rate=2e-3,
        n_centres=48,
        rbf_scale=1.5,
        zeta=1.0,
        min_std=0.02,
        seed=0,
        dtype=torch.float64,
        progress=True,
    ):
        self.latent_dim = latent_dim
        self.hidden = hidden
        self.n_epochs = n_epochs
        self.std_epochs = std_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.n_centres = n_centres
        self.rbf_scale = rbf_scale
        self.zeta = zeta
        self.min_std = min_std
        self.seed = seed
        self.dtype = dtype
        self.progress = progress

    # ------------------------------------------------------------ parameters

    _PARAM_NAMES = (
        "latent_dim",
        "hidden",
        "n_epochs",
        "std_epochs",
        "batch_size",
        "learning_rate",
        "n_centres",
        "rbf_scale",
        "zeta",
        "min_std",
        "seed",
        "dtype",
    )

    def get_params(self):
        """The options that determine the trained model, as plain Python values.

        Returns
        -------
        params : dict
            Everything but ``progress``; ``dtype`` as a string, ``hidden`` as a list.
        """
        params = {name: getattr(self, name) for name in self._PARAM_NAMES}
        params["dtype"] = str(self._torch_dtype()).removeprefix("torch.")
        params["hidden"] = [int(h) for h in params["hidden"]]
        return params

    def _torch_dtype(self):
        dtype = getattr(torch, self.dtype, None) if isinstance(self.dtype, str) else self.dtype
        if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise ValueError(f"dtype must be a torch floating dtype, got {self.dtype!r}.")
        return dtype

    def _check_params(self):
        for name in ("latent_dim", "n_epochs", "batch_size", "n_centres"):
            check_integer(getattr(self, name), name, low=1)
        check_integer(self.std_epochs, "std_epochs", low=0)
        check_integer(self.seed, "seed", low=0, high=MAX_SEED)
        hidden = self.hidden
        if (
            not isinstance(hidden, (tuple, list))
            or not hidden
            or any(not isinstance(h, (int, np.integer)) or isinstance(h, bool) or h < 1 for h in hidden)
        ):
            raise ValueError(f"hidden must be a non-empty sequence of positive integers, got {hidden!r}.")
        for name in ("learning_rate", "rbf_scale", "zeta"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}.")
        if not self.min_std >= 0:
            raise ValueError(f"min_std must be non-negative, got {self.min_std!r}.")
        self._torch_dtype()

    # ------------------------------------------------------------ networks

    def _n_parameters(self, n_features, n_centres):
        """Number of weights of the three networks (encoder, mean, RBF standard deviation)."""
        widths = [int(h) for h in self.hidden]
        d = int(self.latent_dim)
        encoder = [n_features, *widths, 2 * d]
        mean = [d, *widths[::-1], n_features]
        layers = sum((a + 1) * b for sizes in (encoder, mean) for a, b in zip(sizes[:-1], sizes[1:]))
        return layers + n_centres * (n_features + d + 1) + 1

    def _check_size(self, n_features, n_centres):
        """Raise ``ValueError`` before allocating networks of more than :data:`MAX_PARAMETERS` weights."""
        n_parameters = self._n_parameters(n_features, n_centres)
        if n_parameters > MAX_PARAMETERS:
            raise ValueError(
                f"hidden={list(self.hidden)!r}, latent_dim={self.latent_dim}, {n_features} features per sample "
                f"and {n_centres} RBF centres make {n_parameters:.3g} weights, more than MAX_PARAMETERS="
                f"{MAX_PARAMETERS:.3g}."
            )

    def _build(self, data_shape, centres):
        """Create the networks for samples of ``data_shape`` and ``centres [K, d]``."""
        dtype = self._torch_dtype()
        n_features = math.prod(data_shape)
        self._check_size(n_features, centres.shape[0])
        hidden = [int(h) for h in self.hidden]
        self.data_shape_ = tuple(int(s) for s in data_shape)
        self.encoder_ = mlp([n_features, *hidden, 2 * self.latent_dim], dtype)
        self._mean = mlp(
            [self.latent_dim, *hidden[::-1], n_features],
            dtype,
            final=torch.nn.Sequential(torch.nn.Sigmoid(), Reshape(self.data_shape_)),
        )
        self._log_noise_std = torch.nn.Parameter(torch.tensor(math.log(0.1), dtype=dtype))
        bandwidths = torch.ones(centres.shape[0], dtype=dtype)
        self._std = RBFStd(centres, bandwidths, self.data_shape_, zeta=self.zeta, min_std=self.min_std)

    def _modules(self):
        return {"encoder": self.encoder_, "mean": self._mean, "std": self._std}

    def _check_fitted(self):
        if not hasattr(self, "encoder_"):
            raise NotFittedError("This VAE is not fitted yet: call fit(X) or VAE.load(path) first.")

    @property
    def decoder_mean(self):
        """The mean ``mu``: a ``torch.nn.Module`` ``[..., d] -> [..., *data_shape]`` (eval mode)."""
        self._check_fitted()
        return self._mean

    @property
    def decoder_std(self):
        """The standard deviation ``sigma``: an :class:`RBFStd` ``[..., d] -> [..., *data_shape]``."""
        self._check_fitted()
        return self._std

    @property
    def stochastic_decoder(self):
        """``StochasticDecoder(decoder_mean, decoder_std)``, for the expected metric."""
        return StochasticDecoder(self.decoder_mean, self.decoder_std)

    @property
    def noise_std_(self):
        """Stage 1's learned noise level (a float)."""
        self._check_fitted()
        return float(self._log_noise_std.exp())

    # ------------------------------------------------------------ training

    def _as_data(self, X):
        dtype = self._torch_dtype()
        X = torch.as_tensor(np.asarray(X) if not torch.is_tensor(X) else X).to(dtype)
        if X.ndim < 2 or X.shape[0] < 2:
            raise ValueError(f"X must be an array of at least 2 samples [n, *data_shape], got shape {tuple(X.shape)}.")
        if not bool(torch.isfinite(X).all()):
            raise ValueError("X contains NaN or inf.")
        if hasattr(self, "data_shape_") and tuple(X.shape[1:]) != self.data_shape_:
            raise ValueError(f"Samples must have shape {self.data_shape_}, got {tuple(X.shape[1:])}.")
        return X

    def _posterior(self, flat):
        stats = self.encoder_(flat)
        return stats[:, : self.latent_dim], stats[:, self.latent_dim :]  # mean, log-variance

    def _batches(self, n):
        order = torch.randperm(n)
        return [order[i : i + self.batch_size] for i in range(0, n, self.batch_size)]

    def _fit_elbo(self, flat, *, n_epochs=None, penalty=None):
        """Stage 1: encoder, mean and the shared noise level on the negative ELBO (plus ``penalty``)."""
        params = [*self.encoder_.parameters(), *self._mean.parameters(), self._log_noise_std]
        optimizer = torch.optim.Adam(params, lr=self.learning_rate)
        n, n_features = flat.shape
        losses = []
        n_epochs = self.n_epochs if n_epochs is None else n_epochs
        bar = tqdm(range(n_epochs), desc="VAE (mean)", disable=not self.progress, leave=False)
        for _ in bar:
            total = 0.0
            for index in self._batches(n):
                x = flat[index]
                mean, log_var = self._posterior(x)
                z = mean + torch.exp(0.5 * log_var) * torch.randn_like(mean)
                recon = self._mean(z).reshape(len(index), -1)
                log_std = self._log_noise_std
                nll = 0.5 * ((x - recon) ** 2).sum(-1) * torch.exp(-2 * log_std) + n_features * (
                    log_std + 0.5 * math.log(2 * math.pi)
                )
                kl = 0.5 * (mean**2 + log_var.exp() - 1 - log_var).sum(-1)
                loss = (nll + kl).mean()
                if penalty is not None:
                    loss = loss + penalty(self._mean, mean)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += loss.item() * len(index)
            losses.append(total / n)
            bar.set_postfix(loss=f"{losses[-1]:.2f}")
        return losses

    def _fit_std(self, flat):
        """Stage 2: RBF centres by k-means on the codes, then ``W`` on the Gaussian likelihood.

        The likelihood is evaluated at the posterior means (the codes), so that
        the standard deviation is calibrated where k-means put the centres.
        """
        with torch.no_grad():
            codes = self._posterior(flat)[0]  # [n, d], the posterior means
            recons = self._mean(codes).reshape(flat.shape)
        n_centres = min(self.n_centres, flat.shape[0])
        kmeans = KMeans(n_clusters=n_centres, n_init=4, random_state=self.seed).fit(codes.cpu().numpy())
        centres = kmeans.cluster_centers_
        bandwidths = rbf_bandwidths(codes.cpu().numpy(), kmeans.labels_, centres, self.rbf_scale)
        dtype = self._torch_dtype()
        self._std = RBFStd(
            torch.as_tensor(centres, dtype=dtype),
            torch.as_tensor(bandwidths, dtype=dtype),
            self.data_shape_,
            zeta=self.zeta,
            min_std=self.min_std,
        )
        # Start from stage 1's answer: beta = 1 / noise_std^2 on average over the codes.
        with torch.no_grad():
            target = max(float(torch.exp(-2 * self._log_noise_std)) - self.zeta, 1e-6)
            mean_rbf_mass = float(self._std.rbf(codes).sum(-1).mean())
            self._std.log_weight.fill_(math.log(target / mean_rbf_mass))
        optimizer = torch.optim.Adam(self._std.parameters(), lr=10 * self.learning_rate)
        n = flat.shape[0]
        losses = []
        bar = tqdm(range(self.std_epochs), desc="VAE (std)", disable=not self.progress, leave=False)
        for _ in bar:
            total = 0.0
            for index in self._batches(n):
                x = flat[index]
                z, recon = codes[index], recons[index]
                std = self._std(z).reshape(len(index), -1)
                nll = (0.5 * ((x - recon) / std) ** 2 + torch.log(std)).sum(-1) + 0.5 * x.shape[1] * math.log(
                    2 * math.pi
                )
                loss = nll.mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += loss.item() * len(index)
            losses.append(total / n)
            bar.set_postfix(loss=f"{losses[-1]:.2f}")
        return losses

    def fit(self, X, y=None):
        """Train both stages on samples ``X``.

        Parameters
        ----------
        X : array-like, shape=[n_samples, ...]
            Training data, samples of any shape ``data_shape``, e.g. images
            scaled to ``[0, 1]`` (the mean decoder ends with a sigmoid).
        y : ignored

        Returns
        -------
        self : VAE
        """
        self._check_params()
        for name in ("data_shape_", "encoder_"):
            self.__dict__.pop(name, None)
        X = self._as_data(X)
        flat = X.reshape(X.shape[0], -1)
        self._check_size(flat.shape[1], min(self.n_centres, flat.shape[0]))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self._build(tuple(X.shape[1:]), torch.zeros(1, self.latent_dim, dtype=flat.dtype))
            for module in self._modules().values():
                module.train()
            elbo = self._fit_elbo(flat)
            std = self._fit_std(flat)
        self.history_ = {"elbo_loss": elbo, "std_loss": std}
        self._freeze()
        return self

    def fine_tune(self, X, *, n_epochs, penalty=None, seed=None):
        """Continue stage 1 (encoder and mean) from the current weights, optionally with a penalty.

        The loss is the negative ELBO plus ``penalty(decoder_mean, codes)``,
        ``codes [batch, d]`` the batch's posterior means (e.g. a function of
        :mod:`geomstats_pullback.regularizers`); its gradient trains the
        encoder and the mean. Stage 2 (the RBF standard deviation) is kept as
        it is. The model is modified in place (``copy.deepcopy`` it first to
        keep the original); :attr:`history_` is left as :meth:`fit` wrote it.

        Parameters
        ----------
        X : array-like, shape=[n_samples, ...]
        n_epochs : int
        penalty : callable, optional
            ``(decoder_mean, codes) -> scalar tensor``.
        seed : int, optional
            Seed of the batches and the noise (default: the model's ``seed``).

        Returns
        -------
        losses : list of float
            Mean loss per epoch (negative ELBO plus penalty, per sample).
        """
        self._check_fitted()
        check_integer(n_epochs, "n_epochs", low=1)
        flat = self._as_data(X)
        flat = flat.reshape(flat.shape[0], -1)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed if seed is None else seed)
            for module in (self.encoder_, self._mean):
                module.train().requires_grad_(True)
            self._log_noise_std.requires_grad_(True)
            try:
                losses = self._fit_elbo(flat, n_epochs=n_epochs, penalty=penalty)
            finally:
                self._freeze()
        return losses

    def _freeze(self):
        for module in self._modules().values():
            module.eval().requires_grad_(False)
        self._log_noise_std.requires_grad_(False)

    # ------------------------------------------------------------ inference

    def encode(self, X):
        """Posterior means of the latent codes.

        Parameters
        ----------
        X : array-like, shape=[n_samples, ...]
            Samples of shape ``data_shape_``.

        Returns
        -------
        codes : torch.Tensor, shape=[n_samples, latent_dim]
            In geomstats' default dtype, on the CPU.
        """
        self._check_fitted()
        X = self._as_data(X)
        with torch.no_grad():
            codes = self._posterior(X.reshape(X.shape[0], -1))[0]
        return codes.to(torch.get_default_dtype())

    def decode(self, z):
        """Decoded means ``mu(z)``.

        Parameters
        ----------
        z : array-like, shape=[..., latent_dim]

        Returns
        -------
        x : torch.Tensor
            Decoded samples, shape ``[..., *data_shape]``.
        """
        self._check_fitted()
        z = torch.as_tensor(np.asarray(z) if not torch.is_tensor(z) else z).to(self._torch_dtype())
        if z.ndim == 0 or z.shape[-1] != self.latent_dim:
            raise ValueError(f"z must have shape [..., {self.latent_dim}], got {tuple(z.shape)}.")
        with torch.no_grad():
            return self._mean(z)

    # ------------------------------------------------------------ checkpoints

    def save(self, path):
        """Write a checkpoint (options, weights, history) to ``path``.

        Parameters
        ----------
        path : str or os.PathLike
        """
        self._check_fitted()
        torch.save(
            {
                "format": CHECKPOINT_FORMAT,
                "params": self.get_params(),
                "data_shape": list(self.data_shape_),
                "n_centres": int(self._std.centres.shape[0]),
                "state": {name: module.state_dict() for name, module in self._modules().items()},
                "log_noise_std": self._log_noise_std.detach().clone(),
                "history": self.history_,
            },
            path,
        )

    @classmethod
    def load(cls, path, *, progress=False):
        """Read a checkpoint written by :meth:`save`.

        Parameters
        ----------
        path : str or os.PathLike
        progress : bool
            ``progress`` option of the returned model.

        Returns
        -------
        vae : VAE
            Fitted, in eval mode.

        Raises
        ------
        CheckpointError
            If the file is not a checkpoint of this format (a ``ValueError``):
            a field missing, unknown or of the wrong kind (the message names
            it), or networks of more than :data:`MAX_PARAMETERS` weights
            (refused before they are allocated).
        """
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
            raise CheckpointError(f"{path} is not a readable VAE checkpoint ({type(err).__name__}).") from err
        if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"{path} is not a VAE checkpoint of format {CHECKPOINT_FORMAT}.")

        def fail(field, problem):
            return CheckpointError(f"{path}: field {field!r} {problem}.")

        _check_keys(checkpoint, CHECKPOINT_FIELDS, "", fail)
        params = checkpoint["params"]
        if not isinstance(params, dict):
            raise fail("params", f"must be a dict, got {type(params).__name__}")
        _check_keys(params, cls._PARAM_NAMES, "params.", fail)
        params = dict(params)
        if isinstance(params["hidden"], (list, tuple)):
            params["hidden"] = tuple(params["hidden"])
        vae = cls(**params, progress=progress)
        try:
            vae._check_params()
        except (ValueError, TypeError) as err:
            name = str(err).split(" ", 1)[0]
            raise fail(f"params.{name}" if name in params else "params", f"is invalid: {err}") from None
        dtype = vae._torch_dtype()
        data_shape, n_centres = checkpoint["data_shape"], checkpoint["n_centres"]
        if not isinstance(data_shape, (list, tuple)) or not data_shape:
            raise fail("data_shape", f"must be a non-empty list of positive integers, got {data_shape!r}")
        try:
            data_shape = tuple(check_integer(size, "data_shape", low=1) for size in data_shape)
            n_centres = check_integer(n_centres, "n_centres", low=1)
        except ValueError as err:
            raise fail(str(err).split(" ", 1)[0], f"is invalid: {err}") from None
        try:
            vae._check_size(math.prod(data_shape), n_centres)
        except ValueError as err:
            raise CheckpointError(f"{path}: networks too large: {err}") from None
        vae._build(data_shape, torch.zeros(n_centres, vae.latent_dim, dtype=dtype))
        state = checkpoint["state"]
        if not isinstance(state, dict):
            raise fail("state", f"must be a dict, got {type(state).__name__}")
        _check_keys(state, tuple(vae._modules()), "state.", fail)
        for name, module in vae._modules().items():
            if not isinstance(state[name], dict):
                raise fail(f"state.{name}", f"must be a state dict, got {type(state[name]).__name__}")
            try:
                module.load_state_dict(state[name])
            except RuntimeError as err:
                raise fail(f"state.{name}", f"does not fit the networks: {' '.join(str(err).split())}") from None
        log_noise_std = checkpoint["log_noise_std"]
        if not (torch.is_tensor(log_noise_std) and log_noise_std.numel() == 1 and bool(log_noise_std.isfinite())):
            raise fail("log_noise_std", "must be a finite scalar tensor")
        with torch.no_grad():
            vae._log_noise_std.copy_(log_noise_std.reshape(()))
        history = checkpoint["history"]
        if not isinstance(history, dict):
            raise fail("history", f"must be a dict, got {type(history).__name__}")
        _check_keys(history, ("elbo_loss", "std_loss"), "history.", fail)
        vae.history_ = {key: list(values) for key, values in history.items()}
        vae._freeze()
        return vae


def _check_keys(mapping, expected, prefix, fail):
    """Raise ``fail(field, problem)`` for the first missing or unknown key of ``mapping``."""
    for key in expected:
        if key not in mapping:
            raise fail(prefix + key, "is missing")
    for key in mapping:
        if key not in expected:
            raise fail(prefix + str(key), "is unknown to this version")
