"""The fits' thread policy (icontorch._threads.FitThreads): the switch by measured speed, the
restored setting, and maps that do not depend on the thread count the policy picks."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from icontorch import TSNE
from icontorch._threads import FitThreads


@pytest.fixture
def torch_threads():
    before = torch.get_num_threads()
    yield before
    torch.set_num_threads(before)


def _simulate(threads, costs, iterations, clock):
    """Run ``iterations`` fake iterations whose duration depends on the thread count."""
    for i in range(iterations):
        clock[0] += costs(i)[torch.get_num_threads()]
        threads.step()


def test_switches_to_the_faster_count_and_back(torch_threads):
    clock = [0.0]
    busy, idle = {2: 5.0, 1: 1.0}, {2: 0.5, 1: 1.0}
    with FitThreads(2, period=5, max_period=20, clock=lambda: clock[0]) as threads:
        assert torch.get_num_threads() == 2
        threads.reset()
        _simulate(threads, lambda i: busy if i < 100 else idle, 200, clock)
    history = threads.history
    # busy: after the first probe almost every iteration runs on 1 thread (probes aside)
    assert np.mean([c == 1 for c in history[10:100]]) > 0.8
    # the load went away: within one stretch the policy is back to the requested 2
    assert np.mean([c == 2 for c in history[130:]]) > 0.8
    assert torch.get_num_threads() == torch_threads


def test_keeps_the_requested_count_when_it_is_faster_or_when_not_adaptive(torch_threads):
    clock = [0.0]
    with FitThreads(2, period=5, clock=lambda: clock[0]) as threads:
        threads.reset()
        _simulate(threads, lambda i: {2: 0.5, 1: 1.0}, 100, clock)
    assert np.mean([c == 2 for c in threads.history]) > 0.9
    with FitThreads(2, adaptive=False, clock=lambda: clock[0]) as threads:
        threads.reset()
        _simulate(threads, lambda i: {2: 5.0, 1: 1.0}, 50, clock)
    assert set(threads.history) == {2}
    with FitThreads(1, clock=lambda: clock[0]) as threads:
        threads.reset()
        _simulate(threads, lambda i: {1: 1.0}, 20, clock)
    assert set(threads.history) == {1}


def test_restores_the_users_setting_also_after_an_exception(torch_threads):
    torch.set_num_threads(1)
    with pytest.raises(RuntimeError):
        with FitThreads(2):
            assert torch.get_num_threads() == 2
            raise RuntimeError("boom")
    assert torch.get_num_threads() == 1

    def stop(i, loss, y):
        raise KeyboardInterrupt

    x = load_digits().data[:300].astype(np.float32)
    with pytest.raises(KeyboardInterrupt):
        TSNE(n_jobs=2, algorithm="fft", random_state=0, callbacks=stop, callbacks_every_iters=1).fit(x)
    assert torch.get_num_threads() == 1


def test_the_map_does_not_depend_on_the_thread_count_the_policy_picks(monkeypatch, torch_threads):
    """The same seed gives the same FFT map whether the policy switches every iteration or never."""
    x = load_digits().data[:300].astype(np.float32)

    def fit():
        return TSNE(n_jobs=2, algorithm="fft", random_state=0, early_exaggeration_iter=20,
                    n_iter=20).fit_transform(x)

    def alternate(self):
        self.history.append(self.current)
        self._set(1 if self.current == 2 else 2)

    monkeypatch.setattr(FitThreads, "step", lambda self: self.history.append(self.current))
    steady = fit()
    monkeypatch.setattr(FitThreads, "step", alternate)
    switching = fit()
    np.testing.assert_array_equal(steady, switching)


def test_row_loops_take_the_threads_and_torch_runs_on_one_inside_the_loop(torch_threads):
    """With ``row_loops`` the count is the compiled row loops' inside a loop; torch's setting is
    the requested one outside the loop and the user's after the fit, also after an exception."""
    from icontorch._threads import row_threads

    torch.set_num_threads(1)
    clock = [0.0]
    with pytest.raises(RuntimeError):
        with FitThreads(2, row_loops=True, clock=lambda: clock[0]) as threads:
            assert torch.get_num_threads() == 2 and row_threads() == 2
            threads.reset()
            assert torch.get_num_threads() == 1 and row_threads() == 2
            clock[0] += 1.0
            threads.step()
            assert torch.get_num_threads() == 1 and row_threads() in (1, 2)
            threads.restore_requested()
            assert torch.get_num_threads() == 2 and row_threads() == 2
            threads.reset()
            raise RuntimeError("interrupted inside the loop")
    assert torch.get_num_threads() == 1 and row_threads() == 1


def test_a_fit_leaves_torch_and_the_row_loops_as_it_found_them(torch_threads):
    from icontorch._threads import row_threads

    torch.set_num_threads(1)
    x = load_digits().data[:600].astype(np.float32)
    TSNE(n_jobs=2, algorithm="fft", random_state=0, early_exaggeration_iter=10, n_iter=10).fit(x)
    assert torch.get_num_threads() == 1 and row_threads() == 1


def test_rows_not_torch_gives_the_rows_the_threads_and_restores_both(torch_threads):
    from icontorch._threads import row_threads, rows_not_torch

    torch.set_num_threads(2)
    with pytest.raises(RuntimeError):
        with rows_not_torch():
            assert torch.get_num_threads() == 1 and row_threads() == 2
            raise RuntimeError("interrupted")
    assert torch.get_num_threads() == 2 and row_threads() == 2


@pytest.mark.parametrize("count", [1, 2])
def test_the_pooled_exact_knn_equals_brute_force_whatever_the_thread_count(torch_threads, count):
    """Blocks of 7 anchors spread over ranges of the pool: the same
    neighbours as a full distance matrix and a sort, self excluded, and torch's count restored."""
    from icontorch import knn

    torch.set_num_threads(count)
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(2300, 6)))
    found = knn.most_similar(x, x, 9, "squared_euclidean", self_offset=0, chunk_size=7)[0]
    d = torch.cdist(x, x).fill_diagonal_(float("inf"))
    expected = d.argsort(dim=1)[:, :9]
    assert torch.equal(found.sort(dim=1).values, expected.sort(dim=1).values)
    assert torch.get_num_threads() == count


def test_a_fit_on_row_loops_keeps_the_requested_count(torch_threads):
    """The CPU FFT fit runs its row loops at the requested count throughout (no probes of 1 thread)."""
    from icontorch.embedding import cpu_kernels

    if not cpu_kernels.available(torch.zeros(2, 2)):
        pytest.skip("the compiled row loops are not available")
    seen = []
    original = FitThreads.__exit__

    def keep(self, *exc):
        seen.append((self.adaptive, self.row_loops, list(self.history)))
        return original(self, *exc)

    x = load_digits().data[:600].astype(np.float32)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(FitThreads, "__exit__", keep)
        TSNE(n_jobs=2, algorithm="fft", random_state=0, early_exaggeration_iter=60, n_iter=60).fit(x)
    adaptive, row_loops, history = seen[0]
    assert row_loops and not adaptive and history == [2] * 120
