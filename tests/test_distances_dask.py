"""Pairwise geodesic distances on a Dask LocalCluster (2 worker processes), real solver."""

import os
import signal
import threading

import numpy as np
import pytest
import torch
from _distance_cases import (
    MLP_BLOCK,
    SPHERE_BLOCK,
    Gate,
    mlp_metric,
    mlp_x,
    n_stored,
    run_distances,
    sphere_metric,
    sphere_points,
    sphere_reference,
    sphere_x,
    wait_until,
)

import geomstats_pullback as gp
from geomstats_pullback import analytic
from geomstats_pullback.distances import command as distances_command
from geomstats_pullback.distances.store import BlockStore

distributed = pytest.importorskip("distributed")

pytestmark = [pytest.mark.slow, pytest.mark.dask]


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as cluster, distributed.Client(cluster) as client:
        yield client


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


def in_process_one_thread(metric, X, block_size):
    """The in-process matrix with one torch thread, as on the workers (Dask's nannies set OMP_NUM_THREADS=1).

    With more threads, torch's reductions may differ in the last bit.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return gp.pairwise_distances(metric, X, block_size=block_size, progress=False)
    finally:
        torch.set_num_threads(threads)


def test_dask_matches_in_process_bit_for_bit(client):
    for metric, X, block_size in [
        (sphere_metric(), sphere_x(), SPHERE_BLOCK),
        (mlp_metric(), mlp_x(), MLP_BLOCK),
    ]:
        local = in_process_one_thread(metric, X, block_size)
        remote = gp.pairwise_distances(metric, X, block_size=block_size, client=client, progress=False)
        np.testing.assert_array_equal(remote.dist, local.dist)
        np.testing.assert_array_equal(remote.converged, local.converged)
        assert remote.stats.n_computed == local.stats.n_blocks == 3


def test_metric_is_shipped_once_per_worker_not_per_task(client):
    metric = sphere_metric(CountingChart())
    before = sum(client.run(_unpickle_count).values())
    # 6 points in blocks of 2: 6 blocks, 5 with pairs (block (2, 2) holds one point).
    result = gp.pairwise_distances(metric, sphere_points(5), block_size=2, client=client, progress=False)
    assert result.stats.n_computed == 6
    shipped = sum(client.run(_unpickle_count).values()) - before
    assert 1 <= shipped <= len(client.nthreads())


def test_kneighbors_on_dask_match_in_process(client):
    metric, X = sphere_metric(), sphere_points(8)
    kwargs = {"n_neighbors": 2, "n_candidates": 3, "block_size": 4, "progress": False}
    local = gp.geodesic_kneighbors(metric, X, **kwargs)
    remote = gp.geodesic_kneighbors(metric, X, client=client, **kwargs)
    np.testing.assert_array_equal(remote.indices, local.indices)
    np.testing.assert_array_equal(remote.dist, local.dist)


def test_killed_worker_loses_no_block(client, tmp_path):
    """SIGKILL of a worker that holds a block in flight (at a gate): the block is recomputed elsewhere."""
    store, gate = tmp_path / "store", tmp_path / "gate"
    gate.mkdir()
    metric = sphere_metric(method="discrete")  # pairwise_distances' default: the gated solve is its own
    metric.log_solver = Gate(metric.log_solver.solve, gate)
    outcome = {}

    def run():
        try:
            outcome["result"] = gp.pairwise_distances(metric, sphere_x(), block_size=SPHERE_BLOCK, client=client,
                                                      out=store, progress=False)
        except BaseException as error:  # reported below
            outcome["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    try:
        wait_until(lambda: n_stored(store) >= 1 and Gate.waiting(gate), timeout=120,
                   what="a stored block and a block held at the gate")
        victim = min(Gate.waiting(gate))
        assert victim in client.run(os.getpid).values()
        os.kill(victim, signal.SIGKILL)
        done_at_kill = n_stored(store)
    finally:
        Gate.open(gate)
    thread.join(timeout=300)
    assert not thread.is_alive()
    assert "error" not in outcome, outcome.get("error")
    assert done_at_kill == 1
    result = outcome["result"]
    assert result.stats.n_computed == 3 and n_stored(store) == 3
    np.testing.assert_array_equal(result.dist, sphere_reference().dist)
    client.wait_for_workers(2, timeout=120)
    assert victim not in client.run(os.getpid).values()


def test_interrupted_dask_run_resumes_only_missing_blocks(client, tmp_path, monkeypatch):
    metric = sphere_metric()
    write, writes = BlockStore.write, []

    def interrupted_write(self, key, dist, converged):
        if len(writes) == 1:
            raise KeyboardInterrupt  # Ctrl-C in the driver while blocks are in flight
        writes.append(key)
        write(self, key, dist, converged)

    monkeypatch.setattr(BlockStore, "write", interrupted_write)
    with pytest.raises(KeyboardInterrupt):
        gp.pairwise_distances(metric, sphere_x(), block_size=SPHERE_BLOCK, client=client, out=tmp_path,
                              progress=False)
    monkeypatch.setattr(BlockStore, "write", write)
    assert n_stored(tmp_path) == 1
    wait_until(lambda: not client.run_on_scheduler(_our_tasks), timeout=30, what="the tasks in flight to be cancelled")

    resumed = gp.pairwise_distances(metric, sphere_x(), block_size=SPHERE_BLOCK, client=client, out=tmp_path,
                                    progress=False)
    assert resumed.stats.n_computed == 2
    np.testing.assert_array_equal(resumed.dist, sphere_reference().dist)


def test_cli_on_a_scheduler_address(client, tmp_path, monkeypatch):
    def manifold(decoder, latent_dim, **kwargs):  # the tests' coarse solver settings (speed only)
        return sphere_metric(decoder)._space

    monkeypatch.setattr(distances_command, "DecoderManifold", manifold)
    np.save(tmp_path / "codes.npy", sphere_x().numpy())
    argv = [str(tmp_path / "codes.npy"), "--analytic", "sphere_chart", "--out", str(tmp_path / "store"),
            "--block-size", str(SPHERE_BLOCK), "--scheduler", client.scheduler.address, "--no-progress"]
    assert run_distances(argv) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "store" / "dist.npy"), sphere_reference().dist)
