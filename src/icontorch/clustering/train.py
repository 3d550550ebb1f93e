"""The training loop of :class:`~icontorch.clustering.Clustering`: Adam on H heads, EMA, head selection.

The loop sees only what it is given (the features, p's graph, a batch objective and a
:class:`TrainSettings`) and returns a :class:`TrainedHeads`; it knows nothing of the estimator.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from .._validation import IConError, fail
from .graph import NeighborGraph, compose_batch
from .heads import ClusterHeads, nearest_centroid_head
from .objectives import BatchObjective

__all__ = ["TrainSettings", "TrainedHeads", "train_heads", "batches_per_pass", "LEARNING_RATE_SCHEDULES",
           "MANY_CLUSTERS", "auto_training", "auto_init", "INITS",
           "Augment"]

_EVAL_BATCHES = 10           # fixed batches on which the heads' final losses are compared

Augment = Callable[[Tensor, Optional[torch.Generator]], Tensor]

MANY_CLUSTERS = 50
"""From this many clusters on, the ``"auto"`` training (:func:`auto_training`) trades heads for steps."""


def auto_training(n_clusters: int) -> Tuple[int, int, float]:
    """``(n_heads, n_iter, learning_rate)`` of the ``"auto"`` settings for C clusters: ``(12, 600, 1e-2)``
    below :data:`MANY_CLUSTERS`, ``(3, 2000, min(3e-2, 3 / C))`` from there on (7,200 and 6,000
    head-steps). The 12 heads below 50 clusters are 10 from random weights and 2 from k-Means
    centres (:func:`auto_init`).

    With few clusters a step sees hundreds of items of every cluster and the optimum a head ends in
    matters most: keeping the best of 10 heads by loss lifted the mean accuracy on MNIST-5k and 20,000
    MNIST digits, while 3 heads x 1,800 steps at 3e-2 lost 0.07 on the first 10,000 MNIST digits
    (0.767 against 0.834, 2 seeds). With many clusters a step sees a few items of each, and the
    heads were far from converged after 600 steps: on a dev mixture of 50,000 points in 64
    dimensions and 100 groups (seed 1 of the benchmark's generator, not a reported data set)
    600 steps reached 0.876, 1,800 steps 0.939 (with 10 heads or 3), 3 heads x 1,800 steps at 3e-2
    0.982, against MiniBatchKMeans's 0.922; on a dev mixture of 100,000 points in 128 dimensions and
    1,000 groups, 3 x 2,000 at 3e-2 reached 0.908 against MiniBatchKMeans's 0.898 (on the benchmark's
    100,000 points in 100 groups: 0.981 against 0.903 before, section clustering_scale). Nothing between
    10 and 100 clusters was measured. From random heads it was not better everywhere: on the
    benchmark's 10^6 points in 1,000 groups (docs/benchmarks.md, section clustering_million) it
    reached 0.922 in 13 minutes, where 10 x 600 at 1e-2 had reached 0.946 in 20; with k-Means-started
    heads and the rate below, 0.984 in 17 (MiniBatchKMeans: 0.983; one seed each).

    The learning rate falls as 3 / C beyond 100 clusters, once the heads start from k-Means centres
    (:func:`auto_init`): a column of C sees about B / C items of a step's B, and at a rate fit for
    100 clusters the noisy steps emptied the small groups of 1,000. On the dev mixture of 1,000
    groups, from k-Means centres: 0.961 at 3e-2, 0.983 at 3e-3, 0.987 at 1e-3 (the centres alone:
    0.975); on a dev mixture of 50,000 points in 64 dimensions and 100 groups: 0.995 at 3e-2, 0.958
    at 3e-3, 0.953 at 1e-3.
    """
    if n_clusters < MANY_CLUSTERS:
        return (12, 600, 1e-2)
    return (3, 2000, min(3e-2, 3.0 / n_clusters))


INITS = ("random", "k-means")
"""How the heads start: N(0, 1 / fan_in) weights, or the nearest-centroid rule of a k-Means run per head."""


def auto_init(n_clusters: int, hidden_layer_sizes: Tuple[int, ...], n_heads: int) -> int:
    """``init="auto"``: how many of the ``n_heads`` heads start at k-Means centres (the last ones; the
    others from random weights). Linear heads: all of them from :data:`MANY_CLUSTERS` clusters on,
    one in five (``n_heads // 5``) below; MLP heads (no nearest-centroid form): none.

    With many clusters a step sees a few items of each, and randomly initialised heads leave whole
    clusters empty: on a dev mixture of 100,000 points in 128 dimensions and 1,000 groups (seed 1 of
    the benchmark's generator, not a reported data set) 3 heads x 2,000 steps reached 0.908 from random
    weights and 0.961 from k-Means centres (MiniBatchKMeans alone: 0.898).

    With 10 clusters neither start wins everywhere, and the loss that ranks the heads picks between
    them. On pixels a k-Means start is poor: 10 k-Means-started heads kept 0.790, 0.720 and 0.852 on
    the first 20,000 MNIST digits (seeds 0-2) against 0.854, 0.846 and 0.845 from random heads. On a
    mixture of unequal groups random heads split a big group and join small ones: 0.686 and 0.891 on
    dev mixtures of 100,000 points in 64 dimensions and 10 groups (seeds 1 and 2 of the benchmark's
    generator). With 10 random heads and 2 k-Means-started ones the lowest loss kept 0.800 and 1.000
    on those mixtures, and the same heads as the 10 random ones on the MNIST digits (20,000: 0.854,
    0.846, 0.845; 5,000: 0.773, 0.821, 0.774) and on the 1,797 digits (0.898, 0.948, 0.873): there a
    random head had the lowest loss (2026-12-04).
    """
    if hidden_layer_sizes:
        return 0
    return n_heads if n_clusters >= MANY_CLUSTERS else n_heads // 5


def _constant(learning_rate: float, step: int, n_iter: int) -> float:
    return learning_rate


def _step(learning_rate: float, step: int, n_iter: int) -> float:
    return learning_rate * 0.5 ** min(2, step // max(1, n_iter // 3))   # the paper: halve twice, in thirds


def _cosine(learning_rate: float, step: int, n_iter: int) -> float:
    return learning_rate * 0.5 * (1.0 + math.cos(math.pi * step / n_iter))


LEARNING_RATE_SCHEDULES: Dict[str, Callable[[float, int, int], float]] = {
    "constant": _constant, "step": _step, "cosine": _cosine}
"""``name -> f(learning_rate, step, n_iter)``, Adam's learning rate at optimiser ``step`` (0-based) of
``n_iter``: a schedule in steps, the same for any data-set size."""


@dataclass(frozen=True)
class TrainSettings:
    """Everything the loop needs besides the data (see :class:`~icontorch.clustering.Clustering`).

    ``n_iter`` is the number of optimiser steps; the anchors are drawn in passes over the data
    (epochs, a random order each). ``n_views`` and ``n_sampled_neighbors`` are the method's batch
    composition; ``temperature``
    divides the heads' logits before every softmax; ``uses_teacher`` passes the averaged heads'
    logits to the objective; the last ``centroid_heads`` heads start at k-Means centres, the others
    at random weights (:data:`INITS`, :func:`auto_init`); ``random_state`` seeds
    the heads (``+0``), the batches (``+1``), the selection batches (``+2``), ``augment``'s generator
    (``+3``) and the k-Means run of head h (``+4 + h``).
    """

    n_heads: int
    n_clusters: int
    hidden_layer_sizes: Tuple[int, ...]
    batch_size: int
    n_views: int
    n_sampled_neighbors: int
    n_iter: int
    learning_rate: float
    learning_rate_schedule: str
    weight_decay: float
    ema: float
    temperature: float
    uses_teacher: bool
    random_state: int
    verbose: bool = False
    description: str = "Clustering"
    centroid_heads: int = 0


@dataclass
class TrainedHeads:
    """The outcome: the kept head (H = 1), the (passes, H) mean loss per pass over the anchors, the (H,) final
    losses on the selection batches, the index of the kept head and the number of optimiser steps."""

    head: ClusterHeads
    loss_history: np.ndarray
    head_losses: np.ndarray
    best_head: int
    n_iter: int


class _Batches:
    """``(anchors, generator) -> (src, inputs)``: the data-set index of every batch item and the
    heads' inputs (a view from ``views`` or the row of ``x``, ``augment`` applied, then the
    standardisation ``(x - mean) / scale`` if given).

    With ``views`` (N, V, d), copy t of anchor m is its view ``(o_m + t) mod V`` (``o_m`` drawn
    uniformly; distinct views when ``n_views <= V``) and a sampled neighbour is a uniformly drawn
    view of its node, so the "other views" of p are different augmentations."""

    def __init__(self, x: Tensor, graph: Optional[NeighborGraph], settings: TrainSettings,
                 augment: Optional[Augment], mean: Optional[Tensor], scale: Optional[Tensor],
                 views: Optional[Tensor] = None) -> None:
        self.x, self.graph, self.augment, self.mean, self.scale = x, graph, augment, mean, scale
        self.views = views
        self.n_views, self.n_sampled_neighbors = settings.n_views, settings.n_sampled_neighbors
        self.augment_generator = torch.Generator(device=x.device).manual_seed(settings.random_state + 3)

    def __call__(self, anchors: Tensor, generator: torch.Generator) -> Tuple[Tensor, Tensor]:
        src = compose_batch(anchors, self.graph, self.n_views, self.n_sampled_neighbors, generator)
        if self.views is None:
            batch = self.x.index_select(0, src)
        else:
            batch = self.views[src, self._view_ids(anchors, src, generator)]
        if self.augment is not None:
            batch = self._augmented(batch)
        return src, batch if self.mean is None else (batch - self.mean) / self.scale

    def _view_ids(self, anchors: Tensor, src: Tensor, generator: torch.Generator) -> Tensor:
        """(B,) which of the V cached views each batch item is."""
        n_cached, m = self.views.shape[1], anchors.shape[0]
        offsets = torch.randint(n_cached, (m,), generator=generator, device=src.device)
        copies = (offsets[None, :] + torch.arange(self.n_views, device=src.device)[:, None]) % n_cached
        rest = torch.randint(n_cached, (src.shape[0] - copies.numel(),), generator=generator, device=src.device)
        return torch.cat([copies.reshape(-1), rest])

    def _augmented(self, batch: Tensor) -> Tensor:
        """``augment(batch, generator)``, checked: a finite tensor of the batch's shape, dtype and device."""
        out = self.augment(batch, self.augment_generator)
        who, name = "Clustering", "augment(x, generator)"
        if not isinstance(out, Tensor) or out.shape != batch.shape:
            raise fail(who, name, f"return a tensor of shape {tuple(batch.shape)}",
                       out if isinstance(out, Tensor) else type(out).__name__)
        if out.dtype != batch.dtype or out.device != batch.device:
            raise fail(who, name, f"return a tensor of the input's dtype {batch.dtype} on {batch.device}", out)
        if not bool(torch.isfinite(out).all()):
            raise fail(who, name, "return finite values", "a tensor containing NaN or Inf")
        return out


def _anchor_batches(n: int, batch_size: int, generator: torch.Generator, device: torch.device) -> List[Tensor]:
    """A random permutation cut into batches; a last batch smaller than half the others joins the one
    before, so that no step sees a tiny batch (its cluster sizes n_c would be noise)."""
    order = torch.randperm(n, generator=generator, device=device)
    batches = list(order.split(batch_size))
    if len(batches) > 1 and batches[-1].shape[0] < batch_size // 2:
        tail = batches.pop()
        batches[-1] = torch.cat([batches[-1], tail])
    return batches


def batches_per_pass(n: int, batch_size: int) -> int:
    """Steps of one pass over ``n`` anchors in batches of ``batch_size`` (:func:`_anchor_batches`)."""
    full, tail = divmod(n, batch_size)
    return full + (1 if 0 < tail and tail >= batch_size // 2 else 0) if full else 1


def train_heads(x: Tensor, graph: Optional[NeighborGraph], objective: BatchObjective, settings: TrainSettings,
                augment: Optional[Augment] = None, mean: Optional[Tensor] = None,
                scale: Optional[Tensor] = None, views: Optional[Tensor] = None) -> TrainedHeads:
    """Train ``settings.n_heads`` heads on ``x`` (N, d) for ``settings.n_iter`` steps; keep the one of lowest loss.

    Every step: a batch of anchors, their views and sampled neighbours; the (H,) losses of all
    heads are summed and minimised with Adam; the averaged heads follow with momentum ``ema``.
    At the end every averaged head (every head when ``ema = 0``) is scored on the same
    ``_EVAL_BATCHES`` fixed batches and the lowest mean loss wins (labels are never used).

    Args:
        x: (N, d) features, on the device and in the dtype of the computation.
        graph: p's neighbour graph (sampled neighbours come from it), or None.
        objective: the method's batch objective.
        settings: the loop's settings.
        augment: optional ``augment(batch, generator) -> batch`` on (B, d) raw features.
        mean, scale: (d,) standardisation of the head inputs, or None.
        views: optional (N, V, d) cached views of every item; batches draw their inputs from them.
    """
    heads = ClusterHeads(settings.n_heads, x.shape[1], settings.n_clusters, settings.hidden_layer_sizes,
                         torch.Generator().manual_seed(settings.random_state)).to(device=x.device, dtype=x.dtype)
    if settings.centroid_heads:
        _init_at_centroids(heads, x if mean is None else (x - mean) / scale, settings)
    averaged = copy.deepcopy(heads)
    batches = _Batches(x, graph, settings, augment, mean, scale, views)
    history, steps = _run_steps(heads, averaged, batches, objective, settings)
    final = averaged if settings.ema > 0 else heads
    head_losses = _score_heads(final, batches, objective, settings)
    best = int(np.argmin(head_losses))
    return TrainedHeads(final.select(best), history, head_losses, best, steps)


def _init_at_centroids(heads: ClusterHeads, z: Tensor, settings: TrainSettings) -> None:
    """Each of the last ``settings.centroid_heads`` linear heads h at the nearest-centroid rule of
    scikit-learn's ``MiniBatchKMeans`` (batches of 4,096, one initialisation, seed ``random_state + 4 + h``)
    on the head inputs ``z`` (N, D), with ``beta = 1 / mean squared distance to the assigned centre``
    (:func:`~.heads.nearest_centroid_head`)."""
    from sklearn.cluster import MiniBatchKMeans

    data = z.detach().cpu().numpy()
    for h in range(settings.n_heads - settings.centroid_heads, settings.n_heads):
        kmeans = MiniBatchKMeans(settings.n_clusters, batch_size=4096, n_init=1,
                                 random_state=settings.random_state + 4 + h).fit(data)
        beta = data.shape[0] / max(float(kmeans.inertia_), 1e-12)
        centers = torch.from_numpy(kmeans.cluster_centers_).to(device=z.device, dtype=z.dtype)
        heads.set_linear(h, *nearest_centroid_head(centers, beta, settings.temperature))


def _progress(settings: TrainSettings) -> Iterable[int]:
    if not settings.verbose:
        return range(settings.n_iter)
    from tqdm.auto import tqdm

    return tqdm(range(settings.n_iter), desc=settings.description, unit="step")


def _anchor_stream(n: int, batch_size: int, generator: torch.Generator,
                   device: torch.device) -> Iterator[Tuple[Tensor, bool]]:
    """Batches of anchors, pass after pass over the data (:func:`_anchor_batches`); the flag marks
    the last batch of a pass."""
    while True:
        batches = _anchor_batches(n, batch_size, generator, device)
        for index, anchors in enumerate(batches):
            yield anchors, index == len(batches) - 1


def _run_steps(heads: ClusterHeads, averaged: ClusterHeads, batches: _Batches, objective: BatchObjective,
               settings: TrainSettings) -> Tuple[np.ndarray, int]:
    """Train ``heads`` (and their average) for ``settings.n_iter`` steps; the (passes, H) mean loss of
    every pass over the anchors (a last, partial pass included) and the number of steps."""
    x = batches.x
    optimizer = torch.optim.Adam(heads.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    generator = torch.Generator(device=x.device).manual_seed(settings.random_state + 1)
    schedule = LEARNING_RATE_SCHEDULES[settings.learning_rate_schedule]
    history: List[np.ndarray] = []
    total = torch.zeros(settings.n_heads, dtype=x.dtype, device=x.device)
    in_pass = 0
    progress = _progress(settings)
    stream = _anchor_stream(x.shape[0], settings.batch_size, generator, x.device)
    for step in progress:
        anchors, last_of_pass = next(stream)
        for group in optimizer.param_groups:
            group["lr"] = schedule(settings.learning_rate, step, settings.n_iter)
        src, z = batches(anchors, generator)
        teacher = None
        if settings.uses_teacher:
            with torch.no_grad():
                teacher = averaged(z) / settings.temperature
        losses = objective(heads(z) / settings.temperature, src, z, teacher, True)
        if not bool(torch.isfinite(losses).all()):
            raise IConError(f"Clustering: the loss became non-finite at step {step} (learning_rate="
                            f"{settings.learning_rate} may be too large); got {losses.tolist()}.")
        optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()
        optimizer.step()
        averaged.update_average(heads, settings.ema)
        total += losses.detach()
        in_pass += 1
        if last_of_pass or step == settings.n_iter - 1:
            history.append((total / in_pass).cpu().numpy())
            total.zero_()
            in_pass = 0
            if settings.verbose:
                progress.set_postfix(loss=float(history[-1].min()))
    return np.stack(history), settings.n_iter


def _score_heads(heads: ClusterHeads, batches: _Batches, objective: BatchObjective,
                 settings: TrainSettings) -> np.ndarray:
    """(H,) mean loss of every head on ``_EVAL_BATCHES`` batches fixed by ``random_state``."""
    x = batches.x
    n = x.shape[0]
    generator = torch.Generator(device=x.device).manual_seed(settings.random_state + 2)
    scores = torch.zeros(settings.n_heads, dtype=x.dtype, device=x.device)
    with torch.no_grad():
        size = min(n, settings.batch_size)
        for _ in range(_EVAL_BATCHES):
            anchors = torch.randperm(n, generator=generator, device=x.device)[:size]
            src, z = batches(anchors, generator)
            logits = heads(z) / settings.temperature
            scores += objective(logits, src, z, logits if settings.uses_teacher else None, False)
    return (scores / _EVAL_BATCHES).cpu().numpy()
