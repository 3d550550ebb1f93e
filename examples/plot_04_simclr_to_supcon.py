"""
# SimCLR -> SupCon by changing p

SimCLR's p is "the other view of the same item" (`PositivePairs`, Thm 3); SupCon's is "any item
with the same label" (`SameLabel`, Thm 6). q, the cosine softmax over the batch, stays the same.
Here a small network is trained on the digits with each, on the same augmented views, and its
embedding of held-out digits is drawn and probed.
"""

import matplotlib.pyplot as plt
import torch
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.model_selection import train_test_split

import icontorch as ic
from icontorch.probes import knn_probe_accuracy

X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(torch.tensor(X / 16, dtype=torch.float32), torch.tensor(y),
                                                    test_size=0.3, random_state=0)


def augment(x, generator=None):
    """Two cheap views of a digit: pixel noise and dropped pixels."""
    noise = 0.2 * torch.randn(x.shape, generator=generator)
    keep = (torch.rand(x.shape, generator=generator) > 0.2).float()
    return (x + noise) * keep


# %%
# One q, two p. `ic.methods.simclr` and `ic.methods.supcon` are these same two objects.

q = ic.Gaussian(temperature=0.2, metric="cosine")
losses = {"SimCLR: p = PositivePairs()": ic.ICon(p=ic.PositivePairs(), q=q, divergence="cross_entropy"),
          "SupCon: p = SameLabel()": ic.ICon(p=ic.SameLabel(), q=q, divergence="cross_entropy",
                                             skip_empty_rows=True)}

fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
for ax, (name, loss_fn) in zip(axes, losses.items()):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 32))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    for step in range(300):
        index = torch.randint(len(X_train), (128,), generator=generator)
        views = torch.cat([augment(X_train[index], generator), augment(X_train[index], generator)])
        item = index.repeat(2)                              # the layout PositivePairs reads
        # SimCLR's target: which item a view came from; SupCon's: its label
        target = item if isinstance(loss_fn.p, ic.PositivePairs) else y_train[item]
        loss = loss_fn(model(views), target=target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        z_train = torch.nn.functional.normalize(model(X_train), dim=1)
        z_test = torch.nn.functional.normalize(model(X_test), dim=1)
    accuracy = knn_probe_accuracy(z_train, y_train, z_test, y_test, n_neighbors=10)
    xy = PCA(2, random_state=0).fit_transform(z_test.numpy())
    ax.scatter(xy[:, 0], xy[:, 1], c=y_test, cmap="tab10", s=6)
    ax.set_title(f"{name}\nheld-out 10-NN accuracy {accuracy:.3f}")
    ax.set_xticks([])
    ax.set_yticks([])
fig.suptitle("Held-out digits, first two principal components of the learned (normalised) embedding")
fig.tight_layout()
plt.show()

# %%
# With labels in p, each class is pulled together as a whole, and the classes separate in the
# first two components already; SimCLR only learns what survives the augmentation.
