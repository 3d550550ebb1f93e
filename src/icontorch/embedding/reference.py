"""New points against a fixed map: the objective of the non-parametric ``transform``.

Used by :mod:`icontorch.embedding.base` (re-exported by :mod:`icontorch.embedding.optim`).
"""

from __future__ import annotations

import math
from typing import Tuple

import torch
from torch import Tensor

from ..neighborhoods.base import KernelNeighborhood
from .repulsion import GridInterpolator, exact_sums, kernel_profile

__all__ = ["ReferenceObjective"]


class ReferenceObjective:
    """New points against a fixed reference embedding: ``(1/m) sum_i KL(p(.|i) || q(.|i))``.

    Each new point i has ``p(j|i)`` over its nearest reference points and
    ``q(j|i) = w(y_i - r_j) / sum_k w(y_i - r_k)`` over all reference points, so every point is
    placed independently of the other new points (as openTSNE's ``transform``).

    Args:
        idx: (m, k) reference neighbours of each new point.
        log_p: (m, k) their ``log p(j|i)``.
        reference: (N, dim) the fitted embedding.
        kernel: the kernel of q.
    """

    def __init__(self, idx: Tensor, log_p: Tensor, reference: Tensor, kernel: KernelNeighborhood,
                 chunk: int = 512) -> None:
        self.idx, self.p, self.reference, self.kernel = idx, log_p.exp(), reference, kernel
        self.profile = kernel_profile(kernel)
        self.chunk = chunk
        m = idx.shape[0]
        self.neg_entropy = float((self.p * torch.where(self.p > 0, log_p, 0.0)).sum()) / m
        self.field = None
        if self.profile is not None and reference.shape[1] <= 2:
            # the reference is fixed: its kernel field is interpolated once, read at every step
            self.field = GridInterpolator(self.profile).field(
                reference, reference.new_ones(reference.shape[0], 1))

    def _log_sums(self, y: Tensor) -> Tuple[Tensor, Tensor]:
        """``log Z_i`` and ``grad log Z_i = sum_j softmax_j(phi(d_ij)) 2 phi'(d_ij) (y_i - r_j)``, all
        reference points, in log space (no underflow however far the points are)."""
        log_z, grad = [], []
        for start in range(0, y.shape[0], self.chunk):
            diff = y[start:start + self.chunk].unsqueeze(1) - self.reference.unsqueeze(0)   # (b, N, dim)
            d = diff.square().sum(-1)
            logits = self.profile.log_w(d)
            lse = torch.logsumexp(logits, 1)
            coef = 2.0 * (logits - lse.unsqueeze(1)).exp() * self.profile.dlog_w(d)
            log_z.append(lse)
            grad.append((coef.unsqueeze(2) * diff).sum(1))
        return torch.cat(log_z), torch.cat(grad)

    def _repulsion(self, y: Tensor) -> Tuple[Tensor, Tensor]:
        """``log Z_i``, ``Z_i = sum_j w(y_i - r_j)`` (m,), and its gradient ``grad log Z_i`` (m, dim).

        The kernel sums come from the interpolated field (1-D / 2-D) or from all pairs. Where ``Z_i``
        is below ``100 eps N`` (a light-tailed kernel such as SNE's Gaussian, far from every
        reference point: the sum underflows, or is smaller than the FFT's rounding noise, and
        ``grad Z / Z`` would throw the point anywhere), or the point lies outside the field's grid
        (whose forces are read at its border), it is recomputed exactly in log space.
        """
        if self.field is not None:
            s, g = self.field(y)
        else:
            s, g = exact_sums(y, self.reference.new_ones(self.reference.shape[0], 1), self.profile,
                              y_ref=self.reference, chunk=self.chunk)
        z = s[:, 0].clamp_min(1e-30)
        log_z, grad = z.log(), g[:, 0] / z.unsqueeze(1)
        tiny = 100.0 * torch.finfo(y.dtype).eps * self.reference.shape[0]
        unreliable = ~(s[:, 0] >= tiny)
        if self.field is not None:
            low, high = self.field.bounds
            unreliable |= ((y < low) | (y > high)).any(1)
        if bool(unreliable.any()):
            log_z[unreliable], grad[unreliable] = self._log_sums(y[unreliable])
        return log_z, grad

    def __call__(self, y: Tensor, exaggeration: float, with_value: bool = True) -> Tuple[float, Tensor]:
        """The mean KL of the new points (NaN unless ``with_value``) and the gradient of their
        summed (exaggerated) loss."""
        m = y.shape[0]
        neighbours = self.reference[self.idx]                                  # (m, k, dim)
        if self.profile is not None:
            diff = y.unsqueeze(1) - neighbours
            d = diff.square().sum(-1)
            grad = (-2.0 * exaggeration) * ((self.p * self.profile.dlog_w(d)).unsqueeze(2) * diff).sum(1)
            log_z, grad_log_z = self._repulsion(y)
            loss = math.nan
            if with_value:
                attraction = -(self.p * self.profile.log_w(d)).sum(1)
                loss = self.neg_entropy + float(attraction.mean() + log_z.mean())
            return loss, grad + grad_log_z
        yg = y.detach().requires_grad_(True)
        attraction = -(self.p * self.kernel.logits(yg, neighbours)).sum()
        repulsion = sum(torch.logsumexp(self.kernel.logits(yg[s:s + self.chunk], self.reference), 1).sum()
                        for s in range(0, m, self.chunk))
        (grad,) = torch.autograd.grad(exaggeration * attraction + repulsion, yg)
        if not with_value:
            return math.nan, grad
        return self.neg_entropy + float(attraction.detach() + repulsion.detach()) / m, grad
