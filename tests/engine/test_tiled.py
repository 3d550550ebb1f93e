"""The fused and tiled engine equals the composed dense path, in value and gradient (float64).

Oracle: the composed path written out here, ``divergence(p(target, target_candidates),
q(z, candidates))`` reduced over the anchors, i.e. the (n, m) log-probabilities of the
neighbourhoods themselves. Every supported p x q x divergence is compared for tiles that do not
divide the batch, on CPU and, when present, CUDA.
"""

from __future__ import annotations

import pytest
import torch

import icontorch as ic
import icontorch.engine.structured as structured_module
from icontorch import IConError
from icontorch.divergences import DIVERGENCES, reverse_kl
from icontorch.engine.targets import match_lists

F64 = torch.float64
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                 reason="no CUDA device"))]


@pytest.fixture(autouse=True)
def float64_default():
    """Discrete neighbourhoods build p in the default dtype: make the oracle's p float64 too."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


N = 13  # not divisible by any tile below
ITEMS = torch.tensor([0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5, 6])      # item 6 has a single view
LABELS = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
FEATURES = _randn(N, 4, seed=1)
# Neighbour lists of different lengths (propagated neighbours), padded with -1.
LISTS = torch.tensor([[1, 2, -1], [0, -1, -1], [5, 7, 9], [4, -1, -1], [3, 12, -1], [2, -1, -1],
                      [7, -1, -1], [6, 8, 2], [7, -1, -1], [10, 11, 2], [9, -1, -1], [9, 10, -1],
                      [4, 0, -1]])

P_CASES = {
    "positive_pairs": (lambda: ic.PositivePairs(), ITEMS),
    "same_label": (lambda: ic.SameLabel(), LABELS),
    "knn": (lambda: ic.KNN(3), FEATURES),
    "knn_cosine": (lambda: ic.KNN(2, metric="cosine"), FEATURES),
    "sparse_lists": (lambda: ic.SparseNeighbors(), LISTS),
    "debiased_positive_pairs": (lambda: ic.mix_uniform(ic.PositivePairs(), 0.3), ITEMS),
    "debiased_same_label": (lambda: ic.mix_uniform(ic.SameLabel(), 0.2), LABELS),
    "debiased_knn": (lambda: ic.mix_uniform(ic.KNN(3), 0.5), FEATURES),
    "debiased_lists": (lambda: ic.mix_uniform(ic.SparseNeighbors(), 0.25), LISTS),
}
Q_CASES = {
    "gaussian_cosine": lambda: ic.Gaussian(temperature=0.3, metric="cosine"),
    "gaussian_squared_euclidean": lambda: ic.Gaussian(sigma=1.3),
    "gaussian_dot": lambda: ic.Gaussian(temperature=2.0, metric="dot"),
    "student_t_1": lambda: ic.StudentT(1.0),
    "student_t_3": lambda: ic.StudentT(3.0),
    "debiased_gaussian": lambda: ic.mix_uniform(ic.Gaussian(temperature=0.5, metric="cosine"), 0.2),
    "debiased_student_t": lambda: ic.mix_uniform(ic.StudentT(1.0), 0.5),
}


def composed(p, q, divergence, z, target, candidates=None, target_candidates=None):
    """Per-anchor divergences from the dense (n, m) log-probabilities, empty rows dropped."""
    log_p = p(target, target_candidates).to(z.dtype)
    log_q = q(z, candidates)
    empty = (log_p == float("-inf")).all(1)
    rows = DIVERGENCES[divergence](log_p.masked_fill(empty[:, None], 0.0),
                                   log_q.masked_fill(empty[:, None], 0.0))
    return rows[~empty]


def value_and_grads(fn, *tensors):
    leaves = [t.detach().clone().requires_grad_() for t in tensors]
    value = fn(*leaves)
    return value.detach(), torch.autograd.grad(value, leaves)


def assert_same(ours, ref):
    torch.testing.assert_close(ours[0], ref[0], rtol=1e-6, atol=1e-10)
    for a, b in zip(ours[1], ref[1]):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-10)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("divergence", ["kl", "cross_entropy"])
@pytest.mark.parametrize("q_name", list(Q_CASES))
@pytest.mark.parametrize("p_name", list(P_CASES))
def test_tiled_and_fused_equal_composed(p_name, q_name, divergence, device):
    make_p, target = P_CASES[p_name]
    p, q = make_p(), Q_CASES[q_name]()
    target = target.to(device)
    z = _randn(N, 5, seed=2).to(device)
    ref = value_and_grads(lambda x: composed(p, q, divergence, x, target).mean(), z)
    for tile_size in (None, 4, 5, N + 3):  # None: fused dense in one tile
        loss = ic.ICon(p, q, divergence=divergence, skip_empty_rows=True, tile_size=tile_size)
        assert_same(value_and_grads(lambda x: loss(x, target), z), ref)


@pytest.mark.parametrize("device", DEVICES)
def test_large_label_groups_use_tile_masks(device):
    """Groups larger than the list limit are compared id by id inside each tile."""
    n = 152  # two classes of 76 anchors
    labels = (torch.arange(n) % 2).to(device)
    assert match_lists(labels, labels, 0)[0] is None
    z = _randn(n, 3, seed=3).to(device)
    for p in (ic.SameLabel(), ic.mix_uniform(ic.SameLabel(), 0.1)):
        q = ic.mix_uniform(ic.Gaussian(temperature=0.5, metric="cosine"), 0.05)
        ref = value_and_grads(lambda x: composed(p, q, "kl", x, labels).mean(), z)
        for tile_size in (None, 33):
            loss = ic.ICon(p, q, tile_size=tile_size)
            assert_same(value_and_grads(lambda x: loss(x, labels), z), ref)


@pytest.mark.parametrize("device", DEVICES)
def test_clip_both_directions_and_cross_entropy_with_prototypes(device):
    n, m, d = 11, 11, 6
    image, text = _randn(n, d, seed=4).to(device), _randn(m, d, seed=5).to(device)
    ids = torch.randperm(n, generator=torch.Generator().manual_seed(6)).to(device)
    clip = ic.methods.clip(0.07)
    p, q = clip.p, clip.q

    def ref_clip(i, t):
        rows = torch.cat([composed(p, q, "cross_entropy", i, ids, t, ids.flip(0)),
                          composed(p, q, "cross_entropy", t, ids.flip(0), i, ids)])
        return rows.mean()
    ref = value_and_grads(ref_clip, image, text)
    for tile_size in (None, 3, 4):
        loss = ic.ICon(p, q, divergence="cross_entropy", symmetric=True, tile_size=tile_size)
        ours = value_and_grads(lambda i, t: loss(i, ids, t, ids.flip(0)), image, text)
        assert_same(ours, ref)

    # Classification with label smoothing: DataToClass over prototypes, alpha-debiased.
    labels = torch.tensor([0, 2, 1, 3, 3, 0, 1, 2, 0, 1, 4]).to(device)
    prototypes = _randn(5, d, seed=7).to(device)
    xent = ic.methods.cross_entropy(5, label_smoothing=0.1)
    ref = value_and_grads(lambda x, w: composed(xent.p, xent.q, "cross_entropy", x, labels, w).mean(),
                          image, prototypes)
    for tile_size in (None, 2):
        loss = ic.ICon(xent.p, xent.q, divergence="cross_entropy", tile_size=tile_size)
        assert_same(value_and_grads(lambda x, w: loss(x, labels, w), image, prototypes), ref)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_reductions_and_empty_rows_match_the_composed_path(reduction):
    z = _randn(N, 5, seed=8)
    p, q = ic.SameLabel(), ic.Gaussian(temperature=0.2, metric="cosine")
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 7, 8])  # anchors 11, 12 are empty
    outs = [ic.ICon(p, q, reduction=reduction, skip_empty_rows=True, tile_size=t)(z, labels)
            for t in ("auto", None, 4)]
    composed_loss = ic.ICon(ic.FromCallable(p), q, reduction=reduction, skip_empty_rows=True)
    expected = composed_loss(z, labels)  # FromCallable hides the structure: the composed path
    for out in outs:
        torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-12, equal_nan=True)
    with pytest.raises(IConError, match=r"anchors \[11, 12\] have no neighbour under p \(2 of 13\)"):
        ic.ICon(p, q, tile_size=4)(z, labels)


def test_q_including_self_and_p_including_self():
    """VICReg's q keeps j = i; a p that includes self needs a q that includes it too."""
    z = _randn(N, 4, seed=9)
    p, q = ic.PositivePairs(), ic.Gaussian(temperature=50.0, include_self=True)
    ref = value_and_grads(lambda x: composed(p, q, "cross_entropy", x, LABELS).mean(), z)
    loss = ic.ICon(p, q, divergence="cross_entropy", tile_size=4)
    assert_same(value_and_grads(lambda x: loss(x, LABELS), z), ref)

    p_self = ic.SameLabel(include_self=True)
    ref = value_and_grads(lambda x: composed(p_self, q, "kl", x, LABELS).mean(), z)
    assert_same(value_and_grads(lambda x: ic.ICon(p_self, q, tile_size=5)(x, LABELS), z), ref)
    with pytest.raises(IConError, match="p includes self as a neighbour but q excludes it"):
        ic.ICon(p_self, ic.Gaussian(sigma=1.0), tile_size=5)(z, LABELS)


def test_auto_selects_tiles_above_the_threshold(monkeypatch):
    seen = []
    real = structured_module.Engine

    def spy(*args):
        seen.append((args[4], args[5]))  # (tile, keep)
        return real(*args)
    monkeypatch.setattr(structured_module, "Engine", spy)
    z = _randn(N, 3, seed=10)
    loss = ic.ICon(ic.PositivePairs(), ic.Gaussian(temperature=0.5, metric="cosine"))
    small = loss(z, LABELS)
    assert seen[-1] == (N, True)
    monkeypatch.setattr(structured_module, "AUTO_TILE_ENTRIES", N * N - 1)
    monkeypatch.setattr(structured_module, "AUTO_TILE_SIZE", 4)
    large = loss(z, LABELS)
    assert seen[-1] == (4, False)
    torch.testing.assert_close(small, large, rtol=1e-10, atol=0)


def test_auto_falls_back_to_the_composed_path_for_other_p_and_q():
    z = _randn(N, 3, seed=11)
    log_phi = torch.log_softmax(_randn(N, 4, seed=12), 1)
    for loss in (ic.ICon(ic.SameLabel(), ic.Cluster()),
                 ic.ICon(ic.SameLabel(), ic.Gaussian(sigma=1.0), divergence="reverse_kl"),
                 ic.ICon(ic.PerplexityGaussian(3.0), ic.Gaussian(sigma=1.0))):
        x = log_phi if isinstance(loss.q, ic.Cluster) else z
        target = FEATURES if isinstance(loss.p, ic.PerplexityGaussian) else LABELS
        expected = composed(loss.p, loss.q, loss.divergence, x, target).mean()
        torch.testing.assert_close(loss(x, target), expected, rtol=1e-12, atol=0)
        assert loss.structured_form()[0] is None


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "big", "1024"])
def test_tile_size_must_be_a_positive_integer(bad):
    with pytest.raises(IConError, match=r"ICon: tile_size must be an integer >= 1, 'auto' or None; got "):
        ic.ICon(ic.PositivePairs(), ic.Gaussian(sigma=1.0), tile_size=bad)


@pytest.mark.parametrize("make, reason", [
    (lambda: ic.ICon(ic.SameLabel(), ic.Cluster(), tile_size=8), r"q is Cluster, not Gaussian or StudentT"),
    (lambda: ic.ICon(ic.SameLabel(), ic.Gaussian(sigma=1.0), divergence=reverse_kl, tile_size=8),
     r"the divergence is <function reverse_kl"),
    (lambda: ic.ICon(ic.PerplexityGaussian(3.0), ic.Gaussian(sigma=1.0), tile_size=8),
     r"p is PerplexityGaussian, not one of PositivePairs, SameLabel"),
    (lambda: ic.ICon(ic.propagate(ic.KNN(2), 2), ic.Gaussian(sigma=1.0), tile_size=8), r"p is Propagate"),
])
def test_explicit_tiles_refuse_what_they_cannot_compute(make, reason):
    x = FEATURES if "Perplexity" in reason or "Propagate" in reason else LABELS
    z = torch.log_softmax(_randn(N, 4, seed=13), 1)
    with pytest.raises(IConError, match=r"^ICon: tile_size=8 needs a structured p, a kernel-softmax q and "
                                        r"the kl or cross_entropy divergence; here " + reason):
        make()(z, x)


def test_explicit_tiles_refuse_per_anchor_candidates():
    a, pos, neg = _randn(4, 3, seed=14), _randn(4, 3, seed=15), _randn(4, 3, seed=16)
    loss = ic.ICon(ic.PositivePairs(), ic.Gaussian(temperature=1.0), tile_size=2)
    with pytest.raises(IConError, match=r"here the candidates are per-anchor sets \(3-D\)"):
        loss(a, torch.arange(4), torch.stack([pos, neg], 1), torch.stack([torch.arange(4), -1 - torch.arange(4)], 1))


def test_sparse_neighbors_dense_form_matches_knn():
    x = _randn(9, 3, seed=17)
    lists = torch.cdist(x, x).fill_diagonal_(float("inf")).topk(3, largest=False).indices
    torch.testing.assert_close(ic.SparseNeighbors(dtype=F64)(lists), ic.KNN(3)(x), rtol=0, atol=1e-15)
    padded = torch.tensor([[1, -1], [0, 2], [1, -1]])
    log_p = ic.SparseNeighbors(dtype=F64)(padded, torch.zeros(3))
    expected = torch.log(torch.tensor([[0, 1, 0], [0.5, 0, 0.5], [0, 1, 0]], dtype=F64))
    torch.testing.assert_close(log_p, expected, rtol=0, atol=1e-15)


@pytest.mark.parametrize("lists, y, message", [
    (torch.tensor([[1, 3], [0, 1], [0, 1]]), None, r"x must hold candidate positions in \[0, 3\) or -1 "
                                                    r"for padding; got 'values from 0 to 3'\."),
    (torch.tensor([[1, 1], [0, 2], [0, 1]]), None, r"x must list each neighbour at most once per row"),
    (torch.tensor([[0, 1], [0, 2], [0, 1]]), None, r"x must not list the anchor itself \(include_self=False\)"),
    (torch.tensor([1, 0, 0]), None, r"x must have 2 dimensions"),
    (torch.tensor([[1.0], [0.0]]), None, r"x must be an integer tensor of ids"),
    (torch.tensor([[1], [0]]), torch.tensor(3), r"y must be None or a tensor with one row per candidate"),
])
def test_sparse_neighbors_errors(lists, y, message):
    with pytest.raises(IConError, match=r"^SparseNeighbors: " + message):
        ic.SparseNeighbors()(lists, y)


def test_tiled_memory_stays_within_tiles():
    """No (n, m) tensor is ever saved for backward: the graph holds O((n + m) d) numbers."""
    n, tile = 600, 64
    z = _randn(n, 8, seed=18).requires_grad_()
    items = torch.arange(n // 2).repeat(2)
    loss = ic.ICon(ic.mix_uniform(ic.PositivePairs(), 0.1), ic.Gaussian(temperature=0.5, metric="cosine"),
                   tile_size=tile)
    largest = []

    def pack(t):
        largest.append(t.numel())
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        value = loss(z, items)
    value.backward()
    assert max(largest) <= n * 8 and torch.isfinite(z.grad).all()
    largest.clear()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss.tile_size = None
        loss(z, items)
    assert max(largest) == n * n  # the fused dense path keeps q, as it should


def test_readme_section_example_runs():
    import re
    from pathlib import Path
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Large batches and many machines")[1].split("\n## ")[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    namespace = {}
    torch.set_default_dtype(torch.float32)  # as a user runs it (the module's fixture restores it)
    exec(code, namespace)
    assert namespace["z"].dtype == torch.float32
    assert namespace["z"].grad is not None and torch.isfinite(namespace["z"].grad).all()


def test_neighbour_p_against_separate_candidates():
    """Anchors against another set (a memory bank): kNN of the anchors' features among the
    candidates' features, and neighbour lists of candidate positions."""
    z, bank = _randn(9, 4, seed=19), _randn(14, 4, seed=20)
    x_feat, bank_feat = _randn(9, 3, seed=21), _randn(14, 3, seed=22)
    q = ic.mix_uniform(ic.StudentT(2.0), 0.1)
    lists = torch.tensor([[0, 5, -1], [13, -1, -1], [2, 3, 4], [1, -1, -1], [6, 7, -1], [8, -1, -1],
                          [9, 10, 11], [12, -1, -1], [0, 13, -1]])
    for p, target, target_bank in ((ic.mix_uniform(ic.KNN(4), 0.3), x_feat, bank_feat),
                                   (ic.SparseNeighbors(), lists, torch.arange(14))):
        ref = value_and_grads(lambda a, c: composed(p, q, "kl", a, target, c, target_bank).mean(), z, bank)
        for tile_size in (None, 4):
            loss = ic.ICon(p, q, tile_size=tile_size)
            assert_same(value_and_grads(lambda a, c: loss(a, target, c, target_bank), z, bank), ref)


def test_second_order_gradients_fail_loudly_on_the_engine():
    """Silently wrong second derivatives would be worse than none."""
    z = _randn(N, 3, seed=23).requires_grad_()
    loss = ic.ICon(ic.SameLabel(), ic.Gaussian(temperature=0.5, metric="cosine"), tile_size=4)
    with pytest.raises(IConError, match=r"^ICon: second-order gradients \(create_graph=True\) need the "
                                        r"composed path; .* got create_graph=True\.$"):
        torch.autograd.grad(loss(z, LABELS), z, create_graph=True)
    composed_loss = ic.ICon(ic.FromCallable(ic.SameLabel()), loss.q)  # the documented way out
    (grad,) = torch.autograd.grad(composed_loss(z, LABELS), z, create_graph=True)
    grad.pow(2).sum().backward()
    assert torch.isfinite(z.grad).all()
