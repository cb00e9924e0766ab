"""Pure-torch Walsh-Hadamard transform (Sylvester order) along the last dim."""
from __future__ import annotations

import torch

from .._dtypes import compute_dtype


def fwht_last(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """``scale * x @ H_n`` for H_n the Sylvester Hadamard matrix (symmetric), computed in
    the dtype's compute precision; contiguous result of x's shape and dtype."""
    n = x.shape[-1]
    batch = x.shape[:-1]
    y = x.to(compute_dtype(x.dtype)).reshape(-1, n)
    h = 1
    while h < n:
        y = y.reshape(-1, n // (2 * h), 2, h)
        a, b = y[:, :, 0, :], y[:, :, 1, :]
        y = torch.stack((a + b, a - b), dim=2)
        h *= 2
    y = y.reshape(batch + (n,)) * scale
    return y.to(x.dtype).contiguous()
