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
- :func:`mnist_conv_decoder`, :func:`celeba_conv_decoder`: the decoders of
  GEORCE's MNIST (8-D latent, to ``1 x 28 x 28``) and CelebA (32-D latent,
  five transposed convolutions to ``3 x 64 x 64``) VAEs, seeded.
- :func:`mixed_conv_decoder`: convolutions, batch normalisation and dropout
  (eval mode), GELU/SiLU/softplus: the layer mix of real decoders.

An MLP with a 64-D latent is ``random_mlp((64, 128, 128, 784))`` (the ``mlp64`` test case).
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


def _he_uniform_(module, *, seed):
    """Seeded He-uniform weights (variance scaling 2, fan-in, uniform: haiku's GEORCE initialiser)."""
    gen = torch.Generator().manual_seed(seed)
    for layer in module.modules():
        if isinstance(layer, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            weight = layer.weight
            if isinstance(layer, torch.nn.Linear):
                fan_in = weight.shape[1]
            elif isinstance(layer, torch.nn.ConvTranspose2d):
                fan_in = weight.shape[0] * weight.shape[2] * weight.shape[3]  # [in, out, kh, kw]
            else:
                fan_in = weight.shape[1] * weight.shape[2] * weight.shape[3]  # [out, in, kh, kw]
            bound = (6.0 / fan_in) ** 0.5
            with torch.no_grad():
                weight.copy_((2 * torch.rand(weight.shape, generator=gen, dtype=torch.float64) - 1) * bound)
                if layer.bias is not None:
                    layer.bias.copy_((2 * torch.rand(layer.bias.shape, generator=gen, dtype=torch.float64) - 1) * bound)
    return module


class SameConvTranspose2d(torch.nn.Module):
    """Transposed convolution with JAX's ``"SAME"`` padding: side ``S -> stride * S``, no bias.

    The full transposed convolution (side ``(S - 1) stride + k``) cropped
    from offset ``k - 1 - a``, with ``a`` the leading padding of
    ``jax.lax.conv_transpose(..., padding="SAME")`` (``a = k - 1`` if
    ``stride > k - 1`` else ``ceil((k + stride - 2) / 2)``), as in haiku's
    ``Conv2DTranspose`` that GEORCE's models use.

    Parameters
    ----------
    in_channels, out_channels, kernel_size, stride : int
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride):
        super().__init__()
        self.conv = torch.nn.ConvTranspose2d(in_channels, out_channels, kernel_size, stride=stride, bias=False)
        lead = kernel_size - 1 if stride > kernel_size - 1 else -(-(kernel_size + stride - 2) // 2)
        self.offset = kernel_size - 1 - lead
        self.stride = stride

    def forward(self, x):
        """``[B, C_in, H, W] -> [B, C_out, stride H, stride W]``."""
        out = self.conv(x)
        height, width = x.shape[-2] * self.stride, x.shape[-1] * self.stride
        return out[..., self.offset : self.offset + height, self.offset : self.offset + width]


class ChannelsLast(torch.nn.Module):
    """``[B, C, H, W] -> [B, H * W * C]``: haiku's (NHWC) flattening order."""

    def forward(self, x):
        return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)


def mnist_conv_decoder(latent_dim=8, *, seed=0, dtype=torch.float64):
    """GEORCE's MNIST VAE decoder rebuilt in torch: ``[B, d] -> [B, 1, 28, 28]``, seeded weights.

    The architecture of ``vae/models/mnist.py`` in FrederikMR/georce (Rygaard
    & Hauberg, 2025): ``Linear(d, 50)``, GELU, the 50 features as a ``1 x 1``
    map, three ``4 x 4`` transposed convolutions without bias (64 channels,
    stride 2, to ``2 x 2``; 32 and 16 channels, stride 1), GELU after each,
    then ``Linear(2 * 2 * 16, 784)`` on the channels-last flattening, reshaped
    to one ``28 x 28`` channel. GELU is the tanh approximation
    (``jax.nn.gelu``'s default): a smooth decoder. The weights are seeded
    He-uniform draws, not trained: the geometry is that of a random decoder of
    this architecture.

    Parameters
    ----------
    latent_dim : int
    seed : int
        Seed of the weights.
    dtype : torch.dtype

    Returns
    -------
    decoder : torch.nn.Sequential
        In eval mode, gradients off.
    """
    gelu = lambda: torch.nn.GELU(approximate="tanh")  # noqa: E731
    net = torch.nn.Sequential(
        torch.nn.Linear(latent_dim, 50), gelu(), torch.nn.Unflatten(-1, (50, 1, 1)),
        SameConvTranspose2d(50, 64, 4, 2), gelu(),
        SameConvTranspose2d(64, 32, 4, 1), gelu(),
        SameConvTranspose2d(32, 16, 4, 1), gelu(),
        ChannelsLast(), torch.nn.Linear(2 * 2 * 16, 28 * 28), torch.nn.Unflatten(-1, (1, 28, 28)),
    ).to(torch.float64)
    return _he_uniform_(net, seed=seed).to(dtype).eval().requires_grad_(False)


def celeba_conv_decoder(latent_dim=32, *, seed=0, dtype=torch.float64):
    """GEORCE's CelebA VAE decoder rebuilt in torch: ``[B, d] -> [B, 3, 64, 64]``, seeded weights.

    The architecture of ``vae/models/eval/celeba.py`` in FrederikMR/georce: the
    latent code as a ``1 x 1`` map with ``d`` channels, five ``4 x 4``
    transposed convolutions without bias (64, 64, 32, 32 channels at stride 2,
    to ``16 x 16``; then 3 channels at stride 4, to ``64 x 64``), GELU (tanh
    approximation) after all but the last. The training-time model of the
    same repository puts batch normalisation after each hidden layer; in eval
    mode it is an affine map per channel, left out here. Seeded He-uniform
    weights, not trained.

    Parameters
    ----------
    latent_dim : int
    seed : int
    dtype : torch.dtype

    Returns
    -------
    decoder : torch.nn.Sequential
        In eval mode, gradients off.
    """
    gelu = lambda: torch.nn.GELU(approximate="tanh")  # noqa: E731
    widths = (latent_dim, 64, 64, 32, 32)
    layers = [torch.nn.Unflatten(-1, (latent_dim, 1, 1))]
    for n_in, n_out in zip(widths[:-1], widths[1:]):
        layers += [SameConvTranspose2d(n_in, n_out, 4, 2), gelu()]
    layers.append(SameConvTranspose2d(widths[-1], 3, 4, 4))
    net = torch.nn.Sequential(*layers).to(torch.float64)
    return _he_uniform_(net, seed=seed).to(dtype).eval().requires_grad_(False)


def mixed_conv_decoder(latent_dim=8, *, seed=0, dtype=torch.float64):
    """A decoder mixing layer types: ``[B, d] -> [B, 1, 16, 16]``, seeded weights, eval mode.

    ``Linear`` and SiLU, a transposed convolution, batch normalisation (with
    seeded running statistics, so that in eval mode it is a non-trivial
    affine map), GELU, dropout (the identity in eval mode), a ``3 x 3``
    convolution and SiLU, a transposed convolution and a softplus output:
    every layer smooth in eval mode. Call ``.train()`` on it and dropout and
    batch normalisation make it a random map (refused by
    :class:`~geomstats_pullback.decoders.TorchDecoder`).

    Parameters
    ----------
    latent_dim : int
    seed : int
    dtype : torch.dtype

    Returns
    -------
    decoder : torch.nn.Sequential
        In eval mode, gradients off.
    """
    net = torch.nn.Sequential(
        torch.nn.Linear(latent_dim, 8 * 4 * 4), torch.nn.SiLU(), torch.nn.Unflatten(-1, (8, 4, 4)),
        torch.nn.ConvTranspose2d(8, 8, 4, stride=2, padding=1), torch.nn.BatchNorm2d(8), torch.nn.GELU(),
        torch.nn.Dropout(0.2), torch.nn.Conv2d(8, 4, 3, padding=1), torch.nn.SiLU(),
        torch.nn.ConvTranspose2d(4, 1, 4, stride=2, padding=1), torch.nn.Softplus(),
    ).to(torch.float64)
    _he_uniform_(net, seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    norm = net[4]
    with torch.no_grad():
        norm.running_mean.copy_(0.3 * torch.randn(8, generator=gen, dtype=torch.float64))
        norm.running_var.copy_(0.5 + torch.rand(8, generator=gen, dtype=torch.float64))
        norm.weight.copy_(0.5 + torch.rand(8, generator=gen, dtype=torch.float64))
        norm.bias.copy_(0.2 * torch.randn(8, generator=gen, dtype=torch.float64))
    return net.to(dtype).eval().requires_grad_(False)
