"""The methods of :class:`~icontorch.clustering.Clustering`, one specification each, in one table.

Everything that differs between methods is a field of :class:`MethodSpec`: how p's neighbour graph
is built (if at all), the default debiasing weights, the batch composition, whether labels or a
teacher are used, the softmax temperature of the heads and the batch objective. The estimator and
the training loop read these fields; neither looks at a method's name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Optional

from torch import Tensor

from ..methods.contrastive_clustering import cluster_terms
from .graph import NeighborGraph, knn_indices, mutual_knn, walk_graph
from .objectives import (
    BatchObjective,
    ObjectiveSetup,
    graph_kernel_objective,
    kmeans_objective,
    scan_objective,
    supervised_kernel_objective,
    temi_objective,
)

__all__ = ["GraphSettings", "MethodSpec", "METHOD_SPECS", "METHODS", "directed_knn_graph", "symmetric_knn_graph",
           "mutual_walk_graph"]


@dataclass(frozen=True)
class GraphSettings:
    """The estimator's settings of p's neighbour graph.

    Args:
        n_neighbors: k of the exact kNN.
        metric: ``"cosine"`` or ``"squared_euclidean"``.
        mutual_knn: prune one-sided kNN edges before the walks.
        walk_length: s, extra walk steps beyond the kNN.
        walk_mode: ``"reach"`` or ``"sum"`` (:func:`~icontorch.clustering.graph.walk_graph`).
        knn_backend: ``"exact"`` or ``"faiss"`` (approximate; :func:`~icontorch.knn.approximate_knn`).
    """

    n_neighbors: int
    metric: str
    mutual_knn: bool
    walk_length: int
    walk_mode: str
    knn_backend: str = "exact"


def _knn(x: Tensor, settings: GraphSettings) -> Tensor:
    return knn_indices(x, settings.n_neighbors, settings.metric, knn_backend=settings.knn_backend)


def directed_knn_graph(x: Tensor, settings: GraphSettings) -> NeighborGraph:
    """``j ~ i`` when j is among the k nearest neighbours of i (no walks, no pruning)."""
    return walk_graph(_knn(x, settings), 0, symmetric=False)


def symmetric_knn_graph(x: Tensor, settings: GraphSettings) -> NeighborGraph:
    """``j ~ i`` when either is among the other's k nearest neighbours (no walks, no pruning)."""
    return walk_graph(_knn(x, settings), 0, symmetric=True)


def mutual_walk_graph(x: Tensor, settings: GraphSettings) -> NeighborGraph:
    """The kNN, pruned to mutual edges when ``mutual_knn``, then walks of ``walk_length`` more steps,
    symmetrised (:func:`~icontorch.clustering.graph.mutual_knn`,
    :func:`~icontorch.clustering.graph.walk_graph`)."""
    knn = _knn(x, settings)
    if settings.mutual_knn:
        knn = mutual_knn(knn)
    return walk_graph(knn, settings.walk_length, symmetric=True, mode=settings.walk_mode)


@dataclass(frozen=True)
class MethodSpec:
    """How one method of :class:`~icontorch.clustering.Clustering` trains its heads.

    Args:
        graph: builds p's neighbour graph from the features, or None (the method needs none).
        default_alpha_p, default_alpha_q: the debiasing weights when ``alpha_p`` / ``alpha_q`` are None.
        n_views: copies of each anchor in a batch; None: the estimator's ``n_views``.
        n_sampled_neighbors: graph neighbours drawn per anchor; None: the estimator's
            ``n_sampled_neighbors``.
        uses_labels: ``fit`` needs ``y``.
        uses_teacher: the objective also sees the averaged (EMA) heads' logits.
        temperature: the heads' logits are divided by it before every softmax (training and predict).
        objective: builds the batch objective of one fit.
    """

    graph: Optional[Callable[[Tensor, GraphSettings], NeighborGraph]]
    default_alpha_p: float = 0.0
    default_alpha_q: float = 0.0
    n_views: Optional[int] = None
    n_sampled_neighbors: Optional[int] = None
    uses_labels: bool = False
    uses_teacher: bool = False
    temperature: float = 1.0
    objective: Callable[[ObjectiveSetup], BatchObjective] = graph_kernel_objective


def contrastive_clustering_objective(setup: ObjectiveSetup) -> BatchObjective:
    """Contrastive Clustering's cluster-level loss (Li et al. 2021,
    :meth:`~icontorch.methods.ContrastiveClusteringLoss.cluster_loss`) head by head, the two views being
    the first half of the batch (anchors) and the second (one kNN neighbour of each), as SCAN's and
    TEMI's pairs on frozen features, at the paper's cluster temperature 1. Its instance-level term would
    train no head and is left out."""

    def objective(logits: Tensor, src: Tensor, inputs: Tensor, teacher: Optional[Tensor], update: bool) -> Tensor:
        m = src.shape[0] // 2
        log_phi = logits.log_softmax(2)
        return cluster_terms(log_phi[:, :m], log_phi[:, m:], 1.0)

    return objective


METHOD_SPECS: Dict[str, MethodSpec] = {
    "debiased_infonce": MethodSpec(graph=mutual_walk_graph, default_alpha_p=0.6, default_alpha_q=0.6),
    "dcd": MethodSpec(graph=symmetric_knn_graph),
    "pmi": MethodSpec(graph=directed_knn_graph),
    "kmeans": MethodSpec(graph=None, n_views=1, n_sampled_neighbors=0, objective=kmeans_objective),
    "supervised": MethodSpec(graph=None, n_sampled_neighbors=0, uses_labels=True,
                             objective=supervised_kernel_objective),
    "scan": MethodSpec(graph=directed_knn_graph, n_views=1, n_sampled_neighbors=1, objective=scan_objective),
    # TEMI divides cosine logits in [-1, 1] (a weight-normalised DINO head) by 0.1, which starts near
    # logits of scale 1; our heads output unbounded logits initialised at scale 1, so the softmax is
    # taken at temperature 1 (at 0.1 the heads start saturated: 0.44 instead of 0.65 on digits).
    "temi": MethodSpec(graph=directed_knn_graph, n_views=1, n_sampled_neighbors=1, uses_teacher=True,
                       temperature=1.0, objective=temi_objective),
    "contrastive_clustering": MethodSpec(graph=directed_knn_graph, n_views=1, n_sampled_neighbors=1,
                                         objective=contrastive_clustering_objective),
}
METHODS = tuple(METHOD_SPECS)
