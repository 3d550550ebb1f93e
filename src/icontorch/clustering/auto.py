"""``n_clusters="auto"``: the number of groups that p's graph supports, by the I-Con loss on a coarse graph.

For a hard partition into groups G of n_G points, with the debiased p~ = (1 - a_p) p + a_p / N
and the cluster kernel q~ = (1 - a_q) 1[same group] / n_G + a_q / N, the I-Con loss
``sum_i KL(p~(.|i) || q~(.|i))`` is a constant minus

    S = sum_G IN_G log(1 + r / n_G),   IN_G = (1 - a_p) in_G + a_p n_G^2 / N,   r = (1 - a_q) N / a_q,

where ``in_G = sum_{i, j in G} p(j|i)`` is the p-mass kept inside G (the cross-entropy of p~ against
q~ summed over the pairs inside and outside each group; the entropy of p~ does not depend on the
partition). S trades the p-mass kept inside groups against their size: joining two groups pays
off when enough of their p-mass links them, never when none does. With n_G << r, S is about
``(1 - a) (M log r - sum_G in_G log n_G)`` for the p-mass M kept inside: ``log r`` is the price of
the p-mass cut, in units of the partition's entropy. Joining a piece of n_s points that sends a
fraction f of its p-mass to a group of n_B points pays off roughly (n_s << n_B, the a_p term left
out) when ``2 f log(r / n_B) > (1 - f) log(n_B / n_s) + 1``; r / n_B = (1 - a) N / (a n_B)
depends on the groups' share of N only, not on N.

The agglomeration uses ``a_p = a_q = debiasing(N)``, not the training's 0.6: 0.05 at N = 5,000,
falling as ``N^-1.5`` (at most 0.1; :func:`debiasing`). Measured (pieces drawn with 3 to 5 seeds):
at 0.6 the loss splits MNIST pixel classes into styles (the 1s in two groups, the 4s and 9s in
three) whose pieces share 15 to 30 % of their p-mass: K = 12-15 on MNIST-5k, 16-18 on the first
10,000 MNIST training digits, 46 on all 70,000. Lower, those styles join while classes linked by at
most 12 % stay apart, but the range of a that gives 9-11 moves down as N grows, presumably as styles
separate further in a kNN graph of fixed k. On dev data (2026-12-03, 3 seeds, K at a = 0.1, 0.05,
0.02, 0.01, 0.005, 0.002, 0.001; the first N MNIST training digits):

* digits (1,797): 10-11, 10-11, 10-11, 10, 9-10, 9-10, 9-10;
* MNIST-5k: 10, 9, 9-10, 8-9, 7-8, 6-7, 6;
* MNIST-10k: 10-11, 10, 10, 10, 9-10, 8-10, 7-8;
* MNIST-20k: 12-14, 11-13, 11-12, 10-11, 9-10, 9-10, 8-9.

No single a gives 9-11 on all of them (MNIST-5k needs at least 0.02, MNIST-20k at most 0.01);
``0.05 (5,000 / N)^1.5`` passes through each one's range (0.1, 0.05, 0.018 and 0.0063) and gives
0.00095 at 70,000 points, which was not tuned on: K = 12 there (18 at 0.05; docs/benchmarks.md, section
clustering_scale). Gaussian mixtures (d = 8 to 64, K = 10 and 100,
5,000 to 100,000 points) give the same K at every a from 0.6 down to 2e-5: their groups share no
p-mass. Lowering ``a_q`` alone (``a_p = 0.6``) is no substitute: the ``a_p n_G^2 / N`` term then
pays for any join (MNIST-5k: 1 group at 0.2). Nor is p's graph without the mutual pruning: its
walks link the classes (MNIST-5k: 3-5 at 0.6). Two other ways were measured and dropped: a graph
of more neighbours merged classes (MNIST-20k: K = 7 at k = 12, 5 at k = 18, against 12 at k = 6),
and the estimate on a random subsample of 10,000 points (MNIST-20k: 9-10) missed the small groups
of a mixture (64 of 100 groups on 100,000 points).

1. Over-clustering (:func:`graph_pieces`): ``C' = overclustering(N)`` = N / 20 seeds drawn at random, every
   connected component of at least ``MIN_GROUP_SIZE`` points given one, and every node of those
   components joined to a seed by a multi-source breadth-first search on the graph (pieces are
   connected; a point reached in the same round from several pieces takes one at random).
   O(E) per round for E graph edges.
2. The p-mass between pieces ``P_cd = sum_{i in c, j in d} p(j|i)``, a sparse (C', C') matrix of the
   L pairs of pieces that p links, O(E).
3. Agglomeration (:func:`merge_pieces`): rounds that join every pair of groups that are each
   other's best partner with a positive gain in S, until no join gains; O(L) per round.
4. K is the number of groups of at least ``MIN_GROUP_SIZE`` points. Smaller sets are left
   out: on the 1,797 digits the mutual-kNN pruning cuts off components of 2 to 27 points, and a
   few pieces of up to 45 points stay unmerged, none of them a class; on mixtures of 10^5 points
   leftover pieces mostly hold under 30 points (one of 60 was seen). A true group of fewer points
   is not counted either.

Never N x N, nor C' x C': memory O(E) in step 1 (the breadth-first search holds the edges of the
nodes still unassigned, fewer each round), O(N + PIECE_BLOCK + L) beyond the graph in steps 2 and 3;
time O(E rounds + L rounds). The rounds of step 3 can be many where one large group is every piece's
best partner and takes one per round (about 2,000 rounds for 5,000 pieces of 10^5 points in 10
groups: a minute). Until 2026-12-04 C' was capped at 1,000 and the p-mass between pieces was a dense
(C', C') matrix; on a dev mixture of 10^6 points in 128 dimensions and 1,000 groups (972 of at least
50 points; generator seed 1, not the reported seed 0) the cap gave K = 727, and 3,000 and 5,000
pieces gave 849 and 895: pieces of ~1,000 points left the small groups of a connected component
without a seed of their own. N / 20 = 50,000 pieces give 959 (in 85 s after the graph); on a dev
mixture of 10^5 points in 64 dimensions and 100 groups (96 of at least 50 points), 95 with the cap
and 96 without. Below 20,000 points nothing changed. Measured with the choices made here: see the
``clustering_scale`` section of docs/benchmarks.md.
"""

from __future__ import annotations

from typing import Any, Tuple

import numpy as np
import torch
from torch import Tensor

from ..embedding.affinity import summed_entries
from .graph import NeighborGraph
from .objectives import graph_kernel_objective

__all__ = ["estimate_n_clusters", "estimates_n_clusters", "overclustering", "graph_pieces", "merge_pieces",
           "group_sizes", "debiasing", "MIN_GROUP_SIZE", "DEBIASING", "PIECE_BLOCK"]

MIN_GROUP_SIZE = 50
"""Groups of fewer points are not counted in the estimate."""
DEBIASING = 0.05
"""``a_p = a_q`` of the loss that the agglomeration minimises at N = 5,000 points (:func:`debiasing`)."""


def debiasing(n: int) -> float:
    """``a_p = a_q`` of the agglomeration for N points: ``min(0.1, DEBIASING (5,000 / N)^1.5)``
    (module docstring: chosen on digits and the first 5,000 to 20,000 MNIST digits)."""
    return min(0.1, DEBIASING * (5000.0 / n) ** 1.5)


def estimates_n_clusters(spec: Any) -> bool:
    """Whether a method can estimate the number of clusters: p a neighbour graph, q the cluster kernel."""
    return spec.graph is not None and spec.objective is graph_kernel_objective


def overclustering(n: int) -> int:
    """C' for N points: ``N // 20``, at least 2 (pieces of about 20 points; components add one seed each)."""
    return max(2, n // 20)


def _edges(graph: NeighborGraph) -> Tuple[Tensor, Tensor]:
    rows = torch.repeat_interleave(torch.arange(graph.n_nodes, device=graph.indices.device), graph.degree)
    return rows, graph.indices


def connected_components(graph: NeighborGraph) -> Tensor:
    """(N,) the connected component of each node, numbered 0.. (the graph read as undirected;
    ``scipy.sparse.csgraph.connected_components``, O(N + E))."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components as components

    n = graph.n_nodes
    indices = graph.indices.cpu().numpy()
    adjacency = csr_matrix((np.ones(indices.shape[0], dtype=np.int8), indices, graph.indptr.cpu().numpy()),
                           shape=(n, n))
    _, label = components(adjacency, directed=True, connection="weak")
    return torch.from_numpy(label.astype(np.int64)).to(graph.indices.device)


def graph_pieces(graph: NeighborGraph, n_pieces: int, generator: torch.Generator,
                 min_size: int = MIN_GROUP_SIZE) -> Tensor:
    """(N,) piece of every node (-1 for nodes of components of fewer than ``min_size`` nodes).

    ``n_pieces`` random seeds plus one in every component of at least ``min_size`` nodes that
    has none, grown by breadth-first search (each round, an unassigned neighbour of a piece joins
    one of the pieces that reach it, drawn at random). Pieces are numbered 0..C'-1.
    """
    rows, cols = _edges(graph)
    n = graph.n_nodes
    device = rows.device
    component = connected_components(graph)
    sizes = torch.bincount(component, minlength=n)
    eligible = sizes[component] >= min_size
    order = torch.randperm(n, generator=generator).to(device)
    order = order[eligible[order]]
    seeds = order[:n_pieces]
    seeded = torch.zeros(n, dtype=torch.bool, device=device)
    seeded[component[seeds]] = True
    rest = order[~seeded[component[order]]]           # one more seed per component left without one
    if rest.numel():
        first = torch.ones(rest.shape[0], dtype=torch.bool, device=device)
        keys, inverse = torch.unique(component[rest], return_inverse=True)
        position = torch.full((keys.shape[0],), rest.shape[0], dtype=torch.long, device=device)
        position.scatter_reduce_(0, inverse, torch.arange(rest.shape[0], device=device), "amin")
        first.zero_()
        first[position] = True
        seeds = torch.cat([seeds, rest[first]])
    label = torch.full((n,), -1, dtype=torch.long, device=device)
    label[seeds] = torch.arange(seeds.shape[0], device=device)
    priority = torch.rand(rows.shape[0], generator=generator).to(device)
    while True:
        waiting = label[rows] < 0                        # edges of unassigned nodes only, fewer each round
        rows, cols, priority = rows[waiting], cols[waiting], priority[waiting]
        open_ = label[cols] >= 0
        if not bool(open_.any()):
            return label
        p = torch.where(open_, priority, torch.full_like(priority, -1.0))
        best = torch.full((n,), -1.0, dtype=p.dtype, device=device).scatter_reduce_(0, rows, p, "amax")
        pick = open_ & (p == best[rows])
        label[rows[pick]] = label[cols[pick]]


PIECE_BLOCK = 1 << 22
"""Edges handled at once by :func:`piece_mass` (about 4 million: O(this + L) memory, not O(E))."""


def piece_mass(graph: NeighborGraph, pieces: Tensor, n_pieces: int) -> Tensor:
    """(C', C') ``P_cd = sum_{i in c, j in d} p(j|i)`` symmetrised, p(j|i) = w_ij / sum_j w_ij: a
    coalesced sparse float64 tensor holding the L linked pairs of pieces only.

    The rows of the graph are visited piece by piece, in blocks of whole pieces of about
    :data:`PIECE_BLOCK` edges, so that the pairs of different blocks never coincide: O(E) work and
    O(N + PIECE_BLOCK + L) memory beyond the graph (10^6 points, 10^8 edges: no (E,) tensor).
    """
    device = pieces.device
    order = torch.argsort(pieces, stable=True)
    order = order[pieces[order] >= 0]                      # the nodes of the pieces, piece by piece
    size = torch.bincount(pieces[order], minlength=n_pieces)
    node_start = torch.cat([torch.zeros(1, dtype=torch.long, device=device), torch.cumsum(size, 0)]).tolist()
    edge_end = torch.cumsum(torch.zeros(n_pieces, dtype=torch.long, device=device).index_add_(
        0, pieces[order], graph.degree[order]), 0)
    n_edges = int(edge_end[-1]) if n_pieces else 0
    marks = torch.arange(1, max(0, n_edges - 1) // PIECE_BLOCK + 1, device=device) * PIECE_BLOCK
    cuts = sorted({0, n_pieces, *(torch.searchsorted(edge_end, marks) + 1).clamp(max=n_pieces).tolist()})
    rows, cols, values = [], [], []
    for first_piece, stop_piece in zip(cuts[:-1], cuts[1:]):
        nodes = order[node_start[first_piece]:node_start[stop_piece]]
        edges, ends = graph.edges_of(nodes)
        local = torch.searchsorted(ends, torch.arange(edges.shape[0], device=device), right=True)
        weights = (torch.ones(edges.shape[0], dtype=torch.float64, device=device) if graph.weights is None
                   else graph.weights[edges].to(torch.float64))
        total = torch.zeros(nodes.shape[0], dtype=torch.float64, device=device).index_add_(0, local, weights)
        target = pieces[graph.indices[edges]]
        keep = target >= 0
        _, row, col, value = summed_entries(pieces[nodes][local[keep]], target[keep],
                                            weights[keep] / total[local[keep]], n_pieces)
        rows.append(row)
        cols.append(col)
        values.append(value.to(torch.float64) / 2)
    if not rows:
        return _summed(*(torch.zeros(0, dtype=dtype, device=device)
                         for dtype in (torch.long, torch.long, torch.float64)), n_pieces)
    row, col, value = torch.cat(rows), torch.cat(cols), torch.cat(values)
    return _summed(torch.cat([row, col]), torch.cat([col, row]), torch.cat([value, value]), n_pieces)


def _summed(rows: Tensor, cols: Tensor, values: Tensor, n: int) -> Tensor:
    """The coalesced sparse (n, n) tensor of ``values`` at ``(rows, cols)``, repeated positions added."""
    _, row, col, value = summed_entries(rows, cols, values, n)
    return torch.sparse_coo_tensor(torch.stack([row, col]), value, (n, n), is_coalesced=True, check_invariants=False)


def _score(inside: Tensor, size: Tensor, n: int, alpha: float) -> Tensor:
    """``IN_G log(1 + r / n_G)`` of groups with p-mass ``inside`` and ``size`` points."""
    r = (1.0 - alpha) * n / alpha
    return ((1.0 - alpha) * inside + alpha * size * size / n) * torch.log1p(r / size)


def merge_pieces(mass: Tensor, sizes: Tensor, n: int, alpha: float) -> Tensor:
    """(C',) group of every piece after greedy agglomeration maximising S (module docstring).

    Each round joins every pair of groups that are each other's best partner with a positive gain,
    among the pairs that p links (``P_cd > 0``; ties go to the partner of lower index). O(L) per
    round for L linked pairs, never C' x C'. A join of two groups that share no p-mass would gain
    only for groups with almost none inside (the ``a_p n_G^2 / N`` term: single points, say), which
    are never counted; it is not a candidate.

    Args:
        mass: (C', C') symmetric p-mass between pieces, sparse (:func:`piece_mass`) or dense.
        sizes: (C',) points per piece.
        n: N, the number of points.
        alpha: the debiasing weight ``a_p = a_q`` in (0, 1) (:func:`debiasing`).
    """
    mass = (mass if mass.is_sparse else mass.to_sparse()).coalesce()
    (rows, cols), values = mass.indices(), mass.values().to(torch.float64)
    sizes = sizes.to(torch.float64)
    device = values.device
    group = torch.arange(mass.shape[0], device=device)
    while True:
        m = sizes.shape[0]
        diagonal = rows == cols
        inside = torch.zeros(m, dtype=torch.float64, device=device).index_add_(0, rows[diagonal],
                                                                                values[diagonal])
        alone = _score(inside, sizes, n, alpha)
        linked = (rows != cols) & (values > 0)
        a, b, w = rows[linked], cols[linked], values[linked]
        if a.numel() == 0:
            break
        gain = _score(inside[a] + inside[b] + 2 * w, sizes[a] + sizes[b], n, alpha) - alone[a] - alone[b]
        best_gain = torch.full((m,), -float("inf"), dtype=torch.float64, device=device).scatter_reduce_(
            0, a, gain, "amax")
        top = gain == best_gain[a]
        best = torch.full((m,), m, dtype=torch.long, device=device).scatter_reduce_(0, a[top], b[top], "amin")
        ids = torch.arange(m, device=device)
        partner = best.clamp(max=m - 1)
        join = (best < m) & (best[partner] == ids) & (best_gain > 0) & (ids < best)
        if not bool(join.any()):
            break
        target = ids.clone()
        target[best[join]] = ids[join]
        _, target = torch.unique(target, return_inverse=True)     # compact ids, order kept
        kept = int(target.max()) + 1
        merged = _summed(target[rows], target[cols], values, kept)
        (rows, cols), values = merged.indices(), merged.values()
        sizes = torch.zeros(kept, dtype=sizes.dtype, device=device).index_add_(0, target, sizes)
        group = target[group]
    return group


def group_sizes(graph: NeighborGraph, generator: torch.Generator, n_pieces: int = 0) -> Tensor:
    """Points per group, largest first, after over-clustering p's ``graph`` into pieces and merging
    them by the I-Con loss (module docstring); nodes of components under ``MIN_GROUP_SIZE`` left out.

    Args:
        graph: p's neighbour graph (N nodes).
        generator: draws the seeds of the pieces.
        n_pieces: C' (0: ``overclustering(N)``).
    """
    if not torch.equal(torch.bincount(graph.indices, minlength=graph.n_nodes), graph.degree):
        graph = graph.symmetrized()                     # a directed graph (in-degrees differ from out-degrees)
    pieces = graph_pieces(graph, n_pieces or overclustering(graph.n_nodes), generator)
    count = int(pieces.max()) + 1
    if count == 0:
        return torch.zeros(0, dtype=torch.long)
    sizes = torch.bincount(pieces[pieces >= 0], minlength=count)
    group = merge_pieces(piece_mass(graph, pieces, count), sizes, graph.n_nodes, debiasing(graph.n_nodes))
    merged = torch.zeros(int(group.max()) + 1, dtype=torch.long, device=group.device).index_add_(0, group, sizes)
    return merged.sort(descending=True).values.cpu()


def estimate_n_clusters(graph: NeighborGraph, generator: torch.Generator, n_pieces: int = 0) -> int:
    """The number of groups of at least ``MIN_GROUP_SIZE`` points (:func:`group_sizes`), at least 2."""
    return max(2, int((group_sizes(graph, generator, n_pieces) >= MIN_GROUP_SIZE).sum()))
