"""SimCLR I-Con loss on a CUDA GPU: dense vs tiled, fp32 vs bf16 autocast, beside F.cross_entropy.

Run on a machine with a GPU:  PYTHONPATH=src python benchmarks/loss_speed_cuda.py [--write]
Forward + backward, D = 128, temperature 0.5, mean of 5 repetitions after one warm-up; peak
memory is torch.cuda.max_memory_allocated over those repetitions.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import icontorch as ic


def bench(fn, reps: int = 5):
    fn()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / reps, torch.cuda.max_memory_allocated() / 2 ** 30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="write the loss_speed_cuda section")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("no CUDA device")
    dev = "cuda"
    rows = ["| loss | B | precision | fwd+bwd (ms) | peak GPU memory (GiB) | loss finite |",
            "|---|---|---|---|---|---|"]
    for b in (4096, 16384, 65536):
        z = torch.randn(b, 128, device=dev, requires_grad=True)
        target = torch.arange(b // 2, device=dev).repeat(2)
        for name, tile in (("icontorch dense", None), ("icontorch tiled (4096)", 4096)):
            if tile is None and b > 16384:
                continue
            loss_fn = ic.ICon(p=ic.PositivePairs(), q=ic.Gaussian(temperature=0.5, metric="cosine"),
                              divergence="cross_entropy", tile_size=tile)
            for precision in ("fp32", "bf16"):
                def step():
                    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16"):
                        loss = loss_fn(z, target)
                    loss.backward()
                    z.grad = None
                    return loss
                seconds, peak = bench(step)
                finite = bool(torch.isfinite(step()))
                rows.append(f"| {name} | {b} | {precision} | {seconds * 1e3:.2f} | {peak:.2f} | {finite} |")
        if b <= 16384:
            def plain():
                zn = F.normalize(z, dim=1)
                logits = (zn @ zn.T / 0.5).masked_fill(torch.eye(b, dtype=torch.bool, device=dev),
                                                       float("-inf"))
                F.cross_entropy(logits, (torch.arange(b, device=dev) + b // 2) % b).backward()
                z.grad = None
            seconds, peak = bench(plain)
            rows.append(f"| plain F.cross_entropy NT-Xent | {b} | fp32 | {seconds * 1e3:.2f} | {peak:.2f} | |")
    table = "\n".join(rows)
    print(table)
    if args.write:
        sys.path.insert(0, str(Path(__file__).parent))
        from _report import write_section
        write_section("loss_speed_cuda", f"## Loss speed on a GPU\n\n{torch.cuda.get_device_name()}, "
                      f"torch {torch.__version__}. Command: `PYTHONPATH=src python "
                      f"benchmarks/loss_speed_cuda.py --write`.\n\n{table}\n")


if __name__ == "__main__":
    main()
