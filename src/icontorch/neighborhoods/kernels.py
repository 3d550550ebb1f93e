"""Kernel profiles: the log-weight of a kernel as a function of the squared distance, written once.

A translation-invariant kernel on the squared distance ``d = ||x_i - y_j||^2`` has the log-weight
``log w = phi(d)``:

* ``"gaussian"``: ``phi(d) = -scale * d``, ``scale = 1 / (2 sigma^2)`` or ``1 / temperature``
  (on a similarity s it is ``scale * s``, with ``s = -d`` for the squared euclidean metric);
* ``"student_t"``: ``phi(d) = -(dof + 1) / 2 * log(1 + d / dof)``.

:class:`~icontorch.Gaussian` and :class:`~icontorch.StudentT` compute their logits with it, the
fused engine (:mod:`icontorch.engine.tiled`) its tiles and their gradients, and a neighbour
embedding's repulsion (:mod:`icontorch.embedding.repulsion`) takes it from
``kernel.fused_form().profile``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Union

import torch
from torch import Tensor

__all__ = ["KernelProfile", "number"]


def number(value: Union[float, Tensor]) -> float:
    """A float, or a one-element tensor (a learned parameter) read without its gradient."""
    return value.detach().item() if isinstance(value, Tensor) else float(value)


@dataclass(frozen=True)
class KernelProfile:
    """``log w = phi(d)`` of the squared distance d and its derivative ``phi'(d)`` (module docstring).

    Args:
        kind: ``"gaussian"`` or ``"student_t"``.
        param: the Gaussian's ``scale`` (a float, or a one-element tensor when it is learned)
            or the Student-t's ``dof``.
    """

    kind: str
    param: Union[float, Tensor]

    def log_w(self, d: Tensor, inplace: bool = False) -> Tensor:
        """``phi(d)``; ``inplace=True`` overwrites d (the engine's tiles)."""
        p = self.param
        if self.kind == "gaussian":
            return d.mul_(-p) if inplace else -p * d
        if inplace:
            return d.div_(p).log1p_().mul_(-0.5 * (p + 1.0))
        return -0.5 * (p + 1.0) * torch.log1p(d / p)

    def dlog_w(self, d: Optional[Tensor], inplace: bool = False) -> Union[Tensor, float]:
        """``phi'(d)``: the gradient of ``log w(x_i - y_j)`` in ``x_i`` is ``2 phi'(d) (x_i - y_j)``.

        The Gaussian's is the constant ``-scale``: with ``d=None`` it is returned as it is.
        """
        p = self.param
        if self.kind == "gaussian":
            if d is None:
                return -p
            return d.fill_(-p) if inplace else torch.full_like(d, -number(p))
        if inplace:
            return d.add_(p).reciprocal_().mul_(-0.5 * (p + 1.0))
        return -0.5 * (p + 1.0) / (p + d)

    def w(self, d: Tensor) -> Tensor:
        """``w = exp(phi(d))``, the kernel itself."""
        return self.log_w(d).exp()

    def block_w(self, d: Tensor) -> Tensor:
        """``w = exp(phi(d))`` for a large block of distances outside autograd, overwriting ``d``; the
        Cauchy kernel (Student-t, dof = 1) is ``1 / (1 + d)`` in place, without a log and an exp."""
        if self.kind == "student_t" and self.param == 1.0:
            return d.add_(1.0).reciprocal_()
        return self.log_w(d, inplace=True).exp_()

    def detach(self) -> "KernelProfile":
        """The same profile with its parameter as a Python float (a learned one read as it is now)."""
        return KernelProfile(self.kind, number(self.param))

    def half_width(self) -> float:
        """The distance r at which ``w(r) = w(0) / 2``: the length scale of the kernel."""
        p = number(self.param)
        if self.kind == "student_t":
            return math.sqrt(p * (2.0 ** (2.0 / (p + 1.0)) - 1.0))
        return math.sqrt(math.log(2.0) / p)
