"""Pure-torch references of the Krylov family's native ops (the fallback on devices
without a native kernel, and the composition the native kernels are benchmarked against).

Status codes of the batched solver (shared with the native kernels):
``CG_RUNNING = 0`` (stopped at maxiter), ``CG_CONVERGED = 1``, ``CG_BREAKDOWN = 2``
(p^T A p <= 0 or r^T M^-1 r <= 0 or a non-finite value: A or M is not SPD).
"""
from __future__ import annotations

import torch

CG_RUNNING, CG_CONVERGED, CG_BREAKDOWN = 0, 1, 2


def cg_update_(x: torch.Tensor, r: torch.Tensor, rr: torch.Tensor, p: torch.Tensor, Ap: torch.Tensor,
               alpha: torch.Tensor, active: torch.Tensor) -> None:
    """In place, for each system s (row) with ``active[s]``: ``x += alpha p``,
    ``r -= alpha Ap``, ``rr = r . r``; inactive rows are left untouched.
    x, r, p, Ap: (S, n); rr, alpha: (S,) of the same dtype; active: (S,) bool."""
    m = active.unsqueeze(-1)
    a = alpha.unsqueeze(-1)
    x.copy_(torch.where(m, x + a * p, x))
    r.copy_(torch.where(m, r - a * Ap, r))
    rr.copy_(torch.where(active, (r * r).sum(-1), rr))


def cg_dense(A: torch.Tensor, b: torch.Tensor, x0: torch.Tensor, minv: torch.Tensor | None, tol: torch.Tensor,
             maxiter: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batched CG on small dense SPD systems, each stopping on its own.

    A: (G, n, n), G dividing S: system s uses matrix s // (S / G); b, x0: (S, n); minv: (S, n) inverse Jacobi diagonal
    or None; tol: (S,) absolute residual tolerances. System s stops when
    ``||r_s|| <= tol[s]`` (recursive residual), at breakdown, or after ``maxiter``
    iterations. Returns (x (S, n), iterations int32 (S,), residual norm (S,), status
    int32 (S,))."""
    S, n = b.shape
    if A.shape[0] not in (1, S):  # G matrices, each shared by S / G consecutive systems
        A = A.repeat_interleave(S // A.shape[0], dim=0)
    return _cg_loop(lambda v: (A @ v.unsqueeze(-1)).squeeze(-1), b, x0, minv, tol, maxiter)


def cg_csr(crow: torch.Tensor, col: torch.Tensor, val: torch.Tensor, b: torch.Tensor, x0: torch.Tensor,
           minv: torch.Tensor | None, tol: torch.Tensor, maxiter: int):
    """:func:`cg_dense`'s loop with one CSR matrix (crow, col, val) shared by the S systems."""
    n = b.shape[1]
    return _cg_loop(lambda v: csr_matvec(crow, col, val, v, n), b, x0, minv, tol, maxiter)


def _cg_loop(apply, b, x0, minv, tol, maxiter):
    """The per-system CG loop of cg_dense / cg_csr with the operator ``apply`` on the rows."""
    S, n = b.shape
    x = x0.clone()
    r = b - apply(x)
    z = r * minv if minv is not None else r
    p = z.clone()
    rz = (r * z).sum(-1)
    rr = (r * r).sum(-1)
    tol2 = tol * tol
    status = torch.zeros(S, dtype=torch.int32, device=b.device)
    status = torch.where(rr <= tol2, CG_CONVERGED, status).to(torch.int32)
    status = torch.where((rz <= 0) & (status == CG_RUNNING), CG_BREAKDOWN, status).to(torch.int32)
    iters = torch.zeros(S, dtype=torch.int32, device=b.device)
    zero = torch.zeros((), dtype=b.dtype, device=b.device)
    for _ in range(maxiter):
        active = status == CG_RUNNING
        if not bool(active.any()):
            break
        Ap = apply(p)
        pAp = (p * Ap).sum(-1)
        bad = active & ~(pAp > 0)
        status = torch.where(bad, CG_BREAKDOWN, status).to(torch.int32)
        active = active & ~bad
        alpha = torch.where(active, rz / torch.where(active, pAp, 1), zero)
        cg_update_(x, r, rr, p, Ap, alpha, active)
        iters += active.to(torch.int32)
        done = active & (rr <= tol2)
        status = torch.where(done, CG_CONVERGED, status).to(torch.int32)
        nonfinite = active & ~torch.isfinite(rr)
        status = torch.where(nonfinite, CG_BREAKDOWN, status).to(torch.int32)
        active = active & ~done & ~nonfinite
        z = r * minv if minv is not None else r
        rz_new = (r * z).sum(-1) if minv is not None else rr
        bad = active & ~(rz_new > 0)
        status = torch.where(bad, CG_BREAKDOWN, status).to(torch.int32)
        active = active & ~bad
        beta = torch.where(active, rz_new / torch.where(active, rz, 1), zero).unsqueeze(-1)
        p = torch.where(active.unsqueeze(-1), z + beta * p, p)
        rz = torch.where(active, rz_new, rz)
    return x, iters, rr.clamp_min(0).sqrt(), status


def cg_step_(x: torch.Tensor, r: torch.Tensor, rr: torch.Tensor, status: torch.Tensor, iters: torch.Tensor,
             p: torch.Tensor, Ap: torch.Tensor, rz: torch.Tensor, tol2: torch.Tensor) -> None:
    """In place, for every running system s (status[s] == 0): pq = p.Ap; breakdown
    (status 2) when pq <= 0 or non-finite; else alpha = rz/pq, x += alpha p,
    r -= alpha Ap, rr = r.r, iters += 1, status 1 when rr <= tol2 (2 when rr is not
    finite). x, r, p, Ap (S, n); rr, rz, tol2 (S,); status, iters (S,) int32."""
    run = status == CG_RUNNING
    pq = (p * Ap).sum(-1)
    bad = run & ~(torch.isfinite(pq) & (pq > 0))
    status.masked_fill_(bad, CG_BREAKDOWN)
    run = run & ~bad
    alpha = torch.where(run, rz / torch.where(run, pq, torch.ones_like(pq)), torch.zeros_like(pq)).unsqueeze(-1)
    m = run.unsqueeze(-1)
    x.copy_(torch.where(m, x + alpha * p, x))
    r.copy_(torch.where(m, r - alpha * Ap, r))
    rr.copy_(torch.where(run, (r * r).sum(-1), rr))
    iters.add_(run.to(iters.dtype))
    done = run & (rr <= tol2)
    status.masked_fill_(done, CG_CONVERGED)
    status.masked_fill_(run & ~done & ~torch.isfinite(rr), CG_BREAKDOWN)


def cg_direction_(p: torch.Tensor, z: torch.Tensor, rz_new: torch.Tensor, rz: torch.Tensor,
                  status: torch.Tensor) -> None:
    """In place, for every running system s: breakdown (status 2) when rz_new <= 0 or
    non-finite; else p = z + (rz_new / rz) p and rz = rz_new."""
    run = status == CG_RUNNING
    bad = run & ~(torch.isfinite(rz_new) & (rz_new > 0))
    status.masked_fill_(bad, CG_BREAKDOWN)
    run = run & ~bad
    beta = torch.where(run, rz_new / torch.where(run, rz, torch.ones_like(rz)), torch.zeros_like(rz)).unsqueeze(-1)
    p.copy_(torch.where(run.unsqueeze(-1), z + beta * p, p))
    rz.copy_(torch.where(run, rz_new, rz))


def csr_matvec(crow: torch.Tensor, col: torch.Tensor, val: torch.Tensor, x: torch.Tensor, m: int) -> torch.Tensor:
    """y[s, i] = sum_k val[k] x[s, col[k]] over row i's nonzeros: a CSR matrix (m, n) times
    the rows of x (S, n); returns (S, m) in val's dtype."""
    rows = torch.repeat_interleave(torch.arange(m, device=x.device), crow[1:] - crow[:-1])
    out = torch.zeros(x.shape[0], m, dtype=val.dtype, device=x.device)
    return out.index_add_(1, rows, x[:, col] * val)
