"""``Neighborhood.fused_form()``: the one hook by which p and q reach the fused engine.

The engine reads only the forms, never classes: a user's neighbourhood that describes a form is
computed by the engine, and a subclass that rewrites a formula loses its parent's form.
Oracle: the composed path (``FromCallable`` hides every form) in float64.
"""

from __future__ import annotations

from typing import Optional

import pytest
import torch
from torch import Tensor

import icontorch as ic
import icontorch.engine.structured as structured_module
from icontorch.neighborhoods.base import FusedKernel, FusedTargets, Neighborhood, Support

F64 = torch.float64


def _randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def _value_and_grad(loss, z, target):
    z = z.detach().clone().requires_grad_()
    value = loss(z, target)
    return value.detach(), torch.autograd.grad(value, z)[0]


class NextItem(Neighborhood):
    """``p(j|i) = 1[j = (i + 1) mod n]``: a user's p that lists its support for the engine."""

    def forward(self, x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        n = x.shape[0]
        out = torch.full((n, n), float("-inf"), dtype=F64)
        return out.scatter_(1, ((torch.arange(n) + 1) % n)[:, None], 0.0)

    def _support(self, x: Tensor, y: Optional[Tensor], self_offset: Optional[int], chunk: int) -> Support:
        n = x.shape[0]
        return Support(n, lists=((torch.arange(n) + 1) % n)[:, None])

    def fused_form(self) -> FusedTargets:
        return FusedTargets(self._support)


def test_a_users_neighbourhood_with_a_form_runs_on_the_engine(monkeypatch):
    seen = []
    real = structured_module.Engine
    monkeypatch.setattr(structured_module, "Engine", lambda *args: seen.append(args) or real(*args))
    z, target = _randn(7, 3, seed=1), torch.arange(7)
    q = ic.mix_uniform(ic.Gaussian(temperature=0.7, metric="cosine"), 0.1)
    ref = _value_and_grad(ic.ICon(ic.FromCallable(NextItem()), q), z, target)
    assert not seen
    for tile_size in (None, 3):
        ours = _value_and_grad(ic.ICon(NextItem(), q, tile_size=tile_size), z, target)
        torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
    assert len(seen) == 2


class Sharper(ic.Gaussian):
    """A subclass that changes the formula: twice the Gaussian's logits."""

    def logits(self, x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        return 2.0 * super().logits(x, y)


def test_a_subclass_that_rewrites_the_formula_loses_the_form():
    assert Sharper(temperature=0.5).fused_form() is None
    assert isinstance(ic.Gaussian(temperature=0.5).fused_form(), FusedKernel)
    loss = ic.ICon(ic.PositivePairs(dtype=F64), Sharper(temperature=0.5, metric="cosine"))
    assert loss.structured_form()[0] is None
    z, items = _randn(8, 3, seed=2), torch.arange(4).repeat(2)
    expected = ic.ICon(ic.PositivePairs(dtype=F64), ic.Gaussian(temperature=0.25, metric="cosine"))(z, items)
    torch.testing.assert_close(loss(z, items), expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("make", [
    lambda: ic.FromCallable(ic.SameLabel()), lambda: ic.Precomputed(torch.zeros(3, 1)),
    lambda: ic.PerplexityGaussian(3.0), lambda: ic.Cluster(), lambda: ic.symmetrize(ic.KNN(2)),
    lambda: ic.mix_uniform(ic.mix_uniform(ic.SameLabel(), 0.1), 0.2),
    lambda: ic.neighborhoods.StopGradient(ic.SameLabel()),
])
def test_neighbourhoods_without_a_form_say_none(make):
    assert make().fused_form() is None


@pytest.mark.parametrize("make, kind, alpha", [
    (lambda: ic.PositivePairs(), FusedTargets, 0.0), (lambda: ic.SameLabel(), FusedTargets, 0.0),
    (lambda: ic.CrossModal(), FusedTargets, 0.0), (lambda: ic.DataToClass(3), FusedTargets, 0.0),
    (lambda: ic.KNN(2), FusedTargets, 0.0), (lambda: ic.SparseNeighbors(), FusedTargets, 0.0),
    (lambda: ic.mix_uniform(ic.KNN(2), 0.3), FusedTargets, 0.3),
    (lambda: ic.StudentT(2.0), FusedKernel, 0.0),
    (lambda: ic.mix_uniform(ic.Gaussian(sigma=1.0), 0.4), FusedKernel, 0.4),
])
def test_structured_neighbourhoods_describe_their_form(make, kind, alpha):
    form = make().fused_form()
    assert isinstance(form, kind)
    assert (form.alpha if kind is FusedTargets else form.beta) == alpha


def test_the_engine_names_no_neighbourhood_class():
    for name in ("Gaussian", "StudentT", "KNN", "PositivePairs", "SameLabel", "CrossModal", "DataToClass",
                 "SparseNeighbors", "MixUniform"):
        assert not hasattr(structured_module, name)
