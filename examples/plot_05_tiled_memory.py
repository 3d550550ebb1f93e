"""
# Memory of the tiled loss as the batch grows

The B x B logits are what usually limits contrastive batches. With `tile_size`, `ICon` computes
the same loss over blocks of anchors x candidates with an online log-sum-exp and recomputes each
block in backward, so what it keeps for backward grows like B d instead of B². Here the memory
autograd holds between forward and backward is counted (every tensor saved for backward, through
`torch.autograd.graph.saved_tensors_hooks`) for SimCLR, dense and tiled, on random embeddings.
"""

import matplotlib.pyplot as plt
import torch

import icontorch as ic


def saved_bytes(loss_fn, z, item):
    """Loss value and bytes of the distinct tensors autograd saved for backward."""
    storages = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = loss_fn(z, target=item)
    loss.backward()
    return loss.item(), sum(storages.values())


# %%
# SimCLR on B embeddings of 128 dimensions (B / 2 items, two views each), dense and in tiles of
# 512 anchors x 512 candidates. The two compute the same loss.

batches = [512, 1024, 2048, 4096, 8192]
dense = ic.methods.simclr(0.5, tile_size=None)
tiled = ic.methods.simclr(0.5, tile_size=512)
memory = {"dense": [], "tiled (512)": []}
for b in batches:
    z = torch.randn(b, 128, generator=torch.Generator().manual_seed(b), requires_grad=True)
    item = torch.arange(b // 2).repeat(2)
    value_dense, bytes_dense = saved_bytes(dense, z, item)
    value_tiled, bytes_tiled = saved_bytes(tiled, z, item)
    assert abs(value_dense - value_tiled) < 1e-4 * abs(value_dense)   # the same loss
    memory["dense"].append(bytes_dense / 2**20)
    memory["tiled (512)"].append(bytes_tiled / 2**20)
    print(f"B={b:5d}: loss {value_dense:.4f}, saved for backward: dense {bytes_dense / 2**20:7.1f} MiB, "
          f"tiled {bytes_tiled / 2**20:5.1f} MiB")

fig, ax = plt.subplots(figsize=(6, 4))
for name, values in memory.items():
    ax.loglog(batches, values, "o-", label=name)
ax.loglog(batches, [4 * b * b / 2**20 for b in batches], ":", color="grey", label="one B x B float32 matrix")
ax.set_xlabel("batch size B")
ax.set_ylabel("MiB saved for backward")
ax.set_title("SimCLR loss, 128-d embeddings")
ax.legend()
fig.tight_layout()
plt.show()

# %%
# The benchmark `benchmarks/loss_speed.py` measures the whole process's peak memory and the time,
# against plain NT-Xent and pytorch-metric-learning (see the Benchmarks page).
