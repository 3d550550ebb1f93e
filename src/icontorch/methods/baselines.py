"""Baselines that are **not** I-Con losses, kept beside the table with their relation stated.

* :func:`debiased_contrastive` -- Chuang et al. 2020: edits the softmax normaliser; no valid q.
  I-Con's remedy is alpha-debiasing of p (``mix_uniform``); at ``tau_plus = 0`` it is SimCLR.
* :func:`decoupled_contrastive` -- Yeh et al. 2022: SimCLR plus ``mean log(1 - q(i+|i))``.
* :func:`iic` -- Ji et al. 2019: ``-I(z; z')`` of the batch-pooled joint; equals PMI clustering
  minus log N only for one-hot assignments consistent across views.
* :func:`temi_pmi` -- Adaloglou et al. 2023: with ``beta = 1`` PMI clustering minus log N.

None of them is an :class:`~icontorch.ICon`, so none takes ICon's engine options (``tile_size``,
``gather``, ``skip_empty_rows``, ``symmetric``: a ``TypeError``). Those with one term per anchor
(debiased, decoupled, TEMI) take ``reduction`` (``"mean"``, ``"sum"`` or ``"none"``); IIC's loss
is one sum over the pooled joint and has no per-anchor terms.
"""

from __future__ import annotations

import math
import sys
from typing import Optional, Tuple

import torch
from torch import Tensor, nn

from .._validation import (
    check_choice,
    check_features,
    check_index,
    check_positive,
    check_positive_parameter,
    fail,
    is_real,
)
from ..distances import unit
from ..neighborhoods import StudentT
from ..neighborhoods.base import _tolerance, show_number
from ._registry import register

__all__ = ["DebiasedContrastiveLoss", "DecoupledContrastiveLoss", "IICLoss", "TEMIPMILoss",
           "debiased_contrastive", "decoupled_contrastive", "iic", "temi_pmi"]

_REL = "tests/methods/test_methods_related.py"


def _pairs_of_views(who: str, z: Tensor, target: Tensor) -> Tensor:
    """The index of each view's partner; every id must occur exactly twice."""
    check_features(who, "z", z)
    check_index(who, "target", target)
    if target.shape[0] != z.shape[0]:
        raise fail(who, "target", f"hold one id per row of z ({z.shape[0]})", target)
    same = target[:, None] == target[None, :]
    same.fill_diagonal_(False)
    if not bool((same.sum(1) == 1).all()):
        raise fail(who, "target", "hold every id exactly twice (two views per item)", target)
    return same.float().argmax(1)


def _check_reduction(who: str, reduction: str) -> str:
    return check_choice(who, "reduction", reduction, ("mean", "sum", "none"))


def _reduce(rows: Tensor, reduction: str) -> Tensor:
    """The per-anchor terms, their mean or their sum."""
    if reduction == "none":
        return rows
    return rows.mean() if reduction == "mean" else rows.sum()


def _negatives(w: Tensor, partner: Tensor) -> "tuple[Tensor, Tensor]":
    """The mask of each row's negatives (neither itself nor its partner) and their count N."""
    rows = torch.arange(w.shape[0], device=w.device)
    negative = torch.ones_like(w, dtype=torch.bool)
    negative[rows, rows] = False
    negative[rows, partner] = False
    return negative, negative.sum(1).to(w.dtype)


class DebiasedContrastiveLoss(nn.Module):
    """``-log(pos / (pos + Ng))``, ``Ng = max((neg - tau+ N pos) / (1 - tau+), N e^(-1/t))`` (Chuang 2020).

    ``pos = exp(cos(z_i, z_i+) / t)``, ``neg = sum over the N = 2B - 2 negatives of exp(cos / t)``,
    mean over the 2B views. Not an I-Con loss: for tau+ > 0 the normaliser puts a negative weight
    on the positive, so no distribution q has it; at tau+ = 0 it is exactly SimCLR.

    With a kernel ``q`` (e.g. ``StudentT(2.0)``, as in the paper's Table 5), ``exp(cos / t)`` is
    replaced by the kernel's weight ``exp(q.logits(z_i, z_j))`` and the floor by ``N`` times the
    kernel's infimum, which is 0 for a Student-t: nothing then stops ``Ng`` from collapsing,
    which is how DCL diverges with a Student-t q in the paper.

    Args:
        temperature: t (used when ``q`` is None).
        tau_plus: the class prior tau+ in [0, 1).
        q: optional :class:`~icontorch.StudentT` kernel replacing the cosine weight.
        reduction: ``"mean"`` over the views, ``"sum"``, or ``"none"`` for the (2B,) vector.
    """

    def __init__(self, temperature: float = 0.5, tau_plus: float = 0.1, q: Optional[StudentT] = None, *,
                 reduction: str = "mean") -> None:
        super().__init__()
        self.temperature = check_positive_parameter("DebiasedContrastiveLoss", "temperature", temperature)
        self.reduction = _check_reduction("DebiasedContrastiveLoss", reduction)
        if not is_real(tau_plus) or not 0 <= tau_plus < 1:
            raise fail("DebiasedContrastiveLoss", "tau_plus", "lie in [0, 1)", tau_plus)
        self.tau_plus = float(tau_plus)
        if q is not None and not isinstance(q, StudentT):
            raise fail("DebiasedContrastiveLoss", "q", "be None or a StudentT kernel", q)
        self.q = q

    def forward(self, z: Tensor, target: Tensor) -> Tensor:
        partner = _pairs_of_views("DebiasedContrastiveLoss", z, target)
        check_positive_parameter("DebiasedContrastiveLoss", "temperature", self.temperature)  # as it is now
        if self.q is not None:
            return self._kernel_forward(z, partner)
        t = self.temperature
        zn = unit(z)
        # Every weight carries the factor e^(-1/t) (cos <= 1), which cancels in the ratio and
        # keeps exp() in range for small temperatures.
        w = torch.exp((zn @ zn.T - 1.0) / t)
        pos = w[torch.arange(z.shape[0], device=z.device), partner]
        negative, n_neg = _negatives(w, partner)
        neg = (w * negative).sum(1)
        floor = (-2.0 / t).exp() if isinstance(t, Tensor) else math.exp(-2.0 / t)
        ng = torch.maximum((neg - self.tau_plus * n_neg * pos) / (1.0 - self.tau_plus), n_neg * floor)
        return _reduce(torch.log(pos + ng) - torch.log(pos), self.reduction)

    def _kernel_forward(self, z: Tensor, partner: Tensor) -> Tensor:
        # Student-t logits are <= 0 (weight 1 at distance 0), so exp() cannot overflow; the
        # positive's weight is kept in log space because it can underflow far from its partner.
        logits = self.q.logits(z)
        log_pos = logits[torch.arange(z.shape[0], device=z.device), partner]
        negative, n_neg = _negatives(logits, partner)
        neg = (logits.exp() * negative).sum(1)
        ng = ((neg - self.tau_plus * n_neg * log_pos.exp()) / (1.0 - self.tau_plus)).clamp_min(
            torch.finfo(logits.dtype).tiny)
        return _reduce(torch.logaddexp(log_pos, ng.log()) - log_pos, self.reduction)

    def extra_repr(self) -> str:
        q = "" if self.q is None else f", q={self.q!r}"
        return (f"temperature={show_number(self.temperature)}, tau_plus={self.tau_plus}{q}, "
                f"reduction={self.reduction!r}")


class DecoupledContrastiveLoss(nn.Module):
    """``-cos(z_i, z_i+) / t + log sum_{k not in {i, i+}} exp(cos(z_i, z_k) / t)``, mean over views.

    Yeh et al. 2022: the positive is removed from the denominator. Exactly
    ``simclr(t) + mean_i log(1 - q(i+|i))`` with q SimCLR's softmax: I-Con plus a term that rewards
    q(i+|i) -> 1, not a KL. ``reduction``: ``"mean"`` over the views, ``"sum"`` or ``"none"``.
    """

    def __init__(self, temperature: float = 0.1, *, reduction: str = "mean") -> None:
        super().__init__()
        self.temperature = check_positive_parameter("DecoupledContrastiveLoss", "temperature", temperature)
        self.reduction = _check_reduction("DecoupledContrastiveLoss", reduction)

    def forward(self, z: Tensor, target: Tensor) -> Tensor:
        partner = _pairs_of_views("DecoupledContrastiveLoss", z, target)
        check_positive_parameter("DecoupledContrastiveLoss", "temperature", self.temperature)  # as it is now
        zn = unit(z)
        logits = zn @ zn.T / self.temperature
        rows = torch.arange(z.shape[0], device=z.device)
        negative, _ = _negatives(logits, partner)
        negatives = torch.logsumexp(logits.masked_fill(~negative, float("-inf")), dim=1)
        return _reduce(negatives - logits[rows, partner], self.reduction)

    def extra_repr(self) -> str:
        return f"temperature={show_number(self.temperature)}, reduction={self.reduction!r}"


def _check_pair(who: str, log_phi1: Tensor, log_phi2: Tensor, names: Tuple[str, str] = ("log_phi1", "log_phi2"),
                ) -> Tuple[Tensor, Tensor]:
    """Two (n, C) tensors of log soft assignments (rows log-sum-exp to 0; -inf is a zero
    probability), returned in their common dtype (at least float32)."""
    for name, x in zip(names, (log_phi1, log_phi2)):
        if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[0] == 0 or not x.is_floating_point():
            raise fail(who, name, "be a non-empty 2-D floating tensor of log soft assignments (n, C)", x)
        if bool(torch.isnan(x).any()) or bool((x == float("inf")).any()):
            raise fail(who, name, "contain no NaN or +inf", x)
    if log_phi1.shape != log_phi2.shape:
        raise fail(who, names[1], f"have the shape of {names[0]} {tuple(log_phi1.shape)}", log_phi2)
    for name, x in zip(names, (log_phi1, log_phi2)):
        deviation = float(torch.logsumexp(x.detach().float(), dim=1).abs().max())
        if deviation > _tolerance(x.dtype):
            raise fail(who, name, "hold log soft assignments whose rows log-sum-exp to 0 (apply "
                       "log_softmax to the cluster logits)", f"a row off by {deviation:.3g}")
    dtype = torch.promote_types(torch.promote_types(log_phi1.dtype, log_phi2.dtype), torch.float32)
    return log_phi1.to(dtype), log_phi2.to(dtype)


class IICLoss(nn.Module):
    """``-sum_cc' P_cc' (log P_cc' - lamb log P_c - lamb log P_c')``: IIC (Ji et al. 2019).

    ``P = sym(sum_i phi_i phi'_i^T) / total`` over the batch, entries floored at the float
    epsilon after the marginals are taken, a **sum** (IIC's convention). With ``lamb = 1`` it is
    ``-I(z; z')``. Relation to I-Con: PMI clustering (``methods.pmi_clustering``, the cluster
    kernel against the other view) equals ``log N + IIC`` when the assignments are one-hot and
    consistent across views; for soft ones IIC takes the log of the pooled joint, I-Con the log
    per sample. Inputs are log soft assignments (n, C) of the two views.
    """

    def __init__(self, lamb: float = 1.0) -> None:
        super().__init__()
        self.lamb = check_positive("IICLoss", "lamb", lamb)

    def forward(self, log_phi1: Tensor, log_phi2: Tensor) -> Tensor:
        log_phi1, log_phi2 = _check_pair("IICLoss", log_phi1, log_phi2)
        joint = log_phi1.exp().T @ log_phi2.exp()
        joint = (joint + joint.T) / 2.0
        joint = joint / joint.sum()
        p_c = joint.sum(1, keepdim=True)
        p_c2 = joint.sum(0, keepdim=True)
        eps = sys.float_info.epsilon
        joint = joint.clamp_min(eps)
        return -(joint * (joint.log() - self.lamb * p_c.clamp_min(eps).log()
                          - self.lamb * p_c2.clamp_min(eps).log())).sum()

    def extra_repr(self) -> str:
        return f"lamb={self.lamb}"


class TEMIPMILoss(nn.Module):
    """``-mean_i log sum_c (phi_t(c|x_i) phi_s(c|x'_i))^beta / pi_c``: TEMI's PMI form (no weighting).

    ``phi_t`` are the teacher's assignments of the anchors (detached), ``phi_s`` the student's of
    their neighbours, ``pi`` the teacher's batch-mean cluster probabilities (TEMI keeps an EMA of
    it; pass it as ``prior``). With ``beta = 1`` and the batch prior this is
    ``methods.pmi_clustering`` (student anchors, teacher candidates) minus log N, exactly; beta != 1
    and TEMI's instance weights have no I-Con counterpart. ``reduction``: ``"mean"`` over the
    anchors, ``"sum"`` or ``"none"``.
    """

    def __init__(self, beta: float = 0.6, *, reduction: str = "mean") -> None:
        super().__init__()
        self.beta = check_positive("TEMIPMILoss", "beta", beta)
        self.reduction = _check_reduction("TEMIPMILoss", reduction)

    def forward(self, log_phi_teacher: Tensor, log_phi_student: Tensor,
                prior: Optional[Tensor] = None) -> Tensor:
        log_phi_teacher, log_phi_student = _check_pair("TEMIPMILoss", log_phi_teacher, log_phi_student,
                                                       ("log_phi_teacher", "log_phi_student"))
        log_t = log_phi_teacher.detach()
        if prior is None:
            log_prior = torch.logsumexp(log_t, dim=0) - math.log(log_t.shape[0])
        else:
            if not isinstance(prior, Tensor) or prior.shape != (log_t.shape[1],) or not prior.is_floating_point() \
                    or not bool(torch.isfinite(prior).all()) or bool((prior <= 0).any()):
                raise fail("TEMIPMILoss", "prior", f"be ({log_t.shape[1]},) positive finite cluster "
                           f"probabilities (a floating tensor)", prior)
            log_prior = prior.to(log_t.dtype).log()
        rows = -torch.logsumexp(self.beta * (log_t + log_phi_student) - log_prior, dim=1)
        return _reduce(rows, self.reduction)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, reduction={self.reduction!r}"


@register(cite="Chuang 2020",
          label="Debiased CL (Chuang)", column="Uniform over positive pairs", row="Gaussian",
          theorem="Sec. 3.3.2", equality="none", area="U-SSL", kind="related",
          test=f"{_REL}::test_debiased_contrastive", p="1[j = i+] (no I-Con form)",
          q="softmax with the debiased normaliser Ng (not a distribution)",
          note="A baseline, not an I-Con loss: its normaliser gives the positive a negative weight. "
               "Tested against its formula and against SimCLR at tau+ = 0; I-Con's counterpart is "
               "mix_uniform(p, alpha).")
def debiased_contrastive(temperature: float = 0.5, tau_plus: float = 0.1, q: Optional[StudentT] = None, *,
                         reduction: str = "mean") -> DebiasedContrastiveLoss:
    """Debiased contrastive learning (Chuang et al. 2020); see :class:`DebiasedContrastiveLoss`."""
    return DebiasedContrastiveLoss(temperature, tau_plus, q, reduction=reduction)


@register(cite="Yeh 2022",
          label="Decoupled CL", column="Uniform over positive pairs", row="Gaussian", theorem="not in the paper",
          equality="none", area="U-SSL", kind="related", test=f"{_REL}::test_decoupled_contrastive",
          p="1[j = i+]", q="exp(cos / t) normalised without the positive (not a distribution over j)",
          note="A baseline, not a KL: exactly SimCLR's I-Con loss plus mean log(1 - q(i+|i)) (tested).")
def decoupled_contrastive(temperature: float = 0.1, *, reduction: str = "mean") -> DecoupledContrastiveLoss:
    """Decoupled contrastive learning (Yeh et al. 2022); see :class:`DecoupledContrastiveLoss`."""
    return DecoupledContrastiveLoss(temperature, reduction=reduction)


@register(cite="Ji 2019",
          label="IIC", column="Uniform over positive pairs", row="Uniform on clusters", theorem="not in the paper",
          equality="loose", area="CL", kind="related", test=f"{_REL}::test_iic",
          p="1[j = i+] (the other view)", q="the batch-pooled joint of cluster assignments",
          note="A baseline: equals PMI clustering minus log N only for one-hot assignments consistent "
               "across views (tested); otherwise the log sits outside the sum over data.")
def iic(lamb: float = 1.0) -> IICLoss:
    """Invariant information clustering (Ji et al. 2019); see :class:`IICLoss`."""
    return IICLoss(lamb)


@register(cite="Adaloglou 2023",
          label="TEMI (PMI)", column="Uniform over k-neighbours", row="Uniform on clusters",
          theorem="Thm 15", equality="loose", area="CL", kind="related", test=f"{_REL}::test_temi_pmi",
          p="1[x' is a kNN of x] (teacher anchor, student neighbour)",
          q="sum_c (phi_t phi_s)^beta / pi_c (unnormalised for beta != 1)",
          note="Exact (PMI clustering minus log N) only at beta = 1 with the batch prior (tested); "
               "beta != 1 and TEMI's instance weights are outside I-Con.")
def temi_pmi(beta: float = 0.6, *, reduction: str = "mean") -> TEMIPMILoss:
    """TEMI's PMI loss (Adaloglou et al. 2023); see :class:`TEMIPMILoss`."""
    return TEMIPMILoss(beta, reduction=reduction)
