"""``icontorch demo``: I-Con t-SNE of the bundled digits, scored and drawn (no download)."""

from __future__ import annotations

import argparse
import time

from ._args import integer
from ._io import FIGURE_SUFFIXES, check_output

__all__ = ["add_parser", "run"]


def add_parser(subparsers: "argparse._SubParsersAction") -> None:
    """Register ``icontorch demo``."""
    parser = subparsers.add_parser(
        "demo", help="I-Con t-SNE of the bundled digits: 10-NN accuracy and a plot",
        description="Fit an I-Con t-SNE embedding of scikit-learn's digits (bundled, no download), "
                    "print its 2-D 10-NN accuracy and write a PNG.")
    parser.add_argument("-o", "--output", default="icontorch_demo.png",
                        help="PNG (or SVG) to write (default: %(default)s)")
    parser.add_argument("--perplexity", type=float, default=30.0, help="default: %(default)s")
    parser.add_argument("--n-iter", type=integer, default=500,
                        help="gradient steps after early exaggeration (default: %(default)s)")
    parser.add_argument("--early-exaggeration-iter", type=integer, default=250,
                        help="gradient steps of early exaggeration (default: %(default)s)")
    parser.add_argument("--random-state", type=integer, default=0, help="seed (default: %(default)s)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Check the output, fit, score and draw (errors raise IConError)."""
    check_output(args.output, "-o", FIGURE_SUFFIXES, "icontorch demo")
    from sklearn.datasets import load_digits

    from ..embedding import TSNE
    from ..metrics import knn_accuracy
    from ..plotting import plot_embedding

    x, y = load_digits(return_X_y=True)
    print(f"I-Con t-SNE (p = symmetrised perplexity-{args.perplexity:g} Gaussian, q = joint Cauchy) "
          f"on scikit-learn digits: {x.shape[0]} images x {x.shape[1]} pixels")
    estimator = TSNE(perplexity=args.perplexity, early_exaggeration_iter=args.early_exaggeration_iter,
                     n_iter=args.n_iter, random_state=args.random_state)
    start = time.perf_counter()
    embedding = estimator.fit_transform(x)
    seconds = time.perf_counter() - start
    accuracy = knn_accuracy(embedding, y, 10)
    print(f"fitted in {seconds:.1f} s ({estimator.n_iter_} iterations, algorithm {estimator.algorithm_!r}); "
          f"KL(P || Q) = {estimator.kl_divergence_:.4f}")
    print(f"2-D 10-NN accuracy: {accuracy:.3f}")
    plot_embedding(embedding, y, args.output,
                   title=f"I-Con t-SNE of digits (perplexity {args.perplexity:g}); 10-NN acc {accuracy:.3f}")
    print(f"wrote {args.output}")
    return 0
