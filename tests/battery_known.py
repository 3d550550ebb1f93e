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
}

KNOWN_ESTIMATORS = {}

KNOWN_TRAINING = {}

KNOWN_EVALUATION = {}

KNOWN_CLI = {}
