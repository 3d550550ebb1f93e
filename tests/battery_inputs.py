"""Generators and the one verdict of the bad-input battery (tests/test_battery_*.py).

Every case of the battery calls a public entry point of icontorch with one argument made bad and
expects one of two outcomes:

* ``RAISES``: the call ends in :class:`IConError` raised from icontorch's own code (the last frame
  of the traceback is a file of the package), never another exception from torch, numpy or Python.
* ``SAFE``: the input is degenerate but may be legal (duplicates, constants, huge or tiny
  magnitudes, another dtype): the call raises :class:`IConError` from icontorch as above, or it
  returns a result with no NaN or Inf in it (tensors, arrays, numbers, gradients, the fitted
  attributes of an estimator, and a KL divergence is never negative).

Every case runs under a time guard (a hang fails the case). Inputs are seeded: the battery is
deterministic.
"""

from __future__ import annotations

import math
import signal
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Tuple

import numpy as np
import pytest
import torch

import icontorch
from icontorch import IConError

PACKAGE = Path(icontorch.__file__).resolve().parent
RAISES, SAFE = "raises", "safe"
GUARD_SECONDS = 20.0


class Hang(Exception):
    """Raised by the time guard when a case runs longer than ``GUARD_SECONDS``."""


@contextmanager
def time_guard(seconds: float = GUARD_SECONDS) -> Iterator[None]:
    """Interrupt the block with :class:`Hang` after ``seconds`` (SIGALRM; main thread only)."""
    def _alarm(signum: int, frame: Any) -> None:
        raise Hang(f"still running after {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def where(error: BaseException) -> str:
    """``file:line`` of the frame that raised, relative to the package or to site-packages."""
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return "?"
    last = frames[-1]
    path = Path(last.filename).resolve()
    text = str(path.relative_to(PACKAGE.parent)) if path.is_relative_to(PACKAGE.parent) else path.name
    return f"{text}:{last.lineno}"


def raised_inside_package(error: BaseException) -> bool:
    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and Path(frames[-1].filename).resolve().is_relative_to(PACKAGE)


def first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else "")[:160]


def non_finite(result: Any, name: str = "result") -> List[str]:
    """Where ``result`` holds NaN or Inf (tensors, arrays, numbers, containers, estimators)."""
    if isinstance(result, torch.Tensor):
        if (result.is_floating_point() or result.is_complex()) and not bool(torch.isfinite(result).all()):
            return [f"{name} holds {'NaN' if bool(torch.isnan(result).any()) else 'Inf'}"]
        return []
    if isinstance(result, np.ndarray):
        if result.dtype.kind in "fc" and not np.isfinite(result).all():
            return [f"{name} holds {'NaN' if np.isnan(result).any() else 'Inf'}"]
        return []
    if isinstance(result, (float, np.floating)):
        return [] if math.isfinite(result) else [f"{name} = {result}"]
    if isinstance(result, dict):
        return [bad for key, value in result.items() for bad in non_finite(value, f"{name}[{key!r}]")]
    if isinstance(result, (list, tuple)):
        return [bad for i, value in enumerate(result) for bad in non_finite(value, f"{name}[{i}]")]
    if isinstance(result, torch.nn.Module):
        return [bad for key, value in result.state_dict().items() for bad in non_finite(value, f"{name}.{key}")]
    if not hasattr(result, "__dict__"):
        return []
    fitted = {k: v for k, v in vars(result).items() if k.endswith("_") and not k.startswith("_")}
    bad = [b for key, value in fitted.items() for b in non_finite(value, f"{name}.{key}")]
    kl = fitted.get("kl_divergence_")
    if isinstance(kl, float) and kl < -1e-6:
        bad.append(f"{name}.kl_divergence_ = {kl:.4g} < 0 (a KL is never negative)")
    return bad


def fail(message: str) -> None:
    """Fail the case with ``message`` alone: a Python traceback of the battery would say nothing
    more, and formatting it costs more than the case (xfail cases format it too)."""
    pytest.fail(message, pytrace=False)


def verdict(call: Callable[[], Any], expect: str, check: Callable[[Any], List[str]] = non_finite) -> None:
    """Run ``call`` under the time guard and fail the test unless the outcome matches ``expect``."""
    problem = None
    try:
        with time_guard():
            result = call()
    except IConError as error:
        if not raised_inside_package(error):
            problem = f"IConError raised outside icontorch at {where(error)}: {first_line(error)}"
    except Hang as error:
        problem = f"hang: {error}"
    except Exception as error:  # noqa: BLE001 - any other exception is the finding
        problem = f"{type(error).__name__} at {where(error)}: {first_line(error)}"
    else:
        if expect == RAISES:
            problem = f"no error: returned {_summary(result)}"
        elif check(result):
            problem = "non-finite result: " + "; ".join(check(result)[:3])
    if problem is not None:
        fail(problem)


def _summary(result: Any) -> str:
    if isinstance(result, torch.Tensor):
        return f"tensor {tuple(result.shape)} {result.dtype}" + (
            f" = {result.item():.4g}" if result.numel() == 1 and not result.is_complex() else "")
    if isinstance(result, np.ndarray):
        return f"array {result.shape} {result.dtype}"
    if isinstance(result, (list, tuple)):
        return f"{type(result).__name__} of {len(result)}" + (f" ({_summary(result[0])}, ...)" if result else "")
    return type(result).__name__ if hasattr(result, "__dict__") else repr(result)[:60]


# ---------------------------------------------------------------------------------------- tensors
def rand(*shape: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _with(x: torch.Tensor, value: float) -> torch.Tensor:
    y = x.detach().clone()
    y.view(-1)[min(1, y.numel() - 1)] = value
    return y


def _duplicates(x: torch.Tensor) -> torch.Tensor:
    """Only two distinct rows, each repeated (issue 17, case 1)."""
    return x.detach()[torch.arange(x.shape[0]) % 2].clone()


def _object(x: Any) -> np.ndarray:
    return np.array(np.asarray(x).tolist(), dtype=object)


# name -> (perturbation of a floating tensor, kinds for which it is only SAFE; RAISES otherwise)
# Kinds: "z" learned embeddings, "logp" learned log-probabilities, "protos" learned prototypes,
# "cand3d" per-anchor candidates (all learned), "feat" supervision features, "scores" supervision scores,
# "rows" a supervision whose values are documented as ignored (only its rows count: PCA's Identity p).
LEARNED = ("z", "logp", "protos", "cand3d")
SUPERVISION = ("feat", "scores", "rows")
FLOAT_PERTURBATIONS: Dict[str, Tuple[Callable[[torch.Tensor], Any], Tuple[str, ...]]] = {
    "nan": (lambda x: _with(x, math.nan), ("rows",)),
    "inf": (lambda x: _with(x, math.inf), ("rows",)),
    "-inf": (lambda x: _with(x, -math.inf), ("logp", "rows")),
    "int": (lambda x: (x.detach() * 3).round().long(), ("feat", "scores", "rows")),
    "bool": (lambda x: x.detach() > 0, ("feat", "scores", "rows")),
    "complex": (lambda x: x.detach().to(torch.complex64), ("rows",)),
    "float16": (lambda x: x.detach().half(), LEARNED + SUPERVISION),
    "float64": (lambda x: x.detach().double(), LEARNED + SUPERVISION),
    "numpy": (lambda x: x.detach().numpy(), SUPERVISION),
    "object": (lambda x: _object(x.detach()), ()),
    "string": (lambda x: "x", ()),
    "none": (lambda x: None, SUPERVISION + ("protos", "cand3d")),
    "flat": (lambda x: x.detach().reshape(-1), ()),
    "scalar": (lambda x: x.detach().sum(), ()),
    "rank+1": (lambda x: x.detach().unsqueeze(0), ()),
    "short": (lambda x: x.detach()[:-1], ()),
    "empty": (lambda x: x.detach()[:0], ()),
    "duplicates": (_duplicates, LEARNED + SUPERVISION),
    "constant": (lambda x: torch.full_like(x.detach(), 0.5), LEARNED + SUPERVISION),
    "huge": (lambda x: x.detach() * 1e20, LEARNED + SUPERVISION),
    "tiny": (lambda x: x.detach() * 1e-30, LEARNED + SUPERVISION),
}

# Kinds: "ids" labels / view ids (any integers), "classes" labels in [0, C), "nodes" node ids in
# [0, N), "tc2d" per-anchor candidate ids (-1: no candidate).
INDEX_PERTURBATIONS: Dict[str, Tuple[Callable[[torch.Tensor], Any], Tuple[str, ...]]] = {
    "float": (lambda t: t.float(), ()),
    "bool": (lambda t: t > 0, ()),
    "complex": (lambda t: t.to(torch.complex64), ()),
    "int32": (lambda t: t.int(), ("ids", "classes", "nodes", "tc2d")),
    "numpy": (lambda t: t.numpy(), ("ids", "classes", "nodes", "tc2d")),
    "object": (lambda t: _object(t), ()),
    "string": (lambda t: "x", ()),
    "none": (lambda t: None, ("ids", "tc2d")),
    "negative": (lambda t: t - 100, ("ids", "tc2d")),
    "out-of-range": (lambda t: t + 10 ** 9, ("ids", "tc2d")),
    "flat-or-rank+1": (lambda t: t.reshape(-1) if t.dim() > 1 else t.unsqueeze(1), ()),
    "scalar": (lambda t: t.sum(), ()),
    "short": (lambda t: t[:-1], ()),
    "empty": (lambda t: t[:0], ()),
    "all-same": (lambda t: torch.zeros_like(t), ("ids", "classes", "nodes", "tc2d")),
}


_VALUES = ("duplicates", "constant", "huge", "tiny")


def _normalised(fn: Callable[[torch.Tensor], Any]) -> Callable[[torch.Tensor], Any]:
    return lambda x: torch.log_softmax(fn(x), dim=-1)


def perturbations(kind: str) -> Dict[str, Tuple[Callable[[torch.Tensor], Any], str]]:
    """``{name: (perturb, expect)}`` for an argument of ``kind``. Log-probabilities stay normalised
    under the value perturbations (huge: log-probabilities of -1e20), and get an unnormalised case."""
    table = INDEX_PERTURBATIONS if kind in ("ids", "classes", "nodes", "tc2d") else FLOAT_PERTURBATIONS
    cases = {name: (fn, SAFE if kind in safe else RAISES) for name, (fn, safe) in table.items()}
    if kind == "logp":
        cases.update({name: (_normalised(cases[name][0]), SAFE) for name in _VALUES})
        cases["unnormalised"] = (lambda x: x.detach() + 5.0, SAFE)
    return cases


# --------------------------------------------------------------------------------------- numbers
# Bad values of a number parameter: (id, value, expect). NaN, strings and booleans are never
# numbers; infinities, zero and negative values are legal for some parameters (then the result
# must be finite).
NUMBER_VALUES = (("nan", math.nan, RAISES), ("inf", math.inf, SAFE), ("-1", -1, SAFE), ("0", 0, SAFE),
                 ("string", "x", RAISES), ("bool", True, RAISES), ("none", None, SAFE))
CHOICE_VALUES = (("bogus", "bogus", RAISES), ("int", 5, RAISES))
FLAG_VALUES = (("string", "no", RAISES),)


def parameter_values(default: Any) -> Tuple[Tuple[str, Any, str], ...]:
    """The bad values to try for a parameter whose default is ``default``."""
    if isinstance(default, bool):
        return FLAG_VALUES
    if isinstance(default, (int, float)):
        return NUMBER_VALUES
    if isinstance(default, str):
        return CHOICE_VALUES
    return ()


APPLIED: set = set()          # the known-failure ids that xfails() has put on a case


def xfails(known: Dict[str, str], cases: List[Tuple[str, tuple]]) -> List[Any]:
    """``pytest.param`` of each ``(id, values)``, strict-xfail where ``known`` says it fails today."""
    APPLIED.update(case_id for case_id, _ in cases if case_id in known)
    return [pytest.param(*values, id=case_id,
                         marks=[pytest.mark.xfail(strict=True, reason=known[case_id])] if case_id in known else [])
            for case_id, values in cases]


def stale(known: Dict[str, str]) -> List[str]:
    """Known-failure ids that name no case (a renamed case, or a typo)."""
    return sorted(set(known) - APPLIED)


@contextmanager
def one_thread() -> Iterator[None]:
    """Torch on one CPU thread for the block: the battery's tensors are tiny, and on a busy 2-core
    machine the second thread only adds waiting (a 12 x 12 op takes 0.3 ms instead of 20 us)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
