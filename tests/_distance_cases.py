"""Problems shared by the distance tests, their subprocesses and Dask workers.

The real solvers with a coarse configuration (9 path nodes, 4 eighth-order steps) keep the
tests fast; on the sphere chart they still agree with the great-circle distance to
about 1e-6. Reference matrices are computed once per test session.
"""

import functools

import numpy as np
import torch

import geomstats_pullback as gp
from geomstats_pullback import analytic
from geomstats_pullback.geodesics import GeodesicBVPSolver, GeodesicIVPSolver

SPHERE_BLOCK = 5  # 9 points -> blocks (0, 0), (0, 1), (1, 1): 10 + 20 + 6 pairs
MLP_BLOCK = 4  # 8 points -> blocks (0, 0), (0, 1), (1, 1): 6 + 16 + 6 pairs


def coarse(space, **log_solver_kwargs):
    """Equip ``space``'s metric with coarse real solvers; returns the metric."""
    space.metric.exp_solver = GeodesicIVPSolver(space, n_steps=4)
    space.metric.log_solver = GeodesicBVPSolver(space, n_nodes=9, **log_solver_kwargs)
    return space.metric


def sphere_metric(decoder=analytic.sphere_chart, **log_solver_kwargs):
    return coarse(gp.DecoderManifold(decoder, latent_dim=2), **log_solver_kwargs)


def mlp_metric(seed=1):
    return coarse(gp.DecoderManifold(analytic.random_mlp((2, 16, 16, 10), seed=seed), latent_dim=2))


def sphere_points(n, seed=0):
    """Spherical angles whose geodesics stay inside the chart, ``[n, 2]``.

    Azimuths span less than pi, so that the shortest great-circle arc between
    two points is a curve of the chart and the latent geodesic distance is the
    great-circle distance; colatitudes stay away from the poles.
    """
    rng = np.random.default_rng(seed)
    return torch.as_tensor(np.stack([rng.uniform(0.9, 2.2, n), rng.uniform(-1.2, 1.2, n)], axis=-1))


def sphere_x():
    return sphere_points(9)


def mlp_x():
    return torch.as_tensor(np.random.default_rng(3).uniform(-1, 1, size=(8, 2)))


@functools.cache
def sphere_reference():
    """In-process matrix of ``sphere_x()``, blocks of ``SPHERE_BLOCK``."""
    return gp.pairwise_distances(sphere_metric(), sphere_x(), block_size=SPHERE_BLOCK, progress=False)


@functools.cache
def mlp_reference():
    """In-process matrix of ``mlp_x()``, blocks of ``MLP_BLOCK``."""
    return gp.pairwise_distances(mlp_metric(), mlp_x(), block_size=MLP_BLOCK, progress=False)


def great_circle(a, b):
    """Ground truth: geodesic distances on the unit sphere, ``[n, m]``."""
    fa, fb = analytic.sphere_chart(torch.as_tensor(a)).numpy(), analytic.sphere_chart(torch.as_tensor(b)).numpy()
    return np.arccos(np.clip(fa @ fb.T, -1.0, 1.0))


def n_stored(path):
    """Blocks written to a store."""
    return len(list((path / "blocks").rglob("*.npz"))) if (path / "blocks").exists() else 0


def run_distances(argv):
    """``geomstats-pullback distances ARGV`` in process: its exit status (2 for bad input)."""
    from geomstats_pullback import cli  # not at top: the Dask workers that import this file need no CLI

    try:
        return cli.main(["distances", *argv])
    except SystemExit as exit:
        return exit.code
