"""The demo behind ``geomstats-pullback demo``: a VAE on scikit-learn's digits, its geometry, a report.

:func:`run` trains (or loads) a :class:`~geomstats_pullback.demo.vae.VAE`,
computes every report section (``compute_<section>(...) -> <Section>Result``,
no drawing), then renders them (``render_<section>(result, report, ...)``,
figures and prose only) into ``report.html``, and writes the numbers to
``results.json``. Options are declared once, in :mod:`.config`.

``run`` and ``VAE`` are imported on first use (they pull matplotlib and
scikit-learn), so that the command line parses its options without them.
Once the submodule ``geomstats_pullback.demo.run`` is imported on its own,
the package attribute ``run`` is that module: import the function as
``from geomstats_pullback.demo.run import run`` to be safe.
"""

from geomstats_pullback._lazy import lazy_attributes

from geomstats_pullback.demo.config import DemoConfig

__all__ = ["VAE", "DemoConfig", "run"]

_LAZY = {"VAE": "geomstats_pullback.demo.vae", "run": "geomstats_pullback.demo.run"}

__getattr__, __dir__ = lazy_attributes(globals(), _LAZY)
