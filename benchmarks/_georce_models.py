"""The decoders of the GEORCE comparison, rebuilt in torch with seeded weights.

Shared by ``bench_georce.py`` and ``bench_latent_dim.py``. These are local
stand-ins: ``geomstats_pullback.analytic`` may later provide the same
architectures (an MNIST-like 8-D and a CelebA-like 32-D convolutional
decoder), and these definitions should then be replaced by it.

- :func:`tanh_mlp`: ``analytic.random_mlp()`` (2 -> 64 -> 64 -> 784, tanh),
  optionally with its first layer's weights scaled (curvier geodesics).
- :func:`mnist_like`: GEORCE's MNIST VAE decoder (Rygaard & Hauberg 2025,
  ``vae/models/mnist.py``): Linear(d -> 50), GELU, three transposed
  convolutions (64, 32, 16 channels; kernel 4 stride 2, then kernel 3 stride 1
  twice, GELU after each), Linear(16*2*2 -> 28*28). GEORCE's stride-1 layers
  use kernel 4 with "SAME" padding, which torch cannot express with a
  symmetric padding; kernel 3 keeps the shapes.
- :func:`celeba_like`: GEORCE's CelebA VAE decoder (``vae/models/celeba.py``):
  the latent code as a ``d x 1 x 1`` map, four transposed convolutions
  (64, 64, 32, 32 channels, kernel 4 stride 2, no bias), each followed by a
  BatchNorm (eval mode, seeded running statistics) and GELU, then a kernel-4
  stride-4 transposed convolution to ``3 x 64 x 64``.
- :func:`mlp_family`: ``d -> 64 -> 64 -> 784`` tanh MLPs for the latent
  dimension sweep.

All are seeded, in eval mode, gradients off, float64 unless ``dtype`` says.
:func:`layer_specs` lists their layers as plain arrays so that another
framework can rebuild the same map (``bench_georce.py`` writes them to
``.npz`` for its JAX forward pass).
"""

import numpy as np
import torch

from geomstats_pullback import analytic


def _seeded(seed, build):
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        return build()
    finally:
        torch.random.set_rng_state(state)


def _finish(module, dtype):
    return module.to(dtype).eval().requires_grad_(False)


def tanh_mlp(first_layer_scale=1.0, *, dtype=torch.float64):
    """``analytic.random_mlp()`` with its first layer's weights times ``first_layer_scale``."""
    model = analytic.random_mlp(dtype=dtype)
    with torch.no_grad():
        model[0].weight.mul_(first_layer_scale)
    return model


def mlp_family(latent_dim, *, seed=0, dtype=torch.float64):
    """A ``latent_dim -> 64 -> 64 -> 784`` tanh MLP with seeded default initialisation."""
    return analytic.random_mlp((latent_dim, 64, 64, 784), seed=seed, dtype=dtype)


def mnist_like(latent_dim=8, *, seed=0, dtype=torch.float64):
    """MNIST-like decoder ``[B, d] -> [B, 1, 28, 28]`` (see the module docstring)."""

    def build():
        return torch.nn.Sequential(
            torch.nn.Linear(latent_dim, 50),
            torch.nn.GELU(),
            torch.nn.Unflatten(-1, (50, 1, 1)),
            torch.nn.ConvTranspose2d(50, 64, kernel_size=4, stride=2, padding=1, bias=False),  # 2 x 2
            torch.nn.GELU(),
            torch.nn.ConvTranspose2d(64, 32, kernel_size=3, stride=1, padding=1, bias=False),
            torch.nn.GELU(),
            torch.nn.ConvTranspose2d(32, 16, kernel_size=3, stride=1, padding=1, bias=False),
            torch.nn.GELU(),
            torch.nn.Flatten(-3),
            torch.nn.Linear(16 * 2 * 2, 28 * 28),
            torch.nn.Unflatten(-1, (1, 28, 28)),
        )

    return _finish(_seeded(seed, build), dtype)


def celeba_like(latent_dim=32, *, seed=0, dtype=torch.float64):
    """CelebA-like decoder ``[B, d] -> [B, 3, 64, 64]`` (see the module docstring)."""

    def build():
        layers = [torch.nn.Unflatten(-1, (latent_dim, 1, 1))]
        widths = [latent_dim, 64, 64, 32, 32]
        for n_in, n_out in zip(widths[:-1], widths[1:]):
            norm = torch.nn.BatchNorm2d(n_out)
            with torch.no_grad():  # seeded statistics: BatchNorm in eval is a per-channel affine map
                norm.running_mean.normal_(0.0, 0.1)
                norm.running_var.uniform_(0.5, 1.5)
                norm.weight.uniform_(0.8, 1.2)
                norm.bias.normal_(0.0, 0.1)
            layers += [torch.nn.ConvTranspose2d(n_in, n_out, kernel_size=4, stride=2, padding=1, bias=False), norm, torch.nn.GELU()]
        layers.append(torch.nn.ConvTranspose2d(32, 3, kernel_size=4, stride=4, padding=0, bias=False))  # 16 -> 64
        return torch.nn.Sequential(*layers)

    return _finish(_seeded(seed, build), dtype)


def layer_specs(model):
    """The layers of a ``torch.nn.Sequential`` built here, as ``(kind, arrays)`` in order.

    Kinds: ``linear`` (``weight [out, in]``, ``bias`` or None), ``tanh``,
    ``gelu`` (exact, erf-based), ``convT`` (``weight [in, out, k, k]``,
    ``stride``, ``padding``, ``bias`` or None), ``batchnorm`` (eval:
    ``scale``, ``shift`` per channel), ``reshape`` (``shape`` of one sample).
    """
    specs = []
    for layer in model:
        if isinstance(layer, torch.nn.Linear):
            bias = None if layer.bias is None else layer.bias.double().numpy()
            specs.append(("linear", {"weight": layer.weight.double().numpy(), "bias": bias}))
        elif isinstance(layer, torch.nn.Tanh):
            specs.append(("tanh", {}))
        elif isinstance(layer, torch.nn.GELU):
            if layer.approximate != "none":
                raise ValueError("only the exact GELU is exported")
            specs.append(("gelu", {}))
        elif isinstance(layer, torch.nn.ConvTranspose2d):
            if layer.output_padding != (0, 0) or layer.dilation != (1, 1) or layer.groups != 1:
                raise ValueError("only plain transposed convolutions are exported")
            bias = None if layer.bias is None else layer.bias.double().numpy()
            specs.append(("convT", {
                "weight": layer.weight.double().numpy(), "stride": np.array(layer.stride[0]),
                "padding": np.array(layer.padding[0]), "bias": bias,
            }))
        elif isinstance(layer, torch.nn.BatchNorm2d):
            scale = layer.weight.double() / torch.sqrt(layer.running_var.double() + layer.eps)
            shift = layer.bias.double() - layer.running_mean.double() * scale
            specs.append(("batchnorm", {"scale": scale.numpy(), "shift": shift.numpy()}))
        elif isinstance(layer, torch.nn.Unflatten):
            specs.append(("reshape", {"shape": np.array(layer.unflattened_size)}))
        elif isinstance(layer, torch.nn.Flatten):
            specs.append(("reshape", {"shape": np.array([-1])}))
        else:
            raise ValueError(f"cannot export layer {layer!r}")
    return specs


def save_npz(model, path):
    """Write :func:`layer_specs` of ``model`` to ``path`` (keys ``{i}_{kind}_{name}``, ``n_layers``)."""
    arrays = {}
    specs = layer_specs(model)
    for i, (kind, fields) in enumerate(specs):
        arrays[f"{i}_{kind}"] = np.array(0)
        for name, value in fields.items():
            if value is not None:
                arrays[f"{i}_{kind}_{name}"] = value
    arrays["n_layers"] = np.array(len(specs))
    np.savez(path, **arrays)
