"""The estimators and the training loop on a CUDA device, beside the same fits on the CPU.

CI has no GPU, so this script is how the ``device="cuda"`` paths are checked: TSNE (exact, FFT
and parametric), Clustering (Debiased InfoNCE Clustering) and ``train_contrastive`` run on
scikit-learn's digits on both devices in one process; the table gives wall time and the
outcome (2-D 10-NN accuracy, Hungarian accuracy, linear-probe accuracy) of each. The outcomes
need not be equal bit for bit (different kernels, different float summation order) but must
agree within the seed-to-seed spread.

    python benchmarks/estimators_cuda.py     # writes the "estimators_cuda" section of docs/benchmarks.md
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine, write_section  # noqa: E402

import icontorch as ic  # noqa: E402
from icontorch.augment import default_augmentation  # noqa: E402
from icontorch.encoders import contrastive_encoder  # noqa: E402
from icontorch.metrics import clustering_scores, knn_accuracy  # noqa: E402
from icontorch.probes import encode, knn_probe_accuracy, linear_probe_accuracy  # noqa: E402
from icontorch.training import train_contrastive  # noqa: E402


def timed(fn):
    start = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - start


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return 1
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    rows = []
    for device in ("cpu", "cuda"):
        for algorithm in ("exact", "fft"):
            est = ic.TSNE(algorithm=algorithm, random_state=0, device=device)
            emb, s = timed(lambda: est.fit_transform(x))
            rows.append((f"TSNE(algorithm={algorithm!r})", device, s, f"KL {est.kl_divergence_:.3f}, "
                         f"10-NN acc {knn_accuracy(emb, y, 10):.3f}"))
        est = ic.TSNE(parametric=True, random_state=0, device=device)
        emb, s = timed(lambda: est.fit_transform(x))
        same = np.allclose(est.transform(x), est.embedding_, atol=1e-4)
        rows.append(("TSNE(parametric=True)", device, s, f"10-NN acc {knn_accuracy(emb, y, 10):.3f}, "
                     f"transform(train) == embedding_: {same}"))
        est = ic.Clustering(10, random_state=0, device=device)
        labels, s = timed(lambda: est.fit_predict(x))
        rows.append(("Clustering()", device, s, f"Hungarian acc {clustering_scores(y, labels)['accuracy']:.3f}"))
        images = torch.tensor(x, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
        images = torch.nn.functional.interpolate(images, size=(28, 28), mode="bilinear")
        torch.manual_seed(0)
        model = contrastive_encoder((1, 28, 28))
        loss = ic.ICon(ic.mix_uniform(ic.PositivePairs(), 0.4), ic.StudentT(2.0), divergence="cross_entropy")
        history, s = timed(lambda: train_contrastive(model, loss, images[:1200], default_augmentation(28),
                                                     epochs=5, device=device))      # seeded 0 by default
        h = encode(model, images)
        rows.append(("train_contrastive (alpha 0.4, Student-t, 5 epochs, 1,200 images)", device, s,
                     f"loss {history[0]:.3f} -> {history[-1]:.3f}; held-out linear probe "
                     f"{linear_probe_accuracy(h[:1200], y[:1200], h[1200:], y[1200:]):.3f}, 10-NN "
                     f"{knn_probe_accuracy(h[:1200], y[:1200], h[1200:], y[1200:], 10):.3f}"))
    table = ["| what | device | time (s) | outcome |", "|---|---|---|---|"]
    table += [f"| {w} | {d} | {s:.1f} | {o} |" for w, d, s, o in rows]
    md = "\n".join([
        "## Estimators on CUDA (benchmarks/estimators_cuda.py)", "",
        f"Machine: {machine()}, GPU {torch.cuda.get_device_name()}. Command: "
        "`python benchmarks/estimators_cuda.py`. Data: scikit-learn digits (1,797 x 64). The CPU "
        "rows are the same fits in the same process, for comparison.", ""] + table)
    print(md)
    write_section("estimators_cuda", md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
