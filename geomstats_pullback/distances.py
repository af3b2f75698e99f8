"""Pairwise geodesic distances and geodesic k-nearest neighbours of latent points.

A job is cut into blocks of pairs. Each block is one batched call of the
metric's log solver (``metric.log_solver.solve``), so the solver sees a few
hundred to a few thousand pairs at once and memory stays bounded by the block
size. Blocks run

- in this process, one after the other, with a progress bar (the default);
- or as tasks of a Dask cluster (``client=`` a ``dask.distributed.Client``): the
  metric (decoder included) is sent to every worker once, blocks are submitted a
  few per worker thread at a time, and Dask reschedules the tasks of a worker that
  dies. Dask is imported only on this path.

With ``out=`` a folder, every finished block is written to a store
(:mod:`geomstats_pullback._blockstore`) before it counts as done: an interrupted
run (worker or process killed, Ctrl-C) resumes from the store, computes only the
missing blocks and returns the same values, bit for bit. The store records a
fingerprint of the decoder, the points and the solver settings and refuses to
mix results of different computations.

Distances come with per-pair convergence flags of the solver, and a warning
says how many pairs did not converge.
"""

import logging
import time
import warnings
from itertools import islice
from typing import NamedTuple

import geomstats.backend as gs
import numpy as np
from scipy.sparse import csr_matrix
from scipy.spatial.distance import cdist
from tqdm.auto import tqdm

from geomstats_pullback._blockstore import BlockStore
from geomstats_pullback._fingerprint import array_digest, callable_digest, digest, settings_digest
from geomstats_pullback._validation import as_latent, check_integer, warn_unconverged

logger = logging.getLogger(__name__)

DEFAULT_BLOCK_SIZE = 32


class BlockRunStats(NamedTuple):
    """How a blocked computation went.

    Attributes
    ----------
    n_blocks : int
        Blocks in the job.
    n_computed : int
        Blocks computed by this call; the others were read from the store.
    n_pairs : int
        Pairs solved by this call.
    solve_seconds : float
        Time spent in the solver, summed over the computed blocks (measured on
        the workers under Dask).
    wall_seconds : float
        Wall time of the call.
    """

    n_blocks: int
    n_computed: int
    n_pairs: int
    solve_seconds: float
    wall_seconds: float


class PairwiseDistances(NamedTuple):
    """Distance matrix with convergence flags.

    Attributes
    ----------
    dist : ndarray, shape=[n, m]
        ``dist[i, j]`` is the geodesic distance from ``X[i]`` to ``Y[j]``
        (a ``numpy.memmap`` on ``<out>/dist.npy`` when a store was given).
    converged : ndarray of bool, shape=[n, m]
        Whether the solver converged for the pair (``<out>/converged.npy``).
    stats : BlockRunStats
    """

    dist: np.ndarray
    converged: np.ndarray
    stats: BlockRunStats


class GeodesicNeighbors(NamedTuple):
    """Geodesic k-nearest neighbours.

    Attributes
    ----------
    dist : ndarray, shape=[n, n_neighbors]
        Geodesic distances to the neighbours, ascending along each row.
    indices : ndarray of int, shape=[n, n_neighbors]
        Indices of the neighbours in ``Y`` (in ``X`` when ``Y`` is None).
    converged : ndarray of bool, shape=[n, n_neighbors]
        Whether the solver converged for each neighbour.
    certified : ndarray of bool, shape=[n]
        Whether the neighbours are provably the exact geodesic nearest ones:
        every candidate converged and the farthest neighbour is no farther than
        the data-space chord to any point left out of the candidates (a chord is
        a lower bound of the geodesic distance).
    stats : BlockRunStats
    """

    dist: np.ndarray
    indices: np.ndarray
    converged: np.ndarray
    certified: np.ndarray
    stats: BlockRunStats


class _Block(NamedTuple):
    """Pairs ``(X[rows][r], Y[cols][c])``; ``pairs`` gives the ``(r, c)`` (see ``_pair_indices``)."""

    key: tuple
    rows: slice
    cols: object  # slice or index array
    pairs: object  # None (all pairs), "upper" (strict upper triangle) or (r, c) arrays
    n_pairs: int


def _pair_indices(pairs, n_rows, n_cols):
    """Row and column indices ``[P]`` of a block's pairs, in storage order."""
    if pairs is None:
        return np.repeat(np.arange(n_rows), n_cols), np.tile(np.arange(n_cols), n_rows)
    if isinstance(pairs, str) and pairs == "upper":
        return np.triu_indices(n_rows, k=1)
    return pairs


def _solve_block(metric, x, y, pairs):
    """Geodesic distances of a block's pairs in one batched solver call.

    Runs in this process or on a Dask worker.

    Parameters
    ----------
    metric : PullbackMetric
    x : ndarray, shape=[nb, dim]
        Base points of the block.
    y : ndarray, shape=[mb, dim]
        End points of the block.
    pairs : None, "upper" or tuple of ndarray
        Which ``(x[r], y[c])`` pairs (see ``_pair_indices``).

    Returns
    -------
    dist : ndarray, shape=[P]
        ``|log_{x[r]}(y[c])|``.
    converged : ndarray of bool, shape=[P]
    seconds : float
        Time spent in this function.
    """
    start = time.perf_counter()
    rows, cols = _pair_indices(pairs, len(x), len(y))
    if len(rows) == 0:
        return np.zeros(0), np.ones(0, dtype=bool), time.perf_counter() - start
    base_point, point = gs.array(x[rows]), gs.array(y[cols])
    result = metric.log_solver.solve(point, base_point)
    dist = metric.norm(result.tangent_vec, base_point)
    dist = np.asarray(gs.to_numpy(dist), dtype=np.float64)
    converged = np.asarray(gs.to_numpy(result.converged), dtype=bool)
    return dist, converged, time.perf_counter() - start


def _as_points(points, dim, name):
    points = as_latent(points, dim, name)
    if points.ndim != 2 or points.shape[0] == 0:
        raise ValueError(f"{name} must have shape [n, {dim}] with n >= 1, got shape {tuple(points.shape)}.")
    return np.array(gs.to_numpy(points), dtype=np.float64)


def _check_inputs(metric, X, Y, block_size):
    """Latent points as float64 arrays; ``same`` is True when ``Y`` is None."""
    check_integer(block_size, "block_size", low=1)
    dim = metric._space.dim
    X = _as_points(X, dim, "X")
    same = Y is None
    Y = X if same else _as_points(Y, dim, "Y")
    return X, Y, same


def _fingerprint(metric, X, Y):
    """Digests of the decoder, the points and the solver settings."""
    adapter = metric.decoder
    exp_solver = metric.exp_solver
    solvers = [metric, metric.log_solver, exp_solver, getattr(exp_solver, "integrator", None)]
    return {
        "decoder": digest(type(adapter).__qualname__, str(getattr(adapter, "dtype", "")), callable_digest(adapter.decoder)),
        "points": digest(array_digest(X), array_digest(Y)),
        "solver": settings_digest(*(s for s in solvers if s is not None)),
    }


def _warn_unconverged(converged, what):
    n_bad = int(converged.size - np.count_nonzero(converged))
    if n_bad:
        message = (
            f"The log solver did not converge for {n_bad} of {converged.size} {what}: their distances "
            "are flagged in `converged` and may be wrong."
        )
        warn_unconverged(logger, message, stacklevel=3)


def _run_blocks(metric, X, Y, blocks, n_blocks, collect, *, store, client, progress):
    """Compute the blocks missing from the store; pass every block to ``collect``.

    ``collect(block, dist[P], converged[P])`` is called once per block, for the
    stored ones and the computed ones alike; computed blocks reach the store first.
    """
    start = time.perf_counter()
    stored = store.completed() if store is not None else set()
    totals = {"n_computed": 0, "n_pairs": 0, "solve_seconds": 0.0}

    with tqdm(total=n_blocks, unit="block", disable=not progress, desc="geodesic distances") as bar:

        def missing():
            for block in blocks:
                data = store.read(block.key, block.n_pairs) if block.key in stored else None
                if data is None:
                    yield block
                else:
                    collect(block, *data)
                    bar.update()

        def finish(block, dist, converged, seconds):
            if store is not None:
                store.write(block.key, dist, converged)
            collect(block, dist, converged)
            totals["n_computed"] += 1
            totals["n_pairs"] += block.n_pairs
            totals["solve_seconds"] += seconds
            bar.update()

        if client is None:
            for block in missing():
                finish(block, *_solve_block(metric, X[block.rows], Y[block.cols], block.pairs))
        else:
            _run_on_dask(client, metric, X, Y, missing(), finish)

    return BlockRunStats(n_blocks=n_blocks, wall_seconds=time.perf_counter() - start, **totals)


def _run_on_dask(client, metric, X, Y, blocks, finish):
    """Run blocks as Dask tasks, a few per worker thread in flight at a time."""
    from distributed import as_completed

    run = f"geodesic-block-{time.time_ns():x}"
    metric_future = client.scatter(metric, broadcast=True, hash=False)  # shipped once per worker
    in_flight = {}
    finished = as_completed(with_results=True)

    def submit(block):
        future = client.submit(
            _solve_block, metric_future, X[block.rows], Y[block.cols], block.pairs,
            key=f"{run}-{'-'.join(map(str, block.key))}", pure=False,
        )
        in_flight[future.key] = future, block
        finished.add(future)

    def window():
        return max(4, 2 * sum(client.nthreads().values()))

    try:
        for block in islice(blocks, window()):
            submit(block)
        for future, result in finished:
            finish(in_flight.pop(future.key)[1], *result)
            for block in islice(blocks, max(0, window() - len(in_flight))):
                submit(block)
    finally:
        client.cancel([metric_future, *(future for future, _ in in_flight.values())], force=True)


# ---------------------------------------------------------------- distance matrix


def pairwise_distances(metric, X, Y=None, *, block_size=DEFAULT_BLOCK_SIZE, client=None, out=None, progress=True):
    """Geodesic distance matrix of latent points, block by block.

    ``dist[i, j] = metric.dist(X[i], Y[j])``, computed by the metric's log
    solver in batched blocks of ``block_size x block_size`` pairs. With ``Y``
    None, only the upper triangle is solved and mirrored; the diagonal is 0.

    Parameters
    ----------
    metric : PullbackMetric
        Its ``log_solver.solve`` gives the geodesics.
    X : array-like, shape=[n, dim]
        Latent points.
    Y : array-like, shape=[m, dim], optional
        Second set of latent points. Default: ``X``.
    block_size : int
        Points per block side; a block solves up to ``block_size ** 2`` pairs in
        one batched call (memory grows with it). Keyword-only.
    client : dask.distributed.Client, optional
        Run the blocks as tasks on this Dask cluster (a ``LocalCluster`` or the
        address of a running scheduler); the metric is sent to each worker once.
        Default: in this process.
    out : str or os.PathLike, optional
        Folder of a store of finished blocks: the run resumes from it and only
        computes missing blocks. The matrices are then ``<out>/dist.npy`` and
        ``<out>/converged.npy``, returned as memory maps.
    progress : bool
        Show a progress bar (tqdm).

    Returns
    -------
    result : PairwiseDistances
        ``dist [n, m]``, ``converged [n, m]`` and run statistics.

    Raises
    ------
    ValueError
        If the points do not have shape ``[n, dim]`` or contain NaN or inf.
    DistanceStoreError
        If ``out`` holds a store of another computation (other decoder, points,
        solver settings, shape or block size).
    OSError
        If ``out`` cannot be written.

    Warns
    -----
    ConvergenceWarning
        If the solver did not converge for some pairs (also logged).

    Examples
    --------
    >>> import geomstats_pullback as gp
    >>> from geomstats_pullback import analytic
    >>> space = gp.DecoderManifold(analytic.random_mlp((2, 16, 10)), latent_dim=2)
    >>> result = gp.pairwise_distances(space.metric, space.random_point(4), progress=False)
    >>> result.dist.shape, bool(result.converged.all())
    ((4, 4), True)
    """
    X, Y, same = _check_inputs(metric, X, Y, block_size)
    (n, m), size = (len(X), len(Y)), block_size
    n_row_blocks, n_col_blocks = -(-n // size), -(-m // size)

    def block(i, j):
        rows, cols = slice(i * size, min(n, (i + 1) * size)), slice(j * size, min(m, (j + 1) * size))
        nb, mb = rows.stop - rows.start, cols.stop - cols.start
        if same and i == j:
            return _Block((i, j), rows, cols, "upper", nb * (nb - 1) // 2)
        return _Block((i, j), rows, cols, None, nb * mb)

    blocks = (block(i, j) for i in range(n_row_blocks) for j in range(i if same else 0, n_col_blocks))
    n_blocks = n_row_blocks * (n_row_blocks + 1) // 2 if same else n_row_blocks * n_col_blocks

    store = None
    if out is not None:
        job = {"kind": "pairwise_distances", "shape": [n, m], "symmetric": same, "block_size": size}
        store = BlockStore(out, job=job, fingerprint=_fingerprint(metric, X, Y))
        if store.complete:
            dist = np.load(store.path / "dist.npy", mmap_mode="r")
            converged = np.load(store.path / "converged.npy", mmap_mode="r")
            _warn_unconverged(converged, "pairs")
            return PairwiseDistances(dist, converged, BlockRunStats(n_blocks, 0, 0, 0.0, 0.0))
        # Rebuilt from the blocks on every unfinished run: the blocks are the record.
        dist = np.lib.format.open_memmap(store.path / "dist.npy", mode="w+", dtype=np.float64, shape=(n, m))
        converged = np.lib.format.open_memmap(store.path / "converged.npy", mode="w+", dtype=bool, shape=(n, m))
        converged[...] = True
    else:
        dist, converged = np.zeros((n, m)), np.ones((n, m), dtype=bool)

    def collect(block, block_dist, block_converged):
        rows, cols = _pair_indices(block.pairs, block.rows.stop - block.rows.start, block.cols.stop - block.cols.start)
        rows, cols = rows + block.rows.start, cols + block.cols.start
        dist[rows, cols], converged[rows, cols] = block_dist, block_converged
        if same:
            dist[cols, rows], converged[cols, rows] = block_dist, block_converged

    stats = _run_blocks(metric, X, Y, blocks, n_blocks, collect, store=store, client=client, progress=progress)
    if store is not None:
        dist.flush()
        converged.flush()
        store.mark_complete()
    _warn_unconverged(converged, "pairs")
    return PairwiseDistances(dist, converged, stats)


# ---------------------------------------------------------------- nearest neighbours


def _decode(metric, points, chunk=4096):
    """Flattened decoded points ``[n, D]`` as a float64 array."""
    parts = [gs.to_numpy(metric.decoder(gs.array(points[i : i + chunk]))) for i in range(0, len(points), chunk)]
    return np.concatenate(parts).astype(np.float64)


def _chord_candidates(data_x, data_y, n_candidates, exclude_self, max_entries=2**22):
    """The ``n_candidates`` points of ``Y`` nearest in data space to each point of ``X``.

    Returns
    -------
    candidates : ndarray of int, shape=[n, n_candidates]
        Sorted by chord length.
    bound : ndarray, shape=[n]
        Smallest chord to a point left out (inf if none is left out).
    """
    n, m = len(data_x), len(data_y)
    candidates, bound = np.empty((n, n_candidates), dtype=np.int64), np.full(n, np.inf)
    chunk = max(1, max_entries // m)
    for start in range(0, n, chunk):
        chord = cdist(data_x[start : start + chunk], data_y)  # [nb, m]
        if exclude_self:
            chord[np.arange(len(chord)), np.arange(start, start + len(chord))] = np.inf
        order = np.argsort(chord, axis=1, kind="stable")
        candidates[start : start + chunk] = order[:, :n_candidates]
        if n_candidates < m - exclude_self:
            bound[start : start + chunk] = np.take_along_axis(chord, order[:, n_candidates, None], axis=1)[:, 0]
    return candidates, bound


def geodesic_kneighbors(
    metric, X, Y=None, *, n_neighbors=5, n_candidates=None, block_size=DEFAULT_BLOCK_SIZE, client=None, out=None,
    progress=True,
):
    """Geodesic k-nearest neighbours, solving geodesics only for prefiltered candidates.

    For each point of ``X`` the ``n_candidates`` points of ``Y`` nearest in data
    space (chord ``|f(x) - f(y)|``, one decoder pass) are the candidates; their
    geodesic distances are solved in batched blocks of ``block_size`` rows and the
    ``n_neighbors`` nearest kept. The chord is a lower bound of the geodesic
    distance, so a row is certified exact when its farthest neighbour is no
    farther than the chord to any point left out.

    Parameters
    ----------
    metric : PullbackMetric
    X : array-like, shape=[n, dim]
        Query points.
    Y : array-like, shape=[m, dim], optional
        Points to search. Default: ``X``, each point excluded from its own neighbours.
    n_neighbors : int
        Neighbours per point. Keyword-only, as the options below.
    n_candidates : int, optional
        Candidates per point. Default ``max(2 * n_neighbors, n_neighbors + 8)``
        (at most all points).
    block_size : int
        Query points per block (a block solves ``block_size * n_candidates`` pairs).
    client : dask.distributed.Client, optional
        As in :func:`pairwise_distances`.
    out : str or os.PathLike, optional
        Folder of a store of finished blocks, as in :func:`pairwise_distances`.
    progress : bool
        Show a progress bar.

    Returns
    -------
    result : GeodesicNeighbors
        ``dist``, ``indices``, ``converged`` ``[n, n_neighbors]``, ``certified [n]``,
        ``stats``.

    Raises
    ------
    ValueError
        On points of the wrong shape or with NaN, or impossible neighbour counts.
    DistanceStoreError, OSError
        As in :func:`pairwise_distances`.

    Warns
    -----
    ConvergenceWarning
        If the solver did not converge for some candidate pairs.
    UserWarning
        If some rows are not certified exact (raise ``n_candidates``).
    """
    X, Y, same = _check_inputs(metric, X, Y, block_size)
    n, n_available = len(X), len(Y) - same
    check_integer(n_neighbors, "n_neighbors", low=1, high=n_available)
    if n_candidates is None:
        n_candidates = min(n_available, max(2 * n_neighbors, n_neighbors + 8))
    check_integer(n_candidates, "n_candidates", low=n_neighbors, high=n_available)

    data_x = _decode(metric, X)
    candidates, bound = _chord_candidates(data_x, data_x if same else _decode(metric, Y), n_candidates, same)

    def block(i):
        rows = slice(i * block_size, min(n, (i + 1) * block_size))
        cols, local = np.unique(candidates[rows], return_inverse=True)
        nb = rows.stop - rows.start
        pairs = (np.repeat(np.arange(nb), n_candidates), local.reshape(-1))
        return _Block((i,), rows, cols, pairs, nb * n_candidates)

    n_blocks = -(-n // block_size)
    store = None
    if out is not None:
        job = {"kind": "geodesic_kneighbors", "shape": [n, len(Y)], "symmetric": same, "block_size": block_size,
               "n_candidates": n_candidates}
        store = BlockStore(out, job=job, fingerprint=_fingerprint(metric, X, Y))

    geodesic, candidate_converged = np.empty((n, n_candidates)), np.empty((n, n_candidates), dtype=bool)

    def collect(block, block_dist, block_converged):
        geodesic[block.rows] = block_dist.reshape(-1, n_candidates)
        candidate_converged[block.rows] = block_converged.reshape(-1, n_candidates)

    stats = _run_blocks(
        metric, X, Y, (block(i) for i in range(n_blocks)), n_blocks, collect, store=store, client=client,
        progress=progress,
    )
    if store is not None:
        store.mark_complete()

    order = np.argsort(geodesic, axis=1, kind="stable")[:, :n_neighbors]
    dist = np.take_along_axis(geodesic, order, axis=1)
    certified = (dist[:, -1] <= bound) & candidate_converged.all(axis=1)
    _warn_unconverged(candidate_converged, "candidate pairs")
    if not certified.all():
        warnings.warn(
            f"The geodesic neighbours of {n - int(certified.sum())} of {n} points are not certified exact: "
            f"a point outside the {n_candidates} candidates may be nearer. Raise n_candidates.",
            UserWarning,
            stacklevel=2,
        )
    return GeodesicNeighbors(
        dist=dist,
        indices=np.take_along_axis(candidates, order, axis=1),
        converged=np.take_along_axis(candidate_converged, order, axis=1),
        certified=certified,
        stats=stats,
    )


def geodesic_kneighbors_graph(metric, X, Y=None, *, n_neighbors=5, **kwargs):
    """Sparse geodesic k-NN distance graph for scikit-learn's ``metric="precomputed"``.

    The layout of ``sklearn.neighbors.KNeighborsTransformer(mode="distance")``:
    rows sorted by distance; with ``Y`` None each point is also its own first
    neighbour (an explicitly stored 0), so that estimators fitted on the graph
    (``KNeighborsClassifier``, ``Isomap``, ``DBSCAN``, ``TSNE``,
    ``SpectralClustering(affinity="precomputed_nearest_neighbors")``, all with
    ``n_neighbors`` at most the one used here) find every query's neighbours.

    Parameters
    ----------
    metric : PullbackMetric
    X : array-like, shape=[n, dim]
        Query points (rows of the graph).
    Y : array-like, shape=[m, dim], optional
        Points searched (columns). Default: ``X``.
    n_neighbors : int
        Neighbours per row (besides the point itself when ``Y`` is None).
    **kwargs
        ``n_candidates``, ``block_size``, ``client``, ``out``, ``progress`` of
        :func:`geodesic_kneighbors`.

    Returns
    -------
    graph : scipy.sparse.csr_matrix, shape=[n, m]
        ``graph[i, j]`` is the geodesic distance from ``X[i]`` to its neighbour ``Y[j]``.

    Examples
    --------
    >>> from sklearn.neighbors import KNeighborsClassifier  # doctest: +SKIP
    >>> graph = gp.geodesic_kneighbors_graph(metric, codes, n_neighbors=5)  # doctest: +SKIP
    >>> KNeighborsClassifier(n_neighbors=5, metric="precomputed").fit(graph, labels)  # doctest: +SKIP
    """
    neighbors = geodesic_kneighbors(metric, X, Y, n_neighbors=n_neighbors, **kwargs)
    dist, indices = neighbors.dist, neighbors.indices
    n = len(dist)
    if Y is None:
        dist = np.concatenate([np.zeros((n, 1)), dist], axis=1)
        indices = np.concatenate([np.arange(n)[:, None], indices], axis=1)
    n_cols = n if Y is None else len(Y)
    per_row = dist.shape[1]
    return csr_matrix((dist.ravel(), indices.ravel(), np.arange(0, n * per_row + 1, per_row)), shape=(n, n_cols))
