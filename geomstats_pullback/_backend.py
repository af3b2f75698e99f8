"""Choose and check geomstats' backend before anything imports geomstats.

geomstats reads ``GEOMSTATS_BACKEND`` once, at its first import. We need a
backend that can differentiate the decoder: ``pytorch`` (torch decoders) or
``autograd`` (``autograd.numpy`` decoders). ``pytorch`` is chosen when
nothing was chosen yet; a numpy backend is refused with an ``ImportError``.
"""

import logging
import os
import sys

SUPPORTED_BACKENDS = ("pytorch", "autograd")


def select_backend():
    """Select ``pytorch`` if no backend was chosen; refuse unsupported ones.

    Returns
    -------
    name : str
        The backend geomstats runs on.

    Raises
    ------
    ImportError
        If geomstats is, or will be, loaded with a backend that cannot
        differentiate a decoder.
    """
    loaded = sys.modules.get("geomstats._backend")
    if loaded is not None:
        name = loaded.BACKEND_NAME
        origin = "geomstats was already imported with"
    else:
        name = os.environ.setdefault("GEOMSTATS_BACKEND", "pytorch")
        origin = "GEOMSTATS_BACKEND selects"
    if name not in SUPPORTED_BACKENDS:
        raise ImportError(
            f"geomstats_pullback needs a differentiable geomstats backend, but {origin} "
            f"the '{name}' backend. Set the environment variable GEOMSTATS_BACKEND=pytorch "
            "(or autograd, for autograd.numpy decoders) before the first import of geomstats."
        )
    if loaded is None:
        root = logging.getLogger()
        level = root.level
        import geomstats  # noqa: F401  (first import: reads the variable)

        root.setLevel(level)  # geomstats raises the root logger to INFO; undo that.
    return name
