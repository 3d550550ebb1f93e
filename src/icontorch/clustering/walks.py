"""Neighbour propagation on the kNN graph (the paper's section 3.3.3): the nodes that walks of a few
steps reach from each node, as a :class:`~icontorch.clustering.graph.NeighborGraph`, computed a
block of rows at a time and, with ``max_neighbors``, bounded to O(N m) edges."""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from .._validation import check_choice, check_int
from .graph import NeighborGraph, _check_knn

__all__ = ["walk_graph"]


def walk_graph(knn: Tensor, walk_length: int = 0, symmetric: bool = True, mode: str = "reach",
               max_neighbors: Optional[int] = None) -> NeighborGraph:
    """Neighbour propagation on a kNN graph: the nodes reached in ``1 .. walk_length + 1`` steps.

    ``mode="reach"``: ``R(i) = {j != i : (A + A^2 + ... + A^(s+1))_ij > 0}`` with A the directed
    kNN adjacency and ``s = walk_length`` (the paper's uniform form, section 3.3.3); every edge
    weighs 1. ``mode="sum"``: the smoothed form ``W = P + P^2 + ... + P^(s+1)`` with ``P = A / k``
    the random-walk transition matrix of the kNN graph, diagonal dropped; nodes reached by many
    walks weigh more than those one stray path reaches. Another view of a node weighs ``1 / k``
    (one kNN step).

    ``max_neighbors = m`` bounds every row before the symmetrisation: ``"reach"`` keeps the m
    nodes reached in the fewest steps (breadth first; ties: more edges from the nodes first
    reached one step before, then the lower id); ``"sum"`` the m of largest ``W_ij`` (ties: the
    lower id). Computed hop by hop on edge lists, a block of rows at a time: memory O(N m) for
    the graph (O(N k^(s+1)) without a bound) plus O(block k^(s+1)) while a block is walked, never
    N x N.

    With ``symmetric=False`` and no bound this is :func:`icontorch.propagate` without its dense
    (N, N) powers: for the kNN neighbourhood ``p(j|i) = 1 / k`` (an :class:`icontorch.Precomputed`),
    ``propagate(p, s + 1, mode)`` is uniform over row i of this graph (``"reach"``) or proportional
    to its weights (``"sum"``). ``symmetric=True`` then adds the reversed edges.

    Args:
        knn: (N, k) neighbour ids (:func:`~icontorch.clustering.graph.knn_indices`).
        walk_length: s >= 0 extra steps beyond the kNN.
        symmetric: make the relation symmetric (see the module docstring); weights ``(w_ij + w_ji) / 2``.
        mode: ``"reach"`` or ``"sum"``.
        max_neighbors: m >= 1, the most neighbours a row keeps before the symmetrisation; None:
            all that the walks reach.
    """
    who = "walk_graph"
    n, k = _check_knn(who, knn)
    walk_length = check_int(who, "walk_length", walk_length, 0)
    check_choice(who, "mode", mode, ("reach", "sum"))
    if max_neighbors is not None:
        max_neighbors = check_int(who, "max_neighbors", max_neighbors, 1)
    widest = min(k ** (walk_length + 1), n)           # a row's size, at most: "reach" stops at the bound,
    if mode == "reach" and max_neighbors is not None:   # "sum" walks every path first
        widest = min(widest, max_neighbors)
    block = max(256, _BLOCK_ENTRIES // (k * widest))
    keys, values = [], []
    walk = _walk_sum if mode == "sum" else _walk_reach
    for start in range(0, n, block):
        sources = torch.arange(start, min(n, start + block), device=knn.device)
        block_keys, block_values = walk(sources, knn, walk_length, max_neighbors)
        keys.append(block_keys)
        values.append(block_values)
    if mode == "sum":
        graph = NeighborGraph._from_keys(torch.cat(keys), n, torch.cat(values).float(), 1.0 / k)
    else:
        graph = NeighborGraph._from_keys(torch.cat(keys), n, None, 1.0)
    return graph.symmetrized() if symmetric else graph


_BLOCK_ENTRIES = 1 << 22    # (row, node) pairs a block of rows may expand to in one hop


def _first_per_row(rows: Tensor, priority: Tensor, room: Tensor) -> Tensor:
    """Boolean mask of the entries kept when each row keeps its ``room[row]`` entries of highest
    ``priority`` (ties: the earlier entry). ``rows`` are block-local ids."""
    order = torch.sort(priority, descending=True, stable=True).indices
    order = order[torch.sort(rows[order], stable=True).indices]
    ranked_rows = rows[order]
    rank = torch.arange(order.shape[0], device=rows.device) - torch.searchsorted(ranked_rows, ranked_rows)
    keep = torch.zeros(rows.shape[0], dtype=torch.bool, device=rows.device)
    keep[order] = rank < room[ranked_rows]
    return keep


def _walk_reach(sources: Tensor, knn: Tensor, walk_length: int,
                max_neighbors: Optional[int]) -> Tuple[Tensor, None]:
    """Sorted keys ``i * N + j`` of the nodes j != i reached from each source i (see :func:`walk_graph`)."""
    n, k = knn.shape
    first = sources[0]
    step = sources.repeat_interleave(k) * n + knn[sources].reshape(-1)
    reached = torch.empty(0, dtype=torch.long, device=knn.device)
    for hop in range(walk_length + 1):
        step, walks = torch.unique(step, return_counts=True)
        new = step // n != step % n                             # a walk that returns to its start
        if reached.numel():                                     # keep only pairs never seen before
            pos = torch.searchsorted(reached, step).clamp_max(reached.numel() - 1)
            new &= reached[pos] != step
        step, walks = step[new], walks[new]
        if max_neighbors is not None:
            room = max_neighbors - torch.bincount(reached // n - first, minlength=sources.shape[0])
            keep = _first_per_row(step // n - first, walks, room)
            step = step[keep]
        if step.numel() == 0:
            break
        reached = torch.unique(torch.cat([reached, step]))
        if hop < walk_length:                                   # one more step from the nodes reached last
            step = (step // n).repeat_interleave(k) * n + knn[step % n].reshape(-1)
    return reached, None


def _walk_sum(sources: Tensor, knn: Tensor, walk_length: int,
              max_neighbors: Optional[int]) -> Tuple[Tensor, Tensor]:
    """Keys ``i * N + j`` and weights of ``W = P + ... + P^(s+1)``, ``P = A / k``, for the rows of
    ``sources``, diagonal dropped (see :func:`walk_graph`)."""
    n, k = knn.shape
    keys = sources.repeat_interleave(k) * n + knn[sources].reshape(-1)
    values = torch.full((keys.shape[0],), 1.0 / k, dtype=torch.float64, device=knn.device)
    all_keys, all_values = [keys], [values]
    for _ in range(walk_length):
        # P^(t+1) = P^t P: every (i, u) entry moves on to the k neighbours of u with 1 / k of its mass
        expanded = (keys // n).repeat_interleave(k) * n + knn[keys % n].reshape(-1)
        keys, inverse = torch.unique(expanded, return_inverse=True)
        values = torch.zeros(keys.shape[0], dtype=torch.float64, device=knn.device).index_add_(
            0, inverse, values.repeat_interleave(k) / k)
        all_keys.append(keys)
        all_values.append(values)
    keys, inverse = torch.unique(torch.cat(all_keys), return_inverse=True)
    values = torch.zeros(keys.shape[0], dtype=torch.float64, device=knn.device).index_add_(
        0, inverse, torch.cat(all_values))
    keep = keys // n != keys % n                               # walks that return to their start
    keys, values = keys[keep], values[keep]
    if max_neighbors is not None:
        room = torch.full((sources.shape[0],), max_neighbors, dtype=torch.long, device=knn.device)
        keep = _first_per_row(keys // n - sources[0], values, room)
        keys, values = keys[keep], values[keep]
    return keys, values
