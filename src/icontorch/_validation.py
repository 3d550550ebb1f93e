"""One exception type and the checks that produce its messages.

Every message names who complained, the rule that was broken and the value received, in the
shape ``"<who>: <parameter> must <rule>; got <value>."``.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch
from torch import Tensor

__all__ = ["IConError"]


class IConError(ValueError):
    """Raised for every invalid input to icontorch: a bad parameter, shape, dtype or value.

    It subclasses ``ValueError`` so that code catching scikit-learn style errors keeps working.
    """


def _describe(value: Any) -> str:
    if isinstance(value, Tensor):
        return f"tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    return repr(value)


def fail(who: str, name: str, rule: str, value: Any) -> IConError:
    """Build (not raise) the uniform error: ``who: name must rule; got value.``"""
    return IConError(f"{who}: {name} must {rule}; got {_describe(value)}.")


def check_positive(who: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise fail(who, name, "be a positive real number", value)
    if not math.isfinite(value) or value <= 0:
        raise fail(who, name, "be a positive finite number", value)
    return float(value)


def check_probability(who: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise fail(who, name, "be a number in [0, 1]", value)
    if not (0.0 <= value <= 1.0):
        raise fail(who, name, "lie in [0, 1]", value)
    return float(value)


def check_int(who: str, name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise fail(who, name, f"be an integer >= {minimum}", value)
    if value < minimum:
        raise fail(who, name, f"be an integer >= {minimum}", value)
    return value


def check_choice(who: str, name: str, value: Any, choices: tuple) -> Any:
    if value not in choices:
        raise fail(who, name, f"be one of {choices}", value)
    return value


def check_features(who: str, name: str, x: Any, ndim: tuple = (2,)) -> Tensor:
    """A non-empty floating-point tensor with finite values and an allowed number of dims."""
    if not isinstance(x, Tensor):
        raise fail(who, name, "be a torch.Tensor", type(x).__name__)
    if x.dim() not in ndim:
        raise fail(who, name, f"have {' or '.join(map(str, ndim))} dimensions", x)
    if x.numel() == 0 or x.shape[0] == 0:
        raise fail(who, name, "be a non-empty batch", x)
    if not x.is_floating_point():
        raise fail(who, name, "be a floating-point tensor (embeddings, features or log-probabilities)", x)
    if not torch.isfinite(x).all():
        bad = "NaN" if torch.isnan(x).any() else "Inf"
        raise IConError(f"{who}: {name} must be finite; got a tensor of shape {tuple(x.shape)} "
                        f"containing {bad}.")
    return x


def check_index(who: str, name: str, x: Any, ndim: tuple = (1,)) -> Tensor:
    """A non-empty integer tensor (labels, item indices, node ids)."""
    if not isinstance(x, Tensor):
        raise fail(who, name, "be a torch.Tensor of integer ids", type(x).__name__)
    if x.dim() not in ndim:
        raise fail(who, name, f"have {' or '.join(map(str, ndim))} dimensions", x)
    if x.numel() == 0:
        raise fail(who, name, "be a non-empty batch", x)
    if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        raise fail(who, name, "be an integer tensor of ids", x)
    return x


def check_candidates(who: str, x: Tensor, y: Optional[Tensor]) -> None:
    """Anchors (n, ...) and candidates (m, ...) or per-anchor candidates (n, m, ...) must agree."""
    if y is None:
        if x.shape[0] < 2:
            raise fail(who, "x", "hold at least 2 points when the anchors are their own candidates", x)
        return
    if y.dim() == x.dim() + 1 and y.shape[0] != x.shape[0]:
        raise fail(who, "y", f"have one candidate set per anchor (first dimension {x.shape[0]})", y)
    if x.dim() == 2 and y.shape[-1] != x.shape[-1]:
        raise fail(who, "y", f"have the feature dimension of x ({x.shape[-1]})", y)
