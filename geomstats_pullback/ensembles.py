"""Ensemble and MC-dropout decoders: the expected pullback metric as one stacked map.

For decoders ``f_1, ..., f_M`` with Jacobians ``J_m(z)``, the expected metric
of the ensemble (Syrota et al., 2024) is

    G(z) = (1/M) sum_m J_m(z)^T J_m(z),

which is exactly the Euclidean pullback metric of the stacked map

    F(z) = [f_1(z), ..., f_M(z)] / sqrt(M)        [B, M * D].

So an ensemble is a decoder like any other: exp, log, transport, curvature,
statistics and distance matrices use ``F`` unchanged and matrix-free, at about
``M`` times the cost of one member. MC dropout is the ensemble of one network
under ``M`` dropout masks drawn once from a seed: a fixed Riemannian metric.

Output geometries compose per member: the Fisher-Rao pullback of an ensemble
of, say, Bernoulli decoders is the mean of the members' Fisher-Rao metrics,
so the output map is applied to each member before stacking
(``EnsembleDecoder([OutputDecoder(f_1, ...), ..., OutputDecoder(f_M, ...)])``),
not to the ensemble's stacked output.
"""

import math

import autograd.numpy as anp
import torch

from geomstats_pullback._validation import check_integer

_CHANNEL_DROPOUT = (torch.nn.Dropout1d, torch.nn.Dropout2d, torch.nn.Dropout3d)


def _infer_latent_dim(member):
    """``in_features`` of the first linear layer of a torch module, or ``None``."""
    if not isinstance(member, torch.nn.Module):
        return None
    for layer in member.modules():
        if isinstance(layer, torch.nn.Linear):
            return layer.in_features
    return None


def _probe_dtype(members):
    """dtype and device of the first floating parameter or buffer among the members (float64 on the CPU if none)."""
    for member in members:
        if isinstance(member, torch.nn.Module):
            for tensor in list(member.parameters()) + list(member.buffers()):
                if tensor.is_floating_point():
                    return tensor.dtype, tensor.device
    return torch.float64, torch.device("cpu")


class EnsembleDecoder(torch.nn.Module):
    """Members ``f_1, ..., f_M`` stacked into one decoder whose pullback is the expected metric.

    ``forward(z)`` returns ``[f_1(z), ..., f_M(z)] / sqrt(M)``, each member's
    output flattened, shape ``[B, M * D]``: its Euclidean pullback metric is
    ``(1/M) sum_m J_m(z)^T J_m(z)``. Pass the ensemble to
    :class:`~geomstats_pullback.DecoderManifold` like any decoder.

    For a non-Euclidean output geometry (Fisher-Rao of a Bernoulli,
    categorical, Poisson or Gaussian decoder), wrap each member in its output
    map and ensemble the wrapped members,
    ``EnsembleDecoder([OutputDecoder(f_1, ...), ..., OutputDecoder(f_M, ...)])``:
    the expected Fisher-Rao metric is the mean of the members' pullbacks,
    which the output map applied to the stacked output would not give.

    The ensemble follows its members' mode: it is in training mode if any
    member is (call ``eval()`` on it or on the members first).

    Parameters
    ----------
    members : sequence of torch.nn.Module or callable
        ``M >= 1`` decoders ``[B, d] -> [B, *data_shape]`` of one latent
        dimension, one output shape and one dtype.
    latent_dim : int, optional
        Latent dimension ``d``; by default the ``in_features`` of the first
        member's first ``torch.nn.Linear`` layer (required if it has none).

    Attributes
    ----------
    members : list
        The members, in order.
    latent_dim : int
    data_shape : tuple
        Shape of one member's output for one latent point.

    Raises
    ------
    ValueError
        If ``members`` is empty, a member is not callable, the latent dimension
        cannot be inferred, or the members disagree on the latent dimension,
        the output shape or the output dtype (each member is probed at the
        zero latent point).
    """

    def __init__(self, members, *, latent_dim=None):
        super().__init__()
        if callable(members) or not hasattr(members, "__iter__"):
            raise ValueError(f"members must be a sequence of decoders, got {type(members).__name__}.")
        members = list(members)
        if not members:
            raise ValueError("members must be a non-empty sequence of decoders, got none.")
        for index, member in enumerate(members):
            if not callable(member):
                raise ValueError(f"members[{index}] must be callable, got {type(member).__name__}.")
        inferred = [_infer_latent_dim(member) for member in members]
        if latent_dim is None:
            if inferred[0] is None:
                raise ValueError(
                    "latent_dim cannot be inferred from members[0] (no torch.nn.Linear layer): pass latent_dim."
                )
            latent_dim = inferred[0]
        latent_dim = check_integer(latent_dim, "latent_dim", low=1)
        for index, dim in enumerate(inferred):
            if dim is not None and dim != latent_dim:
                raise ValueError(
                    f"All members must have one latent dimension: members[{index}] takes {dim}, not {latent_dim}."
                )
        self.members = members
        # Registered so that parameters(), to(), eval() and train() reach the members.
        self.member_modules = torch.nn.ModuleList(m for m in members if isinstance(m, torch.nn.Module))
        self.training = any(getattr(m, "training", False) for m in members)
        self.latent_dim = latent_dim
        self.data_shape = self._probe()

    @property
    def n_members(self):
        """``M``, the number of members."""
        return len(self.members)

    def _probe(self):
        """Evaluate every member at the zero latent point; their common output shape."""
        kinds = {_probe_dtype([member]) for member in self.members if isinstance(member, torch.nn.Module)}
        if len(kinds) > 1:
            raise ValueError(
                "All members must have one dtype and device, got "
                f"{', '.join(sorted(f'{dtype} on {device}' for dtype, device in kinds))}."
            )
        dtype, device = _probe_dtype(self.members)
        zero = torch.zeros(1, self.latent_dim, dtype=dtype, device=device)
        reference = None
        for index, member in enumerate(self.members):
            try:
                with torch.no_grad():
                    out = member(zero)
            except (RuntimeError, ValueError, TypeError, IndexError) as exc:
                raise ValueError(
                    f"members[{index}] cannot decode a latent point of dimension {self.latent_dim} "
                    f"(probed at zero, shape [1, {self.latent_dim}]): {exc}"
                ) from exc
            shape = tuple(out.shape[1:])
            kind = getattr(out, "dtype", None)
            if reference is None:
                reference = (shape, kind)
            elif (shape, kind) != reference:
                raise ValueError(
                    f"All members must return one output shape and dtype: members[{index}] returns "
                    f"{shape} ({kind}), members[0] {reference[0]} ({reference[1]})."
                )
        return reference[0]

    def members_output(self, z):
        """The members' outputs, shape ``[M, B, *data_shape]``.

        Parameters
        ----------
        z : array-like, shape=[B, d]
            Latent points, in the members' array type, dtype and device.

        Returns
        -------
        outputs : array-like, shape=[M, B, *data_shape]
        """
        outputs = [member(z) for member in self.members]
        if torch.is_tensor(outputs[0]):
            return torch.stack(outputs)
        return anp.stack(outputs)

    def mean(self, z):
        """The ensemble's mean output ``(1/M) sum_m f_m(z)``, shape ``[B, *data_shape]``."""
        return self.members_output(z).mean(0)

    def forward(self, z):
        """Stacked ``[f_1(z), ..., f_M(z)] / sqrt(M)``, shape ``[B, M * D]``."""
        n = z.shape[0]
        scale = 1.0 / math.sqrt(self.n_members)
        outputs = [member(z) for member in self.members]
        if torch.is_tensor(outputs[0]):
            if len(outputs) == 1:
                return outputs[0].reshape(n, -1)
            return _Concatenate.apply(*(out.reshape(n, -1) for out in outputs)) * scale
        return anp.concatenate([anp.reshape(out, (n, -1)) for out in outputs], axis=-1) * scale


class _Concatenate(torch.autograd.Function):
    """``torch.cat`` along the last axis whose derivatives of every order cost ``O(M D)``.

    ``torch.cat``'s backward slices the cotangent, and the slice's own backward
    (reached by the double-backward derivatives of :mod:`~geomstats_pullback.autodiff`)
    allocates a zero ``[B, M * D]`` array per member: ``O(M^2 D)``. Here the
    backward is :class:`_Split`, whose backward is this concatenation again.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(*pieces):
        return torch.cat(pieces, dim=-1)  # [B, M * D]

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.sizes = [piece.shape[-1] for piece in inputs]

    @staticmethod
    def backward(ctx, grad):
        return _Split.apply(grad, ctx.sizes)

    @staticmethod
    def jvp(ctx, *tangents):
        return torch.cat(tangents, dim=-1)


class _Split(torch.autograd.Function):
    """``whole.split(sizes, -1)`` whose backward is :class:`_Concatenate`."""

    generate_vmap_rule = True

    @staticmethod
    def forward(whole, sizes):
        return tuple(whole.split(sizes, dim=-1))

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.sizes = inputs[1]

    @staticmethod
    def backward(ctx, *grads):
        return _Concatenate.apply(*grads), None

    @staticmethod
    def jvp(ctx, whole_tangent, _):
        return tuple(whole_tangent.split(ctx.sizes, dim=-1))


class _MaskedRun(torch.nn.Module):
    """One MC-dropout sample: ``module`` with each dropout layer's output replaced by its input times a fixed mask."""

    def __init__(self, module, layers, masks):
        super().__init__()
        self.module = module
        self._layers = layers
        self._masks = masks
        self.training = False

    def _hook(self, mask):
        def apply(layer, inputs, output):
            return inputs[0] * mask

        return apply

    def forward(self, z):
        handles = [layer.register_forward_hook(self._hook(mask)) for layer, mask in zip(self._layers, self._masks)]
        try:
            return self.module(z)
        finally:
            for handle in handles:
                handle.remove()


class MCDropoutDecoder(EnsembleDecoder):
    """MC dropout with ``n_samples`` fixed masks: an ensemble of one network under frozen dropout.

    Each sample ``m`` draws, once and from ``seed``, one mask per dropout
    layer for one latent point, ``Bernoulli(1 - p) / (1 - p)`` (per entry for
    ``torch.nn.Dropout``, per channel for ``Dropout1d/2d/3d``); it is applied
    to every latent point of every batch, so the members are fixed maps and
    the metric ``(1/M) sum_m J_m^T J_m`` is a fixed Riemannian metric. During
    the ensemble's evaluation a dropout layer's output is replaced by its
    input times the mask, whatever the layer's mode; other layers (batch norm)
    run in the module's own mode, so call ``module.eval()`` first.

    Parameters
    ----------
    module : torch.nn.Module
        A decoder ``[B, d] -> [B, *data_shape]`` with at least one
        ``torch.nn.Dropout`` (or ``Dropout1d/2d/3d``) layer.
    n_samples : int
        Number ``M >= 1`` of masks.
    seed : int
        Seed of the masks.
    latent_dim : int, optional
        As for :class:`EnsembleDecoder`.

    Attributes
    ----------
    masks : list of list of torch.Tensor
        ``masks[m][l]``: sample ``m``'s mask of the ``l``-th dropout layer
        (in ``module.modules()`` order), of the layer's input shape for one
        latent point (channel dropout: ``[C, 1, ...]``).

    Raises
    ------
    ValueError
        If ``module`` is not a ``torch.nn.Module`` or has no supported dropout
        layer, has an alpha-dropout layer, or ``n_samples`` or ``seed`` is not
        an integer in range.
    """

    def __init__(self, module, n_samples, *, seed, latent_dim=None):
        if not isinstance(module, torch.nn.Module):
            raise ValueError(f"module must be a torch.nn.Module, got {type(module).__name__}.")
        n_samples = check_integer(n_samples, "n_samples", low=1)
        seed = check_integer(seed, "seed", low=0)
        unsupported = [type(m).__name__ for m in module.modules() if isinstance(m, (torch.nn.AlphaDropout, torch.nn.FeatureAlphaDropout))]
        if unsupported:
            raise ValueError(f"module has alpha-dropout layers ({', '.join(unsupported)}), which MCDropoutDecoder does not support.")
        layers = [m for m in module.modules() if isinstance(m, (torch.nn.Dropout, *_CHANNEL_DROPOUT))]
        if not layers:
            raise ValueError("module has no torch.nn.Dropout (or Dropout1d/2d/3d) layer: MC dropout needs one.")
        if latent_dim is None:
            latent_dim = _infer_latent_dim(module)
            if latent_dim is None:
                raise ValueError("latent_dim cannot be inferred from module (no torch.nn.Linear layer): pass latent_dim.")
        latent_dim = check_integer(latent_dim, "latent_dim", low=1)
        shapes = _dropout_input_shapes(module, layers, latent_dim)
        generator = torch.Generator().manual_seed(seed)
        masks = [[_draw_mask(layer, shape, generator) for layer, shape in zip(layers, shapes)] for _ in range(n_samples)]
        dtype, device = _probe_dtype([module])
        frozen = [[mask.to(dtype=dtype, device=device) for mask in sample] for sample in masks]
        super().__init__([_MaskedRun(module, layers, sample) for sample in frozen], latent_dim=latent_dim)
        self.module = module
        self.masks = frozen
        self.seed = seed


def _dropout_input_shapes(module, layers, latent_dim):
    """Input shape of each dropout layer for one latent point (module run once at zero)."""
    shapes = {}

    def record(layer):
        def hook(_, inputs):
            shapes.setdefault(id(layer), tuple(inputs[0].shape[1:]))

        return hook

    dtype, device = _probe_dtype([module])
    handles = [layer.register_forward_pre_hook(record(layer)) for layer in layers]
    try:
        with torch.no_grad():
            module(torch.zeros(1, latent_dim, dtype=dtype, device=device))
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        raise ValueError(
            f"module cannot decode a latent point of dimension {latent_dim} (probed at zero): {exc}"
        ) from exc
    finally:
        for handle in handles:
            handle.remove()
    missing = [type(layer).__name__ for layer in layers if id(layer) not in shapes]
    if missing:
        raise ValueError(f"module has dropout layers its forward pass does not use ({', '.join(missing)}).")
    return [shapes[id(layer)] for layer in layers]


def _draw_mask(layer, shape, generator):
    """``Bernoulli(1 - p) / (1 - p)`` mask for one latent point (per channel for channel dropout)."""
    if isinstance(layer, _CHANNEL_DROPOUT):
        shape = shape[:1] + (1,) * (len(shape) - 1)
    p = float(layer.p)
    keep = (torch.rand(shape, generator=generator, dtype=torch.float64, device=generator.device) >= p).to(torch.float64)
    return keep / (1.0 - p) if p < 1.0 else keep * 0.0
