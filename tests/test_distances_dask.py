"""Pairwise geodesic distances on a Dask LocalCluster (2 worker processes)."""

import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import sphere_points

import geomstats_pullback as gp
from geomstats_pullback import analytic, distances_cli
from geomstats_pullback._blockstore import BlockStore

from _fake_log_solvers import SphereLog, StraightLineLog  # TEMPORARY until branch `log` lands

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as cluster, distributed.Client(cluster) as client:
        yield client


def _metric(decoder, solver=SphereLog):
    space = gp.DecoderManifold(decoder, latent_dim=2)
    space.metric.log_solver = solver(space.metric)
    return space.metric


def n_stored(path):
    return len(list((Path(path) / "blocks").rglob("*.npz")))


def _our_tasks(dask_scheduler):
    return [key for key in dask_scheduler.tasks if "geodesic-block" in str(key) or "PullbackMetric" in str(key)]


class CountingChart(torch.nn.Module):
    """The sphere chart, counting how often this process unpickles it."""

    unpickled = 0

    def forward(self, z):
        return analytic.sphere_chart(z)

    def __setstate__(self, state):
        type(self).unpickled += 1
        super().__setstate__(state)


def _unpickle_count():
    return CountingChart.unpickled


class Sleepy:
    """Delegates to a solver, sleeping before each block (to kill a worker mid-run)."""

    def __init__(self, solver, seconds):
        self.solver, self.seconds = solver, seconds

    def solve(self, point, base_point):
        time.sleep(self.seconds)
        return self.solver.solve(point, base_point)


def test_dask_matches_in_process_bit_for_bit(client):
    for metric, X in [
        (_metric(analytic.sphere_chart), sphere_points(14)),
        (_metric(analytic.random_mlp((2, 16, 16, 10), seed=1), StraightLineLog), torch.rand(12, 2) * 2 - 1),
    ]:
        local = gp.pairwise_distances(metric, X, block_size=4, progress=False)
        remote = gp.pairwise_distances(metric, X, block_size=4, client=client, progress=False)
        np.testing.assert_array_equal(remote.dist, local.dist)
        np.testing.assert_array_equal(remote.converged, local.converged)
        assert remote.stats.n_computed == local.stats.n_blocks
        rect = gp.pairwise_distances(metric, X, X[:5], block_size=3, client=client, progress=False)
        np.testing.assert_array_equal(rect.dist, gp.pairwise_distances(metric, X, X[:5], block_size=3,
                                                                        progress=False).dist)


def test_metric_is_shipped_once_per_worker_not_per_task(client):
    metric = _metric(CountingChart())
    before = sum(client.run(_unpickle_count).values())
    result = gp.pairwise_distances(metric, sphere_points(16), block_size=2, client=client, progress=False)
    assert result.stats.n_computed == 36
    shipped = sum(client.run(_unpickle_count).values()) - before
    assert 1 <= shipped <= len(client.nthreads())


def test_kneighbors_on_dask_match_in_process(client):
    metric, X = _metric(analytic.sphere_chart), sphere_points(18)
    local = gp.geodesic_kneighbors(metric, X, n_neighbors=3, block_size=5, progress=False)
    remote = gp.geodesic_kneighbors(metric, X, n_neighbors=3, block_size=5, client=client, progress=False)
    np.testing.assert_array_equal(remote.indices, local.indices)
    np.testing.assert_array_equal(remote.dist, local.dist)


def test_killed_worker_loses_no_block(client, tmp_path):
    metric, X = _metric(analytic.sphere_chart), sphere_points(15)
    local = gp.pairwise_distances(metric, X, block_size=3, progress=False)
    metric.log_solver = Sleepy(metric.log_solver, 0.4)
    outcome = {}

    def run():
        try:
            outcome["result"] = gp.pairwise_distances(metric, X, block_size=3, client=client, out=tmp_path,
                                                      progress=False)
        except BaseException as error:  # reported below
            outcome["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 60
    while (not (tmp_path / "blocks").exists() or n_stored(tmp_path) < 2) and time.monotonic() < deadline:
        time.sleep(0.02)
    pids = client.run(os.getpid)
    victim = sorted(pids.values())[0]
    os.kill(victim, signal.SIGKILL)
    done_at_kill = n_stored(tmp_path)
    thread.join(timeout=180)
    assert not thread.is_alive()
    assert "error" not in outcome, outcome.get("error")
    assert 2 <= done_at_kill < 15
    result = outcome["result"]
    assert result.stats.n_computed == 15 and n_stored(tmp_path) == 15
    np.testing.assert_array_equal(result.dist, local.dist)
    client.wait_for_workers(2, timeout=120)
    assert victim not in client.run(os.getpid).values()


def test_interrupted_dask_run_resumes_only_missing_blocks(client, tmp_path, monkeypatch):
    metric, X = _metric(analytic.sphere_chart), sphere_points(15)
    local = gp.pairwise_distances(metric, X, block_size=3, progress=False)
    write, writes = BlockStore.write, []

    def interrupted_write(self, key, dist, converged):
        if len(writes) == 4:
            raise KeyboardInterrupt  # Ctrl-C in the driver while blocks are in flight
        writes.append(key)
        write(self, key, dist, converged)

    monkeypatch.setattr(BlockStore, "write", interrupted_write)
    with pytest.raises(KeyboardInterrupt):
        gp.pairwise_distances(metric, X, block_size=3, client=client, out=tmp_path, progress=False)
    monkeypatch.setattr(BlockStore, "write", write)
    assert n_stored(tmp_path) == 4
    deadline = time.monotonic() + 30  # the pending tasks were cancelled
    while client.run_on_scheduler(_our_tasks) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not client.run_on_scheduler(_our_tasks)

    resumed = gp.pairwise_distances(metric, X, block_size=3, client=client, out=tmp_path, progress=False)
    assert resumed.stats.n_computed == 15 - 4
    np.testing.assert_array_equal(resumed.dist, local.dist)


def test_cli_on_a_scheduler_address(client, tmp_path, monkeypatch):
    def manifold(decoder, latent_dim, **kwargs):  # TEMPORARY stand-in solver, see tests/_fake_log_solvers.py
        space = gp.DecoderManifold(decoder, latent_dim, **kwargs)
        space.metric.log_solver = SphereLog(space.metric)
        return space

    monkeypatch.setattr(distances_cli, "DecoderManifold", manifold)
    X = sphere_points(10)
    np.save(tmp_path / "codes.npy", X.numpy())
    argv = [str(tmp_path / "codes.npy"), "--analytic", "sphere_chart", "--out", str(tmp_path / "store"),
            "--block-size", "4", "--scheduler", client.scheduler.address, "--no-progress"]
    assert distances_cli.distance_matrix_main(argv) == 0
    expected = gp.pairwise_distances(_metric(analytic.sphere_chart), X, block_size=4, progress=False).dist
    np.testing.assert_array_equal(np.load(tmp_path / "store" / "dist.npy"), expected)
