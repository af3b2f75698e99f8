"""Pairwise geodesic distances in-process: values, blocks, store, resume, k-NN, sklearn, CLI.

All with the real batched log solver (coarse settings, see ``_distance_cases``).
"""

import json
import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from _distance_cases import (
    SPHERE_BLOCK,
    Gate,
    coarse,
    great_circle,
    mlp_metric,
    mlp_reference,
    mlp_x,
    n_stored,
    run_distances,
    sphere_metric,
    sphere_points,
    sphere_reference,
    sphere_x,
    wait_until,
)
from scipy.sparse.csgraph import shortest_path
from scipy.spatial.distance import cdist
from sklearn.manifold import Isomap
from sklearn.neighbors import KNeighborsClassifier, kneighbors_graph

import geomstats_pullback as gp
from geomstats_pullback import analytic
from geomstats_pullback.distances import command as distances_command
from geomstats_pullback.distances.fingerprint import job_fingerprint
from geomstats_pullback.distances.neighbors import chord_candidates
from geomstats_pullback.errors import ConvergenceWarning

TESTS = Path(__file__).parent


def batched_dist(metric, X):
    """The discrete geodesic distances (``pairwise_distances``' default) of all pairs ``i < j`` in one batched
    call, mirrored, ``[n, n]``."""
    rows, cols = np.triu_indices(len(X), k=1)
    out = np.zeros((len(X), len(X)))
    result = metric.log_solver.solve(X[cols], X[rows], method="discrete")
    out[rows, cols] = out[cols, rows] = metric.norm(result.tangent_vec, X[rows]).numpy()
    return out


@pytest.fixture(scope="module")
def sphere_store(tmp_path_factory):
    """A finished store of the sphere reference problem."""
    path = tmp_path_factory.mktemp("sphere") / "store"
    gp.pairwise_distances(sphere_metric(), sphere_x(), block_size=SPHERE_BLOCK, out=path, progress=False)
    return path


def copy_store(store, tmp_path, complete=True):
    shutil.copytree(store, tmp_path / "store")
    if not complete:
        manifest = json.loads((tmp_path / "store" / "manifest.json").read_text())
        (tmp_path / "store" / "manifest.json").write_text(json.dumps({**manifest, "complete": False}))
    return tmp_path / "store"


# ---------------------------------------------------------------- values and layout


@pytest.mark.slow
def test_sphere_matrix_matches_geomstats_sphere_and_metric_dist():
    X, result = sphere_x(), sphere_reference()
    # The default discrete geodesic on 8 segments (fourth order); with shooting, 1e-5 (ragged blocks test).
    np.testing.assert_allclose(result.dist, great_circle(X, X), atol=2e-2)
    np.testing.assert_allclose(result.dist, batched_dist(sphere_metric(), X), rtol=1e-5, atol=1e-8)
    np.testing.assert_array_equal(result.dist, result.dist.T)
    np.testing.assert_array_equal(np.diag(result.dist), 0.0)
    assert result.converged.all()
    # Only blocks on and above the diagonal are solved: 9 * 8 / 2 pairs in 3 blocks.
    assert (result.stats.n_blocks, result.stats.n_computed, result.stats.n_pairs) == (3, 3, 36)


def test_mlp_matrix_matches_batched_metric_dist():
    X, result = mlp_x(), mlp_reference()
    np.testing.assert_allclose(result.dist, batched_dist(mlp_metric(), X), rtol=1e-5, atol=1e-8)
    assert result.converged.all() and result.stats.n_pairs == 28


def test_rectangular_matrix_with_ragged_blocks():
    X, Y = sphere_x(), sphere_points(4, seed=3)
    result = gp.pairwise_distances(sphere_metric(), X, Y, block_size=SPHERE_BLOCK, progress=False, shooting=True)
    assert result.dist.shape == (9, 4)
    np.testing.assert_allclose(result.dist, great_circle(X, Y), atol=1e-5)
    assert (result.stats.n_blocks, result.stats.n_pairs) == (2, 36)


def test_convergence_flags_travel_with_distances():
    # One shooting step at a loose tolerance: some pairs converge, some do not.
    metric, X = sphere_metric(max_shooting_iter=1, tol=1e-4), sphere_points(6)
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        result = gp.pairwise_distances(metric, X, block_size=6, progress=False, shooting=True)
    rows, cols = np.triu_indices(6, k=1)
    solved = metric.log_solver.solve(X[cols], X[rows])
    expected = np.ones((6, 6), dtype=bool)
    expected[rows, cols] = expected[cols, rows] = solved.converged.numpy()
    assert expected.any() and not expected.all()
    np.testing.assert_array_equal(result.converged, expected)


# ---------------------------------------------------------------- store and resume


def test_store_holds_the_same_matrix_and_a_finished_store_computes_nothing(sphere_store):
    reference = sphere_reference()
    np.testing.assert_array_equal(np.load(sphere_store / "dist.npy"), reference.dist)
    np.testing.assert_array_equal(np.load(sphere_store / "converged.npy"), reference.converged)
    assert n_stored(sphere_store) == 3
    again = gp.pairwise_distances(sphere_metric(), sphere_x(), block_size=SPHERE_BLOCK, out=sphere_store,
                                  progress=False)
    assert isinstance(again.dist, np.memmap) and again.stats.n_computed == 0
    np.testing.assert_array_equal(again.dist, reference.dist)


def test_interrupted_run_resumes_computing_only_the_missing_blocks(tmp_path, monkeypatch):
    metric = sphere_metric(method="discrete")  # pairwise_distances' default: the patched solve below is its own
    solve, calls = metric.log_solver.solve, []

    def interrupted_solve(point, base_point):
        calls.append(len(point))
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C during the second block
        return solve(point, base_point)

    monkeypatch.setattr(metric.log_solver, "solve", interrupted_solve)
    with pytest.raises(KeyboardInterrupt):
        gp.pairwise_distances(metric, sphere_x(), block_size=SPHERE_BLOCK, out=tmp_path, progress=False)
    assert n_stored(tmp_path) == 1

    calls.clear()
    monkeypatch.setattr(metric.log_solver, "solve", lambda p, b: calls.append(len(p)) or solve(p, b))
    resumed = gp.pairwise_distances(metric, sphere_x(), block_size=SPHERE_BLOCK, out=tmp_path, progress=False)
    assert resumed.stats.n_computed == 2 and calls == [20, 6]  # blocks (0, 1) and (1, 1)
    np.testing.assert_array_equal(resumed.dist, sphere_reference().dist)
    np.testing.assert_array_equal(resumed.converged, sphere_reference().converged)


@pytest.mark.slow
@pytest.mark.subprocess
def test_killed_process_resumes_bit_for_bit(tmp_path):
    """SIGKILL while the second block is being solved (held at a gate): one block stored, the rest resumes."""
    store, gate = tmp_path / "store", tmp_path / "gate"
    gate.mkdir()
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(TESTS)!r})
        import geomstats_pullback as gp
        from _distance_cases import SPHERE_BLOCK, Gate, sphere_metric, sphere_x
        metric = sphere_metric(method="discrete")  # pairwise_distances' default: the gated solve is its own
        metric.log_solver.solve = Gate(metric.log_solver.solve, {str(gate)!r}).solve
        gp.pairwise_distances(metric, sphere_x(), block_size=SPHERE_BLOCK, out={str(store)!r}, progress=False)
    """)
    process = subprocess.Popen([sys.executable, "-c", script], cwd=TESTS.parent)
    try:
        wait_until(
            lambda: process.poll() is not None or (n_stored(store) >= 1 and Gate.waiting(gate)),
            timeout=240, what="a stored block and a block held at the gate",
        )
        assert process.poll() is None, "the run ended before it could be killed"
    finally:
        process.kill()
        process.wait()
    assert n_stored(store) == 1

    resumed = gp.pairwise_distances(sphere_metric(), sphere_x(), block_size=SPHERE_BLOCK, out=store,
                                    progress=False)
    assert resumed.stats.n_computed == 2
    np.testing.assert_array_equal(resumed.dist, sphere_reference().dist)


def test_unreadable_block_is_recomputed(sphere_store, tmp_path):
    store = copy_store(sphere_store, tmp_path, complete=False)
    (store / "blocks" / "1" / "1.npz").write_bytes(b"garbage")
    resumed = gp.pairwise_distances(sphere_metric(), sphere_x(), block_size=SPHERE_BLOCK, out=store, progress=False)
    assert resumed.stats.n_computed == 1 and resumed.stats.n_pairs == 6
    np.testing.assert_array_equal(resumed.dist, sphere_reference().dist)


# ---------------------------------------------------------------- bad input


def test_bad_points_are_refused():
    metric, X = sphere_metric(), sphere_points(5)
    with pytest.raises(ValueError, match="latent dimension 2"):
        gp.pairwise_distances(metric, torch.rand(5, 3), progress=False)
    with pytest.raises(ValueError, match="latent dimension 2"):
        gp.pairwise_distances(metric, X, torch.rand(4, 3), progress=False)
    with pytest.raises(ValueError, match=r"shape \[n, 2\]"):
        gp.pairwise_distances(metric, X[0], progress=False)
    nan = X.clone()
    nan[2, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        gp.pairwise_distances(metric, nan, progress=False)
    with pytest.raises(ValueError, match="NaN"):
        gp.geodesic_kneighbors(metric, X, nan, n_neighbors=2, progress=False)
    with pytest.raises(ValueError, match="block_size"):
        gp.pairwise_distances(metric, X, block_size=0, progress=False)


def test_unwritable_store_is_refused_before_computing(tmp_path):
    (tmp_path / "a_file").write_text("")
    with pytest.raises(OSError, match="Cannot write the distance store"):
        gp.pairwise_distances(sphere_metric(), sphere_points(5), out=tmp_path / "a_file" / "store", progress=False)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(gp.DistanceStoreError, match="not a distance store"):
        gp.pairwise_distances(sphere_metric(), sphere_points(5), out=tmp_path / "other", progress=False)


def test_store_of_another_computation_is_refused(sphere_store, tmp_path):
    store = copy_store(sphere_store, tmp_path, complete=False)
    before = sorted(p.stat().st_mtime_ns for p in (store / "blocks").rglob("*.npz"))
    X = sphere_x()
    eps = gp.DecoderManifold(analytic.sphere_chart, latent_dim=2, metric_kwargs={"eps": 1e-6})
    others = {
        "decoder": (sphere_metric(analytic.flat_torus), X, SPHERE_BLOCK),
        "points": (sphere_metric(), sphere_points(9, seed=5), SPHERE_BLOCK),
        "solver": (sphere_metric(tol=1e-6), X, SPHERE_BLOCK),
        "another job": (sphere_metric(), X, 4),
    }
    for what, (metric, points, block_size) in [*others.items(), ("solver", (coarse(eps), X, SPHERE_BLOCK))]:
        with pytest.raises(gp.DistanceStoreError, match=what):
            gp.pairwise_distances(metric, points, block_size=block_size, out=store, progress=False)
    assert sorted(p.stat().st_mtime_ns for p in (store / "blocks").rglob("*.npz")) == before


def test_fingerprint_sees_decoder_weights(tmp_path):
    X = mlp_x()[:2]
    gp.pairwise_distances(mlp_metric(seed=1), X, out=tmp_path, progress=False)
    with pytest.raises(gp.DistanceStoreError, match="decoder"):
        gp.pairwise_distances(mlp_metric(seed=2), X, out=tmp_path, progress=False)


# ---------------------------------------------------------------- what the fingerprint sees

W = torch.tensor([[1.0, 0.0, 0.5], [0.0, 1.0, -0.5]], dtype=torch.float64)  # read by `linear_decoder`


def linear_decoder(z):
    """``z W``: a decoder whose weight is a module global."""
    return torch.tanh(z @ W)


class ScaledChart(torch.nn.Module):
    """The sphere chart times a plain float attribute."""

    def __init__(self):
        super().__init__()
        self.scale = 1.0

    def forward(self, z):
        return self.scale * analytic.sphere_chart(z)


class OpaqueDecoder:
    """A callable object: its state is nothing the fingerprint can digest."""

    def __call__(self, z):
        return analytic.sphere_chart(z)


def _small_run(decoder, out, **kwargs):
    return gp.pairwise_distances(sphere_metric(decoder), sphere_points(3), block_size=3, out=out, progress=False,
                                 **kwargs)


def test_fingerprint_sees_a_plain_attribute_of_a_module(tmp_path):
    chart = ScaledChart()
    first = _small_run(chart, tmp_path)
    chart.scale = 5.0
    with pytest.raises(gp.DistanceStoreError, match="different decoder"):
        _small_run(chart, tmp_path)
    np.testing.assert_allclose(_small_run(chart, tmp_path / "new").dist, 5 * np.asarray(first.dist), rtol=1e-5)


def test_fingerprint_sees_a_global_weight_changed_in_place_or_rebound(tmp_path, monkeypatch):
    _small_run(linear_decoder, tmp_path)
    assert _small_run(linear_decoder, tmp_path).stats.n_computed == 0
    with torch.no_grad():
        W[0, 2] = 2.0  # in place
    try:
        with pytest.raises(gp.DistanceStoreError, match="different decoder"):
            _small_run(linear_decoder, tmp_path)
    finally:
        with torch.no_grad():
            W[0, 2] = 0.5
    monkeypatch.setitem(globals(), "W", 3 * W)  # rebound
    with pytest.raises(gp.DistanceStoreError, match="different decoder"):
        _small_run(linear_decoder, tmp_path)


def test_fingerprint_sees_submodule_attributes_defaults_and_closures():
    def decoder_digest(decoder):
        return job_fingerprint(sphere_metric(decoder), np.zeros((1, 2)), np.zeros((1, 2)))["decoder"]

    mlp = analytic.random_mlp((2, 4, 3))
    before = decoder_digest(mlp)
    mlp[1].note = "tanh"  # a plain attribute of a submodule
    assert decoder_digest(mlp) != before
    mlp.eval()
    assert decoder_digest(mlp) != decoder_digest(mlp.train())

    def with_default(z, scale=1.0):
        return scale * analytic.sphere_chart(z)

    before = decoder_digest(with_default)
    with_default.__defaults__ = (2.0,)
    assert decoder_digest(with_default) != before

    def scaled(scale):
        return lambda z: scale * analytic.sphere_chart(z)

    assert decoder_digest(scaled(1.0)) != decoder_digest(scaled(2.0))
    assert decoder_digest(scaled(1.0)) == decoder_digest(scaled(1.0))
    assert decoder_digest(analytic.random_mlp((2, 4, 3))) == decoder_digest(analytic.random_mlp((2, 4, 3)))


def test_what_cannot_be_fingerprinted_is_refused_unless_named(tmp_path):
    with pytest.raises(gp.DistanceStoreError, match="OpaqueDecoder.*decoder_id"):
        _small_run(OpaqueDecoder(), tmp_path / "refused")
    assert not (tmp_path / "refused" / "manifest.json").exists()
    lock = threading.Lock()

    def reads_a_lock(z):
        with lock:
            return analytic.sphere_chart(z)

    with pytest.raises(gp.DistanceStoreError, match="'lock' of the closure of .*reads_a_lock"):
        _small_run(reads_a_lock, tmp_path / "refused")

    first = _small_run(OpaqueDecoder(), tmp_path / "named", decoder_id="sphere chart v1")
    assert _small_run(OpaqueDecoder(), tmp_path / "named", decoder_id="sphere chart v1").stats.n_computed == 0
    with pytest.raises(gp.DistanceStoreError, match="different decoder"):
        _small_run(OpaqueDecoder(), tmp_path / "named", decoder_id="sphere chart v2")
    np.testing.assert_array_equal(first.dist, _small_run(analytic.sphere_chart, None).dist)
    with pytest.raises(ValueError, match="decoder_id"):
        _small_run(OpaqueDecoder(), tmp_path / "bad", decoder_id=3)
    neighbors = gp.geodesic_kneighbors(sphere_metric(OpaqueDecoder()), sphere_points(4), n_neighbors=1,
                                       out=tmp_path / "knn", decoder_id="sphere chart v1", progress=False)
    assert neighbors.stats.n_computed == 1


# ---------------------------------------------------------------- k-NN and scikit-learn


def test_kneighbors_match_ground_truth_and_are_certified():
    X, Q = sphere_points(12), sphere_points(4, seed=7)
    truth = great_circle(X, X)
    np.fill_diagonal(truth, np.inf)
    neighbors = gp.geodesic_kneighbors(sphere_metric(), X, n_neighbors=3, n_candidates=6, block_size=12,
                                       progress=False)
    np.testing.assert_array_equal(neighbors.indices, np.argsort(truth, axis=1)[:, :3])
    np.testing.assert_allclose(neighbors.dist, np.sort(truth, axis=1)[:, :3], atol=1e-5)
    assert neighbors.converged.all()
    assert neighbors.stats.n_pairs == 12 * 6

    queries = gp.geodesic_kneighbors(sphere_metric(), Q, X, n_neighbors=2, progress=False)
    np.testing.assert_array_equal(queries.indices, np.argsort(great_circle(Q, X), axis=1)[:, :2])
    assert queries.certified.all()  # default: max(2k, k + 8) = 10 of 12 candidates


def test_kneighbors_certificate_is_the_chord_bound(tmp_path):
    X, k = sphere_points(12), 3
    truth = great_circle(X, X)
    chord = 2 * np.sin(truth / 2)  # |f(x) - f(y)| on the unit sphere
    np.fill_diagonal(truth, np.inf)
    np.fill_diagonal(chord, np.inf)
    # With k candidates a row is certified when its k-th geodesic distance is at
    # most the (k + 1)-th chord, the nearest point left out.
    expected = np.sort(truth, axis=1)[:, k - 1] <= np.sort(chord, axis=1)[:, k]
    assert expected.any() and not expected.all()
    kwargs = {"n_neighbors": k, "n_candidates": k, "block_size": 12, "out": tmp_path, "progress": False}
    with pytest.warns(UserWarning, match="not certified"):
        neighbors = gp.geodesic_kneighbors(sphere_metric(), X, **kwargs)
    np.testing.assert_array_equal(neighbors.certified, expected)
    with pytest.warns(UserWarning, match="not certified"):
        again = gp.geodesic_kneighbors(sphere_metric(), X, **kwargs)  # from the store
    assert again.stats.n_computed == 0
    for got, want in zip(again[:4], neighbors[:4]):
        np.testing.assert_array_equal(got, want)


def test_kneighbors_bad_counts_are_refused():
    X = sphere_points(6)
    with pytest.raises(ValueError, match="n_neighbors"):
        gp.geodesic_kneighbors(sphere_metric(), X, n_neighbors=6, progress=False)
    with pytest.raises(ValueError, match="n_candidates"):
        gp.geodesic_kneighbors(sphere_metric(), X, n_neighbors=3, n_candidates=2, progress=False)


def argsort_candidates(data_x, data_y, n_candidates, exclude_self):
    """Reference: the first candidates of a stable argsort of the whole chord matrix, and the next chord."""
    chord = cdist(data_x, data_y)
    if exclude_self:
        np.fill_diagonal(chord, np.inf)
    order = np.argsort(chord, axis=1, kind="stable")
    bound = np.full(len(data_x), np.inf)
    if n_candidates < len(data_y) - exclude_self:
        bound = np.take_along_axis(chord, order[:, n_candidates, None], axis=1)[:, 0]
    return order[:, :n_candidates], bound


@pytest.mark.parametrize("exclude_self", [True, False], ids=["self", "other"])
def test_chord_candidates_are_a_stable_argsort_of_the_chords(exclude_self):
    grid = np.stack(np.meshgrid(np.arange(5.0), np.arange(5.0)), axis=-1).reshape(-1, 2)
    tied = np.concatenate([grid, grid[:4], grid[0:1], grid[0:1]])  # equal chords, duplicates of one point
    spread = np.random.default_rng(0).normal(size=(40, 30))
    for data in (spread, tied):
        data_y = data if exclude_self else data[::-1].copy()
        for n_candidates in range(1, len(data_y) - exclude_self + 1):
            candidates, bound = chord_candidates(data, data_y, n_candidates, exclude_self)
            expected_candidates, expected_bound = argsort_candidates(data, data_y, n_candidates, exclude_self)
            np.testing.assert_array_equal(candidates, expected_candidates)
            np.testing.assert_array_equal(bound, expected_bound)


def test_kneighbors_among_all_points_are_certified():
    X, Q = sphere_points(6), sphere_points(3, seed=7)
    with pytest.raises(ValueError, match="n_neighbors"):
        gp.geodesic_kneighbors(sphere_metric(), Q, X, n_neighbors=7, progress=False)
    with pytest.raises(ValueError, match="n_candidates"):
        gp.geodesic_kneighbors(sphere_metric(), Q, X, n_neighbors=2, n_candidates=7, progress=False)
    neighbors = gp.geodesic_kneighbors(sphere_metric(), Q, X, n_neighbors=6, progress=False)
    np.testing.assert_array_equal(neighbors.indices, np.argsort(great_circle(Q, X), axis=1))
    assert neighbors.certified.all() and neighbors.stats.n_pairs == 3 * 6


def test_kneighbors_graph_works_with_sklearn_precomputed_estimators():
    X, Q, k = sphere_points(14), sphere_points(5, seed=9), 3
    labels = (X[:, 1] > 0).numpy().astype(int)
    graph = gp.geodesic_kneighbors_graph(sphere_metric(), X, n_neighbors=k, block_size=14, progress=False)
    assert graph.shape == (14, 14) and graph.nnz == 14 * (k + 1)
    query_graph = gp.geodesic_kneighbors_graph(sphere_metric(), Q, X, n_neighbors=k, progress=False)
    assert query_graph.shape == (5, 14) and query_graph.nnz == 5 * k

    ours = KNeighborsClassifier(n_neighbors=k, metric="precomputed").fit(graph, labels)
    truth = KNeighborsClassifier(n_neighbors=k, metric="precomputed").fit(great_circle(X, X), labels)
    np.testing.assert_array_equal(ours.predict(query_graph), truth.predict(great_circle(Q, X)))

    isomap = Isomap(n_neighbors=k, n_components=2, metric="precomputed").fit(graph)
    truth_graph = kneighbors_graph(great_circle(X, X), k, mode="distance", metric="precomputed")
    np.testing.assert_allclose(isomap.dist_matrix_, shortest_path(truth_graph, directed=False), atol=1e-5)


# ---------------------------------------------------------------- command line


@pytest.fixture
def coarse_cli(monkeypatch):
    """The command line's metric with the tests' coarse solver settings (speed only)."""

    def manifold(decoder, latent_dim, **kwargs):
        space = gp.DecoderManifold(decoder, latent_dim, **kwargs)
        coarse(space)
        return space

    monkeypatch.setattr(distances_command, "DecoderManifold", manifold)


def test_cli_writes_store_and_summary_and_resumes(tmp_path, coarse_cli):
    np.save(tmp_path / "codes.npy", sphere_x().numpy())
    argv = [str(tmp_path / "codes.npy"), "--analytic", "sphere_chart", "--out", str(tmp_path / "store"),
            "--block-size", "9", "--no-progress"]
    assert run_distances(argv) == 0
    summary = json.loads((tmp_path / "store" / "summary.json").read_text())
    assert (summary["n_points"], summary["n_blocks"], summary["n_computed_blocks"]) == (9, 1, 1)
    assert summary["n_pairs_solved"] == 36 and summary["n_unconverged_pairs"] == 0
    np.testing.assert_allclose(np.load(tmp_path / "store" / "dist.npy"), sphere_reference().dist, rtol=1e-5)
    assert run_distances(argv) == 0
    assert json.loads((tmp_path / "store" / "summary.json").read_text())["n_computed_blocks"] == 0


def test_cli_loads_a_saved_torch_decoder(tmp_path, coarse_cli):
    torch.save(analytic.random_mlp((2, 16, 16, 10), seed=1), tmp_path / "decoder.pt")
    np.save(tmp_path / "codes.npy", mlp_x().numpy())
    argv = [str(tmp_path / "codes.npy"), "--decoder", str(tmp_path / "decoder.pt"), "--out", str(tmp_path / "s"),
            "--block-size", "8", "--no-progress"]
    assert run_distances(argv) == 0
    np.testing.assert_allclose(np.load(tmp_path / "s" / "dist.npy"), mlp_reference().dist, rtol=1e-5)


def test_cli_reports_bad_input(sphere_store, tmp_path, coarse_cli, capsys):
    np.save(tmp_path / "flat.npy", np.zeros(5))
    np.save(tmp_path / "codes.npy", sphere_x().numpy())
    torch.save({"not": "a module"}, tmp_path / "state.pt")
    store = copy_store(sphere_store, tmp_path)
    out = ["--out", str(store), "--block-size", str(SPHERE_BLOCK), "--no-progress"]
    assert run_distances([str(tmp_path / "flat.npy"), "--analytic", "sphere_chart", *out]) == 2
    assert "shape [n, d]" in capsys.readouterr().err
    codes = str(tmp_path / "codes.npy")
    assert run_distances([codes, "--decoder", str(tmp_path / "state.pt"), *out]) == 2
    assert "not a torch.nn.Module" in capsys.readouterr().err
    assert run_distances([codes, "--analytic", "cylinder", *out]) == 2
    assert "different decoder" in capsys.readouterr().err
    assert run_distances([codes, "--analytic", "sphere_chart", *out]) == 0


def test_cli_decoder_id_reaches_the_store(tmp_path, coarse_cli, capsys):
    np.save(tmp_path / "codes.npy", sphere_x().numpy())
    argv = [str(tmp_path / "codes.npy"), "--analytic", "sphere_chart", "--out", str(tmp_path / "store"),
            "--block-size", "9", "--no-progress"]
    assert run_distances([*argv, "--decoder-id", "my-sphere"]) == 0
    assert run_distances([*argv, "--decoder-id", "my-sphere"]) == 0
    assert run_distances(argv) == 2  # the store was named by the id, not by the decoder's digest
    assert "different decoder" in capsys.readouterr().err
