"""Argument types shared by the sub-commands (argparse ``type=`` functions)."""

from __future__ import annotations

import argparse
import os
from typing import Tuple, Union

__all__ = ["integer", "layer_sizes", "threads"]

_INT64_MAX = 2 ** 63 - 1          # torch's sizes and seeds are 64-bit


def integer(text: str) -> int:
    """An integer that fits in 64 bits; its range is checked by the estimator, which names the rule."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer; got {text!r}") from None
    if abs(value) > _INT64_MAX:
        raise argparse.ArgumentTypeError(f"expected an integer of magnitude at most 2**63 - 1; got {text!r}")
    return value


def integer_or_auto(text: str) -> Union[int, str]:
    """``"auto"`` or an :func:`integer`."""
    return "auto" if text == "auto" else integer(text)


def threads(text: str) -> int:
    """``--n-jobs``: an integer up to the number of CPU cores (more threads only oversubscribe the cores,
    and a huge count makes the OpenMP runtime abort the process); -1, 0 and below go to the estimator."""
    value = integer(text)
    cores = os.cpu_count() or 1
    if value > cores:
        raise argparse.ArgumentTypeError(f"expected -1 or at most the {cores} CPU cores; got {text!r}")
    return value


def layer_sizes(text: str) -> Tuple[int, ...]:
    """``"256,128"`` -> ``(256, 128)``; ``""`` -> ``()`` (a linear head)."""
    try:
        sizes = tuple(int(part) for part in text.split(",")) if text.strip() else ()
    except ValueError:
        sizes = None
    if sizes is None or any(abs(size) > _INT64_MAX for size in sizes):
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 256 or 256,128 "
                                         f"(empty for a linear head); got {text!r}")
    return sizes
