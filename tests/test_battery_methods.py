"""Bad-input battery, part 1: every registered method of ``icontorch.methods`` and ``ICon`` itself.

Each method is built with its defaults (plus the required arguments of a small batch) and called
on a valid float32 batch; then one call argument at a time is made bad (non-finite, wrong dtype,
wrong rank or length, empty, degenerate: see :mod:`battery_inputs`), one constructor argument at a
time gets a bad value, and the graph of the graph methods is made bad. Every case must end in an
``IConError`` raised by icontorch or, for degenerate-but-legal input, in a finite loss and finite
gradients. Cases marked xfail fail today; the fixes of issue 17 must turn them green.
"""

from __future__ import annotations

import functools
import inspect
import math

import pytest
import torch
from battery_inputs import RAISES, SAFE, one_thread, parameter_values, perturbations, stale, verdict, xfails
from battery_known import KNOWN_METHODS
from battery_methods import method_case, run

from icontorch import Gaussian, ICon, PositivePairs, methods

NAMES = methods.available()


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


def _values(case):
    return {name: value for name, (_, value) in case.args.items()}


def _make(case, **override):
    """The method with some constructor arguments replaced (positional ones too)."""
    make = case.make
    fn, args, kwargs = (make.func, make.args, make.keywords) if isinstance(make, functools.partial) \
        else (make, (), {})
    bound = inspect.signature(fn).bind_partial(*args, **kwargs)
    bound.arguments.update(override)
    return fn(*bound.args, **bound.kwargs)


# ------------------------------------------------------------------------------ call arguments
def _argument_cases():
    for name in NAMES:
        case = method_case(name)
        for arg, (kind, _) in case.args.items():
            for bad, (_, expect) in perturbations(kind).items():
                yield f"{name}-{arg}-{bad}", (name, arg, bad, expect)


@pytest.mark.parametrize("name", NAMES)
def test_valid_batch_gives_a_finite_loss(name):
    """The base of every case below: the unperturbed batch is valid."""
    case = method_case(name)
    value, grads = run(case, case.make(), _values(case))
    assert torch.isfinite(value).all() and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name, arg, bad, expect", xfails(KNOWN_METHODS, list(_argument_cases())))
def test_bad_call_argument(name, arg, bad, expect):
    case = method_case(name)
    kind, value = case.args[arg]
    values = _values(case)
    values[arg] = perturbations(kind)[bad][0](value)
    verdict(lambda: run(case, case.make(), values), expect)


def _batch_cases():
    for name in NAMES:
        for size in (1, 2):
            yield f"{name}-batch-of-{size}", (name, size)


@pytest.mark.parametrize("name, size", xfails(KNOWN_METHODS, list(_batch_cases())))
def test_tiny_batch(name, size):
    """Every row-aligned argument cut to 1 or 2 rows: an IConError or a finite loss."""
    case = method_case(name)
    values = {k: (v[:size] if k in case.batch else v) for k, v in _values(case).items()}
    verdict(lambda: run(case, case.make(), values), SAFE)


# --------------------------------------------------------------------- constructor arguments
_ENGINE = ("reduction", "skip_empty_rows", "tile_size", "gather", "symmetric")   # ICon's, tried once below
_COUNT = (("0", 0, RAISES), ("1.5", 1.5, RAISES), ("nan", math.nan, RAISES), ("string", "x", RAISES))
_SPECIAL = {"n_classes": _COUNT, "vocab_size": _COUNT, "n_clusters": _COUNT,
            "alpha_q": (("nan", math.nan, RAISES), ("2", 2.0, RAISES), ("-1", -1.0, RAISES)),
            "temperature2": (("nan", math.nan, RAISES), ("-1", -1.0, RAISES), ("string", "x", RAISES)),
            "split": (("-1", -1, SAFE), ("string", "x", RAISES), ("nan", math.nan, RAISES)),
            "mix": (("bogus", "bogus", RAISES), ("int", 5, RAISES)),
            "p": (("int", 5, RAISES), ("string", "x", RAISES)),
            "q": (("int", 5, RAISES), ("string", "x", RAISES)),
            "weights": (), "memberships": ()}


def _parameter_cases():
    for name in NAMES:
        for param in inspect.signature(getattr(methods, name)).parameters.values():
            if param.name in _ENGINE:
                continue
            values = _SPECIAL.get(param.name)
            if values is None:
                values = parameter_values(param.default)
            for label, value, expect in values:
                yield f"{name}-{param.name}={label}", (name, param.name, value, expect)


@pytest.mark.parametrize("name, param, value, expect", xfails(KNOWN_METHODS, list(_parameter_cases())))
def test_bad_constructor_argument(name, param, value, expect):
    case = method_case(name)
    verdict(lambda: run(case, _make(case, **{param: value}), _values(case)), expect)


_WEIGHTS = {
    "nan": (lambda w: w.masked_fill(torch.eye(len(w), dtype=torch.bool).roll(1, 1), math.nan), RAISES),
    "inf": (lambda w: w.masked_fill(torch.eye(len(w), dtype=torch.bool).roll(1, 1), math.inf), RAISES),
    "negative": (lambda w: -w, RAISES),
    "not-square": (lambda w: w[:-1], RAISES),
    "flat": (lambda w: w.reshape(-1), RAISES),
    "empty": (lambda w: w[:0, :0], RAISES),
    "complex": (lambda w: w.to(torch.complex64), RAISES),
    "string": (lambda w: "x", RAISES),
    "int": (lambda w: (w > 0.5).long(), SAFE),
    "no-edges": (lambda w: torch.zeros_like(w), SAFE),
    "asymmetric": (lambda w: w.triu(), SAFE),
    "huge": (lambda w: w * 1e30, SAFE),
    "tiny": (lambda w: w * 1e-30, SAFE),
    "smaller-than-batch": (lambda w: w[:-2, :-2], RAISES),
}


def _weight_cases():
    for name in NAMES:
        case = method_case(name)
        if not isinstance(case.make, functools.partial) or not case.make.args or \
                not isinstance(case.make.args[0], torch.Tensor):
            continue
        param = next(iter(inspect.signature(case.make.func).parameters))
        for bad, (_, expect) in _WEIGHTS.items():
            yield f"{name}-{param}-{bad}", (name, param, bad, expect)


@pytest.mark.parametrize("name, param, bad, expect", xfails(KNOWN_METHODS, list(_weight_cases())))
def test_bad_graph(name, param, bad, expect):
    case = method_case(name)
    weights = _WEIGHTS[bad][0](case.make.args[0].clone())
    verdict(lambda: run(case, _make(case, **{param: weights}), _values(case)), expect)


# --------------------------------------------------------------------------------- ICon itself
_ICON = {
    "p=5": dict(p=5), "q=string": dict(q="x"), "divergence=bogus": dict(divergence="bogus"),
    "divergence=5": dict(divergence=5), "reduction=bogus": dict(reduction="bogus"),
    "symmetric=string": dict(symmetric="no"), "skip_empty_rows=string": dict(skip_empty_rows="no"),
    "tile_size=0": dict(tile_size=0), "tile_size=1.5": dict(tile_size=1.5), "tile_size=bogus": dict(tile_size="x"),
    "gather=string": dict(gather="no"),
}


@pytest.mark.parametrize("options", xfails(KNOWN_METHODS, [(f"ICon-{k}", (v,)) for k, v in _ICON.items()]))
def test_bad_icon_argument(options):
    def call():
        loss = ICon(**{"p": PositivePairs(), "q": Gaussian(temperature=0.5), **options})
        z = torch.randn(6, 3)
        return loss(z[:3], target=torch.arange(3), candidates=z[3:], target_candidates=torch.arange(3))
    verdict(call, RAISES)


def test_wrong_keyword_is_a_type_error():
    """A misspelt keyword is Python's TypeError, at construction and at the call (documented)."""
    with pytest.raises(TypeError):
        methods.simclr(temprature=0.5)
    with pytest.raises(TypeError):
        methods.simclr()(torch.randn(4, 3), targets=torch.arange(2).repeat(2))


def test_every_known_failure_names_a_case():
    assert not stale(KNOWN_METHODS), "ids in battery_known.KNOWN_METHODS that are no case of this file"
