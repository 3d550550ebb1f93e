"""Data-set-scale neighbours for clustering: the kNN graph, its walk propagation, batch composition.

The supervisory p of Debiased InfoNCE Clustering (section 5 of the paper) is uniform over an
item's other views, its k nearest neighbours in the whole data set and the nodes that walks on
the kNN graph reach from it. This module computes those neighbour sets once, stores them as a
sparse graph (memory O(N * m) for m neighbours per node, never N x N), samples batches that
hold anchors together with some of their neighbours, and says which batch items are neighbours.

Choices the paper leaves open, made here:

* kNN: exact, in chunks (:func:`icontorch.knn.exact_knn`), a point is not its own neighbour.
* walks (section 3.3.3, "reach" form): ``walk_length = s`` adds every node reachable in
  ``2 .. s + 1`` steps of the directed kNN graph, so ``s = 0`` is the kNN alone and ``s = 1``
  the paper's "1-walks on KNN". The anchor itself is dropped when a walk returns to it.
* symmetry: ``j`` is a neighbour of ``i`` when either lists the other, so that a neighbour
  sampled into a batch always finds its anchor there.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from ._validation import check_choice, check_features, check_int, fail
from .knn import exact_knn

__all__ = ["NeighborGraph", "knn_indices", "walk_graph", "compose_batch"]

_METRICS = {"cosine": "cosine", "euclidean": "squared_euclidean"}


def knn_indices(x: Tensor, n_neighbors: int, metric: str = "cosine", chunk_size: int = 2048) -> Tensor:
    """The (N, k) exact nearest neighbours of every row of ``x`` (self excluded), nearest first.

    Args:
        x: (N, d) features.
        n_neighbors: k, at most N - 1.
        metric: ``"cosine"`` or ``"euclidean"``.
        chunk_size: anchors per block (memory O(chunk_size * N)).
    """
    who = "knn_indices"
    check_features(who, "x", x)
    check_choice(who, "metric", metric, tuple(_METRICS))
    check_int(who, "n_neighbors", n_neighbors, 1)
    if n_neighbors >= x.shape[0]:
        raise fail(who, "n_neighbors", f"be smaller than the number of points ({x.shape[0]})", n_neighbors)
    return exact_knn(x, n_neighbors, metric=_METRICS[metric], chunk_size=chunk_size)[0]


class NeighborGraph:
    """A fixed set of neighbours per node in compressed-row form (``indptr``, ``indices``).

    Row i lists ``indices[indptr[i]:indptr[i + 1]]``, sorted and without repeats; memory is
    O(N + number of edges).

    Args:
        indptr: (N + 1,) row offsets.
        indices: (E,) column ids.
    """

    def __init__(self, indptr: Tensor, indices: Tensor) -> None:
        self.indptr = indptr
        self.indices = indices
        self.n_nodes = indptr.shape[0] - 1

    @classmethod
    def from_pairs(cls, rows: Tensor, cols: Tensor, n_nodes: int) -> "NeighborGraph":
        """The graph with edges ``rows[e] -> cols[e]`` (repeats merged, order irrelevant)."""
        keys = torch.unique(rows * n_nodes + cols)          # sorted
        counts = torch.bincount(keys // n_nodes, minlength=n_nodes)
        indptr = torch.zeros(n_nodes + 1, dtype=torch.long, device=keys.device)
        indptr[1:] = torch.cumsum(counts, 0)
        return cls(indptr, keys % n_nodes)

    @property
    def degree(self) -> Tensor:
        """(N,) number of neighbours of each node."""
        return self.indptr[1:] - self.indptr[:-1]

    def rows(self, i: int) -> Tensor:
        """The neighbours of node ``i``."""
        return self.indices[self.indptr[i]:self.indptr[i + 1]]

    def to_sparse(self, self_loops: bool = False, dtype: torch.dtype = torch.float32) -> Tensor:
        """The (N, N) 0/1 adjacency as a sparse COO tensor (``self_loops`` adds the diagonal)."""
        rows = torch.repeat_interleave(torch.arange(self.n_nodes, device=self.indptr.device), self.degree)
        cols = self.indices
        if self_loops:
            diagonal = torch.arange(self.n_nodes, device=rows.device)
            rows, cols = torch.cat([rows, diagonal]), torch.cat([cols, diagonal])
        values = torch.ones(rows.shape[0], dtype=dtype, device=rows.device)
        return torch.sparse_coo_tensor(torch.stack([rows, cols]), values, (self.n_nodes, self.n_nodes),
                                       check_invariants=True).coalesce()

    def relation(self, src: Tensor) -> Tensor:
        """(B, B) boolean: batch item j is a neighbour or another view of batch item i (j != i).

        ``src`` holds the node (data-set index) of each batch item; two items of the same node
        are views of one another. Costs O(B^2 + B m log B) for m neighbours per node, never O(N^2).
        """
        b = src.shape[0]
        # (item i, node u) for every neighbour u of src_i, and u = src_i itself (the other views)
        degree = self.degree[src]
        rows = torch.arange(b, device=src.device).repeat_interleave(degree)
        first = torch.cumsum(degree, 0) - degree
        offset = torch.arange(rows.shape[0], device=src.device) - first[rows]
        nodes = self.indices[self.indptr[src][rows] + offset]
        rows = torch.cat([rows, torch.arange(b, device=src.device)])
        nodes = torch.cat([nodes, src])
        # the batch positions holding node u: a range of the batch sorted by node
        order = torch.argsort(src)
        sorted_src = src[order]
        left = torch.searchsorted(sorted_src, nodes)
        count = torch.searchsorted(sorted_src, nodes, right=True) - left
        rows = rows.repeat_interleave(count)
        first = torch.cumsum(count, 0) - count
        rank = torch.arange(rows.shape[0], device=src.device) - first.repeat_interleave(count)
        cols = order[left.repeat_interleave(count) + rank]
        relation = torch.zeros(b, b, dtype=torch.bool, device=src.device)
        relation[rows, cols] = True
        relation.fill_diagonal_(False)
        return relation

    def sample(self, nodes: Tensor, n_samples: int, generator: Optional[torch.Generator] = None) -> Tensor:
        """(len(nodes), n_samples) neighbours drawn uniformly with replacement from each node's row."""
        degree = self.degree[nodes]
        if bool((degree == 0).any()):
            raise fail("NeighborGraph.sample", "nodes", "have at least one neighbour each", nodes)
        u = torch.rand(nodes.shape[0], n_samples, generator=generator, device=nodes.device)
        offset = (u * degree[:, None]).long().clamp_max(degree[:, None] - 1)
        return self.indices[self.indptr[nodes][:, None] + offset]

    def symmetrized(self) -> "NeighborGraph":
        """``j ~ i`` when ``i`` lists ``j`` or ``j`` lists ``i``."""
        rows = torch.repeat_interleave(torch.arange(self.n_nodes, device=self.indptr.device), self.degree)
        return NeighborGraph.from_pairs(torch.cat([rows, self.indices]), torch.cat([self.indices, rows]),
                                        self.n_nodes)

    def __repr__(self) -> str:
        return f"NeighborGraph(n_nodes={self.n_nodes}, n_edges={self.indices.numel()})"


def walk_graph(knn: Tensor, walk_length: int = 0, symmetric: bool = True) -> NeighborGraph:
    """Neighbour propagation on a kNN graph: the nodes reached in ``1 .. walk_length + 1`` steps.

    ``R(i) = {j != i : (A + A^2 + ... + A^(s+1))_ij > 0}`` with A the directed kNN adjacency and
    ``s = walk_length`` (the "reach" form of section 3.3.3, :func:`icontorch.propagate` with
    ``steps = s + 1, mode="reach"`` on small data). Computed hop by hop on edge lists, so memory
    is O(N * |R(i)| * k), never N x N.

    Args:
        knn: (N, k) neighbour ids (:func:`knn_indices`).
        walk_length: s >= 0 extra steps beyond the kNN.
        symmetric: make the relation symmetric (see the module docstring).
    """
    who = "walk_graph"
    if not isinstance(knn, Tensor) or knn.dim() != 2 or knn.is_floating_point():
        raise fail(who, "knn", "be an (N, k) integer tensor of neighbour ids", knn)
    check_int(who, "walk_length", walk_length, 0)
    n, k = knn.shape
    if bool((knn < 0).any()) or bool((knn >= n).any()):
        raise fail(who, "knn", f"hold node ids in [0, {n})", knn)
    rows = torch.arange(n, device=knn.device).repeat_interleave(k)
    cols = knn.reshape(-1)
    reached = torch.unique(rows * n + cols)
    frontier = reached
    for _ in range(walk_length):
        # one more step from the nodes reached last; keep only pairs never seen before
        f_rows, f_cols = frontier // n, frontier % n
        step = torch.unique(f_rows.repeat_interleave(k) * n + knn[f_cols].reshape(-1))
        pos = torch.searchsorted(reached, step).clamp_max(reached.numel() - 1)
        frontier = step[reached[pos] != step]
        if frontier.numel() == 0:
            break
        reached = torch.unique(torch.cat([reached, frontier]))
    rows, cols = reached // n, reached % n
    keep = rows != cols                                     # a walk that returns to its start
    graph = NeighborGraph.from_pairs(rows[keep], cols[keep], n)
    return graph.symmetrized() if symmetric else graph


def compose_batch(anchors: Tensor, graph: Optional[NeighborGraph], n_views: int, n_sampled_neighbors: int,
                  generator: Optional[torch.Generator] = None) -> Tensor:
    """The data-set indices of one batch: every anchor ``n_views`` times, then its sampled neighbours.

    ``[a_1..a_M] * n_views + [n_11..n_1r, ..., n_M1..n_Mr]`` with ``r = n_sampled_neighbors``
    neighbours of each anchor drawn uniformly (with replacement) from its row of ``graph``. The
    paper's composition is ``n_views = 2, n_sampled_neighbors = 2``.
    """
    parts = [anchors] * n_views
    if n_sampled_neighbors > 0 and graph is not None:
        parts.append(graph.sample(anchors, n_sampled_neighbors, generator).reshape(-1))
    return torch.cat(parts)
