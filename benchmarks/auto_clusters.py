"""``n_clusters="auto"`` opened up: the number of groups K that the agglomeration of
``icontorch.clustering.auto`` finds, as a function of its debiasing weight a, on the dev data its
rule ``a = debiasing(N)`` was chosen on and on the data reported in section clustering_scale.

For each data set and seed: p's neighbour graph exactly as ``Clustering("auto")`` builds it (the
faiss kNN beyond 20,000 points, as in section clustering_scale), the same random pieces, then the
agglomeration (:func:`icontorch.clustering.auto.merge_pieces`) at every a of a fixed grid and at
``debiasing(N)``. K counts the groups of at least ``MIN_GROUP_SIZE`` points, as the estimator does.
The labels are used only to describe the groups (their Hungarian accuracy, unassigned points counted
as errors, and on MNIST-70k the classes inside each group); nothing here chooses a setting.

    python benchmarks/auto_clusters.py           # section clustering_auto of docs/benchmarks.md
    python benchmarks/auto_clusters.py --quick   # digits only, printed, nothing written
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import List, Tuple

import numpy as np
import torch
from sklearn.datasets import load_digits

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _report import machine, write_section  # noqa: E402
from clustering_scale import load_mnist, mixture  # noqa: E402

from icontorch.clustering import Clustering, auto  # noqa: E402
from icontorch.clustering.graph import NeighborGraph  # noqa: E402
from icontorch.clustering.specs import METHOD_SPECS, check_graph_settings  # noqa: E402
from icontorch.metrics import clustering_scores  # noqa: E402

GRID = (0.1, 0.03, 0.01, 0.003, 0.001, 3e-4, 1e-4, 3e-5, 1e-5)
"""The debiasing weights a of the table's columns."""
EXACT_UP_TO = 20_000
"""Data sets of more points use the faiss kNN (as the MNIST-70k and blob rows of clustering_scale)."""


def neighbour_graph(x: np.ndarray, seed: int) -> NeighborGraph:
    """p's graph as ``Clustering("auto").fit`` builds it (symmetrised where directed, as the estimate does)."""
    estimator = Clustering("auto", random_state=seed,
                           knn_backend="faiss" if len(x) > EXACT_UP_TO else "exact")
    spec = METHOD_SPECS[estimator.method]
    graph = spec.graph(torch.as_tensor(x), check_graph_settings("auto_clusters", estimator, len(x), spec))
    if not torch.equal(torch.bincount(graph.indices, minlength=graph.n_nodes), graph.degree):
        graph = graph.symmetrized()
    return graph


class Pieces:
    """The over-clustering of one graph and seed, merged at any debiasing weight."""

    def __init__(self, graph: NeighborGraph, seed: int) -> None:
        self.n = graph.n_nodes
        self.piece = auto.graph_pieces(graph, auto.overclustering(self.n), torch.Generator().manual_seed(seed))
        count = int(self.piece.max()) + 1
        self.sizes = torch.bincount(self.piece[self.piece >= 0], minlength=count)
        self.mass = auto.piece_mass(graph, self.piece, count)

    def groups(self, a: float) -> Tuple[int, np.ndarray]:
        """K and the (N,) group of every point (-1: a piece left out or a group under MIN_GROUP_SIZE)."""
        group = auto.merge_pieces(self.mass, self.sizes, self.n, a)
        label = torch.where(self.piece >= 0, group[self.piece.clamp(min=0)], torch.full_like(self.piece, -1))
        label = label.cpu().numpy()
        counts = np.bincount(label[label >= 0])
        label = np.where((label >= 0) & (counts[np.maximum(label, 0)] >= auto.MIN_GROUP_SIZE), label, -1)
        return int((counts >= auto.MIN_GROUP_SIZE).sum()), label


def accuracy(y: np.ndarray, label: np.ndarray) -> float:
    """Hungarian accuracy of the groups over all N points, unassigned points (-1) counted as errors."""
    kept = label >= 0
    return clustering_scores(y[kept], label[kept])["accuracy"] * kept.mean() if kept.any() else 0.0


def composition(y: np.ndarray, label: np.ndarray) -> str:
    """Each group's size and the share of its largest class, largest group first."""
    parts = []
    for group in sorted(set(label[label >= 0].tolist()), key=lambda g: -(label == g).sum()):
        counts = np.bincount(y[label == group])
        parts.append(f"{counts.sum():,} ({counts.max() / counts.sum():.0%} {counts.argmax()})")
    return ", ".join(parts)


def data_sets(quick: bool) -> List[Tuple[str, np.ndarray, np.ndarray, int, str]]:
    """(name, X, y, seeds, role) of every row group."""
    x, y = load_digits(return_X_y=True)
    sets = [("digits (1,797)", x.astype(np.float32), y, 3, "dev")]
    if quick:
        return sets
    x_mnist, y_mnist = load_mnist()
    for n in (5000, 10000, 20000):
        sets.append((f"first {n:,} MNIST training digits", x_mnist[:n], y_mnist[:n], 3, "dev"))
    sets.append(("MNIST-70k (70,000)", x_mnist, y_mnist, 3, "reported"))
    for k in (10, 100):
        sets.append((f"blobs 100,000 x 64, K = {k}", *mixture(100_000, 64, k), 1, "reported"))
    return sets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="digits only; print, do not write the doc")
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    head = " | ".join(f"{a:g}" for a in GRID)
    lines = [f"| data (role) | seed | K at a = {head} | a = debiasing(N) | K there | accuracy of those groups |",
             "|---|---|" + "---|" * (len(GRID) + 3)]
    described = ""
    for name, x, y, seeds, role in data_sets(args.quick):
        for seed in range(seeds):
            pieces = Pieces(neighbour_graph(x, seed), seed)
            found = [pieces.groups(a)[0] for a in GRID]
            a_n = auto.debiasing(len(x))
            k_n, label = pieces.groups(a_n)
            line = (f"| {name} ({role}) | {seed} | " + " | ".join(map(str, found))
                    + f" | {a_n:.2g} | {k_n} | {accuracy(y, label):.3f} |")
            print(line, flush=True)
            lines.append(line)
            if name.startswith("MNIST-70k") and seed == 0:
                described = (f"MNIST-70k, seed 0, the {k_n} groups at a = {a_n:.2g} (points, and the share of "
                             f"the largest class in each): {composition(y, label)}; "
                             f"{int((label < 0).sum()):,} points in no group of {auto.MIN_GROUP_SIZE} or more.")
                print(described, flush=True)
    if args.quick:
        return
    text = (
        "## How `n_clusters=\"auto\"` finds K (`benchmarks/auto_clusters.py`)\n\n"
        f"Command: `python benchmarks/auto_clusters.py` (whole run {(time.perf_counter() - started) / 60:.1f} min). "
        f"Machine: {machine()}; {os.cpu_count()} cores.\n\n"
        "Each row: p's graph as `Clustering(\"auto\")` builds it (faiss kNN beyond 20,000 points), the same "
        "random pieces, merged at each debiasing weight a of the agglomeration (`icontorch.clustering.auto`); K "
        f"counts the groups of at least {auto.MIN_GROUP_SIZE} points. `debiasing(N)` = "
        "min(0.1, 0.05 (5,000 / N)^1.5) "
        "was chosen on the dev rows; the others are the data sets of section clustering_scale. The accuracy "
        "column scores the groups themselves (Hungarian, over all N points, unassigned points counted as "
        "errors), not the trained heads; labels describe, nothing here is chosen on them.\n\n"
        + "\n".join(lines) + ("\n\n" + described if described else ""))
    write_section("clustering_auto", text)


if __name__ == "__main__":
    main()
