"""The demo behind ``geomstats-pullback demo``: a VAE on scikit-learn's digits, its geometry, a report.

:func:`run` trains (or loads) a :class:`~geomstats_pullback.demo.vae.VAE`,
computes every report section (``compute_<section>(...) -> <Section>Result``,
no drawing), then renders them (``render_<section>(result, report, ...)``,
figures and prose only) into ``report.html``, and writes the numbers to
``results.json``. Options are declared once, in :mod:`.config`.
"""

from geomstats_pullback.demo.config import DemoConfig
from geomstats_pullback.demo.run import run
from geomstats_pullback.demo.vae import VAE

__all__ = ["VAE", "DemoConfig", "run"]
