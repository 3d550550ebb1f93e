"""Divergences: pure functions of ``(log_p, log_q)``, both (n, m), returning per-row values (n,).

Row i compares the supervisory ``p(.|i)`` (first argument) with the learned ``q(.|i)`` (second).
``0 * log 0`` is exactly 0: entries where the weighting distribution is 0 contribute nothing,
and their gradient is 0 (not NaN), whatever the other side holds there.
"""

from __future__ import annotations

from typing import Callable, Dict

from torch import Tensor

__all__ = ["kl", "reverse_kl", "cross_entropy", "entropy", "DIVERGENCES"]

_NEG_INF = float("-inf")


def _weighted_sum(log_w: Tensor, values: Tensor) -> Tensor:
    """``sum_j exp(log_w_j) * values_j`` over rows, with zero-weight entries dropped exactly."""
    zero = log_w == _NEG_INF
    safe_w = log_w.masked_fill(zero, 0.0).exp()
    safe_v = values.masked_fill(zero, 0.0)
    return (safe_w * safe_v).masked_fill(zero, 0.0).sum(dim=-1)


def cross_entropy(log_p: Tensor, log_q: Tensor) -> Tensor:
    """``H(p_i, q_i) = -sum_j p(j|i) log q(j|i)``.

    Equal to :func:`kl` plus the entropy of p; with a fixed p they have the same gradient, and
    this is the form most classic losses report (NT-Xent, SupCon L_out, CLIP, cross-entropy).
    """
    return _weighted_sum(log_p, -log_q)


def kl(log_p: Tensor, log_q: Tensor) -> Tensor:
    """``KL(p_i || q_i) = sum_j p(j|i) (log p(j|i) - log q(j|i))``: the I-Con divergence (Eq. 1)."""
    return _weighted_sum(log_p, log_p - log_q)


def entropy(log_p: Tensor) -> Tensor:
    """``H(p_i) = -sum_j p(j|i) log p(j|i)``."""
    return _weighted_sum(log_p, -log_p)


def reverse_kl(log_p: Tensor, log_q: Tensor, entropy_weight: float = 0.0) -> Tensor:
    """``KL(q_i || p_i) + entropy_weight * H(q_i)``: the divergence with the slots swapped.

    Thm 13 puts the learned cluster kernel in the first KL slot: k-Means equals
    ``sum_i KL(q_i || p_i) + H(q_i)`` up to constants, i.e. ``entropy_weight=1``, which turns the
    sum into the cross-entropy ``-sum_j q(j|i) log p(j|i)`` and drives assignments to be hard.
    """
    value = _weighted_sum(log_q, log_q - log_p)
    if entropy_weight != 0.0:
        value = value + entropy_weight * entropy(log_q)
    return value


DIVERGENCES: Dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "kl": kl,
    "reverse_kl": reverse_kl,
    "cross_entropy": cross_entropy,
}
