"""``n_clusters="auto"`` (:mod:`icontorch.clustering.auto`): the merge criterion against its closed form,
the pieces, and the number of groups of well-separated blobs beyond the old cap of 50."""

import numpy as np
import pytest
import torch

from icontorch.clustering import Clustering
from icontorch.clustering.auto import (
    DEBIASING,
    MIN_GROUP_SIZE,
    connected_components,
    debiasing,
    estimate_n_clusters,
    graph_pieces,
    merge_pieces,
    piece_mass,
)
from icontorch.clustering.graph import knn_indices, mutual_knn
from icontorch.clustering.walks import walk_graph


def _blobs(k, per, d=16, seed=0, radius=30.0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d))
    centers *= radius / np.linalg.norm(centers, axis=1, keepdims=True)
    y = np.repeat(np.arange(k), per)
    return (centers[y] + rng.normal(size=(y.shape[0], d))).astype(np.float32), y


def _graph(x, k=6, walks=4):
    knn = knn_indices(torch.from_numpy(x), k, "squared_euclidean")
    return walk_graph(mutual_knn(knn), walks, symmetric=True)


def _icon_loss(p, labels, alpha):
    """sum_i KL(p~(.|i) || q~(.|i)) by its definition, dense (small N), float64."""
    n = p.shape[0]
    same = (labels[:, None] == labels[None, :]).to(torch.float64)
    q = (1 - alpha) * same / same.sum(1, keepdim=True) + alpha / n
    pt = (1 - alpha) * p + alpha / n
    return float((pt * (pt.log() - q.log())).sum())


def test_merge_gain_is_the_icon_loss_difference():
    """The agglomeration's score S: L(partition) = const - S, so a join's gain in S equals the drop of
    the dense I-Con loss between the two partitions."""
    from icontorch.clustering.auto import _score

    rng = np.random.default_rng(1)
    n, alpha = 40, 0.6
    w = torch.from_numpy(rng.random((n, n)))
    w.fill_diagonal_(0.0)
    p = w / w.sum(1, keepdim=True)
    parts = torch.from_numpy(rng.integers(0, 5, n))
    joined = torch.where(parts == 4, torch.tensor(3), parts)

    def score(labels):
        total = 0.0
        for g in labels.unique():
            inside = labels == g
            total += float(_score(p[inside][:, inside].sum(), inside.sum().to(torch.float64), n, alpha))
        return total

    drop = _icon_loss(p, parts, alpha) - _icon_loss(p, joined, alpha)
    assert drop == pytest.approx(score(joined) - score(parts), rel=1e-9, abs=1e-9)


def test_pieces_are_connected_cover_big_components_and_stay_inside_them():
    x, _ = _blobs(4, 80, seed=2)
    graph = _graph(x)
    component = connected_components(graph)
    pieces = graph_pieces(graph, 12, torch.Generator().manual_seed(0))
    big = torch.bincount(component, minlength=graph.n_nodes)[component] >= MIN_GROUP_SIZE
    assert bool((pieces[big] >= 0).all()) and bool((pieces[~big] == -1).all())
    for c in pieces.unique()[pieces.unique() >= 0]:
        assert component[pieces == c].unique().numel() == 1          # a piece never spans two components
    mass = piece_mass(graph, pieces, int(pieces.max()) + 1)
    assert mass.is_sparse and mass.dtype == torch.float64
    dense = mass.to_dense()
    assert torch.allclose(dense, dense.T)
    assert float(dense.sum()) == pytest.approx(float(big.sum()), rel=1e-12)   # p sums to 1 per point


@pytest.mark.parametrize("block", [1, 300, None])
def test_piece_mass_equals_its_definition(block, monkeypatch):
    """P_cd = (sum_{i in c, j in d} p(j|i) + sum_{i in d, j in c} p(j|i)) / 2 from the dense p of a small
    graph, whether the rows are summed in one block or in many (blocks of whole pieces)."""
    import icontorch.clustering.auto as auto

    if block is not None:
        monkeypatch.setattr(auto, "PIECE_BLOCK", block)
    x, _ = _blobs(3, 70, seed=7)
    graph = _graph(x)
    n = graph.n_nodes
    pieces = graph_pieces(graph, 9, torch.Generator().manual_seed(1))
    count = int(pieces.max()) + 1
    rows = torch.repeat_interleave(torch.arange(n), graph.degree)
    w = torch.zeros(n, n, dtype=torch.float64)
    w[rows, graph.indices] = (torch.ones(rows.shape[0], dtype=torch.float64) if graph.weights is None
                              else graph.weights.to(torch.float64))
    p = w / w.sum(1, keepdim=True)
    member = torch.zeros(n, count, dtype=torch.float64)
    member[torch.arange(n)[pieces >= 0], pieces[pieces >= 0]] = 1.0
    expected = member.T @ p @ member
    expected = (expected + expected.T) / 2
    assert torch.allclose(piece_mass(graph, pieces, count).to_dense(), expected, rtol=1e-12, atol=1e-12)


def _dense_merge(mass, sizes, n, alpha):
    """The agglomeration written over the dense (C', C') matrix, as a reference: every pair of groups
    that are each other's best partner (over all groups) with a positive gain joins, round after round."""
    from icontorch.clustering.auto import _score

    mass, sizes = mass.clone(), sizes.clone()
    group = list(range(mass.shape[0]))
    while mass.shape[0] > 1:
        m = mass.shape[0]
        inside = torch.diagonal(mass)
        alone = _score(inside, sizes, n, alpha)
        gain = (_score(inside[:, None] + inside[None, :] + 2 * mass, sizes[:, None] + sizes[None, :], n, alpha)
                - alone[:, None] - alone[None, :])
        gain.fill_diagonal_(-float("inf"))
        best = [int(torch.argmax(gain[i])) for i in range(m)]
        pairs = [(i, best[i]) for i in range(m) if best[best[i]] == i and i < best[i] and gain[i, best[i]] > 0]
        if not pairs:
            break
        target = list(range(m))
        for i, j in pairs:
            target[j] = i
        ids = sorted(set(target))
        target = torch.tensor([ids.index(t) for t in target])
        one_hot = torch.zeros(m, len(ids), dtype=torch.float64)
        one_hot[torch.arange(m), target] = 1.0
        mass = one_hot.T @ mass @ one_hot
        sizes = one_hot.T @ sizes
        group = [int(target[g]) for g in group]
    return torch.tensor(group)


@pytest.mark.parametrize("radius", [4.0, 5.0])
@pytest.mark.parametrize("alpha", [0.1, 0.01, 1e-3, 1e-4])
def test_sparse_merge_equals_the_dense_agglomeration(alpha, radius):
    """On the pieces of a real graph (every piece holds p-mass inside), the sparse rounds over linked pairs
    give the same groups as the dense rounds over all pairs."""
    x, _ = _blobs(6, 60, seed=8, radius=radius)               # overlapping blobs: links between groups
    graph = _graph(x)
    pieces = graph_pieces(graph, 15, torch.Generator().manual_seed(2))
    count = int(pieces.max()) + 1
    sizes = torch.bincount(pieces[pieces >= 0], minlength=count).to(torch.float64)
    mass = piece_mass(graph, pieces, count)
    assert bool((torch.diagonal(mass.to_dense()) > 0).all())
    expected = _dense_merge(mass.to_dense(), sizes, graph.n_nodes, alpha)
    assert torch.equal(merge_pieces(mass, sizes, graph.n_nodes, alpha), expected)
    assert torch.equal(merge_pieces(mass.to_dense(), sizes, graph.n_nodes, alpha), expected)


def test_merge_keeps_disconnected_groups_apart_and_joins_a_split_group():
    # two groups of 100 points, each cut in two pieces that share most of their p-mass
    mass = torch.tensor([[30.0, 20.0, 0.0, 0.0], [20.0, 30.0, 0.0, 0.0],
                         [0.0, 0.0, 30.0, 20.0], [0.0, 0.0, 20.0, 30.0]], dtype=torch.float64)
    group = merge_pieces(mass, torch.full((4,), 50.0, dtype=torch.float64), 200, debiasing(200))
    assert group[0] == group[1] and group[2] == group[3] and group[0] != group[2]


def _styles(n_classes, per_half, style_link, class_link):
    """p-mass of pieces: every class cut into two styles that send ``style_link`` of their p-mass to each
    other and ``class_link`` to the next class's first style (MNIST-like: styles 15-30 %, classes <= 12 %)."""
    m = 2 * n_classes
    mass = torch.zeros(m, m, dtype=torch.float64)
    for c in range(n_classes):
        a, b, nxt = 2 * c, 2 * c + 1, (2 * c + 2) % m
        mass[a, b] = mass[b, a] = style_link * per_half
        mass[b, nxt] = mass[nxt, b] = class_link * per_half
    mass += torch.diag(per_half - mass.sum(1))             # p sums to 1 per point
    return mass, torch.full((m,), float(per_half), dtype=torch.float64)


def test_styles_of_a_class_join_and_classes_stay_apart():
    """The agglomeration's debiasing weight (module docstring): styles that send 15 % of their p-mass
    to each other join, classes linked by 5 % stay apart; at the training's 0.6 the styles stay apart."""
    n_classes, per_half = 10, 250
    mass, sizes = _styles(n_classes, per_half, style_link=0.15, class_link=0.05)
    n = 2 * n_classes * per_half
    assert debiasing(n) == DEBIASING                          # N = 5,000: the reference size
    group = merge_pieces(mass, sizes, n, debiasing(n))
    assert group.unique().numel() == n_classes
    assert bool((group[0::2] == group[1::2]).all())           # each class's two styles together
    assert int(merge_pieces(mass, sizes, n, 0.6).unique().numel()) == 2 * n_classes


@pytest.mark.parametrize("k", [3, 60])
def test_estimate_finds_the_number_of_well_separated_blobs(k):
    # 60 groups: impossible with the old cap of 50 over-clustered groups
    x, _ = _blobs(k, 60, seed=k)
    assert estimate_n_clusters(_graph(x), torch.Generator().manual_seed(0)) == k


def test_estimate_on_a_directed_knn_graph():
    x, _ = _blobs(5, 70, seed=6)
    directed = walk_graph(knn_indices(torch.from_numpy(x), 6, "squared_euclidean"), 0, symmetric=False)
    assert estimate_n_clusters(directed, torch.Generator().manual_seed(0)) == 5


def test_auto_fit_trains_heads_with_the_60_groups_found():
    x, _ = _blobs(60, 60, seed=3)
    model = Clustering("auto", n_iter=5, n_heads=1, batch_size=64, metric="squared_euclidean",
                       random_state=0).fit(x)
    assert model.n_clusters_ == 60 and model.head_.n_clusters == 60
    assert model.predict_proba(x).shape == (x.shape[0], 60)


def test_groups_under_the_minimum_size_are_not_counted():
    x, _ = _blobs(4, MIN_GROUP_SIZE + 10, seed=4)
    small, _ = _blobs(1, MIN_GROUP_SIZE // 2, seed=5, radius=60.0)
    graph = _graph(np.concatenate([x, small]))
    assert estimate_n_clusters(graph, torch.Generator().manual_seed(0)) == 4


def test_debiasing_falls_with_n_as_a_power_and_is_capped():
    assert debiasing(5000) == pytest.approx(DEBIASING)
    assert debiasing(20000) == pytest.approx(DEBIASING * 4 ** -1.5)
    assert debiasing(100) == 0.1                                # capped for small data sets
    values = [debiasing(n) for n in (2000, 10_000, 70_000, 1_000_000)]
    assert all(a > b > 0 for a, b in zip(values, values[1:]))


def test_merge_of_200000_pieces_never_builds_the_dense_matrix():
    """200,000 pieces (a dense (C', C') float64 matrix would take 320 GB): pairs of pieces that share
    most of their p-mass join, and nothing else does."""
    m, size = 200_000, 20.0
    first = torch.arange(0, m, 2)
    rows = torch.cat([torch.arange(m), first, first + 1])
    cols = torch.cat([torch.arange(m), first + 1, first])
    values = torch.cat([torch.full((m,), 0.6 * size), torch.full((m,), 0.4 * size)]).to(torch.float64)
    mass = torch.sparse_coo_tensor(torch.stack([rows, cols]), values, (m, m), check_invariants=True).coalesce()
    group = merge_pieces(mass, torch.full((m,), size, dtype=torch.float64), int(m * size), 1e-3)
    assert group.unique().numel() == m // 2
    assert torch.equal(group[0::2], group[1::2])
