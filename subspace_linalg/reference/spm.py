"""Pure-torch references of the Subspace Power Method kernels (order 3 and 4, where
ceil(order / 2) = 2). Layout as in csrc/include/sl/spm.h: V (D, R) holds the basis of the
d x d symmetric matrices in the packed upper-triangle order of ``torch.triu_indices``,
X (B, d) the points."""
from __future__ import annotations

import math

import torch


def packed_size(d: int) -> int:
    return d * (d + 1) // 2


def d_of_packed(D: int) -> int:
    """The d with d (d + 1) / 2 = D (ValueError when there is none)."""
    d = (math.isqrt(8 * D + 1) - 1) // 2
    if d * (d + 1) // 2 != D:
        raise ValueError(f"spm: {D} is not a packed symmetric size d (d + 1) / 2")
    return d


def unpack_index(d: int, device=None) -> torch.Tensor:
    """(d, d) long tensor: the packed position of entry (i, j) (symmetric)."""
    iu = torch.triu_indices(d, d, device=device)
    idx = torch.empty(d, d, dtype=torch.long, device=device)
    pos = torch.arange(iu.shape[1], device=device)
    idx[iu[0], iu[1]] = pos
    idx[iu[1], iu[0]] = pos
    return idx


def contract(V: torch.Tensor, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """alpha (B, R) = V^T (x (x) x) in the full layout and grad (B, d) = sum_r alpha_r V_r x."""
    d = X.shape[-1]
    idx = unpack_index(d, X.device)
    Vf = V[idx.reshape(-1)].reshape(d, d, V.shape[-1])          # (d, d, R) full matrices
    W = torch.einsum("bi,ijr->bjr", X, Vf)                       # (B, d, R)
    alpha = torch.einsum("bjr,bj->br", W, X)
    grad = torch.einsum("bjr,br->bj", W, alpha)
    return alpha.contiguous(), grad.contiguous()


def power(V: torch.Tensor, X0: torch.Tensor, maxiter: int, tol: float, cn: float):
    """Shifted power iteration (adaptive shift) for every row of X0 (unit norm); returns
    (X, f, iters) with f = F(x) = |V^T (x (x) x)|^2 at the final points and the int64
    iteration counts. Same stopping rule as the native kernels: |x_new - x| < tol."""
    X = X0.clone()
    B = X.shape[0]
    f = torch.zeros(B, dtype=X.dtype, device=X.device)
    iters = torch.zeros(B, dtype=torch.int64, device=X.device)
    active = torch.ones(B, dtype=torch.bool, device=X.device)
    for _ in range(maxiter):
        if not bool(active.any()):
            break
        Xa = X[active]
        _, g = contract(V, Xa)
        fa = (g * Xa).sum(-1)
        c = torch.where(fa > 2.0 / 3.0, torch.sqrt(2 * fa * (1 - fa).clamp_min(0)), 1 - fa / 2)
        g = g + (cn * c).unsqueeze(-1) * Xa
        nrm = g.norm(dim=-1, keepdim=True)
        ok = nrm.squeeze(-1) > 0
        Xn = torch.where(ok.unsqueeze(-1), g / torch.where(ok, nrm.squeeze(-1), 1).unsqueeze(-1), Xa)
        diff = (Xn - Xa).norm(dim=-1)
        X[active] = Xn
        iters[active] += 1
        done = (diff < tol) | ~ok
        act_idx = active.nonzero().squeeze(-1)
        active[act_idx[done]] = False
    alpha, _ = contract(V, X)
    f = (alpha * alpha).sum(-1)
    return X, f, iters
