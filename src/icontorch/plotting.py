"""Plots for people (matplotlib, imported lazily, rendered off-screen)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Union

import numpy as np
import torch

from ._validation import IConError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_embedding", "plot_clusters", "plot_image_clusters"]


def _save(fig: "Figure", path: str) -> str:
    """Lay out ``fig``, write it to ``path`` atomically (the old file stays on failure) and close it."""
    import matplotlib.pyplot as plt

    from .commands._io import write_atomic

    try:
        fig.tight_layout()
        return write_atomic(path, fig.savefig)
    finally:
        plt.close(fig)


def _check_plot(who: str, points: np.ndarray, labels: Optional[np.ndarray], path: str) -> None:
    """Before drawing: finite points, one label per point, a .png / .svg path in a writable folder."""
    from .commands._io import check_output

    if not np.isfinite(points).all():
        raise IConError(f"{who}: the points must be finite; got an array of shape {points.shape} containing "
                        f"{int((~np.isfinite(points)).sum())} NaN or Inf values.")
    if labels is not None and len(labels) != points.shape[0]:
        raise IConError(f"{who}: labels must have one entry per point ({points.shape[0]}); got {len(labels)}.")
    check_output(path, "path", (".png", ".svg"), who)


def plot_embedding(embedding: Union[np.ndarray, torch.Tensor], labels: Optional[np.ndarray],
                   path: str, title: str = "") -> str:
    """Scatter a 2-D embedding coloured by label (or cluster) and save it to ``path`` (.png/.svg).

    Each class is drawn in its own colour with its name written at its median point; up to 20
    classes get a legend beside the map. A 1-D embedding is drawn along the x axis.

    Args:
        embedding: (n, 2) coordinates (extra columns are ignored; (n, 1) is spread on a line).
        labels: (n,) labels or cluster ids, or None for one colour.
        path: the image file to write (.png or .svg, in an existing folder), atomically (an existing
            file stays as it was if writing fails).
        title: a title above the map.

    Returns:
        ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    e = embedding.detach().cpu().numpy() if isinstance(embedding, torch.Tensor) else np.asarray(embedding)
    if e.ndim != 2 or e.shape[0] == 0:
        raise IConError(f"plot_embedding: embedding must be a non-empty (n, d) array; got shape {e.shape}.")
    if e.shape[1] == 1:
        e = np.hstack([e, np.zeros_like(e)])
    _check_plot("plot_embedding", e, labels, path)
    fig, ax = plt.subplots(figsize=(7.2, 6.4), dpi=110)
    size = float(np.clip(6000.0 / e.shape[0], 0.5, 12.0))
    if labels is None:
        ax.scatter(e[:, 0], e[:, 1], s=size, c="0.3", linewidths=0)
    else:
        labels = np.asarray(labels)
        classes = np.unique(labels)
        cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
        for k, c in enumerate(classes):
            pts = e[labels == c, :2]
            ax.scatter(pts[:, 0], pts[:, 1], s=size, color=cmap(k % cmap.N), linewidths=0, label=str(c))
            if len(classes) <= 50:
                ax.annotate(str(c), np.median(pts, axis=0), fontsize=11, weight="bold", ha="center",
                            va="center")
        if len(classes) <= 20:
            ax.legend(markerscale=max(1.0, 8.0 / size ** 0.5), fontsize=8, frameon=False,
                      loc="center left", bbox_to_anchor=(1.0, 0.5))
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


def plot_clusters(x: np.ndarray, labels: np.ndarray, path: str, title: str = "") -> str:
    """Cluster sizes (bars) beside a 2-D PCA map of ``x`` coloured by cluster; saved to ``path``
    atomically (an existing file stays as it was if writing fails)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x, labels = np.asarray(x, dtype=float), np.asarray(labels)
    if x.ndim != 2 or x.shape[0] == 0:
        raise IConError(f"plot_clusters: x must be a non-empty (n, d) array; got shape {x.shape}.")
    _check_plot("plot_clusters", x, labels, path)
    centred = x - x.mean(0)
    _, _, vt = np.linalg.svd(centred[: min(len(x), 20000)], full_matrices=False)
    xy = centred @ vt[:2].T if vt.shape[0] >= 2 else np.c_[centred[:, :1], np.zeros(len(x))]
    clusters, sizes = np.unique(labels, return_counts=True)
    cmap = plt.get_cmap("tab10" if len(clusters) <= 10 else "tab20")
    fig, (bars, scatter) = plt.subplots(1, 2, figsize=(11, 5), dpi=110, gridspec_kw={"width_ratios": [1, 1.6]})
    bars.bar([str(c) for c in clusters], sizes, color=[cmap(i % cmap.N) for i in range(len(clusters))])
    bars.set_xlabel("cluster")
    bars.set_ylabel("points")
    bars.set_title("cluster sizes", fontsize=10)
    for i, c in enumerate(clusters):
        pts = xy[labels == c]
        scatter.scatter(pts[:, 0], pts[:, 1], s=3, color=cmap(i % cmap.N), linewidths=0, label=str(c))
    scatter.set_xticks([])
    scatter.set_yticks([])
    scatter.set_title("first two principal components, coloured by cluster", fontsize=10)
    scatter.legend(markerscale=4, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def plot_image_clusters(images: np.ndarray, labels: np.ndarray, path: str, n_per_cluster: int = 12,
                        title: str = "", random_state: int = 0) -> str:
    """A grid of sample images per cluster (one row per cluster, its size at the left), saved to ``path``
    atomically.

    Args:
        images: (n, H, W) or (n, C, H, W) images (C = 1 grey, C = 3 colour, else the channel mean),
            shown on one common grey scale from their minimum to their maximum.
        labels: (n,) cluster of each image.
        path: the image file to write (.png/.svg).
        n_per_cluster: images drawn at random (seeded by ``random_state``) from each cluster.
        title: a title above the grid.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.asarray(images, dtype=np.float64)
    labels = np.asarray(labels)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[0] == 0 or labels.shape != (x.shape[0],):
        raise IConError(f"plot_image_clusters: images must be (n, H, W) or (n, C, H, W) with one label each; "
                        f"got images of shape {np.shape(images)} and labels of shape {labels.shape}.")
    x = x.transpose(0, 2, 3, 1) if x.shape[1] == 3 else x.mean(1)
    low, high = float(x.min()), float(x.max())
    x = (x - low) / (high - low) if high > low else np.zeros_like(x)
    clusters, sizes = np.unique(labels, return_counts=True)
    rng = np.random.default_rng(random_state)
    fig, axes = plt.subplots(len(clusters), n_per_cluster, squeeze=False, dpi=110,
                             figsize=(0.7 * n_per_cluster + 0.8, 0.7 * len(clusters) + 0.6))
    for row, (cluster, size) in enumerate(zip(clusters, sizes)):
        members = np.flatnonzero(labels == cluster)
        shown = rng.choice(members, size=min(n_per_cluster, len(members)), replace=False)
        for col, ax in enumerate(axes[row]):
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if col < len(shown):
                ax.imshow(x[shown[col]], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        axes[row][0].set_ylabel(f"{cluster}\n({size})", rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)
