"""Geodesic k-nearest neighbours of latent points, and their sparse graph for scikit-learn.

The chord ``|f(x) - f(y)|`` between decoded points is a lower bound of the
geodesic distance (a curve of data space is no shorter than the segment
between its ends). So the search decodes every point once, takes for each
query the ``n_candidates`` points nearest in data space (scikit-learn's
``NearestNeighbors``), solves geodesics only for these candidate pairs, in
blocks of query rows (:mod:`~geomstats_pullback.distances.runner`), and keeps
the ``n_neighbors`` nearest. A row is certified exact when its farthest
neighbour is no farther than the chord to any point left out.
"""

import warnings
from typing import NamedTuple

import numpy as np
from scipy.sparse import csr_matrix

from geomstats_pullback._arrays import to_host
from geomstats_pullback._validation import check_integer
from geomstats_pullback.distances.fingerprint import check_decoder_id, job_fingerprint
from geomstats_pullback.distances.runner import (
    DEFAULT_BLOCK_SIZE,
    Block,
    BlockRunStats,
    check_points,
    run_blocks,
    warn_unconverged_pairs,
)
from geomstats_pullback.distances.store import BlockStore


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


def _decode(metric, points, chunk=4096):
    """Flattened decoded points ``[n, D]`` as a float64 array."""
    decoder = metric.decoder
    parts = [to_host(decoder(decoder.latent_array(points[i : i + chunk]))) for i in range(0, len(points), chunk)]
    return np.concatenate(parts).astype(np.float64)


def _by_chord_then_index(chord, index):
    """Sort ``chord`` and ``index`` (same shape) along the last axis by chord, ties by index."""
    order = np.lexsort((index, chord), axis=-1)
    return np.take_along_axis(chord, order, axis=-1), np.take_along_axis(index, order, axis=-1)


def chord_candidates(data_x, data_y, n_candidates, exclude_self):
    """The ``n_candidates`` points of ``Y`` nearest in data space to each point of ``X``.

    Points are ranked by chord, equal chords by index: the candidates are the
    first ``n_candidates`` of each row of a stable ``argsort`` of the chord
    matrix, which is never formed. A ball tree (``NearestNeighbors(algorithm="ball_tree")``)
    is built in ``O(m log m)``; a query costs about ``O(log m)`` chords in a low
    data dimension and up to ``m`` in a high one (``O(m D)``). Chords are
    ``sqrt(sum((x - y) ** 2))``, as :func:`scipy.spatial.distance.cdist` computes
    them (not through ``|x|^2 - 2 x.y + |y|^2``, which loses digits for near points).

    Parameters
    ----------
    data_x : ndarray, shape=[n, D]
        Decoded query points.
    data_y : ndarray, shape=[m, D]
        Decoded points searched; ``data_x`` itself when ``exclude_self``.
    n_candidates : int
        At most ``m - exclude_self``.
    exclude_self : bool
        Leave each point out of its own candidates (``data_y`` is ``data_x``).

    Returns
    -------
    candidates : ndarray of int, shape=[n, n_candidates]
        Sorted by chord, then index.
    bound : ndarray, shape=[n]
        Smallest chord to a point left out (inf if none is left out).
    """
    with_bound = n_candidates < len(data_y) - exclude_self
    from sklearn.neighbors import NearestNeighbors  # imported here: scikit-learn is slow to import

    search = NearestNeighbors(algorithm="ball_tree").fit(data_y)
    # Query None: scikit-learn leaves each fitted point out of its own neighbours.
    chord, index = search.kneighbors(None if exclude_self else data_x, n_candidates + with_bound)  # [n, k (+1)]
    chord, index = _by_chord_then_index(chord, index)
    if not with_bound:
        return index, np.full(len(data_x), np.inf)
    bound = chord[:, n_candidates]
    # Equal chords across the last candidate: the tree chose among them; take the lowest indices.
    # The tree compares squared chords with the squared radius: widen it, then filter on the chord.
    for row in np.flatnonzero(chord[:, n_candidates - 1] == bound):
        near = search.radius_neighbors(data_x[row : row + 1], radius=bound[row] * (1 + 1e-9))
        near_chord, near_index = near[0][0], near[1][0]
        keep = (near_chord <= bound[row]) & ~(exclude_self & (near_index == row))
        index[row, :n_candidates] = _by_chord_then_index(near_chord[keep], near_index[keep])[1][:n_candidates]
    return index[:, :n_candidates], bound


def geodesic_kneighbors(
    metric, X, Y=None, *, n_neighbors=5, n_candidates=None, block_size=DEFAULT_BLOCK_SIZE, client=None, out=None,
    decoder_id=None, progress=True,
):
    """Geodesic k-nearest neighbours, solving geodesics only for prefiltered candidates.

    For each point of ``X`` the ``n_candidates`` points of ``Y`` nearest in data
    space (chord ``|f(x) - f(y)|``, one decoder pass; see :func:`chord_candidates`)
    are the candidates; their geodesic distances are solved in batched blocks of
    ``block_size`` rows and the ``n_neighbors`` nearest kept (equal distances in
    candidate order). The chord is a lower bound of the geodesic distance, so a
    row is certified exact when its farthest neighbour is no farther than the
    chord to any point left out.

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
        As in :func:`~geomstats_pullback.distances.matrix.pairwise_distances`.
    out : str or os.PathLike, optional
        Folder of a store of finished blocks, as in
        :func:`~geomstats_pullback.distances.matrix.pairwise_distances`.
    decoder_id : str, optional
        Names the decoder in the store's fingerprint, as in
        :func:`~geomstats_pullback.distances.matrix.pairwise_distances`.
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
        As in :func:`~geomstats_pullback.distances.matrix.pairwise_distances`.

    Warns
    -----
    ConvergenceWarning
        If the solver did not converge for some candidate pairs.
    UserWarning
        If some rows are not certified exact (raise ``n_candidates``).
    """
    X, Y, same = check_points(metric, X, Y, block_size)
    n, n_available = len(X), len(Y) - same
    check_integer(n_neighbors, "n_neighbors", low=1, high=n_available)
    if n_candidates is None:
        n_candidates = min(n_available, max(2 * n_neighbors, n_neighbors + 8))
    check_integer(n_candidates, "n_candidates", low=n_neighbors, high=n_available)

    data_x = _decode(metric, X)
    candidates, bound = chord_candidates(data_x, data_x if same else _decode(metric, Y), n_candidates, same)

    def block(i):
        rows = slice(i * block_size, min(n, (i + 1) * block_size))
        cols, local = np.unique(candidates[rows], return_inverse=True)
        nb = rows.stop - rows.start
        pairs = (np.repeat(np.arange(nb), n_candidates), local.reshape(-1))  # [nb * n_candidates] each
        return Block((i,), rows, cols, pairs, nb * n_candidates)

    n_blocks = -(-n // block_size)
    geodesic, candidate_converged = np.empty((n, n_candidates)), np.zeros((n, n_candidates), dtype=bool)

    def collect(block, block_dist, block_converged):
        geodesic[block.rows] = block_dist.reshape(-1, n_candidates)
        candidate_converged[block.rows] = block_converged.reshape(-1, n_candidates)

    def compute(store):
        return run_blocks(
            metric, X, Y, (block(i) for i in range(n_blocks)), n_blocks, collect, store=store, client=client,
            progress=progress,
        )

    if out is None:
        check_decoder_id(decoder_id)
        stats = compute(None)
    else:
        job = {"kind": "geodesic_kneighbors", "shape": [n, len(Y)], "symmetric": same, "block_size": block_size,
               "n_candidates": n_candidates}
        with BlockStore(out, job=job, fingerprint=job_fingerprint(metric, X, Y, decoder_id=decoder_id)) as store:
            stats = compute(store)
            if not store.complete:
                store.mark_complete()

    order = np.argsort(geodesic, axis=1, kind="stable")[:, :n_neighbors]
    dist = np.take_along_axis(geodesic, order, axis=1)
    certified = (dist[:, -1] <= bound) & candidate_converged.all(axis=1)
    warn_unconverged_pairs(candidate_converged, "candidate pairs")
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
        ``n_candidates``, ``block_size``, ``client``, ``out``, ``decoder_id``, ``progress`` of
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
    dist, indices = neighbors.dist, neighbors.indices  # [n, k]
    n = len(dist)
    if Y is None:
        dist = np.concatenate([np.zeros((n, 1)), dist], axis=1)  # [n, k + 1]
        indices = np.concatenate([np.arange(n)[:, None], indices], axis=1)
    n_cols = n if Y is None else len(Y)
    per_row = dist.shape[1]
    return csr_matrix((dist.ravel(), indices.ravel(), np.arange(0, n * per_row + 1, per_row)), shape=(n, n_cols))
