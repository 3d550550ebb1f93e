"""Cluster neighbourhoods: two points are neighbours when they share a (soft) cluster (Def. 2).

Both kernels take **log** soft assignments ``log phi`` of shape (n, C), whose rows log-sum-exp to
0 (a cluster head's ``log_softmax`` output), and compute in log space with a max-shifted
matrix product, so memory is O(n m + (n + m) C), never O(n m C).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from .._validation import (
    IConError,
    check_candidates,
    check_features,
    check_int,
    check_positive,
    check_positive_parameter,
    fail,
)
from .base import Neighborhood, Number, _tolerance, log_normalize, mask_diagonal, show_number

__all__ = ["Cluster", "DegreeWeightedCluster", "Logits", "SinkhornCodes"]


def _log_matmul_exp(a: Tensor, b: Tensor) -> Tensor:
    """``log(exp(a) @ exp(b).T)`` for a (n, C), b (m, C), stable by shifting rows of each.

    The shifted product underflows where rows i and j share no cluster within the floating
    range (saturated, nearly one-hot assignments): there, and only there, the entry is
    recomputed exactly as ``logsumexp_c(a_ic + b_jc)``, in chunks of the underflowed entries, so
    values and gradients stay finite (no ``log 0`` whose gradient is ``0 / 0``).
    """
    a_max = a.max(dim=1, keepdim=True).values.detach()
    b_max = b.max(dim=1, keepdim=True).values.detach()
    product = (a - a_max).exp() @ (b - b_max).exp().T
    underflow = product < torch.finfo(product.dtype).tiny
    if not bool(underflow.any()):
        return torch.log(product) + a_max + b_max.T
    log_q = torch.log(torch.where(underflow, torch.ones_like(product), product)) + a_max + b_max.T
    rows, cols = underflow.nonzero(as_tuple=True)
    chunk = max(1, 2 ** 22 // a.shape[1])
    exact = torch.cat([_log_sum_exp_pairs(a[rows[k:k + chunk]] + b[cols[k:k + chunk]])
                       for k in range(0, rows.numel(), chunk)])
    return log_q.index_put((rows, cols), exact)


def _log_sum_exp_pairs(s: Tensor) -> Tensor:
    """``logsumexp`` of each row, ``-inf`` (with a zero gradient) for rows that are all ``-inf``."""
    finite = torch.isfinite(s.max(dim=1).values)
    safe = torch.where(finite[:, None], s, torch.zeros_like(s))
    return torch.where(finite, torch.logsumexp(safe, dim=1), torch.full_like(finite, -math.inf, dtype=s.dtype))


def _subtract_log_size(log_w: Tensor) -> Tensor:
    """``log_w - log(sum_k exp(log_w_kc))`` per column, leaving columns of zero mass at ``-inf``."""
    log_size = torch.logsumexp(log_w, dim=0, keepdim=True)
    return log_w - torch.where(torch.isfinite(log_size), log_size, torch.zeros_like(log_size))


def _check_log_assignments(who: str, name: str, log_phi: Tensor) -> None:
    if not isinstance(log_phi, Tensor) or log_phi.dim() != 2 or not log_phi.is_floating_point():
        raise fail(who, name, "be a 2-D floating tensor of log soft assignments (n, C)", log_phi)
    if log_phi.shape[0] == 0:
        raise fail(who, name, "be a non-empty batch", log_phi)
    if torch.isnan(log_phi).any() or (log_phi == float("inf")).any():
        raise fail(who, name, "contain no NaN or +inf", log_phi)
    deviation = float(torch.logsumexp(log_phi.detach(), dim=1).abs().max())
    if deviation > _tolerance(log_phi.dtype):
        raise IConError(f"{who}: {name} must hold log soft assignments whose rows log-sum-exp to 0 "
                        f"(apply log_softmax to the cluster logits); got a row off by {deviation:.3g}.")


class Cluster(Neighborhood):
    """``q(j|i) = sum_c phi_ic phi_jc / sum_k phi_kc``: draw j uniformly from i's soft cluster.

    The "uniform on clusters" row of the periodic table (Def. 2; k-Means Thm 13, InfoNCE
    clustering). The sums over j and k run over all candidates **including** ``j = i``, so rows
    sum to 1 for free; the cluster sizes ``n_c = sum_k phi_kc`` are taken over the candidates
    (the batch). With ``include_self=False`` the diagonal is removed and rows renormalised.

    Args:
        include_self: keep ``j = i`` when ``y`` is None (Def. 2 does).
    """

    def __init__(self, include_self: bool = True) -> None:
        super().__init__()
        self.include_self = bool(include_self)

    def _log_weights(self, log_phi_y: Tensor) -> Tensor:
        """``log(phi_jc / n_c)`` for the candidates; an empty cluster (n_c = 0) stays at ``-inf``."""
        return _subtract_log_size(log_phi_y)

    def forward(self, x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        who = type(self).__name__
        _check_log_assignments(who, "x", x)
        if y is not None:
            _check_log_assignments(who, "y", y)
            if y.shape[1] != x.shape[1]:
                raise fail(who, "y", f"have the {x.shape[1]} clusters of x", y)
        check_candidates(who, x, y)
        log_q = _log_matmul_exp(x, self._log_weights(x if y is None else y))
        if y is None and not self.include_self:
            return log_normalize(mask_diagonal(log_q))
        return log_normalize(log_q)  # rows already sum to 1; this removes rounding only

    def extra_repr(self) -> str:
        return f"include_self={self.include_self}"


class DegreeWeightedCluster(Cluster):
    """``q(j|i) = sum_c phi_ic phi_jc d_j / sum_k phi_kc d_k``: the cluster kernel weighted by degree.

    Thm 14 (Normalized Cuts): a node is drawn from i's cluster in proportion to its degree
    ``d_j``. The degrees belong to a fixed graph of N nodes, so the candidates must be those N
    nodes in order (the whole graph, as in spectral methods).

    Args:
        degree: (N,) positive node degrees.
        include_self: keep ``j = i`` when ``y`` is None.
    """

    def __init__(self, degree: Tensor, include_self: bool = True) -> None:
        super().__init__(include_self=include_self)
        if not isinstance(degree, Tensor) or degree.dim() != 1 or not degree.is_floating_point():
            raise fail("DegreeWeightedCluster", "degree", "be a 1-D floating tensor", degree)
        if not bool((degree > 0).all()) or not bool(degree.isfinite().all()):
            raise fail("DegreeWeightedCluster", "degree", "be positive and finite", degree)
        self.register_buffer("degree", degree)

    def _log_weights(self, log_phi_y: Tensor) -> Tensor:
        if log_phi_y.shape[0] != self.degree.shape[0]:
            raise fail("DegreeWeightedCluster", "candidates", f"be the {self.degree.shape[0]} nodes "
                       "whose degrees were given", log_phi_y)
        return _subtract_log_size(log_phi_y + self.degree.to(log_phi_y.dtype).log()[:, None])

    def extra_repr(self) -> str:
        return f"degree=<{tuple(self.degree.shape)}>, include_self={self.include_self}"


class Logits(Neighborhood):
    """``p(k|i) = exp(x_ik / temperature) / sum_l exp(x_il / temperature)``: each row of scores.

    The candidates are the columns of ``x`` (prototypes, clusters, classes): a head's output is
    the distribution itself. DINO's teacher and student (with their two temperatures) and any
    classifier whose logits are given directly. ``y`` must be None.

    Args:
        temperature: divides the scores before the softmax; a one-element tensor (an
            ``nn.Parameter``) is kept and learned.
    """

    include_self = True  # the candidates are columns, never the anchor itself
    y_defaults_to_x = False

    def __init__(self, temperature: Number = 1.0) -> None:
        super().__init__()
        self.temperature = check_positive_parameter("Logits", "temperature", temperature)

    def forward(self, x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        check_features("Logits", "x", x)
        if y is not None:
            raise fail("Logits", "y", "be None (the columns of x are the candidates)", y)
        check_positive_parameter("Logits", "temperature", self.temperature)  # a learned one, as it is now
        return torch.log_softmax(x / self.temperature, dim=1)

    def extra_repr(self) -> str:
        return f"temperature={show_number(self.temperature)}"


class SinkhornCodes(Neighborhood):
    """SwAV's codes: ``exp(s / epsilon)`` scaled by Sinkhorn-Knopp to equal prototype mass, no gradient.

    ``x`` holds the (n, K) scores ``z_i . c_k`` of a batch against the K prototypes. The matrix
    ``exp(s / epsilon)`` is normalised to total mass 1, then ``n_iter`` times its prototype
    columns are set to mass 1/K and its sample rows to 1/n; each row, times n, is ``p(k|i)``
    (Caron et al. 2020; computed in log space, without gradient, as SwAV's codes are).

    Args:
        epsilon: the entropic regularisation (SwAV: 0.05).
        n_iter: Sinkhorn iterations (SwAV: 3).
    """

    include_self = True
    y_defaults_to_x = False  # the candidates are the prototypes (columns of x)

    def __init__(self, epsilon: float = 0.05, n_iter: int = 3) -> None:
        super().__init__()
        self.epsilon = check_positive("SinkhornCodes", "epsilon", epsilon)
        self.n_iter = check_int("SinkhornCodes", "n_iter", n_iter, 1)

    def forward(self, x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        check_features("SinkhornCodes", "x", x)
        if y is not None:
            raise fail("SinkhornCodes", "y", "be None (the columns of x are the prototypes)", y)
        with torch.no_grad():
            n, k = x.shape
            log_q = x.detach() / self.epsilon
            log_q = log_q - torch.logsumexp(log_q.reshape(-1), dim=0)
            for _ in range(self.n_iter):
                log_q = log_q - torch.logsumexp(log_q, dim=0, keepdim=True) - math.log(k)
                log_q = log_q - torch.logsumexp(log_q, dim=1, keepdim=True) - math.log(n)
            return log_q + math.log(n)

    def extra_repr(self) -> str:
        return f"epsilon={self.epsilon}, n_iter={self.n_iter}"
