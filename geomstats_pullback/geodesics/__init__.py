"""Geodesic solvers, one algorithm per module.

- :mod:`.exp`: initial value problem (``exp``), :class:`GeodesicIVPSolver`.
- :mod:`.log`: boundary value problem (``log``, ``dist``), :class:`GeodesicBVPSolver`,
  built from :mod:`.discrete` (energy minimisation), :mod:`.correction`
  (fourth order), :mod:`.stencils`, :mod:`.shooting` and :mod:`.graph_init`.
"""

from geomstats_pullback.geodesics.exp import GeodesicIVPResult, GeodesicIVPSolver, default_integrator
from geomstats_pullback.geodesics.log import GeodesicBVPResult, GeodesicBVPSolver

__all__ = ["GeodesicBVPResult", "GeodesicBVPSolver", "GeodesicIVPResult", "GeodesicIVPSolver", "default_integrator"]
