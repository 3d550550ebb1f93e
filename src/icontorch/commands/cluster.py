"""``icontorch cluster``: Debiased InfoNCE Clustering of the user's feature file, saved, scored, drawn."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from ._args import integer, integer_or_auto, layer_sizes, threads
from ._io import ARRAY_SUFFIXES, FIGURE_SUFFIXES, check_device_flag, check_output, load_data, load_labels, save_array

__all__ = ["add_parser", "run"]


def add_parser(subparsers: "argparse._SubParsersAction") -> None:
    """Register ``icontorch cluster``."""
    from ..clustering import METHODS, Clustering
    from ..clustering.train import INITS

    defaults = Clustering()

    parser = subparsers.add_parser(
        "cluster", help="cluster a feature file with Debiased InfoNCE Clustering and save the labels",
        description="Cluster the rows of DATA (.npy, .npz or .csv: one point per row, e.g. frozen "
                    "features of a pretrained network) into K clusters by training cluster heads with "
                    "the I-Con loss (kNN + walk neighbours as p, the alpha-debiased cluster kernel as q). "
                    "Saves one cluster id per row to -o; with --labels, prints the Hungarian and "
                    "many-to-one accuracy, NMI, AMI and ARI; --plot draws the cluster sizes and a 2-D "
                    "PCA map coloured by cluster.")
    parser.add_argument("data", help="the features: .npy, .npz (first array, or --key) or .csv")
    parser.add_argument("-k", "--n-clusters", type=integer, default=10,
                        help="number of clusters (default: %(default)s)")
    parser.add_argument("--key", help="array name inside a .npz file (default: the first)")
    parser.add_argument("--labels", help="true labels (.npy, .npz, .csv or .txt), for scoring only")
    parser.add_argument("-o", "--output", default="labels.csv",
                        help="where to save the cluster ids: .csv, .txt (one per line) or .npy, as the "
                             "suffix says (default: %(default)s)")
    parser.add_argument("--plot", metavar="OUT", help="also draw cluster sizes and a PCA map to OUT (.png/.svg)")
    parser.add_argument("--method", choices=METHODS, default="debiased_infonce", help="default: %(default)s")
    parser.add_argument("--n-neighbors", type=integer, default=defaults.n_neighbors,
                        help="k of the kNN graph, pruned to mutual neighbours (default: %(default)s)")
    parser.add_argument("--walk-length", type=integer, default=defaults.walk_length,
                        help="extra walk steps on it (default: %(default)s)")
    parser.add_argument("--alpha-p", type=float, default=None,
                        help="debiasing weight of p (default: 0.6 for debiased_infonce, else 0)")
    parser.add_argument("--alpha-q", type=float, default=None,
                        help="debiasing weight of q (default: 0.6 for debiased_infonce, else 0)")
    parser.add_argument("--hidden-layer-sizes", type=layer_sizes, default=defaults.hidden_layer_sizes,
                        metavar="SIZES", help="widths of the heads' hidden layers, comma-separated, e.g. 256; "
                                              "empty (the default) for a linear head")
    parser.add_argument("--n-heads", type=integer_or_auto, default=defaults.n_heads,
                        help="heads trained; lowest loss kept (default: %(default)s: 12 below 50 clusters, else 3)")
    parser.add_argument("--init", choices=("auto",) + INITS, default=defaults.init,
                        help="how the heads start (default: %(default)s: linear heads at k-means from 50 "
                             "clusters on, one in five below, the others random)")
    parser.add_argument("--epochs", type=integer, default=defaults.epochs, help="default: %(default)s")
    parser.add_argument("--device", default="cpu", help="torch device (default: %(default)s)")
    parser.add_argument("--n-jobs", type=threads, default=None,
                        help="CPU threads, at most the number of cores (default: torch's setting; -1: all cores)")
    parser.add_argument("--random-state", type=integer, default=0, help="seed (default: %(default)s)")
    parser.add_argument("-v", "--verbose", action="store_true", help="show a progress bar")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Check every input and output, fit, then save, score and draw (errors raise IConError)."""
    from ..clustering import METHOD_SPECS, Clustering
    from ..metrics import clustering_scores
    from ..plotting import plot_clusters

    who = "icontorch cluster"
    check_output(args.output, "-o", ARRAY_SUFFIXES, who, inputs=(args.data, args.labels))
    check_output(args.plot, "--plot", FIGURE_SUFFIXES, who, inputs=(args.data, args.labels))
    check_device_flag(who, args.device)
    x = load_data(args.data, args.key, who)
    truth = load_labels(args.labels, x.shape[0], who)
    model = Clustering(args.n_clusters, method=args.method, n_neighbors=args.n_neighbors,
                       walk_length=args.walk_length, alpha_p=args.alpha_p, alpha_q=args.alpha_q,
                       hidden_layer_sizes=args.hidden_layer_sizes, init=args.init, n_heads=args.n_heads,
                       epochs=args.epochs,
                       device=args.device, n_jobs=args.n_jobs, random_state=args.random_state, verbose=args.verbose)
    start = time.perf_counter()
    labels = model.fit_predict(x, truth if METHOD_SPECS[args.method].uses_labels else None)
    seconds = time.perf_counter() - start
    save_array(args.output, labels, integers=True)
    sizes = np.bincount(labels, minlength=args.n_clusters)
    print(f"Clustering ({args.method}) of {x.shape[0]} points x {x.shape[1]} features into "
          f"{args.n_clusters} clusters in {seconds:.1f} s; head {model.best_head_} of {len(model.head_losses_)} "
          f"(loss {model.head_losses_[model.best_head_]:.4f}); wrote {args.output}")
    print("cluster sizes: " + " ".join(str(int(s)) for s in sizes))
    if truth is not None:
        scores = clustering_scores(np.unique(truth, return_inverse=True)[1].ravel(), labels)   # labels as classes
        print(f"Hungarian accuracy {scores['accuracy']:.4f}  many-to-one accuracy "
              f"{scores['many_to_one_accuracy']:.4f}  NMI {scores['nmi']:.4f}  AMI {scores['ami']:.4f}  "
              f"ARI {scores['ari']:.4f}")
    if args.plot:
        plot_clusters(x.astype(np.float64), labels, args.plot,
                      title=f"icontorch cluster: {Path(args.data).name}, K = {args.n_clusters}")
        print(f"wrote {args.plot}")
    return 0
