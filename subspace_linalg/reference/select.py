"""Pure-torch row gather / scatter (the fallback and the second oracle)."""
from __future__ import annotations

import torch


def gather_rows(G: torch.Tensor, idx: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
    """out[b, j] = G[b, idx[b, j]] * scale[b, j]; G (B, m, n), idx/scale (B or 1, k)."""
    B, _, n = G.shape
    k = idx.shape[-1]
    ix = idx.expand(B, k)
    out = torch.gather(G, 1, ix[..., None].expand(B, k, n))
    if scale is not None:
        out = out * scale.expand(B, k)[..., None]
    return out.contiguous()


def scatter_rows_into(X: torch.Tensor, idx: torch.Tensor, scale: torch.Tensor | None, out: torch.Tensor) -> None:
    """out[b, idx[b, j]] += X[b, j] * scale[b, j] (index_add_ per batch element)."""
    B, k, _ = X.shape
    ix = idx.expand(B, k)
    src = X if scale is None else X * scale.expand(B, k)[..., None]
    for b in range(B):
        out[b].index_add_(0, ix[b], src[b])
