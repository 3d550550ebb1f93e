"""Clustering at scale: the pairs path of the batch loss against the dense definition (float64), the
sampled uniform term, cached views, the approximate kNN backend, a 200,000-point graph without an
N x N tensor, and ``n_clusters="auto"``."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from icontorch import IConError
from icontorch.clustering import Clustering, fused
from icontorch.clustering.auto import MIN_GROUP_SIZE
from icontorch.clustering.fused import pairs_cluster_kernel_kl
from icontorch.clustering.graph import NeighborGraph, compose_batch, knn_indices, mutual_knn
from icontorch.clustering.objectives import ObjectiveSetup, cluster_kernel_kl, graph_kernel_objective, icon_objective
from icontorch.clustering.train import TrainSettings, _Batches
from icontorch.clustering.walks import walk_graph
from icontorch.metrics import clustering_scores


def _pairs(relation):
    rows, cols = relation.nonzero(as_tuple=True)
    values = relation[rows, cols].to(torch.float64)
    total = torch.zeros(relation.shape[0], dtype=torch.float64).index_add_(0, rows, values)
    return rows, cols, values / total[rows]


@pytest.mark.parametrize("alpha_p, alpha_q", [(0.0, 0.0), (0.6, 0.6), (0.3, 0.0), (0.0, 0.8), (1.0, 0.5)])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("tiles", [1, 4])
@pytest.mark.parametrize("compiled", [True, False])
def test_pairs_loss_and_gradients_equal_the_dense_definition(alpha_p, alpha_q, weighted, tiles, compiled,
                                                             monkeypatch):
    b, c, h = 24, 5, 3
    if not compiled:                                     # the gathers of pair_dots instead of its loops
        monkeypatch.setenv("ICONTORCH_NO_NUMBA", "1")
    # one tile keeps its reciprocal for the backward pass, several tiles are recomputed there
    monkeypatch.setattr(fused, "TILE_ENTRIES", h * b * b // tiles)
    g = torch.Generator().manual_seed(1)
    relation = torch.rand(b, b, generator=g) < 0.2
    relation.fill_diagonal_(False)
    relation[2] = False                                  # an anchor without a neighbour: left out
    if weighted:
        relation = torch.rand(b, b, generator=g, dtype=torch.float64) * relation
    logits = torch.randn(h, b, c, dtype=torch.float64, generator=g, requires_grad=True)
    dense = cluster_kernel_kl(logits.log_softmax(2), icon_objective(relation, alpha_p, alpha_q, torch.float64)
                              .log_p(None), alpha_q)
    ours = pairs_cluster_kernel_kl(logits.log_softmax(2), *_pairs(relation), alpha_p, alpha_q)
    torch.testing.assert_close(ours, dense, rtol=1e-12, atol=1e-12)
    weights = torch.randn(h, dtype=torch.float64, generator=g)
    grad_dense, = torch.autograd.grad((dense * weights).sum(), logits)
    grad_ours, = torch.autograd.grad((ours * weights).sum(), logits)
    torch.testing.assert_close(grad_ours, grad_dense, rtol=1e-10, atol=1e-12)


def test_sampled_columns_average_to_the_exact_loss():
    # (B / M) sum_{j in S} log q~_ij over the M-column blocks S of a partition of the batch averages to
    # the full sum: the estimate is unbiased, and with every column it is the exact loss
    b, c, h, m = 24, 4, 2, 6
    g = torch.Generator().manual_seed(3)
    relation = torch.rand(b, b, generator=g) < 0.3
    relation.fill_diagonal_(False)
    log_phi = torch.randn(h, b, c, dtype=torch.float64, generator=g).log_softmax(2)
    pairs = _pairs(relation)
    exact = pairs_cluster_kernel_kl(log_phi, *pairs, 0.6, 0.6)
    order = torch.randperm(b, generator=g)
    blocks = [pairs_cluster_kernel_kl(log_phi, *pairs, 0.6, 0.6, order[k:k + m]) for k in range(0, b, m)]
    torch.testing.assert_close(torch.stack(blocks).mean(0), exact, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(pairs_cluster_kernel_kl(log_phi, *pairs, 0.6, 0.6, order), exact)
    assert not torch.allclose(blocks[0], exact)          # one block alone is an estimate


def test_kernel_factors_keep_sharp_heads_out_of_subnormal_numbers():
    """alpha_q > 0: phi and psi are floored at sqrt(tiny), so no product phi_ic psi_jc is subnormal, and
    the float32 loss still equals the float64 one (whose floor, 1.5e-154, is not reached) to float32
    precision; alpha_q = 0: phi is exp(log_phi) exactly."""
    g = torch.Generator().manual_seed(0)
    log_phi = (torch.randn(3, 64, 10, generator=g) * 60.0).log_softmax(2)     # sharp heads
    tiny = torch.finfo(torch.float32).tiny
    raw = log_phi.exp()
    assert bool(((raw > 0) & (raw < tiny)).any())                           # subnormal probabilities arise
    phi, psi = fused.kernel_factors(log_phi, 0.6)
    products = phi[:, :, None, :] * psi[:, None, :, :]
    for t in (phi, psi, products):
        assert bool((t >= tiny).all())
    exact_phi, _ = fused.kernel_factors(log_phi, 0.0)
    torch.testing.assert_close(exact_phi, raw, rtol=0, atol=0)
    rows = torch.arange(64)
    cols, p = rows ^ 1, torch.ones(64, dtype=torch.float64)
    for alpha_q in (0.6, 0.05):
        single = pairs_cluster_kernel_kl(log_phi, rows, cols, p, 0.6, alpha_q)
        double = pairs_cluster_kernel_kl(log_phi.double(), rows, cols, p, 0.6, alpha_q)
        torch.testing.assert_close(single.double(), double, rtol=1e-5, atol=0)


def _graph(n=80, seed=0):
    x = torch.randn(n, 5, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return x, walk_graph(mutual_knn(knn_indices(x, 4)), 2)


def _setup(graph, n_negatives=None):
    return ObjectiveSetup(graph, None, 0.6, 0.6, 3, 4, torch.float64, torch.device("cpu"), n_negatives)


def _settings(**changes):
    base = dict(n_heads=3, n_clusters=4, hidden_layer_sizes=(), batch_size=8, n_views=2, n_sampled_neighbors=2,
                n_iter=1, learning_rate=1e-2, learning_rate_schedule="constant", weight_decay=0.0, ema=0.0,
                temperature=1.0, uses_teacher=False, random_state=0)
    return TrainSettings(**{**base, **changes})


@pytest.mark.parametrize("weighted", [False, True])
def test_batch_pairs_equal_a_double_loop_over_the_batch(weighted):
    # every (i, j), i != j, once: the edge weight when src_j is listed by src_i, the view weight when
    # both are the same node (a listed self-loop included), nothing else; the scratch table is left clean
    g = torch.Generator().manual_seed(7)
    n = 40
    rows, cols = torch.randint(n, (300,), generator=g), torch.randint(n, (300,), generator=g)
    values = torch.rand(300, generator=g, dtype=torch.float64) + 0.1 if weighted else None
    graph = NeighborGraph.from_pairs(torch.cat([rows, torch.tensor([3])]), torch.cat([cols, torch.tensor([3])]),
                                     n, None if values is None else torch.cat([values, torch.tensor([0.5])]), 0.25)
    edge = {}
    for i in range(n):
        for e in range(int(graph.indptr[i]), int(graph.indptr[i + 1])):
            edge[i, int(graph.indices[e])] = 1.0 if graph.weights is None else float(graph.weights[e])
    for src in (torch.randint(n, (60,), generator=g), torch.tensor([3, 3, 3, 5]), torch.tensor([7]),
                torch.zeros(0, dtype=torch.long)):
        got_rows, got_cols, got_values = graph.batch_pairs(src, torch.float64)
        got = {(int(i), int(j)): float(v) for i, j, v in zip(got_rows, got_cols, got_values)}
        assert len(got) == got_rows.shape[0]                             # each pair once
        nodes = src.tolist()
        expected = {}
        for i, a in enumerate(nodes):
            for j, b in enumerate(nodes):
                if i != j and (a == b or (a, b) in edge):
                    expected[i, j] = graph.view_weight if a == b else edge[a, b]
        assert got.keys() == expected.keys()
        assert all(got[key] == pytest.approx(value, rel=1e-12) for key, value in expected.items())
        assert bool((graph._slot_table == -1).all())


def test_batch_objective_equals_the_documented_icon_on_a_graph_batch():
    x, graph = _graph()
    anchors = torch.tensor([3, 17, 42, 8, 60, 61, 0, 79])
    src = compose_batch(anchors, graph, 2, 2, torch.Generator().manual_seed(0))
    logits = torch.randn(3, src.shape[0], 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ours = graph_kernel_objective(_setup(graph, n_negatives=src.shape[0]))(logits, src, x[src], None, True)
    documented = icon_objective(graph.relation(src), 0.6, 0.6, torch.float64)      # ICon(p=..., q=...)
    library = torch.stack([documented(logits[k].log_softmax(1)) for k in range(3)])
    torch.testing.assert_close(ours, library, rtol=1e-12, atol=1e-12)


def test_views_feed_real_augmentations_and_the_loss_is_the_documented_icon():
    x, graph = _graph()
    n_cached = 3
    views = x[:, None, :] + torch.arange(1, n_cached + 1, dtype=torch.float64)[None, :, None] * 100.0
    batches = _Batches(x, graph, _settings(), None, None, None, views)
    anchors = torch.tensor([5, 9, 11, 30, 2, 70, 44, 13])
    src, inputs = batches(anchors, torch.Generator().manual_seed(4))
    view_id = ((inputs - x[src]) / 100.0).round().long() - 1              # which cached view each item is
    assert bool((view_id == view_id[:, :1]).all()) and bool(((view_id >= 0) & (view_id < n_cached)).all())
    first, second = view_id[:8, 0], view_id[8:16, 0]
    assert bool((first != second).all())                                   # an anchor's two copies differ
    logits = torch.randn(3, src.shape[0], 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    ours = graph_kernel_objective(_setup(graph))(logits, src, inputs, None, True)
    documented = icon_objective(graph.relation(src), 0.6, 0.6, torch.float64)
    torch.testing.assert_close(ours, torch.stack([documented(logits[k].log_softmax(1)) for k in range(3)]))


def test_fit_with_views_and_bad_views():
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 8, size=(3, 6))
    y = np.repeat(np.arange(3), 40)
    x = (centers[y] + rng.normal(size=(120, 6))).astype(np.float32)
    views = (x[:, None, :] + 0.3 * rng.normal(size=(120, 4, 6))).astype(np.float32)
    model = Clustering(3, n_iter=60, n_heads=2, batch_size=32, random_state=0).fit(x, views=views)
    assert clustering_scores(y, model.labels_)["accuracy"] >= 0.95
    with pytest.raises(IConError, match=r"views must have shape \(n, n_views, d\) = \(120, V, 6\)"):
        Clustering(3).fit(x, views=views[:, :, :5])
    with pytest.raises(IConError, match="views must have shape"):
        Clustering(3).fit(x, views=views[:100])
    with pytest.raises(IConError, match="views must have shape"):
        Clustering(3).fit(x, views=x)
    bad = views.copy()
    bad[4, 1, 2] = np.nan
    with pytest.raises(IConError, match="views must be finite"):
        Clustering(3).fit(x, views=bad)


def test_auto_finds_the_number_of_well_separated_blobs():
    rng = np.random.default_rng(0)
    k = 5
    centers = rng.normal(0, 1, size=(k, 10))
    centers *= 12.0 / np.linalg.norm(centers, axis=1, keepdims=True)
    y = np.repeat(np.arange(k), 60)
    x = (centers[y] + rng.normal(size=(y.shape[0], 10))).astype(np.float32)
    model = Clustering("auto", n_iter=150, n_heads=2, batch_size=64, metric="squared_euclidean",
                       random_state=0).fit(x)
    assert model.n_clusters_ == k
    assert clustering_scores(y, model.labels_)["accuracy"] >= 0.95


def test_auto_needs_room_for_two_groups_that_count():
    x = np.random.default_rng(0).normal(size=(2 * MIN_GROUP_SIZE - 1, 3)).astype(np.float32)
    with pytest.raises(IConError, match=rf"n_clusters must be an integer when there are fewer than "
                                        rf"{2 * MIN_GROUP_SIZE} points .*X has {2 * MIN_GROUP_SIZE - 1}\); got 'auto'"):
        Clustering("auto").fit(x)


@pytest.mark.parametrize("params, match", [
    (dict(n_clusters="auto", method="kmeans"), r'n_clusters must be an integer with method=\'kmeans\' \("auto" needs'),
    (dict(n_clusters="many"), r'n_clusters must be an integer >= 2 or "auto"; got'),
    (dict(n_clusters=121), r"n_clusters must be at most the number of points \(120\)"),
    (dict(knn_backend="annoy"), "knn_backend must be one of"),
    (dict(n_negatives=0), "n_negatives"),
    (dict(n_iter=0), "n_iter"),
])
def test_bad_scale_parameters(params, match):
    x = np.random.default_rng(0).normal(size=(120, 3)).astype(np.float32)
    with pytest.raises(IConError, match=match):
        Clustering(**params).fit(x)


def test_faiss_backend_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)             # import faiss now raises ImportError
    x = np.random.default_rng(0).normal(size=(120, 3)).astype(np.float32)
    with pytest.raises(IConError, match=r"knn_backend='faiss' needs the faiss package"):
        Clustering(3, knn_backend="faiss").fit(x)


def test_faiss_backend_finds_the_exact_neighbours_of_easy_data():
    pytest.importorskip("faiss")
    x = torch.randn(500, 4, generator=torch.Generator().manual_seed(0))
    exact = knn_indices(x, 5)
    approximate = knn_indices(x, 5, knn_backend="faiss")
    recall = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(exact.tolist(), approximate.tolist())])
    assert recall >= 0.98


_MEMORY_SCRIPT = textwrap.dedent("""
    import resource, sys, torch
    from icontorch.clustering.specs import GraphSettings, mutual_walk_graph
    torch.set_num_threads(1)
    n = 200_000
    x = torch.rand(n, 2, generator=torch.Generator().manual_seed(0))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    walks, bound = int(sys.argv[1]), (int(sys.argv[2]) or None)
    graph = mutual_walk_graph(x, GraphSettings(6, "squared_euclidean", True, walks, "reach", "faiss", bound))
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(graph.n_nodes, graph.indices.numel(), (after - before) * 1024)
""")


def test_a_200k_graph_is_built_without_an_n_by_n_tensor():
    # O(N k^(s+1)) memory: with k = 6 and s = 2 a few hundred MB at most; one (N, N) float32 tensor
    # alone would be 160 GB, one (N, N) bool 40 GB (the peak is measured in a fresh process)
    pytest.importorskip("faiss")
    n_nodes, n_edges, grown = _graph_memory(2, 0)
    assert n_nodes == 200_000 and n_edges >= 200_000 * 6
    assert grown < 2 * 1024 ** 3, f"graph building grew the peak memory by {grown / 2 ** 30:.2f} GiB"


def _graph_memory(walk_length: int, max_neighbors: int):
    out = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, str(walk_length), str(max_neighbors)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return tuple(int(v) for v in out.stdout.split())


def test_a_bounded_200k_graph_holds_at_most_2_n_m_edges():
    # walks of 4 reach hundreds of nodes per row on dense 2-D data; max_neighbors = 16 keeps
    # O(N m): at most 2 N m edges after the symmetrisation, whatever the walks reach
    pytest.importorskip("faiss")
    n_nodes, n_edges, grown = _graph_memory(4, 16)
    assert n_nodes == 200_000 and 200_000 * 6 <= n_edges <= 2 * 16 * 200_000
    assert grown < 1024 ** 3, f"graph building grew the peak memory by {grown / 2 ** 30:.2f} GiB"
