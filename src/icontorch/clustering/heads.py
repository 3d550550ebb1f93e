"""Cluster heads for :class:`~icontorch.clustering.Clustering`: H independent heads in one module."""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn

__all__ = ["ClusterHeads"]


class ClusterHeads(nn.Module):
    """``logits_h = f_h(x)`` for H heads at once: linear ``x W_h + b_h`` or an MLP with one ReLU layer.

    The heads share nothing but their input; one batched product evaluates all of them, so
    training H heads costs about as much as training one on the same batch (the paper's and
    SCAN/TEMI's multi-head trick, with the head of lowest loss kept).

    Args:
        n_heads: H.
        in_features: D.
        n_clusters: C.
        kind: ``"linear"`` or ``"mlp"``.
        hidden_dim: width of the MLP's hidden layer.
        generator: random generator of the initial weights (N(0, 1 / fan_in), zero biases).
    """

    def __init__(self, n_heads: int, in_features: int, n_clusters: int, kind: str = "linear",
                 hidden_dim: int = 256, generator: torch.Generator = None) -> None:
        super().__init__()
        self.n_heads, self.in_features, self.n_clusters = n_heads, in_features, n_clusters
        self.kind, self.hidden_dim = kind, hidden_dim
        width = hidden_dim if kind == "mlp" else n_clusters

        def weight(rows: int, cols: int) -> nn.Parameter:
            w = torch.randn(n_heads, rows, cols, generator=generator) / math.sqrt(rows)
            return nn.Parameter(w)

        self.weight = weight(in_features, width)
        self.bias = nn.Parameter(torch.zeros(n_heads, 1, width))
        if kind == "mlp":
            self.weight2 = weight(hidden_dim, n_clusters)
            self.bias2 = nn.Parameter(torch.zeros(n_heads, 1, n_clusters))

    def forward(self, x: Tensor) -> Tensor:
        """(B, D) inputs -> (H, B, C) logits."""
        h, d, width = self.weight.shape
        # one (B, D) x (D, H * width) product instead of H broadcast ones (no copy of x per head)
        out = (x @ self.weight.permute(1, 0, 2).reshape(d, h * width)).reshape(-1, h, width)
        out = out.transpose(0, 1) + self.bias
        if self.kind == "mlp":
            out = torch.bmm(torch.relu(out), self.weight2) + self.bias2
        return out

    def select(self, index: int) -> "ClusterHeads":
        """A copy holding head ``index`` alone (H = 1)."""
        one = copy.deepcopy(self)
        with torch.no_grad():
            for name, param in one.named_parameters():
                setattr(one, name, nn.Parameter(param[index:index + 1].clone()))
        one.n_heads = 1
        return one

    @torch.no_grad()
    def update_average(self, online: "ClusterHeads", momentum: float) -> None:
        """Exponential moving average: ``theta <- momentum * theta + (1 - momentum) * theta_online``."""
        for mine, theirs in zip(self.parameters(), online.parameters()):
            mine.mul_(momentum).add_(theirs, alpha=1.0 - momentum)

    def extra_repr(self) -> str:
        hidden = f", hidden_dim={self.hidden_dim}" if self.kind == "mlp" else ""
        return (f"n_heads={self.n_heads}, in_features={self.in_features}, "
                f"n_clusters={self.n_clusters}, kind={self.kind!r}{hidden}")
