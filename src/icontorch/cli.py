"""The ``icontorch`` command: ``table`` and ``demo`` (``icontorch COMMAND --help`` for each)."""

from __future__ import annotations

import argparse
import sys
import time
from typing import List, Optional

from .commands import bench as bench_command
from .commands import cluster as cluster_command
from .commands import embed as embed_command
from .commands import table as table_command

__all__ = ["main"]

# Further commands live in icontorch/commands/<name>.py, each with ``add_parser(subparsers)``
# that registers its sub-command and sets ``run=``; list the modules here.
_COMMAND_MODULES: tuple = (table_command, embed_command, cluster_command, bench_command)


def _demo(args: argparse.Namespace) -> int:
    from sklearn.datasets import load_digits

    from .estimators import TSNE
    from .metrics import knn_accuracy
    from .plotting import plot_embedding

    x, y = load_digits(return_X_y=True)
    print(f"I-Con t-SNE (p = symmetrised perplexity-{args.perplexity:g} Gaussian, q = joint Cauchy) "
          f"on scikit-learn digits: {x.shape[0]} images x {x.shape[1]} pixels")
    warm_up = min(250, args.n_iter)
    estimator = TSNE(perplexity=args.perplexity, early_exaggeration_iter=warm_up,
                     n_iter=args.n_iter - warm_up, random_state=args.seed)
    start = time.perf_counter()
    embedding = estimator.fit_transform(x)
    seconds = time.perf_counter() - start
    accuracy = knn_accuracy(embedding, y, k=10)
    print(f"fitted in {seconds:.1f} s ({estimator.n_iter_} iterations, method {estimator.method_!r}); "
          f"KL(P || Q) = {estimator.kl_divergence_:.4f}")
    print(f"2-D 10-NN accuracy: {accuracy:.3f}")
    plot_embedding(embedding, y, args.output,
                   title=f"I-Con t-SNE of digits (perplexity {args.perplexity:g}); 10-NN acc {accuracy:.3f}")
    print(f"wrote {args.output}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="icontorch",
        description="I-Con: one loss, KL(p(.|i) || q(.|i)), for t-SNE, SimCLR, SupCon, CLIP, "
                    "cross-entropy, k-Means and the rest of the periodic table.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser("demo", help="I-Con t-SNE of the bundled digits: 10-NN accuracy and a plot",
                          description="Fit an I-Con t-SNE embedding of scikit-learn's digits (bundled, "
                                      "no download), print its 2-D 10-NN accuracy and write a PNG.")
    demo.add_argument("-o", "--output", default="icontorch_demo.png", help="PNG (or SVG) to write "
                      "(default: %(default)s)")
    demo.add_argument("--perplexity", type=float, default=30.0, help="default: %(default)s")
    demo.add_argument("--n-iter", type=int, default=750, help="gradient steps (default: %(default)s)")
    demo.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    demo.set_defaults(run=_demo)
    for module in _COMMAND_MODULES:
        module.add_parser(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``icontorch`` command."""
    parser = _parser()
    args = parser.parse_args(argv)
    if getattr(args, "run", None) is None:
        parser.print_help()
        return 0
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
