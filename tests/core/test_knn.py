import numpy as np
import pytest
import torch

from icontorch import IConError
from icontorch.knn import exact_knn


@pytest.mark.parametrize("metric", ["cosine", "squared_euclidean"])
@pytest.mark.parametrize("chunk_size", [1, 7, 1000])
def test_exact_knn_equals_brute_force(metric, chunk_size):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(53, 6))
    if metric == "cosine":
        u = x / np.linalg.norm(x, axis=1, keepdims=True)
        dist = 1.0 - u @ u.T
    else:
        dist = ((x[:, None] - x[None]) ** 2).sum(-1)
    np.fill_diagonal(dist, np.inf)
    expected = np.argsort(dist, axis=1, kind="stable")[:, :5]
    idx, d = exact_knn(torch.tensor(x), 5, metric=metric, chunk_size=chunk_size)
    np.testing.assert_array_equal(idx.numpy(), expected)
    np.testing.assert_allclose(d.numpy(), np.take_along_axis(dist, expected, 1), atol=1e-10)


def test_exact_knn_with_candidates():
    x, y = torch.randn(10, 3, dtype=torch.float64), torch.randn(20, 3, dtype=torch.float64)
    idx, _ = exact_knn(x, 20, y=y, metric="squared_euclidean", chunk_size=3)
    expected = torch.cdist(x, y).argsort(dim=1)
    assert torch.equal(idx, expected)


def test_exact_knn_errors():
    x = torch.randn(5, 3)
    message = r"^exact_knn: n_neighbors must be at most the number of candidates \(4\); got 5\.$"
    with pytest.raises(IConError, match=message):
        exact_knn(x, 5)
    assert exact_knn(x, 4)[0].shape == (5, 4)
    with pytest.raises(IConError, match="metric must be one of"):
        exact_knn(x, 2, metric="manhattan")
    with pytest.raises(IConError, match="finite"):
        exact_knn(torch.full((5, 3), float("nan")), 2)
