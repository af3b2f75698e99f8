"""Riemannian geometry on the latent spaces of deep generative models.

Importing this package selects geomstats' ``pytorch`` backend when no backend
was chosen, and raises ``ImportError`` if geomstats already runs on a backend
that cannot differentiate a decoder (see ``GEOMSTATS_BACKEND``). It does not
import scikit-learn, pandas or matplotlib: :class:`PullbackFrechetMean` (a
scikit-learn estimator) is imported on first use, and the demo and the
command line are submodules imported only when asked for.
"""

from geomstats_pullback._backend import select_backend
from geomstats_pullback._lazy import lazy_attributes

BACKEND = select_backend()

from geomstats_pullback.decoders import (  # noqa: E402
    AutogradDecoder,
    Decoder,
    StochasticDecoder,
    TorchDecoder,
    as_decoder,
    get_memory_budget,
    set_memory_budget,
)
from geomstats_pullback.ensembles import EnsembleDecoder, MCDropoutDecoder  # noqa: E402
from geomstats_pullback.curvature import SectionalCurvatureSample, sample_sectional_curvatures  # noqa: E402
from geomstats_pullback.distances import (  # noqa: E402
    BlockRunStats,
    GeodesicNeighbors,
    PairwiseDistances,
    geodesic_kneighbors,
    geodesic_kneighbors_graph,
    pairwise_distances,
)
from geomstats_pullback.errors import (  # noqa: E402
    CheckpointError,
    ConvergenceWarning,
    DecoderDifferentiationError,
    DistanceStoreError,
    InvertibleDecoderWarning,
    MemoryBudgetError,
    RankDeficientJacobianError,
)
from geomstats_pullback.geodesics import GeodesicBVPResult, GeodesicBVPSolver, GeodesicIVPSolver  # noqa: E402
from geomstats_pullback.geodesics.density import GaussianMixtureDensity  # noqa: E402
from geomstats_pullback.manifold import DecoderManifold  # noqa: E402
from geomstats_pullback.metric import PullbackMetric  # noqa: E402
from geomstats_pullback.outputs import OutputDecoder  # noqa: E402
from geomstats_pullback.paths import decoded_path, linear_path, path_length  # noqa: E402
from geomstats_pullback.analogies import analogy, transport_along_path  # noqa: E402
from geomstats_pullback.sampling import CodeSupport, MCMCSamples, geodesic_random_walk, sample_volume  # noqa: E402
from geomstats_pullback import regularizers  # noqa: E402
from geomstats_pullback.diagnostics import Diagnostics, diagnose, plot_diagnostics  # noqa: E402

__version__ = "0.1.0"

_LAZY = {"PullbackFrechetMean": "geomstats_pullback.statistics"}  # name -> module importing scikit-learn

__getattr__, __dir__ = lazy_attributes(globals(), _LAZY)


__all__ = [
    "analogy",
    "as_decoder",
    "AutogradDecoder",
    "BACKEND",
    "BlockRunStats",
    "CheckpointError",
    "CodeSupport",
    "ConvergenceWarning",
    "decoded_path",
    "Decoder",
    "diagnose",
    "Diagnostics",
    "DecoderDifferentiationError",
    "DecoderManifold",
    "DistanceStoreError",
    "EnsembleDecoder",
    "GaussianMixtureDensity",
    "geodesic_random_walk",
    "geodesic_kneighbors",
    "geodesic_kneighbors_graph",
    "GeodesicBVPResult",
    "GeodesicBVPSolver",
    "GeodesicIVPSolver",
    "GeodesicNeighbors",
    "InvertibleDecoderWarning",
    "get_memory_budget",
    "linear_path",
    "MCDropoutDecoder",
    "MCMCSamples",
    "MemoryBudgetError",
    "OutputDecoder",
    "pairwise_distances",
    "PairwiseDistances",
    "path_length",
    "plot_diagnostics",
    "PullbackFrechetMean",
    "PullbackMetric",
    "RankDeficientJacobianError",
    "sample_volume",
    "regularizers",
    "sample_sectional_curvatures",
    "SectionalCurvatureSample",
    "set_memory_budget",
    "StochasticDecoder",
    "TorchDecoder",
    "transport_along_path",
]
