"""The Neighborhood contract (``icontorch.neighborhoods.base``), checked on every neighbourhood.

One list, ``CASES``, drives the contract battery: each entry builds a neighbourhood and the
inputs that suit it (features, ids, log soft assignments or node ids). Per-kernel formula pins
against independent numpy / scipy / scikit-learn computations follow the battery.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import warnings
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from icontorch import (KNN, Adjacency, Cluster, CrossModal, DataToClass, DegreeWeightedCluster,
                       FromCallable, Gaussian, ICon, IConError, Identity, PerplexityGaussian,
                       PositivePairs, Precomputed, SameLabel, StudentT)
from icontorch.neighborhoods import Neighborhood
from icontorch.transforms import Joint, MixUniform, Propagate, Symmetrize

F64 = torch.float64
NEG_INF = float("-inf")
N_SELF = 8   # anchors when they are their own candidates
N = 7        # anchors when candidates are given
M = 5        # candidates (N != M on purpose)
D = 3        # feature dimension
C = 4        # clusters / classes


# --------------------------------------------------------------------------------------------
# Inputs (all seeded)
# --------------------------------------------------------------------------------------------

def feats(n: int, dtype: torch.dtype = F64, seed: int = 0, d: int = D) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=F64).to(dtype)


def feats3(n: int, m: int, dtype: torch.dtype = F64, seed: int = 2) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, m, D, generator=g, dtype=F64).to(dtype)


def log_assign(n: int, dtype: torch.dtype = F64, seed: int = 0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.log_softmax(2.0 * torch.randn(n, C, generator=g, dtype=F64), dim=1).to(dtype)


def labels(n: int, k: int = 3) -> Tensor:
    """``0, 1, .., k-1, 0, 1, ..``: with n >= 2k every label occurs at least twice."""
    return torch.arange(n) % k


N_NODES = 10
_g = torch.Generator().manual_seed(5)
_W = torch.rand(N_NODES, N_NODES, generator=_g, dtype=F64) + 0.1
W_DENSE = (_W + _W.T) / 2  # positive everywhere, self-loops included
_ii, _jj = torch.meshgrid(torch.arange(N_NODES), torch.arange(N_NODES), indexing="ij")
W_SPARSE_DENSE = W_DENSE.masked_fill((_ii - _jj).abs() == 3, 0.0)  # a few missing edges
W_SPARSE = W_SPARSE_DENSE.to_sparse_coo()
SELF_NODES = torch.tensor([3, 0, 7, 1, 9, 4, 2, 8])
PAIR_NODES = (torch.tensor([5, 1, 8, 0, 6, 3, 9]), torch.tensor([2, 7, 4, 0, 1]))

DEGREE = torch.tensor([1.0, 2.5, 0.5, 3.0, 1.5], dtype=F64)  # M nodes


def _precomputed_square() -> Tensor:
    g = torch.Generator().manual_seed(7)
    logits = torch.randn(N_SELF, N_SELF, generator=g, dtype=F64)
    logits.fill_diagonal_(NEG_INF)
    return torch.log_softmax(logits, dim=1)


def _precomputed_rect() -> Tensor:
    g = torch.Generator().manual_seed(8)
    return torch.log_softmax(torch.randn(N, M, generator=g, dtype=F64), dim=1)


PRE_SQUARE = _precomputed_square()
PRE_RECT = _precomputed_rect()


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


def test_identity_puts_all_mass_on_self():
    out = Identity(dtype=F64)(torch.arange(5))
    assert torch.equal(out.exp(), torch.eye(5, dtype=F64))


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


@pytest.mark.parametrize("cls,kwargs,x", [
    (SameLabel, {}, labels(6)),
    (PositivePairs, {}, labels(6)),
    (Identity, {}, torch.arange(4)),
    (DataToClass, {"n_classes": 3}, labels(6)),
], ids=["same-label", "positive-pairs", "identity", "data-to-class"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_discrete_dtype_argument_and_default(cls, kwargs, x, dtype):
    assert cls(dtype=dtype, **kwargs)(x).dtype == dtype
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        out = cls(**kwargs)(x)
    finally:
        torch.set_default_dtype(previous)
    assert out.dtype == dtype


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


def test_precomputed_infers_include_self():
    assert Precomputed(PRE_SQUARE).include_self is False
    assert Precomputed(PRE_RECT).include_self is True
    full = torch.log_softmax(feats(4, d=4), dim=1)
    assert Precomputed(full).include_self is True
    with pytest.raises(IConError, match=r"include_self must be true for a non-square log_p; got False"):
        Precomputed(PRE_RECT, include_self=False)


def test_precomputed_checks_the_number_of_anchors():
    with pytest.raises(IConError, match=r"Precomputed: x must hold the 8 anchors"):
        Precomputed(PRE_SQUARE)(torch.zeros(5, 1))
    assert Precomputed(PRE_SQUARE)(None) is not None


# --------------------------------------------------------------------------------------------
# Documented empty rows
# --------------------------------------------------------------------------------------------

def test_same_label_singleton_has_an_empty_row():
    y = torch.tensor([0, 0, 1, 2, 2, 2])
    out = SameLabel(dtype=F64)(y)
    assert (out[2] == NEG_INF).all()
    lse = torch.logsumexp(out, dim=1)
    keep = torch.arange(6) != 2
    assert lse[keep].abs().max() < 1e-12
    # with self included the singleton is its own neighbour
    out = SameLabel(include_self=True, dtype=F64)(y)
    assert out[2, 2] == 0.0


def test_adjacency_isolated_node_has_an_empty_row():
    w = torch.ones(4, 4, dtype=F64)
    w[3, :] = 0.0
    w[:, 3] = 0.0
    out = Adjacency(w)(torch.arange(4))
    assert (out[3] == NEG_INF).all()
    torch.testing.assert_close(out[:3].exp().sum(1), torch.ones(3, dtype=F64))


def test_data_to_class_missing_prototype_gives_an_empty_row():
    out = DataToClass(3, dtype=F64)(torch.tensor([0, 2, 1]), torch.tensor([0, 1, 0]))
    assert (out[1] == NEG_INF).all()
    assert torch.equal(out[0].exp(), torch.tensor([0.5, 0.0, 0.5], dtype=F64))


# --------------------------------------------------------------------------------------------
# Formula pins against independent numpy / scipy / scikit-learn computations
# --------------------------------------------------------------------------------------------

def np_similarity(metric: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    if metric == "squared_euclidean":
        return -((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    if metric == "cosine":
        xn = x / np.linalg.norm(x, axis=1, keepdims=True)
        yn = y / np.linalg.norm(y, axis=1, keepdims=True)
        return xn @ yn.T
    return x @ y.T


def np_row_normalise(w: np.ndarray) -> np.ndarray:
    return w / w.sum(axis=1, keepdims=True)


def np_sq_dist(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)


@pytest.mark.parametrize("metric", ["squared_euclidean", "cosine", "dot"])
@pytest.mark.parametrize("width", [("sigma", 0.7), ("temperature", 0.4)], ids=["sigma", "temperature"])
def test_gaussian_formula(metric, width):
    name, value = width
    nb = Gaussian(metric=metric, **{name: value})
    scale = 1.0 / (2.0 * value ** 2) if name == "sigma" else 1.0 / value
    x, y = feats(6).numpy(), feats(4, seed=1).numpy()
    w = np.exp(np_similarity(metric, x, x) * scale)
    np.fill_diagonal(w, 0.0)
    np.testing.assert_allclose(nb(torch.from_numpy(x)).exp().numpy(), np_row_normalise(w),
                               rtol=1e-10, atol=1e-14)
    w = np.exp(np_similarity(metric, x, y) * scale)
    np.testing.assert_allclose(nb(torch.from_numpy(x), torch.from_numpy(y)).exp().numpy(),
                               np_row_normalise(w), rtol=1e-10, atol=1e-14)


def test_gaussian_sigma_and_temperature_agree():
    x = feats(6)
    torch.testing.assert_close(Gaussian(sigma=0.5)(x), Gaussian(temperature=0.5)(x))
    torch.testing.assert_close(Gaussian(sigma=0.5)(x), Gaussian(temperature=2 * 0.5 ** 2)(x))
    assert Gaussian(sigma=0.5).scale == pytest.approx(2.0)
    assert Gaussian(temperature=0.25).scale == pytest.approx(4.0)


def test_gaussian_include_self_keeps_the_diagonal():
    x = feats(5).numpy()
    w = np.exp(-np_sq_dist(x, x) / 2.0)  # diagonal weight 1
    out = Gaussian(sigma=1.0, include_self=True)(torch.from_numpy(x)).exp().numpy()
    np.testing.assert_allclose(out, np_row_normalise(w), rtol=1e-10)


@pytest.mark.parametrize("dof", [1.0, 3.0, 0.5])
def test_student_t_formula(dof):
    x, y = feats(6).numpy(), feats(4, seed=1).numpy()
    w = (1.0 + np_sq_dist(x, x) / dof) ** (-(dof + 1.0) / 2.0)
    np.fill_diagonal(w, 0.0)
    out = StudentT(dof=dof)(torch.from_numpy(x)).exp().numpy()
    np.testing.assert_allclose(out, np_row_normalise(w), rtol=1e-10, atol=1e-14)
    w = (1.0 + np_sq_dist(x, y) / dof) ** (-(dof + 1.0) / 2.0)
    out = StudentT(dof=dof)(torch.from_numpy(x), torch.from_numpy(y)).exp().numpy()
    np.testing.assert_allclose(out, np_row_normalise(w), rtol=1e-10, atol=1e-14)


def test_student_t_tends_to_gaussian():
    x = feats(6)
    torch.testing.assert_close(StudentT(dof=1e7)(x), Gaussian(sigma=1.0)(x), rtol=0, atol=1e-5)


def _np_row_entropy(p: np.ndarray) -> np.ndarray:
    safe = np.where(p > 0, p, 1.0)
    return -(p * np.log(safe)).sum(axis=1)


@pytest.mark.parametrize("n,perplexity,seed", [(40, 10.0, 0), (25, 5.0, 1), (12, 3.0, 2)])
def test_perplexity_gaussian_matches_target_and_scikit_learn(n, perplexity, seed):
    from sklearn.manifold._utils import _binary_search_perplexity

    x = feats(n, seed=seed, d=5)
    p = PerplexityGaussian(perplexity)(x).exp().numpy()
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-12)
    assert np.all(np.diag(p) == 0.0)
    np.testing.assert_allclose(np.exp(_np_row_entropy(p)), perplexity, rtol=0, atol=1e-8)

    xn = x.numpy()
    dist = np_sq_dist(xn, xn)
    ref = _binary_search_perplexity(dist.astype(np.float32), perplexity, 0)
    # scikit-learn stops its bisection once |H - log(perplexity)| < 1e-5 nats (its
    # PERPLEXITY_TOLERANCE), so its own P is only that accurate: the pin is at 1e-5, and the
    # tighter check is against an exact root below.
    assert np.abs(_np_row_entropy(ref) - math.log(perplexity)).max() < 1e-5
    np.testing.assert_allclose(p, ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize("perplexity", [2.0, 6.0])
def test_perplexity_gaussian_matches_an_exact_root(perplexity):
    """The per-row precision equals the scipy root of H(beta) = log(perplexity), to 1e-8 in P."""
    from scipy.optimize import brentq

    x = feats(15, seed=3, d=4).numpy()
    dist = np_sq_dist(x, x)
    expected = np.zeros_like(dist)
    for i in range(len(x)):
        d = np.delete(dist[i], i)

        def excess(log_beta, d=d):
            w = np.exp(-np.exp(log_beta) * (d - d.min()))
            q = w / w.sum()
            return -(q * np.log(np.where(q > 0, q, 1.0))).sum() - math.log(perplexity)

        beta = math.exp(brentq(excess, -30.0, 30.0, xtol=1e-14))
        w = np.exp(-beta * (d - d.min()))
        expected[i] = np.insert(w / w.sum(), i, 0.0)
    out = PerplexityGaussian(perplexity)(torch.from_numpy(x)).exp().numpy()
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-8)


def test_perplexity_gaussian_with_candidates():
    x, y = feats(4), feats(9, seed=1)
    p = PerplexityGaussian(4.0)(x, y).exp().numpy()
    np.testing.assert_allclose(np.exp(_np_row_entropy(p)), 4.0, atol=1e-8)
    assert np.all(p > 0)


def np_cluster(phi_x: np.ndarray, phi_y: np.ndarray, weight: Optional[np.ndarray] = None) -> np.ndarray:
    """``q_ij = sum_c phi_ic phi_jc w_j / sum_k phi_kc w_k``, written as loops over the definition."""
    n, m = phi_x.shape[0], phi_y.shape[0]
    w = np.ones(m) if weight is None else weight
    q = np.zeros((n, m))
    for i in range(n):
        for j in range(m):
            for c in range(phi_x.shape[1]):
                q[i, j] += phi_x[i, c] * phi_y[j, c] * w[j] / sum(phi_y[k, c] * w[k] for k in range(m))
    return q


def test_cluster_formula():
    lx, ly = log_assign(6), log_assign(4, seed=1)
    px, py = lx.exp().numpy(), ly.exp().numpy()
    q = np_cluster(px, px)
    np.testing.assert_allclose(q.sum(1), 1.0, atol=1e-12)  # rows sum to 1 including self
    np.testing.assert_allclose(Cluster()(lx).exp().numpy(), q, rtol=1e-10, atol=1e-14)
    off = q.copy()
    np.fill_diagonal(off, 0.0)
    np.testing.assert_allclose(Cluster(include_self=False)(lx).exp().numpy(), np_row_normalise(off),
                               rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(Cluster()(lx, ly).exp().numpy(), np_cluster(px, py),
                               rtol=1e-10, atol=1e-14)


def test_cluster_hard_assignments_are_uniform_over_the_cluster():
    assign = torch.tensor([0, 0, 1, 1, 1, 2])
    expected = (assign[:, None] == assign[None, :]).to(F64)
    expected = expected / expected.sum(1, keepdim=True)
    for n_clusters in (3, 5):  # with 5, two clusters are empty in the batch
        log_phi = torch.log(F.one_hot(assign, n_clusters).to(F64))
        torch.testing.assert_close(Cluster()(log_phi).exp(), expected)


def test_degree_weighted_cluster_formula():
    lx = log_assign(M, seed=3)
    px = lx.exp().numpy()
    d = DEGREE.numpy()
    np.testing.assert_allclose(DegreeWeightedCluster(DEGREE)(lx).exp().numpy(), np_cluster(px, px, d),
                               rtol=1e-10, atol=1e-14)
    la = log_assign(3, seed=4)
    np.testing.assert_allclose(DegreeWeightedCluster(DEGREE)(la, lx).exp().numpy(),
                               np_cluster(la.exp().numpy(), px, d), rtol=1e-10, atol=1e-14)
    # unit degrees give the plain cluster kernel
    torch.testing.assert_close(DegreeWeightedCluster(torch.ones(M, dtype=F64))(lx), Cluster()(lx))


@pytest.mark.parametrize("metric", ["squared_euclidean", "cosine", "dot"])
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("include_self", [False, True], ids=["no-self", "self"])
def test_knn_formula(metric, k, include_self):
    x, y = feats(9, d=4).numpy(), feats(6, seed=1, d=4).numpy()

    def brute_force(dist):
        expected = np.zeros_like(dist)
        for i, order in enumerate(np.argsort(dist, axis=1, kind="stable")):
            expected[i, order[:k]] = 1.0 / k
        return expected

    # nearest = smallest "distance" = largest similarity; self pushed to the end unless included
    dist = -np_similarity(metric, x, x)
    if not include_self:
        np.fill_diagonal(dist, np.inf)
    out = KNN(n_neighbors=k, metric=metric, include_self=include_self)(torch.from_numpy(x))
    np.testing.assert_allclose(out.exp().numpy(), brute_force(dist), rtol=1e-12, atol=0)
    assert ((out > NEG_INF).sum(1) == k).all()

    out = KNN(n_neighbors=k, metric=metric, include_self=include_self)(torch.from_numpy(x), torch.from_numpy(y))
    np.testing.assert_allclose(out.exp().numpy(), brute_force(-np_similarity(metric, x, y)),
                               rtol=1e-12, atol=0)


def test_knn_include_self_counts_self_as_nearest():
    x = feats(7)
    out = KNN(n_neighbors=2, include_self=True)(x).exp()
    torch.testing.assert_close(out.diagonal(), torch.full((7,), 0.5, dtype=F64))
    nearest_other = KNN(n_neighbors=1)(x).exp()
    torch.testing.assert_close(out - torch.diag(out.diagonal()), nearest_other / 2)


def test_knn_output_is_a_constant_of_the_inputs():
    x = feats(6).requires_grad_(True)
    out = KNN(n_neighbors=2)(x)
    assert not out.requires_grad


def test_same_label_formula():
    y = torch.tensor([0, 1, 0, 2, 1, 0, 2, 2, 2])
    yn = y.numpy()
    match = (yn[:, None] == yn[None, :]).astype(float)
    np.fill_diagonal(match, 0.0)
    expected = match / match.sum(1, keepdims=True)  # 1[y_i = y_j] / (K_i - 1)
    np.testing.assert_allclose(SameLabel(dtype=F64)(y).exp().numpy(), expected, rtol=1e-15)
    match = (yn[:, None] == yn[None, :]).astype(float)
    np.testing.assert_allclose(SameLabel(include_self=True, dtype=F64)(y).exp().numpy(),
                               match / match.sum(1, keepdims=True), rtol=1e-15)


def test_positive_pairs_two_views_are_identity_blocks():
    b = 4
    ids = torch.cat([torch.arange(b), torch.arange(b)])
    out = PositivePairs(dtype=F64)(ids).exp()
    eye = torch.eye(b, dtype=F64)
    expected = torch.cat([torch.cat([0 * eye, eye], 1), torch.cat([eye, 0 * eye], 1)], 0)
    assert torch.equal(out, expected)


def test_cross_modal_is_identity_between_modalities():
    out = CrossModal(dtype=F64)(torch.arange(5), torch.arange(5)).exp()
    assert torch.equal(out, torch.eye(5, dtype=F64))
    out = CrossModal(dtype=F64)(torch.tensor([0, 1]), torch.tensor([1, 0, 1])).exp()
    assert torch.equal(out, torch.tensor([[0.0, 1.0, 0.0], [0.5, 0.0, 0.5]], dtype=F64))


def test_data_to_class_is_one_hot():
    y = torch.tensor([2, 0, 3, 3, 1])
    out = DataToClass(4, dtype=F64)(y).exp()
    assert torch.equal(out, F.one_hot(y, 4).to(F64))


@pytest.mark.parametrize("weights", [W_DENSE, W_SPARSE_DENSE, W_SPARSE], ids=["dense", "dense-zeros", "sparse"])
def test_adjacency_formula(weights):
    w = (weights.to_dense() if weights.layout != torch.strided else weights).numpy()
    x, y = PAIR_NODES
    sub = w[np.ix_(SELF_NODES.numpy(), SELF_NODES.numpy())].copy()
    np.fill_diagonal(sub, 0.0)
    np.testing.assert_allclose(Adjacency(weights)(SELF_NODES).exp().numpy(), np_row_normalise(sub),
                               rtol=1e-12)
    sub = w[np.ix_(SELF_NODES.numpy(), SELF_NODES.numpy())]
    np.testing.assert_allclose(Adjacency(weights, include_self=True)(SELF_NODES).exp().numpy(),
                               np_row_normalise(sub), rtol=1e-12)
    sub = w[np.ix_(x.numpy(), y.numpy())]
    np.testing.assert_allclose(Adjacency(weights)(x, y).exp().numpy(), np_row_normalise(sub),
                               rtol=1e-12)


def test_adjacency_sparse_equals_dense():
    dense, sparse = Adjacency(W_SPARSE_DENSE), Adjacency(W_SPARSE)
    assert torch.equal(dense(SELF_NODES), sparse(SELF_NODES))
    assert torch.equal(dense(*PAIR_NODES), sparse(*PAIR_NODES))
    assert (dense(SELF_NODES) == NEG_INF).sum() > N_SELF  # missing edges are -inf, not just self
