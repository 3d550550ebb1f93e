"""Neighbour-embedding estimators with scikit-learn's conventions: TSNE, SNE, NeighborEmbedding.

Each one minimises an I-Con loss ``KL(p || q)`` between a neighbourhood ``p`` on the data and a
neighbourhood ``q`` on the embedding. ``TSNE`` takes p and q from :func:`icontorch.methods.tsne`
(Cor 1), ``SNE`` from :func:`icontorch.methods.sne` (Thm 1), and ``NeighborEmbedding`` any pair
of the periodic table (uniform kNN affinities, Student-t of any dof, Gaussian, ...).

* non-parametric (``parametric=False``): a free table of points optimised with t-SNE's
  momentum-and-gains gradient descent; exact dense gradients for small data, a sparse kNN p with
  FFT-interpolated or sampled repulsion for large data (``algorithm``); ``transform`` places new
  points against the fitted map (as openTSNE).
* parametric (``parametric=True``): an MLP ``y = f(x)`` trained on mini-batches of p's edges;
  ``transform`` is ``f``.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import torch

from .. import methods
from .._estimator_base import ArrayLike
from .._validation import check_positive, fail
from ..neighborhoods.base import Neighborhood, as_neighborhood
from .base import NeighborEmbeddingBase, Settings
from .optim import Callback

__all__ = ["NeighborEmbedding", "TSNE", "SNE"]


class NeighborEmbedding(NeighborEmbeddingBase):
    """Minimise ``L = KL(p || q)``, the I-Con loss of a neighbour embedding (Eq. 1; Thm 1, Cor 1).

    ``p`` is a neighbourhood on the data ``X``, ``q`` a kernel on the embedding ``Y``; with a
    joint ``q = joint(kernel)`` (t-SNE) ``p`` must be joint too (``symmetrize(...)``), with a
    kernel ``q`` (SNE) it is conditional. Fitted attributes end in ``_``. Every argument after
    ``p`` is keyword-only; numpy scalars are accepted for the numbers.

    Args:
        p: supervisory neighbourhood on X; None gives t-SNE's ``symmetrize(PerplexityGaussian(30))``.
        q: learned neighbourhood on Y; None gives t-SNE's ``joint(StudentT(1))``.
        n_components: dimension of the embedding.
        early_exaggeration: factor on the attraction during the first phase (not a KL).
        early_exaggeration_iter: iterations (or mini-batch steps) of that phase.
        n_iter: iterations (or mini-batch steps) after it.
        learning_rate: step size, or ``"auto"``: ``max(n / (4 a), 50)`` per phase (Belkina et al.'s
            ``n / a`` in KL-gradient units; openTSNE's rule); Adam's 3e-3 when parametric.
        init: ``"pca"``, ``"random"`` or an (n_samples, n_components) array (non-parametric).
        metric: how the data's neighbours are measured: ``"squared_euclidean"`` (``||x - x'||^2``)
            or ``"cosine"`` (the rows of X are L2-normalised first).
        algorithm: how the gradient is computed: ``"exact"`` (dense, O(n^2)), ``"fft"`` (sparse
            kNN p, FFT-interpolated repulsion, 1-D/2-D), ``"sampled"`` (sparse kNN p,
            ``n_negatives`` random points per anchor), or ``"auto"``: exact up to 500 points, else
            fft when possible, else sampled. The one used is ``algorithm_``.
        n_neighbors: candidates per point of the sparse p; ``"auto"``: 3 * perplexity, k + 1 for
            a kNN p, else 90.
        knn_backend: how the sparse p finds each point's candidates: ``"exact"`` (chunked brute
            force in torch, on ``device``) or ``"faiss"`` (approximate HNSW search, CPU; needs the
            optional faiss package), for millions of points.
        n_negatives: random points per anchor of the ``"sampled"`` repulsion.
        parametric: learn an MLP ``y = f(x)`` on mini-batches instead of a free table of points.
        hidden_layer_sizes: hidden widths of that MLP (SiLU activations); ``()`` for a linear map.
        batch_size: edges of p per mini-batch (parametric).
        input_noise: parametric: standard deviation of the Gaussian noise added to the MLP's
            inputs during training, in units of the data's overall standard deviation (the
            MLP's input scale); a smoothness regulariser that helps ``transform`` place new
            points; 0 turns it off.
        random_state: seed (int) or None.
        device: torch device of the computation (``"cpu"``, ``"cuda"``, ...).
        n_jobs: CPU threads for torch during ``fit`` and ``transform`` (restored afterwards);
            -1 for all cores, None to leave torch's setting. With ``algorithm="fft"`` the fit
            times its iterations and runs stretches of them on 1 thread while that is faster (a
            busy machine: other jobs on the cores stall multi-threaded small operations); the
            map is the same whatever the count (:mod:`icontorch._threads`).
        verbose: show a progress bar with the loss.
        callbacks: ``f(iteration, loss, embedding)`` or a list (tuple, set) of them, called every
            ``callbacks_every_iters`` iterations; a true return value stops the fit (the result
            so far is kept); an exception aborts it (nothing is kept).
        callbacks_every_iters: period of the callbacks.

    Attributes:
        embedding_: (n_samples, n_components) numpy array, the map (float64 for a float64 tensor X,
            else float32).
        kl_divergence_: the exact ``KL(p || q)`` at ``embedding_``, whatever ``algorithm``: p as
            fitted (dense, or its sparse kNN edges) and q's normaliser summed over all pairs in
            float64 (O(n^2) time, O(n) memory); never negative (rounding of a near-perfect fit is
            reported as 0).
        n_iter_: iterations (or mini-batch steps) run; fewer when a callback stopped the fit.
        algorithm_: the algorithm used (``"auto"`` resolved).
        mapper_: the fitted map: an ``EmbeddingTable`` (non-parametric) or the ``MLP``.
        n_features_in_: features of X.

    Bad input raises :class:`~icontorch.IConError` before any work: complex, string or object
    data, NaN or Inf, fewer than 3 samples, constant X (or, with ``metric="cosine"``, one
    direction or an all-zero row). Fits are transactional: a fit that fails or is interrupted
    (Ctrl-C, ``KeyboardInterrupt`` from a callback) leaves every learned attribute as it was.
    """

    def __init__(self, p: Optional[Neighborhood] = None, *, q: Optional[Neighborhood] = None,
                 n_components: int = 2, early_exaggeration: float = 12.0,
                 early_exaggeration_iter: int = 250, n_iter: int = 500,
                 learning_rate: Union[str, float] = "auto", init: Union[str, ArrayLike] = "pca",
                 metric: str = "squared_euclidean", algorithm: str = "auto",
                 n_neighbors: Union[str, int] = "auto", knn_backend: str = "exact",
                 n_negatives: int = 64, parametric: bool = False,
                 hidden_layer_sizes: Tuple[int, ...] = (256, 256, 256), batch_size: int = 512,
                 input_noise: float = 0.3, random_state: Optional[int] = None,
                 device: Union[str, torch.device] = "cpu", n_jobs: Optional[int] = None,
                 verbose: bool = False,
                 callbacks: Union[None, Callback, Sequence[Callback]] = None,
                 callbacks_every_iters: int = 50) -> None:
        self._store(locals())

    def _neighborhoods(self, s: Settings) -> Tuple[Neighborhood, Neighborhood]:
        default = methods.tsne(30.0)
        p = default.p if s.p is None else as_neighborhood(s.p, type(self).__name__, "p")
        q = default.q if s.q is None else as_neighborhood(s.q, type(self).__name__, "q")
        return p, q


class _PerplexityEmbedding(NeighborEmbeddingBase):
    """An estimator whose p is perplexity-calibrated (TSNE, SNE): ``0 < perplexity < n_samples - 1``."""

    def _check_data_size(self, n: int, s: Settings) -> None:
        super()._check_data_size(n, s)
        who = type(self).__name__
        s.perplexity = check_positive(who, "perplexity", s.perplexity)
        if s.perplexity >= n - 1:
            raise fail(who, "perplexity", f"be smaller than n_samples - 1 = {n - 1}", s.perplexity)


class TSNE(_PerplexityEmbedding):
    """t-SNE as an I-Con loss: ``KL(P || Q)`` with ``P = symmetrize(PerplexityGaussian(perplexity))``
    and ``Q = joint(StudentT(dof))`` (:func:`icontorch.methods.tsne`, Cor 1; van der Maaten &
    Hinton 2008). ``dof`` is the true Student-t exponent ``-(dof + 1) / 2`` (openTSNE's ``dof`` is
    another exponent; they agree at 1).

    ``TSNE(2, perplexity=30)``: every argument after ``n_components`` is keyword-only.

    Args:
        n_components: dimension of the embedding.
        perplexity: the effective number of neighbours of each point, below n_samples - 1.
        dof: degrees of freedom of the Student-t kernel on the embedding.

    The other arguments are those of :class:`NeighborEmbedding`.
    """

    def __init__(self, n_components: int = 2, *, perplexity: float = 30.0,
                 early_exaggeration: float = 12.0, early_exaggeration_iter: int = 250,
                 n_iter: int = 500, learning_rate: Union[str, float] = "auto",
                 init: Union[str, ArrayLike] = "pca", metric: str = "squared_euclidean",
                 dof: float = 1.0, algorithm: str = "auto", n_neighbors: Union[str, int] = "auto",
                 knn_backend: str = "exact", n_negatives: int = 64, parametric: bool = False,
                 hidden_layer_sizes: Tuple[int, ...] = (256, 256, 256), batch_size: int = 512,
                 input_noise: float = 0.3, random_state: Optional[int] = None,
                 device: Union[str, torch.device] = "cpu", n_jobs: Optional[int] = None,
                 verbose: bool = False,
                 callbacks: Union[None, Callback, Sequence[Callback]] = None,
                 callbacks_every_iters: int = 50) -> None:
        self._store(locals())

    def _neighborhoods(self, s: Settings) -> Tuple[Neighborhood, Neighborhood]:
        loss = methods.tsne(s.perplexity, check_positive("TSNE", "dof", s.dof))
        return loss.p, loss.q


class SNE(_PerplexityEmbedding):
    """SNE as an I-Con loss: ``(1/n) sum_i KL(p(.|i) || q(.|i))`` with p the perplexity-calibrated
    Gaussian on the data and q the unit Gaussian ``exp(-||y_i - y_j||^2)`` on the embedding
    (:func:`icontorch.methods.sne`, Thm 1; Hinton & Roweis 2002).

    ``SNE(2, perplexity=30)``: every argument after ``n_components`` is keyword-only.

    Args:
        n_components: dimension of the embedding.
        perplexity: the effective number of neighbours of each point, below n_samples - 1.

    The other arguments are those of :class:`NeighborEmbedding`.
    """

    def __init__(self, n_components: int = 2, *, perplexity: float = 30.0,
                 early_exaggeration: float = 12.0, early_exaggeration_iter: int = 250,
                 n_iter: int = 500, learning_rate: Union[str, float] = "auto",
                 init: Union[str, ArrayLike] = "pca", metric: str = "squared_euclidean",
                 algorithm: str = "auto", n_neighbors: Union[str, int] = "auto",
                 knn_backend: str = "exact", n_negatives: int = 64, parametric: bool = False,
                 hidden_layer_sizes: Tuple[int, ...] = (256, 256, 256), batch_size: int = 512,
                 input_noise: float = 0.3, random_state: Optional[int] = None,
                 device: Union[str, torch.device] = "cpu", n_jobs: Optional[int] = None,
                 verbose: bool = False,
                 callbacks: Union[None, Callback, Sequence[Callback]] = None,
                 callbacks_every_iters: int = 50) -> None:
        self._store(locals())

    def _neighborhoods(self, s: Settings) -> Tuple[Neighborhood, Neighborhood]:
        loss = methods.sne(s.perplexity)
        return loss.p, loss.q
