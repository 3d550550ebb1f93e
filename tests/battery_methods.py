"""A valid small batch for every registered method (float32, as users call them), for the battery.

``method_case(name)`` gives the method's constructor (its defaults, plus the required arguments
and the small-batch settings of tests/methods/test_methods_table.py), its call arguments with
their kinds (see :mod:`battery_inputs`) and which of them are rows of the batch.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Dict, Tuple

import torch
import torch.nn.functional as F
from battery_inputs import LEARNED, rand

from icontorch import methods

N, B, D, C = 12, 6, 4, 3


@dataclasses.dataclass
class MethodCase:
    make: Callable[..., Any]                          # make(**constructor_overrides) -> loss
    args: Dict[str, Tuple[str, torch.Tensor]]         # name -> (kind, valid value)
    call: Callable[[Any, Dict[str, Any]], Any]        # call(loss, values) -> loss value
    batch: Tuple[str, ...]                            # the arguments whose rows are the batch


def graph(n: int = N, seed: int = 7) -> torch.Tensor:
    w = rand(n, n, seed=seed).abs()
    w = (w + w.T) / 2
    w.fill_diagonal_(0)
    return w


def _logp(seed: int) -> torch.Tensor:
    return F.log_softmax(rand(N, C, seed=seed), 1)


_EMBEDDING = {"sne": dict(perplexity=4.0), "tsne": dict(perplexity=4.0), "conditional_tsne": dict(perplexity=4.0),
              "sne_uniform_affinities": dict(n_neighbors=3), "tsne_uniform_affinities": dict(n_neighbors=3),
              "dual_tsne": {}, "doubly_tsne": {}, "pca": {}}
_GRAPH = {"sne_graph_embedding": (graph(),), "tsne_graph_embedding": (graph(),), "umap": (graph().clamp(max=1.0),),
          "normalized_cuts": (graph(),), "spectral_clustering": (graph(), C)}
_PAIRS = ("infonce", "simclr", "tsimcne", "tsimclr", "vicreg", "kernel_infonce")
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
    if name in _PAIRS or name in ("debiased_contrastive", "decoupled_contrastive"):
        call = (lambda loss, a: loss(a["z"], a["target"])) if name.startswith("de") else _kw(("target",))
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
