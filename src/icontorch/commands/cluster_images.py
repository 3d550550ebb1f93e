"""``icontorch cluster-images``: unsupervised classification of an image file, saved, scored, drawn."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from ._args import integer, threads
from ._io import (
    ARRAY_SUFFIXES,
    FIGURE_SUFFIXES,
    _check_finite,
    _fail,
    check_device_flag,
    check_output,
    load_array,
    load_labels,
    save_array,
)

__all__ = ["add_parser", "run"]

_WHO = "icontorch cluster-images"


def add_parser(subparsers: "argparse._SubParsersAction") -> None:
    """Register ``icontorch cluster-images``."""
    from ..clustering.images import STRATEGIES, ImageClustering

    defaults = ImageClustering()
    parser = subparsers.add_parser(
        "cluster-images", help="cluster unlabelled images (two-stage I-Con, IIC or SCAN) and save the labels",
        description="Cluster the images of IMAGES (.npy or .npz: (N, H, W) or (N, C, H, W), integers 0-255 or "
                    "floats) into K clusters without labels. two_stage (default): pre-train an encoder on "
                    "augmented pairs with the alpha-debiased I-Con loss, then Debiased InfoNCE Clustering of "
                    "its features with augmented views; iic: IIC end to end; scan: the SCAN objective on the "
                    "pre-trained encoder's kNN. Saves one cluster id per image to -o; with --labels, prints "
                    "the Hungarian accuracy, NMI and ARI; --plot draws sample images of every cluster.")
    parser.add_argument("data", metavar="IMAGES", help="the images: .npy or .npz (first array, or --key)")
    parser.add_argument("-k", "--n-clusters", type=integer, default=10,
                        help="number of clusters (default: %(default)s)")
    parser.add_argument("--key", help="array name inside a .npz file (default: the first)")
    parser.add_argument("--labels", help="true labels (.npy, .npz, .csv or .txt), for scoring only")
    parser.add_argument("-o", "--output", default="labels.csv",
                        help="where to save the cluster ids: .csv, .txt or .npy (default: %(default)s)")
    parser.add_argument("--plot", metavar="OUT", help="also draw sample images of each cluster to OUT (.png/.svg)")
    parser.add_argument("--strategy", choices=STRATEGIES, default=defaults.strategy, help="default: %(default)s")
    parser.add_argument("--epochs", type=integer, default=defaults.epochs,
                        help="encoder training epochs (pre-training, or IIC) (default: %(default)s)")
    parser.add_argument("--cluster-epochs", type=integer, default=defaults.cluster_epochs,
                        help="epochs of the clustering stage (default: Clustering's number of steps)")
    parser.add_argument("--batch-size", type=integer, default=defaults.batch_size, help="default: %(default)s")
    parser.add_argument("--n-views", type=integer, default=defaults.n_views,
                        help="augmented copies of each image (default: %(default)s)")
    parser.add_argument("--checkpoint", help="a file saved after every training epoch")
    parser.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    parser.add_argument("--device", default="cpu", help="torch device (default: %(default)s)")
    parser.add_argument("--n-jobs", type=threads, default=None,
                        help="CPU threads, at most the number of cores (default: torch's setting; -1: all cores)")
    parser.add_argument("--random-state", type=integer, default=0, help="seed (default: %(default)s)")
    parser.add_argument("-v", "--verbose", action="store_true", help="show progress bars")
    parser.set_defaults(run=run)


def load_images(path: str, key: object) -> np.ndarray:
    """The (N, H, W) or (N, C, H, W) images of ``path``: finite floats, or integers in 0-255."""
    images = load_array(path, key, "data", _WHO, ndmin=3)
    if images.ndim not in (3, 4):
        raise _fail(_WHO, "data", "hold images of shape (N, H, W) or (N, C, H, W)", f"shape {images.shape} in "
                    f"{path!r}")
    _check_finite(images, "data", _WHO, path)
    if images.dtype.kind in "iu" and (images.min() < 0 or images.max() > 255):
        raise _fail(_WHO, "data", "hold integer grey levels in 0-255 (or floats)",
                    f"integers from {images.min()} to {images.max()} in {path!r}")
    return images


def run(args: argparse.Namespace) -> int:
    """Check every input and output, fit, then save, score and draw (errors raise IConError)."""
    from ..clustering.images import ImageClustering
    from ..metrics import clustering_scores
    from ..plotting import plot_image_clusters

    check_output(args.output, "-o", ARRAY_SUFFIXES, _WHO, inputs=(args.data, args.labels))
    check_output(args.plot, "--plot", FIGURE_SUFFIXES, _WHO, inputs=(args.data, args.labels))
    check_device_flag(_WHO, args.device)
    images = load_images(args.data, args.key)
    truth = load_labels(args.labels, images.shape[0], _WHO)
    model = ImageClustering(args.n_clusters, strategy=args.strategy, epochs=args.epochs,
                            cluster_epochs=args.cluster_epochs, batch_size=args.batch_size, n_views=args.n_views,
                            checkpoint=args.checkpoint, resume=args.resume, device=args.device, n_jobs=args.n_jobs,
                            random_state=args.random_state, verbose=args.verbose)
    start = time.perf_counter()
    labels = model.fit_predict(images)
    seconds = time.perf_counter() - start
    save_array(args.output, labels, integers=True)
    shape = " x ".join(str(s) for s in model.image_shape_)
    print(f"ImageClustering ({args.strategy}) of {images.shape[0]} images ({shape}) into {args.n_clusters} "
          f"clusters in {seconds:.1f} s; wrote {args.output}")
    print("cluster sizes: " + " ".join(str(int(s)) for s in np.bincount(labels, minlength=args.n_clusters)))
    if truth is not None:
        scores = clustering_scores(np.unique(truth, return_inverse=True)[1].ravel(), labels)
        print(f"Hungarian accuracy {scores['accuracy']:.4f}  NMI {scores['nmi']:.4f}  ARI {scores['ari']:.4f}")
    if args.plot:
        plot_image_clusters(images, labels, args.plot,
                            title=f"icontorch cluster-images: {Path(args.data).name}, K = {args.n_clusters}")
        print(f"wrote {args.plot}")
    return 0
