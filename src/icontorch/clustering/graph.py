"""Data-set-scale neighbours for clustering: the kNN graph, its walk propagation, batch composition.

The supervisory p of Debiased InfoNCE Clustering (the paper's new method: its Table 1 row and the
experiments of its Table 2) is uniform over an item's other views, its k nearest neighbours in
the whole data set and the nodes that walks on the kNN graph reach from it. This module computes
those neighbour sets once, stores them as a sparse graph (memory O(N * m) for m neighbours per
node, never N x N), samples batches that hold anchors together with some of their neighbours,
and says which batch items are neighbours.

Choices the paper leaves open, made here:

* kNN: exact, in chunks (:func:`icontorch.knn.exact_knn`), a point is not its own neighbour.
* walks (the paper's neighbour propagation, section 3.3.3; :mod:`~icontorch.clustering.walks`):
  ``walk_length = s`` adds every node reachable in ``2 .. s + 1`` steps of the directed kNN
  graph, so ``s = 0`` is the kNN alone and ``s = 1`` the "1-walks on KNN" of the paper's
  Table 4. The anchor itself is dropped when a walk returns to it.
* symmetry: ``j`` is a neighbour of ``i`` when either lists the other, so that a neighbour
  sampled into a batch always finds its anchor there.
* pruning (optional, :func:`mutual_knn`): before the walks, an edge ``i -> j`` beyond i's
  nearest neighbour is kept only when ``j`` also lists ``i``. One-sided edges are where kNN
  graphs cross between groups (a point on the edge of one group lists points of the next,
  which do not list it back); walks multiply every such bridge.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
from torch import Tensor

from .._validation import check_choice, check_features, check_int, fail
from ..knn import KNN_BACKENDS, approximate_knn, exact_knn

__all__ = ["NeighborGraph", "knn_indices", "mutual_knn", "compose_batch", "power_of_two_scale"]

_METRICS = ("cosine", "squared_euclidean")
_SAFE = 2.0 ** 30           # |x| in [1 / _SAFE, _SAFE]: squares and their sums neither overflow nor underflow


def power_of_two_scale(x: Tensor) -> float:
    """``2^-e`` with ``2^(e-1) <= max |x| < 2^e`` when ``max |x|`` lies outside ``[2^-30, 2^30]``, else 1.

    Multiplying by a power of two is exact (short of overflow and underflow), so ``x * scale`` has
    the same neighbours and the same standardisation up to that factor, with values near 1 whose
    squares fit in float32 (from about 1e19 on they overflow, below about 1e-19 they vanish).
    """
    peak = float(x.abs().max())
    if peak == 0.0 or 1.0 / _SAFE <= peak <= _SAFE:
        return 1.0
    return 2.0 ** -math.frexp(peak)[1]


def knn_indices(x: Tensor, n_neighbors: int, metric: str = "cosine", chunk_size: int = 2048,
                knn_backend: str = "exact") -> Tensor:
    """The (N, k) nearest neighbours of every row of ``x`` (self excluded), nearest first: exact
    (:func:`~icontorch.knn.exact_knn`) or, with ``knn_backend="faiss"``, approximate
    (:func:`~icontorch.knn.approximate_knn`).

    Both metrics rank neighbours the same for ``x`` and ``c x`` (c > 0): features of very large or
    very small magnitude are first brought near 1 by a power of two (:func:`power_of_two_scale`).

    Args:
        x: (N, d) features.
        n_neighbors: k, at most N - 1.
        metric: ``"cosine"`` (the largest cosine similarities) or ``"squared_euclidean"``
            (the smallest ``||x_i - x_j||^2``).
        chunk_size: anchors per block (memory O(chunk_size * N)).
        knn_backend: ``"exact"`` or ``"faiss"``.
    """
    who = "knn_indices"
    check_features(who, "x", x)
    check_choice(who, "metric", metric, _METRICS)
    check_choice(who, "knn_backend", knn_backend, KNN_BACKENDS)
    n_neighbors = check_int(who, "n_neighbors", n_neighbors, 1)
    if n_neighbors >= x.shape[0]:
        raise fail(who, "n_neighbors", f"be smaller than the number of points ({x.shape[0]})", n_neighbors)
    scale = power_of_two_scale(x)
    if scale != 1.0:
        x = x * scale
    if knn_backend == "faiss":
        return approximate_knn(x, n_neighbors, metric, who)
    return exact_knn(x, n_neighbors, metric=metric, chunk_size=chunk_size)[0]


def _check_knn(who: str, knn: Tensor) -> Tuple[int, int]:
    """``knn`` as a kNN graph: an (N, k) integer tensor of node ids in [0, N); returns (N, k)."""
    if not isinstance(knn, Tensor) or knn.dim() != 2 or knn.is_floating_point():
        raise fail(who, "knn", "be an (N, k) integer tensor of neighbour ids", knn)
    n, k = knn.shape
    if bool((knn < 0).any()) or bool((knn >= n).any()):
        raise fail(who, "knn", f"hold node ids in [0, {n})", knn)
    return n, k


def mutual_knn(knn: Tensor) -> Tensor:
    """The mutual kNN graph as an (N, k) table: entry ``(i, r)`` keeps ``j = knn[i, r]`` when ``r = 0``
    (the nearest neighbour, so no node is left without one) or when ``i`` is among ``knn[j]``;
    otherwise it becomes ``i`` itself, a self-loop that
    :func:`~icontorch.clustering.walks.walk_graph` drops from the neighbour sets (in
    ``mode="sum"`` the walk then stays put with that edge's mass: a lazy walk on the pruned
    graph). Memory O(N k).

    Args:
        knn: (N, k) neighbour ids (:func:`knn_indices`), nearest first.
    """
    n, k = _check_knn("mutual_knn", knn)
    rows = torch.arange(n, device=knn.device).repeat_interleave(k)
    cols = knn.reshape(-1)
    keys = torch.sort(rows * n + cols).values
    reverse = cols * n + rows                                  # is the edge j -> i listed too?
    pos = torch.searchsorted(keys, reverse).clamp_max(keys.numel() - 1)
    mutual = (keys[pos] == reverse).reshape(n, k)
    mutual[:, 0] = True
    return torch.where(mutual, knn, torch.arange(n, device=knn.device)[:, None])


class NeighborGraph:
    """A fixed set of neighbours per node in compressed-row form (``indptr``, ``indices``).

    Row i lists ``indices[indptr[i]:indptr[i + 1]]``, sorted and without repeats; memory is
    O(N + number of edges). A weighted graph (``weights``) gives each edge a positive weight
    w_ij, and ``view_weight`` is the weight of another view of the same node in a batch.

    Args:
        indptr: (N + 1,) row offsets.
        indices: (E,) column ids.
        weights: (E,) positive edge weights, or None (every edge and view weighs 1).
        view_weight: weight of another view of the same node (weighted graphs).
    """

    def __init__(self, indptr: Tensor, indices: Tensor, weights: Optional[Tensor] = None,
                 view_weight: float = 1.0) -> None:
        self.indptr = indptr
        self.indices = indices
        self.weights = weights
        self.view_weight = view_weight
        self.n_nodes = indptr.shape[0] - 1

    @classmethod
    def from_pairs(cls, rows: Tensor, cols: Tensor, n_nodes: int, values: Optional[Tensor] = None,
                   view_weight: float = 1.0) -> "NeighborGraph":
        """The graph with edges ``rows[e] -> cols[e]`` (repeats merged, order irrelevant).

        With ``values`` the weights of repeated edges are summed.
        """
        return cls._from_keys(rows * n_nodes + cols, n_nodes, values, view_weight)

    @classmethod
    def _from_keys(cls, keys: Tensor, n_nodes: int, values: Optional[Tensor], view_weight: float) -> "NeighborGraph":
        """:meth:`from_pairs` of the edge keys ``row * n_nodes + col``."""
        if values is None:                                   # no inverse: one (E,) tensor less at the peak
            keys = torch.unique(keys)                                                  # sorted
        else:
            keys, inverse = torch.unique(keys, return_inverse=True)
        counts = torch.bincount(keys // n_nodes, minlength=n_nodes)
        indptr = torch.zeros(n_nodes + 1, dtype=torch.long, device=keys.device)
        indptr[1:] = torch.cumsum(counts, 0)
        weights = None
        if values is not None:
            weights = torch.zeros(keys.shape[0], dtype=values.dtype, device=values.device)
            weights.index_add_(0, inverse, values)
        return cls(indptr, keys % n_nodes, weights, view_weight)

    @property
    def degree(self) -> Tensor:
        """(N,) number of neighbours of each node."""
        return self.indptr[1:] - self.indptr[:-1]

    def rows(self, i: int) -> Tensor:
        """The neighbours of node ``i``."""
        return self.indices[self.indptr[i]:self.indptr[i + 1]]

    def edges_of(self, nodes: Tensor) -> Tuple[Tensor, Tensor]:
        """``(edges, ends)``: the edge ids of the neighbour lists of ``nodes``, one list after the
        other, and the cumulative list lengths (list t holds ``edges[ends[t] - degree_t:ends[t]]``)."""
        start = self.indptr.index_select(0, nodes)
        degree = self.indptr.index_select(0, nodes + 1) - start
        ends = torch.cumsum(degree, 0)
        total = int(ends[-1]) if nodes.shape[0] else 0
        edges = torch.arange(total, device=nodes.device) + (start - (ends - degree)).repeat_interleave(
            degree, output_size=total)
        return edges, ends

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
        return self.batch_weights(src) > 0

    def batch_weights(self, src: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
        """(B, B) weight of batch item j as a neighbour of batch item i: the edge weight ``w_ij``
        (1 on an unweighted graph), ``view_weight`` for another view of the same node, 0 elsewhere
        and on the diagonal. Costs O(B^2 + B m log B), never O(N^2)."""
        b = src.shape[0]
        rows, cols, values = self.batch_pairs(src, dtype)
        weights = torch.zeros(b, b, dtype=dtype, device=src.device)
        weights[rows, cols] = values
        return weights

    def batch_pairs(self, src: Tensor, dtype: torch.dtype = torch.float32) -> Tuple[Tensor, Tensor, Tensor]:
        """The nonzero entries of :meth:`batch_weights` as ``(rows, cols, values)``, each pair once:
        O(U m + E) time and memory for the U distinct nodes of the batch, m neighbours per node and E
        pairs, no (B, B) tensor.

        The neighbour lists are read once per distinct node (an anchor's views share theirs) and
        looked up in a table of batch slots (an (N,) scratch kept by the graph, -1 between calls);
        the node pairs found, and every node with itself (another view), then expand to the batch
        items holding those nodes.
        """
        device = src.device
        nodes, item_node = torch.unique(src, return_inverse=True)        # U distinct nodes, sorted
        u = nodes.shape[0]
        slot = self._slots(device)
        slot[nodes] = torch.arange(u, device=device)
        try:
            edges, ends = self.edges_of(nodes)           # the U nodes' neighbour lists, one after the other
            found = slot.index_select(0, self.indices.index_select(0, edges))
        finally:
            slot[nodes] = -1
        hit = (found >= 0).nonzero().squeeze(1)
        node_a = torch.searchsorted(ends, hit, right=True)               # the list each hit belongs to
        node_b = found.index_select(0, hit)
        apart = (node_a != node_b).nonzero().squeeze(1)                  # a listed self-loop is a view
        node_a, node_b = node_a.index_select(0, apart), node_b.index_select(0, apart)
        if self.weights is None:
            values = torch.ones(node_a.shape[0], dtype=dtype, device=device)
        else:
            values = self.weights.index_select(0, edges.index_select(0, hit.index_select(0, apart))).to(dtype)
        itself = torch.arange(u, device=device)
        node_a, node_b = torch.cat([node_a, itself]), torch.cat([node_b, itself])
        values = torch.cat([values, torch.full((u,), self.view_weight, dtype=dtype, device=device)])
        # every (item of node a, item of node b) pair: the items of a node are a range of `order`
        order = torch.argsort(item_node, stable=True)
        count = torch.bincount(item_node, minlength=u)
        first = torch.cumsum(count, 0) - count
        count_b = count.index_select(0, node_b)
        repeats = count.index_select(0, node_a) * count_b
        n_pairs = int(repeats.sum())
        pair = torch.arange(node_a.shape[0], device=device).repeat_interleave(repeats, output_size=n_pairs)
        local = torch.arange(n_pairs, device=device) - (torch.cumsum(repeats, 0) - repeats).index_select(0, pair)
        count_b = count_b.index_select(0, pair)
        row_rank = torch.div(local, count_b, rounding_mode="floor")
        rows = order.index_select(0, first.index_select(0, node_a).index_select(0, pair) + row_rank)
        col_rank = local - row_rank * count_b
        cols = order.index_select(0, first.index_select(0, node_b).index_select(0, pair) + col_rank)
        keep = (rows != cols).nonzero().squeeze(1)
        values = values.index_select(0, pair.index_select(0, keep))
        return rows.index_select(0, keep), cols.index_select(0, keep), values

    def _slots(self, device: torch.device) -> Tensor:
        """(N,) scratch table of batch slots, -1 everywhere between calls of :meth:`batch_pairs`."""
        slots = getattr(self, "_slot_table", None)
        if slots is None or slots.device != device:
            slots = torch.full((self.n_nodes,), -1, dtype=torch.long, device=device)
            self._slot_table = slots
        return slots

    def sample(self, nodes: Tensor, n_samples: int, generator: Optional[torch.Generator] = None) -> Tensor:
        """(len(nodes), n_samples) neighbours drawn uniformly with replacement from each node's row."""
        degree = self.degree[nodes]
        if bool((degree == 0).any()):
            raise fail("NeighborGraph.sample", "nodes", "have at least one neighbour each", nodes)
        u = torch.rand(nodes.shape[0], n_samples, generator=generator, device=nodes.device)
        offset = (u * degree[:, None]).long().clamp_max(degree[:, None] - 1)
        return self.indices[self.indptr[nodes][:, None] + offset]

    def symmetrized(self) -> "NeighborGraph":
        """``j ~ i`` when ``i`` lists ``j`` or ``j`` lists ``i``; weights become ``(w_ij + w_ji) / 2``."""
        rows = torch.repeat_interleave(torch.arange(self.n_nodes, device=self.indptr.device), self.degree)
        values = None if self.weights is None else torch.cat([self.weights, self.weights]) / 2
        n = self.n_nodes
        keys = torch.cat([rows * n + self.indices, self.indices * n + rows])
        del rows                                             # the (E,) tensors of a million-node graph are GBs
        return NeighborGraph._from_keys(keys, n, values, self.view_weight)

    def __repr__(self) -> str:
        return f"NeighborGraph(n_nodes={self.n_nodes}, n_edges={self.indices.numel()})"


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
