"""``ImageClustering``: unsupervised classification of images, end to end, in one call.

``ImageClustering(n_clusters=10).fit_predict(images)`` with images of shape (N, C, H, W) or (N, H, W),
floats or integers 0-255. Three strategies, all built from the library's parts (augmentations,
encoders, ``train_contrastive``, the I-Con losses, ``Clustering``):

* ``"two_stage"``: the paper's protocol (Table 2): pre-train an encoder with an I-Con loss, then
  Debiased InfoNCE Clustering of its frozen features with the features of augmented views.
* ``"iic"``: IIC (Ji et al. 2019) end to end, main and overclustering heads with sub-heads.
* ``"scan"``: the SCAN objective (Van Gansbeke et al. 2020) on the kNN of the same pre-trained encoder.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple, Union

import numpy as np
import torch
from torch import Tensor, nn

from .._estimator_base import Estimator, Threads, check_n_jobs, like_input
from .._validation import (
    IConError,
    check_choice,
    check_device,
    check_flag,
    check_int,
    check_nonnegative,
    check_positive,
    check_probability,
    fail,
)
from ..augment import default_augmentation, mild_augmentation
from ..encoders import ContrastiveEncoder, contrastive_encoder
from ..training import _check_checkpoint, epoch_generator
from ..views import check_augment
from .image_data import Sobel, as_images, encode_images, encode_views
from .image_iic import IICNet, IICSettings, subhead_losses, train_iic
from .image_two_stage import accepts_views, backbone_features, fit_clustering, pretrain

__all__ = ["ImageClustering", "STRATEGIES"]

STRATEGIES = ("two_stage", "iic", "scan")
_WHO = "ImageClustering"


class ImageClustering(Estimator):
    """Cluster images without labels: ``labels_ = argmax_c phi_c(x)`` of a model trained on augmented pairs.

    * ``"two_stage"`` (the paper's protocol, Table 2): an encoder is pre-trained by
      :func:`~icontorch.training.train_contrastive` on two augmented views per image with ``loss``
      (default: alpha-debiased SimCLR, ``ICon(mix_uniform(PositivePairs(), 0.6), Gaussian(0.5,
      "cosine"))``); then its frozen backbone features ``h`` of the clean images and of ``n_views``
      augmented copies of each (cached once) are clustered by :class:`~icontorch.clustering.Clustering`
      with ``method="debiased_infonce"``: ``L = mean_i KL(p~(.|i) || q~(.|i))``, p uniform over an
      item's other views and its walk-propagated kNN in the clean features, q the cluster kernel.
    * ``"iic"``: IIC (Ji et al. 2019): a trunk with a main head (``n_clusters`` outputs) and an
      overclustering head (``overclustering * n_clusters``), ``n_subheads`` sub-heads each, trained
      alternately on pairs ``(g.x, g'.x)`` of augmented copies to minimise ``-I(z; z')``
      (:class:`~icontorch.methods.IICLoss`);
      the main sub-head of lowest loss on the whole data set is kept (never chosen by labels).
      On digits (8 x 8 upsampled into 28 x 28; seeds 0, 1, 2) ``epochs=20, batch_size=128, n_views=4,
      learning_rate=2e-3`` reached Hungarian accuracies 0.917, 0.735, 0.826 (``n_views=2``,
      ``learning_rate=1e-3``: 0.870, 0.809, 0.741, in half the time).
    * ``"scan"`` (baseline): stage 1 as above, then ``Clustering(method="scan")``: SCAN's consistency
      with a kNN neighbour's assignment minus 5 times the entropy of the batch marginal.

    Args:
        n_clusters: number of clusters C, 2 <= C <= N.
        strategy: ``"two_stage"``, ``"iic"`` or ``"scan"``.
        encoder: None (a :func:`~icontorch.encoders.contrastive_encoder` for the images' shape) or a
            module mapping (B, C, H, W) images to (B, d) embeddings; with a ``features`` method (the
            backbone), its output is what is clustered (``"two_stage"``, ``"scan"``) or the trunk
            (``"iic"``). Copied before training: the module passed is never changed.
        augment: ``augment(x, generator) -> x`` on a batch of images, for training the encoder (or
            IIC); None: :func:`~icontorch.augment.default_augmentation` for the image size (``"iic"``:
            :func:`~icontorch.augment.mild_augmentation`, chosen on digits).
        view_augment: the augmentation of the cached views of the clustering stage (``"two_stage"``);
            None: :func:`~icontorch.augment.mild_augmentation` for the image size (affine and noise below
            32 pixels, no crop: ahead of the pre-training augmentation and of identical copies on digits
            and 10,000 MNIST digits).
        loss: pre-training loss ``loss(z, target)`` (``"two_stage"``, ``"scan"``); None: the default above.
        feature_dim: dimension of the default encoder's features.
        epochs: passes over the images when training the encoder (pre-training, or IIC).
        batch_size: images per training step.
        learning_rate: AdamW's (pre-training) or Adam's (IIC) learning rate.
        weight_decay: its weight decay.
        n_views: augmented copies of each image: the views of the clustering stage (``"two_stage"``),
            the pairs of each image in a step (``"iic"``, IIC's repeats).
        n_neighbors: p's kNN graph, as in :class:`~icontorch.clustering.Clustering` (``"two_stage"``;
            also SCAN's neighbours).
        walk_length: p's walk length, as in ``Clustering`` (``"two_stage"``).
        mutual_knn: p's mutual kNN graph, as in ``Clustering`` (``"two_stage"``).
        alpha_p: p's debiasing weight, as in ``Clustering`` (``"two_stage"``).
        alpha_q: q's debiasing weight, as in ``Clustering`` (``"two_stage"``).
        cluster_epochs: epochs of the clustering stage (None: ``Clustering``'s default number of steps).
        n_heads: heads of the clustering stage, all from random weights (``init="random"``: the
            setting of the measured runs; ``Clustering``'s ``"auto"`` starts some at k-Means centres).
        overclustering: IIC's overclustering factor.
        n_subheads: IIC's sub-heads per head.
        sobel: IIC's Sobel pre-processing (grey image, then its two gradients).
        random_state: seed of the weights, batches and augmentations; None draws one.
        device: torch device.
        n_jobs: torch CPU threads during fit and predict (None: torch's setting).
        checkpoint: a file written after every training epoch (the encoder's, or IIC's).
        resume: continue from ``checkpoint`` (same settings): the result is the uninterrupted run's.
        verbose: tqdm progress bars.

    Attributes:
        labels_: (N,) cluster of each training image.
        encoder_: the trained encoder (or IIC network).
        clustering_: the fitted :class:`~icontorch.clustering.Clustering` (not ``"iic"``).
        best_subhead_: IIC's kept sub-head.
        subhead_losses_: every main sub-head's loss (IIC).
        loss_history_: mean training loss per encoder epoch.
        image_shape_: (C, H, W).
        used_views_: whether the clustering stage saw the cached views.
        fit_seconds_: wall time of the fit.
    """

    def __init__(self, n_clusters: int = 10, *, strategy: str = "two_stage", encoder: Optional[nn.Module] = None,
                 augment: Optional[Callable] = None, view_augment: Optional[Callable] = None,
                 loss: Optional[Callable] = None, feature_dim: int = 512,
                 epochs: int = 10, batch_size: int = 256, learning_rate: float = 1e-3, weight_decay: float = 1e-5,
                 n_views: int = 4, n_neighbors: int = 6, walk_length: int = 4, mutual_knn: bool = True,
                 alpha_p: Optional[float] = None, alpha_q: Optional[float] = None,
                 cluster_epochs: Optional[int] = None,
                 n_heads: int = 10, overclustering: int = 5, n_subheads: int = 5, sobel: bool = False,
                 random_state: Optional[int] = None, device: Union[str, torch.device] = "cpu",
                 n_jobs: Optional[int] = None, checkpoint: Optional[Union[str, Path]] = None, resume: bool = False,
                 verbose: bool = False) -> None:
        self.n_clusters = n_clusters
        self.strategy = strategy
        self.encoder = encoder
        self.augment = augment
        self.view_augment = view_augment
        self.loss = loss
        self.feature_dim = feature_dim
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.n_views = n_views
        self.n_neighbors = n_neighbors
        self.walk_length = walk_length
        self.mutual_knn = mutual_knn
        self.alpha_p = alpha_p
        self.alpha_q = alpha_q
        self.cluster_epochs = cluster_epochs
        self.n_heads = n_heads
        self.overclustering = overclustering
        self.n_subheads = n_subheads
        self.sobel = sobel
        self.random_state = random_state
        self.device = device
        self.n_jobs = n_jobs
        self.checkpoint = checkpoint
        self.resume = resume
        self.verbose = verbose

    # ------------------------------------------------------------------ checks
    def _check(self, n: int) -> Dict[str, Any]:
        """Every parameter, checked before any work; the values the fit uses."""
        strategy = check_choice(_WHO, "strategy", self.strategy, STRATEGIES)
        n_clusters = check_int(_WHO, "n_clusters", self.n_clusters, 2)
        if n_clusters > n:
            raise fail(_WHO, "n_clusters", f"be at most the number of images ({n})", self.n_clusters)
        counts = {name: int(check_int(_WHO, name, getattr(self, name), low)) for name, low in (
            ("feature_dim", 1), ("epochs", 1), ("batch_size", 2), ("n_views", 1), ("n_neighbors", 1),
            ("walk_length", 0), ("n_heads", 1), ("overclustering", 1), ("n_subheads", 1))}
        counts["cluster_epochs"] = (None if self.cluster_epochs is None
                                    else int(check_int(_WHO, "cluster_epochs", self.cluster_epochs, 1)))
        if strategy != "iic" and counts["n_neighbors"] >= n:
            raise fail(_WHO, "n_neighbors", f"be smaller than the number of images ({n})", self.n_neighbors)
        for name in ("alpha_p", "alpha_q"):
            if getattr(self, name) is not None:
                check_probability(_WHO, name, getattr(self, name))
        if self.encoder is not None and not isinstance(self.encoder, nn.Module):
            raise fail(_WHO, "encoder", "be None or a torch.nn.Module", self.encoder)
        for name in ("augment", "view_augment"):
            if getattr(self, name) is not None:
                check_augment(_WHO, name, getattr(self, name))
        if self.loss is not None and not callable(self.loss):
            raise fail(_WHO, "loss", "be None or a callable loss(z, target)", self.loss)
        seed = (int(np.random.randint(0, 2 ** 31 - 1)) if self.random_state is None
                else int(check_int(_WHO, "random_state", self.random_state, 0)))
        return dict(strategy=strategy, n_clusters=int(n_clusters), **counts,
                    learning_rate=check_positive(_WHO, "learning_rate", self.learning_rate),
                    weight_decay=check_nonnegative(_WHO, "weight_decay", self.weight_decay),
                    mutual_knn=check_flag(_WHO, "mutual_knn", self.mutual_knn),
                    sobel=check_flag(_WHO, "sobel", self.sobel), verbose=check_flag(_WHO, "verbose", self.verbose),
                    resume=check_flag(_WHO, "resume", self.resume), seed=seed,
                    n_jobs=check_n_jobs(_WHO, self.n_jobs))

    def _checkpoint(self) -> Optional[Path]:
        try:
            return _check_checkpoint(self.checkpoint, bool(self.resume))
        except IConError as error:
            raise IConError(str(error).replace("train_contrastive:", f"{_WHO}:", 1)) from None

    def _views(self, views: Any, images: Tensor, strategy: str) -> Optional[Tensor]:
        """Optional augmented copies (N, V, C, H, W) (or (N, V, H, W)) given by the user, as images."""
        if views is None:
            return None
        if strategy != "two_stage":
            raise fail(_WHO, "views", f"be None with strategy={strategy!r} (views feed the clustering stage "
                       "of 'two_stage')", type(views).__name__)
        n, shape = images.shape[0], tuple(images.shape[1:])
        v = views if isinstance(views, Tensor) else np.asarray(views)
        if v.ndim == 4 and shape[0] == 1:
            v = v[:, :, None]
        if v.ndim != 5 or v.shape[0] != n or tuple(v.shape[2:]) != shape or v.shape[1] < 1:
            raise fail(_WHO, "views", f"have shape ({n}, n_views, {', '.join(map(str, shape))}): augmented copies "
                       "of each image", f"an array of shape {tuple(v.shape)}")
        flat = as_images(v.reshape((-1,) + shape), _WHO, "views", images.device).to(images.dtype)
        return flat.reshape((n, v.shape[1]) + shape)

    # ------------------------------------------------------------------ fit
    def fit(self, X: Any, y: Any = None, views: Any = None) -> "ImageClustering":
        """Train on the images ``X`` (labels ``y`` are ignored) and cluster them; transactional.

        Args:
            X: (N, C, H, W) or (N, H, W) images, floats or integers 0-255, finite.
            y: ignored (scikit-learn's signature).
            views: optional (N, V, C, H, W) augmented copies of each image, used instead of ``view_augment``
                for the views of the clustering stage (``"two_stage"`` only).
        """
        device = check_device(_WHO, "device", self.device)
        images = as_images(X, _WHO, "X", device)
        settings = self._check(images.shape[0])
        given_views = self._views(views, images, settings["strategy"])
        path = self._checkpoint()
        defaults = (self.augment is None or self.encoder is None
                    or (settings["strategy"] == "two_stage" and self.view_augment is None and given_views is None))
        if min(images.shape[2:]) < 8 and defaults:
            raise fail(_WHO, "X", "hold images of at least 8 x 8 pixels (the default encoder and augmentations "
                       "need them; pass your own encoder, augment and view_augment for smaller ones)",
                       f"images of shape {tuple(images.shape[1:])}")
        size = max(images.shape[2:])
        augment = self.augment if self.augment is not None else (
            mild_augmentation if settings["strategy"] == "iic" else default_augmentation)(size)
        view_augment = self.view_augment if self.view_augment is not None or size < 8 else mild_augmentation(size)
        devices = [device] if device.type == "cuda" else []

        def run(work: "ImageClustering") -> None:
            start = time.perf_counter()
            with torch.random.fork_rng(devices=devices), Threads(settings["n_jobs"]):
                torch.manual_seed(settings["seed"])
                if settings["strategy"] == "iic":
                    learned = work._fit_iic(images, augment, settings, path)
                else:
                    learned = work._fit_two_stage(images, (augment, view_augment), settings, path, given_views)
            vars(work).update(learned, image_shape_=tuple(images.shape[1:]),
                              fit_seconds_=time.perf_counter() - start)
            work.labels_ = work._probabilities(images).argmax(1).cpu().numpy()

        return self._fit_transaction(run)

    def _encoder(self, in_channels: int, shape: Tuple[int, int], settings: Dict[str, Any]) -> nn.Module:
        if self.encoder is not None:
            return copy.deepcopy(self.encoder)
        try:
            return contrastive_encoder((in_channels,) + shape, feature_dim=settings["feature_dim"])
        except IConError as error:
            raise fail(_WHO, "X", f"hold images the default encoder takes ({error})", shape) from None

    def _train_settings(self, settings: Dict[str, Any], path: Optional[Path], device: torch.device) -> Dict[str, Any]:
        return dict(epochs=settings["epochs"], batch_size=settings["batch_size"],
                    learning_rate=settings["learning_rate"], weight_decay=settings["weight_decay"],
                    random_state=settings["seed"], device=device, checkpoint=path, resume=settings["resume"],
                    verbose=settings["verbose"])

    def _fit_two_stage(self, images: Tensor, augments: Tuple[Callable, Optional[Callable]], settings: Dict[str, Any],
                       path: Optional[Path], given_views: Optional[Tensor]) -> Dict[str, Any]:
        augment, view_augment = augments
        encoder = self._encoder(images.shape[1], tuple(images.shape[2:]), settings)
        history = pretrain(encoder, self.loss, images, augment, self._train_settings(settings, path, images.device))
        encoder.eval()
        encode = backbone_features(encoder)
        features = encode_images(encode, images)
        views = None
        if settings["strategy"] == "two_stage":
            if given_views is not None:
                views = encode_images(encode, given_views.flatten(0, 1)).reshape(images.shape[0], -1,
                                                                                  features.shape[1])
            else:
                generator = epoch_generator(settings["seed"], settings["epochs"], images.device)
                views = encode_views(encode, images, view_augment, settings["n_views"], generator)
        params = dict(n_clusters=settings["n_clusters"], n_neighbors=settings["n_neighbors"],
                      n_heads=settings["n_heads"], init="random", random_state=settings["seed"], device=images.device,
                      n_jobs=settings["n_jobs"], verbose=settings["verbose"])
        if settings["cluster_epochs"] is not None:
            params["epochs"] = settings["cluster_epochs"]
        if settings["strategy"] == "two_stage":
            params.update(method="debiased_infonce", walk_length=settings["walk_length"],
                          mutual_knn=settings["mutual_knn"], alpha_p=self.alpha_p, alpha_q=self.alpha_q)
        else:
            params.update(method="scan")
        clustering = fit_clustering(features, views, params)
        return dict(encoder_=encoder, clustering_=clustering, loss_history_=history,
                    used_views_=views is not None and accepts_views())

    def _fit_iic(self, images: Tensor, augment: Callable, settings: Dict[str, Any],
                 path: Optional[Path]) -> Dict[str, Any]:
        in_channels = 2 if settings["sobel"] else images.shape[1]
        encoder = self._encoder(in_channels, tuple(images.shape[2:]), settings)
        trunk = encoder.backbone if isinstance(encoder, ContrastiveEncoder) else encoder
        probe = images[:2]
        if settings["sobel"]:
            probe = Sobel().to(images.device)(probe)
        with torch.no_grad():
            trunk.to(images.device).eval()
            feature_dim = int(trunk(probe).shape[1])
        model = IICNet(trunk, feature_dim, settings["n_clusters"], settings["overclustering"],
                       settings["n_subheads"], settings["sobel"]).to(images.device)
        iic = IICSettings(epochs=settings["epochs"], batch_size=settings["batch_size"], n_views=settings["n_views"],
                          learning_rate=settings["learning_rate"], weight_decay=settings["weight_decay"],
                          random_state=settings["seed"])
        history = train_iic(model, images, augment, iic, path, settings["resume"], settings["verbose"])
        losses = subhead_losses(model, images, augment, settings["n_views"], settings["seed"], settings["epochs"])
        return dict(encoder_=model, clustering_=None, loss_history_=history, subhead_losses_=losses.cpu().numpy(),
                    best_subhead_=int(losses.argmin()), used_views_=False)

    # ------------------------------------------------------------------ predict
    def _probabilities(self, X: Any) -> Tensor:
        if not hasattr(self, "encoder_"):
            raise IConError(f"{_WHO}: this estimator is not fitted yet; call fit(X) first.")
        device = next(self.encoder_.parameters()).device
        images = as_images(X, _WHO, "X", device)
        if tuple(images.shape[1:]) != self.image_shape_:
            raise fail(_WHO, "X", f"hold images of shape {self.image_shape_}, as in fit",
                       f"images of shape {tuple(images.shape[1:])}")
        with torch.no_grad(), Threads(check_n_jobs(_WHO, self.n_jobs)):
            self.encoder_.eval()
            if self.clustering_ is None:
                sub = self.best_subhead_
                return torch.cat([self.encoder_(images[a:a + 1024], "main")[sub].softmax(1)
                                  for a in range(0, images.shape[0], 1024)])
            features = encode_images(backbone_features(self.encoder_), images.to(next(
                self.encoder_.parameters()).dtype))
            return self.clustering_.predict_proba(features)

    def predict_proba(self, X: Any) -> Union[np.ndarray, Tensor]:
        """(N, n_clusters) soft assignments of the images (a tensor for tensor input)."""
        return like_input(self._probabilities(X), X)

    def predict(self, X: Any) -> Union[np.ndarray, Tensor]:
        """(N,) cluster of each image (a tensor for tensor input)."""
        return like_input(self._probabilities(X).argmax(1), X)

    def fit_predict(self, X: Any, y: Any = None, views: Any = None) -> Union[np.ndarray, Tensor]:
        """``fit(X, views=views)`` then ``labels_`` (a tensor for tensor input)."""
        return like_input(torch.from_numpy(self.fit(X, y, views).labels_), X)

