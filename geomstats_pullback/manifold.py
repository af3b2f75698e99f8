"""The latent space of a decoder as a geomstats manifold (an open subset of R^d)."""

import warnings

import geomstats.backend as gs
import numpy as np
from geomstats.geometry.manifold import Manifold

from geomstats_pullback._arrays import normal, randint, uniform, where, zeros
from geomstats_pullback._validation import as_latent
from geomstats_pullback.decoders import Decoder, as_decoder
from geomstats_pullback.errors import InvertibleDecoderWarning
from geomstats_pullback.kernels import gram, singular_mask
from geomstats_pullback.metric import PullbackMetric
from geomstats_pullback.ensembles import EnsembleDecoder
from geomstats_pullback.outputs import FAMILIES, SUPPORTED_SPACES, OutputDecoder

OUTPUTS = ("euclidean", *FAMILIES)
#: A square Jacobian counts as invertible where its smallest singular value exceeds this times its largest.
INVERTIBLE_RTOL = 1e-6


class DecoderManifold(Manifold):
    """Latent space ``R^d`` of a decoder, equipped with its pullback metric.

    Parameters
    ----------
    decoder : torch.nn.Module, callable, StochasticDecoder or Decoder
        Maps latent points ``[B, d]`` to data ``[B, *data_shape]``. Under
        geomstats' autograd backend: a callable written with ``autograd.numpy``.
    latent_dim : int
        Latent dimension ``d``.
    region : tuple of (array-like, array-like) or array-like, optional
        Where :meth:`random_point` samples. A pair ``(low, high)`` of
        ``[d]`` bounds samples uniformly in that box; an array of latent
        codes ``[n, d]`` (e.g. a data set's encodings) samples among them.
        Default: the box ``[-1, 1]^d``, on the device the decoder runs on.
        Samples are drawn on the region's device.
    output : {"euclidean", "bernoulli", "categorical", "poisson", "gaussian"} or geomstats space
        Geometry of the data space. ``"euclidean"``: the decoder's outputs
        are points of ``R^D``. Otherwise they parametrise a distribution
        per entry (logits, log-rates or mean and std by default; see
        :class:`~geomstats_pullback.outputs.OutputDecoder`) and the metric is
        the pullback of that family's Fisher–Rao metric. A geomstats
        ``InformationManifoldMixin`` space of
        :data:`~geomstats_pullback.outputs.SUPPORTED_SPACES` names the family
        in geomstats' coordinates (``BinomialDistributions(n_draws=1)``:
        Bernoulli probabilities, ...).
    output_kwargs : dict, optional
        Keyword arguments of :class:`~geomstats_pullback.outputs.OutputDecoder`
        (``parametrisation``; ``std_floor`` for the Gaussian family).
    equip : bool
        Equip with :class:`~geomstats_pullback.metric.PullbackMetric`.
    metric_kwargs : dict, optional
        Keyword arguments of the metric (``eps``, ``rank_rtol``, solvers).
    **decoder_kwargs
        ``dtype``/``device`` to evaluate a torch decoder in.

    Warns
    -----
    InvertibleDecoderWarning
        If ``output="euclidean"``, ``d = D`` and the Jacobian is invertible
        at the centre and two corners of the sampling box (or at the first
        three codes): the pullback is the data space's flat metric in other
        coordinates (:func:`check_invertible`; one Jacobian of three points,
        computed only when ``d = D``).

    Examples
    --------
    >>> import torch, geomstats_pullback as gp
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 5))
    >>> space = gp.DecoderManifold(net, latent_dim=2)
    >>> space.metric.metric_matrix(space.random_point(3)).shape
    torch.Size([3, 2, 2])
    """

    def __init__(
        self, decoder, latent_dim, *, output="euclidean", output_kwargs=None, region=None, equip=True,
        metric_kwargs=None, **decoder_kwargs,
    ):
        if isinstance(output, str) and output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS} or a geomstats family ({', '.join(SUPPORTED_SPACES)}), got {output!r}.")
        if not (isinstance(output, str) and output == "euclidean"):
            if isinstance(decoder, Decoder):
                raise TypeError(f"output={output!r} needs the torch decoder itself, not a {type(decoder).__name__} adapter.")
            if isinstance(decoder, EnsembleDecoder):
                raise TypeError(
                    f"output={output!r} on an ensemble would map its averaged stack, not each member: apply the "
                    f"output map per member, EnsembleDecoder([OutputDecoder(f, {output!r}), ...]) or "
                    f"MCDropoutDecoder(OutputDecoder(module, {output!r}), ...), with output='euclidean'."
                )
            decoder = OutputDecoder(decoder, output, **(output_kwargs or {}))
            output = decoder.family
        elif output_kwargs:
            raise ValueError("output_kwargs is only used with a distribution output (output='bernoulli', ...).")
        self.output = output
        self.decoder = as_decoder(decoder, latent_dim, **decoder_kwargs)
        super().__init__(dim=self.decoder.latent_dim, shape=(self.decoder.latent_dim,), equip=False)
        self.region = region
        if output == "euclidean":
            check_invertible(self)
        if equip:
            self.equip_with_metric(PullbackMetric, **(metric_kwargs or {}))

    @property
    def region(self):
        """Sampling region: ``("box", low, high)`` or ``("codes", codes)``."""
        return self._region

    @region.setter
    def region(self, region):
        dim = self.dim
        if region is None:
            ones = self.decoder.latent_array(np.ones(dim))
            self._region = ("box", -ones, ones)
        elif isinstance(region, tuple) and len(region) == 2:
            low, high = (as_latent(bound, dim, "region bound") for bound in region)
            if low.ndim != 1 or not bool(gs.all(low < high)):
                raise ValueError("region=(low, high) needs two [d] arrays with low < high.")
            self._region = ("box", low, high)
        else:
            codes = as_latent(region, dim, "region codes")
            if codes.ndim != 2 or codes.shape[0] == 0:
                raise ValueError("region codes must have shape [n, d] with n >= 1.")
            self._region = ("codes", codes)

    @staticmethod
    def default_metric():
        """Metric to equip the space with if equip is True."""
        return PullbackMetric

    def belongs(self, point, atol=gs.atol):
        """Whether points lie in the latent space: shape ``[..., d]`` and finite.

        Parameters
        ----------
        point : array-like, shape=[..., dim]

        Returns
        -------
        belongs : array-like, shape=[...]
        """
        point = point if gs.is_array(point) else gs.array(np.asarray(point))
        if point.ndim == 0 or point.shape[-1] != self.dim:
            return zeros(point.shape[:-1] if point.ndim else (), like=point, dtype=bool)
        return gs.all(gs.abs(point) < float("inf"), axis=-1)

    def is_tangent(self, vector, base_point=None, atol=gs.atol):
        """Whether vectors are tangent: any finite ``[..., d]`` vector is.

        Parameters
        ----------
        vector : array-like, shape=[..., dim]
        base_point : array-like, shape=[..., dim], unused

        Returns
        -------
        is_tangent : array-like, shape=[...]
        """
        return self.belongs(vector, atol)

    def to_tangent(self, vector, base_point=None):
        """Project to the tangent space: the identity on an open set.

        Parameters
        ----------
        vector : array-like, shape=[..., dim]
        base_point : array-like, shape=[..., dim], unused

        Returns
        -------
        tangent_vec : array-like, shape=[..., dim]
        """
        return as_latent(vector, self.dim, "vector")

    def projection(self, point):
        """Project to the manifold: the identity on an open set.

        Parameters
        ----------
        point : array-like, shape=[..., dim]

        Returns
        -------
        projected : array-like, shape=[..., dim]
        """
        return as_latent(point, self.dim, "point")

    def random_point(self, n_samples=1, bound=1.0):
        """Sample latent points from :attr:`region`.

        Parameters
        ----------
        n_samples : int
            Number of samples.
        bound : float
            Scales the box around its centre (ignored for a set of codes).

        Returns
        -------
        samples : array-like, shape=[..., dim]
            ``[dim]`` if ``n_samples == 1``, else ``[n_samples, dim]``.
        """
        kind, *params = self.region
        if kind == "box":
            low, high = params
            centre, half = (low + high) / 2, (high - low) / 2 * bound
            samples = centre + half * (2 * uniform((n_samples, self.dim), like=low) - 1)
        else:
            (codes,) = params
            index = randint(codes.shape[0], (n_samples,), like=codes)
            samples = codes[index]
        return samples[0] if n_samples == 1 else samples

    def random_tangent_vec(self, base_point=None, n_samples=1):
        """Sample small tangent vectors, for generic tests and examples.

        Gaussian in latent coordinates with standard deviation a tenth of the
        sampling region's half-width per coordinate (box), or of half the
        range of the codes (codes), so that short geodesics stay near the
        region. Like geomstats' own, not a distribution related to the metric.

        Parameters
        ----------
        base_point : array-like, shape=[..., dim], optional
            Base points; the vectors get their batch shape.
        n_samples : int
            Number of vectors when ``base_point`` is a single point or None.

        Returns
        -------
        tangent_vec : array-like, shape=[..., dim]
        """
        batch_shape = (n_samples,) if n_samples > 1 else ()
        if base_point is not None:
            base_point = as_latent(base_point, self.dim, "base_point")
            if base_point.ndim > 1:
                if n_samples > 1 and n_samples != base_point.shape[0]:
                    raise ValueError(
                        f"n_samples={n_samples} does not match the {base_point.shape[0]} base points."
                    )
                batch_shape = tuple(base_point.shape[:-1])
        kind, *params = self.region
        if kind == "box":
            low, high = params
            half_width = (high - low) / 2
        else:
            (codes,) = params
            half_width = (gs.amax(codes, axis=0) - gs.amin(codes, axis=0)) / 2
            half_width = where(half_width > 0, half_width, 1.0)
        return 0.1 * half_width * normal(batch_shape + (self.dim,), like=half_width)


def check_invertible(space):
    """Warn :class:`~geomstats_pullback.errors.InvertibleDecoderWarning` if the decoder is a square diffeomorphism.

    Checks ``D == d`` and the singular values of ``J`` at three points of
    ``space.region`` (the box's centre and two opposite corners pulled a
    quarter of the way in, or the first three codes): full rank at all of
    them (``sigma_min > INVERTIBLE_RTOL sigma_max``) counts as invertible.
    Sampling leaves geomstats' random state alone.

    Parameters
    ----------
    space : DecoderManifold

    Returns
    -------
    invertible : bool
    """
    decoder = space.decoder
    if decoder.output_dim != decoder.latent_dim:
        return False
    kind, *params = space.region
    if kind == "box":
        low, high = params
        centre, half = (low + high) / 2, (high - low) / 2
        points = gs.stack([centre, centre - 0.75 * half, centre + 0.75 * half])
    else:
        points = params[0][:3]
    try:
        jac = decoder.jacobian(points)  # [3, d, d]
    except FloatingPointError:  # not finite there: no claim either way
        return False
    if bool(gs.any(singular_mask(gram(jac), rank_rtol=INVERTIBLE_RTOL**2))):
        return False
    warnings.warn(
        f"The decoder maps R^{decoder.latent_dim} to R^{decoder.output_dim} with an invertible Jacobian "
        "(a normalising flow, a probability-flow ODE, ...): its pullback metric is the data space's "
        "Euclidean metric in other coordinates. Geodesics decode to straight lines in data space and the "
        "distance is |f(z1) - f(z0)| where the decoder's image is convex: use the data-space distance "
        "rather than geodesic solvers (see InvertibleDecoderWarning).",
        InvertibleDecoderWarning,
        stacklevel=3,
    )
    return True
