"""The named transforms: mix_uniform, symmetrize, joint, propagate, against numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor

from icontorch import (
    KNN,
    Cluster,
    DataToClass,
    Gaussian,
    ICon,
    IConError,
    PerplexityGaussian,
    Precomputed,
    SameLabel,
    StudentT,
    joint,
    mix_uniform,
    propagate,
    symmetrize,
)
from icontorch.divergences import kl
from icontorch.neighborhoods import Neighborhood
from icontorch.transforms import Joint, MixUniform, Propagate, Symmetrize

F64 = torch.float64
NEG_INF = float("-inf")


def feats(n: int, seed: int = 0, d: int = 3) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=F64)


def log_assign(n: int, c: int = 4, seed: int = 0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.log_softmax(2.0 * torch.randn(n, c, generator=g, dtype=F64), dim=1)


def np_sq_dist(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)


class Raw(Neighborhood):
    """A bare matrix returned as is (no row check), to feed transforms non-conditional input."""

    def __init__(self, log_p: Tensor, include_self: bool = False) -> None:
        super().__init__()
        self.log_p = log_p
        self.include_self = include_self

    def forward(self, x=None, y=None) -> Tensor:
        return self.log_p


# --------------------------------------------------------------------------------------------
# mix_uniform
# --------------------------------------------------------------------------------------------

BASES = [
    ("gaussian", lambda: Gaussian(sigma=1.0), lambda: feats(7), False),
    ("knn", lambda: KNN(n_neighbors=2), lambda: feats(7), False),
    ("same-label", lambda: SameLabel(dtype=F64), lambda: torch.tensor([0, 1, 0, 1, 2, 2, 0]), False),
    ("cluster", lambda: Cluster(), lambda: log_assign(7), True),
]


@pytest.mark.parametrize("name,base,inputs,includes_self", BASES, ids=[b[0] for b in BASES])
def test_mix_uniform_alpha_zero_is_the_base(name, base, inputs, includes_self):
    nb, x = base(), inputs()
    mixed = mix_uniform(nb, 0.0)
    assert isinstance(mixed, MixUniform) and mixed.base is nb
    assert mixed.include_self is includes_self
    assert torch.equal(mixed(x), nb(x))


@pytest.mark.parametrize("name,base,inputs,includes_self", BASES, ids=[b[0] for b in BASES])
def test_mix_uniform_alpha_one_is_uniform_over_candidates(name, base, inputs, includes_self):
    nb, x = base(), inputs()
    n = x.shape[0]
    out = mix_uniform(nb, 1.0)(x).exp()
    expected = torch.full((n, n), 1.0 / (n if includes_self else n - 1), dtype=F64)
    if not includes_self:
        expected.fill_diagonal_(0.0)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=0)
    assert (out.diagonal() == 0).all() != includes_self


@pytest.mark.parametrize("alpha", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("name,base,inputs,includes_self", BASES, ids=[b[0] for b in BASES])
def test_mix_uniform_values(name, base, inputs, includes_self, alpha):
    nb, x = base(), inputs()
    n = x.shape[0]
    p = nb(x).exp().numpy()
    big_n = n if includes_self else n - 1
    expected = (1 - alpha) * p + alpha / big_n
    if not includes_self:
        np.fill_diagonal(expected, 0.0)
    out = mix_uniform(nb, alpha)(x)
    np.testing.assert_allclose(out.exp().numpy(), expected, rtol=1e-12, atol=1e-15)
    assert torch.isfinite(out[~torch.eye(n, dtype=torch.bool)]).all()  # every negative gets mass


def test_mix_uniform_with_candidates_counts_every_column():
    x, y = feats(4), feats(6, seed=1)
    p = Gaussian(sigma=1.0)(x, y).exp().numpy()
    out = mix_uniform(Gaussian(sigma=1.0), 0.3)(x, y).exp().numpy()
    np.testing.assert_allclose(out, 0.7 * p + 0.3 / 6, rtol=1e-12)


def test_mix_uniform_is_label_smoothing_on_class_targets():
    """Fig. 4 of the paper: 4 classes and alpha = 0.4 turn one-hot into [0.7, 0.1, 0.1, 0.1]."""
    out = mix_uniform(DataToClass(4, dtype=F64), 0.4)(torch.tensor([0, 2])).exp()
    expected = torch.tensor([[0.7, 0.1, 0.1, 0.1], [0.1, 0.1, 0.7, 0.1]], dtype=F64)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=0)


def test_mix_uniform_keeps_empty_rows_empty():
    y = torch.tensor([0, 0, 1, 2, 2])
    out = mix_uniform(SameLabel(dtype=F64), 0.5)(y)
    assert (out[2] == NEG_INF).all()
    p = SameLabel(dtype=F64)(y).exp().numpy()
    expected = 0.5 * p + 0.5 / 4
    np.fill_diagonal(expected, 0.0)
    keep = [0, 1, 3, 4]
    np.testing.assert_allclose(out.exp().numpy()[keep], expected[keep], rtol=1e-12)


def test_mix_uniform_on_the_learned_side_has_gradient():
    z = feats(8).requires_grad_(True)
    y = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    loss_fn = ICon(SameLabel(dtype=F64), mix_uniform(Gaussian(temperature=0.5, metric="cosine"), 0.3))
    loss = loss_fn(z, y)
    loss.backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    assert torch.autograd.gradcheck(lambda a: loss_fn(a, y), (z.detach().clone().requires_grad_(True),))
    # the mixed q's gradient differs from the plain q's: the mixture is really differentiated
    z2 = z.detach().clone().requires_grad_(True)
    ICon(SameLabel(dtype=F64), Gaussian(temperature=0.5, metric="cosine"))(z2, y).backward()
    assert not torch.allclose(z.grad, z2.grad)


def test_mix_uniform_on_both_sides_equals_numpy():
    """Fig. 6 "debias both": KL((1-a) p + a/N || (1-a) q + a/N), p a kNN graph, q the cluster kernel."""
    alpha = 0.4
    x, logits = feats(8, seed=3), torch.randn(8, 3, generator=torch.Generator().manual_seed(4), dtype=F64)
    logits.requires_grad_(True)
    loss_fn = ICon(mix_uniform(KNN(n_neighbors=2), alpha), mix_uniform(Cluster(), alpha))
    loss = loss_fn(torch.log_softmax(logits, dim=1), x)

    phi = torch.softmax(logits, dim=1).detach().numpy()
    q = phi @ (phi / phi.sum(0)).T  # cluster kernel, self included: N = 8
    q = (1 - alpha) * q + alpha / 8
    p = KNN(n_neighbors=2)(x).exp().numpy()
    p = (1 - alpha) * p + alpha / 7  # KNN excludes self: N = 7
    np.fill_diagonal(p, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = np.where(p > 0, p * (np.log(p) - np.log(q)), 0.0).sum(1).mean()
    assert loss.item() == pytest.approx(expected, rel=1e-10)
    loss.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


@pytest.mark.parametrize("make", [lambda: symmetrize(PerplexityGaussian(3.0)), lambda: joint(StudentT(1.0))],
                         ids=["symmetrize", "joint"])
def test_mix_uniform_over_a_joint_row_excludes_the_self_pairs(make):
    """A joint row's candidates are the n(n-1) ordered pairs i != j, as in the base."""
    x, alpha, n = feats(6), 0.2, 6
    base = make()
    p = base(x).exp().numpy().reshape(n, n)
    expected = (1 - alpha) * p + alpha / (n * (n - 1))
    np.fill_diagonal(expected, 0.0)
    out = mix_uniform(base, alpha)(x)
    assert (out.reshape(n, n).diagonal() == NEG_INF).all()
    np.testing.assert_allclose(out.exp().numpy(), expected.reshape(1, -1), rtol=1e-12)
    # so a debiased t-SNE target stays finite against the Cauchy joint Q, which excludes self pairs
    loss = ICon(mix_uniform(symmetrize(PerplexityGaussian(3.0)), alpha), joint(StudentT(1.0)))
    assert torch.isfinite(loss(feats(6, seed=1, d=2), x))


def test_mix_uniform_over_a_joint_row_with_candidates_counts_every_pair():
    z, c = feats(3), feats(4, seed=1)
    q = joint(StudentT(1.0))(z, c).exp().numpy()
    out = mix_uniform(joint(StudentT(1.0)), 0.5)(z, c).exp().numpy()
    np.testing.assert_allclose(out, 0.5 * q + 0.5 / 12, rtol=1e-12)


# --------------------------------------------------------------------------------------------
# symmetrize
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("base", [PerplexityGaussian(3.0), KNN(n_neighbors=2), Gaussian(sigma=0.7)],
                         ids=["perplexity", "knn", "gaussian"])
def test_symmetrize_equals_t_sne_joint(base):
    x = feats(9)
    n = 9
    p = base(x).exp().numpy()
    expected = ((p + p.T) / (2 * n)).reshape(1, -1)
    out = symmetrize(base)(x)
    assert isinstance(symmetrize(base), Symmetrize)
    assert out.shape == (1, n * n)
    np.testing.assert_allclose(out.exp().numpy(), expected, rtol=1e-12, atol=1e-16)
    assert (out.reshape(n, n).diagonal() == NEG_INF).all()
    sym = out.exp().reshape(n, n)
    torch.testing.assert_close(sym, sym.T, rtol=0, atol=1e-16)


def test_symmetrize_is_not_idempotent():
    """Its output is a (1, n*n) row, which symmetrize cannot take again."""
    inner = symmetrize(KNN(n_neighbors=3))
    assert inner(feats(9)).shape == (1, 81)
    with pytest.raises(IConError, match=r"^Symmetrize: base\(x\) must be a square \(n, n\) matrix; "
                                        r"got tensor of shape \(1, 81\)"):
        symmetrize(inner)(feats(9))


def test_symmetrize_is_exactly_symmetric():
    """A case where log(p_ij + p_ji) and log(p_ji + p_ij) once rounded apart by one ulp."""
    log_p = torch.tensor([[0.5, 0, 0, 0, 0.5], [1, 0, 0, 0, 0], [1, 0, 0, 0, 0], [1, 0, 0, 0, 0],
                          [1 / 3, 1 / 3, 1 / 3, 0, 0]], dtype=F64).log()
    joint_p = symmetrize(Precomputed(log_p, include_self=True))(None).reshape(5, 5)
    assert torch.equal(joint_p, joint_p.T)


def test_symmetrize_rescales_a_symmetric_matrix_to_mass_one():
    """For a symmetric base matrix A the joint is A / sum(A): a symmetric joint comes back as it is."""
    x = feats(9)
    once = symmetrize(KNN(n_neighbors=3))(x)
    twice = symmetrize(Raw(once.reshape(9, 9)))(None)
    torch.testing.assert_close(twice, once, rtol=0, atol=1e-14)
    a = torch.rand(9, 9, generator=torch.Generator().manual_seed(3), dtype=F64)
    a = a + a.T
    out = symmetrize(Raw(a.log()))(None)
    torch.testing.assert_close(out.exp(), (a / a.sum()).reshape(1, -1), rtol=1e-12, atol=0)


def _doubly_stochastic_symmetric(n: int, seed: int) -> Tensor:
    """A convex mix of perfect matchings: symmetric, zero diagonal, rows and columns sum to 1."""
    g = torch.Generator().manual_seed(seed)
    out = torch.zeros(n, n, dtype=F64)
    weights = torch.rand(3, generator=g, dtype=F64)
    weights = weights / weights.sum()
    for w in weights:
        perm = torch.randperm(n, generator=g)
        a, b = perm[: n // 2], perm[n // 2:]
        out[a, b] += w
        out[b, a] += w
    return out


def test_symmetrize_of_a_symmetric_doubly_stochastic_conditional_is_p_over_n():
    """Precomputed only takes conditional rows, so the joint is fed back as ``n * P`` rows.

    For a symmetric, doubly stochastic conditional P the joint is ``P / n``, and symmetrising
    the conditional ``n * reshape(joint)`` again gives the same joint.
    """
    n = 8
    p = _doubly_stochastic_symmetric(n, seed=0)
    once = symmetrize(Precomputed(p.log()))(None)
    torch.testing.assert_close(once.exp(), (p / n).reshape(1, -1), rtol=1e-12, atol=0)
    again = symmetrize(Precomputed((n * once.exp()).reshape(n, n).log()))(None)
    torch.testing.assert_close(again, once, rtol=0, atol=1e-13)


# --------------------------------------------------------------------------------------------
# joint
# --------------------------------------------------------------------------------------------

def test_joint_student_t_is_the_t_sne_q():
    z = feats(7, seed=2, d=2)
    w = 1.0 / (1.0 + np_sq_dist(z.numpy(), z.numpy()))
    np.fill_diagonal(w, 0.0)
    expected = (w / w.sum()).reshape(1, -1)  # w_ij / sum_{k != l} w_kl
    out = joint(StudentT(1.0))(z)
    assert isinstance(joint(StudentT(1.0)), Joint)
    assert out.shape == (1, 49)
    np.testing.assert_allclose(out.exp().numpy(), expected, rtol=1e-12, atol=1e-16)


def test_joint_with_candidates_normalises_over_all_pairs():
    z, c = feats(4, seed=2, d=2), feats(5, seed=3, d=2)
    w = (1.0 + np_sq_dist(z.numpy(), c.numpy()) / 2.0) ** (-1.5)
    out = joint(StudentT(2.0))(z, c)
    np.testing.assert_allclose(out.exp().numpy(), (w / w.sum()).reshape(1, -1), rtol=1e-12)


def test_joint_of_a_kernel_including_self_keeps_the_diagonal():
    z = feats(5)
    w = np.exp(-np_sq_dist(z.numpy(), z.numpy()) / 2.0)
    out = joint(Gaussian(sigma=1.0, include_self=True))(z)
    np.testing.assert_allclose(out.exp().numpy(), (w / w.sum()).reshape(1, -1), rtol=1e-12)


def test_t_sne_objective_is_kl_of_the_joints():
    x, z = feats(10, seed=0, d=5), feats(10, seed=1, d=2)
    loss = ICon(symmetrize(PerplexityGaussian(4.0)), joint(StudentT(1.0)))(z, x)
    p = symmetrize(PerplexityGaussian(4.0))(x).exp().numpy().reshape(10, 10)
    w = 1.0 / (1.0 + np_sq_dist(z.numpy(), z.numpy()))
    np.fill_diagonal(w, 0.0)
    q = w / w.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = np.where(p > 0, p * np.log(p / q), 0.0).sum()
    assert loss.item() == pytest.approx(expected, rel=1e-10)


# --------------------------------------------------------------------------------------------
# propagate
# --------------------------------------------------------------------------------------------

def _np_knn_graph(x: np.ndarray, k: int) -> np.ndarray:
    d = np_sq_dist(x, x)
    np.fill_diagonal(d, np.inf)
    p = np.zeros_like(d)
    for i, order in enumerate(np.argsort(d, axis=1)):
        p[i, order[:k]] = 1.0 / k
    return p


@pytest.mark.parametrize("steps", [1, 2, 3])
@pytest.mark.parametrize("mode", ["sum", "reach"])
def test_propagate_equals_matrix_powers(steps, mode):
    x = feats(10, seed=4, d=2)
    p = _np_knn_graph(x.numpy(), 2)
    total = sum(np.linalg.matrix_power(p, s) for s in range(1, steps + 1))
    w = total if mode == "sum" else (total > 0).astype(float)
    np.fill_diagonal(w, 0.0)
    expected = w / w.sum(1, keepdims=True)
    out = propagate(KNN(n_neighbors=2), steps, mode)(x)
    assert isinstance(propagate(KNN(n_neighbors=2), steps, mode), Propagate)
    np.testing.assert_allclose(out.exp().numpy(), expected, rtol=1e-12, atol=1e-15)
    assert (out.diagonal() == NEG_INF).all()


def test_propagate_reaches_further_with_more_steps():
    x = feats(10, seed=4, d=2)
    reach = [int((propagate(KNN(n_neighbors=2), s, "reach")(x) > NEG_INF).sum()) for s in (1, 2, 3)]
    assert reach[0] == 20 and reach[0] < reach[1] < reach[2]


@pytest.mark.parametrize("base,inputs", [
    (KNN(n_neighbors=2), lambda: feats(8)),
    (Gaussian(sigma=1.0), lambda: feats(8)),
    (SameLabel(dtype=F64), lambda: torch.tensor([0, 1, 0, 1, 2, 2, 1, 0])),
    (Cluster(), lambda: log_assign(8)),
], ids=["knn", "gaussian", "same-label", "cluster-include-self"])
def test_propagate_one_step_is_the_base(base, inputs):
    x = inputs()
    torch.testing.assert_close(propagate(base, 1)(x), base(x), rtol=0, atol=1e-13)
    if isinstance(base, KNN):  # uniform over its support, so "reach" is the base too
        torch.testing.assert_close(propagate(base, 1, "reach")(x), base(x), rtol=0, atol=1e-13)


def test_propagate_one_step_reach_is_uniform_over_the_support():
    """Not the base: a Gaussian's support is every other point, so each row is 1 / (n - 1)."""
    x = feats(8)
    out = propagate(Gaussian(sigma=1.0), 1, "reach")(x)
    expected = torch.full((8, 8), -np.log(7.0), dtype=F64).fill_diagonal_(NEG_INF)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-13)
    assert not torch.allclose(out, Gaussian(sigma=1.0)(x))


def test_propagate_keeps_self_when_the_base_includes_it():
    lp = log_assign(6)
    out = propagate(Cluster(), 2)(lp)
    q = Cluster()(lp).exp().numpy()
    w = q + q @ q
    np.testing.assert_allclose(out.exp().numpy(), w / w.sum(1, keepdims=True), rtol=1e-12)
    assert torch.isfinite(out.diagonal()).all()


def test_transforms_compose_by_nesting():
    """``mix_uniform(propagate(KNN(3), 2), 0.6)``, the debiased propagated target of section 5."""
    x = feats(9)
    inner = propagate(KNN(n_neighbors=3), 2)(x).exp().numpy()
    expected = 0.4 * inner + 0.6 / 8
    np.fill_diagonal(expected, 0.0)
    out = mix_uniform(propagate(KNN(n_neighbors=3), 2), 0.6)(x)
    np.testing.assert_allclose(out.exp().numpy(), expected, rtol=1e-12)
    assert kl(out, out).abs().max() < 1e-12
