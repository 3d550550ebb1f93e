"""The fused CPU loops (numba) against the torch expressions they replace, in float64."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from icontorch import _compiled, _threads
from icontorch.embedding import cpu_kernels
from icontorch.embedding.affinity import EdgeAffinity
from icontorch.embedding.optim import SparseObjective, _student_t_pair_sum
from icontorch.neighborhoods.kernels import KernelProfile
from icontorch.neighborhoods.spatial import Gaussian, StudentT

pytestmark = pytest.mark.skipif(not _compiled.HAS_NUMBA, reason="numba is not installed")


def _random_affinity(n: int, k: int, seed: int) -> EdgeAffinity:
    g = torch.Generator().manual_seed(seed)
    rows = torch.arange(n).repeat_interleave(k)
    cols = (rows + torch.randint(1, n, (n * k,), generator=g)) % n
    pairs = torch.sparse_coo_tensor(torch.stack([torch.cat([rows, cols]), torch.cat([cols, rows])]),
                                    torch.rand(2 * n * k, generator=g, dtype=torch.float64), (n, n),
                                    check_invariants=True).coalesce()
    weight = pairs.values() / pairs.values().sum()
    return EdgeAffinity(pairs.indices()[0], pairs.indices()[1], weight, weight.log(), n, joint=True)


@pytest.mark.parametrize("kernel", [StudentT(dof=1.0), StudentT(dof=3.0), Gaussian(sigma=2.0)])
@pytest.mark.parametrize("dim", [1, 2, 3])
def test_fused_attraction_equals_torch_expression(kernel, dim, monkeypatch):
    affinity = _random_affinity(300, 7, seed=dim)
    y = torch.randn(300, dim, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 3
    objective = SparseObjective(affinity, kernel, "exact")
    value, grad = objective.attraction(y, 4.0, True)
    _, grad_no_value = objective.attraction(y, 4.0, False)
    assert objective._col32 is not None            # the fused loop ran
    monkeypatch.setenv(_compiled.DISABLE_ENV, "1")
    ref_value, ref_grad = objective.attraction(y, 4.0, True)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(grad_no_value, ref_grad, rtol=1e-12, atol=1e-15)
    assert math.isclose(float(value), float(ref_value), rel_tol=1e-12)


def test_fused_attraction_is_the_gradient_of_the_attraction():
    """Against autograd of ``-a sum_e w_e log w(y_i - y_j)``: the definition, not the torch loop."""
    affinity = _random_affinity(200, 5, seed=3)
    kernel = StudentT(dof=1.0)
    y = torch.randn(200, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2)) * 5
    _, grad = SparseObjective(affinity, kernel, "exact").attraction(y, 12.0, False)
    yg = y.clone().requires_grad_(True)
    loss = -(affinity.weight * kernel.logits(yg[affinity.rows], yg[affinity.cols].unsqueeze(1))[:, 0]).sum()
    (expected,) = torch.autograd.grad(12.0 * loss, yg)
    torch.testing.assert_close(grad, expected, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("dof", [1.0, 2.5])
@pytest.mark.parametrize("n", [1, 2, 7, 64])
def test_pair_sum_equals_torch_expression(dof, n):
    y = torch.randn(n, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(n)) * 4
    expected = _student_t_pair_sum(y, KernelProfile("student_t", dof), chunk=16)
    d = torch.cdist(y, y).square()
    brute = float(((1 + d / dof) ** (-(dof + 1) / 2)).sum() - n)
    assert math.isclose(cpu_kernels.student_t_pair_sum(y, dof), expected, rel_tol=1e-12, abs_tol=1e-300)
    assert math.isclose(cpu_kernels.student_t_pair_sum(y, dof), brute, rel_tol=1e-10, abs_tol=1e-12)


def test_same_result_with_one_and_two_threads():
    """Each row is summed by one thread in a fixed order: the thread count cannot change a bit."""
    affinity = _random_affinity(2200, 10, seed=5)     # over 2 x 512 rows (and pairs of rows): 2 threads
    y = torch.randn(2200, 2, generator=torch.Generator().manual_seed(3)) * 20
    objective = SparseObjective(affinity, StudentT(dof=1.0), "exact")
    objective.a_value = objective.a_value.float()
    before = torch.get_num_threads()
    try:
        results = []
        for count in (1, 2):          # the loops follow torch's thread count
            torch.set_num_threads(count)
            results.append((objective.attraction(y, 1.0, False)[1], cpu_kernels.student_t_pair_sum(y, 1.0)))
    finally:
        torch.set_num_threads(before)
    assert torch.equal(results[0][0], results[1][0])
    assert results[0][1] == results[1][1]


def test_run_rows_covers_every_row_once_on_several_threads():
    """The ranges handed out tile [0, n) exactly, on the caller and pool threads; an error in a range
    reaches the caller."""
    import threading
    import time

    seen, names = [], set()

    def loop(start, stop, out):
        seen.append((start, stop))
        names.add(threading.current_thread().name)
        out[start:stop] += 1
        time.sleep(0.002)          # lets the GIL go, as the compiled loops do

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        out = np.zeros(10_000)
        _threads.run_rows(loop, out.shape[0], out)
        assert np.all(out == 1) and len(seen) == 3 * _threads.TASKS_PER_THREAD
        assert threading.current_thread().name in names and len(names) == 3

        def failing(start, stop):
            if start > 0:
                raise ValueError("range failed")
        with pytest.raises(ValueError, match="range failed"):
            _threads.run_rows(failing, 10_000)
        torch.set_num_threads(1)
        seen.clear()
        _threads.run_rows(loop, 10_000, np.zeros(10_000))
        assert seen == [(0, 10_000)]
    finally:
        torch.set_num_threads(before)


def test_not_used_where_it_does_not_apply(monkeypatch):
    y = torch.zeros(3, 2)
    assert cpu_kernels.available(y, KernelProfile("student_t", 1.0))
    assert not cpu_kernels.available(y.half())
    assert not cpu_kernels.available(y.requires_grad_(True))
    monkeypatch.setenv(_compiled.DISABLE_ENV, "1")
    assert not cpu_kernels.available(torch.zeros(3, 2))


@pytest.mark.parametrize("dim", [1, 2])
def test_fused_grid_equals_torch_expression(dim, monkeypatch):
    """Spreading charges to the FFT grid and reading potentials back, fused and in torch (float64)."""
    from icontorch.embedding.repulsion import GridInterpolator

    g = torch.Generator().manual_seed(dim)
    y = torch.randn(500, dim, dtype=torch.float64, generator=g) * 15
    charges = torch.rand(500, 2, dtype=torch.float64, generator=g)
    grid = GridInterpolator(KernelProfile("student_t", 1.0))
    s, force = grid(y, charges)
    total, _ = grid(y, charges, total_only=True)
    evaluate = grid.field(y[:400], charges[:400])
    s_new, force_new = evaluate(y[400:])
    monkeypatch.setenv(_compiled.DISABLE_ENV, "1")
    ref_s, ref_force = grid(y, charges)
    ref_total, _ = grid(y, charges, total_only=True)
    ref_s_new, ref_force_new = grid.field(y[:400], charges[:400])(y[400:])
    for got, ref in [(s, ref_s), (force, ref_force), (total, ref_total), (s_new, ref_s_new),
                     (force_new, ref_force_new)]:
        torch.testing.assert_close(got, ref, rtol=1e-11, atol=1e-11)
