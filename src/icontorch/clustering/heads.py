"""Cluster heads for :class:`~icontorch.clustering.Clustering`: H independent heads in one module."""

from __future__ import annotations

import copy
import math
from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from .._validation import check_int, check_layer_sizes

__all__ = ["ClusterHeads", "nearest_centroid_head"]


class ClusterHeads(nn.Module):
    """``logits_h = A_hL(relu(... relu(A_h1(x))))`` with ``A_hl(u) = u W_hl + b_hl``, for H heads at once.

    With ``hidden_layer_sizes = ()`` every head is the linear map ``x W_h + b_h``; with
    ``(256,)`` it is an MLP with one ReLU layer of 256 units. The heads share nothing but their
    input; one batched product evaluates all of them, so training H heads costs about as much as
    training one on the same batch (the paper's and SCAN/TEMI's multi-head trick, with the head
    of lowest loss kept).

    Args:
        n_heads: H.
        in_features: D.
        n_clusters: C.
        hidden_layer_sizes: widths of the hidden layers, ``()`` for a linear head.
        generator: random generator of the initial weights (N(0, 1 / fan_in), zero biases), drawn
            layer by layer from the input side.
    """

    def __init__(self, n_heads: int, in_features: int, n_clusters: int, hidden_layer_sizes: Sequence[int] = (),
                 generator: Optional[torch.Generator] = None) -> None:
        super().__init__()
        who = "ClusterHeads"
        self.n_heads = check_int(who, "n_heads", n_heads, 1)
        self.in_features = check_int(who, "in_features", in_features, 1)
        self.n_clusters = check_int(who, "n_clusters", n_clusters, 1)
        self.hidden_layer_sizes = check_layer_sizes(who, "hidden_layer_sizes", hidden_layer_sizes)
        sizes = (self.in_features,) + self.hidden_layer_sizes + (self.n_clusters,)
        self.weights = nn.ParameterList(
            nn.Parameter(torch.randn(self.n_heads, rows, cols, generator=generator) / math.sqrt(rows))
            for rows, cols in zip(sizes[:-1], sizes[1:]))
        self.biases = nn.ParameterList(nn.Parameter(torch.zeros(self.n_heads, 1, cols)) for cols in sizes[1:])

    def forward(self, x: Tensor) -> Tensor:
        """(B, D) inputs -> (H, B, C) logits."""
        first = self.weights[0]
        h, d, width = first.shape
        # one (B, D) x (D, H * width) product instead of H broadcast ones (no copy of x per head)
        out = (x @ first.permute(1, 0, 2).reshape(d, h * width)).reshape(-1, h, width)
        out = out.transpose(0, 1) + self.biases[0]
        for weight, bias in zip(self.weights[1:], self.biases[1:]):
            out = torch.bmm(torch.relu(out), weight) + bias
        return out

    @torch.no_grad()
    def set_linear(self, index: int, weight: Tensor, bias: Tensor) -> None:
        """Set linear head ``index`` to ``x W + b`` with ``weight`` (D, C) and ``bias`` (C,)."""
        self.weights[0][index] = weight
        self.biases[0][index, 0] = bias

    def select(self, index: int) -> "ClusterHeads":
        """A copy holding head ``index`` alone (H = 1)."""
        one = copy.deepcopy(self)
        with torch.no_grad():
            for params in (one.weights, one.biases):
                for layer, param in enumerate(params):
                    params[layer] = nn.Parameter(param[index:index + 1].clone())
        one.n_heads = 1
        return one

    @torch.no_grad()
    def update_average(self, online: "ClusterHeads", momentum: float) -> None:
        """Exponential moving average: ``theta <- momentum * theta + (1 - momentum) * theta_online``."""
        for mine, theirs in zip(self.parameters(), online.parameters()):
            mine.mul_(momentum).add_(theirs, alpha=1.0 - momentum)

    def extra_repr(self) -> str:
        return (f"n_heads={self.n_heads}, in_features={self.in_features}, "
                f"n_clusters={self.n_clusters}, hidden_layer_sizes={self.hidden_layer_sizes}")


def nearest_centroid_head(centers: Tensor, beta: float, temperature: float) -> Tuple[Tensor, Tensor]:
    """``(W, b)`` of the linear head whose ``softmax((x W + b) / temperature) = softmax_c(-beta |x - c|^2 / 2)``.

    ``W = temperature * beta * C^T``, ``b_c = -temperature * beta * |c|^2 / 2``: the ``|x|^2`` term of
    ``|x - c|^2 = |x|^2 - 2 x.c + |c|^2`` is the same for every c and cancels in the softmax, so the
    head's argmax is the nearest centre, and ``beta`` sets how soft it is.

    Args:
        centers: (C, D) the centres c.
        beta: inverse squared distance scale, > 0.
        temperature: the temperature that divides the head's logits in training.
    """
    scale = temperature * beta
    return scale * centers.T, -0.5 * scale * (centers * centers).sum(1)
