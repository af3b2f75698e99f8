"""Blocks of geodesic problems, run in this process or as tasks of a Dask cluster.

A distance job (a matrix, a k-NN search) is cut into blocks of pairs. Each
block is one batched call of the metric's log solver (``metric.log_solver.solve``),
so the solver sees a few hundred to a few thousand pairs at once and memory
stays bounded by the block size. Blocks run

- in this process, one after the other, with a progress bar (the default);
- or as tasks of a Dask cluster (``client=`` a ``dask.distributed.Client``): the
  metric (decoder included) is sent to every worker once, blocks are submitted a
  few per worker thread at a time, and Dask reschedules the tasks of a worker that
  dies.

With a :class:`~geomstats_pullback.distances.store.BlockStore`, every finished
block is written to the store before it counts as done, and blocks already in
the store are read instead of solved.
"""

import logging
import time
from itertools import islice
from typing import NamedTuple

import numpy as np
from tqdm.auto import tqdm

from geomstats_pullback._arrays import to_host
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


class Block(NamedTuple):
    """Pairs ``(X[rows][r], Y[cols][c])`` of one batched solve.

    Attributes
    ----------
    key : tuple of int
        Name of the block in the store: ``(i, j)`` in a matrix, ``(i,)`` in a k-NN search.
    rows : slice
        Rows of ``X``.
    cols : slice or ndarray of int
        Rows of ``Y``.
    pairs : None, "upper" or tuple of ndarray
        Which ``(r, c)`` pairs, see :func:`pair_indices`.
    n_pairs : int
    """

    key: tuple
    rows: slice
    cols: object
    pairs: object
    n_pairs: int


def pair_indices(pairs, n_rows, n_cols):
    """Row and column indices of a block's pairs, in storage order.

    Parameters
    ----------
    pairs : None, "upper" or tuple of ndarray
        None: all pairs, row-major; ``"upper"``: the strict upper triangle,
        row-major; a tuple: the ``(r, c)`` index arrays themselves.
    n_rows, n_cols : int
        Shape of the block.

    Returns
    -------
    rows, cols : ndarray of int, shape=[P]
    """
    if pairs is None:
        return np.repeat(np.arange(n_rows), n_cols), np.tile(np.arange(n_cols), n_rows)
    if isinstance(pairs, str) and pairs == "upper":
        return np.triu_indices(n_rows, k=1)
    return pairs


def solve_block(metric, x, y, pairs):
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
        Which ``(x[r], y[c])`` pairs (see :func:`pair_indices`).

    Returns
    -------
    dist : ndarray, shape=[P]
        ``|log_{x[r]}(y[c])|``.
    converged : ndarray of bool, shape=[P]
    seconds : float
        Time spent in this function.
    """
    start = time.perf_counter()
    rows, cols = pair_indices(pairs, len(x), len(y))
    if len(rows) == 0:
        return np.zeros(0), np.ones(0, dtype=bool), time.perf_counter() - start
    base_point, point = (metric.decoder.latent_array(p) for p in (x[rows], y[cols]))  # [P, dim], where the decoder runs
    result = metric.log_solver.solve(point, base_point)
    dist = metric.norm(result.tangent_vec, base_point)
    dist = np.asarray(to_host(dist), dtype=np.float64)
    converged = np.asarray(to_host(result.converged), dtype=bool)
    return dist, converged, time.perf_counter() - start


def _as_points(points, dim, name):
    points = as_latent(points, dim, name)
    if points.ndim != 2 or points.shape[0] == 0:
        raise ValueError(f"{name} must have shape [n, {dim}] with n >= 1, got shape {tuple(points.shape)}.")
    return np.array(to_host(points), dtype=np.float64)


def check_points(metric, X, Y, block_size):
    """Validate the points and the block size of a job.

    Parameters
    ----------
    metric : PullbackMetric
    X : array-like, shape=[n, dim]
    Y : array-like, shape=[m, dim] or None
    block_size : int

    Returns
    -------
    X : ndarray, shape=[n, dim]
        As float64.
    Y : ndarray, shape=[m, dim]
        As float64; ``X`` itself when ``Y`` is None.
    same : bool
        Whether ``Y`` was None.

    Raises
    ------
    ValueError
        If the points do not have shape ``[n, dim]``, contain NaN or inf, or
        ``block_size`` is not a positive integer.
    """
    check_integer(block_size, "block_size", low=1)
    dim = metric.decoder.latent_dim
    X = _as_points(X, dim, "X")
    same = Y is None
    Y = X if same else _as_points(Y, dim, "Y")
    return X, Y, same


def warn_unconverged_pairs(converged, what):
    """Warn (and log) how many of ``converged`` are False, on behalf of the caller's caller.

    Parameters
    ----------
    converged : ndarray of bool
    what : str
        What the entries are, e.g. ``"pairs"``.
    """
    n_bad = int(converged.size - np.count_nonzero(converged))
    if n_bad:
        message = (
            f"The log solver did not converge for {n_bad} of {converged.size} {what}: their distances "
            "are flagged in `converged` and may be wrong."
        )
        warn_unconverged(logger, message, stacklevel=3)


def run_blocks(metric, X, Y, blocks, n_blocks, collect, *, store, client, progress):
    """Compute the blocks missing from the store; pass every block to ``collect``.

    Parameters
    ----------
    metric : PullbackMetric
    X : ndarray, shape=[n, dim]
    Y : ndarray, shape=[m, dim]
    blocks : iterable of Block
        Consumed lazily, so that only the blocks in flight are held.
    n_blocks : int
        Length of ``blocks`` (for the progress bar and the statistics).
    collect : callable
        ``collect(block, dist [P], converged [P])``, called once per block, for
        the stored blocks and the computed ones alike; computed blocks reach
        the store first.
    store : BlockStore or None
    client : dask.distributed.Client or None
        None: solve in this process.
    progress : bool
        Show a progress bar.

    Returns
    -------
    stats : BlockRunStats
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
                finish(block, *solve_block(metric, X[block.rows], Y[block.cols], block.pairs))
        else:
            _run_on_dask(client, metric, X, Y, missing(), finish)

    return BlockRunStats(n_blocks=n_blocks, wall_seconds=time.perf_counter() - start, **totals)


def _run_on_dask(client, metric, X, Y, blocks, finish):
    """Run blocks as Dask tasks, a few per worker thread in flight at a time."""
    from distributed import as_completed  # lazy: Dask is an optional dependency

    run = f"geodesic-block-{time.time_ns():x}"
    metric_future = client.scatter(metric, broadcast=True, hash=False)  # shipped once per worker
    in_flight = {}
    finished = as_completed(with_results=True)

    def submit(block):
        future = client.submit(
            solve_block, metric_future, X[block.rows], Y[block.cols], block.pairs,
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
