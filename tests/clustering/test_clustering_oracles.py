"""Clustering's parts against independent implementations: the batch loss against its dense definition
and the library's ICon, the kNN / walk graph against brute force and matrix powers, batch composition
and sampling, SCAN / TEMI against their formulas."""

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

import icontorch as ic
from icontorch import IConError
from icontorch.clustering import Clustering
from icontorch.clustering.graph import compose_batch, knn_indices, mutual_knn
from icontorch.clustering.objectives import (
    cluster_kernel_kl,
    icon_objective,
    scan_loss,
    supervised_objective,
    temi_loss,
)
from icontorch.clustering.walks import walk_graph


# ----------------------------------------------------------------------------- the loss
def _relation(b, seed):
    g = torch.Generator().manual_seed(seed)
    rel = torch.rand(b, b, generator=g) < 0.2
    rel.fill_diagonal_(False)
    rel[2] = False                                  # an anchor with no neighbour in the batch
    return rel


@pytest.mark.parametrize("alpha_p, alpha_q", [(0.0, 0.0), (0.6, 0.6), (0.3, 0.0), (0.0, 0.8), (1.0, 0.5)])
def test_cluster_kernel_kl_equals_dense_definition(alpha_p, alpha_q):
    b, c, h = 24, 5, 3
    rel = _relation(b, 1)
    log_phi = torch.randn(h, b, c, dtype=torch.float64, generator=torch.Generator().manual_seed(2)).log_softmax(2)
    objective = icon_objective(rel, alpha_p, alpha_q, torch.float64)
    fused = cluster_kernel_kl(log_phi, objective.log_p(None), alpha_q)
    # 1) the library: ICon(mix_uniform(p, alpha_p), mix_uniform(Cluster(), alpha_q)), head by head
    library = torch.stack([objective(log_phi[k]) for k in range(h)])
    torch.testing.assert_close(fused, library, rtol=1e-12, atol=1e-12)
    # 2) numpy, written out from the formulas
    r = rel.numpy()
    for k in range(h):
        phi = log_phi[k].exp().numpy()
        q = phi @ (phi / phi.sum(0)).T                               # sum_c phi_ic phi_jc / n_c, j = i included
        q = (1 - alpha_q) * q + alpha_q / b
        rows = []
        for i in range(b):
            if not r[i].any():
                continue                                              # no neighbour: left out
            p = np.where(r[i], 1.0 / r[i].sum(), 0.0)
            p = (1 - alpha_p) * p + alpha_p / (b - 1)
            p[i] = 0.0                                                # self is not a candidate of p
            m = p > 0
            rows.append((p[m] * np.log(p[m] / q[i, m])).sum())
        assert fused[k].item() == pytest.approx(np.mean(rows), rel=1e-10)


def test_supervised_loss_equals_library_and_is_zero_at_the_labels(float64_default):
    y = torch.tensor([0, 0, 1, 1, 1, 2, 2, 0])
    objective = supervised_objective(0.0, 0.0)
    log_phi = torch.randn(2, 8, 3, dtype=torch.float64).log_softmax(2)
    fused = cluster_kernel_kl(log_phi, objective.log_p(y), 0.0)
    library = torch.stack([objective(log_phi[k], target=y) for k in range(2)])
    torch.testing.assert_close(fused, library, rtol=1e-12, atol=1e-12)
    one_hot = torch.full((1, 8, 3), -60.0, dtype=torch.float64)
    one_hot[0, torch.arange(8), y] = 0.0
    assert cluster_kernel_kl(one_hot.log_softmax(2), objective.log_p(y), 0.0).item() == pytest.approx(0.0, abs=1e-9)


def test_empty_cluster_is_finite():
    log_phi = torch.full((1, 6, 3), -200.0)
    log_phi[0, :, 0] = 0.0                                            # clusters 1 and 2 empty
    log_phi = log_phi.log_softmax(2).requires_grad_()
    rel = _relation(6, 3)
    loss = cluster_kernel_kl(log_phi, icon_objective(rel, 0.5, 0.5).log_p(None), 0.5)
    loss.sum().backward()
    assert torch.isfinite(loss).all() and torch.isfinite(log_phi.grad).all()


def test_baselines_stay_finite_when_assignments_saturate():
    logits = torch.zeros(2, 8, 4)
    logits[:, :4, 0] = 900.0                     # anchors certain of cluster 0, neighbours of 1
    logits[:, 4:, 1] = 900.0
    logits.requires_grad_()
    log_phi = logits.log_softmax(2)
    scan = scan_loss(log_phi[:, :4], log_phi[:, 4:])
    temi = temi_loss(log_phi.reshape(2, 2, 4, 4), log_phi.reshape(2, 2, 4, 4), torch.full((2, 4), 0.25))
    (scan.sum() + temi.sum()).backward()
    assert torch.isfinite(scan).all() and torch.isfinite(temi).all() and torch.isfinite(logits.grad).all()


# ----------------------------------------------------------------------------- neighbours
@pytest.mark.parametrize("metric", ["cosine", "squared_euclidean"])
def test_knn_equals_brute_force(metric):
    x = np.random.default_rng(0).normal(size=(50, 6))
    mine = knn_indices(torch.tensor(x), 4, metric).numpy()
    d = cdist(x, x, "cosine" if metric == "cosine" else "sqeuclidean")
    np.fill_diagonal(d, np.inf)
    np.testing.assert_array_equal(mine, np.argsort(d, axis=1, kind="stable")[:, :4])


def _dense_graph(graph, n: int) -> np.ndarray:
    """The (n, n) boolean adjacency of a NeighborGraph's rows."""
    dense = np.zeros((n, n), dtype=bool)
    for i in range(n):
        dense[i, graph.rows(i).numpy()] = True
    return dense


def _reach(a: np.ndarray, walk_length: int) -> np.ndarray:
    """numpy oracle of the walks: 1[A + A^2 + ... + A^(s+1) > 0] off the diagonal."""
    power, reach = np.eye(a.shape[0]), np.zeros_like(a)
    for _ in range(walk_length + 1):
        power = power @ a
        reach += power
    expected = reach > 0
    np.fill_diagonal(expected, False)
    return expected


@pytest.mark.parametrize("walk_length", [0, 1, 2])
@pytest.mark.parametrize("symmetric", [False, True])
def test_walk_graph_equals_brute_force(walk_length, symmetric):
    n, k = 40, 3
    knn = knn_indices(torch.randn(n, 5, generator=torch.Generator().manual_seed(4)), k)
    mine = _dense_graph(walk_graph(knn, walk_length, symmetric), n)
    a = np.zeros((n, n))
    a[np.repeat(np.arange(n), k), knn.numpy().ravel()] = 1.0
    expected = _reach(a, walk_length)
    if symmetric:
        expected = expected | expected.T
    np.testing.assert_array_equal(mine, expected)
    # the library's propagate(..., mode="reach") on the dense kNN neighbourhood agrees
    log_p = torch.full((n, n), float("-inf"), dtype=torch.float64)
    log_p[np.repeat(np.arange(n), k), knn.reshape(-1)] = -np.log(k)
    reach_lib = ic.propagate(ic.Precomputed(log_p), walk_length + 1, mode="reach")(None) > float("-inf")
    directed = reach_lib.numpy()
    np.testing.assert_array_equal(mine, directed | directed.T if symmetric else directed)


@pytest.mark.parametrize("walk_length", [0, 2])
def test_mutual_knn_walk_graph_equals_brute_force(walk_length):
    """Pruning keeps i -> knn[i, r] when r = 0 or i is in knn[j]; the walks then run on the pruned
    graph: numpy reach of its dense adjacency, self dropped, symmetrised."""
    n, k = 50, 4
    x = torch.randn(n, 5, generator=torch.Generator().manual_seed(7))
    knn = knn_indices(x, k)
    lists = [set(row) for row in knn.tolist()]
    a = np.zeros((n, n))
    for i, row in enumerate(knn.tolist()):
        for r, j in enumerate(row):
            if r == 0 or i in lists[j]:
                a[i, j] = 1.0
    pruned = mutual_knn(knn)
    kept = pruned != torch.arange(n)[:, None]
    assert int(kept.sum()) == int(a.sum()) < n * k                 # some edges were one-sided
    assert bool(kept[:, 0].all())                                  # the nearest one always stays
    expected = _reach(a, walk_length)
    expected = expected | expected.T
    graph = walk_graph(pruned, walk_length, symmetric=True)
    np.testing.assert_array_equal(_dense_graph(graph, n), expected)
    # the estimator builds exactly this graph, and the unpruned one when asked
    model = Clustering(n_clusters=3, n_neighbors=k, walk_length=walk_length, epochs=1, n_heads=1, random_state=0)
    torch.testing.assert_close(model.fit(x).graph_.indices, graph.indices)
    plain = walk_graph(knn, walk_length, symmetric=True)
    torch.testing.assert_close(model.set_params(mutual_knn=False).fit(x).graph_.indices, plain.indices)
    with pytest.raises(IConError, match="knn must hold node ids"):
        mutual_knn(knn + n)


@pytest.mark.parametrize("walk_length", [0, 1, 2])
def test_weighted_walk_graph_equals_matrix_powers(walk_length):
    """mode="sum": W = P + ... + P^(s+1), P = A / k, diagonal dropped, (W + W^T) / 2; numpy oracle."""
    n, k = 40, 3
    knn = knn_indices(torch.randn(n, 5, generator=torch.Generator().manual_seed(4)), k)
    graph = walk_graph(knn, walk_length, symmetric=True, mode="sum")
    mine = np.zeros((n, n))
    mine[np.repeat(np.arange(n), graph.degree.numpy()), graph.indices.numpy()] = graph.weights.numpy()
    p = np.zeros((n, n))
    p[np.repeat(np.arange(n), k), knn.numpy().ravel()] = 1.0 / k
    power, w = np.eye(n), np.zeros((n, n))
    for _ in range(walk_length + 1):
        power = power @ p
        w += power
    np.fill_diagonal(w, 0.0)
    np.testing.assert_allclose(mine, (w + w.T) / 2, rtol=1e-6, atol=1e-7)
    # the same edges as the uniform "reach" form; the batch p is proportional to the weights
    reach = walk_graph(knn, walk_length, symmetric=True)
    torch.testing.assert_close(graph.indices, reach.indices)
    src = torch.tensor([0, 5, 0, 9, 17, 5, 30])
    weights = graph.batch_weights(src, torch.float64)
    expected = torch.as_tensor(mine)[src][:, src]
    expected[src[:, None] == src[None, :]] = 1.0 / k               # another view of the same node
    expected.fill_diagonal_(0.0)
    torch.testing.assert_close(weights, expected, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(graph.relation(src), weights > 0)
    log_p = icon_objective(weights, 0.0, 0.0, torch.float64).log_p(None)
    # empty rows stay 0
    torch.testing.assert_close(log_p.exp(), weights / weights.sum(1, keepdim=True).clamp_min(1e-300))
    # directed, the rows are the library's dense propagate(kNN, s + 1, mode="sum"), renormalised
    directed = walk_graph(knn, walk_length, symmetric=False, mode="sum")
    rows = np.zeros((n, n))
    rows[np.repeat(np.arange(n), directed.degree.numpy()), directed.indices.numpy()] = directed.weights.numpy()
    log_p = torch.full((n, n), float("-inf"), dtype=torch.float64)
    log_p[np.repeat(np.arange(n), k), knn.reshape(-1)] = -np.log(k)
    library = ic.propagate(ic.Precomputed(log_p), walk_length + 1, mode="sum")(None).exp().numpy()
    np.testing.assert_allclose(rows / rows.sum(1, keepdims=True), library, rtol=1e-6, atol=1e-7)


def test_batch_composition_puts_neighbours_with_their_anchors():
    n = 60
    knn = knn_indices(torch.randn(n, 4, generator=torch.Generator().manual_seed(5)), 3)
    graph = walk_graph(knn, 1)
    anchors = torch.tensor([3, 17, 42, 8])
    src = compose_batch(anchors, graph, n_views=2, n_sampled_neighbors=2, generator=torch.Generator().manual_seed(0))
    assert src.shape == (4 * 2 + 4 * 2,)
    torch.testing.assert_close(src[:4], anchors)
    torch.testing.assert_close(src[4:8], anchors)
    relation = graph.relation(src)
    sampled = src[8:].reshape(4, 2)
    for a, anchor in enumerate(anchors.tolist()):
        rows = set(graph.rows(anchor).tolist())
        assert set(sampled[a].tolist()) <= rows                      # drawn from the anchor's row
        assert relation[a, 4 + a] and relation[4 + a, a]             # the other view
        for j in (8 + 2 * a, 9 + 2 * a):
            assert relation[a, j] and relation[j, a]                 # symmetric: both see each other
    assert not relation.diagonal().any()
    # the batch p is the library's mix_uniform(Adjacency(graph + self loops), alpha) on the node ids
    ours = icon_objective(relation, 0.4, 0.0, torch.float64).log_p(None)
    library = ic.mix_uniform(ic.Adjacency(graph.to_sparse(self_loops=True, dtype=torch.float64)), 0.4)(src)
    torch.testing.assert_close(ours, library)


def test_neighbours_are_sampled_uniformly():
    knn = knn_indices(torch.randn(30, 3, generator=torch.Generator().manual_seed(6)), 4)
    graph = walk_graph(knn, 0, symmetric=False)
    draws = graph.sample(torch.zeros(20000, dtype=torch.long), 1, torch.Generator().manual_seed(1)).ravel()
    counts = np.bincount(draws.numpy(), minlength=30)[knn[0].numpy()]
    assert counts.sum() == 20000 and np.all(np.abs(counts / 20000 - 0.25) < 0.02)


# ----------------------------------------------------------------------------- baselines
def test_scan_loss_equals_its_formula():
    rng = np.random.default_rng(0)
    a = rng.dirichlet(np.ones(4), size=(2, 7))
    b = rng.dirichlet(np.ones(4), size=(2, 7))
    b[0, 0] = [1, 0, 0, 0]
    a[0, 0] = [0, 1, 0, 0]                                          # zero agreement: BCE's log clamp
    with np.errstate(divide="ignore"):
        mine = scan_loss(torch.tensor(np.log(a)), torch.tensor(np.log(b)), entropy_weight=5.0).numpy()
    for h in range(2):
        consistency = -np.mean(np.maximum(np.log(np.maximum((a[h] * b[h]).sum(1), 1e-300)), -100))
        mean = np.maximum(a[h].mean(0), 1e-8)
        expected = consistency - 5.0 * -(mean * np.log(mean)).sum()
        assert mine[h] == pytest.approx(expected, rel=1e-12)


def test_temi_loss_equals_its_formula():
    rng = np.random.default_rng(1)
    s = rng.dirichlet(np.ones(5), size=(3, 2, 6))
    t = rng.dirichlet(np.ones(5), size=(3, 2, 6))
    prior = rng.dirichlet(np.ones(5), size=3)
    mine = temi_loss(torch.tensor(np.log(s)), torch.tensor(np.log(t)), torch.tensor(prior), beta=0.6).numpy()
    for h in range(3):
        w = (t[h, 0] * t[h, 1]).sum(1)
        total = 0.0
        for a, v in ((0, 1), (1, 0)):
            total += np.mean(-w * np.log((((t[h, a] * s[h, v]) ** 0.6) / prior[h]).sum(1)))
        assert mine[h] == pytest.approx(total / 2, rel=1e-12)
