"""Graph initialisation of geodesic problems: shortest paths through a cloud of latent points.

Far-apart points and decoders with holes (stochastic decoders) can trap Newton's
method started from the straight latent line. A set of latent points (e.g. a
data set's codes) gives a better start: the shortest path between the two end
points in the k-nearest-neighbour graph of the set, with data-space edge
lengths (scikit-learn's neighbour search, scipy's Dijkstra). Cost: one
decoder call on the set, ``O(n log n)`` neighbour search, one Dijkstra from
every start point.
"""

import geomstats.backend as gs
import numpy as np
from scipy.sparse import csr_matrix, hstack, vstack
from scipy.sparse.csgraph import dijkstra

from geomstats_pullback._arrays import asarray, to_host


def _knn_edges(points, queries, n_neighbors):
    """Edges ``(sources, targets)`` of the k-NN graph of ``points [n, d]`` plus ``queries [q, d]``.

    Each point is joined to its ``n_neighbors`` nearest other points, each
    query to its ``n_neighbors + 1`` nearest points; queries are numbered
    after the points.
    """
    from sklearn.neighbors import NearestNeighbors  # here: `import geomstats_pullback` stays free of scikit-learn

    search = NearestNeighbors(n_neighbors=n_neighbors).fit(points)
    own = search.kneighbors_graph(mode="connectivity")  # [n, n], a point is not its own neighbour
    others = search.kneighbors_graph(queries, n_neighbors=n_neighbors + 1, mode="connectivity")  # [q, n]
    adjacency = hstack([vstack([own, others]), csr_matrix((points.shape[0] + queries.shape[0], queries.shape[0]))])
    return adjacency.nonzero()


def _resample_by_arc_length(vertices, decoded, n_segments):
    """Polylines ``[B, L, d]`` resampled to ``n_segments + 1`` nodes evenly spaced in data-space arc length."""
    n_paths = vertices.shape[0]
    steps = np.linalg.norm(np.diff(decoded, axis=1), axis=-1)  # [B, L-1]
    arc = np.concatenate([np.zeros((n_paths, 1)), np.cumsum(steps, axis=1)], axis=1)  # [B, L]
    total = np.maximum(arc[:, -1:], 1e-300)
    targets = np.linspace(0.0, 1.0, n_segments + 1)[None, :] * total  # [B, n+1]
    segment = np.clip((arc[:, None, :] <= targets[:, :, None]).sum(-1) - 1, 0, arc.shape[1] - 2)
    rows = np.arange(n_paths)[:, None]
    left, right = arc[rows, segment], arc[rows, segment + 1]
    frac = np.clip((targets - left) / np.maximum(right - left, 1e-300), 0.0, 1.0)[..., None]
    return vertices[rows, segment] * (1 - frac) + vertices[rows, segment + 1] * frac


def graph_paths(decoder, points, start, end, n_neighbors, n_segments):
    """Shortest paths between ``start`` and ``end`` through the k-NN graph of ``points``.

    The graph joins each point (and each end point) to its ``n_neighbors``
    nearest points in latent space, with data-space edge lengths
    ``|f(a) - f(b)|``; one Dijkstra call serves all pairs.

    Parameters
    ----------
    decoder : Decoder
    points : array-like, shape=[n_points, d]
    start, end : array-like, shape=[B, d]
    n_neighbors : int
    n_segments : int
        The paths get ``n_segments + 1`` nodes, evenly spaced in data-space arc length.

    Returns
    -------
    paths : array-like, shape=[B, n_segments + 1, d]
    found : array-like, shape=[B], bool
        False where ``end`` is not reachable from ``start``.
    """
    n_pairs = start.shape[0]
    n_points = points.shape[0]
    all_nodes = gs.concatenate([points, start, end], axis=0)
    nodes = to_host(all_nodes)
    decoded = to_host(decoder(all_nodes))
    sources, targets = _knn_edges(nodes[:n_points], nodes[n_points:], min(n_neighbors, n_points - 1))
    lengths = np.maximum(np.linalg.norm(decoded[sources] - decoded[targets], axis=-1), 1e-300)  # scipy drops zeros
    graph = csr_matrix((lengths, (sources, targets)), shape=(nodes.shape[0],) * 2)
    start_ids = n_points + np.arange(n_pairs)
    end_ids = n_points + n_pairs + np.arange(n_pairs)
    dist, predecessors = dijkstra(graph, directed=False, indices=start_ids, return_predecessors=True)
    found = np.isfinite(dist[np.arange(n_pairs), end_ids])
    # Walk back from every end at once; a finished walk stays on its start.
    walk = [np.where(found, end_ids, start_ids)]
    while np.any(walk[-1] != start_ids):
        current = walk[-1]
        walk.append(np.where(current != start_ids, predecessors[np.arange(n_pairs), current], current))
    order = np.stack(walk[::-1], axis=1)  # [B, L], start first (repeated for short paths)
    paths = _resample_by_arc_length(nodes[order], decoded[order], n_segments)
    paths[:, 0], paths[:, -1] = nodes[start_ids], nodes[end_ids]
    return asarray(paths, like=start), asarray(found, like=start, dtype=bool)
