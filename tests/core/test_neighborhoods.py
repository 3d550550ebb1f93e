"""The Neighborhood contract (``icontorch.neighborhoods.base``), checked on every neighbourhood.

One list, ``CASES``, drives the contract battery: each entry builds a neighbourhood and the
inputs that suit it (features, ids, log soft assignments or node ids). Per-kernel formula pins
against independent numpy / scipy / scikit-learn computations are in
``test_neighborhood_formulas.py``.
"""

from __future__ import annotations

import dataclasses
import inspect
import warnings
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

import pytest
import torch
from torch import Tensor

from icontorch import (
    KNN,
    Adjacency,
    Cluster,
    CrossModal,
    DataToClass,
    DegreeWeightedCluster,
    FromCallable,
    Gaussian,
    ICon,
    Identity,
    PerplexityGaussian,
    PositivePairs,
    Precomputed,
    SameLabel,
    StudentT,
)
from icontorch.neighborhoods import Neighborhood
from icontorch.transforms import Joint, MixUniform, Propagate, Symmetrize

from neighborhood_data import (
    DEGREE,
    F64,
    N_SELF,
    NEG_INF,
    PAIR_NODES,
    PRE_RECT,
    PRE_SQUARE,
    SELF_NODES,
    W_DENSE,
    W_SPARSE,
    W_SPARSE_DENSE,
    C,
    M,
    N,
    feats,
    feats3,
    labels,
    log_assign,
)


def _gaussian_fn(x: Tensor, y: Optional[Tensor]) -> Tensor:
    return Gaussian(sigma=1.0)(x, y)


# --------------------------------------------------------------------------------------------
# The one list of neighbourhood factories
# --------------------------------------------------------------------------------------------

Inputs = Callable[[torch.dtype], Tuple[Optional[Tensor], ...]]


@dataclass
class Case:
    id: str
    cls: type
    kwargs: Dict[str, object]
    self_input: Optional[Callable[[torch.dtype], Tensor]]                 # x for nb(x)
    pair_input: Optional[Callable[[torch.dtype], Tuple[Tensor, Tensor]]]  # (x (N,..), y (M,..))
    per_anchor_input: Optional[Callable[[torch.dtype], Tuple[Tensor, Tensor]]] = None
    include_self: bool = False       # the documented self handling with y=None
    float_input: bool = False        # output dtype/device follow the input
    learned: bool = False            # differentiable in its input (gradcheck)
    self_square: bool = True         # with y=None the candidates are the anchors
    explicit_self: bool = True       # nb(x, x) keeps the diagonal (explicit candidates never masked)
    grad_input: Optional[Callable[[Tensor], Tensor]] = None  # free parameters -> valid input

    def build(self) -> Neighborhood:
        return self.cls(**self.kwargs)


def _f(n_self=N_SELF):
    return lambda dt: feats(n_self, dt)


def _fpair(dt):
    return feats(N, dt, seed=0), feats(M, dt, seed=1)


def _f3(dt):
    return feats(N, dt, seed=0), feats3(N, M, dt)


def _spatial(id, cls, kwargs, include_self=False, learned=True, per_anchor=True):
    return Case(id, cls, kwargs, _f(), _fpair, _f3 if per_anchor else None,
                include_self=include_self, float_input=True, learned=learned)


def _ids_pair(k=3):
    return lambda dt: (labels(N, k), labels(M, k))


def _ids_per_anchor(k=3):
    # (N, M) candidate ids, one row per anchor, each row containing the anchor's own id
    def make(dt):
        x = labels(N, k)
        y = torch.stack([torch.roll(labels(M, k), i) for i in range(N)])
        y[:, 0] = x
        return x, y
    return make


def _cluster_pair(dt):
    return log_assign(N, dt, seed=0), log_assign(M, dt, seed=1)


CASES = [
    # spatial
    _spatial("gaussian-sqeuclid-sigma", Gaussian, dict(sigma=0.8)),
    _spatial("gaussian-sqeuclid-temperature", Gaussian, dict(temperature=1.5)),
    _spatial("gaussian-cosine-temperature", Gaussian, dict(temperature=0.5, metric="cosine")),
    _spatial("gaussian-cosine-sigma", Gaussian, dict(sigma=0.7, metric="cosine")),
    _spatial("gaussian-dot-temperature", Gaussian, dict(temperature=2.0, metric="dot")),
    _spatial("gaussian-dot-sigma", Gaussian, dict(sigma=1.2, metric="dot")),
    _spatial("gaussian-include-self", Gaussian, dict(sigma=1.0, include_self=True), include_self=True),
    _spatial("perplexity-gaussian", PerplexityGaussian, dict(perplexity=3.0), learned=False),
    _spatial("perplexity-gaussian-include-self", PerplexityGaussian,
             dict(perplexity=2.5, include_self=True), include_self=True, learned=False),
    _spatial("student-t-cauchy", StudentT, dict()),
    _spatial("student-t-dof3", StudentT, dict(dof=3.0)),
    _spatial("student-t-include-self", StudentT, dict(dof=0.5, include_self=True), include_self=True),
    _spatial("knn-sqeuclid", KNN, dict(n_neighbors=2), learned=False),
    _spatial("knn-cosine", KNN, dict(n_neighbors=3, metric="cosine"), learned=False),
    # under the dot product a point need not be its own nearest candidate
    dataclasses.replace(_spatial("knn-dot", KNN, dict(n_neighbors=2, metric="dot"), learned=False),
                        explicit_self=False),
    _spatial("knn-include-self", KNN, dict(n_neighbors=2, include_self=True), include_self=True, learned=False),
    # discrete
    Case("same-label", SameLabel, dict(dtype=F64), lambda dt: labels(N_SELF), _ids_pair(),
         _ids_per_anchor()),
    Case("same-label-include-self", SameLabel, dict(include_self=True, dtype=torch.float32),
         lambda dt: labels(N_SELF), _ids_pair(), _ids_per_anchor(), include_self=True),
    Case("positive-pairs", PositivePairs, dict(dtype=F64),
         lambda dt: torch.cat([torch.arange(4), torch.arange(4)]), _ids_pair(4), _ids_per_anchor(4)),
    Case("cross-modal", CrossModal, dict(dtype=F64), None, _ids_pair(4), _ids_per_anchor(4)),
    Case("data-to-class", DataToClass, dict(n_classes=C, dtype=F64), lambda dt: labels(N_SELF, C),
         lambda dt: (labels(N, C), torch.arange(M) % C), include_self=True, self_square=False,
         explicit_self=False),
    Case("identity", Identity, dict(dtype=F64), lambda dt: torch.arange(N_SELF), None,
         include_self=True, explicit_self=False),
    # cluster
    Case("cluster", Cluster, dict(), lambda dt: log_assign(N_SELF, dt), _cluster_pair,
         include_self=True, float_input=True, learned=True,
         grad_input=lambda t: torch.log_softmax(t, dim=1)),
    Case("cluster-exclude-self", Cluster, dict(include_self=False), lambda dt: log_assign(N_SELF, dt),
         _cluster_pair, include_self=False, float_input=True, learned=True,
         grad_input=lambda t: torch.log_softmax(t, dim=1)),
    Case("degree-weighted-cluster", DegreeWeightedCluster, dict(degree=DEGREE),
         lambda dt: log_assign(M, dt, seed=3), _cluster_pair, include_self=True, float_input=True,
         learned=True, grad_input=lambda t: torch.log_softmax(t, dim=1)),
    # graph
    Case("adjacency-dense", Adjacency, dict(weights=W_DENSE), lambda dt: SELF_NODES,
         lambda dt: PAIR_NODES),
    Case("adjacency-dense-include-self", Adjacency, dict(weights=W_DENSE, include_self=True),
         lambda dt: SELF_NODES, lambda dt: PAIR_NODES, include_self=True),
    Case("adjacency-sparse", Adjacency, dict(weights=W_SPARSE), lambda dt: SELF_NODES,
         lambda dt: PAIR_NODES),
    # fixed matrices and callables
    Case("precomputed-square", Precomputed, dict(log_p=PRE_SQUARE, include_self=False),
         lambda dt: torch.zeros(N_SELF, 1), None, explicit_self=False),
    Case("precomputed-rect", Precomputed, dict(log_p=PRE_RECT, include_self=True), None,
         lambda dt: (torch.zeros(N, 1), torch.zeros(M, 1))),
    Case("from-callable", FromCallable, dict(fn=_gaussian_fn, include_self=False), _f(), _fpair,
         float_input=True),
    # transforms
    Case("mix-uniform-gaussian", MixUniform, dict(base=Gaussian(sigma=1.0), alpha=0.3), _f(),
         _fpair, _f3, float_input=True, learned=True),
    Case("mix-uniform-same-label", MixUniform, dict(base=SameLabel(dtype=F64), alpha=0.2),
         lambda dt: labels(N_SELF), _ids_pair(), _ids_per_anchor()),
    Case("mix-uniform-cluster", MixUniform, dict(base=Cluster(), alpha=0.5),
         lambda dt: log_assign(N_SELF, dt), _cluster_pair, include_self=True, float_input=True,
         learned=True, grad_input=lambda t: torch.log_softmax(t, dim=1)),
    Case("propagate-knn-sum", Propagate, dict(base=KNN(n_neighbors=2), steps=2, mode="sum"), _f(), None,
         float_input=True, explicit_self=False),
    Case("propagate-knn-reach", Propagate, dict(base=KNN(n_neighbors=2), steps=3, mode="reach"), _f(), None,
         float_input=True, explicit_self=False),
    Case("propagate-gaussian-sum", Propagate, dict(base=Gaussian(sigma=1.0), steps=3), _f(), None,
         float_input=True, explicit_self=False),
    Case("propagate-same-label-include-self", Propagate,
         dict(base=SameLabel(include_self=True, dtype=F64), steps=2, mode="reach"),
         lambda dt: labels(N_SELF), None, include_self=True, explicit_self=False),
]

IDS = [c.id for c in CASES]


def by(pred):
    chosen = [c for c in CASES if pred(c)]
    return pytest.mark.parametrize("case", chosen, ids=[c.id for c in chosen])


def _tol(dtype: torch.dtype) -> float:
    return 1e-10 if dtype == F64 else 1e-5


def _assert_normalised(out: Tensor) -> None:
    assert out.dim() == 2
    assert not torch.isnan(out).any()
    assert not (out == float("inf")).any()
    lse = torch.logsumexp(out, dim=1)
    # the inputs of the battery are chosen so that no row is empty
    assert torch.isfinite(lse).all(), f"unexpected empty rows: {lse}"
    assert lse.abs().max().item() < _tol(out.dtype)


def test_case_ids_are_unique_and_cover_every_neighbourhood():
    assert len(set(IDS)) == len(IDS)
    covered = {c.cls for c in CASES}
    for cls in (Gaussian, PerplexityGaussian, StudentT, KNN, SameLabel, PositivePairs, CrossModal,
                DataToClass, Identity, Cluster, DegreeWeightedCluster, Adjacency, Precomputed,
                MixUniform, Propagate):
        assert cls in covered, cls.__name__


# --------------------------------------------------------------------------------------------
# The contract battery
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_rows_log_sum_exp_to_zero(case: Case):
    nb = case.build()
    calls = []
    if case.self_input is not None:
        calls.append((case.self_input(F64), None))
    if case.pair_input is not None:
        calls.append(case.pair_input(F64))
    if case.per_anchor_input is not None:
        calls.append(case.per_anchor_input(F64))
    assert calls
    for x, y in calls:
        _assert_normalised(nb(x, y))


@by(lambda c: c.self_input is not None)
def test_self_handling(case: Case):
    nb = case.build()
    assert nb.include_self is case.include_self
    x = case.self_input(F64)
    out = nb(x)
    n = x.shape[0]
    if not case.self_square:  # candidates are classes, not the anchors
        assert out.shape == (n, case.kwargs["n_classes"])
        return
    assert out.shape == (n, n)
    diag = out.diagonal()
    if case.include_self:
        assert torch.isfinite(diag).all(), "include_self: the diagonal must be able to carry mass"
    else:
        assert (diag == NEG_INF).all(), "self must be excluded when y is None"
        off = out[~torch.eye(n, dtype=torch.bool)]
        # everything else is untouched by the self mask: at least one finite entry per row
        assert torch.isfinite(off.reshape(n, n - 1)).any(dim=1).all()


@by(lambda c: c.explicit_self and c.self_input is not None and c.pair_input is not None)
def test_explicit_candidates_are_never_masked(case: Case):
    """Passing the anchors as ``y`` makes j = i an ordinary candidate (only y=None masks it)."""
    nb = case.build()
    x = case.self_input(F64)
    out = nb(x, x)
    assert out.shape == (x.shape[0], x.shape[0])
    assert torch.isfinite(out.diagonal()).all()
    _assert_normalised(out)


@by(lambda c: c.pair_input is not None)
def test_shape_with_candidates(case: Case):
    nb = case.build()
    x, y = case.pair_input(F64)
    assert x.shape[0] != y.shape[0]
    out = nb(x, y)
    assert out.shape == (x.shape[0], y.shape[0])


@by(lambda c: c.per_anchor_input is not None)
def test_per_anchor_candidates(case: Case):
    """``y`` with one more dimension gives each anchor its own candidates: row i = nb(x_i, y_i)."""
    nb = case.build()
    x, y = case.per_anchor_input(F64)
    assert y.dim() == x.dim() + 1 and y.shape[0] == x.shape[0]
    out = nb(x, y)
    assert out.shape == (x.shape[0], y.shape[1])
    # the perplexity bisection stops within 1e-10 nats, batched or not
    atol = 1e-8 if case.cls is PerplexityGaussian else 1e-12
    for i in range(x.shape[0]):
        row = nb(x[i:i + 1], y[i])
        torch.testing.assert_close(out[i:i + 1], row, rtol=0, atol=atol)


@by(lambda c: c.float_input)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_dtype_and_device_preserved(case: Case, dtype: torch.dtype):
    nb = case.build()
    calls = []
    if case.self_input is not None:
        calls.append((case.self_input(dtype), None))
    if case.pair_input is not None:
        calls.append(case.pair_input(dtype))
    for x, y in calls:
        assert x.dtype == dtype
        out = nb(x, y)
        assert out.dtype == dtype
        assert out.device == x.device
        _assert_normalised(out)


def _finite_part(out: Tensor) -> Tensor:
    """-inf entries are constants; gradcheck needs finite outputs, so replace them by 0."""
    return out.masked_fill(~torch.isfinite(out.detach()), 0.0)


@by(lambda c: c.learned)
def test_gradcheck(case: Case):
    nb = case.build()
    prep = case.grad_input or (lambda t: t)
    x_self = case.self_input(F64).clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: _finite_part(nb(prep(a))), (x_self,))
    x, y = case.pair_input(F64)
    x, y = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: _finite_part(nb(prep(a), prep(b))), (x, y))
    if case.per_anchor_input is not None:
        x, y = case.per_anchor_input(F64)
        x, y = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
        assert torch.autograd.gradcheck(lambda a, b: _finite_part(nb(a, b)), (x, y))


def test_gradcheck_joint_student_t():
    nb = Joint(StudentT(dof=1.0))
    x = feats(6).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: _finite_part(nb(a)), (x,))
    x, y = feats(4).requires_grad_(True), feats(3, seed=1).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: nb(a, b), (x, y))


def test_learned_kernels_gradient_matches_numeric_loss_gradient():
    """End to end: the ICon gradient of a Gaussian q is the one autograd numerically checks."""
    loss = ICon(SameLabel(dtype=F64), Gaussian(temperature=0.5, metric="cosine"))
    z = feats(N_SELF).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: loss(a, labels(N_SELF)), (z,))


# --------------------------------------------------------------------------------------------
# Constructor arguments are stored under their own names and shown in repr
# --------------------------------------------------------------------------------------------

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # sparse CSR is "beta" in torch
    W_SPARSE_CSR = W_SPARSE_DENSE.to_sparse_csr()

OTHER_MODULES = [
    (Symmetrize, dict(base=KNN(n_neighbors=2))),
    (Joint, dict(base=StudentT(dof=2.0))),
    (ICon, dict(p=SameLabel(), q=Gaussian(temperature=0.1), divergence="cross_entropy",
                reduction="sum", symmetric=True, skip_empty_rows=True)),
    (Adjacency, dict(weights=W_SPARSE_CSR, include_self=True)),
]


def _same(stored, given) -> bool:
    if isinstance(given, Tensor):
        if not isinstance(stored, Tensor):
            return False
        a = stored.to_dense() if stored.layout != torch.strided else stored
        b = given.to_dense() if given.layout != torch.strided else given
        return a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(given, torch.nn.Module) or callable(given) or given is None or isinstance(given, bool):
        return stored is given
    if isinstance(given, (int, float)):
        return isinstance(stored, (int, float)) and not isinstance(stored, bool) and stored == given
    return type(stored) is type(given) and stored == given


@pytest.mark.parametrize("cls,kwargs", [(c.cls, c.kwargs) for c in CASES] + OTHER_MODULES,
                         ids=IDS + [f"{cls.__name__}-args" for cls, _ in OTHER_MODULES])
def test_constructor_arguments_stored_and_shown(cls, kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sparse CSR is "beta" in torch
        obj = cls(**kwargs)
    text = repr(obj)
    params = [p for p in inspect.signature(cls.__init__).parameters.values() if p.name != "self"]
    assert params
    for p in params:
        given = kwargs.get(p.name, p.default)
        assert given is not inspect.Parameter.empty, f"{p.name} is required but not in the case"
        assert hasattr(obj, p.name), f"{cls.__name__}.{p.name} is not stored"
        stored = getattr(obj, p.name)
        assert _same(stored, given), f"{cls.__name__}.{p.name}: stored {stored!r}, given {given!r}"
        if given is None:
            continue  # e.g. Gaussian(temperature=...) does not show sigma=None
        if isinstance(given, torch.nn.Module):
            assert f"({p.name}): " in text, text
        elif isinstance(given, Tensor):
            assert f"{p.name}=<" in text, text
        elif callable(given):
            assert f"{p.name}={given.__name__}" in text, text
        else:
            assert f"{p.name}={stored!r}" in text, text
