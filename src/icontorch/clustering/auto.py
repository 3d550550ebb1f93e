"""``n_clusters="auto"``: the number of groups read off a learned over-clustering.

The heads first cluster into ``C' = overclustering(N)`` groups. The kNN graph of p, coarse-grained
by those soft assignments, is the (C', C') affinity ``A = Phi^T W Phi`` (``W`` the symmetric 0/1
or weighted graph, ``Phi`` the (N, C') soft assignments): ``A_cd`` is the p-mass that links
cluster c to cluster d. Pieces of one group are linked by many kNN edges, separate groups by few,
so A is close to block diagonal with one block per group. The number of groups is the eigengap
of its normalised Laplacian ``L = I - D^-1/2 A D^-1/2`` (von Luxburg, "A Tutorial on Spectral
Clustering", 2007, section 8.3): ``K = argmax_k (lambda_(k+1) - lambda_k)``, eigenvalues ascending.
Cost O(E C' + C'^3) for E graph edges, never N x N.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .graph import NeighborGraph
from .objectives import graph_kernel_objective

__all__ = ["estimate_n_clusters", "estimates_n_clusters", "overclustering", "MAX_OVERCLUSTERING"]

MAX_OVERCLUSTERING = 50
"""The largest number of clusters ``"auto"`` over-clusters into (so it finds at most that many)."""


def estimates_n_clusters(spec: Any) -> bool:
    """Whether a method can estimate the number of clusters: p a neighbour graph, q the cluster kernel."""
    return spec.graph is not None and spec.objective is graph_kernel_objective


def overclustering(n: int) -> int:
    """C' for N points: ``min(MAX_OVERCLUSTERING, N // 3)``, at least 2."""
    return max(2, min(MAX_OVERCLUSTERING, n // 3))


def cluster_affinity(phi: Tensor, graph: NeighborGraph) -> Tensor:
    """``A = Phi^T W Phi`` (C', C'), symmetrised, in float64; O(E C') time, O(E + N C') memory for E edges."""
    phi = phi.to(torch.float64)
    weights = (torch.ones(graph.indices.shape[0], dtype=phi.dtype, device=phi.device) if graph.weights is None
               else graph.weights.to(phi.dtype))
    rows = torch.repeat_interleave(torch.arange(graph.n_nodes, device=phi.device), graph.degree)
    linked = torch.zeros_like(phi)                       # W Phi, by blocks of edges: O(E + N C') memory
    block = max(1, (1 << 22) // phi.shape[1])
    for start in range(0, rows.shape[0], block):
        stop = start + block
        linked.index_add_(0, rows[start:stop], weights[start:stop, None] * phi[graph.indices[start:stop]])
    affinity = phi.T @ linked
    return (affinity + affinity.T) / 2


def estimate_n_clusters(phi: Tensor, graph: NeighborGraph) -> int:
    """The eigengap estimate of the number of groups from soft assignments ``phi`` (N, C') and p's graph.

    Clusters that hold less than one point's mass, or no graph edge, are left out first.
    """
    affinity = cluster_affinity(phi, graph)
    mass = phi.to(torch.float64).sum(0)
    degree = affinity.sum(1)
    keep = (mass >= 1.0) & (degree > 0)
    affinity, degree = affinity[keep][:, keep], degree[keep]
    m = affinity.shape[0]
    if m <= 2:
        return 2
    inv_sqrt = degree.rsqrt()
    laplacian = torch.eye(m, dtype=affinity.dtype, device=affinity.device) - inv_sqrt[:, None] * affinity * inv_sqrt
    eigenvalues = torch.linalg.eigvalsh(laplacian).clamp_min(0.0)
    gaps = eigenvalues[2:] - eigenvalues[1:-1]             # gap after k = 2 .. m - 1 eigenvalues
    return int(torch.argmax(gaps)) + 2
