"""Mappers: what produces the learned embedding ``phi`` that q sees (I-Con paper, Appendix G).

* :class:`EmbeddingTable`: one free vector per item (non-parametric; SNE, t-SNE).
* :class:`MLP`: a network ``f(x)`` (parametric; embeds new points without retraining).
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from .._validation import check_features, check_index, check_int, check_layer_sizes, fail

__all__ = ["EmbeddingTable", "MLP"]


class EmbeddingTable(nn.Module):
    """``phi_i``: a free (n_items, n_components) table, the non-parametric mapper of SNE and t-SNE.

    Args:
        n_items: rows of the table.
        n_components: dimension of each row.
        init: optional (n_items, n_components) starting values; else N(0, 1e-4^2).
    """

    def __init__(self, n_items: int, n_components: int, init: Optional[Tensor] = None) -> None:
        super().__init__()
        self.n_items = n_items = check_int("EmbeddingTable", "n_items", n_items, 1)
        self.n_components = n_components = check_int("EmbeddingTable", "n_components", n_components, 1)
        if init is None:
            init = 1e-4 * torch.randn(n_items, n_components)
        elif not isinstance(init, Tensor) or tuple(init.shape) != (n_items, n_components):
            raise fail("EmbeddingTable", "init", f"be a tensor of shape ({n_items}, {n_components})", init)
        self.weight = nn.Parameter(init.detach().clone().float())

    def forward(self, index: Optional[Tensor] = None) -> Tensor:
        """The rows ``phi[index]`` (all rows when ``index`` is None)."""
        if index is None:
            return self.weight
        check_index("EmbeddingTable", "index", index)
        return self.weight[index]

    def extra_repr(self) -> str:
        return f"n_items={self.n_items}, n_components={self.n_components}"


class MLP(nn.Module):
    """``f(x) = W_L silu(... silu(W_1 ((x - shift) / scale)) ...)``: the parametric mapper.

    Inputs are standardised by a fixed ``shift`` and ``scale`` (buffers, set by
    :meth:`set_input_scaling` from the training data) so that the same network serves data of
    any unit; the buffers travel with the module when it is saved or pickled. SiLU
    (``x * sigmoid(x)``), not ReLU: a smooth map places held-out points better (the parametric
    defaults were chosen on validation splits of MNIST: held-out 10-NN accuracy 0.84-0.85 for
    SiLU 256-256-256 trained at Adam 3e-3, 0.74-0.76 for ReLU 256-256 at 1e-3).

    Args:
        in_features: input dimension.
        out_features: embedding dimension.
        hidden_layer_sizes: widths of the hidden layers; ``()`` for a linear (affine) map.
    """

    def __init__(self, in_features: int, out_features: int,
                 hidden_layer_sizes: Sequence[int] = (256, 256, 256)) -> None:
        super().__init__()
        self.in_features = in_features = check_int("MLP", "in_features", in_features, 1)
        self.out_features = check_int("MLP", "out_features", out_features, 1)
        self.hidden_layer_sizes = sizes = check_layer_sizes("MLP", "hidden_layer_sizes", hidden_layer_sizes)
        layers: list = []
        width_in = in_features
        for width in sizes:
            layers += [nn.Linear(width_in, width), nn.SiLU()]
            width_in = width
        layers.append(nn.Linear(width_in, self.out_features))
        self.net = nn.Sequential(*layers)
        self.register_buffer("shift", torch.zeros(in_features))
        self.register_buffer("scale", torch.ones(()))

    def set_input_scaling(self, x: Tensor) -> None:
        """Centre on the mean of ``x`` and divide by its overall standard deviation."""
        check_features("MLP", "x", x)
        with torch.no_grad():
            shift = x.mean(0)
            scale = (x - shift).square().mean().sqrt()
            if not bool(torch.isfinite(scale)):       # |x| beyond ~1e19 overflows float32 squares
                x64 = x.double()
                shift = x64.mean(0)
                scale = (x64 - shift).abs().max() * ((x64 - shift) / (x64 - shift).abs().max()).square().mean().sqrt()
            self.shift.copy_(shift)
            self.scale.copy_(scale.clamp_min(1e-12))

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.in_features:
            raise fail("MLP", "x", f"have shape (n, {self.in_features})", x)
        h = (x - self.shift) / self.scale
        if torch.is_grad_enabled():
            return self.net(h)
        for layer in self.net:               # inference: the same layers, SiLU in place (no copies)
            h = torch.nn.functional.silu(h, inplace=True) if isinstance(layer, nn.SiLU) else layer(h)
        return h

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"
