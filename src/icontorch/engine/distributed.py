"""Candidates from every rank: a gradient-carrying all-gather for ``ICon(..., gather=True)``.

With W ranks holding local batches ``z_r`` (n_r anchors each), rank r scores its own anchors
against the candidates of all ranks, concatenated in rank order: the rows of the global (N, N)
problem that belong to it, at memory O(n_r N) (or O(tile^2) when tiled). The gather keeps the
gradient: its backward sums, over ranks, the gradient every rank sends to each gathered block
(an all-reduce), so that the gradient of z_r includes what z_r contributes as a candidate of
the other ranks.

Reduction semantics (DDP convention). With K the number of anchors kept over all ranks and
``S_r`` the sum of rank r's kept rows, rank r returns ``W S_r / K`` (``"mean"``) or ``W S_r``
(``"sum"``). Hence

* the mean of the W returned values is the single-process loss on the concatenated batch (for
  equal batches, each rank's value is simply the mean over its own anchors);
* ``z_r.grad`` after ``backward()`` on every rank is W times the single-process gradient of
  z_r, and DistributedDataParallel, which averages parameter gradients over ranks, applies
  exactly the single-process gradient of the parameters.

Every rank must call the loss and its backward (they contain collectives). Ids in ``target``
must mean the same thing on every rank: positive-pair item ids must be globally unique (for
example ``arange(B) + rank * B``), class labels are global already. Local batches may differ
in size.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch
import torch.distributed as dist
from torch import Tensor

from .._validation import IConError, preview

__all__ = ["check_initialized", "gather", "gather_with_grad", "reduce_rows"]


def check_initialized(who: str, name: str) -> None:
    """Raise IConError unless the default torch.distributed process group is initialised."""
    if not (dist.is_available() and dist.is_initialized()):
        raise IConError(f"{who}: {name}=True needs an initialised torch.distributed process group "
                        f"(torchrun, or torch.distributed.init_process_group); got none.")


def _sizes(n: int, device: torch.device) -> List[int]:
    local = torch.tensor([n], dtype=torch.long, device=device)
    sizes = [torch.zeros_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, local)
    return [int(s) for s in sizes]


def _all_gather(x: Tensor, sizes: List[int]) -> Tensor:
    """Concatenate every rank's ``x`` along dim 0 (padded to the largest batch for the collective)."""
    width = max(sizes)
    padded = x.contiguous()
    if x.shape[0] < width:
        padded = torch.cat([padded, padded.new_zeros((width - x.shape[0],) + tuple(x.shape[1:]))])
    blocks = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(blocks, padded)
    return torch.cat([block[:size] for block, size in zip(blocks, sizes)])


class _GatherWithGrad(torch.autograd.Function):
    """All-gather whose backward all-reduces the gradient and keeps this rank's block."""

    @staticmethod
    def forward(ctx, x: Tensor, sizes: List[int]) -> Tensor:  # type: ignore[override]
        rank = dist.get_rank()
        ctx.start, ctx.stop = sum(sizes[:rank]), sum(sizes[:rank + 1])
        return _all_gather(x, sizes)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.start:ctx.stop], None


def gather_with_grad(x: Tensor) -> Tuple[Tensor, int]:
    """Every rank's ``x`` concatenated in rank order, with gradient, and this rank's offset in it."""
    check_initialized("gather_with_grad", "gather")
    sizes = _sizes(x.shape[0], x.device)
    return _GatherWithGrad.apply(x, sizes), sum(sizes[:dist.get_rank()])


def gather(x: Optional[Tensor], name: str) -> Optional[Tensor]:
    """Every rank's ``x`` concatenated in rank order, without gradient (ids, labels, features)."""
    if x is None or not isinstance(x, Tensor) or x.dim() == 0:
        return x  # left for the neighbourhood to reject with its own message
    with torch.no_grad():
        return _all_gather(x.detach(), _sizes(x.shape[0], x.device))


def reduce_rows(rows: Tensor, empty: Tensor, reduction: str, skip_empty_rows: bool) -> Tensor:
    """The local loss of a gathered ICon (module docstring): ``W S_r / K``, ``W S_r`` or the rows."""
    world = dist.get_world_size()
    counts = torch.stack([empty.sum(), (~empty).sum()]).to(torch.long)
    dist.all_reduce(counts, op=dist.ReduceOp.SUM)  # every rank sees the same counts, so all raise
    n_empty, n_kept = int(counts[0]), int(counts[1])
    if n_empty and not skip_empty_rows:
        shown = preview(empty.nonzero().flatten().tolist())
        raise IConError(f"ICon: every row of p must carry mass, but {n_empty} of {n_empty + n_kept} "
                        f"anchors over the {world} ranks have no neighbour under p (here: [{shown}]); "
                        f"pass skip_empty_rows=True to leave them out of the loss.")
    if reduction == "none":
        return rows
    if n_kept == 0:
        raise IConError("ICon: no anchor has a neighbour under p, so the loss is undefined; "
                        f"got {n_empty} anchors over the {world} ranks, all with empty rows.")
    total = rows[~empty].sum() * world
    return total / n_kept if reduction == "mean" else total
