"""Problems shared by the distance tests, their subprocesses and Dask workers.

The real solvers with a coarse configuration (9 path nodes, 4 eighth-order steps) keep the
tests fast; on the sphere chart they still agree with the great-circle distance to
about 1e-6. Reference matrices are computed once per test session.
"""

import functools
import os
import time
from pathlib import Path

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
    from geomstats_pullback import (
        cli,  # not at top: the Dask workers that import this file need no CLI
    )

    try:
        return cli.main(["distances", *argv])
    except SystemExit as exit:
        return exit.code


def wait_until(condition, *, timeout, what):
    """Wait for ``condition()`` to hold (polled), failing with ``what`` after ``timeout`` seconds.

    The tests wait for events (a stored block, a file, a cleared scheduler), never for a fixed time.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


class Gate:
    """A log solver's ``solve`` that lets the first ``k`` blocks through and holds every later one until the gate opens.

    ``Gate(solver.solve, folder)`` stands in for the solver (Dask: it pickles), or
    ``solver.solve = Gate(solver.solve, folder).solve`` keeps the solver, and so the store's
    fingerprint. The gate is a folder shared by all processes: the first ``k`` callers each take a
    ticket ``ticket-<i>`` (O_EXCL); later callers create ``waiting-<pid>`` and wait for ``open``.
    """

    def __init__(self, solve, folder, k=1):
        self.inner, self.folder, self.k = solve, str(folder), k

    def solve(self, point, base_point):
        folder = Path(self.folder)
        for i in range(self.k):
            try:
                os.close(os.open(folder / f"ticket-{i}", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                break
            except FileExistsError:
                continue
        else:
            (folder / f"waiting-{os.getpid()}").touch()
            wait_until((folder / "open").exists, timeout=300, what="the gate to open")
        return self.inner(point, base_point)

    @staticmethod
    def open(folder):
        (Path(folder) / "open").touch()

    @staticmethod
    def waiting(folder):
        """Process ids of the callers held at the gate."""
        return {int(path.name.split("-")[1]) for path in Path(folder).glob("waiting-*")}
