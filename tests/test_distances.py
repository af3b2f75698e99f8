"""Pairwise geodesic distances in-process: values, blocks, store, resume, k-NN, sklearn, CLI."""

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import sphere_points
from scipy.sparse.csgraph import shortest_path
from sklearn.manifold import Isomap
from sklearn.neighbors import KNeighborsClassifier, kneighbors_graph

import geomstats_pullback as gp
from geomstats_pullback import analytic, distances_cli
from geomstats_pullback._blockstore import BlockStore

from _fake_log_solvers import SphereLog, StraightLineLog  # TEMPORARY until branch `log` lands

TESTS = Path(__file__).parent


def _metric(decoder, solver=SphereLog, **solver_kwargs):
    space = gp.DecoderManifold(decoder, latent_dim=2)
    space.metric.log_solver = solver(space.metric, **solver_kwargs)
    return space.metric


@pytest.fixture
def sphere_metric():
    return _metric(analytic.sphere_chart)


@pytest.fixture
def mlp_metric():
    return _metric(analytic.random_mlp((2, 16, 16, 10), seed=1), StraightLineLog)


def great_circle(a, b):
    """Ground truth: geodesic distances on the unit sphere, ``[n, m]``."""
    fa, fb = analytic.sphere_chart(torch.as_tensor(a)).numpy(), analytic.sphere_chart(torch.as_tensor(b)).numpy()
    return np.arccos(np.clip(fa @ fb.T, -1.0, 1.0))


def batched_dist(metric, X, Y):
    """Plain ``metric.dist`` on all pairs in one batched call, ``[n, m]``."""
    rows, cols = np.meshgrid(np.arange(len(X)), np.arange(len(Y)), indexing="ij")
    return metric.dist(X[rows.ravel()], Y[cols.ravel()]).reshape(len(X), len(Y)).numpy()


def n_stored(path):
    return len(list((Path(path) / "blocks").rglob("*.npz")))


# ---------------------------------------------------------------- values and layout


def test_sphere_matrix_matches_geomstats_sphere_and_metric_dist(sphere_metric):
    X = sphere_points(13)
    result = gp.pairwise_distances(sphere_metric, X, block_size=4, progress=False)
    np.testing.assert_allclose(result.dist, great_circle(X, X), atol=1e-7)
    np.testing.assert_allclose(result.dist, batched_dist(sphere_metric, X, X), rtol=1e-10, atol=1e-8)
    np.testing.assert_array_equal(result.dist, result.dist.T)
    np.testing.assert_array_equal(np.diag(result.dist), 0.0)
    assert result.converged.all()
    # Only the upper triangle is solved: 4 row blocks -> 10 blocks, 13 * 12 / 2 pairs.
    assert (result.stats.n_blocks, result.stats.n_computed, result.stats.n_pairs) == (10, 10, 78)


def test_rectangular_matrix_with_ragged_blocks(sphere_metric):
    X, Y = sphere_points(13), sphere_points(5, seed=3)
    result = gp.pairwise_distances(sphere_metric, X, Y, block_size=4, progress=False)
    assert result.dist.shape == (13, 5)
    np.testing.assert_allclose(result.dist, great_circle(X, Y), atol=1e-7)
    assert (result.stats.n_blocks, result.stats.n_pairs) == (8, 65)


def test_mlp_matrix_matches_batched_metric_dist(mlp_metric):
    X, Y = torch.rand(11, 2, dtype=torch.float64) * 2 - 1, torch.rand(7, 2, dtype=torch.float64) * 2 - 1
    result = gp.pairwise_distances(mlp_metric, X, Y, block_size=3, progress=False)
    np.testing.assert_allclose(result.dist, batched_dist(mlp_metric, X, Y), rtol=1e-10, atol=1e-12)
    symmetric = gp.pairwise_distances(mlp_metric, X, block_size=3, progress=False)
    upper = np.triu_indices(11, k=1)
    np.testing.assert_allclose(symmetric.dist[upper], batched_dist(mlp_metric, X, X)[upper], rtol=1e-10, atol=1e-12)
    whole = gp.pairwise_distances(mlp_metric, X, block_size=11, progress=False)
    np.testing.assert_allclose(symmetric.dist, whole.dist, rtol=1e-12, atol=1e-14)


def test_convergence_flags_travel_with_distances():
    metric = _metric(analytic.sphere_chart, max_dist=1.0)
    X = sphere_points(12)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        result = gp.pairwise_distances(metric, X, block_size=5, progress=False)
    expected = great_circle(X, X) <= 1.0
    np.fill_diagonal(expected, True)
    assert (~expected).any() and expected.any()
    np.testing.assert_array_equal(result.converged, expected)


# ---------------------------------------------------------------- store and resume


def test_store_gives_the_same_matrix_and_a_finished_store_computes_nothing(sphere_metric, tmp_path):
    X = sphere_points(13)
    plain = gp.pairwise_distances(sphere_metric, X, block_size=4, progress=False)
    stored = gp.pairwise_distances(sphere_metric, X, block_size=4, out=tmp_path / "store", progress=False)
    assert isinstance(stored.dist, np.memmap)
    np.testing.assert_array_equal(stored.dist, plain.dist)
    np.testing.assert_array_equal(np.load(tmp_path / "store" / "dist.npy"), plain.dist)
    assert n_stored(tmp_path / "store") == 10
    again = gp.pairwise_distances(sphere_metric, X, block_size=4, out=tmp_path / "store", progress=False)
    assert again.stats.n_computed == 0
    np.testing.assert_array_equal(again.dist, plain.dist)
    np.testing.assert_array_equal(again.converged, plain.converged)


def test_interrupted_run_resumes_computing_only_the_missing_blocks(sphere_metric, tmp_path, monkeypatch):
    X = sphere_points(13)
    plain = gp.pairwise_distances(sphere_metric, X, block_size=4, progress=False)
    solve, calls = sphere_metric.log_solver.solve, []

    def interrupted_solve(point, base_point):
        calls.append(len(point))
        if len(calls) == 4:
            raise KeyboardInterrupt  # Ctrl-C during the fourth block
        return solve(point, base_point)

    monkeypatch.setattr(sphere_metric.log_solver, "solve", interrupted_solve)
    with pytest.raises(KeyboardInterrupt):
        gp.pairwise_distances(sphere_metric, X, block_size=4, out=tmp_path, progress=False)
    assert n_stored(tmp_path) == 3

    calls.clear()
    monkeypatch.setattr(sphere_metric.log_solver, "solve", lambda p, b: calls.append(len(p)) or solve(p, b))
    resumed = gp.pairwise_distances(sphere_metric, X, block_size=4, out=tmp_path, progress=False)
    # Blocks (0, 0), (0, 1), (0, 2) hold 6 + 16 + 16 of the 78 pairs; (3, 3) has none (one point).
    assert resumed.stats.n_computed == 7 and sum(calls) == resumed.stats.n_pairs == 78 - 38
    np.testing.assert_array_equal(resumed.dist, plain.dist)
    np.testing.assert_array_equal(resumed.converged, plain.converged)


def test_killed_process_resumes_bit_for_bit(sphere_metric, tmp_path):
    X = sphere_points(13)
    np.save(tmp_path / "X.npy", X.numpy())
    store = tmp_path / "store"
    script = textwrap.dedent(f"""
        import sys, time
        import numpy as np
        import geomstats_pullback as gp
        from geomstats_pullback import analytic
        sys.path.insert(0, {str(TESTS)!r})
        from _fake_log_solvers import SphereLog
        space = gp.DecoderManifold(analytic.sphere_chart, latent_dim=2)
        space.metric.log_solver = SphereLog(space.metric)
        solve = space.metric.log_solver.solve
        def slow(point, base_point):
            time.sleep(0.3)
            return solve(point, base_point)
        space.metric.log_solver.solve = slow
        gp.pairwise_distances(space.metric, np.load({str(tmp_path / "X.npy")!r}), block_size=4,
                              out={str(store)!r}, progress=False)
    """)
    process = subprocess.Popen([sys.executable, "-c", script], cwd=TESTS.parent)
    deadline = time.monotonic() + 120
    while (not store.exists() or n_stored(store) < 3) and time.monotonic() < deadline:
        assert process.poll() is None, "the run ended before it could be killed"
        time.sleep(0.05)
    process.kill()
    process.wait()
    done = n_stored(store)
    assert 3 <= done < 10

    resumed = gp.pairwise_distances(sphere_metric, X, block_size=4, out=store, progress=False)
    assert resumed.stats.n_computed == 10 - done
    plain = gp.pairwise_distances(sphere_metric, X, block_size=4, progress=False)
    np.testing.assert_array_equal(resumed.dist, plain.dist)


def test_unreadable_block_is_recomputed(sphere_metric, tmp_path):
    X = sphere_points(9)
    plain = gp.pairwise_distances(sphere_metric, X, block_size=4, out=tmp_path, progress=False)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    (tmp_path / "manifest.json").write_text(json.dumps({**manifest, "complete": False}))
    (tmp_path / "blocks" / "0" / "1.npz").write_bytes(b"garbage")
    resumed = gp.pairwise_distances(sphere_metric, X, block_size=4, out=tmp_path, progress=False)
    assert resumed.stats.n_computed == 1
    np.testing.assert_array_equal(resumed.dist, np.asarray(plain.dist))


# ---------------------------------------------------------------- bad input


def test_bad_points_are_refused(sphere_metric):
    X = sphere_points(5)
    with pytest.raises(ValueError, match="latent dimension 2"):
        gp.pairwise_distances(sphere_metric, torch.rand(5, 3), progress=False)
    with pytest.raises(ValueError, match="latent dimension 2"):
        gp.pairwise_distances(sphere_metric, X, torch.rand(4, 3), progress=False)
    with pytest.raises(ValueError, match=r"shape \[n, 2\]"):
        gp.pairwise_distances(sphere_metric, X[0], progress=False)
    nan = X.clone()
    nan[2, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        gp.pairwise_distances(sphere_metric, nan, progress=False)
    with pytest.raises(ValueError, match="block_size"):
        gp.pairwise_distances(sphere_metric, X, block_size=0, progress=False)


def test_unwritable_store_is_refused_before_computing(sphere_metric, tmp_path):
    (tmp_path / "a_file").write_text("")
    with pytest.raises(OSError, match="Cannot write the distance store"):
        gp.pairwise_distances(sphere_metric, sphere_points(5), out=tmp_path / "a_file" / "store", progress=False)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(gp.DistanceStoreError, match="not a distance store"):
        gp.pairwise_distances(sphere_metric, sphere_points(5), out=tmp_path / "other", progress=False)


def test_store_of_another_computation_is_refused(sphere_metric, tmp_path):
    X = sphere_points(9)
    gp.pairwise_distances(sphere_metric, X, block_size=4, out=tmp_path, progress=False)
    before = sorted((tmp_path / "blocks").rglob("*.npz"))
    others = {
        "decoder": (_metric(analytic.flat_torus, StraightLineLog), X, {}),
        "points": (sphere_metric, sphere_points(9, seed=5), {}),
        "solver": (_metric(analytic.sphere_chart, max_dist=3.0), X, {}),
        "another job": (sphere_metric, X, {"block_size": 3}),
    }
    for what, (metric, points, kwargs) in others.items():
        with pytest.raises(gp.DistanceStoreError, match=what):
            gp.pairwise_distances(metric, points, out=tmp_path, progress=False, **{"block_size": 4, **kwargs})
    eps = gp.DecoderManifold(analytic.sphere_chart, latent_dim=2, metric_kwargs={"eps": 1e-6}).metric
    eps.log_solver = SphereLog(eps)
    with pytest.raises(gp.DistanceStoreError, match="solver"):
        gp.pairwise_distances(eps, X, block_size=4, out=tmp_path, progress=False)
    assert sorted((tmp_path / "blocks").rglob("*.npz")) == before


def test_fingerprint_sees_decoder_weights(tmp_path):
    X = torch.rand(6, 2, dtype=torch.float64)
    gp.pairwise_distances(_metric(analytic.random_mlp((2, 8, 5), seed=0), StraightLineLog), X, out=tmp_path,
                          progress=False)
    with pytest.raises(gp.DistanceStoreError, match="decoder"):
        gp.pairwise_distances(_metric(analytic.random_mlp((2, 8, 5), seed=1), StraightLineLog), X, out=tmp_path,
                              progress=False)


# ---------------------------------------------------------------- k-NN and scikit-learn


def test_kneighbors_match_ground_truth_and_are_certified(sphere_metric):
    X, Q = sphere_points(20), sphere_points(6, seed=7)
    truth = great_circle(X, X)
    np.fill_diagonal(truth, np.inf)
    neighbors = gp.geodesic_kneighbors(sphere_metric, X, n_neighbors=3, block_size=6, progress=False)
    np.testing.assert_array_equal(neighbors.indices, np.argsort(truth, axis=1)[:, :3])
    np.testing.assert_allclose(neighbors.dist, np.sort(truth, axis=1)[:, :3], atol=1e-7)
    assert neighbors.certified.all() and neighbors.converged.all()
    assert neighbors.stats.n_pairs == 20 * 11  # default n_candidates = max(2k, k + 8)

    queries = gp.geodesic_kneighbors(sphere_metric, Q, X, n_neighbors=4, progress=False)
    np.testing.assert_array_equal(queries.indices, np.argsort(great_circle(Q, X), axis=1)[:, :4])


def test_kneighbors_certificate_is_the_chord_bound(sphere_metric):
    X, k = sphere_points(20), 3
    truth, chord = great_circle(X, X), 2 * np.sin(great_circle(X, X) / 2)
    np.fill_diagonal(truth, np.inf)
    np.fill_diagonal(chord, np.inf)
    expected = np.sort(truth, axis=1)[:, k - 1] <= np.sort(chord, axis=1)[:, k]
    assert not expected.all()
    with pytest.warns(UserWarning, match="not certified"):
        neighbors = gp.geodesic_kneighbors(sphere_metric, X, n_neighbors=k, n_candidates=k, progress=False)
    np.testing.assert_array_equal(neighbors.certified, expected)


def test_kneighbors_resume_from_store(sphere_metric, tmp_path):
    X = sphere_points(14)
    kwargs = {"n_candidates": 6, "block_size": 4, "out": tmp_path, "progress": False}
    first = gp.geodesic_kneighbors(sphere_metric, X, n_neighbors=3, **kwargs)
    again = gp.geodesic_kneighbors(sphere_metric, X, n_neighbors=2, **kwargs)
    assert again.stats.n_computed == 0
    np.testing.assert_array_equal(again.indices, first.indices[:, :2])
    with pytest.raises(ValueError, match="n_neighbors"):
        gp.geodesic_kneighbors(sphere_metric, X, n_neighbors=14, progress=False)
    with pytest.raises(ValueError, match="n_candidates"):
        gp.geodesic_kneighbors(sphere_metric, X, n_neighbors=3, n_candidates=2, progress=False)


def test_kneighbors_graph_works_with_sklearn_precomputed_estimators(sphere_metric):
    X, Q, k = sphere_points(24), sphere_points(8, seed=9), 4
    labels = (X[:, 1] > 0).numpy().astype(int)
    graph = gp.geodesic_kneighbors_graph(sphere_metric, X, n_neighbors=k, progress=False)
    assert graph.shape == (24, 24) and graph.nnz == 24 * (k + 1)
    query_graph = gp.geodesic_kneighbors_graph(sphere_metric, Q, X, n_neighbors=k, progress=False)
    assert query_graph.shape == (8, 24) and query_graph.nnz == 8 * k

    ours = KNeighborsClassifier(n_neighbors=k, metric="precomputed").fit(graph, labels)
    truth = KNeighborsClassifier(n_neighbors=k, metric="precomputed").fit(great_circle(X, X), labels)
    np.testing.assert_array_equal(ours.predict(query_graph), truth.predict(great_circle(Q, X)))

    isomap = Isomap(n_neighbors=k, n_components=2, metric="precomputed").fit(graph)
    truth_graph = kneighbors_graph(great_circle(X, X), k, mode="distance", metric="precomputed")
    np.testing.assert_allclose(isomap.dist_matrix_, shortest_path(truth_graph, directed=False), atol=1e-6)


# ---------------------------------------------------------------- command line


@pytest.fixture
def fake_cli_solver(monkeypatch):
    """TEMPORARY: the CLI's metric gets the stand-in solver until branch `log` lands."""

    def manifold(decoder, latent_dim, **kwargs):
        space = gp.DecoderManifold(decoder, latent_dim, **kwargs)
        solver = SphereLog if decoder is analytic.sphere_chart else StraightLineLog
        space.metric.log_solver = solver(space.metric)
        return space

    monkeypatch.setattr(distances_cli, "DecoderManifold", manifold)


def test_cli_writes_store_and_summary_and_resumes(sphere_metric, tmp_path, fake_cli_solver, capsys):
    X = sphere_points(9)
    np.save(tmp_path / "codes.npy", X.numpy())
    argv = [str(tmp_path / "codes.npy"), "--analytic", "sphere_chart", "--out", str(tmp_path / "store"),
            "--block-size", "4", "--no-progress"]
    assert distances_cli.distance_matrix_main(argv) == 0
    summary = json.loads((tmp_path / "store" / "summary.json").read_text())
    assert (summary["n_points"], summary["n_blocks"], summary["n_computed_blocks"]) == (9, 6, 6)
    assert summary["n_pairs_solved"] == 36 and summary["n_unconverged_pairs"] == 0
    expected = gp.pairwise_distances(sphere_metric, X, block_size=4, progress=False).dist
    np.testing.assert_array_equal(np.load(tmp_path / "store" / "dist.npy"), expected)
    assert distances_cli.distance_matrix_main(argv) == 0
    assert json.loads((tmp_path / "store" / "summary.json").read_text())["n_computed_blocks"] == 0


def test_cli_loads_a_saved_torch_decoder(tmp_path, fake_cli_solver):
    decoder = analytic.random_mlp((2, 8, 6), seed=3)
    torch.save(decoder, tmp_path / "decoder.pt")
    X = torch.rand(7, 2, dtype=torch.float64)
    np.save(tmp_path / "codes.npy", X.numpy())
    argv = [str(tmp_path / "codes.npy"), "--decoder", str(tmp_path / "decoder.pt"), "--out", str(tmp_path / "s"),
            "--no-progress"]
    assert distances_cli.distance_matrix_main(argv) == 0
    expected = gp.pairwise_distances(_metric(decoder, StraightLineLog), X, progress=False).dist
    np.testing.assert_array_equal(np.load(tmp_path / "s" / "dist.npy"), expected)


def test_cli_reports_bad_input(tmp_path, fake_cli_solver, capsys):
    np.save(tmp_path / "flat.npy", np.zeros(5))
    np.save(tmp_path / "codes.npy", sphere_points(5).numpy())
    torch.save({"not": "a module"}, tmp_path / "state.pt")
    out = ["--out", str(tmp_path / "store"), "--no-progress"]
    assert distances_cli.distance_matrix_main([str(tmp_path / "flat.npy"), "--analytic", "sphere_chart", *out]) == 1
    assert "shape [n, d]" in capsys.readouterr().err
    assert distances_cli.distance_matrix_main([str(tmp_path / "codes.npy"), "--decoder", str(tmp_path / "state.pt"),
                                               *out]) == 1
    assert "not a torch.nn.Module" in capsys.readouterr().err
    assert distances_cli.distance_matrix_main([str(tmp_path / "codes.npy"), "--analytic", "sphere_chart", *out]) == 0
    assert distances_cli.distance_matrix_main([str(tmp_path / "codes.npy"), "--analytic", "cylinder", *out]) == 1
    assert "different decoder" in capsys.readouterr().err
