"""``Clustering``: unsupervised classification of frozen features with Debiased InfoNCE Clustering.

``L = mean_i KL( (1 - a_p) p(.|i) + a_p / N  ||  (1 - a_q) q(.|i) + a_q / N )`` with p uniform over
an item's other views, its (mutual) kNN and walk-propagated kNN in the batch, and q the cluster kernel
``q(j|i) = sum_c phi_ic phi_jc / n_c`` of a head's soft assignments (section 5 of the paper).
A scikit-learn style estimator: ``Clustering(n_clusters=10).fit_predict(X)``.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Optional, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from .._validation import IConError, check_choice, check_int, check_positive, check_probability, fail
from .graph import NeighborGraph, compose_batch, knn_indices, mutual_knn, walk_graph
from .objectives import (cluster_kernel_kl, icon_objective, scan_loss, supervised_objective,
                                    temi_loss)
from .._estimator_base import Estimator, Threads, as_tensor, like_input

__all__ = ["Clustering"]

METHODS = ("debiased_infonce", "dcd", "pmi", "kmeans", "supervised", "scan", "temi")
_GRAPH_METHODS = ("debiased_infonce", "dcd", "pmi", "scan", "temi")
# TEMI divides cosine logits in [-1, 1] (a weight-normalised DINO head) by 0.1, which starts near
# logits of scale 1; our heads output unbounded logits initialised at scale 1, so the softmax is
# taken at temperature 1 (at 0.1 the heads start saturated: 0.44 instead of 0.65 on digits).
_TEMI_TEMPERATURE = 1.0
_TEMI_PRIOR_MOMENTUM = 0.9   # EMA of TEMI's cluster prior


class Clustering(Estimator):
    """Cluster frozen features by training cluster heads with an I-Con loss (Debiased InfoNCE Clustering).

    ``L = mean_i KL(p~(.|i) || q~(.|i))``, ``p~ = (1 - alpha_p) p + alpha_p / (B - 1)``,
    ``q~ = (1 - alpha_q) q + alpha_q / B`` on batches of B items (section 5 of the paper; the
    table row of its new method). ``q(j|i) = sum_c phi_ic phi_jc / n_c`` is the cluster kernel
    (Def. 2) of a head's softmax ``phi``; p is uniform over the other views of item i and the
    items of the batch that are among its kNN or reached by walks on the kNN graph (by default
    pruned to mutual neighbours before the walks, ``mutual_knn``). Each batch
    holds ``batch_size`` anchors, ``n_views`` copies of each (passed through ``augment``) and
    ``n_sampled_neighbors`` neighbours of each drawn from that graph (the paper: 2 and 2).

    ``method`` picks the (p, q) pair, all with the same heads and batches:

    * ``"debiased_infonce"`` (default): as above, mutual kNN + walks, alpha 0.6 on both sides.
    * ``"dcd"``: p uniform over the symmetric kNN graph (no walks), q the cluster kernel (DCD).
    * ``"pmi"``: p uniform over the directed kNN (Table 1's PMI row, Thm 15).
    * ``"kmeans"``: Thm 13, ``KL(q || p) + H(q)`` with p a unit Gaussian on the standardised
      features (:func:`icontorch.methods.kmeans`); batches of anchors only.
    * ``"supervised"``: p uniform over the anchor's class (``fit(X, y)``), q the cluster kernel.
    * ``"scan"``, ``"temi"``: the SCAN and TEMI objectives (baselines, not I-Con), on anchors and
      one sampled kNN each; TEMI's teacher is the EMA head (momentum ``ema``).

    Args:
        n_clusters: number of clusters C, 2 <= C <= n.
        method: one of the above.
        n_neighbors: k of the exact data-set kNN graph (1 <= k < n); default 6, with
            ``mutual_knn`` pruning it to 3 to 4 neighbours per point on digits and MNIST-5k.
        walk_length: s >= 0: nodes reached in 2..s+1 steps of the kNN graph also count as
            neighbours (``"debiased_infonce"`` only; the paper's "s-walks").
        walk_mode: ``"reach"``: p uniform over the reached nodes (the paper's simplified form);
            ``"sum"``: p proportional to ``P + ... + P^(s+1)`` (``P`` the kNN random walk), the
            paper's smoothed form (section 4.3; another view of i weighs ``1 / k``).
        mutual_knn: prune the kNN graph before the walks (``"debiased_infonce"`` only): keep
            ``i -> j`` when ``j`` is i's nearest neighbour or ``i`` is also among j's k nearest
            (:func:`~icontorch.clustering_graph.mutual_knn`). One-sided kNN edges are the ones
            that cross between groups, and walks multiply them: with k = 6 and walks of 4, the
            share of walk-graph edges joining two images of the same digit is 0.96 with pruning
            and 0.75 without on digits (0.86 and 0.55 on MNIST-5k).
        metric: kNN metric, ``"cosine"`` or ``"euclidean"``, on the features as given.
        alpha_p, alpha_q: debiasing weights in [0, 1]; None: 0.6 for ``"debiased_infonce"``,
            0 for the other I-Con methods.
        head: ``"linear"`` or ``"mlp"`` (one ReLU hidden layer of ``hidden_dim`` units).
        hidden_dim: width of the MLP head.
        n_heads: heads trained together; the one with the lowest final loss on fixed batches is
            kept (never chosen by labels).
        batch_size: anchors per batch (a batch holds ``batch_size * (n_views + n_sampled_neighbors)``
            items).
        n_views: copies of each anchor (augmented views when ``augment`` is given).
        n_sampled_neighbors: neighbours drawn per anchor from its graph row.
        epochs: passes over the data (every point is an anchor once per epoch).
        lr: Adam's learning rate.
        lr_schedule: ``"constant"``, ``"step"`` (halved every ``epochs // 3`` epochs, the paper's)
            or ``"cosine"``.
        weight_decay: Adam's weight decay.
        ema: momentum of the exponential moving average of the heads, which predict (0: off).
        augment: optional ``f(x) -> x`` applied to every batch of raw (n, d) features.
        standardize: feed the heads z-scored features (the kNN always uses the features as given).
        random_state: seed (int) of initialisation, batches and ``augment``; None draws one.
        device: torch device of the computation.
        n_jobs: torch CPU threads during ``fit`` and ``predict`` (None: torch's setting; -1: all
            cores). Batches are small, so on a busy machine 1 is often the fastest.
        verbose: show a progress bar (tqdm).

    Attributes:
        labels_: (n,) cluster of each training point.
        loss_history_: (epochs, n_heads) mean training loss per epoch and head.
        head_losses_: (n_heads,) final loss of each (averaged) head on fixed batches.
        best_head_: index of the kept head.
        head_: the kept head (a :class:`~icontorch.clustering_heads.ClusterHeads` with H = 1).
        graph_: the :class:`~icontorch.clustering_graph.NeighborGraph` of p (or None).
        mean_, scale_: the standardisation of the head inputs.
        n_features_in_, n_iter_ (optimiser steps), fit_seconds_.
    """

    def __init__(self, n_clusters: int = 10, method: str = "debiased_infonce", n_neighbors: int = 6,
                 walk_length: int = 4, walk_mode: str = "reach", mutual_knn: bool = True, metric: str = "cosine",
                 alpha_p: Optional[float] = None,
                 alpha_q: Optional[float] = None, head: str = "linear", hidden_dim: int = 256,
                 n_heads: int = 10, batch_size: int = 64, n_views: int = 2, n_sampled_neighbors: int = 2,
                 epochs: int = 30, lr: float = 1e-2, lr_schedule: str = "constant",
                 weight_decay: float = 0.0, ema: float = 0.99,
                 augment: Optional[Callable[[Tensor], Tensor]] = None, standardize: bool = True,
                 random_state: Optional[int] = None, device: Union[str, torch.device] = "cpu",
                 n_jobs: Optional[int] = None, verbose: bool = False) -> None:
        self.n_clusters = n_clusters
        self.method = method
        self.n_neighbors = n_neighbors
        self.walk_length = walk_length
        self.walk_mode = walk_mode
        self.mutual_knn = mutual_knn
        self.metric = metric
        self.alpha_p = alpha_p
        self.alpha_q = alpha_q
        self.head = head
        self.hidden_dim = hidden_dim
        self.n_heads = n_heads
        self.batch_size = batch_size
        self.n_views = n_views
        self.n_sampled_neighbors = n_sampled_neighbors
        self.epochs = epochs
        self.lr = lr
        self.lr_schedule = lr_schedule
        self.weight_decay = weight_decay
        self.ema = ema
        self.augment = augment
        self.standardize = standardize
        self.random_state = random_state
        self.device = device
        self.n_jobs = n_jobs
        self.verbose = verbose

    # ------------------------------------------------------------------ checks
    def _check_params(self, n: int) -> Tuple[float, float]:
        who = "Clustering"
        check_choice(who, "method", self.method, METHODS)
        check_int(who, "n_clusters", self.n_clusters, 2)
        if self.n_clusters > n:
            raise fail(who, "n_clusters", f"be at most the number of points ({n})", self.n_clusters)
        check_int(who, "n_neighbors", self.n_neighbors, 1)
        if self.method in _GRAPH_METHODS and self.n_neighbors >= n:
            raise fail(who, "n_neighbors", f"be smaller than the number of points ({n})", self.n_neighbors)
        check_int(who, "walk_length", self.walk_length, 0)
        check_choice(who, "walk_mode", self.walk_mode, ("reach", "sum"))
        if not isinstance(self.mutual_knn, (bool, np.bool_)):
            raise fail(who, "mutual_knn", "be True or False", self.mutual_knn)
        check_choice(who, "metric", self.metric, ("cosine", "euclidean"))
        default = 0.6 if self.method == "debiased_infonce" else 0.0
        alphas = []
        for name in ("alpha_p", "alpha_q"):
            value = getattr(self, name)
            alphas.append(default if value is None else check_probability(who, name, value))
        check_choice(who, "head", self.head, ("linear", "mlp"))
        for name, minimum in (("hidden_dim", 1), ("n_heads", 1), ("batch_size", 1), ("n_views", 1),
                              ("n_sampled_neighbors", 0), ("epochs", 1)):
            check_int(who, name, getattr(self, name), minimum)
        if self.batch_size * self.n_views + self.n_sampled_neighbors * self.batch_size < 2:
            raise fail(who, "batch_size", "give batches of at least 2 items", self.batch_size)
        check_positive(who, "lr", self.lr)
        check_choice(who, "lr_schedule", self.lr_schedule, ("constant", "step", "cosine"))
        if isinstance(self.weight_decay, bool) or not isinstance(self.weight_decay, (int, float)) \
                or not 0.0 <= self.weight_decay < math.inf:
            raise fail(who, "weight_decay", "be a finite number >= 0", self.weight_decay)
        check_probability(who, "ema", self.ema)
        if self.ema >= 1.0:
            raise fail(who, "ema", "be below 1 (1 would never move the averaged head)", self.ema)
        if self.augment is not None and not callable(self.augment):
            raise fail(who, "augment", "be None or a callable f(x) -> x", self.augment)
        if self.n_jobs is not None and (isinstance(self.n_jobs, bool) or not isinstance(self.n_jobs, int)
                                        or not (self.n_jobs >= 1 or self.n_jobs == -1)):
            raise fail(who, "n_jobs", "be None, -1 or a positive integer", self.n_jobs)
        if self.random_state is not None and (isinstance(self.random_state, bool)
                                              or not isinstance(self.random_state, (int, np.integer))):
            raise fail(who, "random_state", "be None or an integer seed", self.random_state)
        return alphas[0], alphas[1]

    def _inputs(self, x: Tensor) -> Tensor:
        """Head inputs: ``augment`` is applied by the caller; here only standardisation."""
        return (x - self.mean_) / self.scale_ if self.standardize else x

    # ------------------------------------------------------------------ fit
    def fit(self, X: Any, y: Any = None) -> "Clustering":
        """Mine the kNN graph of ``X``, train ``n_heads`` heads and keep the one of lowest loss.

        Args:
            X: (n, d) features (numpy array, tensor or nested sequence), finite.
            y: (n,) integer labels, used by ``method="supervised"`` only (ignored otherwise).
        """
        try:
            device = torch.device(self.device)
        except (RuntimeError, TypeError):
            raise fail("Clustering", "device", "be a torch device such as 'cpu' or 'cuda'", self.device) from None
        x = as_tensor(X, "Clustering", "X", device)
        n = x.shape[0]
        alpha_p, alpha_q = self._check_params(n)
        labels = self._check_labels(y, n, device) if self.method == "supervised" else None
        seed = int(np.random.randint(0, 2 ** 31 - 1)) if self.random_state is None else int(self.random_state)
        start = time.perf_counter()
        self.n_features_in_ = x.shape[1]
        self.mean_ = x.mean(0)
        scale = x.std(0) if n > 1 else torch.ones_like(x[0])
        self.scale_ = torch.where(scale > 0, scale, torch.ones_like(scale))
        with Threads(self.n_jobs):
            self.graph_ = self._build_graph(x) if self.method in _GRAPH_METHODS else None
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), Threads(self.n_jobs):
            torch.manual_seed(seed)
            self._train(x, labels, alpha_p, alpha_q, seed, device)
        self.fit_seconds_ = time.perf_counter() - start
        self.labels_ = self.predict(x).cpu().numpy()
        return self

    def _check_labels(self, y: Any, n: int, device: torch.device) -> Tensor:
        if y is None:
            raise fail("Clustering", "y", "be given (one label per point) when method='supervised'", y)
        values = np.asarray(y.detach().cpu() if isinstance(y, Tensor) else y)
        if values.ndim != 1 or values.shape[0] != n:
            raise fail("Clustering", "y", f"hold one label per point, shape ({n},)", f"shape {values.shape}")
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            raise fail("Clustering", "y", "hold finite labels", "NaN or Inf")
        return torch.as_tensor(np.unique(values, return_inverse=True)[1].ravel(), device=device)

    def _build_graph(self, x: Tensor) -> NeighborGraph:
        knn = knn_indices(x, self.n_neighbors, self.metric)
        if self.method == "debiased_infonce":
            if self.mutual_knn:
                knn = mutual_knn(knn)
            return walk_graph(knn, self.walk_length, symmetric=True, mode=self.walk_mode)
        return walk_graph(knn, 0, symmetric=self.method == "dcd")

    def _composition(self) -> Tuple[int, int]:
        """(views per anchor, sampled neighbours per anchor) of this method's batches."""
        if self.method in ("scan", "temi"):
            return 1, 1
        if self.method == "kmeans":
            return 1, 0
        if self.method == "supervised":
            return self.n_views, 0
        return self.n_views, self.n_sampled_neighbors

    def _batch(self, x: Tensor, anchors: Tensor, generator: torch.Generator) -> Tuple[Tensor, Tensor]:
        views, sampled = self._composition()
        src = compose_batch(anchors, self.graph_, views, sampled, generator)
        batch = x[src]
        if self.augment is not None:
            batch = self.augment(batch)
            if not isinstance(batch, Tensor) or batch.shape != (src.shape[0], x.shape[1]):
                raise fail("Clustering", "augment(x)", f"return a tensor of shape {(src.shape[0], x.shape[1])}",
                           batch)
        return src, self._inputs(batch)

    def _losses(self, logits: Tensor, src: Tensor, z: Tensor, labels: Optional[Tensor], alpha_p: float,
                alpha_q: float, teacher_logits: Optional[Tensor], update: bool) -> Tensor:
        """(H,) loss of every head on one batch."""
        if self.method in ("debiased_infonce", "dcd", "pmi"):
            pairs = self.graph_.relation(src) if self.graph_.weights is None else \
                self.graph_.batch_weights(src, logits.dtype)
            objective = icon_objective(pairs, alpha_p, alpha_q, logits.dtype)
            return cluster_kernel_kl(logits.log_softmax(2), objective.log_p(None), alpha_q)
        if self.method == "supervised":
            objective = supervised_objective(alpha_p, alpha_q)
            return cluster_kernel_kl(logits.log_softmax(2), objective.log_p(labels[src]), alpha_q)
        if self.method == "kmeans":
            from ..methods import kmeans

            objective = kmeans(sigma=1.0)
            return torch.stack([objective(h.log_softmax(1), target=z) for h in logits])
        m = src.shape[0] // 2
        if self.method == "scan":
            log_phi = logits.log_softmax(2)
            return scan_loss(log_phi[:, :m], log_phi[:, m:])
        student = (logits / _TEMI_TEMPERATURE).log_softmax(2).reshape(logits.shape[0], 2, m, -1)
        teacher = (teacher_logits / _TEMI_TEMPERATURE).log_softmax(2).reshape(logits.shape[0], 2, m, -1)
        if update:
            batch_mean = teacher.exp().mean((1, 2))
            self._prior = _TEMI_PRIOR_MOMENTUM * self._prior + (1 - _TEMI_PRIOR_MOMENTUM) * batch_mean
        return temi_loss(student, teacher, self._prior)

    def _train(self, x: Tensor, labels: Optional[Tensor], alpha_p: float, alpha_q: float, seed: int,
               device: torch.device) -> None:
        from .train import train_heads   # imported here: it needs this module's class

        train_heads(self, x, labels, alpha_p, alpha_q, seed, device)

    # ------------------------------------------------------------------ predict
    def _check_fitted(self) -> None:
        if not hasattr(self, "head_"):
            raise IConError("Clustering: this estimator is not fitted yet; call fit(X) first.")

    def _logits(self, X: Any) -> Tuple[Tensor, Any]:
        self._check_fitted()
        device = self.mean_.device
        x = as_tensor(X, "Clustering", "X", device)
        if x.shape[1] != self.n_features_in_:
            raise fail("Clustering", "X", f"have {self.n_features_in_} features, as in fit", x)
        with torch.no_grad(), Threads(getattr(self, "n_jobs", None)):
            logits = self.head_(self._inputs(x.to(self.mean_.dtype)))[0]
        if self.method == "temi":
            logits = logits / _TEMI_TEMPERATURE
        return logits, X

    def predict_proba(self, X: Any) -> Union[np.ndarray, Tensor]:
        """(n, n_clusters) soft assignments ``phi`` of the kept head (a tensor for tensor input)."""
        logits, original = self._logits(X)
        return like_input(logits.softmax(1), original)

    def predict(self, X: Any) -> Union[np.ndarray, Tensor]:
        """(n,) cluster of each point: ``argmax_c phi_c`` of the kept head."""
        logits, original = self._logits(X)
        return like_input(logits.argmax(1), original)

    def fit_predict(self, X: Any, y: Any = None) -> np.ndarray:
        """``fit(X, y)`` then the clusters of the training points (``labels_``)."""
        return self.fit(X, y).labels_
