"""The bounded walk graph (``walk_graph(..., max_neighbors=m)``) against numpy oracles, and its
independence from the blocks of rows it is computed in."""

import numpy as np
import pytest
import torch

from icontorch import IConError
from icontorch.clustering import walks as graph_module
from icontorch.clustering.graph import knn_indices, mutual_knn
from icontorch.clustering.walks import walk_graph


def _knn(n: int = 60, k: int = 3, seed: int = 4) -> torch.Tensor:
    return knn_indices(torch.randn(n, 5, generator=torch.Generator().manual_seed(seed)), k)


def _rows(graph) -> list:
    return [graph.rows(i).tolist() for i in range(graph.n_nodes)]


def _adjacency(knn: torch.Tensor) -> np.ndarray:
    """Counts of i -> j edges of the (N, k) table (a self-loop counts on the diagonal)."""
    n, k = knn.shape
    a = np.zeros((n, n))
    np.add.at(a, (np.repeat(np.arange(n), k), knn.numpy().ravel()), 1.0)
    return a


@pytest.mark.parametrize("walk_length", [0, 1, 3])
@pytest.mark.parametrize("max_neighbors", [1, 4, 9])
def test_reach_keeps_the_nodes_of_fewest_steps_then_most_edges(walk_length, max_neighbors):
    """Oracle (breadth first): layer 0 is {i}; layer t the nodes j != i first reached in t steps,
    each with the number of its edges u -> j from layer t - 1; row i keeps the m nodes of the
    earliest layers, then most such edges, then lowest id."""
    knn = mutual_knn(_knn())
    n = knn.shape[0]
    a = _adjacency(knn)
    mine = _rows(walk_graph(knn, walk_length, symmetric=False, max_neighbors=max_neighbors))
    for i in range(n):
        layer, seen, ranked = np.eye(n)[i] > 0, np.eye(n)[i] > 0, []
        for t in range(1, walk_length + 2):
            edges = layer.astype(float) @ a
            new = (edges > 0) & ~seen
            ranked += sorted(np.flatnonzero(new).tolist(), key=lambda j: (-edges[j], j))
            seen |= new
            layer = new
        assert mine[i] == sorted(ranked[:max_neighbors]), i


@pytest.mark.parametrize("walk_length", [0, 2])
def test_sum_keeps_the_nodes_of_largest_walk_mass(walk_length):
    """Oracle: W = P + ... + P^(s+1), P = A / k; row i keeps m nodes j != i, none of them lighter
    than a node it drops (ties between equal masses may go either way), with W's weights."""
    knn, m = _knn(), 5
    n, k = knn.shape
    p = _adjacency(knn) / k
    power, w = np.eye(n), np.zeros((n, n))
    for _ in range(walk_length + 1):
        power = power @ p
        w += power
    np.fill_diagonal(w, 0.0)
    graph = walk_graph(knn, walk_length, symmetric=False, mode="sum", max_neighbors=m)
    for i in range(n):
        kept = graph.rows(i).numpy()
        weights = graph.weights[graph.indptr[i]:graph.indptr[i + 1]].numpy()
        assert len(kept) == min(m, int((w[i] > 0).sum()))
        np.testing.assert_allclose(weights, w[i, kept], rtol=1e-6)
        dropped = np.setdiff1d(np.flatnonzero(w[i] > 0), kept)
        if dropped.size:
            assert w[i, kept].min() >= w[i, dropped].max() - 1e-12


@pytest.mark.parametrize("mode", ["reach", "sum"])
def test_a_bound_no_row_reaches_changes_nothing(mode):
    knn = _knn()
    free = walk_graph(knn, 2, symmetric=True, mode=mode)
    bounded = walk_graph(knn, 2, symmetric=True, mode=mode, max_neighbors=knn.shape[0])
    torch.testing.assert_close(bounded.indptr, free.indptr)
    torch.testing.assert_close(bounded.indices, free.indices)
    if mode == "sum":
        torch.testing.assert_close(bounded.weights, free.weights)


@pytest.mark.parametrize("mode", ["reach", "sum"])
@pytest.mark.parametrize("max_neighbors", [None, 6])
def test_blocks_of_rows_do_not_change_the_graph(monkeypatch, mode, max_neighbors):
    """Walked in blocks of 256 rows (the smallest block) or all at once: the same graph."""
    knn = mutual_knn(_knn(n=700, k=5, seed=1))
    whole = walk_graph(knn, 2, mode=mode, max_neighbors=max_neighbors)
    monkeypatch.setattr(graph_module, "_BLOCK_ENTRIES", 1)
    blocked = walk_graph(knn, 2, mode=mode, max_neighbors=max_neighbors)
    torch.testing.assert_close(blocked.indptr, whole.indptr)
    torch.testing.assert_close(blocked.indices, whole.indices)
    if mode == "sum":
        torch.testing.assert_close(blocked.weights, whole.weights)


def test_the_bound_bounds_the_edges_and_is_checked():
    knn = _knn(n=400, k=6)
    graph = walk_graph(knn, 3, symmetric=True, max_neighbors=10)
    assert int(graph.indices.numel()) <= 2 * 10 * 400
    assert int(walk_graph(knn, 3, symmetric=False, max_neighbors=10).degree.max()) == 10
    for bad in (0, -3, 2.5, "many"):
        with pytest.raises(IConError, match="max_neighbors"):
            walk_graph(knn, 1, max_neighbors=bad)


def test_clustering_builds_the_bounded_graph():
    from icontorch.clustering import Clustering
    from icontorch.clustering.specs import AUTO_EDGES, MAX_NEIGHBORS, check_graph_settings

    x = torch.randn(120, 5, generator=torch.Generator().manual_seed(3))
    model = Clustering(n_clusters=3, walk_length=2, max_neighbors=3, n_iter=2, n_heads=1, random_state=0).fit(x)
    expected = walk_graph(mutual_knn(knn_indices(x, 6)), 2, max_neighbors=3)
    torch.testing.assert_close(model.graph_.indptr, expected.indptr)
    torch.testing.assert_close(model.graph_.indices, expected.indices)
    spec = model._spec()
    for n, bound in ((120, AUTO_EDGES // 120), (70_000, 479), (10 ** 6, MAX_NEIGHBORS)):
        assert check_graph_settings("t", Clustering(), n, spec).max_neighbors == bound
    assert check_graph_settings("t", Clustering(max_neighbors=None), 10 ** 6, spec).max_neighbors is None


def test_labels_in_blocks_of_rows_equal_the_argmax_of_the_probabilities(monkeypatch):
    from icontorch.clustering import Clustering, inputs

    x = torch.randn(150, 5, generator=torch.Generator().manual_seed(2))
    model = Clustering(n_clusters=4, n_iter=3, n_heads=1, random_state=0).fit(x)
    expected = model.predict_proba(x).argmax(1)
    monkeypatch.setattr(inputs, "LABEL_BLOCK", 8)             # blocks of 2 rows
    torch.testing.assert_close(model.predict(x), expected)
    np.testing.assert_array_equal(model.labels_, expected.numpy())
