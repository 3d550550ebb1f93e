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
    **_same("NaN gradient (finite loss) when log-assignments saturate (log p below about -200); new",
            "kmeans-z-huge", "t_kmeans-z-huge", "normalized_cuts-z-huge", "dcd-z-huge", "infonce_clustering-z-huge",
            "supervised_clustering-z-huge", "spectral_clustering-z-huge", "pmi_clustering-z-huge"),
}

KNOWN_ESTIMATORS = {}

KNOWN_TRAINING = {}

KNOWN_EVALUATION = {}

KNOWN_CLI = {}
