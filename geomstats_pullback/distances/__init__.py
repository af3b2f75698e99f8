"""Pairwise geodesic distances and geodesic k-nearest neighbours of latent points.

- :mod:`~geomstats_pullback.distances.matrix`: distance matrices;
- :mod:`~geomstats_pullback.distances.neighbors`: k-NN search and graphs;
- :mod:`~geomstats_pullback.distances.runner`: blocks run in this process or on Dask;
- :mod:`~geomstats_pullback.distances.store`: finished blocks on disk, for resuming;
- :mod:`~geomstats_pullback.distances.fingerprint`: what identifies a computation.
"""

from geomstats_pullback.distances.matrix import PairwiseDistances, pairwise_distances
from geomstats_pullback.distances.neighbors import (
    GeodesicNeighbors,
    geodesic_kneighbors,
    geodesic_kneighbors_graph,
)
from geomstats_pullback.distances.runner import DEFAULT_BLOCK_SIZE, BlockRunStats

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "BlockRunStats",
    "GeodesicNeighbors",
    "PairwiseDistances",
    "geodesic_kneighbors",
    "geodesic_kneighbors_graph",
    "pairwise_distances",
]
