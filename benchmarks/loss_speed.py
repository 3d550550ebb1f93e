"""Loss speed and memory: icontorch (fused dense, tiled) against plain NT-Xent and the peers.

Forward + backward of one loss call on B random 128-d embeddings (B embeddings = B/2 positive
pairs for SimCLR / NT-Xent; 10 classes for SupCon; for the debiased kNN loss, p is
``mix_uniform(KNN(10), 0.2)`` over separate 64-d features and q is the cosine Gaussian).

Every (implementation, B) runs in a fresh subprocess, so that one run's memory cannot hide in
another's. Time: the best of a few calls (7 for B <= 1,024, 3 for B = 4,096, 2 for 8,192, then
1; after one warm-up call for B <= 4,096; pytorch-metric-learning's NT-Xent: 2 calls). Memory: the
growth of the process's peak resident set during those calls (Linux ``VmHWM``, reset through
``/proc/self/clear_refs`` just before the first call, minus ``VmRSS`` at that moment): all that
the loss made the process hold, tensors and allocator caches alike. Each run also reports its
loss value, so that the implementations of one loss are seen to compute the same number.

    python benchmarks/loss_speed.py            # the full table, written to docs/benchmarks.md
    python benchmarks/loss_speed.py --quick    # B in {512, 1024}: a check that everything runs
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

D, TILE, CLASSES, K, ALPHA = 128, 2048, 10, 10, 0.2
T_SIMCLR, T_SUPCON = 0.5, 0.1
CAP_GIB = 16.0  # configurations estimated above this many GiB are not run
IMPLS = {  # name: (loss, what it is)
    "ce": ("SimCLR", "plain `F.cross_entropy` NT-Xent on the B x B logits"),
    "icon_dense": ("SimCLR", "icontorch `methods.simclr`, `tile_size=None` (fused dense)"),
    "icon_tiled": ("SimCLR", f"icontorch `methods.simclr`, `tile_size={TILE}`"),
    "pml_ntxent": ("SimCLR", "pytorch-metric-learning `NTXentLoss`"),
    "icon_supcon_dense": ("SupCon", "icontorch `methods.supcon`, `tile_size=None`"),
    "icon_supcon_tiled": ("SupCon", f"icontorch `methods.supcon`, `tile_size={TILE}`"),
    "pml_supcon": ("SupCon", "pytorch-metric-learning `SupConLoss`"),
    "icon_knn_dense": ("debiased kNN", "icontorch, p = `mix_uniform(KNN(10), 0.2)`, `tile_size=None`"),
    "icon_knn_tiled": ("debiased kNN", f"icontorch, p = `mix_uniform(KNN(10), 0.2)`, `tile_size={TILE}`"),
}


def estimated_gib(impl: str, b: int) -> float:
    """A rough need, to skip what cannot fit: (B x B) float32 matrices held at the peak."""
    square = b * b * 4 / 2 ** 30
    if impl == "pml_ntxent":  # O(B^3): an (anchors x positive pairs x negative pairs) mask
        return 18.0 * (b / 1024) ** 3  # 18 GB at B = 1024 (DESIGN section 5)
    if impl == "pml_supcon":
        return 12.0 * (b / 16384) ** 2  # 12 GB at B = 16384 (DESIGN section 5)
    if impl == "ce":
        return 5 * square
    if impl.endswith("_dense"):
        return 3 * square
    return 1.0


def _inputs(b: int):
    g = torch.Generator().manual_seed(0)
    z = torch.randn(b, D, generator=g)
    items = torch.arange(b // 2).repeat(2)
    labels = torch.randperm(b, generator=g) % CLASSES
    features = torch.randn(b, 64, generator=g)
    return z, items, labels, features


def _loss_fn(impl: str, b: int):
    """A function of the embeddings (a leaf tensor) returning the scalar loss."""
    import icontorch as ic
    z, items, labels, features = _inputs(b)
    if impl == "ce":
        partner = (torch.arange(b) + b // 2) % b

        def ce(x):
            zn = F.normalize(x, dim=1)
            logits = (zn @ zn.T / T_SIMCLR).masked_fill(torch.eye(b, dtype=torch.bool), float("-inf"))
            return F.cross_entropy(logits, partner)
        return z, ce
    if impl == "pml_ntxent":
        from pytorch_metric_learning.losses import NTXentLoss
        loss = NTXentLoss(temperature=T_SIMCLR)
        return z, lambda x: loss(x, items)
    if impl == "pml_supcon":
        from pytorch_metric_learning.losses import SupConLoss
        loss = SupConLoss(temperature=T_SUPCON)
        return z, lambda x: loss(x, labels)
    tile = TILE if impl.endswith("_tiled") else None
    if impl.startswith("icon_supcon"):
        loss = ic.methods.supcon(T_SUPCON)
        loss.tile_size = tile
        return z, lambda x: loss(x, labels)
    if impl.startswith("icon_knn"):
        loss = ic.ICon(ic.mix_uniform(ic.KNN(K, metric="cosine"), ALPHA),
                       ic.Gaussian(temperature=T_SIMCLR, metric="cosine"), tile_size=tile)
        return z, lambda x: loss(x, features)
    loss = ic.methods.simclr(T_SIMCLR)
    loss.tile_size = tile
    return z, lambda x: loss(x, items)


def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])  # kB
    raise RuntimeError(key)


def worker(impl: str, b: int) -> dict:
    z, fn = _loss_fn(impl, b)
    warmup = 1 if b <= 4096 else 0
    reps = 7 if b <= 1024 else 3 if b <= 4096 else 2 if b <= 8192 else 1
    if impl == "pml_ntxent":  # seconds per call already at B = 512
        warmup, reps = 0, 2
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak resident set (VmHWM)
    base = _status("VmRSS")
    times, value = [], None
    for call in range(warmup + reps):
        x = z.clone().requires_grad_()
        start = time.perf_counter()
        out = fn(x)
        out.backward()
        elapsed = time.perf_counter() - start
        value = float(out.detach())
        if call >= warmup:
            times.append(elapsed)
        del out, x
    return {"time_s": min(times), "peak_mib": (_status("VmHWM") - base) / 1024, "value": value,
            "calls": reps}


def _available_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 2 ** 20
    return 0.0


def run(impl: str, b: int, threads: int, timeout: float) -> dict:
    need = estimated_gib(impl, b)
    if need > CAP_GIB:
        return {"skip": f"not run: needs about {need:.0f} GiB"}
    if need * 1.2 > _available_gib():
        return {"skip": f"not run: needs about {need:.0f} GiB, {_available_gib():.0f} GiB free"}
    cmd = [sys.executable, __file__, "--worker", impl, str(b), "--threads", str(threads)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"skip": f"stopped after {timeout:.0f} s"}
    if done.returncode != 0:
        return {"skip": f"failed: {done.stderr.strip().splitlines()[-1][:120]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _cell(result: dict, what: str) -> str:
    if "skip" in result:
        return "—"
    if what == "time":
        return f"{result['time_s']:.3f}"
    return f"{result['peak_mib']:,.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="B in {512, 1024} only, nothing written")
    parser.add_argument("--sizes", type=int, nargs="+", help="batch sizes to run (nothing written)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="torch threads per run (default: torch's default, %(default)s here)")
    parser.add_argument("--worker", nargs=2, metavar=("IMPL", "B"), help=argparse.SUPPRESS)
    parser.add_argument("--shared", action="store_true",
                        help="say in the report that other work ran on the machine meanwhile")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.worker:
        print(json.dumps(worker(args.worker[0], int(args.worker[1]))))
        return
    sizes = args.sizes or ([512, 1024] if args.quick else [512, 1024, 4096, 8192, 16384, 65536])
    plan = {b: list(IMPLS) for b in sizes}
    results = {}
    started = time.perf_counter()
    for b, impls in plan.items():
        for impl in impls:
            results[impl, b] = run(impl, b, args.threads, timeout=300)
            r = results[impl, b]
            shown = r.get("skip") or f"{r['time_s']:.3f} s, {r['peak_mib']:,.0f} MiB, loss {r['value']:.6f}"
            print(f"B={b:>6} {impl:<18} {shown}", flush=True)
    total = time.perf_counter() - started
    print(f"total {total:.0f} s")
    if not (args.quick or args.sizes):
        report(results, sizes, total, args)


def report(results: dict, sizes: list, total: float, args: argparse.Namespace) -> None:
    from _report import machine, write_section
    lines = ["## loss_speed: the I-Con loss against NT-Xent, SupCon and their peers", "",
             f"Machine: {machine()}. Command: `python benchmarks/loss_speed.py"
             f" --threads {args.threads}{' --shared' if args.shared else ''}` ({total / 60:.1f} min in all)."]
    if args.shared:
        lines += ["", "**The machine was shared with other jobs during this run**: times are "
                     "upper bounds and noisy; re-run on a quiet machine for clean figures."]
    lines.append("")
    for part in __doc__.split("\n\n")[1:3]:
        lines += [part.replace("\n", " ").replace("``", "`"), ""]
    lines += [
              "Forward + backward time in seconds (best of the calls made) / peak memory growth in MiB:", "",
              "| loss | implementation | " + " | ".join(f"B={b:,}" for b in sizes) + " |",
              "|---|---|" + "---|" * len(sizes)]
    for impl, (loss, what) in IMPLS.items():
        cells = []
        for b in sizes:
            r = results.get((impl, b), {"skip": "not planned"})
            cells.append("—" if "skip" in r else f"{_cell(r, 'time')} / {_cell(r, 'memory')}")
        lines.append(f"| {loss} | {what} | " + " | ".join(cells) + " |")
    lines += ["", "Not run (—):", ""]
    for (impl, b), r in results.items():
        if "skip" in r:
            lines.append(f"* {IMPLS[impl][1]}, B={b:,}: {r['skip']}.")
    lines += ["* lightly `NTXentLoss`: not run. lightly 1.6.0 requires torchvision (and "
              "pytorch_lightning), and no torchvision build imports beside this CPU torch.", ""]
    lines += _agreement(results, sizes) + _goals(results)
    write_section("loss_speed", "\n".join(lines))


def _agreement(results: dict, sizes: list) -> list:
    worst = 0.0
    for b in sizes:
        for group in (("ce", "icon_dense", "icon_tiled", "pml_ntxent"),
                      ("icon_supcon_dense", "icon_supcon_tiled", "pml_supcon"),
                      ("icon_knn_dense", "icon_knn_tiled")):
            values = [results[i, b]["value"] for i in group if "value" in results.get((i, b), {})]
            if len(values) > 1:
                worst = max(worst, (max(values) - min(values)) / abs(values[0]))
    return [f"The implementations of each loss agree on its value to {worst:.1e} (relative, float32).", ""]


def _goals(results: dict) -> list:
    def t(impl, b):
        return results.get((impl, b), {}).get("time_s")

    def m(impl, b):
        return results.get((impl, b), {}).get("peak_mib")
    out = ["Goals of the issue, read off this run:", ""]
    if t("icon_dense", 4096) and t("ce", 4096):
        out.append(f"* fused dense SimCLR / plain cross-entropy at B=4,096: "
                   f"{t('icon_dense', 4096) / t('ce', 4096):.2f}x the time (goal <= 1.1x).")
    if t("pml_supcon", 8192):
        for impl in ("icon_supcon_dense", "icon_supcon_tiled"):
            if t(impl, 8192):
                out.append(f"* `SupConLoss` / {impl} time at B=8,192: {t('pml_supcon', 8192) / t(impl, 8192):.1f}x "
                           f"(goal >= 3x).")
    if m("pml_supcon", 16384):
        for impl in ("icon_supcon_dense", "icon_supcon_tiled"):
            if m(impl, 16384):
                out.append(f"* {impl} / `SupConLoss` peak memory at B=16,384: "
                           f"{m(impl, 16384) / m('pml_supcon', 16384):.2f} (goal <= 0.25).")
    for impl in ("icon_tiled", "icon_knn_tiled"):
        if m(impl, 65536) is not None:
            out.append(f"* {impl} at B=65,536: {t(impl, 65536):.0f} s, peak {m(impl, 65536) / 1024:.2f} GiB "
                       f"(goal: completes under 4 GiB).")
    for dense, tiled in (("icon_dense", "icon_tiled"), ("icon_supcon_dense", "icon_supcon_tiled"),
                         ("icon_knn_dense", "icon_knn_tiled")):
        ratios = [f"{t(tiled, b) / t(dense, b):.2f}" for b in (4096, 8192, 16384) if t(tiled, b) and t(dense, b)]
        if ratios:
            out.append(f"* {tiled} / {dense} time at B=4,096 / 8,192 / 16,384: {' / '.join(ratios)} (goal <= 1.5).")
    growth = [(b, t("icon_tiled", b), m("icon_tiled", b)) for b in (4096, 8192, 16384, 65536)
              if t("icon_tiled", b)]
    if len(growth) > 1:
        per_pair = " / ".join(f"{time_s / b ** 2 * 1e9:.1f}" for b, time_s, _ in growth)
        memory = " / ".join(f"{peak:,.0f}" for _, _, peak in growth)
        sizes_shown = " / ".join(f"{b:,}" for b, _, _ in growth)
        out.append(f"* growth of tiled SimCLR with B ({sizes_shown}): seconds per 10^9 (anchor, candidate) "
                   f"pairs {per_pair} (constant = B^2 compute); peak MiB {memory} (the tiles are fixed, "
                   f"only the O(B d) vectors grow).")
    return out


if __name__ == "__main__":
    main()
