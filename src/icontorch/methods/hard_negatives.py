"""Hard-negative contrastive learning (Robinson et al. 2021, HCL): SimCLR's negatives reweighted by
their similarity, with Chuang et al.'s positive-unlabelled debiasing.

Its relation to I-Con: at ``tau_plus = 0`` HCL *is* an I-Con loss, SimCLR's p with a reweighted q
(the negatives' kernel times self-normalised importance weights ``N softmax_k(beta s_ik)``); at
``beta = 0`` it is :func:`~icontorch.methods.debiased_contrastive`; at both, SimCLR.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .._validation import check_nonnegative, check_positive_parameter, fail, is_real
from ..distances import unit
from ..neighborhoods.base import show_number
from ._registry import register
from .baselines import _check_reduction, _negatives, _pairs_of_views, _reduce

__all__ = ["HardNegativeContrastiveLoss", "hard_negative_contrastive"]


class HardNegativeContrastiveLoss(nn.Module):
    """``-log(pos / (pos + Ng))``, ``Ng = max((N sum_k w_k neg_k - tau+ N pos) / (1 - tau+), N e^(-1/t))``.

    Robinson, Chuang, Sra and Jegelka, "Contrastive Learning with Hard Negative Samples", ICLR 2021
    (their estimator, ``estimator='hard'`` of their code). Over the 2B views, with ``s_ij = cos(z_i, z_j) / t``:
    ``pos = exp(s_i,i+)``, ``neg_k = exp(s_ik)`` for the N = 2B - 2 negatives k (neither i nor i+),
    importance weights ``w_k = exp(beta s_ik) / sum_l exp(beta s_il)`` (the hardness concentration
    beta; their code's ``(beta * neg.log()).exp()``, so beta multiplies ``s = cos / t``; the
    weights are not detached), and the class prior ``tau_plus`` of Chuang's debiasing. Mean over
    the views.

    Relation to I-Con: at ``tau_plus = 0`` the loss is ``-log q~(i+|i)`` with
    ``q~(j|i) ∝ exp(s_ij)`` for the positive and ``∝ N w_j exp(s_ij)`` for the negatives: SimCLR's
    p against a *reweighted q*, negatives up-weighted by ``exp(beta s_ij)``, exactly (the floor never
    binds there: a weighted mean of ``exp(cos / t)`` is at least ``e^(-1/t)``). For ``tau_plus > 0``
    the normaliser gives the positive a negative weight, as in Chuang's loss: no distribution q has
    it. ``beta = 0`` is Chuang's debiased loss, ``beta = tau_plus = 0`` SimCLR. Computed in log
    space (no ``exp`` overflows or underflows).

    Args:
        temperature: t.
        tau_plus: the class prior tau+ in [0, 1).
        beta: the hardness concentration beta >= 0 (0: uniform weights).
        reduction: ``"mean"`` over the views, ``"sum"``, or ``"none"`` for the (2B,) vector.
    """

    def __init__(self, temperature: float = 0.5, tau_plus: float = 0.1, beta: float = 1.0, *,
                 reduction: str = "mean") -> None:
        super().__init__()
        who = "HardNegativeContrastiveLoss"
        self.temperature = check_positive_parameter(who, "temperature", temperature)
        if not is_real(tau_plus) or not 0 <= tau_plus < 1:
            raise fail(who, "tau_plus", "lie in [0, 1)", tau_plus)
        self.tau_plus = float(tau_plus)
        self.beta = check_nonnegative(who, "beta", beta)
        self.reduction = _check_reduction(who, reduction)

    def forward(self, z: Tensor, target: Tensor) -> Tensor:
        who = "HardNegativeContrastiveLoss"
        partner = _pairs_of_views(who, z, target)
        t = check_positive_parameter(who, "temperature", self.temperature)  # as it is now
        zn = unit(z)
        rows = torch.arange(z.shape[0], device=z.device)
        # log-weights shifted by -1/t (cos <= 1): every weight is <= 1 and the shift cancels in the ratio
        s = (zn @ zn.T - 1.0) / t
        log_pos = s[rows, partner]
        negative, n_neg = _negatives(s, partner)
        masked = s.masked_fill(~negative, float("-inf"))
        log_w = torch.log_softmax((self.beta * s).masked_fill(~negative, float("-inf")), dim=1)  # weights w_k
        log_reweighted = torch.logsumexp(log_w + masked, dim=1)          # log sum_k w_k neg_k
        # Ng = N e^L (1 - tau+ pos / e^L) / (1 - tau+), floored at N e^(-2/t) (e^(-1/t), shifted)
        inner = (1.0 - self.tau_plus * torch.exp(log_pos - log_reweighted)).clamp_min(torch.finfo(s.dtype).tiny)
        log_debiased = log_reweighted + inner.log() - math.log1p(-self.tau_plus)
        log_floor = torch.full_like(log_debiased, -2.0) / t
        log_ng = n_neg.log() + torch.maximum(log_debiased, log_floor)
        return _reduce(torch.logaddexp(log_pos, log_ng) - log_pos, self.reduction)

    def extra_repr(self) -> str:
        return (f"temperature={show_number(self.temperature)}, tau_plus={self.tau_plus}, beta={self.beta}, "
                f"reduction={self.reduction!r}")


@register(cite="Robinson 2021",
          label="Hard negatives (HCL)", column="Uniform over positive pairs", row="Gaussian",
          theorem="not in the paper", equality="loose", area="U-SSL", kind="related",
          test="tests/methods/test_methods_hard_negatives.py::test_hard_negative_contrastive",
          p="1[j = i+]", q="exp(s_ij) reweighted on negatives by N softmax_k(beta s_ik); debiased by tau+",
          note="An I-Con loss with a reweighted q at tau+ = 0 (tested); for tau+ > 0 its normaliser, as "
               "Chuang's, gives the positive a negative weight. beta = 0 is Chuang's debiased loss (tested).")
def hard_negative_contrastive(temperature: float = 0.5, tau_plus: float = 0.1, beta: float = 1.0, *,
                              reduction: str = "mean") -> HardNegativeContrastiveLoss:
    """Hard-negative contrastive learning (Robinson et al. 2021); see :class:`HardNegativeContrastiveLoss`.

    ``-log(pos / (pos + Ng))`` with negatives reweighted by ``exp(beta s_ik)`` and debiased by tau+.
    """
    return HardNegativeContrastiveLoss(temperature, tau_plus, beta, reduction=reduction)
