r"""Output geometries: the Fisher–Rao metric of a decoder's output distribution.

A decoder whose outputs parametrise a distribution per entry (Bernoulli
pixels, a categorical over the last axis, Poisson counts, normal entries
with a mean and a standard deviation) carries the
pullback of the Fisher–Rao metric (Arvanitidis, González-Duque, Pouplin,
Kalatzis and Hauberg, *Pulling back information geometry*, AISTATS 2022):
``G(z) = J(z)^T F(theta(z)) J(z)``, ``theta(z)`` the output parameters and
``F`` the Fisher information of the family, a product over the entries.

For these families the Fisher–Rao metric is the Euclidean pullback of a fixed
elementwise map ``phi`` (``F = Dphi^T Dphi``), so that
``G(z) = J_{phi o f}(z)^T J_{phi o f}(z)``: the Euclidean pullback of the
composed decoder ``phi o f``. :class:`OutputDecoder` composes ``phi`` after
the user's decoder; exp, log, transport, curvature, statistics and distance
matrices of :class:`~geomstats_pullback.metric.PullbackMetric` then apply
unchanged. The maps, per entry:

- Bernoulli, ``p = sigmoid(l)``: ``phi(p) = 2 arcsin(sqrt(p))``. From logits
  ``l`` it is ``2 arctan(exp(l / 2))``, computed from ``e = exp(-|l| / 2)``
  as ``2 arctan(e)`` or ``pi - 2 arctan(e)`` (no overflow); its derivative
  ``1 / (2 cosh(l / 2)) = e / (1 + e^2)`` squares to ``p (1 - p)``, the Fisher information in
  logits. From probabilities, ``d phi / dp = 1 / sqrt(p (1 - p))`` is infinite
  at ``p in {0, 1}`` (the metric is then not finite and the adapters raise
  ``FloatingPointError``): prefer logits.
- Categorical over the last axis, ``p = softmax(l)``: ``phi(p) = 2 sqrt(p)``,
  computed as ``2 e / |e|`` with ``e = exp((l - max l) / 2)``. Its image is the sphere of
  radius 2, and the distance along it is ``2 arccos(sum sqrt(p q))``.
- Poisson, ``lambda = exp(r)``: ``phi(lambda) = 2 sqrt(lambda)``, computed as
  ``2 exp(r / 2)`` from log-rates ``r``, or from rates directly.

- Categorical from probabilities ``p`` on the simplex: ``phi(p) = 2 sqrt(p)``
  (checked: nonnegative, summing to 1 within ``sqrt(eps)`` of the dtype). The
  decoder's Jacobian is tangent to the simplex, so the Euclidean pullback of
  ``phi`` is the Fisher–Rao one; ``d phi / dp = 1 / sqrt(p)`` is infinite at
  ``p = 0``: prefer logits.
- Normal entries ``N(mu, sigma^2)``: the Fisher–Rao metric on ``(mu, sigma)``
  is ``(d mu^2 + 2 d sigma^2) / sigma^2 = 2 (dx^2 + dy^2) / y^2`` with
  ``x = mu / sqrt(2)``, ``y = sigma``, a hyperbolic half-plane of curvature
  ``-1/2``. It has no global isometric embedding of this kind (Hilbert's
  theorem excludes ``R^3``), but a pullback metric needs only a *local*
  isometry, which the pseudosphere gives on ``y > c`` for a floor ``c > 0``:

      (x, y) -> sqrt(2) ((c / y) cos(x / c), (c / y) sin(x / c), h(y)),
      h(y) = arccosh(y / c) - sqrt(y^2 - c^2) / y,

  (with ``r = c / y``, ``r'^2 + h'^2 = 1 / y^2``: the induced metric is
  ``2 (dx^2 + dy^2) / y^2``). Each pair ``(mu_i, sigma_i)`` becomes three
  Euclidean outputs. Every ``sigma`` must exceed ``c`` (``std_floor``): a
  ``ValueError`` otherwise, nothing is clamped. The metric does not depend on
  ``c``; the embedded curves do: a latent step that moves ``mu_i`` by
  ``2 pi sqrt(2) c`` winds once around the pseudosphere, so the discrete
  geodesic solver's chords (see :mod:`geomstats_pullback.geodesics`) need node
  spacings with ``mu``-steps well below that; take ``c`` as large as the
  decoder's smallest std allows. This is the Fisher–Rao pullback of the
  Gaussian decoder. :class:`~geomstats_pullback.decoders.StochasticDecoder`
  gives instead its *expected* metric, ``J_mu^T J_mu + J_sigma^T J_sigma``,
  the Euclidean pullback of ``z -> [mu(z), sigma(z)]`` (Arvanitidis, Hansen
  and Hauberg, 2018): no ``1 / sigma^2`` weighting and no factor 2 on
  ``sigma``.

Cost. Each elementwise map is a :class:`torch.autograd.Function` with its
first derivative in closed form, itself a function whose derivative is the
next order (second derivatives in closed form, higher ones by autograd): the
reverse-over-reverse derivatives of :mod:`geomstats_pullback.autodiff` meet
one multiplication per derivative order instead of the backward graphs of
every elementary operation. Under ``torch.func`` transforms (the grad-mode
path of :mod:`~geomstats_pullback.autodiff`) the same maps are evaluated
with plain torch operations, which nested forward mode differentiates.

Geomstats' families. ``output`` may also be a geomstats
``InformationManifoldMixin`` space: ``BinomialDistributions(n_draws=1)``
(Bernoulli, probabilities by default), ``CategoricalDistributions``
(probabilities by default, its ``dim + 1`` categories checked),
``PoissonDistributions`` (rates by default) and the univariate
``NormalDistributions(sample_dim=1)`` (mean and std). The defaults follow
geomstats' own coordinates of each family.
"""

import math

import torch

from geomstats_pullback._validation import check_in_range
from geomstats_pullback.decoders import StochasticDecoder

__all__ = [
    "FAMILIES",
    "SUPPORTED_SPACES",
    "OutputDecoder",
    "bernoulli_map",
    "categorical_map",
    "family_of_space",
    "gaussian_map",
    "poisson_map",
]


# ---------------------------------------------------------------- elementwise maps with closed-form derivatives


class _ElementwiseMap:
    """An elementwise map ``phi`` with its derivatives in closed form.

    Parameters
    ----------
    name : str
    tabulate : callable
        ``x -> (phi(x), aux)``: the value and an intermediate ``aux`` from
        which the first two derivatives follow cheaply.
    tabulated : tuple of callable
        ``(x, aux) -> phi'(x)`` and ``(x, aux) -> phi''(x)``.
    plain : tuple of callable
        ``x -> phi^(k)(x)`` for ``k = 0, ..., 3`` in plain torch operations
        (differentiable by autograd and ``torch.func``).
    """

    def __init__(self, name, tabulate, tabulated, plain):
        self.name = name
        self.tabulate = tabulate
        self.tabulated = tabulated
        self.plain = plain

    def __call__(self, x):
        if _plain_operations():
            return self.plain[0](x)
        return _Value.apply(x, self)[0]

    def __repr__(self):
        return f"<elementwise map {self.name}>"


def _plain_operations():
    """Whether to differentiate plain operations rather than the closed-form Functions.

    Under ``torch.func`` transforms (``jvp``, ``vmap``; the grad-mode path of
    :mod:`geomstats_pullback.autodiff`) the jvp rule of an autograd Function
    is not differentiated by an enclosing ``jvp`` (a nested ``jvp`` would see
    a zero second derivative), so the maps are evaluated with plain
    operations there.
    """
    return torch._C._are_functorch_transforms_active()


def _next_derivative(x, aux, phi, order):
    """``phi^(order)(x)`` for ``order >= 1``: a :class:`_Derivative` node up to 2, plain operations above."""
    if order <= len(phi.tabulated):
        return _Derivative.apply(x, aux, phi, order)
    return phi.plain[order](x)


class _Value(torch.autograd.Function):
    """``(phi(x), aux)``; the derivative of ``phi(x)`` is the :class:`_Derivative` node of order 1.

    One elementwise pass computes the value and ``aux``; each derivative
    order then costs one multiplication in a backward pass (and its own
    closed form, from ``aux``, when it is first needed). No forward-mode
    rule: ``torch.func`` transforms use the plain operations (see
    :func:`_plain_operations`).
    """

    @staticmethod
    def forward(x, phi):
        return phi.tabulate(x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, ctx.phi = inputs
        ctx.mark_non_differentiable(output[1])
        ctx.save_for_backward(x, output[1])

    @staticmethod
    def backward(ctx, grad, _):
        x, aux = ctx.saved_tensors
        return grad * _next_derivative(x, aux, ctx.phi, 1), None


class _Derivative(torch.autograd.Function):
    """``phi^(order)(x)`` from ``aux``, whose derivative is ``phi^(order + 1)(x)`` (double backward to any order)."""

    @staticmethod
    def forward(x, aux, phi, order):
        return phi.tabulated[order - 1](x, aux)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, aux, ctx.phi, ctx.order = inputs
        ctx.save_for_backward(x, aux)

    @staticmethod
    def backward(ctx, grad):
        x, aux = ctx.saved_tensors
        return grad * _next_derivative(x, aux, ctx.phi, ctx.order + 1), None, None, None


def _sech(x):
    return torch.reciprocal(torch.cosh(x))


def _bernoulli_logits_tabulate(l):
    e = torch.exp(-0.5 * l.abs())  # exp(-|l| / 2) in (0, 1]: no overflow
    twice_atan = 2 * torch.atan(e)
    return torch.where(l >= 0, math.pi - twice_atan, twice_atan), e


def _bernoulli_logits_third(l):
    s, t = _sech(0.5 * l), torch.tanh(0.5 * l)
    return 0.125 * s * (t * t - s * s)


# Bernoulli from logits l: phi = 2 arctan(exp(l / 2)), phi' = sech(l / 2) / 2 = e / (1 + e^2) with e = exp(-|l| / 2).
_BERNOULLI_LOGITS = _ElementwiseMap(
    "bernoulli(logits)",
    _bernoulli_logits_tabulate,
    (
        lambda l, e: e / (1 + e * e),
        lambda l, e: -0.5 * torch.sign(l) * e * (1 - e * e) / (1 + e * e) ** 2,
    ),
    (
        lambda l: math.pi / 2 + 2 * torch.atan(torch.tanh(l / 4)),
        lambda l: 0.5 * _sech(0.5 * l),
        lambda l: -0.25 * _sech(0.5 * l) * torch.tanh(0.5 * l),
        _bernoulli_logits_third,
    ),
)


def _variance(p):
    return p - p * p


# Bernoulli from probabilities p: phi = 2 arcsin(sqrt(p)), phi' = q^(-1/2) with q = p (1 - p).
_BERNOULLI_PROBABILITIES = _ElementwiseMap(
    "bernoulli(probabilities)",
    lambda p: (2 * torch.asin(torch.sqrt(p)), torch.rsqrt(_variance(p))),
    (lambda p, a: a.view_as(a), lambda p, a: -0.5 * (1 - 2 * p) * a**3),
    (
        lambda p: 2 * torch.asin(torch.sqrt(p)),
        lambda p: torch.rsqrt(_variance(p)),
        lambda p: -0.5 * (1 - 2 * p) * torch.rsqrt(_variance(p)) ** 3,
        lambda p: torch.rsqrt(_variance(p)) ** 3 + 0.75 * (1 - 2 * p) ** 2 * torch.rsqrt(_variance(p)) ** 5,
    ),
)
# Poisson from log-rates r: phi = 2 exp(r / 2); every derivative is a power of 1/2 times a = exp(r / 2).
_POISSON_LOG_RATES = _ElementwiseMap(
    "poisson(log_rates)",
    lambda r: (lambda a: (2 * a, a))(torch.exp(0.5 * r)),
    (lambda r, a: a.view_as(a), lambda r, a: 0.5 * a),
    tuple((lambda r, k=k: 2.0 ** (1 - k) * torch.exp(0.5 * r)) for k in range(4)),
)
# 2 sqrt(x), for Poisson rates and categorical probabilities: phi' = x^(-1/2) = a.
_TWO_SQRT = _ElementwiseMap(
    "2 sqrt",
    lambda x: (2 * torch.sqrt(x), torch.rsqrt(x)),
    (lambda x, a: a.view_as(a), lambda x, a: -0.5 * a**3),
    (
        lambda x: 2 * torch.sqrt(x),
        torch.rsqrt,
        lambda x: -0.5 * torch.rsqrt(x) ** 3,
        lambda x: 0.75 * torch.rsqrt(x) ** 5,
    ),
)


class _SqrtSoftmax(torch.autograd.Function):
    """``2 sqrt(softmax(l))`` over the last axis, ``y``; its derivative in closed form.

    ``dy_i / dl_j = (y_i / 2) (delta_ij - p_j)`` with ``p = y^2 / 4``; the
    backward rule is written with the saved output ``y``, through which
    double backward differentiates this function again.
    """

    @staticmethod
    def forward(logits):
        # One exponential: e = exp((l - max l) / 2) in (0, 1], y = 2 e / |e|.
        e = torch.exp(0.5 * (logits - logits.amax(dim=-1, keepdim=True)))
        return 2 * e * torch.rsqrt((e * e).sum(-1, keepdim=True))

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors  # an output: double backward differentiates it through this node
        half = 0.5 * grad * y
        return half - (0.25 * y * y) * half.sum(-1, keepdim=True)


class _PseudosphereHeight(_ElementwiseMap):
    """``h(y) = arccosh(y / c) - w / y`` with ``w = sqrt(y^2 - c^2)``: ``h' = w / y^2``, for ``y > c``."""

    def __init__(self, floor):
        c = float(floor)

        def value(y):
            return torch.acosh(y / c) - torch.sqrt(y * y - c * c) / y

        def tabulate(y):
            w = torch.sqrt(y * y - c * c)
            return torch.acosh(y / c) - w / y, w

        def second(y, w):
            return (2 * c * c - y * y) / (y**3 * w)

        def third(y):
            w = torch.sqrt(y * y - c * c)
            return (2 * y**4 - 9 * c * c * y * y + 6 * c**4) / (y**4 * w**3)

        super().__init__(
            f"pseudosphere height (c={c:g})",
            tabulate,
            (lambda y, w: w / (y * y), second),
            (value, lambda y: torch.sqrt(y * y - c * c) / (y * y), lambda y: second(y, torch.sqrt(y * y - c * c)), third),
        )
        self.floor = c


# ---------------------------------------------------------------- public maps


def bernoulli_map(values, parametrisation="logits"):
    """Fisher–Rao embedding of Bernoulli entries, ``2 arcsin(sqrt(p))``.

    Parameters
    ----------
    values : torch.Tensor, shape=[...]
        Logits ``l`` or probabilities ``p`` in ``[0, 1]``.
    parametrisation : {"logits", "probabilities"}

    Returns
    -------
    embedded : torch.Tensor, shape=[...]
        In ``[0, pi]``.

    Raises
    ------
    ValueError
        If probabilities lie outside ``[0, 1]``.
    """
    if parametrisation == "logits":
        return _BERNOULLI_LOGITS(values)
    _check_parametrisation("bernoulli", parametrisation)
    return _BERNOULLI_PROBABILITIES(check_in_range(values, "Bernoulli probabilities", low=0.0, high=1.0))


def categorical_map(values, parametrisation="logits"):
    """Fisher–Rao embedding of a categorical over the last axis, ``2 sqrt(p)``.

    Parameters
    ----------
    values : torch.Tensor, shape=[..., K]
        Logits over ``K`` categories (``p = softmax(values)``), or
        probabilities ``p`` on the simplex.
    parametrisation : {"logits", "probabilities"}

    Returns
    -------
    embedded : torch.Tensor, shape=[..., K]
        On the sphere of radius 2.

    Raises
    ------
    ValueError
        If probabilities are negative or do not sum to 1 within
        ``sqrt(eps)`` of their dtype along the last axis.
    """
    if parametrisation == "logits":
        if _plain_operations():
            return 2 * torch.exp(0.5 * (values - torch.logsumexp(values, dim=-1, keepdim=True)))
        return _SqrtSoftmax.apply(values)
    _check_parametrisation("categorical", parametrisation)
    check_in_range(values, "Categorical probabilities", low=0.0)
    tol = math.sqrt(torch.finfo(values.dtype).eps)
    error = (values.sum(-1) - 1).abs()
    if bool((error > tol).any()):
        raise ValueError(
            f"Categorical probabilities must sum to 1 over the last axis (within {tol:.1e}); "
            f"{int((error > tol).sum())} of {error.numel()} distributions do not (largest deviation {float(error.max()):.3g})."
        )
    return _TWO_SQRT(values)


def poisson_map(values, parametrisation="log_rates"):
    """Fisher–Rao embedding of Poisson entries, ``2 sqrt(lambda)``.

    Parameters
    ----------
    values : torch.Tensor, shape=[...]
        Log-rates ``r = log(lambda)`` or rates ``lambda >= 0``.
    parametrisation : {"log_rates", "rates"}

    Returns
    -------
    embedded : torch.Tensor, shape=[...]

    Raises
    ------
    ValueError
        If rates are negative.
    """
    if parametrisation == "log_rates":
        return _POISSON_LOG_RATES(values)
    _check_parametrisation("poisson", parametrisation)
    return _TWO_SQRT(check_in_range(values, "Poisson rates", low=0.0))


def gaussian_map(mean, spread, std_floor, parametrisation="std"):
    """Local isometric embedding of normal entries ``N(mu, sigma^2)`` (Fisher–Rao), on the pseudosphere.

    ``(mu, sigma) -> sqrt(2) ((c / sigma) cos(mu / (sqrt(2) c)), (c / sigma)
    sin(mu / (sqrt(2) c)), h(sigma))`` with ``c = std_floor`` and ``h(y) =
    arccosh(y / c) - sqrt(y^2 - c^2) / y`` (module docstring): its Euclidean
    pullback is ``(d mu^2 + 2 d sigma^2) / sigma^2`` per entry.

    Parameters
    ----------
    mean : torch.Tensor, shape=[...]
        ``mu``.
    spread : torch.Tensor, shape=[...]
        ``sigma`` (``parametrisation="std"``) or ``log(sigma)``
        (``"log_std"``), of ``mean``'s shape.
    std_floor : float
        ``c > 0``, below every ``sigma``.
    parametrisation : {"std", "log_std"}

    Returns
    -------
    embedded : torch.Tensor, shape=[3, ...]
        The three coordinates of each entry.

    Raises
    ------
    ValueError
        If a standard deviation is not above ``std_floor``, or the shapes differ.
    """
    _check_parametrisation("gaussian", parametrisation)
    if tuple(mean.shape) != tuple(spread.shape):
        raise ValueError(f"mean and std must have one shape, got {tuple(mean.shape)} and {tuple(spread.shape)}.")
    std = spread if parametrisation == "std" else torch.exp(spread)
    height = _pseudosphere(std_floor)
    c = height.floor
    below = std <= c
    if bool(below.any()):
        raise ValueError(
            f"Gaussian std must exceed std_floor={c:g} (the pseudosphere's floor c); {int(below.sum())} of "
            f"{below.numel()} entries do not (min std {float(std.detach().min()):.6g}): pass a smaller std_floor."
        )
    radius = math.sqrt(2) * c / std
    angle = mean / (math.sqrt(2) * c)
    return torch.stack([radius * torch.cos(angle), radius * torch.sin(angle), math.sqrt(2) * height(std)])


def _pseudosphere(std_floor):
    floor = float(std_floor)
    if not (math.isfinite(floor) and floor > 0):
        raise ValueError(f"std_floor must be a positive finite number, got {std_floor!r}.")
    return _PseudosphereHeight(floor)


FAMILIES = {
    "bernoulli": (bernoulli_map, ("logits", "probabilities")),
    "categorical": (categorical_map, ("logits", "probabilities")),
    "poisson": (poisson_map, ("log_rates", "rates")),
    "gaussian": (gaussian_map, ("std", "log_std")),
}
"""Family name -> (embedding map, accepted parametrisations; the first is the default)."""


def _check_parametrisation(family, parametrisation):
    choices = FAMILIES[family][1]
    if parametrisation not in choices:
        raise ValueError(f"parametrisation of the {family} family must be one of {choices}, got {parametrisation!r}.")


# ---------------------------------------------------------------- geomstats' families


def _supported_spaces():
    from geomstats.information_geometry.binomial import BinomialDistributions
    from geomstats.information_geometry.categorical import CategoricalDistributions
    from geomstats.information_geometry.normal import UnivariateNormalDistributions
    from geomstats.information_geometry.poisson import PoissonDistributions

    return (
        (BinomialDistributions, "bernoulli", "probabilities"),
        (CategoricalDistributions, "categorical", "probabilities"),
        (PoissonDistributions, "poisson", "rates"),
        (UnivariateNormalDistributions, "gaussian", "std"),
    )


SUPPORTED_SPACES = (
    "BinomialDistributions(n_draws=1)",
    "CategoricalDistributions(dim)",
    "PoissonDistributions()",
    "NormalDistributions(sample_dim=1)",
)
"""The geomstats families ``output=`` accepts."""


def family_of_space(space):
    """Family name, default parametrisation and category count of a geomstats information manifold.

    Parameters
    ----------
    space : geomstats.information_geometry.base.InformationManifoldMixin
        One of :data:`SUPPORTED_SPACES`.

    Returns
    -------
    family : str
    parametrisation : str
        geomstats' coordinates of the family.
    n_categories : int or None
        ``dim + 1`` for a categorical family.

    Raises
    ------
    ValueError
        For any other family (a binomial with ``n_draws != 1`` included).
    """
    for cls, family, parametrisation in _supported_spaces():
        if isinstance(space, cls):
            if family == "bernoulli" and space.n_draws != 1:
                break
            return family, parametrisation, space.dim + 1 if family == "categorical" else None
    raise ValueError(
        f"output={type(space).__name__} is not a supported geomstats family; supported: "
        f"{', '.join(SUPPORTED_SPACES)}, or a name in {tuple(FAMILIES)}."
    )


def _is_information_manifold(obj):
    from geomstats.information_geometry.base import InformationManifoldMixin

    return isinstance(obj, InformationManifoldMixin)


# ---------------------------------------------------------------- the decoder adapter


class OutputDecoder(torch.nn.Module):
    """A decoder followed by the Fisher–Rao embedding of its output family.

    The Euclidean pullback metric of this module is the Fisher–Rao pullback
    metric of ``decoder``'s output distribution (see the module docstring).

    Parameters
    ----------
    decoder : torch.nn.Module or callable
        ``[B, d] -> [B, *data_shape]``: the family's parameters per entry
        (for ``"categorical"``, over the last axis of ``data_shape``). For
        ``"gaussian"``: a :class:`~geomstats_pullback.decoders.StochasticDecoder`
        (its ``mean`` and ``std`` maps), or a callable returning a pair
        ``(mean, std)`` of one shape.
    family : {"bernoulli", "categorical", "poisson", "gaussian"} or geomstats space
        Or a geomstats ``InformationManifoldMixin`` of
        :data:`SUPPORTED_SPACES`; its coordinates are then the default
        parametrisation.
    parametrisation : str, optional
        What the decoder returns: ``"logits"`` (default) or
        ``"probabilities"`` for Bernoulli and categorical, ``"log_rates"``
        (default) or ``"rates"`` for Poisson, ``"std"`` (default) or
        ``"log_std"`` (the second output) for Gaussian.
    std_floor : float, optional
        Gaussian only: the pseudosphere's floor ``c``, below every standard
        deviation the decoder returns (a ``ValueError`` otherwise); larger is
        better for the discrete geodesic solver (module docstring). Default:
        half the ``min_std`` attribute of a ``StochasticDecoder``'s ``std``
        map if it has a positive one (the demo's ``RBFStd`` does); else it
        must be given.

    Raises
    ------
    ValueError
        If ``family`` or ``parametrisation`` is unknown, or ``std_floor`` is
        missing (Gaussian) or given for another family.

    Examples
    --------
    >>> import torch, geomstats_pullback as gp
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 5)).double().eval()
    >>> space = gp.DecoderManifold(gp.OutputDecoder(net, "bernoulli"), latent_dim=2)
    >>> space.metric.metric_matrix(space.random_point(3)).shape
    torch.Size([3, 2, 2])
    """

    def __init__(self, decoder, family, *, parametrisation=None, std_floor=None):
        if not callable(decoder):
            raise TypeError(f"decoder must be callable, got {type(decoder).__name__}.")
        self.n_categories = None
        if not isinstance(family, str) and _is_information_manifold(family):
            family, default, self.n_categories = family_of_space(family)
            parametrisation = default if parametrisation is None else parametrisation
        if family not in FAMILIES:
            raise ValueError(f"family must be one of {tuple(FAMILIES)} or a geomstats family ({', '.join(SUPPORTED_SPACES)}), got {family!r}.")
        super().__init__()
        self.embedding, choices = FAMILIES[family]
        self.parametrisation = choices[0] if parametrisation is None else parametrisation
        _check_parametrisation(family, self.parametrisation)
        self.decoder = decoder
        self.family = family
        self.std_floor = None
        if family == "gaussian":
            self.std_floor = _pseudosphere(_default_floor(decoder) if std_floor is None else std_floor).floor
        elif std_floor is not None:
            raise ValueError(f"std_floor is a parameter of the gaussian family only, not of {family!r}.")
        # Follow the wrapped module's mode rather than nn.Module's default (training).
        self.training = getattr(decoder, "training", False)

    def forward(self, z):
        """Embedded outputs ``phi(decoder(z))``: ``[B, *data_shape]``, or ``[B, 3, *data_shape]`` for Gaussian."""
        if self.family == "gaussian":
            mean, spread = _mean_and_spread(self.decoder, z)
            return self.embedding(mean, spread, self.std_floor, self.parametrisation).movedim(0, 1)
        values = self.decoder(z)
        if self.n_categories is not None and values.shape[-1] != self.n_categories:
            raise ValueError(
                f"The categorical family has {self.n_categories} categories; the decoder's last axis has "
                f"{values.shape[-1]}."
            )
        return self.embedding(values, self.parametrisation)

    def extra_repr(self):
        floor = "" if self.std_floor is None else f", std_floor={self.std_floor:g}"
        return f"family={self.family!r}, parametrisation={self.parametrisation!r}{floor}"


def _split_maps(decoder):
    """``(mean, std)`` maps of a StochasticDecoder, else ``None``."""
    if isinstance(decoder, StochasticDecoder):
        return decoder.mean, decoder.std
    return None


def _mean_and_spread(decoder, z):
    maps = _split_maps(decoder)
    if maps is not None:
        return maps[0](z), maps[1](z)
    out = decoder(z)
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        raise TypeError(
            "output='gaussian' needs a StochasticDecoder or a decoder returning a pair (mean, std), "
            f"got one returning {type(out).__name__}."
        )
    return out


def _default_floor(decoder):
    maps = _split_maps(decoder)
    min_std = getattr(maps[1], "min_std", None) if maps is not None else None
    if min_std is not None and float(min_std) > 0:
        return float(min_std) / 2
    raise ValueError(
        "output='gaussian' needs std_floor (output_kwargs={'std_floor': c}): a positive number below every "
        "standard deviation the decoder returns; the decoder declares no positive min_std to derive it from."
    )
