"""
# Walks vs plain kNN in clustering

The p of Debiased InfoNCE Clustering is uniform over each point's neighbours. With
`walk_length=0` they are its k nearest neighbours; with walks, every point reached in up to
`walk_length + 1` steps on the (mutually pruned) kNN graph counts too. More neighbours of the same
class make p closer to "same class", and the clusters follow.
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits

import icontorch as ic

X, y = load_digits(return_X_y=True)

# %%
# Three graphs, the same heads and training otherwise.

rows = []
for walk_length in (0, 2, 4):
    model = ic.Clustering(n_clusters=10, walk_length=walk_length, epochs=10, n_heads=3, random_state=0)
    labels = model.fit_predict(X)
    scores = ic.metrics.clustering_scores(y, labels)
    rows.append((walk_length, scores))
    print(f"walk_length={walk_length}: accuracy {scores['accuracy']:.3f}, NMI {scores['nmi']:.3f}")

# %%
# Accuracy and NMI, and the contingency table of plain kNN against the walks of 4
# (rows: true digits, columns: clusters in the order of their matched digit).

fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), gridspec_kw={"width_ratios": [1, 1.1, 1.1]})
names = [f"walks of {w}" if w else "plain kNN" for w, _ in rows]
width = 0.38
positions = np.arange(len(rows))
axes[0].bar(positions - width / 2, [s["accuracy"] for _, s in rows], width, label="accuracy")
axes[0].bar(positions + width / 2, [s["nmi"] for _, s in rows], width, label="NMI")
axes[0].set_xticks(positions, names)
axes[0].set_ylim(0, 1)
axes[0].legend(loc="lower right")
for ax, (walk_length, scores), name in zip(axes[1:], (rows[0], rows[-1]), (names[0], names[-1])):
    clusters = list(scores["clusters"])
    order = sorted(range(len(clusters)), key=lambda k: scores["mapping"].get(clusters[k], len(clusters)))
    table = scores["contingency"][order].T                    # digits x clusters
    ax.imshow(table, cmap="Blues")
    ax.set_title(f"{name}: accuracy {scores['accuracy']:.2f}")
    ax.set_xlabel("cluster")
    ax.set_ylabel("digit")
fig.tight_layout()
plt.show()
