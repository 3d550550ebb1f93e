"""The shared base of the neighbour-embedding estimators (:mod:`icontorch.embedding.estimators`).

Validation, the non-parametric and parametric fits, and ``transform``; the public classes
(``NeighborEmbedding``, ``TSNE``, ``SNE``) only add their parameters and their p and q.
"""

from __future__ import annotations

import copy
import math
from types import SimpleNamespace
from typing import Any, Dict, List, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from .._estimator_base import ArrayLike, Estimator, as_tensor, check_n_jobs, like_input, pca_init
from .._threads import FitThreads
from .._validation import (
    IConError,
    check_choice,
    check_device,
    check_flag,
    check_int,
    check_layer_sizes,
    check_nonnegative,
    check_positive,
    check_random_state,
    fail,
)
from ..neighborhoods.base import KernelNeighborhood, Neighborhood
from ..neighborhoods.spatial import KNN, PerplexityGaussian
from ..transforms import Joint
from . import cpu_kernels
from .affinity import (
    KNN_BACKENDS,
    EdgeAffinity,
    affinity_to_reference,
    check_n_neighbors,
    default_n_neighbors,
    dense_affinity,
    knn_affinity,
    split_joint,
)
from .mappers import MLP, EmbeddingTable
from .optim import Callback, DenseObjective, ReferenceObjective, SparseObjective, gradient_descent
from .parametric import embed, train_mapper
from .repulsion import kernel_profile

__all__ = ["NeighborEmbeddingBase", "ALGORITHMS", "METRICS"]

ALGORITHMS = ("auto", "exact", "fft", "sampled")
METRICS = ("squared_euclidean", "cosine")
_EXACT_MAX_N = 500         # "auto" uses the dense exact objective up to this many points

Settings = SimpleNamespace


def _on(module: torch.nn.Module, device: torch.device) -> bool:
    """Whether ``module``'s tensors live on ``device`` (transform never moves the fitted mapper)."""
    return next(module.buffers()).device == device


def _check_callbacks(who: str, callbacks: Any) -> List[Callback]:
    """None, a callable or an iterable of callables, as a list."""
    if callbacks is None:
        return []
    if callable(callbacks):
        return [callbacks]
    if isinstance(callbacks, (Sequence, set, frozenset)) and not isinstance(callbacks, (str, bytes)):
        listed = list(callbacks)
        if all(callable(c) for c in listed):
            return listed
    raise fail(who, "callbacks", "be a callable or a list of callables", callbacks)


def _check_informative(who: str, x: Tensor, metric: str) -> None:
    """X must hold two distinct points (under the metric): an embedding of one point is meaningless."""
    if metric == "cosine":
        zero = x.abs().amax(1) == 0
        if bool(zero.any()):
            raise IConError(f"{who}: X must have no all-zero rows when metric='cosine' (their direction is "
                            f"undefined); got {int(zero.sum())} of {x.shape[0]}.")
        x = torch.nn.functional.normalize(x, dim=1)
    # normalised parallel rows differ by rounding only: identical up to a few ulps of 1
    tolerance = 8 * torch.finfo(x.dtype).eps if metric == "cosine" else 0.0
    if float((x - x[0]).abs().max()) <= tolerance:
        what = "directions (metric='cosine')" if metric == "cosine" else "rows"
        raise IConError(f"{who}: X must hold at least two distinct {what}: the embedding of constant "
                        f"data is meaningless; got {x.shape[0]} identical {what.split()[0]}.")


class NeighborEmbeddingBase(Estimator):
    """Validation, fitting and transform shared by the neighbour-embedding estimators."""

    def _store(self, arguments: Dict[str, Any]) -> None:
        # scikit-learn's contract: every constructor argument stored unchanged under its name
        for name in self._param_names():
            setattr(self, name, arguments[name])

    def _neighborhoods(self, s: Settings) -> Tuple[Neighborhood, Neighborhood]:
        raise NotImplementedError

    def _check_data_size(self, n: int, s: Settings) -> None:
        """Hook for parameters whose valid range depends on the number of samples."""
        if n < 3:
            raise IConError(f"{type(self).__name__}: X must hold at least 3 samples; got {n}.")

    # -- validation ----------------------------------------------------------------------------
    def _settings(self) -> Settings:
        """A copy of the constructor arguments (the stored ones stay as given; the checks convert)."""
        return Settings(**{name: getattr(self, name) for name in self._param_names()})

    def _check_numbers(self, s: Settings) -> None:
        """Validate the numbers of ``s`` and replace them by Python ints and floats."""
        who = type(self).__name__
        s.n_components = check_int(who, "n_components", s.n_components, 1)
        s.early_exaggeration = check_positive(who, "early_exaggeration", s.early_exaggeration)
        s.early_exaggeration_iter = check_int(who, "early_exaggeration_iter", s.early_exaggeration_iter, 0)
        s.n_iter = check_int(who, "n_iter", s.n_iter, 0)
        if s.learning_rate != "auto":
            s.learning_rate = check_positive(who, "learning_rate", s.learning_rate)
        if s.n_neighbors != "auto":
            s.n_neighbors = check_int(who, "n_neighbors", s.n_neighbors, 1)
        s.n_negatives = check_int(who, "n_negatives", s.n_negatives, 1)
        s.hidden_layer_sizes = check_layer_sizes(who, "hidden_layer_sizes", s.hidden_layer_sizes)
        s.batch_size = check_int(who, "batch_size", s.batch_size, 2)
        s.input_noise = check_nonnegative(who, "input_noise", s.input_noise)
        if s.random_state is not None:
            s.random_state = check_random_state(who, s.random_state)
        s.callbacks_every_iters = check_int(who, "callbacks_every_iters", s.callbacks_every_iters, 1)

    def _check_params(self, s: Settings) -> Tuple[torch.device, torch.Generator]:
        who = type(self).__name__
        self._check_numbers(s)
        if isinstance(s.init, str) and s.init not in ("pca", "random"):
            raise fail(who, "init", "be 'pca', 'random' or an (n_samples, n_components) array", s.init)
        check_choice(who, "metric", s.metric, METRICS)
        check_choice(who, "algorithm", s.algorithm, ALGORITHMS)
        check_choice(who, "knn_backend", s.knn_backend, KNN_BACKENDS)
        s.parametric = check_flag(who, "parametric", s.parametric)
        s.callbacks = _check_callbacks(who, s.callbacks)
        device = check_device(who, "device", s.device)
        if device.type == "meta":
            raise fail(who, "device", "hold data ('meta' tensors have no values)", s.device)
        seed = int(torch.randint(0, 2 ** 62, ()).item()) if s.random_state is None else s.random_state
        return device, torch.Generator().manual_seed(seed)

    def _split_q(self, q: Neighborhood) -> Tuple[KernelNeighborhood, bool]:
        kernel, is_joint = (q.base, True) if isinstance(q, Joint) else (q, False)
        if not isinstance(kernel, KernelNeighborhood):
            raise fail(type(self).__name__, "q", "be a kernel neighbourhood (StudentT, Gaussian, ...) "
                       "or joint(kernel)", q)
        if isinstance(kernel, KNN):
            raise fail(type(self).__name__, "q", "be a differentiable kernel (KNN has no gradient)", q)
        return kernel, is_joint

    def _resolve_algorithm(self, s: Settings, n: int, kernel: KernelNeighborhood) -> str:
        fft_ok = s.n_components <= 2 and kernel_profile(kernel) is not None
        if s.algorithm == "fft" and not fft_ok:
            raise fail(type(self).__name__, "algorithm", "be 'exact' or 'sampled' unless n_components "
                       "<= 2 and q is a Student-t or squared-euclidean Gaussian kernel", s.algorithm)
        if s.algorithm != "auto":
            return s.algorithm
        if n <= _EXACT_MAX_N:
            return "exact"
        return "fft" if fft_ok else "sampled"

    # -- fitting -------------------------------------------------------------------------------
    def _edges(self, s: Settings, p: Neighborhood, x: Tensor, joint: bool, algorithm: str) -> EdgeAffinity:
        n = x.shape[0]
        who = type(self).__name__
        if algorithm == "exact":
            log_p = dense_affinity(p, x, joint, who)
            rows, cols = torch.nonzero(torch.isfinite(log_p) & (log_p > -80), as_tuple=True)
            lp = log_p[rows, cols]
            weight = lp.exp() / (1 if joint else n)
            return EdgeAffinity(rows, cols, weight, lp, n, joint)
        if split_joint(p)[1] != joint:
            raise fail(who, "p", "be symmetrize(...) when q is joint(...), and conditional otherwise", p)
        n_neighbors = (default_n_neighbors(p, n) if s.n_neighbors == "auto"
                       else check_n_neighbors(who, s.n_neighbors, n))
        base = split_joint(p)[0]
        if s.n_neighbors != "auto" and isinstance(base, PerplexityGaussian) and n_neighbors <= base.perplexity:
            raise fail(who, "n_neighbors", f"be larger than the perplexity ({base.perplexity:g}), since each "
                       f"point's p is calibrated over its n_neighbors nearest candidates", n_neighbors)
        return knn_affinity(p, x, n_neighbors, who, s.knn_backend)

    def _initial_embedding(self, s: Settings, x: Tensor) -> Tensor:
        n, who = x.shape[0], type(self).__name__
        if isinstance(s.init, str):
            if s.init == "pca":
                return pca_init(x, s.n_components)
            return 1e-4 * torch.randn(n, s.n_components, generator=self._generator,
                                      dtype=x.dtype).to(x.device)
        y0 = as_tensor(s.init, who, "init", x.device).to(x.dtype)
        if tuple(y0.shape) != (n, s.n_components):
            raise fail(who, "init", f"have shape (n_samples, n_components) = ({n}, {s.n_components})", y0)
        # the squared distances between its points must fit the dtype (t-SNE's maps span ~1e2)
        limit = 0.25 * math.sqrt(torch.finfo(x.dtype).max / (16 * s.n_components))
        top = float(y0.abs().max())
        if top > limit:
            raise IConError(f"{who}: init must have coordinates of magnitude at most {limit:.3g} (its squared "
                            f"distances must fit {x.dtype}); got values up to {top:.3g}.")
        return y0

    def _threads(self) -> FitThreads:
        return FitThreads(check_n_jobs(type(self).__name__, self.n_jobs))

    def fit(self, X: ArrayLike, y: Any = None) -> "NeighborEmbeddingBase":
        """Fit the embedding of ``X`` (n_samples, n_features); ``y`` is ignored.

        Transactional: the learned attributes are replaced only when the fit succeeds; a fit that
        raises or is interrupted (Ctrl-C, ``KeyboardInterrupt`` from a callback) leaves the
        estimator as it was (:meth:`~icontorch._estimator_base.Estimator._fit_transaction`).
        """
        with self._threads() as threads:
            return self._fit_transaction(lambda work: work._fit(X, threads))

    def _fit(self, X: ArrayLike, threads: FitThreads) -> "NeighborEmbeddingBase":
        s = self._settings()
        who = type(self).__name__
        self._device, self._generator = self._check_params(s)
        x = as_tensor(X, who, "X", self._device)
        self._check_data_size(x.shape[0], s)
        _check_informative(who, x, s.metric)
        if s.metric == "cosine":
            x = torch.nn.functional.normalize(x, dim=1)
        p, q = self._neighborhoods(s)
        kernel, joint = self._split_q(q)
        algorithm = self._resolve_algorithm(s, x.shape[0], kernel)
        y0 = None if s.parametric else self._initial_embedding(s, x)
        phases = [(s.early_exaggeration_iter, float(s.early_exaggeration)), (s.n_iter, 1.0)]
        base = split_joint(p)[0]
        # new points are placed by their closest neighbours: perplexity at most 5 (openTSNE's rule)
        self._transform_p = (PerplexityGaussian(min(5.0, base.perplexity))
                             if isinstance(base, PerplexityGaussian) else base)
        self._kernel, self._fit_settings = kernel, s
        self.n_features_in_ = x.shape[1]
        self.algorithm_ = algorithm
        if y0 is None:
            self._fit_parametric(s, x, p, kernel, joint, algorithm, phases)
        else:
            # on the CPU the FFT iterations' heavy work is compiled row loops: they get the threads,
            # torch 1 (its idle OpenMP workers would spin between the small operations)
            threads.row_loops = algorithm == "fft" and cpu_kernels.available(y0)
            # the FFT objective gives the same numbers with any thread count (ordered sums; pinned
            # by tests/embedding/test_threads.py), so on torch's threads its count may follow the
            # machine's load. The row loops' threads block instead of spinning, and they keep the
            # requested count: with a competing 2-thread job on 2 cores, the 750 iterations on the
            # 70,000 MNIST digits took 65-71 s at 2 threads against 76-78 s with the probes of the
            # policy (42 s alone); on 30,000 MNIST-1D points (not a reported data set) 38-41 s against
            # 45-46 s. The sampled gradient's scatter is not invariant: requested count.
            threads.adaptive = algorithm == "fft" and not threads.row_loops
            self._fit_table(s, x, y0, p, kernel, joint, algorithm, phases, threads)
        if not np.isfinite(self.embedding_).all() or not np.isfinite(self.kl_divergence_):
            raise IConError(f"{who}: the optimisation diverged (non-finite embedding after {self.n_iter_} "
                            f"iterations); learning_rate={s.learning_rate!r} or early_exaggeration="
                            f"{s.early_exaggeration!r} is too large for these data.")
        # the exact KL is >= 0; float rounding of a near-perfect fit may leave it a hair below
        self.kl_divergence_ = max(0.0, self.kl_divergence_)
        return self

    def _fit_table(self, s: Settings, x: Tensor, y0: Tensor, p: Neighborhood, kernel: KernelNeighborhood,
                   joint: bool, algorithm: str, phases: list, threads: FitThreads) -> None:
        if algorithm == "exact":
            objective: Any = DenseObjective(dense_affinity(p, x, joint, type(self).__name__), kernel, joint)
        else:
            affinity = self._edges(s, p, x, joint, algorithm)
            objective = SparseObjective(affinity, kernel, algorithm, s.n_negatives, self._generator)
        y, done, _ = gradient_descent(y0, objective, phases, s.learning_rate, callbacks=s.callbacks,
                                      callbacks_every_iters=s.callbacks_every_iters,
                                      verbose=s.verbose, desc=type(self).__name__, threads=threads)
        self.n_iter_ = done
        self.kl_divergence_ = objective.kl(y) if bool(torch.isfinite(y).all()) else float("nan")
        self.mapper_ = EmbeddingTable(x.shape[0], s.n_components, init=y.cpu())
        self.embedding_ = y.cpu().numpy()
        self._fit_x = x

    def _fit_parametric(self, s: Settings, x: Tensor, p: Neighborhood, kernel: KernelNeighborhood,
                        joint: bool, algorithm: str, phases: list) -> None:
        affinity = self._edges(s, p, x, joint, algorithm)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(0, 2 ** 62, (), generator=self._generator)))
            mapper = MLP(x.shape[1], s.n_components, s.hidden_layer_sizes)
        mapper = mapper.to(dtype=x.dtype)          # a float64 tensor X trains a float64 network
        mapper.set_input_scaling(x.cpu())
        mapper = mapper.to(x.device)
        learning_rate = 3e-3 if s.learning_rate == "auto" else float(s.learning_rate)
        batch = min(s.batch_size, max(2, affinity.rows.shape[0]))
        noise = float(s.input_noise) * float(mapper.scale)
        done, _ = train_mapper(mapper, x, affinity, kernel, phases, batch, learning_rate, self._generator,
                               noise=noise, callbacks=s.callbacks,
                               callbacks_every_iters=s.callbacks_every_iters, verbose=s.verbose)
        y = embed(mapper, x)
        objective = SparseObjective(affinity, kernel, "exact")
        self.n_iter_ = done
        self.kl_divergence_ = objective.kl(y) if bool(torch.isfinite(y).all()) else float("nan")
        self.mapper_ = mapper.cpu()
        self.embedding_ = y.cpu().numpy()
        self._fit_x = None

    def fit_transform(self, X: ArrayLike, y: Any = None) -> Union[np.ndarray, Tensor]:
        """Fit and return the embedding (a tensor if ``X`` is a tensor, else a numpy array)."""
        self.fit(X)
        return like_input(torch.from_numpy(self.embedding_), X)

    # -- new points ----------------------------------------------------------------------------
    def transform(self, X: ArrayLike) -> Union[np.ndarray, Tensor]:
        """Embed new points: ``f(X)`` when parametric, else each point optimised against the map.

        Non-parametric: each new point i gets ``p(j|i)`` over its nearest training points, starts
        at their p-weighted mean and minimises ``KL(p(.|i) || q(.|i))`` with ``q(.|i)`` over all
        training points held fixed (100 steps of the same optimiser, step size 1, each point's step
        at most 5 long, no exaggeration).
        A perplexity-calibrated p uses perplexity ``min(5, perplexity)`` over ``3 *`` that many
        neighbours here, as openTSNE's ``transform``: a new point is placed by its closest
        neighbours, not by the wide neighbourhood that shaped the map. Returns a tensor if ``X``
        is a tensor, else a numpy array.
        """
        who = type(self).__name__
        if not hasattr(self, "embedding_"):
            raise IConError(f"{who}: transform needs a fitted estimator; call fit first.")
        with self._threads():
            return self._transform(X)

    def _transform(self, X: ArrayLike) -> Union[np.ndarray, Tensor]:
        who, s = type(self).__name__, self._fit_settings
        x = as_tensor(X, who, "X", self._device)
        if x.shape[1] != self.n_features_in_:
            raise IConError(f"{who}: X must have {self.n_features_in_} features, as in fit; got {x.shape[1]}.")
        x = x.to(torch.from_numpy(self.embedding_[:0]).dtype)      # the precision of the fit
        if s.metric == "cosine":
            x = torch.nn.functional.normalize(x, dim=1)
        if isinstance(self.mapper_, MLP):
            mapper = self.mapper_ if _on(self.mapper_, x.device) else copy.deepcopy(self.mapper_).to(x.device)
            return like_input(embed(mapper, x).cpu(), X)
        reference = torch.from_numpy(self.embedding_).to(x.device)
        n_fit = self._fit_x.shape[0]
        n_neighbors = (default_n_neighbors(self._transform_p, n_fit + 1) if s.n_neighbors == "auto"
                       else min(s.n_neighbors, n_fit))
        idx, log_p = affinity_to_reference(self._transform_p, x, self._fit_x, n_neighbors, who,
                                           s.knn_backend)
        y0 = (log_p.exp().unsqueeze(2) * reference[idx]).sum(1)
        objective = ReferenceObjective(idx, log_p, reference, self._kernel)
        # steps capped as in fit: a Gaussian q's force grows with the distance, and a point that
        # starts between clusters would otherwise overshoot the map by hundreds of units
        y, _, _ = gradient_descent(y0, objective, [(100, 1.0)], 1.0, max_step_norm=5.0,
                                   max_grad_norm=None, recenter=False, verbose=s.verbose,
                                   desc="transform")
        return like_input(y.cpu(), X)
