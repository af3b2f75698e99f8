"""Faults of the distance store: in each, the matrix is bit-identical to an uninterrupted run, or the run refuses.

Every fault is a damage done to a copy of a finished (or unfinished) store of the MLP problem
of ``_distance_cases``, or an interruption of a run; the reference is the in-process matrix.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from _distance_cases import (
    MLP_BLOCK,
    Gate,
    mlp_metric,
    mlp_reference,
    mlp_x,
    n_stored,
    wait_until,
)

import geomstats_pullback as gp
from geomstats_pullback.distances import store as store_module

TESTS = Path(__file__).parent
N_BLOCKS = 3  # (0, 0): 6 pairs, (0, 1): 16 pairs, (1, 1): 6 pairs


def run(out, **kwargs):
    return gp.pairwise_distances(mlp_metric(), mlp_x(), block_size=MLP_BLOCK, out=out, progress=False, **kwargs)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished store of the MLP problem."""
    path = tmp_path_factory.mktemp("finished") / "store"
    run(path)
    return path


@pytest.fixture(scope="module")
def foreign(tmp_path_factory):
    """A finished store of the same shape and layout, of other points."""
    path = tmp_path_factory.mktemp("foreign") / "store"
    gp.pairwise_distances(mlp_metric(), 0.9 * mlp_x(), block_size=MLP_BLOCK, out=path, progress=False)
    return path


def unfinished(path):
    manifest = json.loads((path / "manifest.json").read_text())
    (path / "manifest.json").write_text(json.dumps({**manifest, "complete": False}))


def assert_reference(result):
    reference = mlp_reference()
    np.testing.assert_array_equal(result.dist, reference.dist)
    np.testing.assert_array_equal(result.converged, reference.converged)
    assert result.dist.dtype == np.float64 and result.converged.dtype == bool


def dead_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def flip_byte(path, where=-1):
    """Flip the lowest bit of the byte at ``where`` (a fraction of the length, or -1: the last byte)."""
    data = bytearray(path.read_bytes())
    data[-1 if where == -1 else int(where * len(data))] ^= 0x01
    path.write_bytes(bytes(data))


def alter_block_keeping_its_digest(path):
    with np.load(path) as data:
        arrays = dict(data)
    arrays["dist"] = arrays["dist"] + 1e-12
    with open(path, "wb") as file:
        np.savez(file, **arrays)


def block_without_digest(path):
    with np.load(path) as data:
        arrays = {"dist": data["dist"], "converged": data["converged"]}
    with open(path, "wb") as file:
        np.savez(file, **arrays)


def swap(a, b):
    tmp = a.with_name("swap")
    a.rename(tmp)
    b.rename(a)
    tmp.rename(b)


def write_lock(path, text):
    (path / "lock").write_text(text)


def stray_files(path):
    (path / "blocks" / "notes.txt").write_text("mine")
    (path / "blocks" / "x.npz").write_bytes(b"not a block")
    (path / "blocks" / "7.npz").write_bytes(b"a key outside the job")
    (path / "blocks" / "99").mkdir()
    (path / "blocks" / "99" / "0.npz").write_bytes(b"a key outside the job")
    (path / "blocks" / "0" / "README").write_text("mine")


# fault name: (finished store?, damage(store, foreign), outcome, blocks computed or the error's message)
FAULTS = {
    # a finished store: the matrices are checked (shape, dtype, digest) and rebuilt from the blocks
    "dist.npy replaced by a 2x2 array": (True, lambda s, f: np.save(s / "dist.npy", np.zeros((2, 2))), "same", 0),
    "dist.npy truncated": (True, lambda s, f: os.truncate(s / "dist.npy", 100), "same", 0),
    "dist.npy one value changed": (
        True, lambda s, f: np.save(s / "dist.npy", np.load(s / "dist.npy") + np.eye(8)), "same", 0),
    "converged.npy one flag flipped": (True, lambda s, f: flip_byte(s / "converged.npy"), "same", 0),
    "dist.npy of another store": (True, lambda s, f: shutil.copy(f / "dist.npy", s / "dist.npy"), "same", 0),
    "dist.npy and converged.npy swapped": (True, lambda s, f: swap(s / "dist.npy", s / "converged.npy"), "same", 0),
    "dist.npy deleted": (True, lambda s, f: (s / "dist.npy").unlink(), "same", 0),
    "dist.npy and a block corrupted": (
        True, lambda s, f: (flip_byte(s / "dist.npy"), (s / "blocks/0/1.npz").write_bytes(b"x")), "same", 1),
    "dist.npy a symbolic link": (
        True, lambda s, f: ((s / "dist.npy").unlink(), (s / "dist.npy").symlink_to(f / "dist.npy")),
        "refused", "symbolic link"),
    "manifest.json garbage": (
        True, lambda s, f: (s / "manifest.json").write_text("{"), "refused", "Unreadable manifest"),
    "manifest.json a symbolic link": (
        True, lambda s, f: ((s / "manifest.json").unlink(), (s / "manifest.json").symlink_to(f / "manifest.json")),
        "refused", "symbolic link"),
    "manifest.json of an older format": (
        True, lambda s, f: (s / "manifest.json").write_text(json.dumps({"format": "geomstats_pullback.distances/1"})),
        "refused", "format"),
    # an unfinished store: blocks are checked (shape, dtype, digest of values, key and store) and recomputed
    "block truncated": (False, lambda s, f: os.truncate(s / "blocks/0/1.npz", 50), "same", 1),
    "block bytes corrupted": (False, lambda s, f: flip_byte(s / "blocks/1/1.npz", 0.3), "same", 1),
    "block value changed, digest kept": (
        False, lambda s, f: alter_block_keeping_its_digest(s / "blocks/0/1.npz"), "same", 1),
    "block of another store": (
        False, lambda s, f: shutil.copy(f / "blocks/0/1.npz", s / "blocks/0/1.npz"), "same", 1),
    "two blocks of equal size swapped": (
        False, lambda s, f: swap(s / "blocks/0/0.npz", s / "blocks/1/1.npz"), "same", 2),
    "block without a digest (older format)": (
        False, lambda s, f: block_without_digest(s / "blocks/0/0.npz"), "same", 1),
    "block deleted": (False, lambda s, f: (s / "blocks/0/1.npz").unlink(), "same", 1),
    "stray files in blocks/": (False, lambda s, f: stray_files(s), "same", 0),
    "temporary files left by a killed run": (
        False, lambda s, f: [(d / ".partial-x1y2z3.tmp").write_bytes(b"half") for d in (s, s / "blocks/0")],
        "same", 0),
    "block a symbolic link": (
        False, lambda s, f: ((s / "blocks/0/1.npz").unlink(), (s / "blocks/0/1.npz").symlink_to(f / "blocks/0/1.npz")),
        "refused", "symbolic link"),
    "block folder a symbolic link": (
        False, lambda s, f: (shutil.rmtree(s / "blocks/1"), (s / "blocks/1").symlink_to(f / "blocks/1")),
        "refused", "symbolic link"),
    "blocks/ a symbolic link": (
        False, lambda s, f: (shutil.rmtree(s / "blocks"), (s / "blocks").symlink_to(f / "blocks")),
        "refused", "symbolic link"),
    "stale lock of a dead process": (
        False, lambda s, f: write_lock(s, f"{dead_pid()} {socket.gethostname()}\n"), "same", 0),
    "empty lock (killed while writing it)": (False, lambda s, f: write_lock(s, ""), "same", 0),
    "lock a symbolic link": (False, lambda s, f: (s / "lock").symlink_to(f / "manifest.json"), "same", 0),
    "lock of a live process": (
        False, lambda s, f: write_lock(s, f"{os.getppid()} {socket.gethostname()}\n"), "refused",
        "locked by the running"),
    "lock of another host": (
        False, lambda s, f: write_lock(s, "12345 another-host\n"), "refused", "on host another-host"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_damaged_store_gives_the_same_matrix_or_refuses(fault, finished, foreign, tmp_path):
    complete, damage, outcome, expected = FAULTS[fault]
    store = tmp_path / "store"
    shutil.copytree(finished, store, symlinks=True)
    if not complete:
        unfinished(store)
    foreign_before = {p: p.read_bytes() for p in foreign.rglob("*") if p.is_file()}
    damage(store, foreign)
    if outcome == "refused":
        with pytest.raises(gp.DistanceStoreError, match=expected):
            run(store)
    else:
        result = run(store)
        assert_reference(result)
        assert result.stats.n_computed == expected
        assert not list(store.rglob(".partial-*")) and not (store / "lock").exists()
        assert_reference(run(store))  # and the repaired store reads back
    assert foreign_before == {p: p.read_bytes() for p in foreign.rglob("*") if p.is_file()}  # links not followed


def test_interrupted_store_publishes_no_matrix(tmp_path, monkeypatch):
    """Ctrl-C at the second block: no dist.npy, no temporary file left, no lock; the resumed matrix is the same."""
    metric = mlp_metric()
    metric.log_solver.method = "discrete"  # pairwise_distances' default: the patched solve below is its own
    solve, calls = metric.log_solver.solve, []

    def interrupted(point, base_point):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return solve(point, base_point)

    monkeypatch.setattr(metric.log_solver, "solve", interrupted)
    with pytest.raises(KeyboardInterrupt):
        gp.pairwise_distances(metric, mlp_x(), block_size=MLP_BLOCK, out=tmp_path, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocks", "manifest.json"]
    assert n_stored(tmp_path) == 1
    assert_reference(run(tmp_path))


def test_read_only_finished_store_is_read_without_writing(finished, tmp_path, monkeypatch):
    store = tmp_path / "store"
    shutil.copytree(finished, store)

    def snapshot():
        return {str(p): (p.stat().st_mtime_ns, p.stat().st_mode) for p in [store, *store.rglob("*")]}

    before = snapshot()
    for path in [store, *store.rglob("*")]:
        path.chmod(path.stat().st_mode & ~0o222)

    def no_write(*args, **kwargs):
        raise AssertionError("the store was written")

    monkeypatch.setattr(store_module.tempfile, "mkstemp", no_write)
    monkeypatch.setattr(store_module.os, "replace", no_write)
    try:
        result = run(store)
        assert_reference(result)
        assert result.stats.n_computed == 0 and not (store / "lock").exists()
    finally:
        for path in [store, *store.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)
    assert {k: v[0] for k, v in snapshot().items()} == {k: v[0] for k, v in before.items()}


def test_in_memory_flags_of_uncomputed_entries_start_false():
    """Flags are False until a block sets them (the diagonal of a symmetric matrix, 0 exactly, is True)."""
    from geomstats_pullback.distances.matrix import _unconverged

    flags = _unconverged(3, 3, True)
    np.testing.assert_array_equal(flags, np.eye(3, dtype=bool))
    assert not _unconverged(2, 3, False).any()


def _gated_run(store, gate, k):
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(TESTS)!r})
        import torch
        import geomstats_pullback as gp
        from _distance_cases import MLP_BLOCK, Gate, mlp_metric, mlp_x
        torch.set_num_threads(1)  # as the tests (conftest): the last bit of a reduction depends on it
        metric = mlp_metric()
        metric.log_solver.method = "discrete"  # pairwise_distances' default: the gated solve is its own
        metric.log_solver.solve = Gate(metric.log_solver.solve, {str(gate)!r}, k={k}).solve
        gp.pairwise_distances(metric, mlp_x(), block_size=MLP_BLOCK, out={str(store)!r}, progress=False)
    """)
    return subprocess.Popen([sys.executable, "-c", script], cwd=TESTS.parent)


def _wait_at_gate(process, store, gate, k):
    wait_until(
        lambda: process.poll() is not None or (n_stored(store) >= k and Gate.waiting(gate)),
        timeout=240, what=f"{k} stored blocks and a block held at the gate",
    )
    assert process.poll() is None, "the run ended before reaching the gate"


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.parametrize("k", [1, 2])
def test_sigkill_at_block_k_resumes_bit_for_bit(tmp_path, k):
    """SIGKILL while block k + 1 is held: k blocks, a stale lock and a partial matrix are left; the resume matches."""
    store, gate = tmp_path / "store", tmp_path / "gate"
    gate.mkdir()
    process = _gated_run(store, gate, k)
    try:
        _wait_at_gate(process, store, gate, k)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert n_stored(store) == k and not (store / "dist.npy").exists()
    assert (store / "lock").read_text().split()[0] == str(process.pid)
    partial_flags = [np.load(p) for p in store.glob(".partial-*.tmp") if np.load(p).dtype == bool]
    assert len(partial_flags) == 1  # only the computed entries (and the diagonal) are flagged converged
    assert partial_flags[0].sum() < mlp_reference().converged.sum()

    resumed = run(store)
    assert resumed.stats.n_computed == N_BLOCKS - k
    assert_reference(resumed)
    assert not list(store.glob(".partial-*")) and not (store / "lock").exists()


@pytest.mark.slow
@pytest.mark.subprocess
def test_second_concurrent_run_is_refused_while_the_first_holds_the_lock(tmp_path):
    store, gate = tmp_path / "store", tmp_path / "gate"
    gate.mkdir()
    process = _gated_run(store, gate, 1)
    try:
        _wait_at_gate(process, store, gate, 1)
        with pytest.raises(gp.DistanceStoreError, match=f"locked by the running process {process.pid}"):
            run(store)
        Gate.open(gate)
        assert process.wait(timeout=240) == 0
    finally:
        process.kill()
        process.wait()
    result = run(store)
    assert result.stats.n_computed == 0
    assert_reference(result)
