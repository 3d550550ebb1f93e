"""``Clustering``: unsupervised classification of frozen features with Debiased InfoNCE Clustering.

``L = mean_i KL( (1 - a_p) p(.|i) + a_p / N  ||  (1 - a_q) q(.|i) + a_q / N )`` with p uniform over
an item's other views, its (mutual) kNN and walk-propagated kNN in the batch, and q the cluster kernel
``q(j|i) = sum_c phi_ic phi_jc / n_c`` of a head's soft assignments (the paper's new method, the
last row of its Table 1). A scikit-learn style estimator: ``Clustering(n_clusters=10).fit_predict(X)``.
"""

from __future__ import annotations

import time
from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from .._estimator_base import Estimator, Threads, as_tensor, check_n_jobs, like_input
from .._validation import (
    IConError,
    check_choice,
    check_device,
    check_flag,
    check_int,
    check_probability,
    check_random_state,
    fail,
)
from .auto import MIN_GROUP_SIZE, estimate_n_clusters, estimates_n_clusters
from .inputs import (
    check_augment,
    check_cosine_rows,
    check_labels,
    check_views,
    head_labels,
    head_logits,
    standardization,
)
from .objectives import ObjectiveSetup
from .specs import METHOD_SPECS, METHODS, MethodSpec, check_graph_settings, check_train_settings, settings_for_clusters
from .train import (
    Augment,
    TrainedHeads,
    TrainSettings,
    train_heads,
)

BATCH_SIZE = 256
"""Default anchors per batch (a batch of ``BATCH_SIZE * (n_views + n_sampled_neighbors)`` items)."""
N_NEGATIVES = 256
"""Default batch items on which the uniform part of p~ is evaluated per training step."""

__all__ = ["Clustering", "METHODS"]

_WHO = "Clustering"


class Clustering(Estimator):
    """Cluster frozen features by training cluster heads with an I-Con loss (Debiased InfoNCE Clustering).

    ``L = mean_i KL(p~(.|i) || q~(.|i))``, ``p~ = (1 - alpha_p) p + alpha_p / (B - 1)``,
    ``q~ = (1 - alpha_q) q + alpha_q / B`` on batches of B items (the paper's new method: the last
    row of its Table 1, the experiments of its Table 2). ``q(j|i) = sum_c phi_ic phi_jc / n_c`` is
    the cluster kernel (Def. 2) of a head's softmax ``phi``; p is uniform over the other views of
    item i and the items of the batch that are among its kNN or reached by walks on the kNN graph
    (by default pruned to mutual neighbours before the walks, ``mutual_knn``). Each batch holds
    ``batch_size`` anchors, ``n_views`` copies of each (passed through ``augment``) and
    ``n_sampled_neighbors`` neighbours of each drawn from that graph (the paper: 2 and 2).

    ``method`` picks the (p, q) pair, all with the same heads and batches
    (:data:`~icontorch.clustering.specs.METHOD_SPECS` holds each method's settings):

    * ``"debiased_infonce"`` (default): as above, mutual kNN + walks, alpha 0.6 on both sides.
    * ``"dcd"``: p uniform over the symmetric kNN graph (no walks), q the cluster kernel (DCD).
    * ``"pmi"``: p uniform over the directed kNN (Table 1's PMI row, Thm 15).
    * ``"kmeans"``: Thm 13, ``KL(q || p) + H(q)`` with p a unit Gaussian on the standardised
      features (:func:`icontorch.methods.kmeans`); batches of anchors only.
    * ``"supervised"``: p uniform over the anchor's class (``fit(X, y)``), q the cluster kernel.
    * ``"scan"``, ``"temi"``: the SCAN and TEMI objectives (baselines, not I-Con), on anchors and
      one sampled kNN each; TEMI's teacher is the EMA head (momentum ``ema``).
    * ``"contrastive_clustering"``: Li et al. 2021's cluster-level InfoNCE over the columns of the
      assignments of anchors and one sampled kNN each, minus the entropy of the cluster marginal
      (:func:`icontorch.methods.contrastive_clustering`; baseline).

    Memory: O(N m) for the walk graph of at most m = ``max_neighbors`` neighbours per row (its edge
    lists; O(N k^(s+1)) for k neighbours and s walk steps without the bound; the exact kNN works in
    blocks of anchors, O(block * N)), plus O(B^2 + N C) for batches of B items
    and C clusters (the batch pairs, one (H, tile, M) block of the uniform term at a time, and
    the (N, C) assignments): never an N x N tensor. Time per step O(H B (E_i + M) C + B d H C)
    for E_i neighbours of an item in its batch and M = ``n_negatives``, whatever N is.

    Args:
        n_clusters: number of clusters C, 2 <= C <= n, or ``"auto"``: C is the number of groups
            of at least 50 points left when p's graph, cut into N / 20 pieces, is merged
            greedily while the I-Con loss of p against a hard cluster kernel drops
            (:mod:`~icontorch.clustering.auto`; methods with a graph p and the cluster kernel q
            only; at least 100 points); the result is ``n_clusters_``.
        method: one of the above.
        n_neighbors: k of the exact data-set kNN graph (1 <= k < n); default 6, with
            ``mutual_knn`` pruning it to 3 to 4 neighbours per point on digits and MNIST-5k.
        walk_length: s >= 0: nodes reached in 2..s+1 steps of the kNN graph also count as
            neighbours (``"debiased_infonce"`` only; the "s-walks" of the paper's Table 4).
        walk_mode: ``"reach"``: p uniform over the reached nodes (the paper's simplified form);
            ``"sum"``: p proportional to ``P + ... + P^(s+1)`` (``P`` the kNN random walk), the
            paper's smoothed form (section 3.3.3; another view of i weighs ``1 / k``).
        mutual_knn: prune the kNN graph before the walks (``"debiased_infonce"`` only): keep
            ``i -> j`` when ``j`` is i's nearest neighbour or ``i`` is also among j's k nearest
            (:func:`~icontorch.clustering.graph.mutual_knn`). One-sided kNN edges are the ones
            that cross between groups, and walks multiply them: with k = 6 and walks of 4, the
            share of walk-graph edges joining two images of the same digit is 0.96 with pruning
            and 0.75 without on digits (0.86 and 0.55 on MNIST-5k).
        max_neighbors: m, the most neighbours a row of the walk graph keeps (those reached in the
            fewest steps; :func:`~icontorch.clustering.walks.walk_graph`), which bounds the graph's
            memory to O(N m); ``"auto"``: ``max(64, 2**25 // n)`` (479 at 70,000 points, 64 from
            524,288 points); None: every node the walks reach.
        metric: kNN metric on the features as given, ``"cosine"`` or ``"squared_euclidean"``.
        alpha_p: debiasing weight of p in [0, 1]; None: 0.6 for ``"debiased_infonce"``, 0 for the
            other methods.
        alpha_q: debiasing weight of q in [0, 1]; None: the same defaults as ``alpha_p``.
        hidden_layer_sizes: widths of the heads' hidden ReLU layers; ``()`` (default) is a linear
            head, ``(256,)`` an MLP with one hidden layer of 256 units.
        init: how the heads start: ``"random"`` (N(0, 1 / fan_in) weights), ``"k-means"`` (linear
            heads only: head h at the nearest-centroid rule of its own MiniBatchKMeans run on the
            standardised features) or ``"auto"`` (default): linear heads at k-Means from 50 clusters
            on, where random heads leave clusters empty (dev mixture of 1,000 groups: 0.908 from
            random heads, 0.961 from k-Means); below 50, one head in five at k-Means and the rest
            random, and the loss picks between them (dev mixtures of 10 unequal groups: 0.686 and
            0.891 from 10 random heads, 0.800 and 1.000 with 2 more from k-Means; MNIST pixels,
            where k-Means starts are poor: unchanged; :func:`~icontorch.clustering.train.auto_init`).
        n_heads: heads trained together; the one with the lowest final loss on fixed batches is
            kept (never chosen by labels). The heads differ in their initialisation only and end
            in optima of different quality, which the loss ranks (correlation 0.7 to 0.9 between a
            head's accuracy and minus its loss on MNIST-5k and 20,000 MNIST digits): keeping the
            best of 10 instead of 5 lifted the mean Hungarian accuracy from 0.838 to 0.852 on the
            20,000 digits and from 0.799 to 0.809 on MNIST-5k (6 seeds; digits: 0.907 and 0.906)
            (a head adds about 2 ms to a step of 1,024 items of 784 features on one thread, against
            about 8 ms for the rest of the step: 20,000 MNIST digits). ``"auto"`` (default): 12 below
            50 clusters (10 random and 2 k-Means-started with ``init="auto"``), 3 from 50 on, where
            more steps pay off more than more heads (:func:`~icontorch.clustering.train.auto_training`).
        batch_size: anchors per batch (a batch holds ``batch_size * (n_views + n_sampled_neighbors)``
            items: 1,024 with the defaults).
        n_negatives: batch items M on which the uniform part of p~ (``alpha_p / (B - 1)`` on every
            other item) is evaluated per training step, an unbiased estimate of its sum over the
            batch (:func:`~icontorch.clustering.fused.pairs_cluster_kernel_kl`); None: all B items
            (the exact batch loss, as in the head selection). Everything else is exact.
        n_views: copies of each anchor (augmented views when ``augment`` is given).
        n_sampled_neighbors: neighbours drawn per anchor from its graph row.
        n_iter: optimiser steps (the schedule is in steps, whatever the data-set size); ``"auto"``
            (default): 600 below 50 clusters, 2,000 from 50 on. More steps did not help with 10
            clusters at larger N: on 20,000 MNIST digits 1,200 and 2,400 steps reached 0.877 and
            0.871 against 0.873 for 600 (5 heads, 3 seeds), a cosine schedule 0.867; with 100
            clusters they did (``auto_training``).
        epochs: None, or passes over the data (every point an anchor once per epoch), which then
            replace ``n_iter``.
        learning_rate: Adam's learning rate; ``"auto"`` (default): 1e-2 below 50 clusters, then
            ``min(3e-2, 3 / C)`` (3e-3 at 1,000 clusters).
        learning_rate_schedule: ``"constant"``, ``"step"`` (halved after a third and two thirds of
            the steps, the paper's) or ``"cosine"``.
        weight_decay: Adam's weight decay.
        ema: momentum of the exponential moving average of the heads, which predict (0: off).
        augment: optional ``augment(x, generator) -> x`` applied to every batch of raw (B, d)
            features; ``generator`` is a ``torch.Generator`` on the features' device, seeded from
            ``random_state``.
        standardize: feed the heads z-scored features (the kNN always uses the features as given).
        knn_backend: ``"exact"`` (chunked brute force, :func:`~icontorch.knn.exact_knn`) or
            ``"faiss"`` (approximate HNSW, CPU, optional package; :func:`~icontorch.knn.approximate_knn`)
            for millions of points.
        random_state: seed (int) of initialisation, batches and ``augment``'s generator; None draws one.
        device: torch device of the computation.
        n_jobs: torch CPU threads during ``fit`` and ``predict`` (None: torch's setting; -1: all
            cores).
        verbose: show a progress bar (tqdm).

    Numpy integer and float scalars are accepted wherever Python ones are.

    Attributes:
        labels_: (n,) cluster of each training point (numpy).
        loss_history_: (passes, n_heads) mean training loss per pass over the anchors and head.
        n_clusters_: the number of clusters (estimated with ``"auto"``; at least 2).
        head_losses_: (n_heads,) final loss of each (averaged) head on fixed batches.
        best_head_: index of the kept head.
        head_: the kept head (a :class:`~icontorch.clustering.heads.ClusterHeads` with H = 1).
        graph_: the :class:`~icontorch.clustering.graph.NeighborGraph` of p (or None).
        mean_: the heads' inputs are ``(x - mean_) / scale_`` (0 without ``standardize``).
        scale_: see ``mean_`` (1 without ``standardize``).
        n_features_in_: features seen in fit.
        n_iter_: optimiser steps.
        fit_seconds_: duration of the fit.
    """

    def __init__(self, n_clusters: int = 10, *, method: str = "debiased_infonce", n_neighbors: int = 6,
                 walk_length: int = 4, walk_mode: str = "reach", mutual_knn: bool = True,
                 max_neighbors: Union[int, str, None] = "auto", metric: str = "cosine",
                 alpha_p: Optional[float] = None, alpha_q: Optional[float] = None,
                 hidden_layer_sizes: Sequence[int] = (), init: str = "auto", n_heads: Union[int, str] = "auto",
                 batch_size: int = BATCH_SIZE,
                 n_views: int = 2, n_sampled_neighbors: int = 2, n_negatives: Optional[int] = N_NEGATIVES,
                 n_iter: Union[int, str] = "auto",
                 epochs: Optional[int] = None, learning_rate: Union[float, str] = "auto",
                 learning_rate_schedule: str = "constant", weight_decay: float = 0.0, ema: float = 0.99,
                 augment: Optional[Augment] = None, standardize: bool = True,
                 knn_backend: str = "exact", random_state: Optional[int] = None,
                 device: Union[str, torch.device] = "cpu", n_jobs: Optional[int] = None,
                 verbose: bool = False) -> None:
        self.n_clusters = n_clusters
        self.method = method
        self.n_neighbors = n_neighbors
        self.walk_length = walk_length
        self.walk_mode = walk_mode
        self.mutual_knn = mutual_knn
        self.max_neighbors = max_neighbors
        self.metric = metric
        self.alpha_p = alpha_p
        self.alpha_q = alpha_q
        self.hidden_layer_sizes = hidden_layer_sizes
        self.init = init
        self.n_heads = n_heads
        self.batch_size = batch_size
        self.n_views = n_views
        self.n_sampled_neighbors = n_sampled_neighbors
        self.n_negatives = n_negatives
        self.n_iter = n_iter
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.learning_rate_schedule = learning_rate_schedule
        self.weight_decay = weight_decay
        self.ema = ema
        self.augment = augment
        self.standardize = standardize
        self.knn_backend = knn_backend
        self.random_state = random_state
        self.device = device
        self.n_jobs = n_jobs
        self.verbose = verbose

    # ------------------------------------------------------------------ checks
    def _spec(self) -> MethodSpec:
        """The specification of ``method`` (a subclass may return another)."""
        check_choice(_WHO, "method", self.method, METHODS)
        return METHOD_SPECS[self.method]

    def _alphas(self, spec: MethodSpec) -> Tuple[float, float]:
        alpha_p = spec.default_alpha_p if self.alpha_p is None else check_probability(_WHO, "alpha_p", self.alpha_p)
        alpha_q = spec.default_alpha_q if self.alpha_q is None else check_probability(_WHO, "alpha_q", self.alpha_q)
        return alpha_p, alpha_q

    def _n_clusters(self, n: int, spec: MethodSpec) -> int:
        """C of the heads: ``n_clusters``, or the over-clustering of ``"auto"`` (:mod:`.auto`)."""
        if isinstance(self.n_clusters, str) and self.n_clusters == "auto":
            if not estimates_n_clusters(spec):
                raise fail(_WHO, "n_clusters", "be an integer with method=%r (\"auto\" needs a method whose p is "
                           "a neighbour graph and whose q is the cluster kernel: %s)"
                           % (self.method, ", ".join(m for m in METHODS if estimates_n_clusters(METHOD_SPECS[m]))),
                           self.n_clusters)
            if n < 2 * MIN_GROUP_SIZE:                   # fewer points cannot hold two groups that count
                raise fail(_WHO, "n_clusters", f"be an integer when there are fewer than {2 * MIN_GROUP_SIZE} points "
                           f"(\"auto\" counts groups of at least {MIN_GROUP_SIZE} points; X has {n})",
                           self.n_clusters)
            return 2                                     # a placeholder until the graph is known
        if isinstance(self.n_clusters, str):
            raise fail(_WHO, "n_clusters", 'be an integer >= 2 or "auto"', self.n_clusters)
        n_clusters = check_int(_WHO, "n_clusters", self.n_clusters, 2)
        if n_clusters > n:
            raise fail(_WHO, "n_clusters", f"be at most the number of points ({n})", self.n_clusters)
        return n_clusters

    def _seed(self) -> int:
        if self.random_state is None:
            return int(np.random.randint(0, 2 ** 31 - 1))
        return check_random_state(_WHO, self.random_state)

    def _n_jobs(self) -> Optional[int]:
        return check_n_jobs(_WHO, getattr(self, "n_jobs", None))

    # ------------------------------------------------------------------ fit
    def fit(self, X: Any, y: Any = None, views: Any = None) -> "Clustering":
        """Mine the kNN graph of ``X``, train ``n_heads`` heads and keep the one of lowest loss.

        With ``n_clusters="auto"`` the number of clusters is first read off the graph
        (:func:`~icontorch.clustering.auto.estimate_n_clusters`), then the heads are trained with it.

        The fit is transactional: the learned attributes (those ending in ``_``) are computed
        aside and replace the previous fit's together once it has succeeded, so a fit that fails
        or is interrupted (Ctrl-C) leaves the estimator exactly as it was.

        Args:
            X: (n, d) features (numpy array, tensor or nested sequence), finite; the kNN graph,
                the standardisation and ``labels_`` use them.
            y: (n,) labels, used by ``method="supervised"`` only (ignored otherwise).
            views: optional (n, V, d) features of V augmented copies of every item (cached once);
                batches then draw each item's inputs from its views, so that p's "other views" are
                different augmentations.
        """
        device = check_device(_WHO, "device", self.device)
        x = as_tensor(X, _WHO, "X", device)
        n = x.shape[0]
        spec = self._spec()
        graph_settings = check_graph_settings(_WHO, self, n, spec)
        if spec.graph is not None:
            check_cosine_rows(_WHO, x, graph_settings.metric)
        alpha_p, alpha_q = self._alphas(spec)
        settings = check_train_settings(_WHO, self, n, spec, self._n_clusters(n, spec), self._seed())
        check_augment(_WHO, self.augment)
        cached = None if views is None else check_views(_WHO, views, x)
        standardize = check_flag(_WHO, "standardize", self.standardize)
        n_jobs = self._n_jobs()
        n_negatives = getattr(self, "n_negatives", None)
        if n_negatives is not None:
            n_negatives = check_int(_WHO, "n_negatives", n_negatives, 1)
        labels = check_labels(_WHO, y, n, device, self.method) if spec.uses_labels else None
        start = time.perf_counter()
        mean, scale = standardization(x, standardize)
        with Threads(n_jobs):
            graph = None if spec.graph is None else spec.graph(x, graph_settings)

        def train(train_settings: TrainSettings) -> TrainedHeads:
            objective = spec.objective(ObjectiveSetup(graph, labels, alpha_p, alpha_q, train_settings.n_heads,
                                                      train_settings.n_clusters, x.dtype, x.device, n_negatives))
            devices = [device] if device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices), Threads(n_jobs):
                torch.manual_seed(train_settings.random_state)
                return train_heads(x, graph, objective, train_settings, self.augment,
                                   *((mean, scale) if standardize else (None, None)), views=cached)

        if isinstance(self.n_clusters, str):              # "auto" (checked above)
            with torch.no_grad(), Threads(n_jobs):
                n_clusters = estimate_n_clusters(graph, torch.Generator().manual_seed(settings.random_state))
            settings = settings_for_clusters(self, settings, min(n_clusters, n))
        trained = train(settings)
        fit_seconds = time.perf_counter() - start
        with torch.no_grad(), Threads(n_jobs):
            assigned = head_labels(_WHO, trained.head, x, mean, scale, spec.temperature)
        learned = dict(n_features_in_=x.shape[1], mean_=mean, scale_=scale, graph_=graph, head_=trained.head,
                       best_head_=trained.best_head, n_iter_=trained.n_iter, loss_history_=trained.loss_history,
                       head_losses_=trained.head_losses, fit_seconds_=fit_seconds, labels_=assigned.cpu().numpy(),
                       n_clusters_=trained.head.n_clusters)
        vars(self).update(learned)          # one step: no half-replaced fit
        return self

    # ------------------------------------------------------------------ predict
    def _inputs(self, X: Any) -> Tensor:
        if not hasattr(self, "head_"):
            raise IConError("Clustering: this estimator is not fitted yet; call fit(X) first.")
        x = as_tensor(X, _WHO, "X", self.mean_.device)
        if x.shape[1] != self.n_features_in_:
            raise fail(_WHO, "X", f"have {self.n_features_in_} features, as in fit", x)
        if x.dtype != self.mean_.dtype:
            cast = x.to(self.mean_.dtype)
            if not bool(torch.isfinite(cast).all()):
                raise fail(_WHO, "X", f"fit in {self.mean_.dtype}, the dtype of the fit (its values overflow it)",
                           f"values up to {float(x.abs().max()):.3g}")
            x = cast
        return x

    def _logits(self, X: Any) -> Tensor:
        x = self._inputs(X)
        with torch.no_grad(), Threads(self._n_jobs()):
            return head_logits(_WHO, self.head_, x, self.mean_, self.scale_, self._spec().temperature)

    def predict_proba(self, X: Any) -> Union[np.ndarray, Tensor]:
        """(n, n_clusters) soft assignments ``phi`` of the kept head (a tensor for tensor input)."""
        return like_input(self._logits(X).softmax(1), X)

    def predict(self, X: Any) -> Union[np.ndarray, Tensor]:
        """(n,) cluster of each point: ``argmax_c phi_c`` of the kept head (a tensor for tensor input)."""
        x = self._inputs(X)
        with torch.no_grad(), Threads(self._n_jobs()):
            return like_input(head_labels(_WHO, self.head_, x, self.mean_, self.scale_, self._spec().temperature), X)

    def fit_predict(self, X: Any, y: Any = None) -> Union[np.ndarray, Tensor]:
        """``fit(X, y)`` then the clusters of the training points, ``labels_`` (a tensor for tensor input)."""
        return like_input(torch.from_numpy(self.fit(X, y).labels_), X)
