"""Conjugate gradients: ``cg`` on dense, batched-dense, sparse CSR and matrix-free SPD
operators, every system of a batch converging on its own."""
from __future__ import annotations

import warnings
from typing import Callable

import torch

from . import _native, _validate
from ._dtypes import FLOATING
from ._results import CGResult
from .errors import NotConvergedWarning
from .operators import CSROperator, DenseOperator, LinearOperator, as_operator
from .reference.krylov import CG_BREAKDOWN, CG_CONVERGED, CG_RUNNING

__all__ = ["cg"]

# the whole loop runs natively for dense systems up to this size (measured: bench krylov)
DENSE_NATIVE_MAX_N = 256
# host checks of "all converged" in the operator loop: every few iterations (on a GPU each
# check is a device sync; on the CPU its three small ops were ~15% of a 64^2 Poisson CSR
# solve, measured 6.6 -> 5.4 ms at 4). The steps after convergence are masked no-ops; with
# a callback the loop checks every iteration (the callback sees no extra iterations).
_CHECK_EVERY = {"cpu": 4, "cuda": 8}


def _ops():
    from . import _ops as _  # noqa: F401  (registers the ops)

    return torch.ops.subspace_linalg


def cg(A, b: torch.Tensor, *, x0: torch.Tensor | None = None, M=None, rtol: float = 1e-5, atol: float = 0.0,
       maxiter: int | None = None, callback: Callable[[torch.Tensor], None] | None = None,
       reduction: str = "per_system", check_finite: bool = True) -> CGResult:
    """Solve ``A x = b`` for symmetric positive definite ``A`` by (preconditioned) conjugate
    gradients, SciPy's rule per system: system ``s`` has converged when
    ``||b_s - A x_s|| <= max(rtol ||b_s||, atol)``.

    Args:
        A: dense ``(..., n, n)`` tensor, 2-D sparse CSR tensor, :class:`LinearOperator` or
            duck-typed operator (float32 or float64).
        b: ``(..., n)``: a batch of right-hand sides, one system per vector; leading dims
            broadcast with A's batch dims. ``(..., n, r)`` (when ``b.shape[-1] != n``):
            ``r`` right-hand sides as columns, solved column-wise (each column is its own
            system with its own convergence; fields of the result are ``(..., r)``). For
            ``r == n`` the vector reading wins: pass ``B.mT`` and transpose back.
        x0: initial guess of b's shape (never modified); zeros by default.
        M: preconditioner, an approximation of ``A^-1``: ``"jacobi"`` (inverse diagonal of
            A; dense and CSR A), an operator (tensor / CSR / LinearOperator, applied like A),
            or a callable ``M(r)`` taking and returning tensors of b's layout.
        rtol, atol: tolerances (SciPy's meaning).
        maxiter: iteration limit per system, default ``10 n`` (SciPy's).
        callback: ``callback(x)`` after every iteration with the current iterate in b's
            layout (forces the general loop).
        reduction: ``"per_system"`` (default) or ``"global"``: one alpha and beta shared by
            the whole batch (one CG on the block-diagonal system, as DDS does); the
            stopping rule then applies to the norm over the whole batch.
        check_finite: the input checks: ValueError when b (x0, a dense A) holds NaN/Inf (one
            sum each) or a dense A is visibly not symmetric (32 sampled entry pairs each).

    Not differentiable (inputs are detached; an operator whose matvec uses autograd, e.g.
    Hessian-vector products, is fine).

    Returns:
        CGResult(x, converged, iterations, residual_norm): ``x`` of b's shape and dtype;
        ``converged`` bool, ``iterations`` int64 and ``residual_norm`` (the recursively
        updated ``||b - A x||``, b's dtype) per system, shape ``(...)`` (``(..., r)`` for
        column right-hand sides). A system that breaks down (``p^T A p <= 0``: A or M not
        SPD) stops there with finite x and ``converged=False``. A dense A that is not
        symmetric beyond rounding raises ValueError (with check_finite; matrix-free and
        CSR operators are not checked: their non-symmetry shows as breakdown or
        non-convergence). Systems that did not
        converge raise a :class:`NotConvergedWarning` naming the residual and tolerance.
    """
    fn = "cg"
    op = as_operator(A, fn=fn, name="A")
    _validate.check_tensor(fn, "b", b, dtypes=FLOATING, min_ndim=1)
    if b.dtype != op.dtype:
        raise TypeError(f"{fn}: b must have A's dtype {op.dtype}, got {b.dtype}")
    if b.device != op.device:
        raise ValueError(f"{fn}: b must be on A's device {op.device}, got {b.device}")
    n = op.shape[-1]
    if b.shape[-1] == n:
        columns = False
    elif b.dim() >= 2 and b.shape[-2] == n:
        columns = True
    else:
        raise ValueError(f"{fn}: b must be (..., n) or (..., n, r) with n = {n} (A is {tuple(op.shape)}), "
                         f"got shape {tuple(b.shape)}")
    if x0 is not None:
        _validate.check_tensor(fn, "x0", x0, dtypes=FLOATING)
        if x0.dtype != b.dtype:
            raise TypeError(f"{fn}: x0 must have b's dtype {b.dtype}, got {x0.dtype}")
        if x0.shape != b.shape:
            raise ValueError(f"{fn}: x0 must have b's shape {tuple(b.shape)}, got {tuple(x0.shape)}")
        if x0.device != b.device:
            raise ValueError(f"{fn}: x0 must be on b's device {b.device}, got {x0.device}")
    rtol = _validate.check_float(fn, "rtol", rtol, minimum=0.0)
    atol = _validate.check_float(fn, "atol", atol, minimum=0.0)
    maxiter = 10 * n if maxiter is None else _validate.check_int(fn, "maxiter", maxiter, minimum=0)
    _validate.check_choice(fn, "reduction", reduction, ("per_system", "global"))
    if callback is not None and not callable(callback):
        raise TypeError(f"{fn}: callback must be callable or None, got {type(callback).__name__}")
    if not isinstance(check_finite, bool):
        raise TypeError(f"{fn}: check_finite must be a bool, got {type(check_finite).__name__}")
    if check_finite:
        _check_finite(fn, "b", b)
        if x0 is not None:
            _check_finite(fn, "x0", x0)
        if isinstance(op, DenseOperator):
            _check_finite(fn, "A", op.A)
            _check_symmetric(fn, op.A)

    # the systems, as rows (*sys_batch, n)
    if columns:
        sys_batch = torch.broadcast_shapes(op.batch_shape, b.shape[:-2]) + (b.shape[-1],)
        B = b.mT.expand(sys_batch + (n,))
    else:
        sys_batch = torch.broadcast_shapes(op.batch_shape, b.shape[:-1])
        B = b.expand(sys_batch + (n,))
    B = B.detach().contiguous()
    X = (x0.detach().mT if columns else x0.detach()).expand(sys_batch + (n,)).clone(memory_format=torch.contiguous_format) \
        if x0 is not None else torch.zeros_like(B)

    def to_b_layout(rows: torch.Tensor) -> torch.Tensor:
        return rows.mT if columns else rows

    if columns:
        def apply_A(rows):
            return op.matmul(rows.mT).mT
    else:
        apply_A = op.matvec

    minv, apply_M = _preconditioner(fn, M, op, columns, n, sys_batch, B)
    if B.numel() == 0:  # no unknowns (n = 0: x = 0 solves it exactly) or no systems
        done = torch.ones(sys_batch, dtype=torch.bool, device=B.device)
        x = to_b_layout(X)
        return CGResult(x.contiguous() if columns else x, done, torch.zeros(sys_batch, dtype=torch.int64, device=B.device),
                        torch.zeros(sys_batch, dtype=B.dtype, device=B.device))

    # tolerances
    bnorm = torch.linalg.vector_norm(B, dim=-1)
    if reduction == "global":
        tol_all = max(rtol * float(torch.linalg.vector_norm(B)), atol)
        tol = torch.full(sys_batch, tol_all, dtype=B.dtype, device=B.device)
    else:
        tol = torch.clamp_min(rtol * bnorm, atol)

    use_native = (reduction == "per_system" and callback is None and apply_M is None
                  and isinstance(op, DenseOperator) and 0 < n <= DENSE_NATIVE_MAX_N
                  and B.device.type in ("cpu", "cuda") and _native.available())
    # one CSR matrix on the CPU: the whole loop natively (a system per thread, or one system
    # on all threads from 8192 unknowns), measured faster than the loop of native steps at
    # every size: 2-D Poisson, float32, 64^2 4.6 / 7.6 ms, 128^2 16 / 31, 512^2 814 / 954
    use_csr = (not use_native and reduction == "per_system" and callback is None and apply_M is None
               and isinstance(op, CSROperator) and B.device.type == "cpu" and n > 0 and _native.available())
    if use_native:
        out = _native_dense(op, B, X, minv, tol, maxiter, sys_batch, n, columns)
    elif use_csr:
        out = _native_csr(op, B, X, minv, tol, maxiter, sys_batch, n)
    elif reduction == "global":
        out = _loop_global(apply_A, apply_M, minv, B, X, tol, maxiter, callback, to_b_layout)
    else:
        out = _loop(apply_A, apply_M, minv, B, X, tol, maxiter, callback, to_b_layout)
    Xs, iters, res, status = out
    converged = status == CG_CONVERGED
    _report(fn, converged, status, res, tol, maxiter)
    x = to_b_layout(Xs)
    if columns:
        x = x.contiguous()
    return CGResult(x, converged, iters.to(torch.int64), res)


_SYM_PAIRS = 32  # entry pairs compared per matrix by the (sampled) symmetry check


def _check_symmetric(fn: str, A: torch.Tensor) -> None:
    """ValueError when a dense A is visibly not symmetric: |A_ij - A_ji| > sqrt(eps) max|A|
    at one of up to 32 fixed pseudo-random entry pairs per matrix (a sampled check: a few
    asymmetric entries can escape it; a generic non-symmetric matrix cannot). A gather, no
    pass over A: CG's result would be meaningless for a non-symmetric A."""
    n = A.shape[-1]
    if A.numel() == 0 or n < 2:
        return
    g = torch.Generator().manual_seed(n)
    k = min(_SYM_PAIRS, n * n)
    idx = torch.randint(0, n, (2, k), generator=g).to(A.device)
    Af = A.detach().reshape(-1, n * n)
    upper = Af.index_select(1, idx[0] * n + idx[1])
    lower = Af.index_select(1, idx[1] * n + idx[0])
    diag = Af.index_select(1, torch.arange(0, n * n, n + 1, device=A.device))
    scale = torch.maximum(upper.abs().amax(-1), diag.abs().amax(-1))
    asym = (upper - lower).abs().amax(-1)
    bad = (asym > (torch.finfo(A.dtype).eps ** 0.5) * scale).reshape(A.shape[:-2])
    if bool(bad.any()):
        worst = float((asym / scale.clamp_min(torch.finfo(A.dtype).tiny)).max())
        raise ValueError(f"{fn}: A must be symmetric (positive definite), got |A_ij - A_ji| / max|A| = {worst:.3e} "
                         f"at sampled entries of {int(bad.sum())} of {bad.numel()} matrices")


def _check_finite(fn: str, name: str, t: torch.Tensor) -> None:
    """One reduction: the sum is finite when every entry is (an overflowing sum of finite
    entries falls through to the exact count, which then finds nothing)."""
    if t.numel() and not bool(torch.isfinite(t.sum())):
        _validate.check_finite(fn, name, t)


def _preconditioner(fn, M, op, columns, n, sys_batch, B):
    """(minv rows or None, apply_M or None)."""
    if M is None:
        return None, None
    if isinstance(M, str):
        _validate.check_choice(fn, "M", M, ("jacobi",))
        try:
            d = op.diagonal()
        except NotImplementedError:
            raise ValueError(f"{fn}: M='jacobi' needs the diagonal of A, which a matrix-free "
                             f"{type(op).__name__} does not know; pass M as an operator or callable") from None
        if not bool((d > 0).all()):
            raise ValueError(f"{fn}: M='jacobi' needs a positive diagonal of A (A must be SPD), "
                             f"got min diagonal {float(d.min()):.3g}")
        dinv = 1.0 / d
        if columns:
            dinv = dinv.unsqueeze(-2)
        return dinv.expand(sys_batch + (n,)).contiguous(), None
    if isinstance(M, (torch.Tensor, LinearOperator)):
        mop = as_operator(M, fn=fn, name="M")
        if mop.shape[-1] != n or mop.dtype != op.dtype:
            raise ValueError(f"{fn}: M must be an (..., {n}, {n}) operator of dtype {op.dtype}, "
                             f"got {tuple(mop.shape)} {mop.dtype}")
        if columns:
            return None, lambda rows: mop.matmul(rows.mT).mT
        return None, mop.matvec
    if callable(M):
        if columns:
            return None, lambda rows: M(rows.mT).mT
        return None, M
    raise TypeError(f"{fn}: M must be None, 'jacobi', an operator or a callable, got {type(M).__name__}")


def _native_dense(op: DenseOperator, B, X, minv, tol, maxiter, sys_batch, n, columns):
    Ad = op.A.detach()
    S = B.numel() // n if n else 0
    if Ad.shape[:-2].numel() == 1:
        A3 = Ad.reshape(1, n, n)  # one matrix for every system (stride 0)
    else:
        # the systems are (*batch, r) in column mode: r consecutive systems share a matrix
        sb = sys_batch[:-1] if columns else sys_batch
        A3 = Ad if tuple(Ad.shape[:-2]) == tuple(sb) else Ad.expand(sb + (n, n))  # copies when b broadcasts A
        A3 = A3.reshape(-1, n, n)
    Xs, iters, res, status = _ops().cg_dense.default(
        A3, B.reshape(S, n), X.reshape(S, n), minv.reshape(S, n) if minv is not None else None,
        tol.reshape(S).contiguous(), int(maxiter))
    return (Xs.reshape(sys_batch + (n,)), iters.reshape(sys_batch), res.reshape(sys_batch),
            status.reshape(sys_batch))


def _native_csr(op, B, X, minv, tol, maxiter, sys_batch, n):
    S = B.numel() // n
    Xs, iters, res, status = _ops().cg_csr.default(
        op._crow, op._col, op._val.detach(), B.reshape(S, n), X.reshape(S, n),
        minv.reshape(S, n) if minv is not None else None, tol.reshape(S).contiguous(), int(maxiter))
    return (Xs.reshape(sys_batch + (n,)), iters.reshape(sys_batch), res.reshape(sys_batch),
            status.reshape(sys_batch))


def _dot(a, b):
    return (a * b).sum(-1)


def _loop(apply_A, apply_M, minv, B, X, tol, maxiter, callback, to_b_layout):
    """Per-system CG on any operator: between two operator applications everything is two
    native calls (cg_step: p.Ap, breakdown test, x/r update, r.r, convergence flag;
    cg_direction: the new search direction), masked by each system's status."""
    from ._ops import krylov as kops

    shape = B.shape
    n = shape[-1]
    S = B.numel() // n if n else 0
    R = (B - _apply(apply_A, X)).contiguous()
    precond = apply_M is not None or minv is not None
    Z = _precond(apply_M, minv, R) if precond else R
    P = Z.clone(memory_format=torch.contiguous_format)
    rr = _dot(R, R).reshape(S).contiguous()
    rz = _dot(R, Z).reshape(S).contiguous() if precond else rr.clone()
    tol2 = (tol * tol).reshape(S).contiguous()
    status = torch.full((S,), CG_RUNNING, dtype=torch.int32, device=B.device)
    status.masked_fill_(rr <= tol2, CG_CONVERGED)
    status.masked_fill_((status == CG_RUNNING) & ~(torch.isfinite(rz) & (rz > 0)), CG_BREAKDOWN)
    iters = torch.zeros(S, dtype=torch.int32, device=B.device)
    every = 1 if callback is not None else _CHECK_EVERY.get(B.device.type, 8)
    X2, R2, P2 = X.view(S, n), R.view(S, n), P.view(S, n)
    step, direction = kops.bind_cg_loop(X2)
    for it in range(maxiter):
        if it % every == 0 and not bool((status == CG_RUNNING).any()):
            break
        AP = _apply(apply_A, P).reshape(S, n)
        step(X2, R2, rr, status, iters, P2, AP, rz, tol2)
        if callback is not None:
            callback(to_b_layout(X))
        if precond:
            Z = _precond(apply_M, minv, R).reshape(S, n).contiguous()
            rz_new = _dot(Z, R2).contiguous()
        else:
            Z, rz_new = R2, rr
        direction(P2, Z, rz_new, rz, status)
    sb = shape[:-1]
    return X, iters.reshape(sb), rr.clamp_min(0).sqrt().reshape(sb), status.reshape(sb)


def _apply(apply_A, rows):
    out = apply_A(rows).detach()  # cg is not differentiable: no graph across iterations
    return out if out.is_contiguous() else out.contiguous()


def _precond(apply_M, minv, R):
    if minv is not None:
        return R * minv
    if apply_M is not None:
        return _apply(apply_M, R)
    return R


def _loop_global(apply_A, apply_M, minv, B, X, tol, maxiter, callback, to_b_layout):
    """One CG on the block-diagonal system of the whole batch: alpha and beta are shared
    (DDS's batched CG); the stopping rule uses the residual norm over the whole batch.
    Scalars stay on the device; the host looks at the flag every few iterations."""
    from ._ops import krylov as kops

    shape = B.shape
    n = shape[-1]
    S = B.numel() // n if n else 0
    dev, dt = B.device, B.dtype
    R = (B - _apply(apply_A, X)).contiguous()
    precond = apply_M is not None or minv is not None
    Z = _precond(apply_M, minv, R) if precond else R
    P = Z.clone(memory_format=torch.contiguous_format)
    rr = _dot(R, R).reshape(S).contiguous()
    rz = (Z * R).sum()
    tol_all2 = (tol.reshape(-1)[:1] ** 2).sum() if tol.numel() else torch.zeros((), dtype=dt, device=dev)
    status = torch.full((), CG_RUNNING, dtype=torch.int32, device=dev)
    status = torch.where(rr.sum() <= tol_all2, CG_CONVERGED, status)
    status = torch.where((status == CG_RUNNING) & ~(torch.isfinite(rz) & (rz > 0)), CG_BREAKDOWN, status)
    iters = torch.zeros((), dtype=torch.int32, device=dev)
    zero = torch.zeros((), dtype=dt, device=dev)
    every = 1 if callback is not None else _CHECK_EVERY.get(dev.type, 8)
    X2, R2, P2 = X.view(S, n), R.view(S, n), P.view(S, n)
    for it in range(maxiter):
        active = status == CG_RUNNING
        if it % every == 0 and not bool(active):
            break
        AP = _apply(apply_A, P).reshape(S, n)
        pAp = (P2 * AP).sum()
        ok = torch.isfinite(pAp) & (pAp > 0)
        status = torch.where(active & ~ok, CG_BREAKDOWN, status)
        active = active & ok
        alpha = torch.where(active, rz / torch.where(active, pAp, 1), zero)
        kops.cg_update(X2, R2, rr, P2, AP, alpha.expand(S).contiguous(), active.expand(S).contiguous())
        iters = iters + active.to(torch.int32)
        rr_all = rr.sum()
        done = active & (rr_all <= tol_all2)
        status = torch.where(done, CG_CONVERGED, status)
        bad = active & ~done & ~torch.isfinite(rr_all)
        status = torch.where(bad, CG_BREAKDOWN, status)
        active = active & ~done & ~bad
        if callback is not None:
            callback(to_b_layout(X))
        if precond:
            Z = _precond(apply_M, minv, R).reshape(S, n)
            rz_new = (Z * R2).sum()
        else:
            Z, rz_new = R2, rr_all
        ok = torch.isfinite(rz_new) & (rz_new > 0)
        status = torch.where(active & ~ok, CG_BREAKDOWN, status)
        active = active & ok
        beta = torch.where(active, rz_new / rz, zero)
        P2.copy_(torch.where(active, Z + beta * P2, P2))
        rz = torch.where(active, rz_new, rz)
    sb = shape[:-1]
    return (X, iters.expand(sb).clone(), rr.clamp_min(0).sqrt().reshape(sb),
            status.to(torch.int32).expand(sb).clone())


def _report(fn, converged, status, res, tol, maxiter) -> None:
    total = converged.numel()
    if total == 0:
        return
    nconv = int(converged.sum())
    if nconv == total:
        return
    broke = status == CG_BREAKDOWN
    nbroke = int(broke.sum())
    notc = ~converged
    ratio = (res / tol.clamp_min(torch.finfo(res.dtype).tiny))[notc]
    worst = int(torch.argmax(ratio)) if ratio.numel() else 0
    wres, wtol = float(res[notc][worst]), float(tol[notc][worst])
    parts = [f"{fn}: {total - nconv} of {total} systems did not converge"]
    if total - nconv - nbroke:
        parts.append(f"{total - nconv - nbroke} reached maxiter={maxiter}")
    if nbroke:
        parts.append(f"{nbroke} broke down (p^T A p <= 0 or r^T M r <= 0: A or M is not SPD, or non-finite values)")
    parts.append(f"worst residual ||b - Ax|| = {wres:.3e} vs tolerance max(rtol*||b||, atol) = {wtol:.3e}")
    warnings.warn("; ".join(parts), NotConvergedWarning, stacklevel=3)
