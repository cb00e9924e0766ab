"""subspace_linalg::spm_contract and subspace_linalg::spm_power — the inner kernels of
the Subspace Power Method (layout: csrc/include/sl/spm.h, reference: reference/spm.py)."""
from __future__ import annotations

import torch

from .. import _native
from .._dtypes import FLOATING
from ..reference import spm as _ref


def _check(V: torch.Tensor, X: torch.Tensor) -> None:
    torch._check(V.dtype in FLOATING, lambda: f"spm: V must be float32 or float64, got {V.dtype}")
    torch._check(X.dtype == V.dtype, lambda: f"spm: X must have V's dtype {V.dtype}, got {X.dtype}")
    torch._check(V.dim() == 2 and X.dim() == 2, lambda: "spm: V must be (D, R) and X (B, d)")
    d = X.shape[1]
    torch._check(V.shape[0] == d * (d + 1) // 2,
                 lambda: f"spm: V must have d (d + 1) / 2 = {d * (d + 1) // 2} rows for X of shape "
                         f"{tuple(X.shape)}, got {tuple(V.shape)}")
    torch._check(V.shape[1] >= 1 and d >= 1, lambda: "spm: need R >= 1 and d >= 1")


def _workspace(V: torch.Tensor, X: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    """(buffer, pointer, bytes): CUDA workspace, an empty tensor on the CPU."""
    if not X.is_cuda:
        return X, 0, 0
    C = _native.lib()
    nbytes = int(C.spm_workspace_bytes(_native.dtype_code(X.dtype), X.shape[1], V.shape[1], X.shape[0]))
    ws = torch.empty(max(nbytes, 1), dtype=torch.uint8, device=X.device)
    return ws, ws.data_ptr(), nbytes


@torch.library.custom_op("subspace_linalg::spm_contract", mutates_args=())
def spm_contract(V: torch.Tensor, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each row x of X (B, d): alpha = V^T (x (x) x) (B, R) and grad = sum_r alpha_r V_r x
    (B, d), V (D, R) in the packed symmetric layout; dtype of the inputs."""
    _check(V, X)
    return _ref.contract(V, X)


@spm_contract.register_fake
def _(V, X):
    _check(V, X)
    return X.new_empty(X.shape[0], V.shape[1]), X.new_empty(X.shape)


@spm_contract.register_kernel(("cpu", "cuda"))
def _(V, X):
    _check(V, X)
    V, X = V.contiguous(), X.contiguous()
    B, d = X.shape
    alpha = X.new_empty(B, V.shape[1])
    grad = X.new_empty(B, d)
    ws, wp, wb = _workspace(V, X)
    _native.lib().spm_contract(_native.dtype_code(X.dtype), d, V.shape[1], B, V.data_ptr(), X.data_ptr(),
                               alpha.data_ptr(), grad.data_ptr(), wp, wb, _native.exec_args(X))
    return alpha, grad


@torch.library.custom_op("subspace_linalg::spm_power", mutates_args=())
def spm_power(V: torch.Tensor, X0: torch.Tensor, maxiter: int, tol: float, cn: float
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Shifted power iteration of SPM from each unit row of X0 (B, d): returns the final
    points X (B, d), F(x) = |V^T (x (x) x)|^2 (B,) in X0's dtype and the iteration counts
    (B,) int64."""
    _check(V, X0)
    return _ref.power(V, X0, maxiter, tol, cn)


@spm_power.register_fake
def _(V, X0, maxiter, tol, cn):
    _check(V, X0)
    B = X0.shape[0]
    return X0.new_empty(X0.shape), X0.new_empty(B), X0.new_empty(B, dtype=torch.int64)


@spm_power.register_kernel(("cpu", "cuda"))
def _(V, X0, maxiter, tol, cn):
    _check(V, X0)
    V = V.contiguous()
    X = X0.clone(memory_format=torch.contiguous_format)
    B, d = X.shape
    f = X.new_empty(B)
    iters = torch.empty(B, dtype=torch.int64, device=X.device)
    ws, wp, wb = _workspace(V, X)
    _native.lib().spm_power(_native.dtype_code(X.dtype), d, V.shape[1], B, V.data_ptr(), X.data_ptr(),
                            f.data_ptr(), iters.data_ptr(), int(maxiter), float(tol), float(cn), wp, wb,
                            _native.exec_args(X))
    return X, f, iters


def _check_extract(V, D1, U, G, C, odd):
    torch._check(V.dtype in FLOATING, lambda: f"spm_extract: V must be float32 or float64, got {V.dtype}")
    for name, t in (("D1", D1), ("G", G), ("C", C)) + ((("U", U),) if odd else ()):
        torch._check(t.dtype == V.dtype, lambda: f"spm_extract: {name} must have V's dtype {V.dtype}, got {t.dtype}")
    torch._check(V.dim() == 2 and G.dim() == 3 and C.dim() == 3 and D1.dim() == 2,
                 lambda: "spm_extract: V (D, R), D1 (R, R), G (R, ntries, d), C (R, ntries, R)")
    R = V.shape[1]
    d = G.shape[2]
    torch._check(V.shape[0] == d * (d + 1) // 2 and R >= 1 and d >= 1,
                 lambda: f"spm_extract: V must be (d (d + 1) / 2, R) for d = {d}, got {tuple(V.shape)}")
    torch._check(tuple(D1.shape) == (R, R) and G.shape[0] == R and tuple(C.shape) == (R, G.shape[1], R)
                 and G.shape[1] >= 1,
                 lambda: f"spm_extract: shapes V {tuple(V.shape)}, D1 {tuple(D1.shape)}, G {tuple(G.shape)}, "
                         f"C {tuple(C.shape)} do not match")
    if odd:
        torch._check(tuple(U.shape) == (d, R), lambda: f"spm_extract: U must be ({d}, {R}), got {tuple(U.shape)}")


@torch.library.custom_op("subspace_linalg::spm_extract", mutates_args=())
def spm_extract(V: torch.Tensor, D1: torch.Tensor, U: torch.Tensor, G: torch.Tensor, C: torch.Tensor, odd: bool,
                maxiter: int, tol: float, cn: float, frestol: float
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All R components of SPM in one call (from the starts given by G, C, the search of
    csrc/include/sl/spm.h: power iteration finished by safeguarded Newton steps; projection
    weights, Householder deflation after each but the last): returns weights
    (R,), factors (R, d) (row k-1 = component k) and the best F (R,), in V's dtype. U is
    (d, R) for odd orders and ignored for even ones."""
    _check_extract(V, D1, U, G, C, odd)
    return _ref.extract(V, D1, U, G, C, odd, maxiter, tol, cn, frestol)


@spm_extract.register_fake
def _(V, D1, U, G, C, odd, maxiter, tol, cn, frestol):
    _check_extract(V, D1, U, G, C, odd)
    R, d = V.shape[1], G.shape[2]
    return V.new_empty(R), V.new_empty(R, d), V.new_empty(R)


@spm_extract.register_kernel(("cpu", "cuda"))
def _(V, D1, U, G, C, odd, maxiter, tol, cn, frestol):
    _check_extract(V, D1, U, G, C, odd)
    V, D1, G, C = V.contiguous(), D1.contiguous(), G.contiguous(), C.contiguous()
    U = U.contiguous() if odd else V
    R, nt, d = G.shape
    w, F, fb = V.new_empty(R), V.new_empty(R, d), V.new_empty(R)
    C_ = _native.lib()
    code = _native.dtype_code(V.dtype)
    ws, wp, wb = V, 0, 0
    if V.is_cuda:
        wb = int(C_.spm_extract_workspace_bytes(code, d, R))
        ws = torch.empty(max(wb, 1), dtype=torch.uint8, device=V.device)
        wp = ws.data_ptr()
    C_.spm_extract(code, d, R, nt, bool(odd), V.data_ptr(), D1.data_ptr(), U.data_ptr(), G.data_ptr(), C.data_ptr(),
                   w.data_ptr(), F.data_ptr(), fb.data_ptr(), int(maxiter), float(tol), float(cn), float(frestol),
                   wp, wb, _native.exec_args(V))
    return w, F, fb


def _check_cp3(T, rank, ntries, maxiter, seed):
    torch._check(T.dtype in FLOATING, lambda: f"spm_cp3: T must be float32 or float64, got {T.dtype}")
    torch._check(T.dim() == 3 and T.shape[0] == T.shape[1] == T.shape[2] and T.shape[0] >= 1,
                 lambda: f"spm_cp3: T must be (d, d, d) with d >= 1, got {tuple(T.shape)}")
    torch._check(0 <= rank <= T.shape[0], lambda: f"spm_cp3: rank must be in [0, {T.shape[0]}], got {rank}")
    torch._check(ntries >= 1 and maxiter >= 1, lambda: f"spm_cp3: need ntries >= 1, maxiter >= 1, got {ntries}, {maxiter}")
    torch._check(0 <= seed < 2 ** 63, lambda: f"spm_cp3: seed must be in [0, 2^63), got {seed}")


@torch.library.custom_op("subspace_linalg::spm_cp3", mutates_args=())
def spm_cp3(T: torch.Tensor, rank: int, ntries: int, maxiter: int, tol: float, cn: float, frestol: float, seed: int
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The whole SPM of a symmetric order-3 tensor T (d, d, d) (csrc/include/sl/spm.h:
    spm_cp3_cpu): weights (d,) and factors (d, d) (the first R entries / columns), the
    flattening's singular values (d,), and info (8,) float64 = [min T, max T, the two
    asymmetries, R, numerical rank, 1 - min F, status] (status 0 ok, 1 T rejected, 2 rank
    above the numerical rank, 3 rank 0). rank 0: found from the spectrum."""
    _check_cp3(T, rank, ntries, maxiter, seed)
    return _ref.cp3(T, rank, ntries, maxiter, tol, cn, frestol, seed)


@spm_cp3.register_fake
def _(T, rank, ntries, maxiter, tol, cn, frestol, seed):
    _check_cp3(T, rank, ntries, maxiter, seed)
    d = T.shape[0]
    return T.new_empty(d), T.new_empty(d, d), T.new_empty(d), T.new_empty(8, dtype=torch.float64)


def cp3_cpu(T, rank, ntries, maxiter, tol, cn, frestol, seed):
    """The CPU kernel of spm_cp3 without the checks (sl.spm calls it directly outside
    torch.compile: the dispatcher costs ~15 us a call, some 5% of a d = 20 decomposition)."""
    T = T.contiguous()
    d = T.shape[0]
    w, F, s = T.new_empty(d), T.new_empty(d, d), T.new_empty(d)
    info = torch.empty(8, dtype=torch.float64)
    _native.lib().spm_cp3(_native.dtype_code(T.dtype), d, int(rank), int(ntries), int(maxiter), float(tol), float(cn),
                          float(frestol), int(seed), T.data_ptr(), w.data_ptr(), F.data_ptr(), s.data_ptr(),
                          info.data_ptr())
    return w, F, s, info


@spm_cp3.register_kernel("cpu")
def _(T, rank, ntries, maxiter, tol, cn, frestol, seed):
    _check_cp3(T, rank, ntries, maxiter, seed)
    return cp3_cpu(T, rank, ntries, maxiter, tol, cn, frestol, seed)


@spm_cp3.register_kernel("cuda")
def _(T, rank, ntries, maxiter, tol, cn, frestol, seed):
    # the same steps from torch.linalg (cuSOLVER) and the native CUDA spm_extract / Philox fill
    _check_cp3(T, rank, ntries, maxiter, seed)
    return _ref.cp3(T.contiguous(), rank, ntries, maxiter, tol, cn, frestol, seed,
                    extract=torch.ops.subspace_linalg.spm_extract.default,
                    fill=torch.ops.subspace_linalg.random_fill_.default)
