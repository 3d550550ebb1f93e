"""SimCLR on the bundled digits with DistributedDataParallel and the gathered I-Con loss.

Every rank encodes its own shard of each batch; ``ICon(..., gather=True)`` scores the local views
against the views of all ranks (with gradient), so the loss and the applied gradient are those of
one process on the whole batch. The same file runs unchanged under torchrun or alone:

    torchrun --nproc_per_node=2 examples/torchrun_simclr.py
    python examples/torchrun_simclr.py

Views are made by noise and random pixel dropout; the item id of a view is its index in the data
set, which is unique across ranks, as positive-pair ids must be. At the end, rank 0 prints the
10-NN accuracy of the learned embedding (train on 3/4 of the digits, test on the rest).
"""

from __future__ import annotations

import os
import tempfile

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import icontorch as ic

EPOCHS, BATCH_PER_RANK, TEMPERATURE = 30, 128, 0.2


def setup() -> tuple:
    if "RANK" in os.environ:  # started by torchrun: it set RANK, WORLD_SIZE, MASTER_ADDR, ...
        dist.init_process_group("gloo")
    else:  # a single process: a group of one, so that the code below is the same
        init_file = os.path.join(tempfile.mkdtemp(), "init")
        dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=0, world_size=1)
    return dist.get_rank(), dist.get_world_size()


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    keep = torch.rand(x.shape, generator=generator) > 0.25
    return x * keep + 0.3 * torch.randn(x.shape, generator=generator)


def main() -> None:
    from sklearn.datasets import load_digits
    from sklearn.neighbors import KNeighborsClassifier

    rank, world = setup()
    torch.manual_seed(0)  # the same initial weights on every rank (DDP also broadcasts them)
    digits = load_digits()
    x_all = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    y_all = torch.tensor(digits.target)
    n = x_all.shape[0]

    encoder = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 32))
    model = DistributedDataParallel(encoder)
    loss_fn = ic.methods.simclr(TEMPERATURE, gather=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    views = torch.Generator().manual_seed(100 + rank)  # each rank draws its own augmentations

    global_batch = BATCH_PER_RANK * world
    for epoch in range(EPOCHS):
        order = torch.randperm(n, generator=torch.Generator().manual_seed(epoch))  # same on all ranks
        total, steps = torch.zeros(1), 0
        for start in range(0, n - global_batch + 1, global_batch):
            idx = order[start:start + global_batch][rank::world]  # this rank's shard
            x = x_all[idx]
            z = model(torch.cat([augment(x, views), augment(x, views)]))
            loss = loss_fn(z, torch.cat([idx, idx]))  # item ids: data-set indices, unique over ranks
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.detach()
            steps += 1
        dist.all_reduce(total)  # the mean over ranks is the loss of the whole batch
        if rank == 0 and (epoch % 10 == 9 or epoch == 0):
            print(f"epoch {epoch + 1:>2}: loss {float(total) / world / steps:.4f}", flush=True)

    if rank == 0:
        with torch.no_grad():
            emb = encoder(x_all).numpy()
        split = 3 * n // 4
        knn = KNeighborsClassifier(10).fit(emb[:split], y_all[:split].numpy())
        print(f"{world} rank(s), 10-NN accuracy of the embedding: {knn.score(emb[split:], y_all[split:].numpy()):.3f}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
