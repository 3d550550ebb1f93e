"""A weighted sum of kernels inside one softmax (Kernel-InfoNCE's kernel mixtures, Tan et al. 2024).

:class:`~icontorch.neighborhoods.wrappers.DisjointUnion` puts several normalised neighbourhoods
side by side, so that one I-Con loss is a weighted *sum of losses*. :class:`KernelMixture` adds
the *unnormalised kernels* before the one normalisation, ``K = sum_k w_k K_k``: a different q,
which is the mixture of the normalised kernels with anchor-dependent weights
``w_k Z_k(i) / sum_l w_l Z_l(i)`` (``Z_k(i)`` the row sum of kernel k).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from .._validation import fail, is_real
from .base import KernelNeighborhood

__all__ = ["KernelMixture"]


class KernelMixture(KernelNeighborhood):
    """``q(j|i) = sum_k w_k exp(l^k_ij) / sum_m sum_k w_k exp(l^k_im)``: kernels summed inside one softmax.

    ``l^k`` are the log-weights (``logits``) of the kernel neighbourhoods ``kernels``; the sum is
    taken in log space, ``l_ij = logsumexp_k (log w_k + l^k_ij)``, so no kernel's ``exp`` under- or
    overflows. Kernel-InfoNCE's mixture (Tan et al. 2024, "Contrastive learning is spectral clustering
    on similarity graph") is ``KernelMixture([PowerExponential(gamma, t1), PowerExponential(2, t2)],
    [lam, 1 - lam])``: ``q ∝ lam exp(-d^gamma / t1) + (1 - lam) exp(-d^2 / t2)`` (at ``lam = 1/2``
    their unweighted "Simple Sum" kernel, a constant factor that the softmax cancels).

    The fused engine has no form for it (``fused_form()`` is None): ``tile_size`` set to an integer
    raises :class:`~icontorch.IConError` saying so; ``"auto"`` takes the composed path.

    Args:
        kernels: the kernel neighbourhoods (each with ``logits``; the same ``include_self``).
        weights: one positive weight per kernel, summing to 1.
    """

    def __init__(self, kernels: Sequence[KernelNeighborhood], weights: Sequence[float]) -> None:
        super().__init__()
        who = "KernelMixture"
        if isinstance(kernels, (str, bytes)) or not isinstance(kernels, Sequence) or len(kernels) < 1 \
                or not all(isinstance(k, KernelNeighborhood) for k in kernels):
            raise fail(who, "kernels", "be a non-empty sequence of kernel neighbourhoods (with logits)", kernels)
        if len({bool(k.include_self) for k in kernels}) != 1:
            raise fail(who, "kernels", "agree on include_self", [k.include_self for k in kernels])
        rule = f"be {len(kernels)} positive numbers summing to 1"
        if isinstance(weights, (str, bytes)) or not isinstance(weights, Sequence) \
                or not all(is_real(w) for w in weights):
            raise fail(who, "weights", rule, weights)
        weights = tuple(float(w) for w in weights)
        if len(weights) != len(kernels) or any(not (0.0 < w <= 1.0) for w in weights) \
                or abs(sum(weights) - 1.0) > 1e-9:
            raise fail(who, "weights", rule, weights)
        self.kernels = nn.ModuleList(kernels)
        self.weights = weights
        self.include_self = bool(kernels[0].include_self)

    def logits(self, x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        parts = [kernel.logits(x, y) + math.log(w) for kernel, w in zip(self.kernels, self.weights)]
        return torch.logsumexp(torch.stack(parts), dim=0)

    def _check(self, x: Tensor, y: Optional[Tensor]) -> None:
        for kernel in self.kernels:  # each kernel's own checks of the inputs and its parameters
            kernel._check(x, y)

    def extra_repr(self) -> str:
        return f"weights={self.weights}, include_self={self.include_self}"
