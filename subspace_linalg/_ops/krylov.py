"""subspace_linalg::cg_update_ (fused CG step), subspace_linalg::cg_dense (the whole CG
loop for a batch of small dense SPD systems) and subspace_linalg::cg_csr (the whole loop
for systems sharing one CSR matrix), CPU and CUDA native kernels; the pure-torch
references are in subspace_linalg/reference/krylov.py."""
from __future__ import annotations

from typing import Optional

import torch

from .. import _native
from .._dtypes import FLOATING
from ..reference import krylov as _ref


def _check_update(x, r, rr, p, Ap, alpha, active) -> None:
    torch._check(x.dtype in FLOATING, lambda: f"cg_update_: x must be float32 or float64, got {x.dtype}")
    torch._check(x.dim() == 2, lambda: f"cg_update_: x must be (S, n), got {tuple(x.shape)}")
    for name, t in (("r", r), ("p", p), ("Ap", Ap)):
        torch._check(t.shape == x.shape and t.dtype == x.dtype,
                     lambda: f"cg_update_: {name} must match x {tuple(x.shape)} {x.dtype}, got {tuple(t.shape)} {t.dtype}")
    for name, t in (("rr", rr), ("alpha", alpha)):
        torch._check(t.shape == x.shape[:1] and t.dtype == x.dtype,
                     lambda: f"cg_update_: {name} must be ({x.shape[0]},) {x.dtype}, got {tuple(t.shape)} {t.dtype}")
    torch._check(active.shape == x.shape[:1] and active.dtype == torch.bool,
                 lambda: f"cg_update_: active must be ({x.shape[0]},) bool, got {tuple(active.shape)} {active.dtype}")


@torch.library.custom_op("subspace_linalg::cg_update_", mutates_args=("x", "r", "rr"))
def cg_update_(x: torch.Tensor, r: torch.Tensor, rr: torch.Tensor, p: torch.Tensor, Ap: torch.Tensor,
               alpha: torch.Tensor, active: torch.Tensor) -> None:
    """In place for every row s with active[s]: x += alpha p, r -= alpha Ap, rr = ||r||^2
    (one pass over the four vectors). x, r, p, Ap (S, n); rr, alpha (S,); active (S,) bool."""
    _check_update(x, r, rr, p, Ap, alpha, active)
    _ref.cg_update_(x, r, rr, p, Ap, alpha, active)


@cg_update_.register_fake
def _(x, r, rr, p, Ap, alpha, active):
    _check_update(x, r, rr, p, Ap, alpha, active)


def _contig(t: torch.Tensor) -> torch.Tensor:
    return t if t.is_contiguous() else t.contiguous()


def _update_native(x, r, rr, p, Ap, alpha, active) -> None:
    """The native call; every tensor contiguous (the caller guarantees it)."""
    C = _native.lib()
    S, n = x.shape
    code = _native.dtype_code(x.dtype)
    ex = _native.exec_args(x)
    nbytes = C.cg_update_workspace_bytes(code, S, n, ex[0]) if ex[0] else 0
    ws = torch.empty(nbytes, dtype=torch.uint8, device=x.device) if nbytes else None
    C.cg_update(code, S, n, x.data_ptr(), r.data_ptr(), rr.data_ptr(), p.data_ptr(), Ap.data_ptr(),
                alpha.data_ptr(), active.data_ptr(), ws.data_ptr() if ws is not None else 0, nbytes, ex)


@cg_update_.register_kernel(("cpu", "cuda"))
def _(x, r, rr, p, Ap, alpha, active):
    _check_update(x, r, rr, p, Ap, alpha, active)
    if x.shape[0] == 0:  # (n == 0 still runs: rr = 0 for the active systems)
        return
    mut = (x, r, rr)
    cs = [_contig(t) for t in mut]
    _update_native(*cs, _contig(p), _contig(Ap), _contig(alpha), _contig(active))
    for t, c in zip(mut, cs):
        if t is not c:
            t.copy_(c)


def _check_dense(A, b, x0, minv, tol, maxiter) -> None:
    torch._check(b.dtype in FLOATING, lambda: f"cg_dense: b must be float32 or float64, got {b.dtype}")
    torch._check(b.dim() == 2, lambda: f"cg_dense: b must be (S, n), got {tuple(b.shape)}")
    S, n = b.shape
    torch._check(A.dim() == 3 and A.shape[1] == n and A.shape[2] == n and A.shape[0] >= 1
                 and S % A.shape[0] == 0,
                 lambda: f"cg_dense: A must be (G, {n}, {n}) with G dividing S = {S}, got {tuple(A.shape)}")
    torch._check(x0.shape == b.shape, lambda: f"cg_dense: x0 must be {tuple(b.shape)}, got {tuple(x0.shape)}")
    torch._check(tol.shape == (S,), lambda: f"cg_dense: tol must be ({S},), got {tuple(tol.shape)}")
    if minv is not None:
        torch._check(minv.shape == b.shape, lambda: f"cg_dense: minv must be {tuple(b.shape)}, got {tuple(minv.shape)}")
    for t in (A, x0, tol) + ((minv,) if minv is not None else ()):
        torch._check(t.dtype == b.dtype, lambda: f"cg_dense: all tensors must have b's dtype {b.dtype}")
    torch._check(maxiter >= 0, lambda: f"cg_dense: maxiter must be >= 0, got {maxiter}")


def _dense_outputs(b):
    S = b.shape[0]
    return (torch.empty_like(b, memory_format=torch.contiguous_format),
            torch.empty(S, dtype=torch.int32, device=b.device),
            torch.empty(S, dtype=b.dtype, device=b.device),
            torch.empty(S, dtype=torch.int32, device=b.device))


@torch.library.custom_op("subspace_linalg::cg_dense", mutates_args=())
def cg_dense(A: torch.Tensor, b: torch.Tensor, x0: torch.Tensor, minv: Optional[torch.Tensor], tol: torch.Tensor,
             maxiter: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batched CG on S small dense SPD systems A_s x = b_s, each stopping on its own at
    ||r_s|| <= tol[s]; A (G, n, n) with G dividing S: system s uses matrix s // (S / G)
    (G = 1: one shared matrix; G = S: one each); b and x0 (S, n), minv (S, n) inverse Jacobi
    diagonal or None. Returns (x (S, n), iterations int32 (S,), residual norm (S,) in b's
    dtype, status int32 (S,): 0 maxiter reached, 1 converged, 2 breakdown)."""
    _check_dense(A, b, x0, minv, tol, maxiter)
    return _ref.cg_dense(A, b, x0, minv, tol, maxiter)


@cg_dense.register_fake
def _(A, b, x0, minv, tol, maxiter):
    _check_dense(A, b, x0, minv, tol, maxiter)
    return _dense_outputs(b)


@cg_dense.register_kernel(("cpu", "cuda"))
def _(A, b, x0, minv, tol, maxiter):
    _check_dense(A, b, x0, minv, tol, maxiter)
    x, iters, res, status = _dense_outputs(b)
    S, n = b.shape
    if S == 0:
        return x, iters, res, status
    C = _native.lib()
    A, b, tol = _contig(A), _contig(b), _contig(tol)
    minv = _contig(minv) if minv is not None else None
    x.copy_(x0)
    a_stride = 0 if A.shape[0] == 1 else n * n
    C.cg_dense(_native.dtype_code(b.dtype), S, n, A.data_ptr(), a_stride, S // A.shape[0], b.data_ptr(), x.data_ptr(),
               minv.data_ptr() if minv is not None else 0, tol.data_ptr(), int(maxiter), iters.data_ptr(),
               res.data_ptr(), status.data_ptr(), _native.exec_args(b))
    return x, iters, res, status


def _check_cg_csr(crow, col, val, b, x0, minv, tol, maxiter) -> None:
    torch._check(b.dtype in FLOATING and b.dim() == 2, lambda: f"cg_csr: b must be (S, n) float32/64, got {tuple(b.shape)} {b.dtype}")
    S, n = b.shape
    torch._check(crow.shape == (n + 1,) and crow.dtype == torch.int64 and col.dtype == torch.int64,
                 lambda: f"cg_csr: crow must be ({n + 1},) int64 and col int64, got {tuple(crow.shape)} {crow.dtype}, {col.dtype}")
    torch._check(val.dtype == b.dtype and val.shape == col.shape and val.dim() == 1,
                 lambda: f"cg_csr: val must be 1-D {b.dtype} with col's length, got {tuple(val.shape)} {val.dtype}")
    torch._check(x0.shape == b.shape and x0.dtype == b.dtype, lambda: f"cg_csr: x0 must be {tuple(b.shape)} {b.dtype}")
    torch._check(tol.shape == (S,) and tol.dtype == b.dtype, lambda: f"cg_csr: tol must be ({S},) {b.dtype}")
    if minv is not None:
        torch._check(minv.shape == b.shape and minv.dtype == b.dtype, lambda: f"cg_csr: minv must be {tuple(b.shape)} {b.dtype}")
    torch._check(maxiter >= 0, lambda: f"cg_csr: maxiter must be >= 0, got {maxiter}")


@torch.library.custom_op("subspace_linalg::cg_csr", mutates_args=())
def cg_csr(crow: torch.Tensor, col: torch.Tensor, val: torch.Tensor, b: torch.Tensor, x0: torch.Tensor,
           minv: Optional[torch.Tensor], tol: torch.Tensor, maxiter: int
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """CG on S SPD systems A x_s = b_s sharing one CSR matrix A (n x n: crow, col, val),
    each stopping on its own at ||r_s|| <= tol[s]; the contract of :func:`cg_dense`
    otherwise (minv: inverse Jacobi diagonal rows or None). CPU: the whole loop native,
    a system per thread; CUDA: the pure-torch loop (reference/krylov.py)."""
    _check_cg_csr(crow, col, val, b, x0, minv, tol, maxiter)
    return _ref.cg_csr(crow, col, val, b, x0, minv, tol, maxiter)


@cg_csr.register_fake
def _(crow, col, val, b, x0, minv, tol, maxiter):
    _check_cg_csr(crow, col, val, b, x0, minv, tol, maxiter)
    return _dense_outputs(b)


@cg_csr.register_kernel("cpu")
def _(crow, col, val, b, x0, minv, tol, maxiter):
    _check_cg_csr(crow, col, val, b, x0, minv, tol, maxiter)
    x, iters, res, status = _dense_outputs(b)
    S, n = b.shape
    if S == 0:
        return x, iters, res, status
    crow, col, val, b, tol = (_contig(t) for t in (crow, col, val, b, tol))
    minv = _contig(minv) if minv is not None else None
    x.copy_(x0)
    _native.lib().cg_csr(_native.dtype_code(b.dtype), S, n, crow.data_ptr(), col.data_ptr(), val.data_ptr(),
                         val.numel(), b.data_ptr(), x.data_ptr(), minv.data_ptr() if minv is not None else 0,
                         tol.data_ptr(), int(maxiter), iters.data_ptr(), res.data_ptr(), status.data_ptr())
    return x, iters, res, status


@cg_csr.register_kernel("cuda")
def _(crow, col, val, b, x0, minv, tol, maxiter):
    _check_cg_csr(crow, col, val, b, x0, minv, tol, maxiter)
    return _ref.cg_csr(crow, col, val, b, x0, minv, tol, maxiter)


def cg_dense_max_n(device_type: str) -> int:
    """Largest n the native whole-loop kernel takes on this device type."""
    return int(_native.lib().cg_dense_max_n(1 if device_type == "cuda" else 0))


# --- cg_step_ / cg_direction_: the per-system CG loop on any operator ----------------------

def _check_step(x, r, rr, status, iters, p, Ap, rz, tol2) -> None:
    torch._check(x.dtype in FLOATING, lambda: f"cg_step_: x must be float32 or float64, got {x.dtype}")
    torch._check(x.dim() == 2, lambda: f"cg_step_: x must be (S, n), got {tuple(x.shape)}")
    for name, t in (("r", r), ("p", p), ("Ap", Ap)):
        torch._check(t.shape == x.shape and t.dtype == x.dtype,
                     lambda: f"cg_step_: {name} must match x {tuple(x.shape)} {x.dtype}, got {tuple(t.shape)} {t.dtype}")
    for name, t in (("rr", rr), ("rz", rz), ("tol2", tol2)):
        torch._check(t.shape == x.shape[:1] and t.dtype == x.dtype,
                     lambda: f"cg_step_: {name} must be ({x.shape[0]},) {x.dtype}, got {tuple(t.shape)} {t.dtype}")
    for name, t in (("status", status), ("iters", iters)):
        torch._check(t.shape == x.shape[:1] and t.dtype == torch.int32,
                     lambda: f"cg_step_: {name} must be ({x.shape[0]},) int32, got {tuple(t.shape)} {t.dtype}")


@torch.library.custom_op("subspace_linalg::cg_step_", mutates_args=("x", "r", "rr", "status", "iters"))
def cg_step_(x: torch.Tensor, r: torch.Tensor, rr: torch.Tensor, status: torch.Tensor, iters: torch.Tensor,
             p: torch.Tensor, Ap: torch.Tensor, rz: torch.Tensor, tol2: torch.Tensor) -> None:
    """The per-system CG step between two operator applications, in place (see
    subspace_linalg.reference.krylov.cg_step_): p.Ap, breakdown test, x and r update,
    r.r, iteration count and convergence flag, for every running system."""
    _check_step(x, r, rr, status, iters, p, Ap, rz, tol2)
    _ref.cg_step_(x, r, rr, status, iters, p, Ap, rz, tol2)


@cg_step_.register_fake
def _(x, r, rr, status, iters, p, Ap, rz, tol2):
    _check_step(x, r, rr, status, iters, p, Ap, rz, tol2)


def _step_native(x, r, rr, status, iters, p, Ap, rz, tol2) -> None:
    """The native call; every tensor contiguous (the caller guarantees it)."""
    C = _native.lib()
    S, n = x.shape
    code = _native.dtype_code(x.dtype)
    ex = _native.exec_args(x)
    nbytes = C.cg_step_workspace_bytes(code, S, n, ex[0]) if ex[0] else 0
    ws = torch.empty(nbytes, dtype=torch.uint8, device=x.device) if nbytes else None
    C.cg_step(code, S, n, x.data_ptr(), r.data_ptr(), rr.data_ptr(), status.data_ptr(), iters.data_ptr(),
              p.data_ptr(), Ap.data_ptr(), rz.data_ptr(), tol2.data_ptr(),
              ws.data_ptr() if ws is not None else 0, nbytes, ex)


@cg_step_.register_kernel(("cpu", "cuda"))
def _(x, r, rr, status, iters, p, Ap, rz, tol2):
    _check_step(x, r, rr, status, iters, p, Ap, rz, tol2)
    if x.numel() == 0:
        return
    mut = (x, r, rr, status, iters)
    if not all(t.is_contiguous() for t in mut):
        cs = [_contig(t) for t in mut]
        _step_native(*cs, _contig(p), _contig(Ap), _contig(rz), _contig(tol2))
        for t, c in zip(mut, cs):
            if t is not c:
                t.copy_(c)
        return
    _step_native(x, r, rr, status, iters, _contig(p), _contig(Ap), _contig(rz), _contig(tol2))


def _check_direction(p, z, rz_new, rz, status) -> None:
    torch._check(p.dtype in FLOATING and p.dim() == 2,
                 lambda: f"cg_direction_: p must be (S, n) float32/float64, got {tuple(p.shape)} {p.dtype}")
    torch._check(z.shape == p.shape and z.dtype == p.dtype, lambda: f"cg_direction_: z must match p {tuple(p.shape)}")
    for name, t in (("rz_new", rz_new), ("rz", rz)):
        torch._check(t.shape == p.shape[:1] and t.dtype == p.dtype,
                     lambda: f"cg_direction_: {name} must be ({p.shape[0]},) {p.dtype}, got {tuple(t.shape)} {t.dtype}")
    torch._check(status.shape == p.shape[:1] and status.dtype == torch.int32,
                 lambda: f"cg_direction_: status must be ({p.shape[0]},) int32, got {tuple(status.shape)} {status.dtype}")


@torch.library.custom_op("subspace_linalg::cg_direction_", mutates_args=("p", "rz", "status"))
def cg_direction_(p: torch.Tensor, z: torch.Tensor, rz_new: torch.Tensor, rz: torch.Tensor, status: torch.Tensor) -> None:
    """In place for every running system: p = z + (rz_new / rz) p, rz = rz_new;
    breakdown (status 2) when rz_new <= 0 or non-finite."""
    _check_direction(p, z, rz_new, rz, status)
    _ref.cg_direction_(p, z, rz_new, rz, status)


@cg_direction_.register_fake
def _(p, z, rz_new, rz, status):
    _check_direction(p, z, rz_new, rz, status)


def _direction_native(p, z, rz_new, rz, status) -> None:
    C = _native.lib()
    S, n = p.shape
    code = _native.dtype_code(p.dtype)
    ex = _native.exec_args(p)
    nbytes = C.cg_direction_workspace_bytes(code, S, ex[0]) if ex[0] else 0
    ws = torch.empty(nbytes, dtype=torch.uint8, device=p.device) if nbytes else None
    C.cg_direction(code, S, n, p.data_ptr(), z.data_ptr(), rz_new.data_ptr(), rz.data_ptr(), status.data_ptr(),
                   ws.data_ptr() if ws is not None else 0, nbytes, ex)


@cg_direction_.register_kernel(("cpu", "cuda"))
def _(p, z, rz_new, rz, status):
    _check_direction(p, z, rz_new, rz, status)
    if p.numel() == 0:
        return
    mut = (p, rz, status)
    cs = [_contig(t) for t in mut]
    _direction_native(cs[0], _contig(z), _contig(rz_new), cs[1], cs[2])
    for t, c in zip(mut, cs):
        if t is not c:
            t.copy_(c)


def native_ok(t: torch.Tensor) -> bool:
    """Whether the eager fast path may call the native kernels directly for t's device."""
    return t.device.type in ("cpu", "cuda") and _native.available() and (t.device.type == "cpu" or _native.has_cuda())


def cg_step(x, r, rr, status, iters, p, Ap, rz, tol2) -> None:
    """Eager hot path of the driver: the native kernel without the dispatcher's ~30 us per
    call (every tensor the driver's own contiguous buffer); the registered op under
    torch.compile and on devices without a native kernel."""
    if torch.compiler.is_compiling() or not native_ok(x):
        torch.ops.subspace_linalg.cg_step_.default(x, r, rr, status, iters, p, Ap, rz, tol2)
    else:
        _step_native(x, r, rr, status, iters, p, Ap, rz, tol2)


def cg_update(x, r, rr, p, Ap, alpha, active) -> None:
    """Eager hot path of cg_update_ (see cg_step)."""
    if torch.compiler.is_compiling() or not native_ok(x):
        torch.ops.subspace_linalg.cg_update_.default(x, r, rr, p, Ap, alpha, active)
    else:
        _update_native(x, r, rr, p, Ap, alpha, active)


def cg_direction(p, z, rz_new, rz, status) -> None:
    """Eager hot path of cg_direction_ (see cg_step)."""
    if torch.compiler.is_compiling() or not native_ok(p):
        torch.ops.subspace_linalg.cg_direction_.default(p, z, rz_new, rz, status)
    else:
        _direction_native(p, z, rz_new, rz, status)


# --- csr_matvec: the CSR operator of the Krylov drivers ----------------------------------

def _check_csr(crow, col, val, x, m) -> None:
    torch._check(val.dtype in FLOATING, lambda: f"csr_matvec: values must be float32 or float64, got {val.dtype}")
    torch._check(x.dtype == val.dtype and x.dim() == 2,
                 lambda: f"csr_matvec: x must be (S, n) of the values' dtype, got {tuple(x.shape)} {x.dtype}")
    torch._check(crow.dtype == torch.int64 and col.dtype == torch.int64,
                 lambda: "csr_matvec: crow and col must be int64")
    torch._check(crow.dim() == 1 and crow.shape[0] == m + 1,
                 lambda: f"csr_matvec: crow must be ({m + 1},), got {tuple(crow.shape)}")
    torch._check(col.shape == val.shape and col.dim() == 1,
                 lambda: f"csr_matvec: col and values must be 1-D of equal length, got {tuple(col.shape)} {tuple(val.shape)}")


@torch.library.custom_op("subspace_linalg::csr_matvec", mutates_args=())
def csr_matvec(crow: torch.Tensor, col: torch.Tensor, val: torch.Tensor, x: torch.Tensor, m: int) -> torch.Tensor:
    """A CSR matrix (m, n) given by (crow, col, val) times every row of x (S, n): (S, m)."""
    _check_csr(crow, col, val, x, m)
    return _ref.csr_matvec(crow, col, val, x, m)


@csr_matvec.register_fake
def _(crow, col, val, x, m):
    _check_csr(crow, col, val, x, m)
    return x.new_empty((x.shape[0], m))


def _csr_native(crow, col, val, x, m) -> torch.Tensor:
    """x (S, n) with any strides (rows, or interleaved columns: x = X.mT of a contiguous X
    (n, S), the layout the CPU kernel reads best for several vectors); y (S, m) in the
    same layout as x."""
    S, n = x.shape
    if x.stride(0) == 1 and S > 1:  # interleaved: y interleaved too
        y = torch.empty((m, S), dtype=val.dtype, device=x.device).mT
    else:
        y = torch.empty((S, m), dtype=val.dtype, device=x.device)
    _native.lib().csr_matvec(_native.dtype_code(val.dtype), m, n, S, val.shape[0], crow.data_ptr(), col.data_ptr(),
                             val.data_ptr(), x.data_ptr(), x.stride(0), x.stride(1), y.data_ptr(), y.stride(0),
                             y.stride(1), _native.exec_args(x))
    return y


@csr_matvec.register_kernel(("cpu", "cuda"))
def _(crow, col, val, x, m):
    _check_csr(crow, col, val, x, m)
    return _contig(_csr_native(_contig(crow), _contig(col), _contig(val), x, m))


def csr_matvec_fast(crow, col, val, x, m) -> torch.Tensor:
    """Eager hot path (see cg_step); x (S, n) rows or interleaved (x.stride(0) == 1)."""
    if torch.compiler.is_compiling() or not native_ok(x):
        return torch.ops.subspace_linalg.csr_matvec.default(crow, col, val, x, m)
    return _csr_native(crow, col, val, x, m)


def bind_cg_loop(x: torch.Tensor):
    """(step, direction) for the driver's loop over systems shaped like x (S, n): the native
    kernels with the dtype code, launch arguments and workspaces computed once (the loop
    calls them every iteration on its own contiguous buffers); the registered ops under
    torch.compile and on devices without a native kernel."""
    if torch.compiler.is_compiling() or not native_ok(x) or x.numel() == 0:
        return torch.ops.subspace_linalg.cg_step_.default, torch.ops.subspace_linalg.cg_direction_.default
    C = _native.lib()
    S, n = x.shape
    code = _native.dtype_code(x.dtype)
    ex = _native.exec_args(x)
    ns = C.cg_step_workspace_bytes(code, S, n, ex[0]) if ex[0] else 0
    nd = C.cg_direction_workspace_bytes(code, S, ex[0]) if ex[0] else 0
    ws_s = torch.empty(ns, dtype=torch.uint8, device=x.device) if ns else None
    ws_d = torch.empty(nd, dtype=torch.uint8, device=x.device) if nd else None
    ps = ws_s.data_ptr() if ws_s is not None else 0
    pd = ws_d.data_ptr() if ws_d is not None else 0
    c_step, c_dir = C.cg_step, C.cg_direction

    def step(x, r, rr, status, iters, p, Ap, rz, tol2, _keep=(ws_s, ws_d)):
        c_step(code, S, n, x.data_ptr(), r.data_ptr(), rr.data_ptr(), status.data_ptr(), iters.data_ptr(),
               p.data_ptr(), Ap.data_ptr(), rz.data_ptr(), tol2.data_ptr(), ps, ns, ex)

    def direction(p, z, rz_new, rz, status):
        c_dir(code, S, n, p.data_ptr(), z.data_ptr(), rz_new.data_ptr(), rz.data_ptr(), status.data_ptr(), pd, nd, ex)

    return step, direction
