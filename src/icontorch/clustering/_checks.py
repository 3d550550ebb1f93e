"""Parameter checks of the clustering package that accept numpy scalars as well as Python numbers.

Each returns the value as a plain Python ``int`` / ``float`` / ``tuple`` (so that numpy scalars
never reach torch) or raises :class:`~icontorch.IConError` naming the parameter, the rule and the
value received.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Tuple

import numpy as np

from .._validation import fail

__all__ = ["is_integer", "check_count", "check_real", "check_unit", "check_flag", "check_layer_sizes"]


def is_integer(value: Any) -> bool:
    """A Python or numpy integer, not a boolean."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def check_count(who: str, name: str, value: Any, minimum: int) -> int:
    """An integer (Python or numpy) >= ``minimum``, as a Python int."""
    if not is_integer(value) or value < minimum:
        raise fail(who, name, f"be an integer >= {minimum}", value)
    return int(value)


def check_real(who: str, name: str, value: Any, rule: str, low: float, low_open: bool) -> float:
    """A finite real number (Python or numpy) above ``low`` (``> low`` when ``low_open``, else ``>=``)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise fail(who, name, rule, value)
    number = float(value)
    if not math.isfinite(number) or number < low or (low_open and number == low):
        raise fail(who, name, rule, value)
    return number


def check_unit(who: str, name: str, value: Any) -> float:
    """A number in [0, 1], as a Python float."""
    number = check_real(who, name, value, "be a number in [0, 1]", 0.0, low_open=False)
    if number > 1.0:
        raise fail(who, name, "be a number in [0, 1]", value)
    return number


def check_flag(who: str, name: str, value: Any) -> bool:
    """True or False (numpy booleans included)."""
    if not isinstance(value, (bool, np.bool_)):
        raise fail(who, name, "be True or False", value)
    return bool(value)


def check_layer_sizes(who: str, name: str, value: Any) -> Tuple[int, ...]:
    """A tuple (or list) of integers >= 1: the widths of the hidden layers; ``()`` is a linear map."""
    if not isinstance(value, (tuple, list)) or not all(is_integer(v) and v >= 1 for v in value):
        raise fail(who, name, "be a tuple of integers >= 1 (the hidden layers' widths; () for a linear map)",
                   value)
    return tuple(int(v) for v in value)
