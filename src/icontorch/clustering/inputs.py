"""What ``Clustering`` checks and derives from its input: views, labels, cosine rows, the
standardisation of the heads' inputs and the kept head's logits."""

from __future__ import annotations

import inspect
from typing import Any, Callable, Tuple

import numpy as np
import torch
from torch import Tensor

from .._estimator_base import as_tensor
from .._validation import IConError, fail
from .graph import power_of_two_scale

__all__ = ["check_views", "check_labels", "check_cosine_rows", "check_augment", "standardization", "head_logits",
           "head_labels", "is_auto", "auto_or"]

LABEL_BLOCK = 1 << 22
"""Logits (rows x clusters) computed at a time by :func:`head_labels`."""


def check_labels(who: str, y: Any, n: int, device: torch.device, method: str) -> Tensor:
    """``y`` as (n,) class ids 0..K-1 (labels of any sortable kind), for the methods that read labels."""
    if y is None:
        raise fail(who, "y", f"be given (one label per point) when method={method!r}", y)
    values = np.asarray(y.detach().cpu() if isinstance(y, Tensor) else y)
    if values.ndim != 1 or values.shape[0] != n:
        raise fail(who, "y", f"hold one label per point, shape ({n},)", f"shape {values.shape}")
    if values.dtype.kind in "fc" and not np.isfinite(values).all():
        raise fail(who, "y", "hold finite labels", "NaN or Inf")
    try:
        ids = np.unique(values, return_inverse=True)[1]
    except TypeError:                     # labels that do not sort: None, or numbers mixed with strings
        raise fail(who, "y", "hold labels that can be sorted (all numbers or all strings)",
                   sorted({type(v).__name__ for v in values.tolist()})) from None
    return torch.as_tensor(ids.ravel(), device=device)


def check_augment(who: str, augment: Any) -> None:
    """``augment`` is None or a callable that accepts ``(x, generator)``."""
    if augment is None:
        return
    rule = "be None or a callable augment(x, generator) -> x"
    if not callable(augment):
        raise fail(who, "augment", rule, augment)
    try:
        signature = inspect.signature(augment)
    except (TypeError, ValueError):       # no signature to read (some builtins): called as it is
        return
    try:
        signature.bind(None, None)
    except TypeError:
        raise fail(who, "augment", rule + " (it must accept two arguments)", augment) from None


def check_cosine_rows(who: str, x: Tensor, metric: str) -> None:
    """Under ``metric="cosine"`` an all-zero row has no direction, so its neighbours would be arbitrary."""
    if metric == "cosine":
        zero = x.abs().amax(1) == 0
        if bool(zero.any()):
            raise IConError(f"{who}: X must have no all-zero rows when metric='cosine' (their direction is "
                            f"undefined); got {int(zero.sum())} of {x.shape[0]}.")


def check_views(who: str, views: Any, x: Tensor) -> Tensor:
    """``views`` as a finite (n, V, d) tensor in the dtype and on the device of ``x``."""
    n, d = x.shape
    shape = tuple(views.shape) if hasattr(views, "shape") else np.shape(views)
    if len(shape) != 3 or shape[0] != n or shape[2] != d or shape[1] < 1:
        raise fail(who, "views", f"have shape (n, n_views, d) = ({n}, V, {d}) with V >= 1, like X", f"shape {shape}")
    flat = views.reshape(n * shape[1], d) if isinstance(views, Tensor) else np.reshape(np.asarray(views),
                                                                                      (n * shape[1], d))
    return as_tensor(flat, who, "views", x.device).to(x.dtype).reshape(n, shape[1], d)


def standardization(x: Tensor, standardize: bool) -> Tuple[Tensor, Tensor]:
    """(d,) ``mean`` and ``scale`` of the heads' inputs ``(x - mean) / scale``: the features' mean and
    standard deviation (1 where it is 0 or n = 1), or 0 and 1 without ``standardize``.

    Features of very large or small magnitude are scaled by a power of two first (exact), so that
    their sum and squares neither overflow nor vanish in float32."""
    if not standardize:
        return torch.zeros_like(x[0]), torch.ones_like(x[0])
    factor = power_of_two_scale(x)
    scaled = x if factor == 1.0 else x * factor
    mean = scaled.mean(0)
    scale = scaled.std(0) if x.shape[0] > 1 else torch.ones_like(x[0])
    if factor != 1.0:
        mean, scale = mean / factor, scale / factor
    return mean, torch.where(scale > 0, scale, torch.ones_like(scale))


def head_logits(who: str, head: torch.nn.Module, x: Tensor, mean: Tensor, scale: Tensor,
                temperature: float) -> Tensor:
    """(n, C) logits of the kept head on the standardised features, divided by the temperature."""
    logits = head((x - mean) / scale)[0] / temperature
    if not bool(torch.isfinite(logits).all()):
        peak = float(((x - mean) / scale).abs().max())
        raise fail(who, "X", f"lie where the heads can score it: its standardised values reach {peak:.3g} "
                   "and the cluster logits overflow", x)
    return logits


def head_labels(who: str, head: torch.nn.Module, x: Tensor, mean: Tensor, scale: Tensor,
                temperature: float) -> Tensor:
    """(n,) ``argmax_c`` of :func:`head_logits`, computed a block of rows at a time: memory
    O(``LABEL_BLOCK``), not O(n C) (4 GB for a million points and 1,000 clusters)."""
    rows = max(1, LABEL_BLOCK // max(1, head.n_clusters))
    return torch.cat([head_logits(who, head, x[start:start + rows], mean, scale, temperature).argmax(1)
                      for start in range(0, x.shape[0], rows)])


def is_auto(value: Any) -> bool:
    """Whether a parameter was given as ``"auto"``."""
    return isinstance(value, str) and value == "auto"


def auto_or(who: str, check: Callable[..., Any], name: str, value: Any, *bounds: Any) -> Any:
    """``"auto"``, or ``check(who, name, value, *bounds)``."""
    return "auto" if is_auto(value) else check(who, name, value, *bounds)
