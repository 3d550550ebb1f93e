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


def test_blocks_on_the_pool_give_the_blocks_of_one_thread(monkeypatch):
    """Small blocks (37 rows) spread over 2 pool threads, torch on 1: the same numbers, bit for bit,
    as every block in turn on the calling thread; torch's thread count restored."""
    import icontorch.embedding.affinity as affinity
    from icontorch._threads import rows_not_torch

    g = torch.Generator().manual_seed(2)
    x = torch.randn(1500, 8, dtype=torch.float64, generator=g)
    idx = nearest_neighbors(x, 30)
    p = PerplexityGaussian(8.0)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        pooled = _conditional_on_candidates(p, x, idx, "test", chunk_entries=37 * 30 * 8)
        assert torch.get_num_threads() == 2
        monkeypatch.setattr(affinity, "run_rows", lambda loop, n, min_rows=1: loop(0, n))
        with rows_not_torch():
            serial = _conditional_on_candidates(p, x, idx, "test", chunk_entries=37 * 30 * 8)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(pooled, serial)


def test_summed_entries_equal_coalesce_and_csr_order():
    """Duplicates added, entries sorted by row then column: the same as torch's coalesce (the path
    off the CPU), bit for bit where each position is repeated at most twice, as in p + p^T."""
    from icontorch.embedding.affinity import summed_entries

    g = torch.Generator().manual_seed(3)
    n = 300
    rows = torch.arange(n).repeat_interleave(7)
    cols = torch.stack([torch.randperm(n, generator=g)[:7] for _ in range(n)]).reshape(-1)   # distinct per row
    values = torch.rand(n * 7, dtype=torch.float64, generator=g)
    both_rows, both_cols = torch.cat([rows, cols]), torch.cat([cols, rows])
    keys = (both_rows * n + both_cols)
    assert int(torch.unique(keys, return_counts=True)[1].max()) == 2    # some positions come twice
    crow, row, col, value = summed_entries(both_rows, both_cols, torch.cat([values, values]), n)
    reference = torch.sparse_coo_tensor(torch.stack([both_rows, both_cols]), torch.cat([values, values]),
                                        (n, n), check_invariants=True).coalesce()
    assert torch.equal(row, reference.indices()[0]) and torch.equal(col, reference.indices()[1])
    assert torch.equal(value, reference.values())
    assert torch.equal(crow, torch.cat([torch.zeros(1, dtype=torch.long),
                                        torch.bincount(row, minlength=n).cumsum(0)]))
    assert row.dtype == col.dtype == crow.dtype == torch.long
