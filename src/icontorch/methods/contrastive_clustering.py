"""Contrastive Clustering (Li et al. 2021): instance-level and cluster-level contrast, one loss.

Its relation to I-Con: both contrastive terms are I-Con losses (SimCLR on the instances; SimCLR on
the columns of the assignment matrices, whose items are the clusters); the entropy of the cluster
marginal that keeps the clusters from collapsing is not an I-Con term.
"""

from __future__ import annotations

import math
from typing import Union

import torch
from torch import Tensor, nn

from .._validation import check_features, check_positive_parameter, fail
from ..distances import unit
from ..neighborhoods.base import show_number
from ._registry import register
from .baselines import _check_pair
from .contrastive import simclr

__all__ = ["ContrastiveClusteringLoss", "contrastive_clustering", "cluster_terms"]

_WHO = "ContrastiveClusteringLoss"


def _pairs(n: int, device: torch.device) -> Tensor:
    return torch.arange(n, device=device).repeat(2)


def _check_views(z1: Tensor, z2: Tensor) -> None:
    check_features(_WHO, "z1", z1)
    check_features(_WHO, "z2", z2)
    if z2.shape != z1.shape:
        raise fail(_WHO, "z2", f"have the shape of z1 {tuple(z1.shape)}", z2)


def cluster_terms(log_phi1: Tensor, log_phi2: Tensor, temperature: Union[float, Tensor]) -> Tensor:
    """``L_clu`` of (..., N, M) log soft assignments, batched over the leading dimensions (heads), unchecked.

    The NT-Xent over the 2M columns is :func:`~icontorch.methods.simclr` on them (tested), written here
    for a stack of heads at once."""
    n, m = log_phi1.shape[-2:]
    columns = unit(torch.cat([log_phi1.exp().transpose(-1, -2), log_phi2.exp().transpose(-1, -2)], -2))
    logits = columns @ columns.transpose(-1, -2) / temperature                  # (..., 2M, 2M)
    eye = torch.eye(2 * m, dtype=torch.bool, device=logits.device)
    log_q = torch.log_softmax(logits.masked_fill(eye, float("-inf")), -1)
    partner = torch.arange(2 * m, device=logits.device).roll(m)
    contrast = -log_q[..., torch.arange(2 * m, device=logits.device), partner].mean(-1)
    penalty = 2.0 * math.log(m)
    for log_phi in (log_phi1, log_phi2):
        log_marginal = torch.logsumexp(log_phi, dim=-2) - math.log(n)         # log P_c
        finite = torch.isfinite(log_marginal)                                  # an empty cluster adds 0
        log_marginal = torch.where(finite, log_marginal, torch.zeros_like(log_marginal))
        penalty = penalty + (log_marginal.exp() * log_marginal * finite).sum(-1)
    return contrast + penalty


class ContrastiveClusteringLoss(nn.Module):
    """``L = L_ins + L_clu``, ``L_clu = NT-Xent_{t_C}(columns of Y^a, Y^b) + 2 log M - H(P^a) - H(P^b)``.

    Li, Hu, Liu, Peng, Zhou and Peng, "Contrastive Clustering", AAAI 2021 (Eq. 1-7 and their code's
    ``InstanceLoss`` / ``ClusterLoss``). For a batch of N items in two views a, b:

    * ``L_ins``: NT-Xent at ``instance_temperature`` over the 2N instance features ``z^a``, ``z^b``
      (cosine; the positive of ``z^a_i`` is ``z^b_i``), the mean over the 2N views;
    * the columns ``y^a_c``, ``y^b_c`` of the (N, M) soft assignments ``Y^a``, ``Y^b`` are 2M items:
      NT-Xent at ``cluster_temperature`` over them (the positive of ``y^a_c`` is ``y^b_c``), the mean
      over the 2M columns;
    * ``P^k_c = sum_i Y^k_ic / N`` is view k's cluster marginal and ``H`` its entropy. The paper writes
      ``-H(Y) = -H(P^a) - H(P^b)``; their code adds ``log M`` per view (then the term is
      ``KL(P^k || uniform) >= 0``), and so does this loss: its values are the code's.

    Relation to I-Con: ``L_ins`` is :func:`~icontorch.methods.simclr` (Thm 3) and the cluster-level
    contrast is SimCLR on the 2M columns (p = the same cluster in the other view, q = the cosine softmax
    over the other 2M - 1 columns); the entropy term is not an I-Con term, so the whole is not an I-Con
    loss. Both contrastive terms are means over anchors: there is no per-item vector to reduce.

    Args:
        instance_temperature: t_I (the paper's 0.5).
        cluster_temperature: t_C (the paper's 1.0).
    """

    def __init__(self, instance_temperature: float = 0.5, cluster_temperature: float = 1.0) -> None:
        super().__init__()
        self.instance_temperature = check_positive_parameter(_WHO, "instance_temperature", instance_temperature)
        self.cluster_temperature = check_positive_parameter(_WHO, "cluster_temperature", cluster_temperature)

    def instance_loss(self, z1: Tensor, z2: Tensor) -> Tensor:
        """``L_ins``: NT-Xent at ``instance_temperature`` over the 2N views (cosine similarities)."""
        _check_views(z1, z2)
        return simclr(self.instance_temperature)(torch.cat([z1, z2]), target=_pairs(z1.shape[0], z1.device))

    def cluster_loss(self, log_phi1: Tensor, log_phi2: Tensor) -> Tensor:
        """The cluster-level NT-Xent over the 2M columns plus ``2 log M - H(P^a) - H(P^b)``."""
        log_phi1, log_phi2 = _check_pair(_WHO, log_phi1, log_phi2)
        return cluster_terms(log_phi1, log_phi2, self.cluster_temperature)

    def forward(self, z1: Tensor, z2: Tensor, log_phi1: Tensor, log_phi2: Tensor) -> Tensor:
        """``L_ins(z1, z2) + L_clu(log_phi1, log_phi2)``: z the (N, d) instance features of the two views,
        log_phi their (N, M) log soft assignments (``log_softmax`` of the cluster head)."""
        _check_views(z1, z2)
        _check_pair(_WHO, log_phi1, log_phi2)
        if log_phi1.shape[0] != z1.shape[0]:
            raise fail(_WHO, "log_phi1", f"hold one row per row of z1 ({z1.shape[0]})", log_phi1)
        return self.instance_loss(z1, z2) + self.cluster_loss(log_phi1, log_phi2)

    def extra_repr(self) -> str:
        return (f"instance_temperature={show_number(self.instance_temperature)}, "
                f"cluster_temperature={show_number(self.cluster_temperature)}")


@register(cite="Li 2021",
          label="Contrastive Clustering", column="Uniform over positive pairs", row="Uniform on clusters",
          theorem="Thm 3 (both terms)", equality="none", area="CL", kind="related",
          test="tests/methods/test_methods_contrastive_clustering.py::test_contrastive_clustering",
          p="1[j = i+] over the 2N views; 1[c' = c in the other view] over the 2M cluster columns",
          q="cosine softmax over the views; cosine softmax over the columns of the assignments",
          note="A baseline, not an I-Con loss: SimCLR on the instances plus SimCLR on the cluster columns "
               "(two I-Con losses, tested) plus 2 log M minus the entropies of the cluster marginals.")
def contrastive_clustering(instance_temperature: float = 0.5,
                           cluster_temperature: float = 1.0) -> ContrastiveClusteringLoss:
    """Contrastive Clustering (Li et al. 2021): ``L_ins + L_clu``; see :class:`ContrastiveClusteringLoss`.

    Call as ``loss(z1, z2, log_phi1, log_phi2)``.
    """
    return ContrastiveClusteringLoss(instance_temperature, cluster_temperature)
