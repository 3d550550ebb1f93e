"""The battery's cases that fail today (strict xfail): case id -> what happens, one line.

Grouped by the owner of the fix; "issue 17" marks the failures the issue lists, "new" those it does
not. The fixes turn them green: a strict xfail that passes fails the run, and its id must then be
removed here.
"""

from typing import Dict

import torch


def _same(reason: str, *ids: str) -> Dict[str, str]:
    return dict.fromkeys(ids, reason)


def _without_cuda(reason: str, *ids: str) -> Dict[str, str]:
    """Cases of ``device="cuda"``: they fail only where CUDA is missing (elsewhere they are legal)."""
    return {} if torch.cuda.is_available() else _same(reason, *ids)


KNOWN_METHODS = {
    # ---- owner: ICon / methods
    **_same("NaN or Inf loss / gradient for embeddings of size 1e20 (issue 17, case 5; beyond Gaussian and StudentT)",
            "sne-z-huge", "dual_tsne-z-huge", "sne_graph_embedding-z-huge", "sne_uniform_affinities-z-huge",
            "pca-z-huge", "vicreg-z-huge", "average_margin_clip-z-huge", "average_margin_clip-candidates-huge",
            "average_margin_supcon-z-huge", "triplet-z-huge", "triplet-candidates-huge", "triplet_clip-z-huge",
            "triplet_clip-candidates-huge", "triplet_supcon-z-huge", "tsne-z-huge", "conditional_tsne-z-huge",
            "doubly_tsne-z-huge", "tsne_graph_embedding-z-huge", "tsne_uniform_affinities-z-huge", "tsimcne-z-huge",
            "tsimclr-z-huge", "t_clip-z-huge", "t_clip-candidates-huge", "t_supcon-z-huge", "harmonic_loss-z-huge",
            "harmonic_loss-candidates-huge", "umap-z-huge", "kernel_infonce-z-huge"),
    **_same("NaN loss and gradient: the perplexity search overflows float32 on equal points (issue 17, case 1)",
            "sne-target-constant", "sne-target-tiny", "tsne-target-duplicates", "tsne-target-constant",
            "tsne-target-tiny", "conditional_tsne-target-constant", "conditional_tsne-target-tiny"),
    **_same("NaN loss: squared distances of 1e20 features overflow float32 in p; new (kin of issue 17, case 1)",
            "sne-target-huge", "dual_tsne-target-huge", "tsne-target-huge", "conditional_tsne-target-huge",
            "doubly_tsne-target-huge", "kmeans-target-huge", "t_kmeans-target-huge"),
    **_same("loss = +inf with no error: target_candidates given without candidates; new",
            "mocov3-candidates-none", "cmc-candidates-none"),
    **_same("AttributeError in neighborhoods/base.py: target_candidates is not checked to be a tensor; new",
            "mocov3-target_candidates-numpy", "mocov3-target_candidates-object", "mocov3-target_candidates-string",
            "clip-target_candidates-numpy", "clip-target_candidates-object", "clip-target_candidates-string",
            "cmc-target_candidates-numpy", "cmc-target_candidates-object", "cmc-target_candidates-string",
            "average_margin_clip-target_candidates-numpy", "average_margin_clip-target_candidates-object",
            "average_margin_clip-target_candidates-string", "triplet_clip-target_candidates-numpy",
            "triplet_clip-target_candidates-object", "triplet_clip-target_candidates-string",
            "t_clip-target_candidates-numpy", "t_clip-target_candidates-object", "t_clip-target_candidates-string"),
    **_same("RuntimeError from torch: anchors and candidates of different float dtypes are not reconciled; new",
            "harmonic_loss-z-float64", "harmonic_loss-candidates-float64", "swav-z-float64",
            "swav-candidates-float64", "iic-z-float16", "iic-z-float64", "iic-other-float16", "iic-other-float64",
            "siglip-z-float64", "siglip-candidates-float64"),
    **_same("NaN gradient (finite loss) when log-assignments saturate (log p below about -200); new",
            "kmeans-z-huge", "t_kmeans-z-huge", "normalized_cuts-z-huge", "dcd-z-huge", "infonce_clustering-z-huge",
            "supervised_clustering-z-huge", "spectral_clustering-z-huge", "pmi_clustering-z-huge"),
    **_same("the message names the neighbourhood's internal x / y, not target / target_candidates (issue 17)",
            "sne-target-message", "x_sample_cl-target-message", "dual_tsne-target-message",
            "sne_graph_embedding-target-message", "sne_uniform_affinities-target-message", "lgsimclr-target-message",
            "infonce-target-message", "simclr-target-message", "mocov3-target-message",
            "mocov3-target_candidates-message", "clip-target-message", "clip-target_candidates-message",
            "cmc-target-message", "cmc-target_candidates-message", "supcon-target-message",
            "cross_entropy-target-message", "vicreg-target-message", "average_margin_clip-target-message",
            "average_margin_clip-target_candidates-message", "average_margin_supcon-target-message",
            "triplet-target-message", "triplet-target_candidates-message", "triplet_clip-target-message",
            "triplet_clip-target_candidates-message", "triplet_supcon-target-message", "error_rate-target-message",
            "tsne-target-message", "conditional_tsne-target-message", "doubly_tsne-target-message",
            "tsne_graph_embedding-target-message", "tsne_uniform_affinities-target-message",
            "tsimcne-target-message", "tsimclr-target-message", "t_clip-target-message",
            "t_clip-target_candidates-message", "t_supcon-target-message", "harmonic_loss-target-message",
            "kmeans-target-message", "t_kmeans-target-message", "normalized_cuts-target-message",
            "dcd-target-message", "infonce_clustering-target-message", "supervised_clustering-target-message",
            "masked_language_modeling-target-message", "swav-target-message", "dino-target-message",
            "spectral_clustering-target-message", "pmi_clustering-target-message", "umap-target-message",
            "kernel_infonce-target-message", "siglip-target-message", "siglip-target_candidates-message"),
    **_same("the message names log_phi1 / log_phi2, not the forward's log_phi_teacher / log_phi_student; new",
            "temi_pmi-z-message", "temi_pmi-other-message"),
    **_same("accepted without a check (the argument is unused unless mix is set); new",
            "kernel_infonce-weight=nan", "kernel_infonce-weight=string", "kernel_infonce-weight=bool",
            "kernel_infonce-temperature2=nan", "kernel_infonce-temperature2=-1",
            "kernel_infonce-temperature2=string", "kernel_infonce-split=string", "kernel_infonce-split=nan"),
    **_same("a string is taken as True by bool(); new",
            "ICon-symmetric=string", "ICon-skip_empty_rows=string"),
}

KNOWN_ESTIMATORS = {
    # ---- owner: TSNE / SNE
    **_same("complex data accepted: the imaginary part is dropped with a ComplexWarning (issue 17, case 7)",
            "TSNE-fit_transform-complex", "TSNE-fft-fit_transform-complex", "TSNE-sampled-fit_transform-complex",
            "TSNE-parametric-fit_transform-complex", "SNE-fit_transform-complex",
            "NeighborEmbedding-knn-fit_transform-complex", "TSNE-transform-complex",
            "TSNE-parametric-transform-complex", "NeighborEmbedding-knn-transform-complex"),
    **_same("RuntimeError from torch: a float64 tensor meets the float32 map / MLP; new",
            "TSNE-parametric-fit_transform-tensor-float64", "TSNE-transform-tensor-float64",
            "TSNE-parametric-transform-tensor-float64", "NeighborEmbedding-knn-transform-tensor-float64"),
    **_same("IndexError in embedding/parametric.py: p has no edges on equal points; new",
            "TSNE-parametric-fit_transform-constant", "TSNE-parametric-fit_transform-huge",
            "TSNE-parametric-fit_transform-tiny"),
    # ---- owner: Clustering / training
    **_same("complex data accepted: the imaginary part is dropped with a ComplexWarning (issue 17, case 7)",
            "Clustering-fit_predict-complex", "Clustering-kmeans-fit_predict-complex",
            "Clustering-scan-fit_predict-complex", "Clustering-predict-complex", "Clustering-predict_proba-complex"),
    # ---- owner: TSNE / SNE
    **_same("IndexError in embedding/repulsion.py: the FFT grid index overflows for 1e20 data; new",
            "TSNE-transform-huge"),
    **_same("TypeError: 'int' object is not iterable (issue 17, TSNE(callbacks=5))",
            "TSNE-callbacks=int", "NeighborEmbedding-knn-callbacks=int"),
    # ---- owner: Clustering / training
    **_same("a string is taken as True; new",
            "Clustering-standardize=string"),
    **_without_cuda("torch's AssertionError 'Torch not compiled with CUDA enabled' (issue 17)",
                    "Clustering-device=cuda"),
    **_same("torch's AssertionError without CUDA, or a CUDA error for a missing device (issue 17)",
            "Clustering-device=cuda-99"),
}

KNOWN_TRAINING = {
    # ---- owner: Clustering / training
    **_same("trains on a loss of exactly 0 and returns [0.0] (issue 17, case 8)",
            "train_contrastive-batch_size=1"),
    **_same("RuntimeError from torch.device / model.to: device is not checked; new",
            "train_contrastive-device=bogus", "train_contrastive-device=int"),
    **_without_cuda("torch's AssertionError 'Torch not compiled with CUDA enabled' (issue 17)",
                    "train_contrastive-device=cuda"),
    **_same("ValueError from torch.optim: optimizer got an empty parameter list; new",
            "train_contrastive-model=no-parameters"),
    **_same("RuntimeError: Boolean value of Tensor with more than one value is ambiguous (issue 17)",
            "train_contrastive-loss_fn=reduction-none"),
    **_same("TypeError from calling augment(x, generator): its signature is not checked; new",
            "train_contrastive-augment=one-argument", "multiview_batch-augment=one-argument"),
    **_same("torch.save fails after the first epoch (issue 17: checkpoint path in a missing folder)",
            "train_contrastive-checkpoint=missing-folder", "train_contrastive-checkpoint=a-folder"),
    **_same("torch's UnpicklingError / RuntimeError / AttributeError on resume (issue 17: corrupt checkpoint)",
            "train_contrastive-checkpoint=corrupt", "train_contrastive-checkpoint=truncated",
            "train_contrastive-checkpoint=not-a-dict"),
    **_same("AttributeError: 'int' object has no attribute 'device': generator is not checked; new",
            "RandomResizedCrop-generator=int", "RandomAffine-generator=int", "RandomHorizontalFlip-generator=int",
            "GaussianNoise-generator=int", "GaussianBlur-generator=int", "ColorJitter-generator=int",
            "RandomErasing-generator=int", "default_augmentation-generator=int", "Compose-generator=int"),
    **_same("ValueError from int('x') in collate_views; new",
            "MultiViewDataset-collate-index-string"),
    **_same("an index of 1.5 is truncated to 1 without a word; new",
            "MultiViewDataset-collate-index-float"),
}

KNOWN_EVALUATION = {
    # ---- owner: Clustering / training
    **_same("ValueError from scikit-learn: Complex data not supported; new",
            "linear_probe_accuracy-train_features-complex", "linear_probe_accuracy-test_features-complex",
            "knn_probe_accuracy-train_features-complex", "knn_probe_accuracy-test_features-complex",
            "knn_accuracy-embedding-complex"),
    **_same("TypeError from np.isfinite on an object array of strings; new",
            "linear_probe_accuracy-train_features-letters", "linear_probe_accuracy-test_features-letters",
            "knn_probe_accuracy-train_features-letters", "knn_probe_accuracy-test_features-letters",
            "knn_accuracy-embedding-letters"),
    **_same("ValueError from scikit-learn: Input y contains NaN; new",
            "linear_probe_accuracy-train_labels-nan", "knn_probe_accuracy-train_labels-nan"),
    **_same("NaN labels accepted: the score is computed as if they were a class; new",
            "linear_probe_accuracy-test_labels-nan", "knn_probe_accuracy-test_labels-nan", "knn_accuracy-labels-nan"),
    **_same("ValueError from scikit-learn NearestNeighbors: 0 features; new",
            "knn_accuracy-embedding-no-features"),
    **_same("NaN images give NaN features without a word; new",
            "encode-images-nan"),
    **_same("ValueError from torch.cat on an empty list; new",
            "encode-images-empty"),
    **_same("AttributeError: 'int' object has no attribute 'parameters'; new",
            "encode-model=int"),
    **_same("RuntimeError from torch: device is not checked; new",
            "encode-device=bogus"),
    **_without_cuda("torch's AssertionError 'Torch not compiled with CUDA enabled'; new (as issue 17's device cases)",
                    "encode-device=cuda"),
}

KNOWN_CLI = {
    # ---- owner: CLI
    **_same("exit 0: complex data is embedded / clustered on its real part (issue 17, case 7)",
            "embed-data-complex", "cluster-data-complex"),
    **_same("EOFError traceback from np.load (issue 17: empty .npy)",
            "embed-data-empty-file", "cluster-data-empty-file"),
    **_same("IndexError traceback in commands/_io.py (issue 17: .npz with no arrays)",
            "embed-data-empty-npz", "cluster-data-empty-npz"),
    **_same("prints 'wrote map.txt' but writes map.txt.npy (issue 17, case 4)",
            "embed-output=txt"),
    **_same("FileNotFoundError traceback after the whole fit (issue 17: -o into a missing folder)",
            "embed-output=missing-folder", "cluster-output=missing-folder"),
    **_same("exit 0: -o FOLDER writes FOLDER.npy and prints 'wrote FOLDER'; new (kin of issue 17, case 4)",
            "embed-output=a-folder"),
    **_same("matplotlib's traceback after the whole fit (issue 17: --plot checked only at the end)",
            "embed-plot=xyz", "embed-plot=missing-folder", "cluster-plot=missing-folder"),
    **_same("exit 0: NaN labels are scored as a class; new (issue 17 lists cluster --labels only)",
            "embed-labels=nan"),
    **_without_cuda("torch's AssertionError traceback (issue 17: cluster --device cuda)",
                    "cluster-device=cuda"),
    **_same("IConError traceback from clustering_scores after the fit (issue 17)",
            "cluster-labels=nan"),
    **_same("matplotlib's ValueError traceback after the whole fit (issue 17: bad demo arguments)",
            "demo-output=xyz"),
    **_same("uncaught IConError traceback instead of exit 2 (issue 17)",
            "bench-unknown"),
    **_same("FileNotFoundError traceback from matplotlib; new (table --plot is not checked)",
            "table-plot=missing-folder"),
}
