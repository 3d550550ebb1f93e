"""The shared base of the neighbour-embedding estimators (:mod:`icontorch.estimators`).

Validation, the non-parametric and parametric fits, and ``transform``; the public classes
(``NeighborEmbedding``, ``TSNE``, ``SNE``) only add their parameters and their p and q.
"""

from __future__ import annotations

from typing import Any, Dict, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from .optim import (DenseObjective, ReferenceObjective, SparseObjective,
                        gradient_descent)
from .parametric import embed, train_mapper
from .repulsion import kernel_profile
from .._estimator_base import ArrayLike, Estimator, Threads, as_tensor, like_input, pca_init
from .._validation import IConError, check_choice, check_int, check_positive, fail
from .affinity import (NEIGHBOR_BACKENDS, EdgeAffinity, affinity_to_reference, check_n_neighbors,
                       default_n_neighbors, dense_affinity, knn_affinity, split_joint)
from .mappers import MLP, EmbeddingTable
from ..neighborhoods.base import KernelNeighborhood, Neighborhood
from ..neighborhoods.spatial import KNN, PerplexityGaussian
from ..transforms import Joint

__all__ = ["NeighborEmbeddingBase"]


_EXACT_MAX_N = 500         # "auto" uses the dense exact objective up to this many points
_METHODS = ("auto", "exact", "fft", "sampled")


class NeighborEmbeddingBase(Estimator):
    """Validation, fitting and transform shared by the neighbour-embedding estimators."""

    def _store(self, arguments: Dict[str, Any]) -> None:
        # scikit-learn's contract: every constructor argument stored unchanged under its name
        for name in self._param_names():
            setattr(self, name, arguments[name])

    def _neighborhoods(self) -> Tuple[Neighborhood, Neighborhood]:
        raise NotImplementedError

    def _check_data_size(self, n: int) -> None:
        """Hook for parameters whose valid range depends on the number of samples."""
        if n < 3:
            raise fail(type(self).__name__, "X", "hold at least 3 samples", f"{n} samples")

    # -- validation ----------------------------------------------------------------------------
    def _check_params(self) -> Tuple[torch.device, torch.Generator]:
        who = type(self).__name__
        check_int(who, "n_components", self.n_components, 1)
        check_positive(who, "early_exaggeration", self.early_exaggeration)
        check_int(who, "early_exaggeration_iter", self.early_exaggeration_iter, 0)
        check_int(who, "n_iter", self.n_iter, 0)
        if self.learning_rate != "auto":
            check_positive(who, "learning_rate", self.learning_rate)
        if isinstance(self.init, str) and self.init not in ("pca", "random"):
            raise fail(who, "init", "be 'pca', 'random' or an (n_samples, n_components) array", self.init)
        check_choice(who, "metric", self.metric, ("euclidean", "cosine"))
        check_choice(who, "method", self.method, _METHODS)
        if self.n_neighbors != "auto":
            check_int(who, "n_neighbors", self.n_neighbors, 1)
        check_choice(who, "neighbors", self.neighbors, NEIGHBOR_BACKENDS)
        check_int(who, "n_negatives", self.n_negatives, 1)
        check_choice(who, "parametric", self.parametric, (True, False))
        if isinstance(self.hidden_layer_sizes, (str, bytes)) or not hasattr(self.hidden_layer_sizes, "__iter__"):
            raise fail(who, "hidden_layer_sizes", "be a sequence of positive integers", self.hidden_layer_sizes)
        for width in self.hidden_layer_sizes:
            check_int(who, "hidden_layer_sizes", width, 1)
        check_int(who, "batch_size", self.batch_size, 2)
        if (isinstance(self.input_noise, bool) or not isinstance(self.input_noise, (int, float))
                or not np.isfinite(self.input_noise) or self.input_noise < 0):
            raise fail(who, "input_noise", "be a finite number >= 0", self.input_noise)
        if self.random_state is not None:
            check_int(who, "random_state", self.random_state, 0)
        check_int(who, "callbacks_every_iters", self.callbacks_every_iters, 1)
        if self.callbacks is not None and not callable(self.callbacks):
            if not all(callable(c) for c in self.callbacks):
                raise fail(who, "callbacks", "be a callable or a list of callables", self.callbacks)
        try:
            device = torch.device(self.device)
        except (RuntimeError, TypeError):
            raise fail(who, "device", "name a torch device such as 'cpu' or 'cuda'", self.device) from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise fail(who, "device", "be available (torch.cuda.is_available() is False)", self.device)
        seed = (int(torch.randint(0, 2 ** 62, ()).item()) if self.random_state is None
                else self.random_state)
        return device, torch.Generator().manual_seed(seed)

    def _split_q(self, q: Neighborhood) -> Tuple[KernelNeighborhood, bool]:
        kernel, is_joint = (q.base, True) if isinstance(q, Joint) else (q, False)
        if not isinstance(kernel, KernelNeighborhood):
            raise fail(type(self).__name__, "q", "be a kernel neighbourhood (StudentT, Gaussian, ...) "
                       "or joint(kernel)", q)
        if isinstance(kernel, KNN):
            raise fail(type(self).__name__, "q", "be a differentiable kernel (KNN has no gradient)", q)
        return kernel, is_joint

    def _resolve_method(self, n: int, kernel: KernelNeighborhood) -> str:
        fft_ok = self.n_components <= 2 and kernel_profile(kernel) is not None
        if self.method == "fft" and not fft_ok:
            raise fail(type(self).__name__, "method", "be 'exact' or 'sampled' unless n_components "
                       "<= 2 and q is a Student-t or squared-euclidean Gaussian kernel", self.method)
        if self.method != "auto":
            return self.method
        if n <= _EXACT_MAX_N:
            return "exact"
        return "fft" if fft_ok else "sampled"

    # -- fitting -------------------------------------------------------------------------------
    def _prepare(self, X: ArrayLike) -> Tensor:
        self._device, self._generator = self._check_params()
        x = as_tensor(X, type(self).__name__, "X", self._device)
        if self.metric == "cosine":
            x = torch.nn.functional.normalize(x, dim=1)
        self._check_data_size(x.shape[0])
        return x

    def _edges(self, p: Neighborhood, x: Tensor, joint: bool, method: str) -> EdgeAffinity:
        n = x.shape[0]
        who = type(self).__name__
        if method == "exact":
            log_p = dense_affinity(p, x, joint, who)
            rows, cols = torch.nonzero(torch.isfinite(log_p) & (log_p > -80), as_tuple=True)
            lp = log_p[rows, cols]
            weight = lp.exp() / (1 if joint else n)
            return EdgeAffinity(rows, cols, weight, lp, n, joint)
        if split_joint(p)[1] != joint:
            raise fail(who, "p", "be symmetrize(...) when q is joint(...), and conditional otherwise", p)
        k = self._n_neighbors(p, n)
        return knn_affinity(p, x, k, who, self.neighbors)

    def _n_neighbors(self, p: Neighborhood, n: int) -> int:
        if self.n_neighbors == "auto":
            return default_n_neighbors(p, n)
        return check_n_neighbors(type(self).__name__, self.n_neighbors, n)

    def _initial_embedding(self, x: Tensor) -> Tensor:
        n, who = x.shape[0], type(self).__name__
        if isinstance(self.init, str):
            if self.init == "pca":
                return pca_init(x, self.n_components)
            return 1e-4 * torch.randn(n, self.n_components, generator=self._generator,
                                      dtype=x.dtype).to(x.device)
        y0 = as_tensor(self.init, who, "init", x.device).to(x.dtype)
        if tuple(y0.shape) != (n, self.n_components):
            raise fail(who, "init", f"have shape (n_samples, n_components) = ({n}, {self.n_components})",
                       y0)
        return y0

    def _threads(self) -> "Threads":
        if self.n_jobs is not None and self.n_jobs != -1:
            check_int(type(self).__name__, "n_jobs", self.n_jobs, 1)
        return Threads(self.n_jobs)

    def fit(self, X: ArrayLike, y: Any = None) -> "NeighborEmbeddingBase":
        """Fit the embedding of ``X`` (n_samples, n_features); ``y`` is ignored."""
        with self._threads():
            return self._fit(X)

    def _fit(self, X: ArrayLike) -> "NeighborEmbeddingBase":
        x = self._prepare(X)
        p, q = self._neighborhoods()
        kernel, joint = self._split_q(q)
        n = x.shape[0]
        method = self._resolve_method(n, kernel)
        phases = [(self.early_exaggeration_iter, float(self.early_exaggeration)), (self.n_iter, 1.0)]
        self._p, self._kernel, self._joint = p, kernel, joint
        base = split_joint(p)[0]
        # new points are placed by their closest neighbours: perplexity at most 5 (openTSNE's rule)
        self._transform_p = (PerplexityGaussian(min(5.0, base.perplexity))
                             if isinstance(base, PerplexityGaussian) else base)
        self.n_features_in_ = x.shape[1]
        self.method_ = method
        if self.parametric:
            self._fit_parametric(x, p, kernel, joint, method, phases)
        else:
            self._fit_table(x, p, kernel, joint, method, phases)
        if not np.isfinite(self.embedding_).all() or not np.isfinite(self.kl_divergence_):
            raise IConError(f"{type(self).__name__}: the optimisation diverged (non-finite embedding); "
                            f"learning_rate must be smaller; got {self.learning_rate!r}.")
        return self

    def _fit_table(self, x: Tensor, p: Neighborhood, kernel: KernelNeighborhood, joint: bool,
                   method: str, phases: list) -> None:
        y0 = self._initial_embedding(x)
        if method == "exact":
            objective: Any = DenseObjective(dense_affinity(p, x, joint, type(self).__name__), kernel, joint)
        else:
            affinity = self._edges(p, x, joint, method)
            objective = SparseObjective(affinity, kernel, method, self.n_negatives, self._generator)
        y, done, _ = gradient_descent(y0, objective, phases, self.learning_rate,
                                      callbacks=self.callbacks,
                                      callbacks_every_iters=self.callbacks_every_iters,
                                      verbose=self.verbose, desc=type(self).__name__)
        self.n_iter_ = done
        self.kl_divergence_ = objective.kl(y) if bool(torch.isfinite(y).all()) else float("nan")
        self.mapper_ = EmbeddingTable(x.shape[0], self.n_components, init=y.cpu())
        self.embedding_ = y.cpu().numpy()
        self._fit_x = x

    def _fit_parametric(self, x: Tensor, p: Neighborhood, kernel: KernelNeighborhood, joint: bool,
                        method: str, phases: list) -> None:
        affinity = self._edges(p, x, joint, method)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(0, 2 ** 62, (), generator=self._generator)))
            mapper = MLP(x.shape[1], self.n_components, self.hidden_layer_sizes)
        mapper.set_input_scaling(x.cpu())
        mapper = mapper.to(x.device)
        lr = 3e-3 if self.learning_rate == "auto" else float(self.learning_rate)
        batch = min(self.batch_size, max(2, affinity.rows.shape[0]))
        noise = float(self.input_noise) * float(mapper.scale)
        done, _ = train_mapper(mapper, x, affinity, kernel, phases, batch, lr, self._generator,
                               noise=noise, callbacks=self.callbacks,
                               callbacks_every_iters=self.callbacks_every_iters, verbose=self.verbose)
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
        training points held fixed (100 steps of the same optimiser, step size 1, no exaggeration).
        A perplexity-calibrated p uses perplexity ``min(5, perplexity)`` over ``3 *`` that many
        neighbours here, as openTSNE's ``transform``: a new point is placed by its closest
        neighbours, not by the wide neighbourhood that shaped the map.
        """
        who = type(self).__name__
        if not hasattr(self, "embedding_"):
            raise IConError(f"{who}: transform needs a fitted estimator; call fit first.")
        with self._threads():
            return self._transform(X)

    def _transform(self, X: ArrayLike) -> Union[np.ndarray, Tensor]:
        who = type(self).__name__
        x = as_tensor(X, who, "X", self._device)
        if x.shape[1] != self.n_features_in_:
            raise fail(who, "X", f"have {self.n_features_in_} features, as in fit", x)
        if self.metric == "cosine":
            x = torch.nn.functional.normalize(x, dim=1)
        if isinstance(self.mapper_, MLP):
            return like_input(embed(self.mapper_.to(x.device), x).cpu(), X)
        reference = torch.from_numpy(self.embedding_).to(x.device)
        n_fit = self._fit_x.shape[0]
        k = (default_n_neighbors(self._transform_p, n_fit + 1) if self.n_neighbors == "auto"
             else min(self.n_neighbors, n_fit))
        idx, log_p = affinity_to_reference(self._transform_p, x, self._fit_x, k, who, self.neighbors)
        y0 = (log_p.exp().unsqueeze(2) * reference[idx]).sum(1)
        objective = ReferenceObjective(idx, log_p, reference, self._kernel)
        y, _, _ = gradient_descent(y0, objective, [(100, 1.0)], 1.0, max_step_norm=None,
                                   max_grad_norm=None, recenter=False, verbose=self.verbose,
                                   desc="transform")
        return like_input(y.cpu(), X)
