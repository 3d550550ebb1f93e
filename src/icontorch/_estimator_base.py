"""scikit-learn's estimator protocol without scikit-learn: parameters, repr, transactional fits,
threads, array I/O.

Transactional fits (:meth:`Estimator._fit_transaction`): an estimator's *fit state* is every
instance attribute whose name ends in ``_`` (the learned attributes, scikit-learn's convention,
``n_features_in_`` included) or starts with a single ``_`` (private state a fit keeps for
``transform`` / ``predict``); every other attribute is a constructor parameter (or something the
user set) and no fit changes it. A fit runs on a *working copy*: a new instance of the same class
whose ``__dict__`` holds the estimator's attributes minus its fit state (values shared, not
copied). The fit writes its state on the copy only. When it returns, the estimator's fit state
is replaced by the copy's in one assignment of ``__dict__`` (the parameters kept), a single
bytecode, so even Ctrl-C cannot leave half of the new state adopted. When it raises (an
``IConError`` found late, a divergence, a ``KeyboardInterrupt`` from a callback), the copy is
dropped and the estimator is exactly as before: the previous fit intact, or still unfitted
(``sklearn.utils.validation.check_is_fitted`` says so). The fit may call the estimator's methods
on the copy (``predict`` inside ``fit``) but must not mutate, in place, objects it shares with the
estimator (its parameters, or the previous fit's state).
"""

from __future__ import annotations

import inspect
import os
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, TypeVar, Union

import numpy as np
import torch
from torch import Tensor

from ._validation import IConError, fail, is_integer

__all__ = ["Estimator", "Threads", "check_n_jobs", "as_tensor", "like_input", "pca_init", "is_fit_state"]

ArrayLike = Union[np.ndarray, Tensor, Sequence]
E = TypeVar("E", bound="Estimator")


def is_fit_state(name: str) -> bool:
    """An attribute a fit owns: learned (``name_``) or private (``_name``); not a dunder name."""
    return not name.startswith("__") and (name.endswith("_") or name.startswith("_"))


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

    def _fit_transaction(self: E, fit: Callable[[E], Any]) -> E:
        """Run ``fit(work)`` on a working copy of the estimator without its fit state, then adopt
        the copy's attributes in one assignment; if ``fit`` raises, the estimator is unchanged.

        The mechanism of the module docstring, shared by every estimator's ``fit``. Returns self.
        """
        work = object.__new__(type(self))
        work.__dict__.update({k: v for k, v in vars(self).items() if not is_fit_state(k)})
        fit(work)
        kept = {k: v for k, v in vars(self).items() if not is_fit_state(k)}
        self.__dict__ = {**kept, **{k: v for k, v in vars(work).items() if is_fit_state(k)}}
        return self

    def __sklearn_tags__(self) -> Any:
        """scikit-learn's tags (>= 1.6), so that its utilities (``check_is_fitted``, ``clone``) accept
        these estimators; scikit-learn is imported only when it asks."""
        from sklearn.utils import InputTags, Tags, TargetTags, TransformerTags

        return Tags(estimator_type=None, target_tags=TargetTags(required=False),
                    transformer_tags=TransformerTags() if hasattr(self, "transform") else None,
                    input_tags=InputTags(allow_nan=False))

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


def _bad(who: str, name: str, rule: str, got: str) -> IConError:
    return IConError(f"{who}: {name} must {rule}; got {got}.")


def _as_real_array(x: Any, who: str, name: str) -> np.ndarray:
    """``x`` as a real numpy array (bool, integer or float); anything else raises :class:`IConError`."""
    numeric = "be a numeric (n_samples, n_features) array"
    if x is None:
        raise _bad(who, name, numeric, "None")
    if hasattr(x, "toarray") and hasattr(x, "nnz"):
        raise _bad(who, name, "be a dense array (convert a sparse matrix with .toarray())", type(x).__name__)
    if isinstance(x, np.ma.MaskedArray) and np.ma.is_masked(x):
        raise _bad(who, name, "have no masked entries (they would be read as their hidden values)",
                   "a masked array")
    try:
        a = np.asarray(x)
    except (TypeError, ValueError):         # ragged nested sequences, unconvertible objects
        raise _bad(who, name, numeric + " (rows of one length)", f"a {type(x).__name__} that is not one") from None
    if a.dtype.kind == "O":                  # numbers held as Python objects (a pandas object column)
        if any(isinstance(v, (str, bytes, complex)) for v in a.flat):
            raise _bad(who, name, numeric, "an object array holding strings or complex numbers")
        try:
            a = a.astype(np.float64)
        except (TypeError, ValueError):
            raise _bad(who, name, numeric + " (numbers only: no None, missing values or nested "
                       "sequences)", "an object array") from None
    if a.dtype.kind == "c":
        raise _bad(who, name, "hold real numbers (a complex array would lose its imaginary part)",
                   f"an array of dtype {a.dtype}")
    if a.dtype.kind not in "biuf":
        raise _bad(who, name, numeric, f"an array of dtype {a.dtype}")
    if a.dtype not in (np.float16, np.float32, np.float64):    # bool, integers, long double
        a = a.astype(np.float32)
    if not (a.flags.c_contiguous and a.flags.writeable):     # a pandas frame's column-major view
        a = np.array(a, order="C")
    return a


def as_tensor(x: Any, who: str, name: str, device: torch.device) -> Tensor:
    """``X`` as a finite (n_samples, n_features) tensor on ``device``.

    float64 tensors stay float64; every other real input (bool, integer, float16 / 32 / 64 numpy
    arrays, tensors, nested sequences, pandas frames) becomes float32. Complex, string, object,
    ragged, sparse or masked input, a shape other than 2-D non-empty, NaN or Inf, and finite
    values too large for float32 raise :class:`IConError` naming ``name``.
    """
    if isinstance(x, Tensor):
        t = x.detach()
        if t.is_complex():
            raise fail(who, name, "hold real numbers (a complex tensor would lose its imaginary part)", t)
    else:
        t = torch.as_tensor(_as_real_array(x, who, name))
    if t.dim() != 2 or t.shape[0] == 0 or t.shape[1] == 0:
        raise _bad(who, name, "be a non-empty 2-D array (n_samples, n_features)",
                   f"an array of shape {tuple(t.shape)}")
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        bad = "NaN" if bool(torch.isnan(t).any()) else "Inf"
        raise _bad(who, name, "be finite", f"an array of shape {tuple(t.shape)} containing {bad}")
    # tensors keep a float64 dtype (tensors in, tensors out); everything else runs in float32
    dtype = torch.float64 if isinstance(x, Tensor) and t.dtype == torch.float64 else torch.float32
    converted = t.to(device=device, dtype=dtype).contiguous()    # a layout never changes a result
    narrowed = t.is_floating_point() and torch.finfo(t.dtype).max > torch.finfo(dtype).max
    if narrowed and not bool(torch.isfinite(converted).all()):      # integers always fit float32
        raise _bad(who, name, f"have magnitudes below {torch.finfo(dtype).max:.3g}, the largest float32 "
                   f"(rescale it, or pass a float64 tensor)", f"values up to {float(t.abs().max()):.3g}")
    return converted


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


MAX_N_JOBS = 1024  # more threads than that only thrash; torch would try to start them all


def check_n_jobs(who: str, n_jobs: Any) -> Optional[int]:
    """``n_jobs``: None (torch's setting), -1 (all cores) or an integer >= 1, as a Python int."""
    if n_jobs is None:
        return None
    if not is_integer(n_jobs) or not (1 <= n_jobs <= MAX_N_JOBS or n_jobs == -1):
        raise fail(who, "n_jobs", f"be None, -1 or an integer between 1 and {MAX_N_JOBS}", n_jobs)
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
