"""Adapters that turn a user's decoder into a flat, differentiable map.

A decoder maps latent points ``[B, d]`` to data ``[B, *data_shape]`` (vectors,
images ``[B, C, H, W]``, ...). The adapters below flatten the output to
``[B, D]``, move points to the decoder's dtype and device, check that the
decoder returns finite values, and expose the matrix-free derivatives of
:mod:`geomstats_pullback.autodiff` on geomstats' arrays.

Precision: points stay in geomstats' float64; a float32 decoder is evaluated
in float32, so metric quantities carry float32 relative precision (~1e-6).
"""

import contextlib
import logging
import math

import autograd.numpy as anp
import geomstats.backend as gs
import numpy as np
import torch

from geomstats_pullback._validation import check_integer
from geomstats_pullback.autodiff import AutogradDiff, TorchDiff

logger = logging.getLogger(__name__)


class Decoder:
    """A flat differentiable map ``[B, d] -> [B, D]`` on geomstats arrays.

    Subclasses set ``_diff`` (a derivative engine from
    :mod:`geomstats_pullback.autodiff`) and implement ``_flat``,
    ``_to_native`` and ``_from_native``.

    Parameters
    ----------
    latent_dim : int
        Dimension ``d`` of the latent space.

    Attributes
    ----------
    data_shape : tuple
        Shape of one decoded sample.
    output_dim : int
        ``D``, the number of entries of one decoded sample.
    """

    _diff = None

    def __init__(self, latent_dim):
        self.latent_dim = check_integer(latent_dim, "latent_dim", low=1)
        probe = self._call(self._to_native(gs.zeros((1, self.latent_dim))))
        self.data_shape = tuple(probe.shape[1:])
        self.output_dim = math.prod(self.data_shape)

    def _flat(self, z):
        """Flattened decoder output ``[B, D]`` (native arrays; ``B`` may be 0)."""
        return self._call(z).reshape(z.shape[0], self.output_dim)

    def _checked(self, out, z):
        if not bool(self._all_finite(out)):
            raise FloatingPointError(
                "The decoder returned NaN or inf (or its derivatives did) at "
                f"{z.shape[0]} latent point(s) starting with {self._from_native(z[:1])}. "
                "Check the decoder and the points."
            )
        return self._from_native(out)

    def _tracking(self, *arrays):
        """Context in which derivatives are computed (autograd tracking policy)."""
        return contextlib.nullcontext()

    def __call__(self, z):
        """Decoded points ``[B, D]`` for latent points ``z [B, d]``."""
        zn = self._to_native(z)
        with self._tracking(z):
            return self._checked(self._flat(zn), zn)

    def differentiable_call(self, z):
        """Decoded points ``[B, D]`` as a plain function of ``z [B, d]``.

        No finiteness check and no gradient policy: the graph is kept, so that
        an outer automatic differentiation (geomstats' own, in
        :mod:`geomstats_pullback.reference`) can differentiate through it.
        """
        return self._from_native(self._flat(self._to_native(z)))

    def jvp(self, z, v):
        """Decoded points and ``J(z) v``, each ``[B, D]``."""
        zn = self._to_native(z)
        with self._tracking(z, v):
            value, tangent = self._diff.jvp(self._flat, zn, self._to_native(v))
            return self._checked(value, zn), self._checked(tangent, zn)

    def jacobian(self, z):
        """Jacobian ``J(z)``, shape ``[B, D, d]``."""
        zn = self._to_native(z)
        with self._tracking(z):
            return self._checked(self._diff.jacobian(self._flat, zn), zn)

    def second_derivative(self, z, u, v):
        """Second directional derivative ``f''(z)[u, v]``, shape ``[B, D]``."""
        zn = self._to_native(z)
        with self._tracking(z, u, v):
            out = self._diff.second_derivative(self._flat, zn, self._to_native(u), self._to_native(v))
            return self._checked(out, zn)

    def jacobian_and_second(self, z, u, directions):
        """``J(z)`` ``[B, D, d]`` and ``f''(z)[u, w_k]`` ``[K, B, D]`` for ``directions [K, B, d]``.

        One linearisation of the decoder serves both (a geodesic step needs
        ``J`` and ``f''[v, v]``, a transport step also ``f''[v, w]``).
        """
        zn = self._to_native(z)
        with self._tracking(z, u, directions):
            jac, second = self._diff.jacobian_and_second(
                self._flat, zn, self._to_native(u), self._to_native(directions)
            )
            return self._checked(jac, zn), self._checked(second, zn)

    def hessian(self, z):
        """All second derivatives ``f''(z)[e_i, e_j]``, shape ``[B, D, d, d]``."""
        zn = self._to_native(z)
        with self._tracking(z):
            return self._checked(self._diff.hessian(self._flat, zn), zn)

    def weighted_hessian(self, z, weights):
        """Hessian of ``z -> <weights, f(z)>`` row by row, ``[B, d, d]``, for ``weights [B, D]``."""
        zn = self._to_native(z)
        with self._tracking(z, weights):
            return self._checked(self._diff.weighted_hessian(self._flat, zn, self._to_native(weights)), zn)


class TorchDecoder(Decoder):
    """A ``torch.nn.Module`` or torch callable ``[B, d] -> [B, *data_shape]``.

    The decoder's dtype and device are read from its first parameter (or
    buffer); a parameter-free callable runs in float64 on the CPU unless
    ``dtype``/``device`` are given. Call ``module.eval()`` first: a module in
    training mode (dropout, batch norm) is not a fixed map.

    Parameters
    ----------
    decoder : torch.nn.Module or callable
        The decoder.
    latent_dim : int
        Latent dimension ``d``.
    dtype, device : optional
        Override the dtype and device the decoder is evaluated in.
    """

    _diff = TorchDiff

    def __init__(self, decoder, latent_dim, *, dtype=None, device=None):
        if not callable(decoder):
            raise TypeError(f"decoder must be callable, got {type(decoder).__name__}.")
        self.decoder = decoder
        tensors = []
        if isinstance(decoder, torch.nn.Module):
            tensors = list(decoder.parameters()) + list(decoder.buffers())
            stochastic_layers = (torch.nn.modules.dropout._DropoutNd, torch.nn.modules.batchnorm._BatchNorm)
            if any(m.training and isinstance(m, stochastic_layers) for m in decoder.modules()):
                logger.warning(
                    "The decoder is in training mode; call decoder.eval() so that "
                    "dropout or batch norm do not change the map between calls."
                )
        floats = [t for t in tensors if t.is_floating_point()]
        self.dtype = dtype or (floats[0].dtype if floats else torch.float64)
        self.device = torch.device(device or (floats[0].device if floats else "cpu"))
        super().__init__(latent_dim)

    def _call(self, z):
        return self.decoder(z)

    def _tracking(self, *arrays):
        """Track reverse-mode gradients only when an input latent array asks for them.

        The decoder's parameters are constants of the geometry: no graph is
        built for them (it would grow with every integration step).
        """
        wanted = any(torch.is_tensor(a) and a.requires_grad for a in arrays)
        return torch.set_grad_enabled(torch.is_grad_enabled() and wanted)

    def _to_native(self, x):
        if not torch.is_tensor(x):
            x = torch.as_tensor(np.asarray(x))
        # contiguous: broadcast (zero-stride) views cannot carry forward-mode tangents.
        return x.to(dtype=self.dtype, device=self.device).contiguous()

    def _from_native(self, y):
        return y.to(dtype=torch.get_default_dtype(), device="cpu")

    @staticmethod
    def _all_finite(y):
        # A NaN or inf entry makes the sum non-finite; summing is ~20x cheaper than an
        # elementwise test, which only an overflowing sum of finite entries still needs.
        return bool(torch.isfinite(y.sum())) or bool(torch.isfinite(y).all())


class AutogradDecoder(Decoder):
    """A callable written with ``autograd.numpy`` (geomstats' autograd backend).

    Parameters
    ----------
    decoder : callable
        Maps a float64 array ``[B, d]`` to ``[B, *data_shape]``.
    latent_dim : int
        Latent dimension ``d``.
    """

    _diff = AutogradDiff

    def __init__(self, decoder, latent_dim):
        if not callable(decoder):
            raise TypeError(f"decoder must be callable, got {type(decoder).__name__}.")
        self.decoder = decoder
        super().__init__(latent_dim)

    def _call(self, z):
        return self.decoder(z)

    def _to_native(self, x):
        return anp.asarray(x, dtype=anp.float64)

    def _from_native(self, y):
        return y

    @staticmethod
    def _all_finite(y):
        return bool(np.isfinite(np.sum(y))) or bool(np.all(np.isfinite(y)))


class StochasticDecoder(torch.nn.Module):
    """Mean and standard-deviation maps stacked into one decoder.

    The expected pullback metric of a Gaussian decoder is
    ``J_mu^T J_mu + J_sigma^T J_sigma`` (Arvanitidis et al., 2018): the
    pullback through the stacked map ``z -> [mu(z), sigma(z)]``. Both maps
    take ``[B, d]``; their outputs are flattened and concatenated.

    Parameters
    ----------
    mean : callable
        ``[B, d] -> [B, *data_shape]``.
    std : callable
        ``[B, d] -> [B, *data_shape]``.
    """

    def __init__(self, mean, std):
        if not (callable(mean) and callable(std)):
            raise TypeError("StochasticDecoder needs two callables: mean and std.")
        super().__init__()
        self.mean = mean
        self.std = std
        # Follow the wrapped modules' mode rather than nn.Module's default (training).
        self.training = any(getattr(m, "training", False) for m in (mean, std))

    def forward(self, z):
        """Stacked ``[mu(z), sigma(z)]``, shape ``[B, 2 D]``."""
        mu, sigma = self.mean(z), self.std(z)
        n = mu.shape[0]
        if torch.is_tensor(mu):
            return torch.cat([mu.reshape(n, -1), sigma.reshape(n, -1)], dim=-1)
        return anp.concatenate([anp.reshape(mu, (n, -1)), anp.reshape(sigma, (n, -1))], axis=-1)


def as_decoder(decoder, latent_dim, **kwargs):
    """Wrap ``decoder`` in the adapter that fits geomstats' backend.

    Parameters
    ----------
    decoder : Decoder, torch.nn.Module, callable or StochasticDecoder
        The decoder; a :class:`Decoder` is returned unchanged.
    latent_dim : int
        Latent dimension ``d``.
    **kwargs
        ``dtype``/``device`` for :class:`TorchDecoder`.

    Returns
    -------
    decoder : Decoder
    """
    if isinstance(decoder, Decoder):
        if decoder.latent_dim != latent_dim:
            raise ValueError(f"decoder has latent_dim {decoder.latent_dim}, not {latent_dim}.")
        return decoder
    backend = gs.__name__.split(".")[-1]
    if backend == "autograd":
        is_torch = isinstance(decoder, torch.nn.Module) and any(True for _ in decoder.parameters())
        if is_torch:
            raise TypeError(
                "geomstats runs on its autograd backend, which cannot differentiate a "
                "torch module: set GEOMSTATS_BACKEND=pytorch before importing geomstats."
            )
        return AutogradDecoder(decoder, latent_dim)
    return TorchDecoder(decoder, latent_dim, **kwargs)

