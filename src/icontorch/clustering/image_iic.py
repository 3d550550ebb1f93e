"""IIC end to end (Ji et al. 2019): a trunk with a main head of C clusters and an overclustering head
of ``overclustering * C``, each with several sub-heads, trained on pairs ``(g.x, g'.x)`` to maximise the
mutual information ``I(z; z')`` of their cluster assignments (:class:`~icontorch.methods.IICLoss`).

The two heads are trained alternately, batch by batch (IIC alternates whole epochs; one batch each
costs the trunk the same and gives it both signals twice as often). Each image of a batch is paired
with ``n_views`` augmented copies of itself (IIC's repeats, 5 on MNIST). After training, every main
sub-head is scored by ``-I(z; z')`` of the joint pooled over the whole data set on fresh pairs, and
the lowest is kept (never chosen by labels). Training is deterministic given ``random_state``: epoch
``e`` draws from a generator seeded by ``(random_state, e)`` alone, so a run resumed from the
checkpoint of epoch ``e`` gives the weights of the uninterrupted run.

Measured on digits (8 x 8 upsampled into 28 x 28, 20 epochs, batches of 128, 2 pairs per image, Adam
lr 1e-3; seeds 0, 1, 2): Hungarian accuracy 0.275, 0.287, 0.268 before the two fixes below (heads
on centred features, :class:`IICNet`; milder perturbations,
:func:`~icontorch.augment.mild_augmentation`), 0.870, 0.809, 0.741 after; with 4 pairs and lr 2e-3,
0.917, 0.735, 0.826.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import torch
from torch import Tensor, nn

from .._validation import IConError
from ..methods import IICLoss
from ..training import epoch_generator, write_state
from .image_data import Sobel

__all__ = ["IICNet", "IICSettings", "train_iic", "subhead_losses"]

_FORMAT = "icontorch.ImageClustering.iic/1"


class IICNet(nn.Module):
    """``logits_s = W_s BN(trunk(sobel(x)))`` for every sub-head s of the ``"main"`` or ``"over"`` head.

    ``BN`` is a batch norm without affine parameters: it centres and scales the trunk's features.
    Trunks ending in a ReLU give non-negative features with a large common part, so without it one
    cluster wins every image at the start and the others die (their softmax gradient vanishes once
    the outputs are confident): on digits IIC ended with 4-5 empty clusters of 10 and a Hungarian
    accuracy of 0.42 after 10 epochs, 0.76 with the batch norm (same seed and settings).

    Args:
        trunk: (B, C_in, H, W) -> (B, d) features (C_in = 2 with ``sobel``).
        feature_dim: d.
        n_clusters: outputs of the main head.
        overclustering: the overclustering head has ``overclustering * n_clusters`` outputs.
        n_subheads: sub-heads of each head.
        sobel: apply :class:`~icontorch.clustering.image_data.Sobel` first.
    """

    def __init__(self, trunk: nn.Module, feature_dim: int, n_clusters: int, overclustering: int,
                 n_subheads: int, sobel: bool) -> None:
        super().__init__()
        self.trunk = trunk
        self.sobel = Sobel() if sobel else nn.Identity()
        self.n_subheads = n_subheads
        self.center = nn.BatchNorm1d(feature_dim, affine=False)
        self.sizes = {"main": n_clusters, "over": overclustering * n_clusters}
        self.heads = nn.ModuleDict({name: nn.Linear(feature_dim, n_subheads * size)
                                    for name, size in self.sizes.items()})

    def features(self, x: Tensor) -> Tensor:
        """(B, d) trunk features."""
        return self.trunk(self.sobel(x))

    def forward(self, x: Tensor, head: str = "main") -> Tensor:
        """(n_subheads, B, size) logits of ``head``."""
        logits = self.heads[head](self.center(self.features(x)))
        return logits.reshape(x.shape[0], self.n_subheads, self.sizes[head]).transpose(0, 1)


@dataclasses.dataclass(frozen=True)
class IICSettings:
    """What an IIC run is made of; a checkpoint is resumed only under the same settings."""

    epochs: int
    batch_size: int
    n_views: int
    learning_rate: float
    weight_decay: float
    random_state: int


def _pairs(images: Tensor, index: Tensor, augment: Callable, n_views: int,
           generator: torch.Generator) -> Tuple[Tensor, Tensor]:
    """Two independent augmented copies ``(g.x, g'.x)`` of each image, ``n_views`` pairs per image.

    Both sides are augmented: with a clean ``x`` against ``g.x`` the symmetrised joint is maximised
    at ``I = log 2`` by telling clean from augmented images (two clusters), the trap we measured."""
    x = images[index].repeat(n_views, 1, 1, 1)
    both = augment(torch.cat([x, x]), generator)
    if not isinstance(both, Tensor) or both.shape[1:] != x.shape[1:] or both.shape[0] != 2 * x.shape[0] \
            or not bool(torch.isfinite(both).all()):
        raise IConError(f"ImageClustering: augment(x) must return finite tensors of the input's shape "
                        f"{(2 * x.shape[0],) + tuple(x.shape[1:])}; got {getattr(both, 'shape', type(both).__name__)}.")
    return both[:x.shape[0]], both[x.shape[0]:]


def _pair_loss(model: IICNet, x: Tensor, gx: Tensor, head: str, loss: IICLoss) -> Tensor:
    """Mean over the sub-heads of ``IICLoss(log phi(x), log phi(g.x))``."""
    logits = model(torch.cat([x, gx]), head).log_softmax(2)
    m = x.shape[0]
    return torch.stack([loss(sub[:m], sub[m:]) for sub in logits]).mean()


def _restore(path: Path, settings: IICSettings, model: IICNet, optimizer: torch.optim.Optimizer,
             device: torch.device) -> Tuple[List[float], int]:
    """Load an IIC checkpoint of the same settings into the model and optimiser."""
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except OSError:
        raise
    except Exception as error:
        raise IConError(f"ImageClustering: checkpoint must be a file written by an IIC fit to be resumed; got "
                        f"{str(path)!r}, which cannot be read as one ({type(error).__name__}).") from None
    if not isinstance(state, dict) or state.get("format") != _FORMAT:
        raise IConError(f"ImageClustering: checkpoint must be a file written by an IIC fit (format {_FORMAT}) "
                        f"to be resumed; got {str(path)!r}. Delete it or pass another path.")
    if state.get("settings") != dataclasses.asdict(settings):
        raise IConError(f"ImageClustering: the checkpoint {str(path)!r} was written with other settings "
                        f"({state.get('settings')}); got {dataclasses.asdict(settings)}.")
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as error:
        raise IConError(f"ImageClustering: checkpoint {str(path)!r} does not fit this model "
                        f"({type(error).__name__}). Start a new run.") from None
    return [float(v) for v in state["history"]], int(state["epoch"])


def train_iic(model: IICNet, images: Tensor, augment: Callable, settings: IICSettings,
              checkpoint: Optional[Path], resume: bool, verbose: bool) -> List[float]:
    """Train ``model`` in place with Adam; the mean loss of each epoch (those restored included).

    A step draws ``batch_size`` images, pairs each with ``n_views`` augmented copies and minimises
    the IIC loss of the ``"over"`` head on even steps and of the ``"main"`` head on odd ones."""
    device = images.device
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    history: List[float] = []
    start = 0
    if resume and checkpoint is not None and checkpoint.exists():
        history, start = _restore(checkpoint, settings, model, optimizer, device)
    loss = IICLoss()
    n = images.shape[0]
    batch_size = min(settings.batch_size, n)
    steps = max(1, n // batch_size)
    epochs = range(start, settings.epochs)
    if verbose:
        from tqdm.auto import tqdm

        epochs = tqdm(epochs, desc="ImageClustering (iic)", initial=start, total=settings.epochs)
    model.train()
    for epoch in epochs:
        generator = epoch_generator(settings.random_state, epoch, device)
        order = torch.randperm(n, generator=generator, device=device)
        total = 0.0
        for step in range(steps):
            x, gx = _pairs(images, order[step * batch_size:(step + 1) * batch_size], augment, settings.n_views,
                           generator)
            value = _pair_loss(model, x, gx, "over" if step % 2 == 0 else "main", loss)
            if not bool(torch.isfinite(value)):
                raise IConError(f"ImageClustering: the IIC loss became {value.item()} at epoch {epoch + 1} "
                                f"(training diverged; lower learning_rate).")
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            optimizer.step()
            total += value.item()
        history.append(total / steps)
        if verbose:
            epochs.set_postfix(loss=f"{history[-1]:.4f}")
        if checkpoint is not None:
            write_state(checkpoint, {"format": _FORMAT, "settings": dataclasses.asdict(settings), "epoch": epoch + 1,
                               "history": history, "model": model.state_dict(), "optimizer": optimizer.state_dict()})
    model.eval()
    return history


@torch.no_grad()
def subhead_losses(model: IICNet, images: Tensor, augment: Callable, n_views: int, random_state: int,
                   epoch: int, batch_size: int = 1024) -> Tensor:
    """(n_subheads,) ``-I(z; z')`` of each main sub-head on the joint pooled over all images, each paired
    with ``n_views`` fresh augmented copies (the generator of epoch ``epoch``): lower is better."""
    model.eval()
    generator = epoch_generator(random_state, epoch, images.device)
    clean, augmented = [], []
    for start in range(0, images.shape[0], batch_size):
        index = torch.arange(start, min(start + batch_size, images.shape[0]), device=images.device)
        x, gx = _pairs(images, index, augment, n_views, generator)
        clean.append(model(x, "main").log_softmax(2))
        augmented.append(model(gx, "main").log_softmax(2))
    a, b = torch.cat(clean, 1), torch.cat(augmented, 1)
    loss = IICLoss()
    return torch.stack([loss(a[s], b[s]) for s in range(a.shape[0])])
