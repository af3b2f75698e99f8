"""Is a decoder twice continuously differentiable? Inspection of its layers.

The geodesic equation ``z'' = -G^{-1} J^T f''(z)[z', z']`` needs ``f''``:
shooting (:mod:`geomstats_pullback.geodesics.shooting`) and the eighth-order
``exp`` are only as accurate as the decoder is smooth. ReLU, LeakyReLU,
Hardtanh, ReLU6, Hardswish, max-pooling and similar layers are piecewise
linear (``f'' = 0`` almost everywhere, the metric piecewise constant), ELU and
CELU are once differentiable only: on such decoders the log solver minimises
the discrete path energy under grid refinement instead
(:class:`~geomstats_pullback.geodesics.log.GeodesicBVPSolver`, ``method="auto"``).

Only ``torch.nn.Module`` layers are seen. A decoder that applies a
non-smooth function inside its ``forward`` (``torch.relu(x)``,
``F.max_pool2d``) is not detected: pass ``method="discrete"`` to the log
solver, or set the attribute ``smooth = False`` on the decoder module (an
explicit ``smooth`` attribute, True or False, overrides the inspection).
"""

import torch

#: Layers whose output is not twice continuously differentiable in their input.
NOT_C2 = (
    torch.nn.ReLU,
    torch.nn.LeakyReLU,
    torch.nn.PReLU,
    torch.nn.RReLU,
    torch.nn.ReLU6,
    torch.nn.ELU,
    torch.nn.CELU,
    torch.nn.SELU,
    torch.nn.Hardtanh,
    torch.nn.Hardswish,
    torch.nn.Hardsigmoid,
    torch.nn.Hardshrink,
    torch.nn.Softshrink,
    torch.nn.Threshold,
    torch.nn.MaxPool1d,
    torch.nn.MaxPool2d,
    torch.nn.MaxPool3d,
    torch.nn.AdaptiveMaxPool1d,
    torch.nn.AdaptiveMaxPool2d,
    torch.nn.AdaptiveMaxPool3d,
    torch.nn.MaxUnpool1d,
    torch.nn.MaxUnpool2d,
    torch.nn.MaxUnpool3d,
    torch.nn.LPPool1d,
    torch.nn.LPPool2d,
)


def is_smooth(decoder):
    """Whether a decoder is twice continuously differentiable, as far as its layers tell.

    Parameters
    ----------
    decoder : torch.nn.Module, callable, or an adapter with a ``decoder`` attribute
        The user's decoder, or the library's
        :class:`~geomstats_pullback.decoders.Decoder` adapter around it.

    Returns
    -------
    smooth : bool
        False if the module (or one of its submodules) has ``smooth = False``
        or is one of :data:`NOT_C2`; True otherwise (tanh, sigmoid, GELU,
        SiLU, softplus, linear, convolution, batch norm, plain callables).
        An explicit ``smooth`` attribute on the top module decides alone.
    """
    module = decoder
    while not isinstance(module, torch.nn.Module) and hasattr(module, "decoder"):
        explicit = getattr(module, "smooth", None)
        if isinstance(explicit, bool):
            return explicit
        module = module.decoder
    explicit = getattr(module, "smooth", None)
    if isinstance(explicit, bool):
        return explicit
    if not isinstance(module, torch.nn.Module):
        return True
    for layer in module.modules():
        if getattr(layer, "smooth", None) is False or isinstance(layer, NOT_C2):
            return False
    return True
