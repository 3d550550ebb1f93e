"""The objectives a :class:`~icontorch.clustering.Clustering` head is trained with, for H heads at once.

* I-Con methods: p is a library neighbourhood on the batch (:func:`icon_objective`, built from
  :class:`~icontorch.Precomputed`, :class:`~icontorch.SameLabel` and :func:`~icontorch.mix_uniform`)
  and q is ``mix_uniform(Cluster(), alpha_q)``. :func:`cluster_kernel_kl` evaluates
  ``KL(p || q)`` for every head with one batched matrix product; it equals
  ``ICon(p, mix_uniform(Cluster(), alpha_q))`` head by head (tested in float64).
* Baselines, from their papers' formulas (not I-Con): :func:`scan_loss` (SCAN) and
  :func:`temi_loss` (TEMI). They train the same heads on the same batches and kNN.
* Batch objectives: one builder per method (:func:`graph_kernel_objective`,
  :func:`supervised_kernel_objective`, :func:`kmeans_objective`, :func:`scan_objective`,
  :func:`temi_objective`) turns an :class:`ObjectiveSetup` into a :data:`BatchObjective`, the
  ``(logits, src, inputs, teacher, update) -> (H,)`` loss the training loop calls on every batch.

Shapes: ``log_phi`` is (H, B, C), the log soft assignments of B batch items by H heads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import Tensor

from ..loss import ICon
from ..methods import kmeans
from ..neighborhoods import Cluster, Precomputed, SameLabel
from ..neighborhoods.base import log_normalize
from ..transforms import mix_uniform
from .fused import kernel_factors, pairs_cluster_kernel_kl
from .graph import NeighborGraph

__all__ = ["icon_objective", "supervised_objective", "cluster_kernel_kl", "scan_loss", "temi_loss",
           "ObjectiveSetup", "BatchObjective", "graph_kernel_objective", "supervised_kernel_objective",
           "kmeans_objective", "scan_objective", "temi_objective"]

_NEG_INF = float("-inf")


def icon_objective(relation: Tensor, alpha_p: float, alpha_q: float,
                   dtype: torch.dtype = torch.float32) -> ICon:
    """``ICon(p = mix_uniform(U(relation), alpha_p), q = mix_uniform(Cluster(), alpha_q))`` on a batch.

    ``U(relation)`` is uniform over the True entries of row i of the (B, B) boolean relation
    (views and graph neighbours of item i, never i itself); a float ``relation`` holds weights
    instead and p(j|i) is proportional to them. An item without any keeps an empty row, which
    the loss leaves out. ``alpha_p`` spreads over the B - 1 other items, ``alpha_q``
    over all B (the cluster kernel includes j = i, Def. 2).
    """
    if relation.dtype == torch.bool:
        log_w = torch.zeros(relation.shape, dtype=dtype, device=relation.device).masked_fill(~relation, _NEG_INF)
    else:                                          # weights: p(j|i) proportional to w_ij
        log_w = relation.to(dtype).log()
    p = Precomputed(log_normalize(log_w), include_self=False)
    return ICon(p=mix_uniform(p, alpha_p), q=mix_uniform(Cluster(), alpha_q), skip_empty_rows=True)


def supervised_objective(alpha_p: float, alpha_q: float) -> ICon:
    """``ICon(p = mix_uniform(SameLabel(include_self=True), alpha_p), q = mix_uniform(Cluster(), alpha_q))``.

    The supervised-clustering cell (:func:`icontorch.methods.supervised_clustering`): p is
    uniform over the anchor's class (self included, so labels-as-clusters give q = p).
    """
    return ICon(p=mix_uniform(SameLabel(include_self=True), alpha_p), q=mix_uniform(Cluster(), alpha_q))


def cluster_kernel_kl(log_phi: Tensor, log_p: Tensor, alpha_q: float) -> Tensor:
    """``(1/|A|) sum_{i in A} KL(p(.|i) || q~_h(.|i))`` for every head h: an (H,) tensor.

    ``q~_h = (1 - alpha_q) q_h + alpha_q / B`` with the cluster kernel
    ``q_h(j|i) = sum_c phi_ic phi_jc / n_c``, ``n_c = sum_k phi_kc`` over the batch (Def. 2;
    an empty cluster adds nothing). A is the set of anchors whose p row has mass. One
    (H, B, C) x (H, C, B) product gives all q; memory O(H B^2), never the data set's N^2.
    With ``alpha_q = 0`` a q that underflows to 0 is floored at the smallest normal float.

    Args:
        log_phi: (H, B, C) log soft assignments (``log_softmax`` of the head outputs).
        log_p: (B, B) supervisory log-probabilities, shared by the heads (``-inf``: no mass).
        alpha_q: debiasing weight of q in [0, 1].
    """
    n_items = log_phi.shape[1]
    tiny = torch.finfo(log_phi.dtype).tiny
    phi, psi = kernel_factors(log_phi, alpha_q)                       # phi and phi_jc / n_c
    if alpha_q > 0.0:
        # q~ = (1 - alpha_q) phi psi^T + alpha_q / B in one fused product
        offset = torch.full((1, 1, 1), alpha_q / n_items, dtype=phi.dtype, device=phi.device)
        log_q = torch.baddbmm(offset, phi, psi.transpose(1, 2), alpha=1.0 - alpha_q).log()
    else:
        log_q = torch.bmm(phi, psi.transpose(1, 2)).clamp_min(tiny).log()
    # KL = sum_j p log p - sum_j p log q~; p = 0 off its support, where log q~ is finite
    support = log_p > _NEG_INF
    log_p = log_p.to(log_q.dtype)
    p = log_p.exp()
    neg_entropy = (p * log_p.masked_fill(~support, 0.0)).sum(1)
    cross = torch.einsum("ij,hij->hi", p, log_q)
    anchors = support.any(1)
    return (neg_entropy - cross)[:, anchors].mean(1)


def scan_loss(log_phi_anchor: Tensor, log_phi_neighbor: Tensor, entropy_weight: float = 5.0) -> Tensor:
    """SCAN: ``-mean_i log <phi_i, phi_n(i)> - lambda H(mean_i phi_i)`` per head, an (H,) tensor.

    Van Gansbeke et al., "SCAN: Learning to Classify Images without Labels", ECCV 2020: binary
    cross-entropy of the anchor's and its mined neighbour's agreement with 1 (the log clamped at
    -100 as ``nn.BCELoss``), minus
    ``entropy_weight`` times the entropy of the batch-mean assignment (probabilities clamped at
    1e-8); SCAN's configs use 5. Both sides get gradients. The agreement is computed in log
    space (the same value, no 0 * inf gradients when assignments saturate).

    Args:
        log_phi_anchor: (H, M, C) log soft assignments of the anchors.
        log_phi_neighbor: (H, M, C) log soft assignments of one sampled neighbour per anchor.
        entropy_weight: lambda.
    """
    log_agreement = torch.logsumexp(log_phi_anchor + log_phi_neighbor, 2)
    consistency = -log_agreement.clamp_min(-100.0).mean(1)
    mean = log_phi_anchor.exp().mean(1).clamp_min(1e-8)
    entropy = -(mean * mean.log()).sum(1)
    return consistency - entropy_weight * entropy


def temi_loss(log_student: Tensor, log_teacher: Tensor, prior: Tensor, beta: float = 0.6) -> Tensor:
    """TEMI: ``-(1/2) sum_{w != v} mean_i w_i log sum_c (t_w,ic s_v,ic)^beta / prior_c`` per head.

    Adaloglou et al., "Exploring the Limits of Deep Image Clustering using Pretrained Models",
    BMVC 2023: the two views are an anchor and one of its kNN; ``t`` are the teacher's (EMA
    head's, detached) and ``s`` the student's probabilities (in TEMI a softmax of cosine logits /
    0.1; see :data:`~icontorch.clustering.specs.METHOD_SPECS` for the temperature used here);
    ``w_i = sum_c t_0,ic t_1,ic`` weights each pair by the
    teachers' agreement; ``prior`` is the EMA (momentum 0.9) of the batch-mean teacher
    probabilities, updated before the loss; beta = 0.6 (TEMI's README). The sum over c is a
    log-sum-exp of log-probabilities (the same value, stable when softmaxes saturate).

    Args:
        log_student: (H, 2, M, C) student log-probabilities of both views.
        log_teacher: (H, 2, M, C) teacher log-probabilities of both views (no gradient).
        prior: (H, C) cluster prior.
        beta: the exponent beta.
    """
    log_teacher = log_teacher.detach()
    weight = torch.logsumexp(log_teacher[:, 0] + log_teacher[:, 1], 2).exp()     # (H, M)
    log_prior = prior.log()[:, None, :]
    total = 0.0
    for w, v in ((0, 1), (1, 0)):
        pmi = torch.logsumexp(beta * (log_teacher[:, w] + log_student[:, v]) - log_prior, 2)
        total = total + (-weight * pmi).mean(1)
    return total / 2.0


# ----------------------------------------------------------------------------- batch objectives
BatchObjective = Callable[[Tensor, Tensor, Tensor, Optional[Tensor], bool], Tensor]
"""``(logits, src, inputs, teacher, update) -> (H,)`` losses of the H heads on one batch: ``logits``
(H, B, C) of the heads, ``src`` (B,) the data-set index of every batch item, ``inputs`` (B, d) the
head inputs, ``teacher`` (H, B, C) logits of the averaged heads (None unless the method uses a
teacher), ``update`` whether the objective's running state (TEMI's prior) moves on."""


@dataclass(frozen=True)
class ObjectiveSetup:
    """What a method's batch objective may read, fixed for one fit.

    Args:
        graph: p's neighbour graph on the data set (None for methods without one).
        labels: (N,) class ids of the data set (supervised clustering only).
        alpha_p: debiasing weight of p.
        alpha_q: debiasing weight of q.
        n_heads: H.
        n_clusters: C.
        dtype: of the heads' outputs.
        device: of the heads' outputs.
        n_negatives: batch items on which the uniform part of p~ is evaluated per training step
            (:func:`~icontorch.clustering.fused.pairs_cluster_kernel_kl`); None: all of them.
    """

    graph: Optional[NeighborGraph]
    labels: Optional[Tensor]
    alpha_p: float
    alpha_q: float
    n_heads: int
    n_clusters: int
    dtype: torch.dtype
    device: torch.device
    n_negatives: Optional[int] = None


def graph_kernel_objective(setup: ObjectiveSetup) -> BatchObjective:
    """``KL(mix_uniform(p, alpha_p) || mix_uniform(cluster kernel, alpha_q))``, p uniform over (or weighted
    by) the batch items that are graph neighbours or other views of item i (:func:`icon_objective`).
    Training steps (``update``) evaluate the uniform part on ``n_negatives`` random batch items.

    Computed from the batch's pairs (:meth:`~icontorch.clustering.graph.NeighborGraph.batch_pairs`)
    by :func:`~icontorch.clustering.fused.pairs_cluster_kernel_kl`: no (B, B) relation, the same
    value as :func:`cluster_kernel_kl` on ``icon_objective(relation)`` (tested in float64)."""
    graph = setup.graph

    def objective(logits: Tensor, src: Tensor, inputs: Tensor, teacher: Optional[Tensor], update: bool) -> Tensor:
        rows, cols, weights = graph.batch_pairs(src, logits.dtype)
        b = src.shape[0]
        total = torch.zeros(b, dtype=weights.dtype, device=weights.device).index_add_(0, rows, weights)
        columns = None
        if update and setup.n_negatives is not None and setup.n_negatives < b:
            columns = torch.randperm(b, device=src.device)[:setup.n_negatives]
        return pairs_cluster_kernel_kl(logits.log_softmax(2), rows, cols, weights / total[rows],
                                       setup.alpha_p, setup.alpha_q, columns)

    return objective


def supervised_kernel_objective(setup: ObjectiveSetup) -> BatchObjective:
    """:func:`supervised_objective` on the batch: p uniform over the items of the anchor's class."""
    icon = supervised_objective(setup.alpha_p, setup.alpha_q)

    def objective(logits: Tensor, src: Tensor, inputs: Tensor, teacher: Optional[Tensor], update: bool) -> Tensor:
        return cluster_kernel_kl(logits.log_softmax(2), icon.log_p(setup.labels[src]), setup.alpha_q)

    return objective


def kmeans_objective(setup: ObjectiveSetup) -> BatchObjective:
    """Thm 13, ``KL(q || p) + H(q)`` with p a unit Gaussian on the head inputs
    (:func:`icontorch.methods.kmeans` with sigma = 1), head by head."""
    icon = kmeans(1.0)

    def objective(logits: Tensor, src: Tensor, inputs: Tensor, teacher: Optional[Tensor], update: bool) -> Tensor:
        return torch.stack([icon(h.log_softmax(1), target=inputs) for h in logits])

    return objective


def scan_objective(setup: ObjectiveSetup) -> BatchObjective:
    """:func:`scan_loss` on a batch whose first half are anchors and second half one neighbour of each."""

    def objective(logits: Tensor, src: Tensor, inputs: Tensor, teacher: Optional[Tensor], update: bool) -> Tensor:
        m = src.shape[0] // 2
        log_phi = logits.log_softmax(2)
        return scan_loss(log_phi[:, :m], log_phi[:, m:])

    return objective


TEMI_PRIOR_MOMENTUM = 0.9   # EMA of TEMI's cluster prior


class _TemiObjective:
    """:func:`temi_loss` with its running prior, the EMA of the batch-mean teacher probabilities."""

    def __init__(self, setup: ObjectiveSetup) -> None:
        self.prior = torch.full((setup.n_heads, setup.n_clusters), 1.0 / setup.n_clusters, dtype=setup.dtype,
                                device=setup.device)

    def __call__(self, logits: Tensor, src: Tensor, inputs: Tensor, teacher: Optional[Tensor],
                 update: bool) -> Tensor:
        m = src.shape[0] // 2
        student = logits.log_softmax(2).reshape(logits.shape[0], 2, m, -1)
        teacher = teacher.log_softmax(2).reshape(logits.shape[0], 2, m, -1)
        if update:
            batch_mean = teacher.exp().mean((1, 2))
            self.prior = TEMI_PRIOR_MOMENTUM * self.prior + (1 - TEMI_PRIOR_MOMENTUM) * batch_mean
        return temi_loss(student, teacher, self.prior)


def temi_objective(setup: ObjectiveSetup) -> BatchObjective:
    """:func:`temi_loss` on anchors and one neighbour each, the teacher being the averaged heads."""
    return _TemiObjective(setup)
