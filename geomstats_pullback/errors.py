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


class MemoryBudgetError(ValueError):
    """The memory budget of a derivative call is too small for a single latent point."""


class DecoderDifferentiationError(RuntimeError):
    """The decoder cannot be differentiated (cut graph, piecewise-constant layer, in-place operation)."""
