"""The objectives a :class:`~icontorch.clustering.Clustering` head is trained with, for H heads at once.

* I-Con methods: p is a library neighbourhood on the batch (:func:`icon_objective`, built from
  :class:`~icontorch.Precomputed`, :class:`~icontorch.SameLabel` and :func:`~icontorch.mix_uniform`)
  and q is ``mix_uniform(Cluster(), alpha_q)``. :func:`cluster_kernel_kl` evaluates
  ``KL(p || q)`` for every head with one batched matrix product; it equals
  ``ICon(p, mix_uniform(Cluster(), alpha_q))`` head by head (tested in float64).
* Baselines, from their papers' formulas (not I-Con): :func:`scan_loss` (SCAN) and
  :func:`temi_loss` (TEMI). They train the same heads on the same batches and kNN.

Shapes: ``log_phi`` is (H, B, C), the log soft assignments of B batch items by H heads.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..loss import ICon
from ..neighborhoods import Cluster, Precomputed, SameLabel
from ..neighborhoods.base import log_normalize
from ..transforms import mix_uniform

__all__ = ["icon_objective", "supervised_objective", "cluster_kernel_kl", "scan_loss", "temi_loss"]

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
    phi = log_phi.exp()
    psi = phi / phi.sum(1, keepdim=True).clamp_min(tiny)             # phi_jc / n_c
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

    Van Gansbeke et al. 2020 (methods.md section 2.2): binary cross-entropy of the anchor's and
    its mined neighbour's agreement with 1 (the log clamped at -100 as ``nn.BCELoss``), minus
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

    Adaloglou et al. 2023 (methods.md section 2.3): the two views are an anchor and one of its
    kNN; ``t`` are the teacher's (EMA head's, detached) and ``s`` the student's probabilities
    (in TEMI a softmax of cosine logits / 0.1; see ``Clustering`` for the temperature used); ``w_i = sum_c t_0,ic t_1,ic`` weights each pair by the
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
