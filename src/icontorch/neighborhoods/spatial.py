"""Spatial neighbourhoods: neighbours are defined by distances (paper section 3.1, Fig. 2b).

Every kernel here works on a similarity ``s(x_i, y_j)`` picked by ``metric``
(:data:`icontorch.distances.SIMILARITIES`):

* ``"squared_euclidean"``: ``s = -||x_i - y_j||^2``
* ``"cosine"``: ``s = x_i . y_j / (||x_i|| ||y_j||)``
* ``"dot"``: ``s = x_i . y_j``

On unit vectors ``-||a - b||^2 = 2 cos(a, b) - 2``, so the cosine and squared-euclidean Gaussians
differ only by a per-row constant and a factor 2 in the width. The Gaussian and Student-t
log-weights are those of :class:`~icontorch.neighborhoods.kernels.KernelProfile`.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from .._validation import check_choice, check_int, check_nonnegative, check_positive, check_positive_parameter, fail
from ..distances import SIMILARITIES, exponent_of, squared_euclidean, times_power_of_two
from ..knn import most_similar
from .base import (
    FusedKernel,
    FusedTargets,
    KernelNeighborhood,
    Number,
    Support,
    log_normalize,
    mask_diagonal,
    show_number,
)
from .kernels import KernelProfile, number

__all__ = ["Gaussian", "PerplexityGaussian", "StudentT", "KNN", "PowerExponential", "Harmonic",
           "perplexity_precision"]


def _similarity(metric: str, x: Tensor, y: Optional[Tensor]) -> Tensor:
    return SIMILARITIES[metric](x, x if y is None else y)


def _n_candidates(x: Tensor, y: Optional[Tensor], include_self: bool) -> int:
    if y is None:
        return x.shape[0] if include_self else x.shape[0] - 1
    return y.shape[-2] if y.dim() == 3 else y.shape[0]


class Gaussian(KernelNeighborhood):
    """``p(j|i) = exp(s_ij / (2 sigma^2)) / sum_k exp(s_ik / (2 sigma^2))``, or ``s_ij / temperature``.

    The Gaussian (softmax) kernel of Thm 1 (SNE, with ``s = -||x_i - x_j||^2``) and Thm 3
    (InfoNCE / SimCLR, with ``metric="cosine"`` and a temperature). Give exactly one of ``sigma``
    and ``temperature``; ``temperature = 2 sigma^2``. Either may be a one-element tensor, e.g. an
    ``nn.Parameter``: it is kept (a registered parameter of this module) and learned, on the
    composed and on the fused path alike.

    Args:
        sigma: kernel width; the log-weight is ``s / (2 sigma^2)``.
        temperature: the log-weight is ``s / temperature``.
        metric: ``"squared_euclidean"``, ``"cosine"`` or ``"dot"`` (module docstring).
        include_self: keep ``j = i`` as a candidate when ``y`` is None (PCA and k-Means need it).
    """

    def __init__(self, sigma: Optional[Number] = None, temperature: Optional[Number] = None,
                 metric: str = "squared_euclidean", include_self: bool = False) -> None:
        super().__init__()
        if (sigma is None) == (temperature is None):
            raise fail("Gaussian", "sigma, temperature", "be given one at a time (exactly one)",
                       (sigma, temperature))
        self.sigma = None if sigma is None else check_positive_parameter("Gaussian", "sigma", sigma)
        self.temperature = (None if temperature is None
                            else check_positive_parameter("Gaussian", "temperature", temperature))
        self.metric = check_choice("Gaussian", "metric", metric, tuple(SIMILARITIES))
        self.include_self = bool(include_self)

    @property
    def scale(self) -> Number:
        """The factor ``1 / (2 sigma^2)`` or ``1 / temperature`` applied to the similarity."""
        return 1.0 / (2.0 * self.sigma ** 2) if self.sigma is not None else 1.0 / self.temperature

    def logits(self, x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        return _similarity(self.metric, x, y) * self.scale

    def _check_parameters(self, dtype: torch.dtype) -> None:
        name, value = ("sigma", self.sigma) if self.sigma is not None else ("temperature", self.temperature)
        check_positive_parameter("Gaussian", name, value)  # a learned one, as it is now
        scale = abs(number(self.scale))
        if not scale < torch.finfo(dtype).max:
            raise fail("Gaussian", name, f"give a scale 1 / (2 sigma^2) or 1 / temperature representable in "
                       f"{dtype} (it is {scale:.3g})", number(value))

    def _magnitude_factor(self) -> Optional[float]:
        return None if self.metric == "cosine" else max(1.0, abs(number(self.scale)))

    def fused_form(self) -> Optional[FusedKernel]:
        if not self._keeps(Gaussian, "logits", "forward", "_check"):
            return None
        return FusedKernel(KernelProfile("gaussian", self.scale), self.metric, self.include_self, self._check)

    def extra_repr(self) -> str:
        width = (f"sigma={show_number(self.sigma)}" if self.sigma is not None
                 else f"temperature={show_number(self.temperature)}")
        return f"{width}, metric={self.metric!r}, include_self={self.include_self}"


def perplexity_precision(sq_dist: Tensor, perplexity: float, tol: float = 1e-10,
                         max_iter: int = 200) -> Tensor:
    """Per-row precision ``beta_i`` with ``H(softmax(-beta_i d_i)) = log(perplexity)`` (nats).

    A vectorised safeguarded Newton search on all rows at once (the search of SNE, Hinton & Roweis
    2002, with Newton steps): on ``u = log beta`` the entropy has slope ``dH/du = -beta^2 Var_p(d)``;
    a Newton step that leaves the bracket of u is replaced by a bisection step (or a doubling /
    halving of beta while no bracket is known), so each row converges like bisection at worst and
    in a few steps in practice. Entries of
    ``sq_dist`` equal to ``+inf`` are not candidates. Runs in float64 without gradient. A row
    whose k nearest candidates tie (duplicates), with k > perplexity, cannot reach the target:
    its beta stops once ``beta (d - d_min) > 800`` for every other candidate, whose weight is then
    0 in float64: the limit, uniform over the ties.

    Args:
        sq_dist: (n, m) squared distances.
        perplexity: the target ``exp(H)``; must be below the number of candidates per row.
        tol: stop when every row's entropy is within ``tol`` nats of the target.
        max_iter: search steps at most.

    Returns:
        (n,) float64 tensor of ``beta_i = 1 / (2 sigma_i^2)``.
    """
    who = "perplexity_precision"
    target = math.log(check_positive(who, "perplexity", perplexity))
    if not isinstance(sq_dist, Tensor) or sq_dist.dim() != 2 or not sq_dist.is_floating_point() \
            or bool(torch.isnan(sq_dist).any()) or bool((sq_dist < 0).any()):
        raise fail(who, "sq_dist", "be a 2-D floating tensor of squared distances >= 0 (+inf: not a candidate)",
                   sq_dist)
    with torch.no_grad():
        d = sq_dist.detach().to(torch.float64)
        n = d.shape[0]
        log_beta = torch.zeros(n, dtype=torch.float64, device=d.device)
        lo = torch.full_like(log_beta, -math.inf)       # the bracket of log beta
        hi = torch.full_like(log_beta, math.inf)
        nearest = d.amin(1, keepdim=True)
        gap = torch.where(torch.isfinite(d) & (d > nearest), d - nearest, math.inf).amin(1)
        finite_d = torch.where(torch.isfinite(d), d, 0.0)
        for _ in range(max_iter):
            beta = log_beta.exp()
            log_p = torch.log_softmax(-beta[:, None] * d, dim=1)
            p = log_p.exp()
            entropy = -torch.where(p > 0, p * log_p, torch.zeros_like(p)).sum(1)
            diff = entropy - target
            if bool(((diff.abs() < tol) | (diff > 0) & (beta * gap > 800.0)).all()):
                break
            too_wide = diff > 0  # entropy too high: sharpen (raise beta)
            lo = torch.where(too_wide, log_beta, lo)
            hi = torch.where(too_wide, hi, log_beta)
            # Newton on u = log beta: dH/du = -beta^2 Var_p(d); a bisection step (or doubling /
            # halving of beta while unbracketed) wherever Newton leaves the bracket
            mean = (p * finite_d).sum(1, keepdim=True)
            slope = -beta.square() * (p * (finite_d - mean).square()).sum(1)
            newton = log_beta - (diff / slope).clamp(-2.0, 2.0)      # at most a factor e^2 per step
            bisect = torch.where(torch.isinf(hi), log_beta + math.log(2.0),
                                 torch.where(torch.isinf(lo), log_beta - math.log(2.0), (lo + hi) / 2))
            inside = torch.isfinite(newton) & (newton > lo) & (newton < hi)
            # rows already at the target stay there (a step past a bracket end would undo them)
            log_beta = torch.where(diff.abs() < tol, log_beta, torch.where(inside, newton, bisect))
        return log_beta.exp()


def _scaled_sq_dist(x: Tensor, y: Optional[Tensor]) -> Tensor:
    """``||x_i - y_j||^2 / 4^e`` with ``2^e`` just above ``max |x|, |y|`` (exact), so that no magnitude
    overflows or underflows: for scale-free kernels (the perplexity calibration, Harmonic at
    sigma = 0). Identical rows give identical distances, so duplicates stay tied."""
    y_ = x if y is None else y
    e = exponent_of(x, y_)
    return squared_euclidean(times_power_of_two(x, -e), times_power_of_two(y_, -e))


class PerplexityGaussian(KernelNeighborhood):
    """``p(j|i) = exp(-beta_i ||x_i - y_j||^2) / sum_k exp(-beta_i ||x_i - y_k||^2)``, ``exp(H(p_i)) = perplexity``.

    SNE's input-space kernel (Thm 1; Hinton & Roweis 2002): a Gaussian whose width
    ``sigma_i = (2 beta_i)^(-1/2)`` is chosen per anchor so that the row's perplexity equals
    ``perplexity`` (entropy in nats, as scikit-learn and openTSNE). See :func:`perplexity_precision`.

    Args:
        perplexity: effective number of neighbours, below the number of candidates per anchor.
        include_self: keep ``j = i`` as a candidate when ``y`` is None.
    """

    def __init__(self, perplexity: float = 30.0, include_self: bool = False) -> None:
        super().__init__()
        self.perplexity = check_positive("PerplexityGaussian", "perplexity", perplexity)
        self.include_self = bool(include_self)

    def logits(self, x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        """``-beta_i (d_ij - min_k d_ik)``, computed in float64 on scaled points (any magnitude) and
        returned in x's dtype. Ties at the nearest distance can keep the entropy above its target and
        drive beta to ~1e60: the row shift keeps the nearest candidates at 0 (the others become
        ``-inf`` in float32, never ``inf * 0``), and the gradient, also float64, stays finite."""
        d = _scaled_sq_dist(x.to(torch.float64), None if y is None else y.to(torch.float64))
        masked = mask_diagonal(d.neg()).neg() if y is None and not self.include_self else d
        return self._shifted_logits(d, masked).to(x.dtype)

    def _shifted_logits(self, d: Tensor, candidates: Tensor) -> Tensor:
        """``-beta_i (d_ij - min_k d_ik)``, beta calibrated on ``candidates`` (d with +inf where j is not one)."""
        beta = perplexity_precision(candidates, self.perplexity)
        nearest = candidates.detach().amin(1, keepdim=True)
        return -beta[:, None] * (d - nearest).clamp_min(0.0)

    def log_p_from_sq_dist(self, sq_dist: Tensor) -> Tensor:
        """``log p(j|i)`` (n, m) over each anchor's m candidates, given their squared distances.

        The form the kNN affinity of t-SNE uses: the distances are computed once there, in float64
        from points scaled by one power of two (p does not depend on the scale), and the rows
        calibrated as in :meth:`logits`; ``+inf`` marks a non-candidate.
        """
        d = sq_dist.detach().to(torch.float64)
        return log_normalize(self._shifted_logits(d, d))

    def forward(self, x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        self._check(x, y)
        m = _n_candidates(x, y, self.include_self)
        if self.perplexity >= m:
            raise fail("PerplexityGaussian", "perplexity",
                       f"be smaller than the number of candidates per anchor ({m})", self.perplexity)
        return super().forward(x, y)

    def extra_repr(self) -> str:
        return f"perplexity={self.perplexity}, include_self={self.include_self}"


class StudentT(KernelNeighborhood):
    """``p(j|i) = (1 + ||x_i - y_j||^2 / dof)^(-(dof + 1) / 2) / sum_k (...)``.

    The Student-t kernel with ``dof`` degrees of freedom (Table 1; Cor 1 and 2). ``dof=1`` is the
    Cauchy kernel ``1 / (1 + d^2)`` of t-SNE and t-SimCNE; ``dof -> inf`` tends to a Gaussian.

    Args:
        dof: degrees of freedom, a true Student-t exponent (not a power on the distance).
        include_self: keep ``j = i`` as a candidate when ``y`` is None.
    """

    def __init__(self, dof: float = 1.0, include_self: bool = False) -> None:
        super().__init__()
        self.dof = check_positive("StudentT", "dof", dof)
        self.include_self = bool(include_self)

    def logits(self, x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        return KernelProfile("student_t", self.dof).log_w(squared_euclidean(x, x if y is None else y))

    def _magnitude_factor(self) -> Optional[float]:
        return max(1.0, 1.0 / self.dof)

    def fused_form(self) -> Optional[FusedKernel]:
        if not self._keeps(StudentT, "logits", "forward", "_check"):
            return None
        return FusedKernel(KernelProfile("student_t", self.dof), "squared_euclidean", self.include_self,
                           self._check)

    def extra_repr(self) -> str:
        return f"dof={self.dof}, include_self={self.include_self}"


class KNN(KernelNeighborhood):
    """``p(j|i) = 1[j in kNN(i)] / n_neighbors``: uniform over the nearest candidates.

    The "uniform over k-neighbours" column of the periodic table (Table 1, PMI row; LGSimCLR,
    DCD, t-SNE with uniform affinities). Nearest means most similar; ties are broken by
    ``torch.topk`` (:func:`icontorch.knn.most_similar`).

    Args:
        n_neighbors: number of neighbours k, below the number of candidates per anchor.
        metric: ``"squared_euclidean"``, ``"cosine"`` or ``"dot"``; nearest = most similar.
        include_self: let ``j = i`` be one of the neighbours when ``y`` is None.
    """

    def __init__(self, n_neighbors: int, metric: str = "squared_euclidean",
                 include_self: bool = False) -> None:
        super().__init__()
        self.n_neighbors = check_int("KNN", "n_neighbors", n_neighbors, 1)
        self.metric = check_choice("KNN", "metric", metric, tuple(SIMILARITIES))
        self.include_self = bool(include_self)

    def _check_count(self, available: int) -> None:
        if self.n_neighbors >= available:
            raise fail("KNN", "n_neighbors", f"be smaller than the number of candidates per anchor "
                       f"({available})", self.n_neighbors)

    def _lists(self, x: Tensor, y: Optional[Tensor], self_offset: Optional[int], chunk: int = 2048) -> Tensor:
        return most_similar(x, x if y is None else y, self.n_neighbors, self.metric, self_offset, chunk)[0]

    def logits(self, x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        nearest = self._lists(x, y, 0 if y is None and not self.include_self else None)
        out = torch.full((x.shape[0], _n_candidates(x, y, True)), float("-inf"), dtype=x.dtype,
                         device=x.device)
        return out.scatter(1, nearest, 0.0)

    def forward(self, x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        self._check(x, y)
        self._check_count(_n_candidates(x, y, self.include_self))
        return log_normalize(self.logits(x, y))

    def _support(self, x: Tensor, y: Optional[Tensor], self_offset: Optional[int], chunk: int) -> Support:
        self._check(x, y)
        m = (x if y is None else y).shape[0]
        self._check_count(m - (self_offset is not None))
        return Support(m, lists=self._lists(x, y, self_offset, chunk))

    def fused_form(self) -> Optional[FusedTargets]:
        if not self._keeps(KNN, "logits", "forward", "_check"):
            return None
        return FusedTargets(self._support, include_self=self.include_self)

    def extra_repr(self) -> str:
        return f"n_neighbors={self.n_neighbors}, metric={self.metric!r}, include_self={self.include_self}"


def _safe_sq_dist(x: Tensor, y: Optional[Tensor]) -> Tensor:
    # Powers and logs of d^2 have infinite slope at 0 (the masked diagonal): keep them finite.
    return squared_euclidean(x, x if y is None else y).clamp_min(torch.finfo(x.dtype).tiny)


class PowerExponential(KernelNeighborhood):
    """``q(j|i) = exp(-||x_i - y_j||^gamma / temperature) / sum_k exp(-||x_i - y_k||^gamma / temperature)``.

    The kernel family of Kernel-InfoNCE (Tan et al. 2024): ``gamma = 2`` is the Gaussian
    (on unit vectors, NT-Xent at temperature ``temperature / 2``), ``gamma = 1`` the Laplacian,
    ``gamma = 0.5`` the exponential kernel. The distance is Euclidean (not squared) to the power gamma.

    Args:
        gamma: power of the Euclidean distance, in (0, 2].
        temperature: the log-weight is ``-d^gamma / temperature``.
        include_self: keep ``j = i`` as a candidate when ``y`` is None.
    """

    def __init__(self, gamma: float = 1.0, temperature: Number = 0.5, include_self: bool = False) -> None:
        super().__init__()
        self.gamma = check_positive("PowerExponential", "gamma", gamma)
        if self.gamma > 2.0:
            raise fail("PowerExponential", "gamma", "lie in (0, 2] (a positive-definite kernel)", gamma)
        self.temperature = check_positive_parameter("PowerExponential", "temperature", temperature)
        self.include_self = bool(include_self)

    def logits(self, x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        return -_safe_sq_dist(x, y).pow(self.gamma / 2.0) / self.temperature

    def _check_parameters(self, dtype: torch.dtype) -> None:
        check_positive_parameter("PowerExponential", "temperature", self.temperature)

    def _magnitude_factor(self) -> Optional[float]:
        return max(1.0, 1.0 / number(self.temperature))

    def extra_repr(self) -> str:
        return (f"gamma={self.gamma}, temperature={show_number(self.temperature)}, "
                f"include_self={self.include_self}")


class Harmonic(KernelNeighborhood):
    """``q(j|i) ∝ (||x_i - y_j||^2 + (n - 1) sigma^2)^(-n/2)``, ``n = exponent``.

    Thm 10 (harmonic loss, Baek et al. 2025): a Student-t kernel with ``n - 1`` degrees of freedom
    and scale sigma, ``(1 + d^2 / ((n - 1) sigma^2))^(-n/2)``. At ``sigma = 0`` (the limit of the
    theorem) it is Baek et al.'s harmonic kernel ``d^(-n) / sum_k d_k^(-n)`` on the Euclidean
    distance d; the paper's ``n`` is ``exponent / 2``.

    Args:
        exponent: the power n on the (unsquared) distance; with ``sigma > 0`` it must exceed 1.
        sigma: the width, >= 0 (0 is the harmonic loss itself).
        include_self: keep ``j = i`` as a candidate when ``y`` is None.
    """

    def __init__(self, exponent: float = 2.0, sigma: float = 0.0, include_self: bool = False) -> None:
        super().__init__()
        self.exponent = check_positive("Harmonic", "exponent", exponent)
        sigma = check_nonnegative("Harmonic", "sigma", sigma)
        if sigma > 0 and self.exponent <= 1.0:
            raise fail("Harmonic", "exponent", "exceed 1 when sigma > 0 (n - 1 degrees of freedom)",
                       exponent)
        self.sigma = sigma
        self.include_self = bool(include_self)

    def logits(self, x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        if self.sigma == 0.0:  # d^(-n), scale-free: computed on scaled points at any magnitude
            d = _scaled_sq_dist(x, y)
            return -0.5 * self.exponent * torch.log(d.clamp_min(torch.finfo(d.dtype).tiny))
        offset = (self.exponent - 1.0) * self.sigma ** 2
        return -0.5 * self.exponent * torch.log(_safe_sq_dist(x, y) + offset)

    def _magnitude_factor(self) -> Optional[float]:
        return None if self.sigma == 0.0 else 1.0

    def extra_repr(self) -> str:
        return f"exponent={self.exponent}, sigma={self.sigma}, include_self={self.include_self}"
