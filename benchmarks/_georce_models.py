"""The decoders of the GEORCE comparison, and their export to another framework.

Shared by ``bench_georce.py`` and ``bench_latent_dim.py``.

- :func:`tanh_mlp`: ``analytic.random_mlp()`` (2 -> 64 -> 64 -> 784, tanh),
  optionally with its first layer's weights scaled (curvier geodesics).
- :func:`mlp_family`: ``d -> 64 -> 64 -> 784`` tanh MLPs for the latent
  dimension sweep.
The conv decoders are GEORCE's own architectures (Rygaard & Hauberg 2025),
taken from :mod:`geomstats_pullback.analytic`: ``mnist8`` is
``analytic.mnist_conv_decoder(8)`` (8-D to ``1 x 28 x 28``), ``celeba32``
``analytic.celeba_conv_decoder(32)`` (32-D to ``3 x 64 x 64``); seeded
He-uniform weights, tanh-approximated GELU, haiku's ``"SAME"`` transposed
convolutions.

All are seeded, in eval mode, gradients off, float64 unless ``dtype`` says.
:func:`layer_specs` lists their layers as plain arrays so that another
framework can rebuild the same map (``bench_georce.py`` writes them to
``.npz`` with :func:`save_npz` for the JAX forward pass of
``_georce_jax_worker.py``, which checks it against the torch outputs).
"""

import numpy as np
import torch

from geomstats_pullback import analytic

def tanh_mlp(first_layer_scale=1.0, *, dtype=torch.float64):
    """``analytic.random_mlp()`` with its first layer's weights times ``first_layer_scale``."""
    model = analytic.random_mlp(dtype=dtype)
    with torch.no_grad():
        model[0].weight.mul_(first_layer_scale)
    return model


def mlp_family(latent_dim, *, seed=0, dtype=torch.float64):
    """A ``latent_dim -> 64 -> 64 -> 784`` tanh MLP with seeded default initialisation."""
    return analytic.random_mlp((latent_dim, 64, 64, 784), seed=seed, dtype=dtype)


def _array(tensor):
    return None if tensor is None else tensor.detach().double().numpy()


def _conv_transpose_spec(layer, *, crop=None):
    if layer.output_padding != (0, 0) or layer.dilation != (1, 1) or layer.groups != 1:
        raise ValueError("only plain transposed convolutions are exported")
    if len(set(layer.stride)) != 1 or len(set(layer.padding)) != 1 or len(set(layer.kernel_size)) != 1:
        raise ValueError("only square kernels, strides and paddings are exported")
    fields = {
        "weight": _array(layer.weight), "stride": np.array(layer.stride[0]),
        "padding": np.array(layer.padding[0]), "bias": _array(layer.bias),
    }
    if crop is not None:
        fields["crop"] = np.array(crop)
    return ("convT", fields)


def layer_specs(model):
    """The layers of a ``torch.nn.Sequential`` used here, as ``(kind, fields)`` in order.

    Kinds and fields (arrays, float64):

    - ``linear``: ``weight [out, in]``, ``bias [out]`` or None;
    - ``tanh``;
    - ``gelu``: ``approximate`` (1 for the tanh approximation, 0 for the exact, erf-based one);
    - ``convT``: torch's ``ConvTranspose2d``, ``weight [in, out, k, k]``,
      ``stride``, ``padding``, ``bias [out]`` or None, and for
      ``analytic.SameConvTranspose2d`` a ``crop`` offset: the output
      ``[..., crop : crop + stride H, crop : crop + stride W]`` of the
      transposed convolution;
    - ``channels_last``: ``[B, C, H, W] -> [B, H W C]`` (haiku's flattening order);
    - ``reshape``: ``shape`` of one sample (``[-1]`` for a flatten).

    Raises
    ------
    ValueError
        On a layer outside this list (nothing is silently skipped).
    """
    specs = []
    for layer in model:
        if isinstance(layer, torch.nn.Linear):
            specs.append(("linear", {"weight": _array(layer.weight), "bias": _array(layer.bias)}))
        elif isinstance(layer, torch.nn.Tanh):
            specs.append(("tanh", {}))
        elif isinstance(layer, torch.nn.GELU):
            specs.append(("gelu", {"approximate": np.array(int(layer.approximate == "tanh"))}))
        elif isinstance(layer, analytic.SameConvTranspose2d):
            if layer.conv.padding != (0, 0):
                raise ValueError("SameConvTranspose2d crops a full (unpadded) transposed convolution")
            specs.append(_conv_transpose_spec(layer.conv, crop=layer.offset))
        elif isinstance(layer, torch.nn.ConvTranspose2d):
            specs.append(_conv_transpose_spec(layer))
        elif isinstance(layer, analytic.ChannelsLast):
            specs.append(("channels_last", {}))
        elif isinstance(layer, torch.nn.Unflatten):
            specs.append(("reshape", {"shape": np.array(layer.unflattened_size)}))
        elif isinstance(layer, torch.nn.Flatten):
            specs.append(("reshape", {"shape": np.array([-1])}))
        else:
            raise ValueError(f"cannot export layer {layer!r}")
    return specs


def save_npz(model, path):
    """Write :func:`layer_specs` of ``model`` to ``path``.

    Keys: ``n_layers``; ``layer{i}``, the kind of layer ``i`` (a string);
    ``layer{i}.{name}``, its fields (None fields are left out).
    """
    arrays = {}
    specs = layer_specs(model)
    for i, (kind, fields) in enumerate(specs):
        arrays[f"layer{i}"] = np.array(kind)
        for name, value in fields.items():
            if value is not None:
                arrays[f"layer{i}.{name}"] = value
    arrays["n_layers"] = np.array(len(specs))
    np.savez(path, **arrays)


def save_check(model, codes, path):
    """Write the torch values the JAX forward pass must reproduce to ``path``.

    Keys: ``z [m, d]`` (``codes``), ``x [m, D]`` (the flattened outputs) and
    ``jac [D, d]``, the Jacobian at ``codes[0]`` (forward mode), all float64.
    """
    dtype = next(model.parameters()).dtype
    codes = torch.as_tensor(codes, dtype=dtype)
    with torch.no_grad():
        outputs = model(codes).reshape(codes.shape[0], -1)
    jac = torch.func.jacfwd(lambda z: model(z[None]).reshape(-1))(codes[0])
    np.savez(path, z=_array(codes), x=_array(outputs), jac=_array(jac))
