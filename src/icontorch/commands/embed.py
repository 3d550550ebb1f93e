"""``icontorch embed``: a t-SNE / SNE map of the user's own data file, saved, scored and drawn."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from .._validation import check_positive, fail
from ._args import integer, threads
from ._io import ARRAY_SUFFIXES, FIGURE_SUFFIXES, check_device_flag, check_output, load_data, load_labels, save_array

__all__ = ["add_parser", "run"]

_METHODS = ("tsne", "sne", "tsne_uniform_affinities")      # names of icontorch.methods


def add_parser(subparsers: "argparse._SubParsersAction") -> None:
    """Register ``icontorch embed``."""
    parser = subparsers.add_parser(
        "embed", help="embed a data file with I-Con t-SNE (or SNE) and save the map",
        description="Embed the rows of DATA (.npy, .npz or .csv: one point per row) with an I-Con "
                    "neighbour embedding, save the (n, n_components) map to -o, optionally draw it "
                    "(--plot) and, when --labels are given, print the leave-one-out 10-NN accuracy "
                    "of the labels in the map.")
    parser.add_argument("data", help="the points: .npy, .npz (first array, or --key) or .csv")
    parser.add_argument("--key", help="array name inside a .npz file (default: the first)")
    parser.add_argument("--labels", help="one label per point (.npy, .npz, .csv or .txt), for "
                                         "scoring and colouring")
    parser.add_argument("--method", choices=_METHODS, default="tsne",
                        help="the I-Con method (icontorch.methods): tsne: perplexity Gaussian p, "
                             "Cauchy q (default); sne: Gaussian q; tsne_uniform_affinities: uniform "
                             "kNN p (k = perplexity), Cauchy q")
    parser.add_argument("-o", "--output", default="embedding.npy", help="where to save the map: "
                        ".npy, .csv (commas) or .txt (spaces), as the suffix says (default: %(default)s)")
    parser.add_argument("--plot", metavar="OUT", help="also draw the map to OUT (.png or .svg)")
    parser.add_argument("--perplexity", type=float, default=30.0, help="default: %(default)s")
    parser.add_argument("--n-components", type=integer, default=2, help="default: %(default)s")
    parser.add_argument("--n-iter", type=integer, default=500,
                        help="iterations after early exaggeration (default: %(default)s)")
    parser.add_argument("--early-exaggeration-iter", type=integer, default=250,
                        help="iterations of early exaggeration (default: %(default)s)")
    parser.add_argument("--parametric", action="store_true",
                        help="learn an MLP that can embed new points (mini-batch training)")
    parser.add_argument("--device", default="cpu", help="torch device (default: %(default)s)")
    parser.add_argument("--n-jobs", type=threads, default=None,
                        help="CPU threads for torch, at most the number of cores (default: torch's setting; "
                             "-1: all cores)")
    parser.add_argument("--random-state", type=integer, default=0, help="seed (default: %(default)s)")
    parser.add_argument("-v", "--verbose", action="store_true", help="show a progress bar")
    parser.set_defaults(run=run)


def _estimator(args: argparse.Namespace, n: int):
    """The estimator of ``--method`` for ``n`` points."""
    from .. import methods
    from ..embedding import SNE, TSNE, NeighborEmbedding

    common = dict(n_iter=args.n_iter, early_exaggeration_iter=args.early_exaggeration_iter,
                  parametric=args.parametric, device=args.device, n_jobs=args.n_jobs,
                  random_state=args.random_state, verbose=args.verbose)
    if args.method == "sne":
        return SNE(args.n_components, perplexity=args.perplexity, **common)
    if args.method == "tsne_uniform_affinities":
        k = max(1, round(check_positive("icontorch embed", "--perplexity", args.perplexity)))
        if k >= n - 1:
            raise fail("icontorch embed", "--perplexity", f"round to fewer than n_samples - 1 = {n - 1} "
                       "neighbours (k = round(perplexity) with --method tsne_uniform_affinities)", args.perplexity)
        loss = methods.tsne_uniform_affinities(k)
        return NeighborEmbedding(loss.p, q=loss.q, n_components=args.n_components, **common)
    return TSNE(args.n_components, perplexity=args.perplexity, **common)


def run(args: argparse.Namespace) -> int:
    """Check every input and output, fit, then save, score and draw (errors raise IConError)."""
    who = "icontorch embed"
    check_output(args.output, "-o", ARRAY_SUFFIXES, who, inputs=(args.data, args.labels))
    check_output(args.plot, "--plot", FIGURE_SUFFIXES, who, inputs=(args.data, args.labels))
    check_device_flag(who, args.device)
    x = load_data(args.data, args.key, who)
    labels = load_labels(args.labels, x.shape[0], who)
    estimator = _estimator(args, x.shape[0])
    start = time.perf_counter()
    embedding = estimator.fit_transform(x)
    seconds = time.perf_counter() - start
    save_array(args.output, embedding)
    print(f"{type(estimator).__name__} ({args.method}, algorithm {estimator.algorithm_!r}) of {x.shape[0]} "
          f"points x {x.shape[1]} features in {seconds:.1f} s; KL(p || q) = "
          f"{estimator.kl_divergence_:.4f}; wrote {args.output}")
    accuracy = None
    if labels is not None and x.shape[0] > 10:
        from ..metrics import knn_accuracy

        accuracy = knn_accuracy(embedding, labels, 10)
        print(f"{args.n_components}-D 10-NN accuracy: {accuracy:.3f}")
    elif labels is not None:
        print(f"10-NN accuracy not computed: it needs more than 10 points; got {x.shape[0]}")
    if args.plot:
        from ..plotting import plot_embedding

        title = f"I-Con {args.method} of {Path(args.data).name}"
        if accuracy is not None:
            title += f"; 10-NN acc {accuracy:.3f}"
        plot_embedding(embedding, labels, args.plot, title=title)
        print(f"wrote {args.plot}")
    return 0
