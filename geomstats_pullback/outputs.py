r"""Output geometries: the Fisher–Rao metric of a decoder's output distribution.

A decoder whose outputs parametrise a distribution per entry (Bernoulli
pixels, a categorical over the last axis, Poisson counts) carries the
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
  ``l`` it is ``2 arctan(exp(l / 2)) = pi / 2 + 2 arctan(tanh(l / 4))``,
  computed in the second form (no overflow); its derivative
  ``1 / (2 cosh(l / 2))`` squares to ``p (1 - p)``, the Fisher information in
  logits. From probabilities, ``d phi / dp = 1 / sqrt(p (1 - p))`` is infinite
  at ``p in {0, 1}`` (the metric is then not finite and the adapters raise
  ``FloatingPointError``): prefer logits.
- Categorical over the last axis, ``p = softmax(l)``: ``phi(p) = 2 sqrt(p)``,
  computed as ``2 exp((l - logsumexp(l)) / 2)``. Its image is the sphere of
  radius 2, and the distance along it is ``2 arccos(sum sqrt(p q))``.
- Poisson, ``lambda = exp(r)``: ``phi(lambda) = 2 sqrt(lambda)``, computed as
  ``2 exp(r / 2)`` from log-rates ``r``, or from rates directly.

The Gaussian family is not offered. The Fisher–Rao metric of the normal
family on ``(mu, sigma)`` is ``(d mu^2 + 2 d sigma^2) / sigma^2`` per entry,
a hyperbolic half-plane of curvature ``-1/2``. Its Euclidean embeddings are
not of the cheap kind above: the images of maps into ``R`` or ``R^2`` per
coordinate are flat, Hilbert's theorem excludes ``R^3``, and the known
explicit isometric embeddings need more coordinates per entry and are not
closed-form maps suited to a jvp (Blanuša's, into ``R^6``, is built from
series). :class:`~geomstats_pullback.decoders.StochasticDecoder` gives the
*expected* metric of a Gaussian decoder instead, ``J_mu^T J_mu + J_sigma^T
J_sigma``, the Euclidean pullback of ``z -> [mu(z), sigma(z)]`` (Arvanitidis,
Hansen and Hauberg, 2018); it differs from the Fisher–Rao pullback by the
``1 / sigma^2`` weighting and the factor 2 on ``sigma``.
"""

import math

import torch

from geomstats_pullback._validation import check_in_range

__all__ = ["FAMILIES", "OutputDecoder", "bernoulli_map", "categorical_map", "poisson_map"]


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
        return math.pi / 2 + 2 * torch.atan(torch.tanh(values / 4))
    _check_parametrisation("bernoulli", parametrisation)
    return 2 * torch.asin(torch.sqrt(check_in_range(values, "Bernoulli probabilities", low=0.0, high=1.0)))


def categorical_map(values, parametrisation="logits"):
    """Fisher–Rao embedding of a categorical over the last axis, ``2 sqrt(softmax(l))``.

    Parameters
    ----------
    values : torch.Tensor, shape=[..., K]
        Logits over ``K`` categories.
    parametrisation : {"logits"}

    Returns
    -------
    embedded : torch.Tensor, shape=[..., K]
        On the sphere of radius 2.
    """
    _check_parametrisation("categorical", parametrisation)
    return 2 * torch.exp((values - torch.logsumexp(values, dim=-1, keepdim=True)) / 2)


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
        return 2 * torch.exp(values / 2)
    _check_parametrisation("poisson", parametrisation)
    return 2 * torch.sqrt(check_in_range(values, "Poisson rates", low=0.0))


FAMILIES = {
    "bernoulli": (bernoulli_map, ("logits", "probabilities")),
    "categorical": (categorical_map, ("logits",)),
    "poisson": (poisson_map, ("log_rates", "rates")),
}
"""Family name -> (embedding map, accepted parametrisations; the first is the default)."""


def _check_parametrisation(family, parametrisation):
    choices = FAMILIES[family][1]
    if parametrisation not in choices:
        raise ValueError(f"parametrisation of the {family} family must be one of {choices}, got {parametrisation!r}.")


class OutputDecoder(torch.nn.Module):
    """A decoder followed by the Fisher–Rao embedding of its output family.

    The Euclidean pullback metric of this module is the Fisher–Rao pullback
    metric of ``decoder``'s output distribution (see the module docstring).

    Parameters
    ----------
    decoder : torch.nn.Module or callable
        ``[B, d] -> [B, *data_shape]``: the family's parameters per entry
        (for ``"categorical"``, logits over the last axis of ``data_shape``).
    family : {"bernoulli", "categorical", "poisson"}
    parametrisation : str, optional
        What the decoder returns: ``"logits"`` (default) or
        ``"probabilities"`` for Bernoulli, ``"logits"`` for categorical,
        ``"log_rates"`` (default) or ``"rates"`` for Poisson.

    Raises
    ------
    ValueError
        If ``family`` or ``parametrisation`` is unknown.

    Examples
    --------
    >>> import torch, geomstats_pullback as gp
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 5)).double().eval()
    >>> space = gp.DecoderManifold(gp.OutputDecoder(net, "bernoulli"), latent_dim=2)
    >>> space.metric.metric_matrix(space.random_point(3)).shape
    torch.Size([3, 2, 2])
    """

    def __init__(self, decoder, family, *, parametrisation=None):
        if not callable(decoder):
            raise TypeError(f"decoder must be callable, got {type(decoder).__name__}.")
        if family not in FAMILIES:
            raise ValueError(f"family must be one of {tuple(FAMILIES)}, got {family!r}.")
        super().__init__()
        self.embedding, choices = FAMILIES[family]
        self.parametrisation = choices[0] if parametrisation is None else parametrisation
        _check_parametrisation(family, self.parametrisation)
        self.decoder = decoder
        self.family = family
        # Follow the wrapped module's mode rather than nn.Module's default (training).
        self.training = getattr(decoder, "training", False)

    def forward(self, z):
        """Embedded outputs ``phi(decoder(z))``, shape ``[B, *data_shape]``."""
        return self.embedding(self.decoder(z), self.parametrisation)

    def extra_repr(self):
        return f"family={self.family!r}, parametrisation={self.parametrisation!r}"
