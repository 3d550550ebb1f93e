"""Exact nearest neighbours by brute force, in blocks of anchors (memory O(block * m)), and an
approximate kNN graph by faiss's HNSW index (:func:`approximate_knn`, optional) for millions of points.

:func:`most_similar` is the one chunked top-k of the package: :class:`~icontorch.KNN`, the fused
engine's kNN targets and :func:`exact_knn` all call it.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from ._threads import rows_not_torch, run_rows
from ._validation import IConError, check_choice, check_features, check_int, fail
from .distances import SIMILARITIES, exponent_of, times_power_of_two, unit

__all__ = ["exact_knn", "most_similar", "approximate_knn", "KNN_BACKENDS"]

KNN_BACKENDS = ("exact", "faiss")
"""How a data set's kNN graph is found: :func:`exact_knn` or faiss's HNSW (:func:`approximate_knn`)."""

BLOCK_ENTRIES = 1 << 22
"""Similarities per block of anchors at most (16 MiB in float32; one block per thread at a time)."""


def most_similar(x: Tensor, y: Tensor, n_neighbors: int, metric: str,
                 self_offset: Optional[int] = None, chunk_size: int = 2048) -> Tuple[Tensor, Tensor]:
    """The ``n_neighbors`` largest ``s(x_i, y_j)`` of every anchor, most similar first, no gradient.

    ``s`` is the similarity of ``metric`` (:data:`icontorch.distances.SIMILARITIES`). Ties are
    broken by ``torch.topk``. Unchecked: the callers validate.

    Args:
        x: (n, d) anchors.
        y: (m, d) candidates shared by all anchors, or (n, m, d) candidates per anchor.
        n_neighbors: k, at most the number of candidates left after the self mask.
        metric: ``"squared_euclidean"``, ``"cosine"`` or ``"dot"``.
        self_offset: candidate ``self_offset + i`` is anchor i and never picked; None: none is.
        chunk_size: anchors per block at most; a block also holds at most
            :data:`BLOCK_ENTRIES` similarities.

    Returns:
        ``(indices, similarities)``, both (n, k).

    The ranking is computed on x and y scaled by one power of two (exact), which leaves it
    unchanged but keeps squared distances and dot products of tiny (1e-30) or huge (1e20) points
    from under- or overflowing; the similarities are scaled back. For shared candidates a block
    is one fused product: ``2 x_i . y_j - ||y_j||^2`` ranks as ``-||x_i - y_j||^2`` (``||x_i||^2``
    is the same for the whole row and added to the k winners only). On the CPU the blocks run
    side by side on blocking threads, one torch thread each
    (:func:`~icontorch._threads.rows_not_torch`): on a 2-core machine shared with a 2-thread job,
    the kNN of 70,000 MNIST digits (PCA-50) took 21 s this way against 32 s on torch's threads
    (11 s against 15 s alone).
    """
    m = y.shape[-2] if y.dim() == 3 else y.shape[0]
    exponent = 0 if metric == "cosine" else exponent_of(x, y)
    x, y = times_power_of_two(x, -exponent), times_power_of_two(y, -exponent)
    chunk = max(1, min(chunk_size, BLOCK_ENTRIES // max(1, m)))
    indices = torch.empty(x.shape[0], n_neighbors, dtype=torch.long, device=x.device)
    values = torch.empty(x.shape[0], n_neighbors, dtype=x.dtype, device=x.device)
    if metric == "cosine":  # normalise once, not once per block (the same numbers)
        x, y, metric = unit(x), unit(y), "dot"
    shared = y.dim() == 2
    if shared:
        y_t = y.T.contiguous()
        offset = (-y.square().sum(1)).unsqueeze(0) if metric == "squared_euclidean" else None

    def blocks(first: int, last: int) -> None:
        with torch.no_grad():
            for start in range(first, last, chunk):
                stop = min(last, start + chunk)
                if not shared:
                    s = SIMILARITIES[metric](x[start:stop], y[start:stop])
                elif offset is None:
                    s = x[start:stop] @ y_t
                else:
                    s = torch.addmm(offset, x[start:stop], y_t, alpha=2.0)
                if self_offset is not None:
                    i = torch.arange(start, max(start, min(stop, m - self_offset)), device=x.device)
                    s[i - start, i + self_offset] = float("-inf")
                values[start:stop], indices[start:stop] = s.topk(n_neighbors, dim=1)
                if shared and offset is not None:    # -||x_i - y_j||^2 <= 0
                    values[start:stop] = (values[start:stop] - x[start:stop].square().sum(1, keepdim=True)
                                          ).clamp_max_(0.0)
                del s  # before the next block is made: one block per thread at a time

    if x.device.type == "cpu" and shared:
        with rows_not_torch():
            run_rows(blocks, x.shape[0])
    else:
        blocks(0, x.shape[0])
    return indices, (values if exponent == 0 else times_power_of_two(values, 2 * exponent))


def exact_knn(x: Tensor, n_neighbors: int, y: Optional[Tensor] = None, metric: str = "cosine",
              chunk_size: int = 2048) -> Tuple[Tensor, Tensor]:
    """The ``n_neighbors`` nearest candidates of every anchor, exactly, by blocks of anchors.

    Nearest means largest similarity ``s`` (:func:`most_similar`), reported as the distance
    ``1 - cos`` (``"cosine"``), ``||x - y||^2`` (``"squared_euclidean"``) or ``-x . y``
    (``"dot"``). With ``y=None`` the candidates are the anchors themselves and a point is never
    its own neighbour (duplicates of it still can be). Runs on the device of ``x``.

    Args:
        x: (n, d) anchors.
        n_neighbors: neighbours per anchor, at most the number of candidates (n - 1 when ``y``
            is None).
        y: (m, d) candidates, or None for x itself.
        metric: ``"cosine"``, ``"squared_euclidean"`` or ``"dot"``.
        chunk_size: anchors per block; memory is O(chunk_size * m).

    Returns:
        ``(indices, distances)``: (n, n_neighbors) candidate indices sorted nearest first, and
        their distances.
    """
    who = "exact_knn"
    check_features(who, "x", x)
    if y is not None:
        check_features(who, "y", y)
        if y.shape[1] != x.shape[1]:
            raise fail(who, "y", f"have the feature dimension of x ({x.shape[1]})", y)
    n_neighbors = check_int(who, "n_neighbors", n_neighbors, 1)
    chunk_size = check_int(who, "chunk_size", chunk_size, 1)
    check_choice(who, "metric", metric, tuple(SIMILARITIES))
    candidates = x if y is None else y
    m = candidates.shape[0] - (1 if y is None else 0)
    if n_neighbors > m:
        raise fail(who, "n_neighbors", f"be at most the number of candidates ({m})", n_neighbors)
    indices, s = most_similar(x, candidates, n_neighbors, metric, 0 if y is None else None, chunk_size)
    return indices, (1.0 - s if metric == "cosine" else -s)


def approximate_knn(x: Tensor, n_neighbors: int, metric: str = "cosine", who: str = "approximate_knn",
                    y: Optional[Tensor] = None) -> Tensor:
    """The (n, k) approximate nearest neighbours of every row of ``x`` among the rows of ``y``
    (default ``x``, self excluded), nearest first.

    faiss's HNSW graph (Malkov and Yashunin, "Efficient and robust approximate nearest neighbor
    search using Hierarchical Navigable Small World graphs", 2018; 32 links per node,
    ``efConstruction = 100``, ``efSearch = max(2k + 2, 64)``) on CPU: time about O(n log n) and
    memory O(n (d + 32)) instead of the O(n^2 d) time of :func:`exact_knn`. ``"cosine"`` searches the
    unit-normalised rows (the same ranking). Needs the optional ``faiss`` package (``faiss-cpu``).

    Args:
        x: (n, d) points (the queries).
        n_neighbors: k < n.
        metric: ``"cosine"`` or ``"squared_euclidean"``.
        who: the caller named in errors.
        y: (m, d) candidates; None: the rows of ``x`` themselves (each point's own row dropped).
    """
    try:
        import faiss
    except ImportError:
        raise IConError(f"{who}: knn_backend='faiss' needs the faiss package (pip install faiss-cpu); "
                        f"got no module named faiss.") from None
    import numpy as np

    check_choice(who, "metric", metric, ("cosine", "squared_euclidean"))

    def as_numpy(points: Tensor) -> "np.ndarray":
        points = unit(points) if metric == "cosine" else points
        return np.ascontiguousarray(points.detach().cpu().numpy(), dtype=np.float32)

    data = as_numpy(x if y is None else y)
    index = faiss.IndexHNSWFlat(data.shape[1], 32)
    index.hnsw.efConstruction = 100
    index.add(data)
    index.hnsw.efSearch = max(2 * n_neighbors + 2, 64)
    _, found = index.search(data if y is None else as_numpy(x), n_neighbors + (1 if y is None else 0))
    found = torch.from_numpy(found).long()
    if y is None:      # drop the point itself (or, if the search missed it, the farthest one)
        own = found == torch.arange(found.shape[0])[:, None]
        own[:, -1] |= ~own.any(1)
        found = found[~own].reshape(found.shape[0], n_neighbors)
    if bool((found < 0).any()):
        raise IConError(f"{who}: the faiss search found fewer than {n_neighbors} neighbours for some points; "
                        f"use knn_backend='exact'.")
    return found.to(x.device)
