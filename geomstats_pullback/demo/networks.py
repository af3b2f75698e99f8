"""The networks of the demo's VAE: tanh perceptrons and the RBF standard deviation.

See :mod:`geomstats_pullback.demo.vae` for the model they make up.
"""

import math

import numpy as np
import torch


class Reshape(torch.nn.Module):
    """Reshape the last axis ``[..., D]`` to ``[..., *shape]``."""

    def __init__(self, shape):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x):
        """Reshaped ``x``."""
        return x.reshape(*x.shape[:-1], *self.shape)


class RBFStd(torch.nn.Module):
    r"""Standard deviation ``sigma(z) = (1 / beta(z) + sigma_min^2)^{1/2}`` from RBF precisions.

    ``beta(z) = W^T phi(z) + zeta`` with ``phi_k(z) = exp(-lambda_k |z - c_k|^2)`` and
    ``W = exp(log_weight) > 0``.

    Parameters
    ----------
    centres : torch.Tensor, shape=[n_centres, latent_dim]
    bandwidths : torch.Tensor, shape=[n_centres]
        ``lambda_k > 0``.
    data_shape : tuple
        Shape of one sample.
    zeta : float
        Precision far from the centres.
    min_std : float
        Floor of the standard deviation (keeps the likelihood bounded on
        pixels that never vary).
    """

    def __init__(self, centres, bandwidths, data_shape, *, zeta, min_std):
        super().__init__()
        self.register_buffer("centres", centres)
        self.register_buffer("bandwidths", bandwidths)
        n_out = math.prod(data_shape)
        self.log_weight = torch.nn.Parameter(torch.zeros(centres.shape[0], n_out, dtype=centres.dtype))
        self.zeta = float(zeta)
        self.min_std = float(min_std)
        self.reshape = Reshape(data_shape)

    def rbf(self, z):
        """Features ``phi(z)``: ``[..., latent_dim] -> [..., n_centres]``."""
        diff = z[..., None, :] - self.centres  # [..., K, d]
        return torch.exp(-self.bandwidths * (diff * diff).sum(-1))

    def precision(self, z):
        """``beta(z)``: ``[..., latent_dim] -> [..., D]``."""
        return self.rbf(z) @ torch.exp(self.log_weight) + self.zeta  # [..., D]

    def forward(self, z):
        """``sigma(z)``: ``[..., latent_dim] -> [..., *data_shape]``."""
        # reciprocal/sqrt rather than 1 / x and ** 0.5: their forward-mode derivatives are native,
        # which matters for the second derivatives that geodesics and curvature take.
        return self.reshape(torch.sqrt(torch.reciprocal(self.precision(z)) + self.min_std**2))


def mlp(sizes, dtype, final=None):
    """A tanh multilayer perceptron ``[..., sizes[0]] -> [..., sizes[-1]]``.

    Parameters
    ----------
    sizes : sequence of int
        Widths of the layers, input first.
    dtype : torch.dtype
    final : torch.nn.Module, optional
        Appended after the last linear layer (no tanh there).

    Returns
    -------
    net : torch.nn.Sequential
    """
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(n_in, n_out, dtype=dtype))
        if i < len(sizes) - 2:
            layers.append(torch.nn.Tanh())
    if final is not None:
        layers.append(final)
    return torch.nn.Sequential(*layers)


def rbf_bandwidths(codes, labels, centres, scale):
    """RBF bandwidths ``lambda_k = 1 / (2 (scale * mean distance of cluster k to its centre)^2)``.

    Parameters
    ----------
    codes : numpy.ndarray, shape=[n, d]
    labels : numpy.ndarray of int, shape=[n]
        Cluster of each code.
    centres : numpy.ndarray, shape=[n_centres, d]
    scale : float

    Returns
    -------
    bandwidths : numpy.ndarray, shape=[n_centres]
    """
    dists = np.linalg.norm(codes - centres[labels], axis=1)
    spread = np.array([dists[labels == k].mean() if np.any(labels == k) else 0.0 for k in range(len(centres))])
    spread = np.maximum(spread, 1e-3 * max(spread.max(), 1e-12))  # singleton clusters
    return 0.5 / (scale * spread) ** 2
