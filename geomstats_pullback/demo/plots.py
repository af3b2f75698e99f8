"""Drawing helpers shared by the demo's sections: figures, latent scatter, paths, image strips.

Figures are drawn with matplotlib's object API (``matplotlib.figure.Figure``,
Agg canvas), so nothing touches pyplot's global state or needs a display.
Nothing here computes geometry: the helpers draw arrays they are given.
"""

import math
from typing import NamedTuple

import numpy as np
from matplotlib.figure import Figure

PATH_STYLES = {
    "straight line": {"color": "k", "linestyle": "--", "linewidth": 1},
    "geodesic, mean metric": {"color": "crimson", "linewidth": 1.6},
    "geodesic, expected metric": {"color": "royalblue", "linewidth": 1.6, "linestyle": "-."},
}


class Backdrop(NamedTuple):
    """The latent codes drawn behind the paths and heat maps.

    Attributes
    ----------
    codes : numpy.ndarray, shape=[n, d]
    labels : numpy.ndarray, shape=[n]
        Digit class of each code.
    low, high : numpy.ndarray, shape=[d]
        Plotting box.
    """

    codes: np.ndarray
    labels: np.ndarray
    low: np.ndarray
    high: np.ndarray


def new_figure(n_cols=1, n_rows=1, *, width=4.2, height=3.6, **subplot_kw):
    """A figure with a grid of axes, sized per panel.

    Returns
    -------
    fig : matplotlib.figure.Figure
    axes : numpy.ndarray of Axes, shape=[n_rows, n_cols]
    """
    fig = Figure(figsize=(width * n_cols, height * n_rows), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False, subplot_kw=subplot_kw)
    return fig, axes


def scatter_codes(ax, backdrop, *, size=4, alpha=0.8, legend=True):
    """Latent codes coloured by digit class, on ``ax``, limited to the backdrop's box.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
    backdrop : Backdrop
    size, alpha : float
    legend : bool
        Add a colour bar of the classes.
    """
    codes = backdrop.codes
    points = ax.scatter(
        codes[:, 0], codes[:, 1], c=backdrop.labels, cmap="tab10", s=size, alpha=alpha, vmin=-0.5, vmax=9.5
    )
    ax.set_xlim(backdrop.low[0], backdrop.high[0])
    ax.set_ylim(backdrop.low[1], backdrop.high[1])
    ax.set_aspect("equal")
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    if legend:
        ax.figure.colorbar(points, ax=ax, ticks=range(10), label="digit")
    return points


def heat_map(ax, values, extent, backdrop, *, cmap="viridis", label=None, codes_size=1, codes_alpha=0.25, **imshow_kw):
    """A latent heat map ``values [n, n]`` with its colour bar and the codes faintly on top.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
    values : array-like, shape=[n, n]
        Row ``i`` is latent coordinate 1, column ``j`` coordinate 0.
    extent : tuple
        ``(x_min, x_max, y_min, y_max)``.
    backdrop : Backdrop
    cmap : str
    label : str, optional
        Colour bar label.
    codes_size, codes_alpha : float
        Marker size and opacity of the codes.
    **imshow_kw
        Passed to ``imshow`` (``vmin``, ``alpha``...).
    """
    image = ax.imshow(np.asarray(values), origin="lower", extent=extent, cmap=cmap, **imshow_kw)
    ax.figure.colorbar(image, ax=ax, **({} if label is None else {"label": label}))
    scatter_codes(ax, backdrop, size=codes_size, alpha=codes_alpha, legend=False)
    return image


def image_mosaic(images, n_cols):
    """Tile images ``[n, h, w]`` into one array ``[rows (h + 1) - 1, n_cols (w + 1) - 1]``, one-pixel gaps."""
    images = np.asarray(images)
    n, h, w = images.shape
    n_rows = math.ceil(n / n_cols)
    mosaic = np.zeros((n_rows * (h + 1) - 1, n_cols * (w + 1) - 1))
    for k, image in enumerate(images):
        i, j = divmod(k, n_cols)
        mosaic[i * (h + 1) : i * (h + 1) + h, j * (w + 1) : j * (w + 1) + w] = image
    return mosaic


def draw_paths(ax, paths, styles=PATH_STYLES):
    """Latent paths ``{label: array [P, n, d]}`` on ``ax`` with matplotlib ``styles`` per label."""
    for label, path in paths.items():
        for i, curve in enumerate(np.asarray(path)):
            ax.plot(curve[:, 0], curve[:, 1], label=label if i == 0 else None, **styles[label])
    first = np.asarray(next(iter(paths.values())))
    ax.plot(first[:, 0, 0], first[:, 0, 1], "k^", markersize=6, label="start")
    ax.plot(first[:, -1, 0], first[:, -1, 1], "ks", markersize=6, label="end")
    ax.legend(fontsize=7, loc="lower left")


def strips_figure(rows):
    """One row of decoded images per path.

    Parameters
    ----------
    rows : sequence of (str, array-like of shape [n_images, h, w])
        Label and images of each row.

    Returns
    -------
    fig : matplotlib.figure.Figure
    """
    fig, axes = new_figure(1, len(rows), width=9, height=0.95)
    for ax, (label, images) in zip(axes[:, 0], rows):
        images = np.asarray(images)
        ax.imshow(image_mosaic(images, len(images)), cmap="gray_r", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    return fig
