"""Geodesic distance matrices of latent points, block by block, resumable.

``dist[i, j] = metric.dist(X[i], Y[j])``: the job is cut into square blocks of
``block_size x block_size`` pairs (:mod:`~geomstats_pullback.distances.runner`);
with ``Y`` None only the blocks on and above the diagonal are solved, and the
diagonal blocks only their strict upper triangle. With ``out=`` a folder, the
finished blocks are kept in a :class:`~geomstats_pullback.distances.store.BlockStore`:
an interrupted run (worker or process killed, Ctrl-C) resumes from it, computes
only the missing blocks and returns the same values, bit for bit.

Distances only need the length of the geodesic, not an initial velocity that
``exp`` maps exactly back to the end point: by default the log solver runs
without shooting (``method="discrete"``), the fourth-order discrete geodesic
on smooth decoders (relative error ``O(1/N^4)`` in the number ``N`` of
segments) and the refined minimiser of the discrete energy on non-smooth ones
(:mod:`geomstats_pullback.geodesics.log`). ``shooting=True`` uses the
solver's own method (shooting on smooth decoders).
"""

import copy
from typing import NamedTuple

import numpy as np

from geomstats_pullback.distances.fingerprint import check_decoder_id, job_fingerprint
from geomstats_pullback.distances.runner import (
    DEFAULT_BLOCK_SIZE,
    Block,
    BlockRunStats,
    check_points,
    pair_indices,
    run_blocks,
    warn_unconverged_pairs,
)
from geomstats_pullback.distances.store import BlockStore
from geomstats_pullback.geodesics.log import GeodesicBVPSolver


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


def _matrix_blocks(n, m, size, same):
    """The blocks of an ``[n, m]`` matrix, row-major; on and above the diagonal when ``same``."""
    n_row_blocks, n_col_blocks = -(-n // size), -(-m // size)

    def block(i, j):
        rows, cols = slice(i * size, min(n, (i + 1) * size)), slice(j * size, min(m, (j + 1) * size))
        nb, mb = rows.stop - rows.start, cols.stop - cols.start
        if same and i == j:
            return Block((i, j), rows, cols, "upper", nb * (nb - 1) // 2)
        return Block((i, j), rows, cols, None, nb * mb)

    blocks = (block(i, j) for i in range(n_row_blocks) for j in range(i if same else 0, n_col_blocks))
    n_blocks = n_row_blocks * (n_row_blocks + 1) // 2 if same else n_row_blocks * n_col_blocks
    return blocks, n_blocks


def pairwise_distances(
    metric, X, Y=None, *, block_size=DEFAULT_BLOCK_SIZE, client=None, out=None, decoder_id=None, progress=True,
    shooting=False,
):
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
        ``<out>/converged.npy``, returned as read-only memory maps. The store
        is locked while a run writes it; a finished store is only read.
    decoder_id : str, optional
        Identifies the decoder in the store's fingerprint instead of a digest
        of its state: needed for decoders whose state cannot be digested (an
        object with a ``__call__`` method, a function reading an object that
        is not an array, number, container, function or module). You promise
        that it changes whenever the decoder does. Only used with ``out``.
    progress : bool
        Show a progress bar (tqdm).
    shooting : bool
        Use the log solver's own method (with a default
        :class:`~geomstats_pullback.geodesics.log.GeodesicBVPSolver`: shooting
        on smooth decoders, exact to its ``tol``). Default: its discrete
        geodesic, without ``exp`` calls (see the module docstring). A log
        solver of another class is always used as it is. Recorded in the
        store's job: a store written with the other setting is refused.

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
        solver settings, shape or block size), holds a symbolic link, is
        locked by another live run, or the decoder cannot be fingerprinted and
        no ``decoder_id`` is given.
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
    X, Y, same = check_points(metric, X, Y, block_size)
    n, m = len(X), len(Y)
    metric = metric if shooting else _discrete(metric)
    if out is None:
        check_decoder_id(decoder_id)
        dist, converged = np.zeros((n, m)), _unconverged(n, m, same)
        stats = _compute(metric, X, Y, same, block_size, dist, converged, store=None, client=client, progress=progress)
        warn_unconverged_pairs(converged, "pairs")
        return PairwiseDistances(dist, converged, stats)

    job = {
        "kind": "pairwise_distances", "shape": [n, m], "symmetric": same, "block_size": block_size,
        "shooting": bool(shooting),
    }
    with BlockStore(out, job=job, fingerprint=job_fingerprint(metric, X, Y, decoder_id=decoder_id)) as store:
        if store.complete:
            dist = store.load_matrix("dist.npy", np.float64, (n, m))
            converged = store.load_matrix("converged.npy", bool, (n, m))
            if dist is not None and converged is not None:
                warn_unconverged_pairs(converged, "pairs")
                n_blocks = _matrix_blocks(n, m, block_size, same)[1]
                return PairwiseDistances(dist, converged, BlockRunStats(n_blocks, 0, 0, 0.0, 0.0))
            store.reopen()
        # Built from the blocks under temporary names, renamed when complete: the blocks are the record.
        dist_path, dist = store.temporary_matrix(np.float64, (n, m), 0.0)
        converged_path, converged = store.temporary_matrix(bool, (n, m), False)
        if same:
            np.fill_diagonal(converged, True)
        try:
            stats = _compute(
                metric, X, Y, same, block_size, dist, converged, store=store, client=client, progress=progress
            )
            store.publish(dist_path, dist, "dist.npy")
            store.publish(converged_path, converged, "converged.npy")
        finally:
            del dist, converged
            for path in (dist_path, converged_path):
                path.unlink(missing_ok=True)
        store.mark_complete(["dist.npy", "converged.npy"])
        dist = np.load(store.path / "dist.npy", mmap_mode="r")
        converged = np.load(store.path / "converged.npy", mmap_mode="r")
    warn_unconverged_pairs(converged, "pairs")
    return PairwiseDistances(dist, converged, stats)


def _discrete(metric):
    """``metric``, or a shallow copy whose :class:`GeodesicBVPSolver` copy runs ``method="discrete"``."""
    solver = metric.log_solver
    if not isinstance(solver, GeodesicBVPSolver) or solver.method == "discrete":
        return metric
    solver = copy.copy(solver)
    solver.method = "discrete"
    metric = copy.copy(metric)
    metric.log_solver = solver
    return metric


def _unconverged(n, m, same):
    """Flags before any block is solved: False, but True on the diagonal of a symmetric matrix (0, exact)."""
    converged = np.zeros((n, m), dtype=bool)
    if same:
        np.fill_diagonal(converged, True)
    return converged


def _compute(metric, X, Y, same, block_size, dist, converged, *, store, client, progress):
    """Fill ``dist`` and ``converged`` ``[n, m]`` block by block; returns the run's statistics."""
    blocks, n_blocks = _matrix_blocks(len(X), len(Y), block_size, same)

    def collect(block, block_dist, block_converged):
        rows, cols = pair_indices(block.pairs, block.rows.stop - block.rows.start, block.cols.stop - block.cols.start)
        rows, cols = rows + block.rows.start, cols + block.cols.start  # [P] each
        dist[rows, cols], converged[rows, cols] = block_dist, block_converged
        if same:
            dist[cols, rows], converged[cols, rows] = block_dist, block_converged

    return run_blocks(metric, X, Y, blocks, n_blocks, collect, store=store, client=client, progress=progress)
