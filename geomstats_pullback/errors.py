"""Every exception and warning class of the library, in one place.

Each derives from the built-in class a caller would catch anyway
(``ValueError`` for bad input or state, ``UserWarning`` for warnings), so
``except ValueError`` keeps working.
"""


class RankDeficientJacobianError(ValueError):
    """The decoder's Jacobian lost rank: the pullback metric is degenerate there."""


class ConvergenceWarning(UserWarning):
    """A solver (geodesic problem, Fréchet mean) did not converge for some problems."""


class DistanceStoreError(ValueError):
    """A distance store that belongs to another computation (or is not a store at all)."""


class CheckpointError(ValueError):
    """A file is not a VAE checkpoint this version can read."""


class UsageError(Exception):
    """Bad command-line options or paths: reported in one line, exit status 2."""


class InvertibleDecoderWarning(UserWarning):
    """The decoder is square (``d = D``) with an invertible Jacobian: its pullback geometry is flat.

    A normalising flow, or a diffusion model's probability-flow ODE, maps the
    latent space diffeomorphically onto (part of) the data space. The
    pullback of the data space's Euclidean metric is then that metric in
    other coordinates: curvature zero, geodesics decoding to straight lines
    in data space, and, where the image is convex, the distance
    ``|f(z_1) - f(z_0)|``. Nothing is learned by the geometry; compute the
    data-space distance directly.
    """
class MemoryBudgetError(ValueError):
    """The memory budget of a derivative call is too small for a single latent point."""


class DecoderDifferentiationError(RuntimeError):
    """The decoder cannot be differentiated (cut graph, piecewise-constant layer, in-place operation)."""
