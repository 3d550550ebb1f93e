"""t-SNE's kNN affinity takes a direct route for PerplexityGaussian: the same p as its forward."""

from __future__ import annotations

import math

import torch

from icontorch.embedding.affinity import _conditional_on_candidates, nearest_neighbors
from icontorch.neighborhoods.spatial import PerplexityGaussian, perplexity_precision


def test_direct_route_equals_forward_on_candidates():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 12, dtype=torch.float64, generator=g) * 1e3
    idx = nearest_neighbors(x, 40)
    p = PerplexityGaussian(10.0)
    got = _conditional_on_candidates(p, x, idx, "test")
    expected = p(x, x[idx])
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)
    assert got.dtype == x.dtype


def test_perplexity_search_reaches_the_target_fast_and_from_far():
    """Distances from 1e-6 to 1e6 per row: every row within 1e-10 nats of log(perplexity)."""
    g = torch.Generator().manual_seed(1)
    scales = 10.0 ** torch.linspace(-6, 6, 50, dtype=torch.float64)
    d = torch.rand(50, 60, generator=g, dtype=torch.float64) * scales[:, None]
    beta = perplexity_precision(d, 20.0, max_iter=25)    # bisection alone needs about 60 steps here
    log_p = torch.log_softmax(-beta[:, None] * d, 1)
    entropy = -(log_p.exp() * log_p).sum(1)
    assert float((entropy - math.log(20.0)).abs().max()) < 1e-10
