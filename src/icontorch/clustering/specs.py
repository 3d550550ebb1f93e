"""The methods of :class:`~icontorch.clustering.Clustering`, one specification each, in one table.

Everything that differs between methods is a field of :class:`MethodSpec`: how p's neighbour graph
is built (if at all), the default debiasing weights, the batch composition, whether labels or a
teacher are used, the softmax temperature of the heads and the batch objective. The estimator and
the training loop read these fields; neither looks at a method's name.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional

from torch import Tensor

from .._validation import (
    check_choice,
    check_flag,
    check_int,
    check_layer_sizes,
    check_nonnegative,
    check_positive,
    check_probability,
    fail,
)
from ..knn import KNN_BACKENDS
from ..methods.contrastive_clustering import cluster_terms
from .graph import NeighborGraph, knn_indices, mutual_knn
from .inputs import auto_or, is_auto
from .objectives import (
    BatchObjective,
    ObjectiveSetup,
    graph_kernel_objective,
    kmeans_objective,
    scan_objective,
    supervised_kernel_objective,
    temi_objective,
)
from .train import INITS, LEARNING_RATE_SCHEDULES, TrainSettings, auto_init, auto_training, batches_per_pass
from .walks import walk_graph

__all__ = ["GraphSettings", "check_graph_settings", "check_train_settings", "settings_for_clusters", "MethodSpec",
           "METHOD_SPECS", "METHODS", "directed_knn_graph", "symmetric_knn_graph", "mutual_walk_graph"]


@dataclass(frozen=True)
class GraphSettings:
    """The estimator's settings of p's neighbour graph.

    Args:
        n_neighbors: k of the exact kNN.
        metric: ``"cosine"`` or ``"squared_euclidean"``.
        mutual_knn: prune one-sided kNN edges before the walks.
        walk_length: s, extra walk steps beyond the kNN.
        walk_mode: ``"reach"`` or ``"sum"`` (:func:`~icontorch.clustering.walks.walk_graph`).
        knn_backend: ``"exact"`` or ``"faiss"`` (approximate; :func:`~icontorch.knn.approximate_knn`).
        max_neighbors: the most neighbours a row of the walk graph keeps; None: no bound.
    """

    n_neighbors: int
    metric: str
    mutual_knn: bool
    walk_length: int
    walk_mode: str
    knn_backend: str = "exact"
    max_neighbors: Optional[int] = None


MAX_NEIGHBORS, AUTO_EDGES = 64, 1 << 25
"""``max_neighbors="auto"``: rows of ``max(MAX_NEIGHBORS, AUTO_EDGES // n)`` neighbours at most."""


def check_graph_settings(who: str, estimator: Any, n: int, spec: "MethodSpec") -> GraphSettings:
    """The graph parameters of a ``Clustering`` estimator, checked, for ``n`` points."""
    n_neighbors = check_int(who, "n_neighbors", estimator.n_neighbors, 1)
    if spec.graph is not None and n_neighbors >= n:
        raise fail(who, "n_neighbors", f"be smaller than the number of points ({n})", estimator.n_neighbors)
    walk_length = check_int(who, "walk_length", estimator.walk_length, 0)
    check_choice(who, "walk_mode", estimator.walk_mode, ("reach", "sum"))
    mutual = check_flag(who, "mutual_knn", estimator.mutual_knn)
    check_choice(who, "metric", estimator.metric, ("cosine", "squared_euclidean"))
    backend = getattr(estimator, "knn_backend", "exact")
    check_choice(who, "knn_backend", backend, KNN_BACKENDS)
    bound = getattr(estimator, "max_neighbors", None)
    if isinstance(bound, str) and bound == "auto":
        bound = max(MAX_NEIGHBORS, AUTO_EDGES // max(n, 1))
    elif isinstance(bound, str):
        raise fail(who, "max_neighbors", 'be a positive integer, "auto" or None', bound)
    elif bound is not None:
        bound = check_int(who, "max_neighbors", bound, 1)
    return GraphSettings(n_neighbors, estimator.metric, mutual, walk_length, estimator.walk_mode, backend, bound)


def check_train_settings(who: str, estimator: Any, n: int, spec: "MethodSpec", n_clusters: int,
                         random_state: int) -> TrainSettings:
    """The estimator's training settings, every one checked, for n points and C = ``n_clusters``
    (``"auto"`` values resolved by :func:`settings_for_clusters`)."""
    e = estimator
    sizes = check_layer_sizes(who, "hidden_layer_sizes", e.hidden_layer_sizes)
    counts = {name: auto_or(who, check_int, name, getattr(e, name, "auto"), minimum)
              for name, minimum in (("n_heads", 1), ("batch_size", 1), ("n_views", 1),
                                    ("n_sampled_neighbors", 0), ("n_iter", 1))}
    for name in ("batch_size", "n_views", "n_sampled_neighbors"):
        if counts[name] == "auto":
            raise fail(who, name, "be an integer", getattr(e, name))
    epochs = getattr(e, "epochs", None)
    batch_size = min(counts["batch_size"], n)
    n_iter = counts["n_iter"]
    if epochs is not None:
        n_iter = check_int(who, "epochs", epochs, 1) * batches_per_pass(n, batch_size)
    views = counts["n_views"] if spec.n_views is None else spec.n_views
    sampled = counts["n_sampled_neighbors"] if spec.n_sampled_neighbors is None else spec.n_sampled_neighbors
    if counts["batch_size"] * (views + sampled) < 2:
        raise fail(who, "batch_size", f"give batches of at least 2 items ({views + sampled} per anchor "
                   f"with method={e.method!r})", e.batch_size)
    learning_rate = auto_or(who, check_positive, "learning_rate", e.learning_rate)
    check_choice(who, "learning_rate_schedule", e.learning_rate_schedule, tuple(LEARNING_RATE_SCHEDULES))
    weight_decay = check_nonnegative(who, "weight_decay", e.weight_decay)
    ema = check_probability(who, "ema", e.ema)
    if ema >= 1.0:
        raise fail(who, "ema", "be below 1 (1 would never move the averaged head)", e.ema)
    init = getattr(e, "init", "auto")
    check_choice(who, "init", init, ("auto",) + INITS)
    if init == "k-means" and sizes:
        raise fail(who, "init", 'be "random" or "auto" with hidden layers (an MLP head has no centroid form)', init)
    given = {name: (1 if is_auto(value) else value) for name, value in
             (("n_heads", counts["n_heads"]), ("n_iter", n_iter), ("learning_rate", learning_rate))}
    settings = TrainSettings(
        n_clusters=n_clusters, hidden_layer_sizes=sizes, batch_size=batch_size, n_views=views,
        n_sampled_neighbors=sampled, **given, learning_rate_schedule=e.learning_rate_schedule,
        weight_decay=weight_decay, ema=ema, temperature=spec.temperature, uses_teacher=spec.uses_teacher,
        random_state=random_state, verbose=bool(e.verbose), description=f"{who} ({e.method})")
    return settings_for_clusters(e, settings, n_clusters)


def settings_for_clusters(estimator: Any, settings: TrainSettings, n_clusters: int) -> TrainSettings:
    """``settings`` for C clusters: the ``"auto"`` heads, steps (unless ``epochs`` is given), learning
    rate and k-Means-started heads of C (:func:`~icontorch.clustering.train.auto_training`,
    :func:`~icontorch.clustering.train.auto_init`); given values stay."""
    names = ("n_heads", "n_iter", "learning_rate")
    auto = dict(zip(names, auto_training(n_clusters)))
    chosen = {name: auto[name] for name in names if is_auto(getattr(estimator, name, "auto"))
              and not (name == "n_iter" and getattr(estimator, "epochs", None) is not None)}
    n_heads = chosen.get("n_heads", settings.n_heads)
    init = getattr(estimator, "init", "auto")
    if is_auto(init):
        chosen["centroid_heads"] = auto_init(n_clusters, settings.hidden_layer_sizes, n_heads)
    elif init == "k-means":
        chosen["centroid_heads"] = n_heads
    return dataclasses.replace(settings, n_clusters=n_clusters, **chosen)


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
    :func:`~icontorch.clustering.walks.walk_graph`)."""
    knn = _knn(x, settings)
    if settings.mutual_knn:
        knn = mutual_knn(knn)
    return walk_graph(knn, settings.walk_length, symmetric=True, mode=settings.walk_mode,
                      max_neighbors=settings.max_neighbors)


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
