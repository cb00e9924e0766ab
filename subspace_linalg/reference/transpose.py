"""Pure-torch reference of the transposed copy (same contract as the native op, see
subspace_linalg/_ops/transpose.py)."""
from __future__ import annotations

import torch


def transpose_copy(A: torch.Tensor) -> torch.Tensor:
    """A.mT as a contiguous tensor."""
    return A.mT.contiguous()
