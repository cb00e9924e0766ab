"""THE dtype table of the Python side: which dtypes exist, what they compute in, and
their unit roundoff. Ops list what they support by naming one of these tuples."""
from __future__ import annotations

import torch

FLOATING = (torch.float32, torch.float64)
LOW_PRECISION = (torch.float16, torch.bfloat16)
ALL_FLOATING = FLOATING + LOW_PRECISION


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype arithmetic runs in: float32 for the 16-bit formats, else the dtype itself."""
    return torch.float32 if dtype in LOW_PRECISION else dtype


def eps(dtype: torch.dtype) -> float:
    """Machine epsilon of the dtype (2 * unit roundoff)."""
    return float(torch.finfo(dtype).eps)


def names(dtypes) -> str:
    return ", ".join(str(d).replace("torch.", "") for d in dtypes)
