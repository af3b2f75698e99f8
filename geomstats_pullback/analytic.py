"""Analytic decoders whose pullback metrics are known in closed form.

They are the ground truth of the tests and benchmarks, and let geometers
compare a learned manifold with an analytic one. Each decoder is a plain
function of a batch of latent points ``[B, d]`` that works on torch tensors
and on ``autograd.numpy`` arrays alike (so under both geomstats backends).

- :func:`sphere_chart`: spherical angles ``(theta, phi) -> S^2 in R^3``;
  metric ``diag(1, sin(theta)^2)``, sectional curvature 1, equal to
  geomstats' ``Hypersphere(2)`` through its ``spherical_to_extrinsic``.
- :func:`flat_torus`: ``(a, b) -> (cos a, sin a, cos b, sin b)``; metric ``I``,
  curvature 0, geodesics straight lines.
- :func:`cylinder`: ``(a, h) -> (cos a, sin a, h)``; metric ``I``, curvature 0.
- :func:`linear_isometry`: ``z -> Q z`` with orthonormal columns; equal to
  geomstats' ``Euclidean(d)``.
- :func:`random_mlp`: a tanh MLP with fixed random weights, the
  benchmarks' standard learned-like decoder (2 -> 64 -> 64 -> 784 by default).
- :func:`conv_decoder`: a random convolutional image decoder (a linear layer,
  then transposed convolutions), the shape of a DCGAN/VAE generator; no closed
  form, for laws that every pullback metric obeys.
"""

import autograd.numpy as anp
import numpy as np
import torch


def _lib(z):
    """The array library of ``z``: ``torch`` or ``autograd.numpy``."""
    return torch if torch.is_tensor(z) else anp


def _stack(lib, columns):
    return lib.stack(columns, -1) if lib is torch else lib.stack(columns, axis=-1)


def sphere_chart(z):
    """Unit sphere through spherical angles: ``[B, 2] -> [B, 3]``.

    ``theta = z[:, 0]`` is the polar angle from the north pole, ``phi =
    z[:, 1]`` the azimuth, as in geomstats' ``Hypersphere.spherical_to_extrinsic``.
    The chart is regular for ``0 < theta < pi``.
    """
    lib = _lib(z)
    theta, phi = z[..., 0], z[..., 1]
    return _stack(lib, [lib.sin(theta) * lib.cos(phi), lib.sin(theta) * lib.sin(phi), lib.cos(theta)])


def flat_torus(z):
    """Flat torus in ``R^4``: ``[B, 2] -> [B, 4]``, metric ``I``."""
    lib = _lib(z)
    a, b = z[..., 0], z[..., 1]
    return _stack(lib, [lib.cos(a), lib.sin(a), lib.cos(b), lib.sin(b)])


def cylinder(z):
    """Unit cylinder in ``R^3``: ``[B, 2] -> [B, 3]``, metric ``I``."""
    lib = _lib(z)
    a, h = z[..., 0], z[..., 1]
    return _stack(lib, [lib.cos(a), lib.sin(a), h])


def linear_isometry(latent_dim, data_dim, *, seed=0, dtype=torch.float64):
    """A linear isometric immersion ``z -> Q z``, ``Q^T Q = I``.

    Parameters
    ----------
    latent_dim, data_dim : int
        ``d <= D``.
    seed : int
        Seed of the random orthonormal frame.
    dtype : torch.dtype

    Returns
    -------
    decoder : torch.nn.Linear
        Without bias, in eval mode, gradients off.
    """
    if latent_dim > data_dim:
        raise ValueError(f"An immersion needs latent_dim <= data_dim, got {latent_dim} > {data_dim}.")
    rng = np.random.default_rng(seed)
    frame, _ = np.linalg.qr(rng.standard_normal((data_dim, latent_dim)))
    layer = torch.nn.Linear(latent_dim, data_dim, bias=False).to(dtype)
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(frame, dtype=dtype))
    return layer.eval().requires_grad_(False)


def random_mlp(dims=(2, 64, 64, 784), *, seed=0, dtype=torch.float64, activation=torch.nn.Tanh):
    """A random MLP decoder with fixed weights (PyTorch default initialisation).

    Parameters
    ----------
    dims : sequence of int
        Layer widths, latent first.
    seed : int
        Seed of the weights.
    dtype : torch.dtype
    activation : type
        Activation module between linear layers.

    Returns
    -------
    decoder : torch.nn.Sequential
        In eval mode, gradients off.
    """
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    layers = []
    for i, (n_in, n_out) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(torch.nn.Linear(n_in, n_out))
        if i < len(dims) - 2:
            layers.append(activation())
    torch.random.set_rng_state(generator_state)
    return torch.nn.Sequential(*layers).to(dtype).eval().requires_grad_(False)


def conv_decoder(latent_dim=8, *, channels=(8, 4), image_size=16, seed=0, dtype=torch.float64, activation=torch.nn.Tanh):
    """A random convolutional decoder ``[B, d] -> [B, 1, S, S]`` with fixed weights.

    A linear layer to ``channels[0]`` maps of side ``S / 2^k``, then ``k =
    len(channels)`` transposed convolutions (kernel 4, stride 2), each doubling
    the side, the last one to a single channel. A smooth ``activation`` after
    every layer but the last keeps the metric and its derivatives smooth.

    Parameters
    ----------
    latent_dim : int
    channels : sequence of int
        Feature maps after the linear layer and after each hidden transposed
        convolution.
    image_size : int
        Side ``S`` of the output image, divisible by ``2^len(channels)``.
    seed : int
        Seed of the weights.
    dtype : torch.dtype
    activation : type
        Activation module between layers.

    Returns
    -------
    decoder : torch.nn.Sequential
        In eval mode, gradients off.
    """
    side = image_size // 2 ** len(channels)
    if side * 2 ** len(channels) != image_size or side < 1:
        raise ValueError(f"image_size must be divisible by 2^len(channels) = {2 ** len(channels)}, got {image_size}.")
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    layers = [torch.nn.Linear(latent_dim, channels[0] * side * side), activation(), torch.nn.Unflatten(-1, (channels[0], side, side))]
    widths = list(channels) + [1]
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(torch.nn.ConvTranspose2d(n_in, n_out, kernel_size=4, stride=2, padding=1))
        if i < len(widths) - 2:
            layers.append(activation())
    torch.random.set_rng_state(generator_state)
    return torch.nn.Sequential(*layers).to(dtype).eval().requires_grad_(False)
