"""Plots for people (matplotlib, imported lazily, rendered off-screen)."""

from __future__ import annotations

from typing import Optional, Union

import numpy as np
import torch

__all__ = ["plot_embedding"]


def plot_embedding(embedding: Union[np.ndarray, torch.Tensor], labels: Optional[np.ndarray],
                   path: str, title: str = "") -> str:
    """Scatter a 2-D embedding coloured by label (or cluster) and save it to ``path`` (.png/.svg).

    Returns:
        ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    e = embedding.detach().cpu().numpy() if isinstance(embedding, torch.Tensor) else np.asarray(embedding)
    fig, ax = plt.subplots(figsize=(6.4, 6.4), dpi=110)
    if labels is None:
        ax.scatter(e[:, 0], e[:, 1], s=3, c="0.3", linewidths=0)
    else:
        labels = np.asarray(labels)
        classes = np.unique(labels)
        cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
        for k, c in enumerate(classes):
            pts = e[labels == c]
            ax.scatter(pts[:, 0], pts[:, 1], s=3, color=cmap(k % cmap.N), linewidths=0, label=str(c))
            ax.annotate(str(c), np.median(pts, axis=0), fontsize=12, weight="bold", ha="center")
        ax.legend(markerscale=4, fontsize=7, loc="best", frameon=False)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
