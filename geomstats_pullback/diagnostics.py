r"""A learned manifold's geometry at a glance: one call, arrays, and a figure.

:func:`diagnose` evaluates, at latent points (scattered codes or a grid),

- the magnification factor ``sqrt(det G)`` (how the decoder scales latent volume);
- the condition number ``lambda_max / lambda_min`` of ``G`` (1 for a local
  scaled isometry; the MCN of Lee et al.'s IRVAE paper);
- the local isometry distortion ``d Tr(G^2) / Tr(G)^2 - 1`` (0 iff ``G = c
  I`` at the point) and its global version over all points, IRVAE's relaxed
  distortion ``d E[Tr G^2] / E[Tr G]^2 - 1``, computed exactly (the training
  loss :func:`~geomstats_pullback.regularizers.isometry_distortion` estimates it);
- the indicatrix ``{v : v^T G v = 1}`` in the plane of latent coordinates 0
  and 1, as the matrix ``A = G_2^{-1/2}`` mapping the unit circle onto it
  (``G_2`` the ``2 x 2`` block of ``G``);
- sectional curvatures: of the coordinate plane ``(e_0, e_1)``, plus, for
  ``d > 2``, of random planes.

:func:`plot_diagnostics` draws them with matplotlib (imported on call). Cost
per point: one Jacobian (``d`` decoder passes), one Hessian per curvature
evaluation (``O(d^2)`` second derivatives), ``O(d^3)`` algebra.
"""

from typing import NamedTuple

import numpy as np
import torch

from geomstats_pullback._validation import as_latent, check_integer

#: Points per metric evaluation: bounds the memory of large grids.
CHUNK = 1024


class Diagnostics(NamedTuple):
    """What :func:`diagnose` measured; ``[...]`` is the batch shape of the points."""

    points: object  #: shape=[..., d]
    metric_matrix: object  #: shape=[..., d, d]
    magnification: object  #: shape=[...], sqrt(det G)
    condition_number: object  #: shape=[...], lambda_max / lambda_min of G
    distortion: object  #: shape=[...], d Tr(G^2) / Tr(G)^2 - 1
    global_distortion: float  #: d E[Tr G^2] / E[Tr G]^2 - 1 over all points
    indicatrix: object  #: shape=[..., 2, 2], ``A`` with the indicatrix ``{A c : |c| = 1}`` in coordinates 0, 1
    sectional_curvature: object  #: shape=[..., n_planes]; plane 0 is (e_0, e_1)
    plane_a: object  #: shape=[..., n_planes, d]
    plane_b: object  #: shape=[..., n_planes, d]


def _inverse_sqrt(matrix):
    """``M^{-1/2}`` of symmetric positive definite ``[..., k, k]``."""
    eigvals, eigvecs = torch.linalg.eigh(matrix)
    return eigvecs @ torch.diag_embed(eigvals.clamp_min(torch.finfo(matrix.dtype).tiny) ** -0.5) @ eigvecs.mT


def diagnose(space, points, *, n_planes=None, generator=None):
    """Magnification, conditioning, distortion, indicatrices and curvature at latent points.

    Parameters
    ----------
    space : DecoderManifold
        Its metric is used (with its ``eps``).
    points : array-like, shape=[..., d]
        Codes ``[n, d]`` or a grid ``[n_1, n_2, d]`` (see
        :func:`plot_diagnostics`).
    n_planes : int, optional
        Planes per point for the sectional curvature: the coordinate plane
        ``(e_0, e_1)`` and ``n_planes - 1`` planes spanned by two standard
        Gaussian vectors. Default: 1 for ``d = 2`` (the only plane), 4 otherwise.
    generator : torch.Generator, int or None
        Seed of the random planes.

    Returns
    -------
    diagnostics : Diagnostics
        Arrays in geomstats' dtype (float64 by default).

    Raises
    ------
    ValueError
        If ``d < 2`` (no plane, no indicatrix in two coordinates).
    """
    dim = space.dim
    points = as_latent(points, dim, "points")
    if dim < 2:
        raise ValueError("diagnose needs a latent dimension of at least 2.")
    n_planes = check_integer(n_planes if n_planes is not None else (1 if dim == 2 else 4), "n_planes", low=1)
    if isinstance(generator, int):
        generator = torch.Generator().manual_seed(generator)
    batch_shape = points.shape[:-1]
    flat = points.reshape(-1, dim)
    n = flat.shape[0]
    metric = space.metric
    gram = torch.cat([metric.metric_matrix(chunk) for chunk in torch.split(flat, CHUNK)])  # [n, d, d]
    eigvals = torch.linalg.eigvalsh(gram)  # [n, d], ascending
    trace, trace_sq = eigvals.sum(-1), (eigvals**2).sum(-1)
    eye = torch.eye(dim, dtype=flat.dtype, device=flat.device)
    plane_a = eye[0].expand(n, n_planes, dim).clone()
    plane_b = eye[1].expand(n, n_planes, dim).clone()
    if n_planes > 1:
        drawn_on = generator.device if generator is not None else flat.device  # a generator draws on its own device
        random = torch.randn((2, n, n_planes - 1, dim), generator=generator, dtype=flat.dtype, device=drawn_on)
        random = random.to(flat.device)
        plane_a[:, 1:], plane_b[:, 1:] = random
    base = flat[:, None].expand(n, n_planes, dim).reshape(-1, dim)
    curvature = torch.cat([
        metric.sectional_curvature(a, b, p)
        for a, b, p in zip(*(torch.split(x, CHUNK) for x in (plane_a.reshape(-1, dim), plane_b.reshape(-1, dim), base)))
    ]).reshape(n, n_planes)
    return Diagnostics(
        points=points,
        metric_matrix=gram.reshape(*batch_shape, dim, dim),
        magnification=torch.sqrt(torch.clamp_min(eigvals, 0).prod(-1)).reshape(batch_shape),
        condition_number=(eigvals[:, -1] / eigvals[:, 0]).reshape(batch_shape),
        distortion=(dim * trace_sq / trace**2 - 1).reshape(batch_shape),
        global_distortion=float(dim * trace_sq.mean() / trace.mean() ** 2 - 1),
        indicatrix=_inverse_sqrt(gram[:, :2, :2]).reshape(*batch_shape, 2, 2),
        sectional_curvature=curvature.reshape(*batch_shape, n_planes),
        plane_a=plane_a.reshape(*batch_shape, n_planes, dim),
        plane_b=plane_b.reshape(*batch_shape, n_planes, dim),
    )


def _panels(diagnostics):
    """``(title, values [...])`` of the four maps."""
    return (
        ("log10 magnification sqrt(det G)", torch.log10(diagnostics.magnification)),
        ("log10 condition number of G", torch.log10(diagnostics.condition_number)),
        ("isometry distortion d Tr(G^2)/Tr(G)^2 - 1", diagnostics.distortion),
        ("sectional curvature (e0, e1)", diagnostics.sectional_curvature[..., 0]),
    )


def plot_diagnostics(diagnostics, *, codes=None, n_ellipses=8, fig=None):
    """Draw the maps of :func:`diagnose`: magnification with indicatrices, conditioning, distortion, curvature.

    A grid (points ``[n_1, n_2, d]``, coordinate 0 varying along axis 1 and
    coordinate 1 along axis 0, as ``numpy.meshgrid`` makes them) is drawn as
    heat maps; scattered points ``[n, d]`` as coloured dots. Indicatrix
    ellipses (coordinates 0 and 1) are drawn on the first panel at up to
    ``n_ellipses`` points per axis, all scaled by one factor so that the
    median fits the spacing.

    Parameters
    ----------
    diagnostics : Diagnostics
    codes : array-like, shape=[m, d], optional
        Drawn as small grey dots (the data's codes).
    n_ellipses : int
    fig : matplotlib.figure.Figure, optional
        Drawn into (a new 4-panel figure by default).

    Returns
    -------
    fig : matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Polygon

    if fig is None:
        fig = Figure(figsize=(16, 3.8), layout="constrained")
    axes = fig.subplots(1, 4)
    points = np.asarray(diagnostics.points)
    is_grid = points.ndim == 3
    xy = points[..., :2].reshape(-1, 2)
    extent = (xy[:, 0].min(), xy[:, 0].max(), xy[:, 1].min(), xy[:, 1].max())
    for ax, (title, values) in zip(axes, _panels(diagnostics)):
        values = np.asarray(values)
        finite = values[np.isfinite(values)]
        vmin, vmax = (np.quantile(finite, [0.02, 0.98]) if finite.size else (0.0, 1.0))
        if "curvature" in title:
            vmax = max(abs(vmin), abs(vmax), 1e-12)
            vmin, cmap = -vmax, "RdBu_r"
        else:
            cmap = "viridis"
        if is_grid:
            image = ax.imshow(values, origin="lower", extent=extent, aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax)
        else:
            image = ax.scatter(xy[:, 0], xy[:, 1], c=values.reshape(-1), s=8, cmap=cmap, vmin=vmin, vmax=vmax)
        if codes is not None:
            codes_xy = np.asarray(codes)[:, :2]
            ax.scatter(codes_xy[:, 0], codes_xy[:, 1], s=1, c="0.4", alpha=0.5)
        fig.colorbar(image, ax=ax, shrink=0.85)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("z0")
        ax.set_ylabel("z1")
    _draw_indicatrices(axes[0], points, np.asarray(diagnostics.indicatrix), n_ellipses, Polygon)
    for ax in axes:
        ax.set_xlim(extent[:2])
        ax.set_ylim(extent[2:])
    return fig


def _draw_indicatrices(ax, points, indicatrix, n_ellipses, polygon):
    """Indicatrix ellipses on ``ax`` at a subsample of ``points``."""
    if points.ndim == 3:
        rows = np.unique(np.linspace(0, points.shape[0] - 1, n_ellipses).round().astype(int))
        cols = np.unique(np.linspace(0, points.shape[1] - 1, n_ellipses).round().astype(int))
        centres = points[np.ix_(rows, cols)][..., :2].reshape(-1, 2)
        shapes = indicatrix[np.ix_(rows, cols)].reshape(-1, 2, 2)
    else:
        step = max(1, len(points) // n_ellipses**2)
        centres, shapes = points[::step, :2], indicatrix[::step]
    span = np.ptp(points[..., :2].reshape(-1, 2), axis=0).min()
    radius = np.linalg.norm(shapes, ord=2, axis=(-2, -1))  # largest semi-axis
    finite = np.isfinite(radius) & (radius > 0)
    if not finite.any():
        return
    scale = 0.4 * span / n_ellipses / np.median(radius[finite])
    angles = np.linspace(0, 2 * np.pi, 41)
    circle = np.stack([np.cos(angles), np.sin(angles)])  # [2, 41]
    for centre, shape in zip(centres[finite], shapes[finite]):
        outline = centre[:, None] + scale * shape @ circle
        ax.add_patch(polygon(outline.T, closed=True, fill=False, edgecolor="w", linewidth=0.8))
