"""Bad-input battery, part 1: every registered method of ``icontorch.methods`` and ``ICon`` itself.

Each method is built with its defaults (plus the required arguments of a small batch) and called
on a valid float32 batch; then one call argument at a time is made bad (non-finite, wrong dtype,
wrong rank or length, empty, degenerate: see :mod:`battery_inputs`), one constructor argument at a
time gets a bad value, and the graph of the graph methods is made bad. Every case must end in an
``IConError`` raised by icontorch or, for degenerate-but-legal input, in a finite loss and finite
gradients. Cases marked xfail fail today; the fixes of issue 17 must turn them green.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import re
from typing import Any, Callable, Dict, Tuple

import pytest
import torch
import torch.nn.functional as F

from icontorch import Gaussian, ICon, IConError, PositivePairs, methods

from battery_inputs import (
    LEARNED,
    RAISES,
    SAFE,
    fail,
    first_line,
    one_thread,
    parameter_values,
    perturbations,
    rand,
    stale,
    verdict,
    xfails,
)
from battery_known import KNOWN_METHODS

NAMES = methods.available()


# ------------------------------------------------------------------- a valid batch per method
N, B, D, C = 12, 6, 4, 3


@dataclasses.dataclass
class MethodCase:
    make: Callable[..., Any]                          # make(**constructor_overrides) -> loss
    args: Dict[str, Tuple[str, torch.Tensor]]         # name -> (kind, valid value)
    call: Callable[[Any, Dict[str, Any]], Any]        # call(loss, values) -> loss value
    batch: Tuple[str, ...]                            # the arguments whose rows are the batch


def _graph(n: int = N, seed: int = 7) -> torch.Tensor:
    w = rand(n, n, seed=seed).abs()
    w = (w + w.T) / 2
    w.fill_diagonal_(0)
    return w


def _logp(seed: int) -> torch.Tensor:
    return F.log_softmax(rand(N, C, seed=seed), 1)


_EMBEDDING = {"sne": dict(perplexity=4.0), "tsne": dict(perplexity=4.0), "conditional_tsne": dict(perplexity=4.0),
              "sne_uniform_affinities": dict(n_neighbors=3), "tsne_uniform_affinities": dict(n_neighbors=3),
              "dual_tsne": {}, "doubly_tsne": {}, "pca": {}}
_GRAPH = {"sne_graph_embedding": (_graph(),), "tsne_graph_embedding": (_graph(),), "umap": (_graph().clamp(max=1.0),),
          "normalized_cuts": (_graph(),), "spectral_clustering": (_graph(), C)}
_PAIRS = ("infonce", "simclr", "tsimcne", "tsimclr", "vicreg", "kernel_infonce")
_VIEW_PAIRS = ("debiased_contrastive", "decoupled_contrastive", "hard_negative_contrastive")  # loss(z, target)
_CROSS = ("mocov3", "clip", "cmc", "t_clip", "average_margin_clip", "triplet_clip", "siglip")
_SUPCON = ("supcon", "t_supcon", "average_margin_supcon", "triplet_supcon")
_CLASSES = ("cross_entropy", "harmonic_loss", "error_rate", "masked_language_modeling")


def _kw(names: Tuple[str, ...], first: str = "z") -> Callable[[Any, Dict[str, Any]], Any]:
    """``loss(values[first], name=values[name], ...)``."""
    return lambda loss, a: loss(a[first], **{k: a[k] for k in names})


def method_case(name: str) -> MethodCase:
    fn = getattr(methods, name)
    if name in _EMBEDDING or name in ("sne_graph_embedding", "tsne_graph_embedding", "umap"):
        make = functools.partial(fn, *_GRAPH.get(name, ()), **_EMBEDDING.get(name, {}))
        kind = "rows" if name == "pca" else "feat"              # PCA's Identity p reads only the rows
        target = ("nodes", torch.arange(N)) if name in _GRAPH else (kind, rand(N, 5, seed=2))
        return MethodCase(make, {"z": ("z", rand(N, 2, seed=3)), "target": target}, _kw(("target",)),
                          ("z", "target"))
    if name in ("x_sample_cl", "lgsimclr"):
        return MethodCase(fn, {"z": ("z", rand(N, D, seed=5)), "target": ("feat", rand(N, 5, seed=2))},
                          _kw(("target",)), ("z", "target"))
    if name in _PAIRS or name in _VIEW_PAIRS:
        call = (lambda loss, a: loss(a["z"], a["target"])) if name in _VIEW_PAIRS else _kw(("target",))
        return MethodCase(fn, {"z": ("z", rand(2 * B, D, seed=1)), "target": ("ids", torch.arange(B).repeat(2))},
                          call, ("z", "target"))
    if name in _CROSS:
        args = {"z": ("z", rand(B, D, seed=1)), "target": ("ids", torch.arange(B)),
                "candidates": ("z", rand(B, D, seed=11)), "target_candidates": ("ids", torch.arange(B))}
        return MethodCase(fn, args, _kw(("target", "candidates", "target_candidates")), tuple(args))
    if name == "triplet":
        cand = rand(B, D, seed=11)
        args = {"z": ("z", rand(B, D, seed=1)), "target": ("ids", torch.arange(B)),
                "candidates": ("cand3d", torch.stack([cand, cand.roll(1, 0)], 1)),
                "target_candidates": ("tc2d", torch.stack([torch.arange(B), -torch.ones(B, dtype=torch.long)], 1))}
        return MethodCase(fn, args, _kw(("target", "candidates", "target_candidates")), tuple(args))
    if name == "swav":
        z, w = rand(B, D, seed=1), rand(C, D, seed=6)
        scores = F.normalize(rand(B, D, seed=11), dim=1) @ F.normalize(w, dim=1).T
        args = {"z": ("z", z), "target": ("scores", scores), "candidates": ("protos", w)}
        return MethodCase(fn, args, _kw(("target", "candidates")), ("z", "target"))
    if name in _SUPCON:
        return MethodCase(fn, {"z": ("z", rand(2 * B, D, seed=1)), "target": ("ids", torch.arange(2 * B) % 3)},
                          _kw(("target",)), ("z", "target"))
    if name in _CLASSES:
        args = {"z": ("z", rand(2 * B, D, seed=1)), "target": ("classes", torch.arange(2 * B) % C),
                "candidates": ("protos", rand(C, D, seed=6))}
        return MethodCase(functools.partial(fn, C), args, _kw(("target", "candidates")), ("z", "target"))
    return _clustering_case(name, fn)


def _clustering_case(name: str, fn: Callable[..., Any]) -> MethodCase:
    if name in ("kmeans", "t_kmeans", "dcd"):
        make = functools.partial(fn, **({"n_neighbors": 3} if name == "dcd" else {}))
        return MethodCase(make, {"z": ("logp", _logp(4)), "target": ("feat", rand(N, 5, seed=2))},
                          _kw(("target",)), ("z", "target"))
    if name in ("normalized_cuts", "spectral_clustering"):
        return MethodCase(functools.partial(fn, *_GRAPH[name]),
                          {"z": ("logp", _logp(4)), "target": ("nodes", torch.arange(N))},
                          _kw(("target",)), ("z", "target"))
    if name in ("infonce_clustering", "pmi_clustering", "supervised_clustering"):
        return MethodCase(fn, {"z": ("logp", _logp(4)), "target": ("ids", torch.arange(N) % 3)},
                          _kw(("target",)), ("z", "target"))
    if name in ("iic", "temi_pmi"):
        return MethodCase(fn, {"z": ("logp", _logp(8)), "other": ("logp", _logp(4))},
                          lambda loss, a: loss(a["z"], a["other"]), ("z", "other"))
    if name == "dino":
        return MethodCase(fn, {"z": ("z", rand(N, C, seed=4)), "target": ("scores", rand(N, C, seed=9))},
                          _kw(("target",)), ("z", "target"))
    if name == "contrastive_clustering":
        args = {"z1": ("z", rand(N, D, seed=1)), "z2": ("z", rand(N, D, seed=11)), "log_phi1": ("logp", _logp(4)),
                "log_phi2": ("logp", _logp(8))}
        return MethodCase(fn, args, lambda loss, a: loss(a["z1"], a["z2"], a["log_phi1"], a["log_phi2"]), tuple(args))
    raise AssertionError(f"no battery case for the method {name}: add one")


def run(case: MethodCase, loss: Any, values: Dict[str, Any]) -> Tuple[Any, list]:
    """The loss value and the gradients of the learned arguments (fresh leaves)."""
    leaves, given = [], {}
    for name, value in values.items():
        kind = case.args[name][0]
        if kind in LEARNED and isinstance(value, torch.Tensor) and (value.is_floating_point() or value.is_complex()):
            value = value.detach().clone().requires_grad_()
            leaves.append(value)
        given[name] = value
    value = case.call(loss, given)
    grads = []
    if isinstance(value, torch.Tensor) and value.requires_grad and leaves:
        grads = [g for g in torch.autograd.grad(value.sum(), leaves, allow_unused=True) if g is not None]
    return value, grads


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


def _argument_name(case, loss, arg):
    """The name the user gave the argument: its keyword, or the forward parameter at its place."""
    names = [n for n in inspect.signature(loss.forward).parameters]
    return arg if arg in names else names[list(case.args).index(arg)]


@pytest.mark.parametrize("name, arg", xfails(KNOWN_METHODS, [(f"{n}-{a}-message", (n, a)) for n in NAMES
                                                              for a, (kind, _) in method_case(n).args.items()
                                                              if kind != "rows"]))
def test_error_names_the_argument(name, arg):
    """A NaN (or float ids) in one argument: the IConError names that argument as the user passed it
    (``target``, not the neighbourhood's internal ``x``)."""
    case = method_case(name)
    kind, value = case.args[arg]
    values = _values(case)
    values[arg] = perturbations(kind)["nan" if value.is_floating_point() else "float"][0](value)
    loss = case.make()
    expected = _argument_name(case, loss, arg)
    try:
        run(case, loss, values)
    except IConError as error:
        message = str(error)
    except Exception as error:  # noqa: BLE001 - the other test of this case says what
        return fail(f"{type(error).__name__}: {first_line(error)}")
    else:
        return fail("no error")
    if not re.search(rf"(?<!\w){re.escape(expected)}(?!\w)", message):
        fail(f"names no {expected!r}: {first_line(message)}")


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
