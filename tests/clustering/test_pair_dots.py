"""``pair_dots``: its compiled CPU loops against the gathers that define it (float64), values and
gradients, whatever the number of threads."""

import pytest
import torch

from icontorch._compiled import compiled
from icontorch.clustering.fused import pair_dots


def _inputs(h=3, b=17, c=6, e=40, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    phi = torch.rand(h, b, c, generator=g, dtype=dtype, requires_grad=True)
    psi = torch.rand(h, b, c, generator=g, dtype=dtype, requires_grad=True)
    rows = torch.randint(b, (e,), generator=g)           # repeated rows and columns: accumulated
    cols = torch.randint(b, (e,), generator=g)
    weights = torch.randn(h, e, generator=g, dtype=dtype)
    return phi, psi, rows, cols, weights


def _value_and_grads(phi, psi, rows, cols, weights):
    out = pair_dots(phi, psi, rows, cols)
    d_phi, d_psi = torch.autograd.grad((out * weights).sum(), (phi, psi))
    return out.detach(), d_phi, d_psi


@pytest.mark.parametrize("threads", [1, 2])
def test_compiled_loops_equal_the_gathers(threads, monkeypatch):
    phi, psi, rows, cols, weights = _inputs()
    assert compiled(phi)
    torch.set_num_threads(threads)
    ours = _value_and_grads(phi, psi, rows, cols, weights)
    monkeypatch.setenv("ICONTORCH_NO_NUMBA", "1")
    assert not compiled(phi)
    reference = _value_and_grads(phi, psi, rows, cols, weights)
    explicit = torch.stack([(phi[h, rows] * psi[h, cols]).sum(1) for h in range(phi.shape[0])])
    torch.testing.assert_close(reference[0], explicit.detach(), rtol=1e-14, atol=1e-15)
    for a, b in zip(ours, reference):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_thread_count_does_not_change_the_result():
    phi, psi, rows, cols, weights = _inputs(h=5, b=30, c=9, e=200, seed=2, dtype=torch.float32)
    torch.set_num_threads(1)
    one = _value_and_grads(phi, psi, rows, cols, weights)
    torch.set_num_threads(2)
    two = _value_and_grads(phi, psi, rows, cols, weights)
    for a, b in zip(one, two):
        assert torch.equal(a, b)


def test_float32_keeps_its_dtype_and_matches_float64():
    phi, psi, rows, cols, weights = _inputs(dtype=torch.float32, seed=4)
    out = pair_dots(phi, psi, rows, cols)
    assert out.dtype == torch.float32 and out.shape == (3, 40)
    exact = pair_dots(phi.double(), psi.double(), rows, cols)
    torch.testing.assert_close(out.double(), exact, rtol=1e-6, atol=1e-7)
