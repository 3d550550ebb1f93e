"""Clustering at scale and image clustering with ``device="cuda"``: the GPU check of both.

CI has no GPU, so this script is how the CUDA paths of ``Clustering`` (the large-batch training, the
kNN graph, ``n_clusters="auto"``, a million points into 1,000 groups) and of ``ImageClustering``
(two-stage, SCAN, IIC) are run. The data and settings are those of ``benchmarks/clustering_scale.py``
and ``benchmarks/image_clustering.py`` (their CPU tables are the comparison); every fit here runs with
``device="cuda"`` in this one process, k-Means and MiniBatchKMeans on the CPU beside them. Each row is
appended to a JSON-lines file when it ends, so a run stopped at its time limit keeps what finished;
tasks not started within ``--minutes`` are listed as not run.

    python benchmarks/scale_cuda.py --out DIR --minutes 6      # on the GPU machine
    python benchmarks/scale_cuda.py --report benchmarks/results/scale_cuda.jsonl --remark "..."
                                                               # section scale_cuda of docs/benchmarks.md
    python benchmarks/scale_cuda.py --out /tmp/x --quick --device cpu   # small: a check that everything runs
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
import traceback
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import clustering_scale as scale  # noqa: E402
import image_clustering as images  # noqa: E402
from _report import machine, write_section  # noqa: E402

from icontorch.clustering import Clustering  # noqa: E402
from icontorch.metrics import clustering_scores  # noqa: E402


def _row(data, method, y, labels, seconds, **extra):
    s = clustering_scores(y, np.asarray(labels))
    return dict(data=data, method=method, acc=s["accuracy"], nmi=s["nmi"], s=seconds, **extra)


def _gpu_peak(device):
    return torch.cuda.max_memory_allocated() / 2 ** 30 if device.startswith("cuda") else None


def image_task(name, quick, device):
    """One seed of ``image_clustering.run`` (stage 1, two-stage defaults and paper recipe, SCAN, k-Means),
    IIC on digits only (MNIST's IIC: its own task, last)."""
    x, y = images.digits() if name == "digits" else images.mnist()
    if quick:
        x, y = x[:300], y[:300]
    args = SimpleNamespace(default_clustering=False, skip_iic=name != "digits", device=device)
    rows = images.run(name, x, y, 0, quick, False, args)
    out = []
    for method, r in rows.items():
        if method == images.STAGE1:
            out.append(dict(data=name, method=method, s=r["s"]))
        else:
            out.append(dict(data=name, method=method, acc=r["acc"], nmi=r["nmi"], s=r["s"]))
    return out


def iic_task(name, quick, device):
    x, y = images.mnist()
    if quick:
        x, y = x[:300], y[:300]
    r = images.iic_row(x, y, 0, images.settings(name, quick), device)
    return [dict(data=name, method=images.IIC, acc=r["acc"], nmi=r["nmi"], s=r["s"])]


def pixels_task(quick, device):
    """MNIST-70k pixels: Clustering's defaults (the exact kNN on the GPU), ``n_clusters="auto"``, k-Means."""
    from sklearn.cluster import KMeans

    x, y = scale.load_mnist()
    if quick:
        x, y = x[:2000], y[:2000]
    out = []
    for method, make in (("Clustering (defaults)", lambda: Clustering(10, random_state=0, device=device)),
                         ('Clustering (n_clusters="auto")', lambda: Clustering("auto", random_state=0,
                                                                                device=device))):
        start = time.perf_counter()
        model = make().fit(x)
        out.append(_row("mnist70k pixels", method, y, model.labels_, time.perf_counter() - start,
                        k=model.n_clusters_))
    start = time.perf_counter()
    labels = KMeans(10, random_state=0).fit_predict(x)
    out.append(_row("mnist70k pixels", "KMeans (CPU)", y, labels, time.perf_counter() - start, k=10))
    return out


def million_task(quick, device):
    """Blobs of 10^6 x 128 into 1,000 groups: Clustering's defaults against MiniBatchKMeans."""
    from sklearn.cluster import MiniBatchKMeans

    n, k = (20_000, 50) if quick else (1_000_000, 1_000)
    x, y = scale.mixture(n, 128, k)
    start = time.perf_counter()
    model = Clustering(k, random_state=0, device=device).fit(x)
    out = [_row(f"blobs {n:,} x 128, K = {k:,}", "Clustering (defaults)", y, model.labels_,
                time.perf_counter() - start, k=model.n_clusters_)]
    start = time.perf_counter()
    labels = MiniBatchKMeans(k, batch_size=4096, n_init=3, random_state=0).fit_predict(x)
    out.append(_row(f"blobs {n:,} x 128, K = {k:,}", "MiniBatchKMeans (CPU)", y, labels,
                    time.perf_counter() - start, k=len(set(labels.tolist()))))
    return out


def measure(args) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    store = out / "scale_cuda.jsonl"
    tasks = [("digits images", lambda: image_task("digits", args.quick, args.device)),
             ("MNIST-70k pixels", lambda: pixels_task(args.quick, args.device)),
             ("MNIST-70k images", lambda: image_task("mnist70k", args.quick, args.device)),
             ("a million blobs", lambda: million_task(args.quick, args.device)),
             ("MNIST-70k IIC", lambda: iic_task("mnist70k", args.quick, args.device))]
    if args.tasks:
        tasks = [t for t in tasks if t[0] in args.tasks]
    started = time.perf_counter()
    with store.open("a") as f:
        f.write(json.dumps(dict(machine=machine(), device=args.device, gpu=torch.cuda.get_device_name()
                                if args.device.startswith("cuda") else None, started=time.time())) + "\n")
    for task, fn in tasks:
        if time.perf_counter() - started > 60 * args.minutes:
            rows = [dict(task=task, not_run=True)]
        else:
            if args.device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            try:
                rows = [dict(r, task=task) for r in fn()]
                rows.append(dict(task=task, done=True, s=time.perf_counter() - start, gpu_gib=_gpu_peak(args.device)))
            except Exception:                   # a broken path is a result too: record it, go on
                rows = [dict(task=task, error=traceback.format_exc()[-3000:])]
        rows[-1]["rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
        with store.open("a") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
        print(json.dumps(rows, indent=None)[:2000], flush=True)


def report(path: Path, remarks) -> str:
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    head = lines[0]
    table = ["| task | data | method | Hungarian accuracy | NMI | K found | time (s) |",
             "|---|---|---|---|---|---|---|"]
    notes = []
    for r in lines[1:]:
        if r.get("not_run"):
            notes.append(f"* {r['task']}: not run (the time limit of the run)")
        elif "error" in r:
            notes.append(f"* {r['task']}: failed: `{r['error'].strip().splitlines()[-1]}`")
        elif r.get("done"):
            gpu = "" if r.get("gpu_gib") is None else f", peak GPU memory {r['gpu_gib']:.2f} GiB"
            notes.append(f"* {r['task']}: finished in {r['s']:.0f} s{gpu}")
        elif "acc" in r:
            table.append(f"| {r['task']} | {r['data']} | {r['method']} | {r['acc']:.3f} | {r['nmi']:.3f} | "
                         f"{r.get('k', '')} | {r['s']:.1f} |")
        else:
            table.append(f"| {r['task']} | {r['data']} | {r['method']} | | | | {r['s']:.1f} |")
    return "\n".join([
        "## Clustering at scale and image clustering on CUDA (`benchmarks/scale_cuda.py`)", "",
        f"Machine: {head['machine']}, GPU {head['gpu']}. Written by `benchmarks/scale_cuda.py` (`--out DIR` on the "
        "GPU machine, then `--report` with the results file to write this section; the commands and their limits "
        "are in the notes). Every icontorch fit with "
        "`device=\"cuda\"`, seed 0, the settings of the CPU sections (clustering_scale, clustering_million, "
        "image_clustering), which are the comparison; k-Means and MiniBatchKMeans on the CPU. A two-stage row's "
        "time is its clustering stage alone (stage 1 is its own row).", ""] + table + [""] + notes
        + [f"* {r}" for r in remarks])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="folder of the JSON-lines results")
    parser.add_argument("--report", help="a results file: write the doc section from it")
    parser.add_argument("--remark", action="append", default=[], help="a line for the section's notes")
    parser.add_argument("--minutes", type=float, default=6.0, help="tasks not started by then are not run")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--tasks", nargs="*", help="these tasks alone (by name, e.g. 'a million blobs')")
    args = parser.parse_args()
    if args.report:
        md = report(Path(args.report), args.remark)
        print(md)
        write_section("scale_cuda", md)
        return 0
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return 1
    torch.set_num_threads(1)
    measure(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
