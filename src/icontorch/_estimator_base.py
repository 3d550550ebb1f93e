"""scikit-learn's estimator protocol without scikit-learn: parameters, repr, threads, array I/O."""

from __future__ import annotations

import inspect
import os
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from ._validation import IConError, fail, is_integer

__all__ = ["Estimator", "Threads", "check_n_jobs", "as_tensor", "like_input", "pca_init"]

ArrayLike = Union[np.ndarray, Tensor, Sequence]


class Estimator:
    """get_params / set_params / repr from the ``__init__`` signature (scikit-learn's protocol)."""

    @classmethod
    def _param_names(cls) -> Tuple[str, ...]:
        signature = inspect.signature(cls.__init__)
        return tuple(p for p in signature.parameters if p != "self")

    def get_params(self, deep: bool = True) -> Dict[str, Any]:
        """The constructor arguments, as stored (``deep`` is accepted for scikit-learn)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> "Estimator":
        """Set constructor arguments by name; unknown names raise :class:`IConError`."""
        valid = self._param_names()
        for name, value in params.items():
            if name not in valid:
                raise fail(type(self).__name__, "set_params keys", f"be among {valid}", name)
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        defaults = inspect.signature(type(self).__init__).parameters
        shown = []
        for name in self._param_names():
            value, default = getattr(self, name), defaults[name].default
            same = value is default
            if not same and not isinstance(value, (Tensor, np.ndarray, torch.nn.Module)):
                try:
                    same = bool(value == default)
                except (TypeError, ValueError):
                    same = False
            if not same:
                text = f"<{type(value).__name__}>" if isinstance(value, (Tensor, np.ndarray)) else repr(value)
                shown.append(f"{name}={text}")
        return f"{type(self).__name__}({', '.join(shown)})"


def as_tensor(x: Any, who: str, name: str, device: torch.device) -> Tensor:
    """``X`` as a finite (n_samples, n_features) tensor on ``device``: float64 tensors stay float64,
    everything else becomes float32; a bad ``X`` raises :class:`IConError` naming ``name``."""
    if isinstance(x, Tensor):
        t = x.detach()
    else:
        try:
            t = torch.as_tensor(np.asarray(x, dtype=np.float32))
        except (TypeError, ValueError):
            raise fail(who, name, "be a numeric (n_samples, n_features) array", type(x).__name__) from None
    if t.dim() != 2 or t.shape[0] == 0 or t.shape[1] == 0:
        raise fail(who, name, "be a non-empty 2-D array (n_samples, n_features)", t)
    if t.is_complex() or t.dtype == torch.bool:
        raise fail(who, name, "hold real numbers", t)
    # tensors keep a float64 dtype (tensors in, tensors out); everything else runs in float32
    dtype = torch.float64 if t.dtype == torch.float64 else torch.float32
    t = t.to(device=device, dtype=dtype)
    if not bool(torch.isfinite(t).all()):
        bad = "NaN" if bool(torch.isnan(t).any()) else "Inf"
        raise IConError(f"{who}: {name} must be finite; got an array of shape {tuple(t.shape)} "
                        f"containing {bad}.")
    return t


def like_input(y: Tensor, x: Any) -> Union[np.ndarray, Tensor]:
    """A tensor on ``x``'s device when ``x`` was a tensor, else a numpy array (scikit-learn)."""
    if isinstance(x, Tensor):
        return y.to(x.device)
    return y.detach().cpu().numpy()


def pca_init(x: Tensor, n_components: int) -> Tensor:
    """The first principal components, scaled so that the first has standard deviation 1e-4."""
    centred = x - x.mean(0)
    _, _, v = torch.linalg.svd(centred.double(), full_matrices=False)
    y = centred.double() @ v[:n_components].T
    if y.shape[1] < n_components:                 # fewer features than components
        y = torch.cat([y, y.new_zeros(y.shape[0], n_components - y.shape[1])], 1)
    return (y / y[:, 0].std().clamp_min(1e-12) * 1e-4).to(x.dtype)


def check_n_jobs(who: str, n_jobs: Any) -> Optional[int]:
    """``n_jobs``: None (torch's setting), -1 (all cores) or an integer >= 1, as a Python int."""
    if n_jobs is None:
        return None
    if not is_integer(n_jobs) or not (n_jobs >= 1 or n_jobs == -1):
        raise fail(who, "n_jobs", "be None, -1 or an integer >= 1", n_jobs)
    return int(n_jobs)


class Threads:
    """Set torch's CPU threads for a block and restore them (``n_jobs`` of the estimators)."""

    def __init__(self, n_jobs: Optional[int]) -> None:
        self.n_jobs, self.previous = n_jobs, torch.get_num_threads()

    def __enter__(self) -> None:
        if self.n_jobs is not None:
            torch.set_num_threads((os.cpu_count() or 1) if self.n_jobs == -1 else self.n_jobs)

    def __exit__(self, *exc: Any) -> None:
        torch.set_num_threads(self.previous)
