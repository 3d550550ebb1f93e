"""torch's CPU threads during an iterative fit: set on entry, adapted to a busy machine, restored on exit.

Why adapt: torch's intra-op parallelism joins its threads at the end of every operation. An
iterative fit runs thousands of short operations per second; when other processes share the
cores, the scheduler takes one of the fit's threads off its core for a time slice while the
others wait for it at the join, and every operation pays that wait. On a 2-core machine with
other jobs running, 2 threads were measured several times slower than 1 on the same t-SNE
iterations (benchmarks/embedding.py), while on an idle machine 2 are faster. No setting fixed
at the start is right in both cases, and the load changes during a fit.

The policy (:class:`FitThreads`): the fit runs with the requested number of threads; it calls
:meth:`FitThreads.step` after each iteration, which times the iterations and, every so often,
runs a few of them with each candidate count (the requested one and 1) and keeps the faster
for the next stretch. A stretch doubles while the same count keeps winning (up to
``max_period`` iterations) and shrinks back when the winner changes, so a steady machine pays
for few probes and a change of load is noticed within one stretch.

Callers that want the same result whatever the thread count (reproducible fits under this
policy) must use reductions whose order does not depend on the number of threads; the
neighbour embeddings do (:mod:`icontorch.embedding.repulsion`).

Where a loop's heavy work is compiled row loops (:func:`icontorch._threads.run_rows`),
the fit sets ``row_loops``: inside the loop torch then runs on 1 thread and the count above is
the row loops' (:func:`row_threads`). torch's OpenMP workers spin between operations, and an
iteration of many small operations kept one of them spinning almost all the time: measured on
15,000 MNIST digits (2 cores), 33 s of CPU for a 17 s fit, and 3 to 4x slower under a competing
2-thread load, against 21 s of CPU and 1.8x with torch on 1 thread and the rows on 2, at the same
quiet speed (``benchmarks/embedding.py``, section MNIST-70k, has the full-size figures). The row
loops' threads block rather than spin, so the t-SNE fit keeps their requested count
(``adaptive=False``): under a competing load the probes of 1 thread cost more than they found.

The same holds before the loop: the t-SNE affinity (:func:`icontorch.embedding.affinity.knn_affinity`)
runs with torch on 1 thread (:func:`rows_not_torch`) and its heavy parts on blocking threads. On
torch's own threads, the perplexity calibration (some fifty rounds of small operations) and the
sparse sums of the symmetrisation once took 34 s and 25 s under a competing 2-thread load for what
takes 2.6 s and 2 s alone (70,000 MNIST digits, 2 cores), the CPU time growing as much: threads
spinning while they waited.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Optional

import torch

__all__ = ["FitThreads", "row_threads", "rows_not_torch", "run_rows"]

_row_threads: Optional[int] = None


def row_threads() -> int:
    """The thread count of compiled row loops: the fit's inside a ``row_loops`` loop of
    :class:`FitThreads`, torch's current count otherwise."""
    return _row_threads or torch.get_num_threads()


def _set_row_threads(count: Optional[int]) -> None:
    global _row_threads
    _row_threads = count


MIN_ROWS_PER_TASK = 512
"""Fewer rows than this per thread: the loop runs in the calling thread alone."""
TASKS_PER_THREAD = 8
"""Rows are cut into about this many ranges per thread, taken in turn by whichever thread is free."""

_pool: Optional[ThreadPoolExecutor] = None
_pool_size = 0
_pool_lock = threading.Lock()


def _workers(count: int) -> ThreadPoolExecutor:
    """A pool of at least ``count`` worker threads, kept for the process (made larger when needed)."""
    global _pool, _pool_size
    with _pool_lock:
        if _pool is None or _pool_size < count:
            _pool, _pool_size = ThreadPoolExecutor(max_workers=count, thread_name_prefix="icontorch-rows"), count
        return _pool


def run_rows(loop: Callable[..., None], n_rows: int, *args: Any, min_rows: int = MIN_ROWS_PER_TASK) -> None:
    """Run ``loop(start, stop, *args)`` over the rows ``0 <= i < n_rows`` on :func:`row_threads`
    threads (torch's count, or the fit's inside a loop of row loops), at least ``min_rows`` rows per
    thread (fewer rows: the calling thread alone).

    The calling thread and ``threads - 1`` pool threads take ranges of rows in turn until none are
    left; a waiting thread blocks on a lock or a queue, so on a machine that other processes share no
    thread of the fit burns a core spinning while it waits (numba's own OpenMP threading layer
    did: a fit under a competing load then ran about 4x slower instead of about 2x). A thread that
    the scheduler takes off its core delays only the range it holds. ``loop`` must release the GIL
    and write only the rows it is given.
    """
    threads = max(1, min(row_threads(), n_rows // max(1, min_rows)))
    if threads == 1:
        loop(0, n_rows, *args)
        return
    step = -(-n_rows // (threads * TASKS_PER_THREAD))
    starts = iter(range(0, n_rows, step))
    take = threading.Lock()

    def work() -> None:
        while True:
            with take:
                start = next(starts, None)
            if start is None:
                return
            loop(start, min(start + step, n_rows), *args)

    pending = [_workers(threads - 1).submit(work) for _ in range(threads - 1)]
    try:
        work()
    finally:
        for task in pending:
            task.result()


@contextmanager
def rows_not_torch() -> Iterator[None]:
    """Inside: the row loops get the thread count found on entry (:func:`row_threads`) and torch
    runs on 1 thread; both restored on exit.

    For work cut into row ranges whose pieces are themselves torch operations (the blocks of an
    exact kNN): the pieces then run side by side on blocking threads, each on one core, instead
    of one at a time on torch's spinning OpenMP team.
    """
    count, before, torch_before = row_threads(), _row_threads, torch.get_num_threads()
    _set_row_threads(count)
    torch.set_num_threads(1)
    try:
        yield
    finally:
        _set_row_threads(before)
        torch.set_num_threads(torch_before)


class FitThreads:
    """Context manager: torch's thread count for a fit, chosen per stretch of iterations, restored after.

    ``with FitThreads(n_jobs) as threads: ... threads.step() ...``: on entry torch runs with
    ``n_jobs`` threads (-1: all cores; None: torch's current setting); on exit, also after an
    exception, torch's setting is the one found on entry.

    Args:
        n_jobs: the requested thread count, -1 for all cores, None for torch's current setting.
        adaptive: let :meth:`step` switch between the requested count and 1 by measured speed;
            False keeps the requested count throughout.
        row_loops: inside a loop (:meth:`reset` to :meth:`restore_requested`) the count is the row
            loops' (:func:`row_threads`) and torch runs on 1 thread.
        probe: iterations timed per candidate count in a probe (the fastest of them counts).
        period: iterations between the first probes; doubles while the winner stays the same.
        max_period: the longest stretch without a probe.
        clock: the timer (seconds).
    """

    def __init__(self, n_jobs: Optional[int], adaptive: bool = True, row_loops: bool = False, probe: int = 2,
                 period: int = 25, max_period: int = 200, clock: Callable[[], float] = time.perf_counter) -> None:
        self.n_jobs, self.adaptive, self.row_loops, self.clock = n_jobs, adaptive, row_loops, clock
        self.probe, self.base_period, self.max_period = probe, period, max_period
        self.previous = torch.get_num_threads()
        self.history: List[int] = []     # the thread count of every iteration timed by step()
        self._in_loop = False

    # -- the context ---------------------------------------------------------------------------
    def __enter__(self) -> "FitThreads":
        self.previous = torch.get_num_threads()
        if self.n_jobs is None:
            self.requested = self.previous
        else:
            self.requested = (os.cpu_count() or 1) if self.n_jobs == -1 else self.n_jobs
        self.candidates = [self.requested] + ([1] if self.requested > 1 else [])
        self._start(loop=False)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._in_loop = False
        _set_row_threads(None)
        torch.set_num_threads(self.previous)

    # -- the policy ----------------------------------------------------------------------------
    def reset(self) -> None:
        """Start over (a new loop): the requested count, a probe first; restores it if it was changed."""
        self._start(loop=True)

    def _start(self, loop: bool) -> None:
        self._in_loop = loop and self.row_loops
        self._set(self.requested)
        self.period = self.base_period
        self.chosen = self.requested
        self._plan: List[int] = self._probe_plan()
        self._times: Dict[int, float] = {}
        self._probing, self._countdown = False, self.period
        self._last = self.clock()
        self._warm = False           # the first iteration of a loop builds caches: not timed

    def restore_requested(self) -> None:
        """Back to the requested count of torch (for work after the loop, e.g. a final exact loss)."""
        self._in_loop = False
        self._set(self.requested)

    def _set(self, count: int) -> None:
        self.current = count
        _set_row_threads(count if self._in_loop else None)
        torch_count = 1 if self._in_loop else count
        if torch.get_num_threads() != torch_count:
            torch.set_num_threads(torch_count)

    def _probe_plan(self) -> List[int]:
        if not self.adaptive or len(self.candidates) == 1:
            return []
        # the other candidates first, the current winner last: the loop then continues on it
        order = [c for c in self.candidates if c != self.chosen] + [self.chosen]
        return [c for c in order for _ in range(self.probe)]

    def step(self) -> None:
        """Call after each iteration: times it and sets the thread count of the next one."""
        now = self.clock()
        elapsed, self._last = now - self._last, now
        self.history.append(self.current)
        if not self.adaptive or len(self.candidates) == 1:
            return
        if not self._warm:
            self._warm = True
        elif self._probing:
            best = self._times.get(self.current)
            self._times[self.current] = elapsed if best is None else min(best, elapsed)
        self._advance()
        self._last = self.clock()

    def _advance(self) -> None:
        if self._plan:
            self._probing = True
            self._set(self._plan.pop(0))
            return
        if self._probing:          # a probe just ended: keep the fastest count for a stretch
            self._probing = False
            winner = min(self._times, key=self._times.get)    # type: ignore[arg-type]
            self.period = (min(2 * self.period, self.max_period) if winner == self.chosen
                           else self.base_period)
            self.chosen, self._times = winner, {}
            self._countdown = self.period
            self._set(winner)
            return
        self._countdown -= 1
        if self._countdown <= 0:
            self._plan = self._probe_plan()
            self._advance()
