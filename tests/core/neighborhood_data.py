"""Seeded inputs and numpy oracles shared by the neighbourhood tests (not a test module)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

F64 = torch.float64
NEG_INF = float("-inf")
N_SELF = 8   # anchors when they are their own candidates
N = 7        # anchors when candidates are given
M = 5        # candidates (N != M on purpose)
D = 3        # feature dimension
C = 4        # clusters / classes


# --------------------------------------------------------------------------------------------
# Inputs (all seeded)
# --------------------------------------------------------------------------------------------

def feats(n: int, dtype: torch.dtype = F64, seed: int = 0, d: int = D) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=F64).to(dtype)


def feats3(n: int, m: int, dtype: torch.dtype = F64, seed: int = 2) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, m, D, generator=g, dtype=F64).to(dtype)


def log_assign(n: int, dtype: torch.dtype = F64, seed: int = 0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.log_softmax(2.0 * torch.randn(n, C, generator=g, dtype=F64), dim=1).to(dtype)


def labels(n: int, k: int = 3) -> Tensor:
    """``0, 1, .., k-1, 0, 1, ..``: with n >= 2k every label occurs at least twice."""
    return torch.arange(n) % k


N_NODES = 10
_g = torch.Generator().manual_seed(5)
_W = torch.rand(N_NODES, N_NODES, generator=_g, dtype=F64) + 0.1
W_DENSE = (_W + _W.T) / 2  # positive everywhere, self-loops included
_ii, _jj = torch.meshgrid(torch.arange(N_NODES), torch.arange(N_NODES), indexing="ij")
W_SPARSE_DENSE = W_DENSE.masked_fill((_ii - _jj).abs() == 3, 0.0)  # a few missing edges
W_SPARSE = W_SPARSE_DENSE.to_sparse_coo()
SELF_NODES = torch.tensor([3, 0, 7, 1, 9, 4, 2, 8])
PAIR_NODES = (torch.tensor([5, 1, 8, 0, 6, 3, 9]), torch.tensor([2, 7, 4, 0, 1]))

DEGREE = torch.tensor([1.0, 2.5, 0.5, 3.0, 1.5], dtype=F64)  # M nodes


def _precomputed_square() -> Tensor:
    g = torch.Generator().manual_seed(7)
    logits = torch.randn(N_SELF, N_SELF, generator=g, dtype=F64)
    logits.fill_diagonal_(NEG_INF)
    return torch.log_softmax(logits, dim=1)


def _precomputed_rect() -> Tensor:
    g = torch.Generator().manual_seed(8)
    return torch.log_softmax(torch.randn(N, M, generator=g, dtype=F64), dim=1)


PRE_SQUARE = _precomputed_square()
PRE_RECT = _precomputed_rect()


def np_similarity(metric: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    if metric == "squared_euclidean":
        return -((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    if metric == "cosine":
        xn = x / np.linalg.norm(x, axis=1, keepdims=True)
        yn = y / np.linalg.norm(y, axis=1, keepdims=True)
        return xn @ yn.T
    return x @ y.T


def np_row_normalise(w: np.ndarray) -> np.ndarray:
    return w / w.sum(axis=1, keepdims=True)


def np_sq_dist(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
