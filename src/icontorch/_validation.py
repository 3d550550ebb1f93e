"""``IConError`` and every check shared by the package, written once.

Every message names who complained, the rule that was broken and the value received, in the
shape ``"<who>: <parameter> must <rule>; got <value>."``. Numbers may be Python or numpy scalars
(``np.int64(5)``, ``np.float32(0.5)``); booleans are never numbers here. The checks of numbers
return plain Python ``int`` / ``float``, except :func:`check_positive_parameter` and
:func:`check_real_parameter`, which keep a tensor (a learnable ``nn.Parameter``) as it is.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np
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


def preview(indices: Sequence[int], limit: int = 10) -> str:
    """``"1, 2, 3"``, or the first ``limit`` indices followed by ``", ..."``."""
    shown = ", ".join(map(str, list(indices)[:limit]))
    return shown + (", ..." if len(indices) > limit else "")


def is_real(value: Any) -> bool:
    """A Python or numpy real number, not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def is_integer(value: Any) -> bool:
    """A Python or numpy integer, not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_real(who: str, name: str, value: Any) -> float:
    """A finite real number."""
    if not is_real(value) or not math.isfinite(value):
        raise fail(who, name, "be a finite number", value)
    return float(value)


def check_nonnegative(who: str, name: str, value: Any) -> float:
    """A finite real number >= 0."""
    if not is_real(value) or not math.isfinite(value) or value < 0:
        raise fail(who, name, "be a finite number >= 0", value)
    return float(value)


def check_positive(who: str, name: str, value: Any) -> float:
    """A finite real number > 0."""
    if not is_real(value):
        raise fail(who, name, "be a positive real number", value)
    if not math.isfinite(value) or value <= 0:
        raise fail(who, name, "be a positive finite number", value)
    return float(value)


def check_probability(who: str, name: str, value: Any) -> float:
    """A real number in [0, 1]."""
    if not is_real(value):
        raise fail(who, name, "be a number in [0, 1]", value)
    if not (0.0 <= value <= 1.0):
        raise fail(who, name, "lie in [0, 1]", value)
    return float(value)


def check_int(who: str, name: str, value: Any, minimum: int, maximum: Optional[int] = None) -> int:
    """An integer >= ``minimum`` (and <= ``maximum`` when given)."""
    if maximum is None and (not is_integer(value) or value < minimum):
        raise fail(who, name, f"be an integer >= {minimum}", value)
    if maximum is not None and (not is_integer(value) or not minimum <= value <= maximum):
        raise fail(who, name, f"be an integer between {minimum} and {maximum}", value)
    return int(value)


MAX_RANDOM_STATE = 2 ** 32 - 1  # what numpy and scikit-learn accept as a seed


def check_random_state(who: str, value: Any) -> int:
    """A seed: an integer in [0, 2**32 - 1], the range numpy and scikit-learn accept."""
    return check_int(who, "random_state", value, 0, MAX_RANDOM_STATE)


def check_flag(who: str, name: str, value: Any) -> bool:
    """True or False (a numpy boolean too), as a Python bool."""
    if not isinstance(value, (bool, np.bool_)):
        raise fail(who, name, "be True or False", value)
    return bool(value)


def check_layer_sizes(who: str, name: str, value: Any) -> Tuple[int, ...]:
    """The widths of hidden layers: a sequence (or 1-D array) of integers >= 1; ``()`` is a linear map."""
    ok = (isinstance(value, Sequence) and not isinstance(value, (str, bytes))
          or isinstance(value, np.ndarray) and value.ndim == 1)
    if not ok or not all(is_integer(width) and width >= 1 for width in value):
        raise fail(who, name, "be a tuple of integers >= 1 (() for a linear map)", value)
    return tuple(int(width) for width in value)


def check_choice(who: str, name: str, value: Any, choices: tuple) -> Any:
    """One of ``choices`` (the message lists them); a value of another type (an array, say) is refused
    without comparing it elementwise."""
    if not any(isinstance(value, type(choice)) and value == choice for choice in choices):
        raise fail(who, name, f"be one of {choices}", value)
    return value


def _scalar_tensor(who: str, name: str, value: Tensor, rule: str) -> Tensor:
    if value.numel() != 1 or not value.is_floating_point():
        raise fail(who, name, f"{rule} (a number, or a one-element floating tensor)", value)
    return value


def check_positive_parameter(who: str, name: str, value: Any) -> Union[float, Tensor]:
    """A positive finite number as a float, or a one-element floating tensor (a learnable
    ``nn.Parameter``) kept as it is, positive and finite now (its later values are the
    optimiser's)."""
    if not isinstance(value, Tensor):
        return check_positive(who, name, value)
    number = float(_scalar_tensor(who, name, value, "be positive and finite").detach())
    if not (math.isfinite(number) and number > 0):
        raise fail(who, name, "be positive and finite", number)
    return value


def check_real_parameter(who: str, name: str, value: Any) -> Union[float, Tensor]:
    """A finite number as a float, or a one-element floating tensor kept as it is."""
    if not isinstance(value, Tensor):
        return check_real(who, name, value)
    number = float(_scalar_tensor(who, name, value, "be finite").detach())
    if not math.isfinite(number):
        raise fail(who, name, "be finite", number)
    return value


def _check_ndim(who: str, name: str, x: Tensor, ndim: tuple) -> None:
    if x.dim() not in ndim:
        raise fail(who, name, f"have {' or '.join(map(str, ndim))} dimensions", x)


def check_features(who: str, name: str, x: Any, ndim: tuple = (2,)) -> Tensor:
    """A non-empty floating-point tensor with finite values and an allowed number of dims."""
    if not isinstance(x, Tensor):
        raise fail(who, name, "be a torch.Tensor", type(x).__name__)
    _check_ndim(who, name, x, ndim)
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
    _check_ndim(who, name, x, ndim)
    if x.numel() == 0:
        raise fail(who, name, "be a non-empty batch", x)
    if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        raise fail(who, name, "be an integer tensor of ids", x)
    return x


def check_ids_below(who: str, name: str, x: Any, n: int, what: str = "node ids") -> Tensor:
    """A non-empty 1-D integer tensor with values in [0, n) (node ids, labels of n classes)."""
    check_index(who, name, x)
    if bool((x < 0).any()) or bool((x >= n).any()):
        raise fail(who, name, f"hold {what} in [0, {n})", f"{what} from {int(x.min())} to {int(x.max())}")
    return x


def check_images(who: str, name: str, x: Any) -> Tensor:
    """A non-empty (B, C, H, W) floating-point tensor (no finiteness pass: it would sync a GPU)."""
    if not isinstance(x, Tensor):
        raise fail(who, name, "be a torch.Tensor of shape (B, C, H, W)", type(x).__name__)
    if x.dim() != 4:
        raise fail(who, name, "have shape (B, C, H, W) (4 dimensions)", x)
    if x.numel() == 0:
        raise fail(who, name, "be a non-empty batch of shape (B, C, H, W)", x)
    if not x.is_floating_point():
        raise fail(who, name, "be a floating-point tensor (convert images with x.float() / 255)", x)
    return x


def check_device(who: str, name: str, value: Any) -> "torch.device":
    """``value`` as a ``torch.device`` that exists on this machine (CUDA / MPS available, index in range)."""
    try:
        device = torch.device(value)
    except (RuntimeError, TypeError):
        raise fail(who, name, "name a torch device such as 'cpu' or 'cuda'", value) from None
    if device.type not in ("cpu", "cuda", "mps"):     # 'meta' holds no values; others are untested
        raise fail(who, name, "be a cpu, cuda or mps device", value)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise fail(who, name, "be available (torch.cuda.is_available() is False)", value)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise fail(who, name, f"name one of the {torch.cuda.device_count()} CUDA devices", value)
    if device.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise fail(who, name, "be available (torch.backends.mps.is_available() is False)", value)
    return device


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
