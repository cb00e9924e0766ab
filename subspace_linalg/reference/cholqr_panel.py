"""Pure-torch reference of the fused CholeskyQR panel op (same contract as the native one,
see subspace_linalg/_ops/cholqr_panel.py): the fallback on devices without a native
kernel and the second oracle of the tests."""
from __future__ import annotations

import torch


def _factor(G: torch.Tensor):
    """(L, X = L^{-1}, ok) of the Gram matrices G (lower triangle read); ok False on a
    Cholesky breakdown (L, X then arbitrary finite or not: the caller zeroes them)."""
    k = G.shape[-1]
    L, info = torch.linalg.cholesky_ex(torch.tril(G) + torch.tril(G, -1).mT)
    ok = info == 0
    eye = torch.eye(k, dtype=G.dtype, device=G.device).expand(G.shape)
    Ls = torch.where(ok[:, None, None], L, eye)
    X = torch.linalg.solve_triangular(Ls, eye, upper=False)
    return Ls, X, ok & torch.isfinite(X).all((-2, -1))


def cholqr_panel(Y: torch.Tensor, mode: int, cond_max: float, gate: float):
    """(Q, L, X, info) for Y (B, m, k): mode 0 one CholeskyQR pass (Q = Y L^{-T}, X = L^{-1}),
    mode 1 CholeskyQR2 factored (Q = Q1, L = L1 L2, X = L2^{-1}), mode 2 CholeskyQR2 (Q formed).
    info 1: the first pass failed (breakdown or max/min of diag L1 above cond_max), 2: the
    second (||Q1^T Q1 - I||_F above gate, or a breakdown); failed elements are zero."""
    B, m, k = Y.shape
    L1, X1, ok1 = _factor(Y.mT @ Y)
    d = torch.diagonal(L1, dim1=-2, dim2=-1)
    ok1 = ok1 & (d.amax(-1) <= cond_max * d.amin(-1))
    Q = Y @ X1.mT
    L, X, bad2 = L1, X1, torch.zeros_like(ok1)
    if mode != 0:
        G2 = Q.mT @ Q
        eye = torch.eye(k, dtype=Y.dtype, device=Y.device)
        dev = torch.linalg.matrix_norm(G2 - eye)
        L2, X, ok2 = _factor(G2)
        bad2 = ~(ok2 & (dev <= gate))
        L = L1 @ L2
        if mode == 2:
            Q = Q @ X.mT
    info = torch.where(~ok1, 1, torch.where(bad2, 2, 0)).to(torch.int32)
    fail = (info != 0)[:, None, None]
    zero = torch.zeros((), dtype=Y.dtype, device=Y.device)
    Qc = torch.empty(B, k, m, dtype=Y.dtype, device=Y.device).mT
    Qc.copy_(torch.where(fail, zero, Q))
    return Qc, torch.where(fail, zero, L).contiguous(), torch.where(fail, zero, X).contiguous(), info
