"""Whether the compiled CPU loops (numba) serve a tensor, for every subsystem that has them.

The loops (:mod:`icontorch.embedding.cpu_kernels`, :func:`icontorch.clustering.fused.pair_dots`)
each replace a chain of torch operations on the CPU; the torch operations stay the definition, the
path on other devices, and the oracle of the loops' tests. numba is a dependency of the package;
where it is missing the torch path runs.
"""

from __future__ import annotations

import importlib.util
import os

import torch
from torch import Tensor

__all__ = ["HAS_NUMBA", "DISABLE_ENV", "compiled"]

HAS_NUMBA = importlib.util.find_spec("numba") is not None

DISABLE_ENV = "ICONTORCH_NO_NUMBA"
"""Set this environment variable to any non-empty value to use the torch expressions on CPU too."""


def compiled(t: Tensor) -> bool:
    """Whether a compiled loop may take ``t``: numba importable, :data:`DISABLE_ENV` not set, a CPU
    tensor of float32 or float64."""
    return (HAS_NUMBA and not os.environ.get(DISABLE_ENV) and t.device.type == "cpu"
            and t.dtype in (torch.float32, torch.float64))
