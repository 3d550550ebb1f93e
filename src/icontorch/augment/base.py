"""Shared random draws, the range check and the base class of :mod:`icontorch.augment`.

The image-batch check :func:`check_images` lives in :mod:`icontorch._validation` with the other
shared checks; it is exported here and by :mod:`icontorch.augment`.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .._validation import check_images, fail, is_real

__all__ = ["Augmentation", "check_images"]


def _check_call(who: str, x: Any, generator: Any) -> None:
    """The arguments of a transform's call: a (B, C, H, W) floating batch and a generator or None."""
    check_images(who, "x", x)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise fail(who, "generator", "be a torch.Generator or None", generator)


def _check_range(who: str, name: str, value: Any, low: float, high: float, low_open: bool = True
                 ) -> Tuple[float, float]:
    """A pair ``(a, b)`` with ``low < a <= b <= high`` (``low <= a`` when ``low_open`` is False)."""
    left = "(" if low_open else "["
    rule = f"be a pair (a, b) with a <= b inside {left}{low}, {high}]"
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise fail(who, name, rule, value)
    a, b = value
    if not (is_real(a) and is_real(b) and math.isfinite(a) and math.isfinite(b)):
        raise fail(who, name, rule, value)
    if a > b or b > high or a < low or (low_open and a == low):
        raise fail(who, name, rule, value)
    return float(a), float(b)


def _uniform(shape: Tuple[int, ...], low: float, high: float, generator: Optional[torch.Generator],
             x: Tensor) -> Tensor:
    """U(low, high) draws in x's dtype on x's device, from the generator's stream."""
    device = generator.device if generator is not None else x.device
    # float32 draws whatever x's dtype (same parameters for float32 and float64 inputs); the affine
    # map is applied in x's dtype, so low == high gives exactly low.
    u = torch.rand(shape, generator=generator, device=device, dtype=torch.float32)
    return low + (high - low) * u.to(device=x.device, dtype=x.dtype)


def _bernoulli(n: int, p: float, generator: Optional[torch.Generator], x: Tensor) -> Tensor:
    """(n,) boolean draws with P(True) = p (p = 0 never, p = 1 always)."""
    device = generator.device if generator is not None else x.device
    return (torch.rand(n, generator=generator, device=device) < p).to(x.device)


def _resample(x: Tensor, theta: Tensor, padding_mode: str) -> Tensor:
    """One batched bilinear resampling: output pixel at u reads input at ``theta @ [u, 1]``."""
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)


class Augmentation:
    """Base of the transforms: ``__call__(x, generator)`` maps (B, C, H, W) to (B, C, H, W).

    Subclasses store each constructor argument under its own name and list them in ``_params``
    (printed by ``repr``).
    """

    _params: Tuple[str, ...] = ()

    def __call__(self, x: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._params)
        return f"{type(self).__name__}({args})"
