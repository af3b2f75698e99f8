"""geomstats' stock pullback metric on the same decoder, for comparisons.

:class:`StockPullbackSpace` is geomstats' ``ImmersedSet`` whose immersion is a
torch decoder, equipped with geomstats' own ``PullbackMetric`` and its default
solvers (explicit Euler exp, shooting log). It is the baseline our tests and
benchmarks measure against; it is not meant for real work.
"""

import geomstats.backend as gs
from geomstats.geometry.base import ImmersedSet
from geomstats.geometry.euclidean import Euclidean

from geomstats_pullback.decoders import as_decoder


class StockPullbackSpace(ImmersedSet):
    """geomstats' ``ImmersedSet`` with a decoder as immersion.

    Parameters
    ----------
    decoder : torch.nn.Module or callable
        ``[B, d] -> [B, *data_shape]``.
    latent_dim : int
        ``d``.
    """

    def __init__(self, decoder, latent_dim, equip=True):
        self.decoder = as_decoder(decoder, latent_dim)
        super().__init__(dim=latent_dim, equip=equip)

    def _define_embedding_space(self):
        return Euclidean(dim=self.decoder.output_dim)

    def immersion(self, point):
        """Flattened decoder output, ``[..., dim] -> [..., D]``."""
        flat = gs.reshape(point, (-1, self.dim))
        out = self.decoder.differentiable_call(flat)
        return gs.reshape(out, point.shape[:-1] + (self.decoder.output_dim,))

    def belongs(self, point, atol=gs.atol):
        """Any finite latent point belongs."""
        return gs.all(gs.abs(point) < float("inf"), axis=-1)
