"""Small image encoders with a projection head: the mapper ``f`` of contrastive I-Con (paper Appendix A).

The paper trains ``z = g(h)``, ``h = f(x)``: a ResNet backbone ``f`` with a 2-layer MLP head ``g``
(hidden 512, output 64, no batch-norm); the loss sees ``z``, and linear-probe / kNN evaluation
uses ``h``. These are small, CPU-trainable versions:

* :class:`ConvNet28`: three conv-ReLU-pool stages for 28 x 28 (and smaller) grey-scale images.
* :class:`ResNetSmall`: a CIFAR-style ResNet (basic blocks, batch-norm) for 32 x 32 and larger.
* :class:`ProjectionHead`: Linear-ReLU-Linear (any number of hidden layers, or none).
* :class:`ContrastiveEncoder`: ``forward(x) = g(f(x))``, ``features(x) = f(x)``.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from ._validation import check_flag, check_int, check_layer_sizes, fail, is_integer

__all__ = ["ConvNet28", "ResNetSmall", "ProjectionHead", "ContrastiveEncoder", "contrastive_encoder"]


def _check_image_input(who: str, x: Tensor, in_channels: int, min_size: int) -> None:
    """x must be (B, in_channels, H, W), floating, with H, W >= min_size."""
    expected = f"have shape (B, {in_channels}, H, W) with H, W >= {min_size}"
    if not isinstance(x, Tensor):
        raise fail(who, "x", expected, type(x).__name__)
    if x.dim() != 4 or x.shape[1] != in_channels or x.shape[2] < min_size or x.shape[3] < min_size \
            or x.shape[0] == 0:
        raise fail(who, "x", expected, x)
    if not x.is_floating_point():
        raise fail(who, "x", "be a floating-point tensor (convert images with x.float() / 255)", x)


def _layout(x: Tensor, channels_last: bool) -> Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


class ConvNet28(nn.Module):
    """``h = relu(W vec(pool(s3(s2(s1(x))))))`` with stages ``s = maxpool2(relu(bn(conv3x3)))``.

    Channels ``width, 2 width, 4 width``; 28 x 28 inputs end as 3 x 3 maps (an adaptive average
    pool to 3 x 3 makes smaller inputs, down to 8 x 8, work too), then one linear layer to
    ``feature_dim`` and a ReLU. Cheap enough to train on a CPU.

    Args:
        in_channels: image channels.
        feature_dim: dimension of h.
        width: channels of the first stage.
        batch_norm: batch-norm after each convolution (faster, steadier training).
        channels_last: keep weights and activations in the channels-last memory layout (the
            outputs are the same; oneDNN's convolutions and poolings run 1.3-1.7x faster on CPU).
    """

    min_size = 8      # three 2 x 2 poolings leave at least one pixel

    def __init__(self, in_channels: int = 1, feature_dim: int = 512, width: int = 16,
                 batch_norm: bool = True, channels_last: bool = True) -> None:
        super().__init__()
        who = "ConvNet28"
        self.in_channels = check_int(who, "in_channels", in_channels, 1)
        self.feature_dim = check_int(who, "feature_dim", feature_dim, 1)
        self.width = check_int(who, "width", width, 1)
        self.batch_norm = check_flag(who, "batch_norm", batch_norm)
        self.channels_last = check_flag(who, "channels_last", channels_last)
        layers: list = []
        c_in = in_channels
        for c_out in (width, 2 * width, 4 * width):
            layers.append(nn.Conv2d(c_in, c_out, 3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(c_out))
            layers += [nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            c_in = c_out
        layers += [nn.AdaptiveAvgPool2d(3), nn.Flatten(), nn.Linear(4 * width * 9, feature_dim), nn.ReLU()]
        self.net = nn.Sequential(*layers)
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def forward(self, x: Tensor) -> Tensor:
        """(B, in_channels, H, W) -> (B, feature_dim)."""
        _check_image_input("ConvNet28", x, self.in_channels, self.min_size)
        return self.net(_layout(x, self.channels_last))

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, feature_dim={self.feature_dim}, width={self.width}, "
                f"batch_norm={self.batch_norm}, channels_last={self.channels_last}")


class BasicBlock(nn.Module):
    """``relu(bn(conv(relu(bn(conv(x))))) + shortcut(x))`` (He et al. 2016); a 1 x 1 conv shortcut
    when the stride or the channel count changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(out_channels))

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNetSmall(nn.Module):
    """A CIFAR-style ResNet: ``h = relu(W avgpool(stages(stem(x))))``.

    Stem: 3 x 3 conv, batch-norm, ReLU, no max-pool (small images keep their resolution). Stage s
    has ``blocks[s]`` basic blocks of ``width * 2^s`` channels, stride 2 from the second stage on;
    a global average pool, one linear layer to ``feature_dim`` and a ReLU. ``blocks=(2, 2, 2, 2)``
    with ``width=64`` is ResNet-18's body.

    Args:
        in_channels: image channels.
        feature_dim: dimension of h.
        width: channels of the first stage.
        blocks: basic blocks per stage (one entry per stage).
        channels_last: channels-last memory layout (same outputs, faster on CPU), as in ConvNet28.
    """

    def __init__(self, in_channels: int = 3, feature_dim: int = 512, width: int = 32,
                 blocks: Sequence[int] = (1, 1, 1, 1), channels_last: bool = True) -> None:
        super().__init__()
        who = "ResNetSmall"
        self.in_channels = check_int(who, "in_channels", in_channels, 1)
        self.feature_dim = check_int(who, "feature_dim", feature_dim, 1)
        self.width = check_int(who, "width", width, 1)
        if isinstance(blocks, (str, bytes)) or not isinstance(blocks, Sequence) or len(blocks) == 0:
            raise fail(who, "blocks", "be a non-empty sequence of block counts >= 1", blocks)
        for n in blocks:
            check_int(who, "blocks", n, 1)
        self.blocks = blocks
        self.channels_last = check_flag(who, "channels_last", channels_last)
        # Each stride-2 stage halves the map; below this size the last stages would see 1 x 1 padding.
        self.min_size = 2 ** (len(blocks) - 1)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        stages: list = []
        c_in = width
        for s, n in enumerate(blocks):
            c_out = width * 2 ** s
            for b in range(n):
                stages.append(BasicBlock(c_in, c_out, stride=2 if (s > 0 and b == 0) else 1))
                c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Sequential(nn.Linear(c_in, feature_dim), nn.ReLU())
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def forward(self, x: Tensor) -> Tensor:
        """(B, in_channels, H, W) -> (B, feature_dim)."""
        _check_image_input("ResNetSmall", x, self.in_channels, self.min_size)
        return self.fc(self.pool(self.stages(self.stem(_layout(x, self.channels_last)))))

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, feature_dim={self.feature_dim}, width={self.width}, "
                f"blocks={tuple(self.blocks)}, channels_last={self.channels_last}")


class ProjectionHead(nn.Module):
    """``z = W_L relu(... relu(W_1 h + b_1) ...) + b_L``: an MLP head without batch-norm.

    One ReLU hidden layer per entry of ``hidden_layer_sizes``; ``()`` is the linear map
    ``z = W h + b``. The default ``(512,)`` with ``out_features=64`` is the paper's Appendix A head.

    Args:
        in_features: dimension of h.
        out_features: dimension of z, the embedding the loss sees.
        hidden_layer_sizes: widths of the hidden layers, in order.
    """

    def __init__(self, in_features: int = 512, out_features: int = 64, *,
                 hidden_layer_sizes: Sequence[int] = (512,)) -> None:
        super().__init__()
        who = "ProjectionHead"
        self.in_features = int(check_int(who, "in_features", in_features, 1))
        self.out_features = int(check_int(who, "out_features", out_features, 1))
        self.hidden_layer_sizes = check_layer_sizes(who, "hidden_layer_sizes", hidden_layer_sizes)
        widths = (self.in_features,) + self.hidden_layer_sizes
        layers: list = []
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.net = nn.Sequential(*layers, nn.Linear(widths[-1], self.out_features))

    def forward(self, h: Tensor) -> Tensor:
        """(B, in_features) -> (B, out_features)."""
        if not isinstance(h, Tensor) or h.dim() != 2 or h.shape[1] != self.in_features or not h.is_floating_point():
            raise fail("ProjectionHead", "h", f"be a floating tensor of shape (B, {self.in_features})",
                       h if isinstance(h, Tensor) else type(h).__name__)
        return self.net(h)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"hidden_layer_sizes={self.hidden_layer_sizes}")


class ContrastiveEncoder(nn.Module):
    """``z = head(backbone(x))`` for the loss, ``h = backbone(x)`` for evaluation.

    Args:
        backbone: maps a batch of inputs to (B, d) features h.
        head: maps (B, d) features to (B, out_features) embeddings z.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        for name, module in (("backbone", backbone), ("head", head)):
            if not isinstance(module, nn.Module):
                raise fail("ContrastiveEncoder", name, "be a torch.nn.Module", type(module).__name__)
        self.backbone = backbone
        self.head = head

    def forward(self, x: Tensor) -> Tensor:
        """z = head(backbone(x)): what the contrastive loss sees."""
        return self.head(self.backbone(x))

    def features(self, x: Tensor) -> Tensor:
        """h = backbone(x): the representation for linear probes and kNN."""
        return self.backbone(x)


def contrastive_encoder(image_shape: Tuple[int, int, int], feature_dim: int = 512, out_features: int = 64,
                        width: Optional[int] = None) -> ContrastiveEncoder:
    """``z = head(backbone(x))`` for images of shape (C, H, W), the head a
    ``ProjectionHead(feature_dim, out_features, hidden_layer_sizes=(feature_dim,))``.

    ``H, W <= 28``: :class:`ConvNet28` (``width`` default 16); larger: :class:`ResNetSmall`
    (``width`` default 32, one basic block per stage).

    Args:
        image_shape: (C, H, W) of one image.
        feature_dim: dimension of the features h (and the head's hidden width).
        out_features: dimension of z.
        width: channels of the backbone's first stage (None: the default above).
    """
    who = "contrastive_encoder"
    if not isinstance(image_shape, (tuple, list)) or len(image_shape) != 3 or any(
            not is_integer(v) or v < 1 for v in image_shape):
        raise fail(who, "image_shape", "be a triple (C, H, W) of positive integers", image_shape)
    feature_dim = int(check_int(who, "feature_dim", feature_dim, 1))
    out_features = int(check_int(who, "out_features", out_features, 1))
    if width is not None:
        width = int(check_int(who, "width", width, 1))
    c, h, w = (int(v) for v in image_shape)
    backbone: nn.Module
    if max(h, w) <= 28:
        if min(h, w) < ConvNet28.min_size:
            raise fail(who, "image_shape", f"have H, W >= {ConvNet28.min_size}", image_shape)
        backbone = ConvNet28(c, feature_dim, 16 if width is None else width)
    else:
        backbone = ResNetSmall(c, feature_dim, 32 if width is None else width)
        if min(h, w) < backbone.min_size:
            raise fail(who, "image_shape", f"have H, W >= {backbone.min_size}", image_shape)
    return ContrastiveEncoder(backbone, ProjectionHead(feature_dim, out_features, hidden_layer_sizes=(feature_dim,)))
