"""subspace_linalg:: small dense batched ops (k x k stage of randomized low-rank methods).

    cholesky_small(A) -> (L, info)                       A (..., n, n) symmetric (lower triangle read)
    tril_inverse_small(L) -> (X, info)                   X = L^{-1}, L lower triangular
    eigh_jacobi(A, max_sweeps) -> (w, V, info)           w ascending, A = V diag(w) V^T
    svd_jacobi(A, max_sweeps) -> (U, S, Vh, info)        A (..., m, n), m >= n; S descending

float32/float64, n <= SMALL_DENSE_MAX_N (512); info is int32 of the batch shape (0 = ok;
see each op). Outputs are contiguous. The cpu and cuda kernels call the native code; other
devices use the pure-torch reference (subspace_linalg/reference/small_dense.py).
"""
from __future__ import annotations

import math

import torch

from .. import _native
from .._dtypes import FLOATING
from ..reference import small_dense as _ref

MAX_N = 512  # == sl::kSmallDenseMaxN (checked against _C.SMALL_DENSE_MAX_N in the tests)


def _check_square(op: str, A: torch.Tensor) -> None:
    torch._check(A.dtype in FLOATING, lambda: f"{op}: A must be float32 or float64, got {A.dtype}")
    torch._check(A.dim() >= 2, lambda: f"{op}: A must have at least 2 dims, got shape {tuple(A.shape)}")
    torch._check(A.shape[-1] == A.shape[-2], lambda: f"{op}: A must be square, got shape {tuple(A.shape)}")
    torch._check(A.shape[-1] <= MAX_N, lambda: f"{op}: n must be <= {MAX_N}, got {A.shape[-1]}")


def _info(A: torch.Tensor) -> torch.Tensor:
    return torch.empty(A.shape[:-2], dtype=torch.int32, device=A.device)


def _zero_info(batch: int, A: torch.Tensor) -> torch.Tensor:
    """The kernels' info, zero first: the native launchers return before writing it when
    the matrices are empty (n = 0), whose info is 0 (as the reference's)."""
    return torch.zeros(batch, dtype=torch.int32, device=A.device)


def _nbatch(A: torch.Tensor) -> int:
    return math.prod(A.shape[:-2])


def _batched(A: torch.Tensor) -> torch.Tensor:
    """A contiguous (batch, rows, cols) copy-or-view of A (the batch counted, not inferred:
    a batch of empty matrices has no elements to infer it from)."""
    return A.reshape((_nbatch(A),) + tuple(A.shape[-2:])).contiguous()


def _scale(A: torch.Tensor) -> torch.Tensor:
    """Per-matrix power of two near max |a_ij| (1 for zero matrices), shape (batch, 1, 1):
    dividing by it is exact and keeps the Jacobi arithmetic away from overflow."""
    if A.numel() == 0:  # (empty matrices: amax has nothing to reduce)
        return torch.ones(A.shape[:-2] + (1, 1), dtype=A.dtype, device=A.device)
    amax = A.abs().amax(dim=(-2, -1), keepdim=True)
    _, e = torch.frexp(amax)
    s = torch.ldexp(torch.ones_like(amax), e)
    return torch.where(amax > 0, s, torch.ones_like(amax))


CUDA_NATIVE_MAX_N = 32      # the native CUDA small kernels (one block per matrix) up to this n ...
CUDA_NATIVE_MIN_BATCH = 64  # ... or for batches of at least this many matrices


def cuda_native_better(A: torch.Tensor) -> bool:
    """The one rule for the native CUDA small kernels (one thread block per matrix, column
    after column): right for small matrices or many of them, not for a few large ones, which
    they would leave to a single multiprocessor. Rule of thumb, not yet measured on a GPU:
    min(m, n) <= 32 or a batch of 64 and more. Used for the Cholesky and the triangular
    inverse here and for the Jacobi SVD / eigh in ``small_dense._use_jacobi``."""
    m, n = A.shape[-2], A.shape[-1]
    return min(m, n) <= CUDA_NATIVE_MAX_N or A.numel() // max(m * n, 1) >= CUDA_NATIVE_MIN_BATCH


def _cuda_library_better(A: torch.Tensor) -> bool:
    """On CUDA, where cuSOLVER's blocked potrf and cuBLAS's trsm (the pure-torch reference,
    same contract) beat the native Cholesky / triangular inverse (:func:`cuda_native_better`)."""
    return A.device.type == "cuda" and not cuda_native_better(A)


def _polish(V: torch.Tensor) -> torch.Tensor:
    """One Newton-Schulz step towards the nearest orthonormal matrix, V (3I - V^T V) / 2:
    removes the O(sqrt(rotations) eps) drift the accumulated Jacobi rotations leave in the
    orthonormality (to ~sqrt(n) eps) and leaves the residuals at their level."""
    return 1.5 * V - 0.5 * (V @ (V.mT @ V))


# ---------------------------------------------------------------- cholesky_small
@torch.library.custom_op("subspace_linalg::cholesky_small", mutates_args=())
def cholesky_small(A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched Cholesky A = L L^T (lower triangle of A read). info[b] = j + 1 for the first
    pivot j that is not positive and finite (rows >= j of L zero), else 0."""
    _check_square("cholesky_small", A)
    return _ref.cholesky_small(A)


@cholesky_small.register_fake
def _(A):
    _check_square("cholesky_small", A)
    return torch.empty(A.shape, dtype=A.dtype, device=A.device), _info(A)


@cholesky_small.register_kernel(("cpu", "cuda"))
def _(A):
    _check_square("cholesky_small", A)
    if _cuda_library_better(A):
        return _ref.cholesky_small(A)
    n = A.shape[-1]
    a = _batched(A)
    L = torch.empty_like(a)
    info = _zero_info(a.shape[0], A)
    _native.lib().cholesky_small(_native.dtype_code(A.dtype), a.data_ptr(), L.data_ptr(), info.data_ptr(),
                                 a.shape[0], n, _native.exec_args(A))
    return L.reshape(A.shape), info.reshape(A.shape[:-2])


# ---------------------------------------------------------------- tril_inverse_small
@torch.library.custom_op("subspace_linalg::tril_inverse_small", mutates_args=())
def tril_inverse_small(L: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched inverse of the lower triangle of L. info[b] = j + 1 for the first zero or
    non-finite diagonal entry (X zero), else 0."""
    _check_square("tril_inverse_small", L)
    return _ref.tril_inverse_small(L)


@tril_inverse_small.register_fake
def _(L):
    _check_square("tril_inverse_small", L)
    return torch.empty(L.shape, dtype=L.dtype, device=L.device), _info(L)


@tril_inverse_small.register_kernel(("cpu", "cuda"))
def _(L):
    _check_square("tril_inverse_small", L)
    if _cuda_library_better(L):
        return _ref.tril_inverse_small(L)
    n = L.shape[-1]
    lb = _batched(L)
    X = torch.empty_like(lb)
    info = _zero_info(lb.shape[0], L)
    _native.lib().tril_inverse_small(_native.dtype_code(L.dtype), lb.data_ptr(), X.data_ptr(), info.data_ptr(),
                                     lb.shape[0], n, _native.exec_args(L))
    return X.reshape(L.shape), info.reshape(L.shape[:-2])


# ---------------------------------------------------------------- eigh_jacobi
@torch.library.custom_op("subspace_linalg::eigh_jacobi", mutates_args=())
def eigh_jacobi(A: torch.Tensor, max_sweeps: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batched symmetric eigendecomposition by two-sided cyclic Jacobi (the whole of A is
    read; pass a symmetric A). Returns (eigenvalues ascending (..., n), eigenvectors as
    columns (..., n, n), info: 1 where max_sweeps were reached before convergence)."""
    _check_square("eigh_jacobi", A)
    return _ref.eigh_jacobi(A, max_sweeps)


@eigh_jacobi.register_fake
def _(A, max_sweeps):
    _check_square("eigh_jacobi", A)
    return (torch.empty(A.shape[:-1], dtype=A.dtype, device=A.device),
            torch.empty(A.shape, dtype=A.dtype, device=A.device), _info(A))


@eigh_jacobi.register_kernel(("cpu", "cuda"))
def _(A, max_sweeps):
    _check_square("eigh_jacobi", A)
    n = A.shape[-1]
    a = _batched(A)
    s = _scale(a)
    work = (a / s).contiguous()
    B = work.shape[0]
    w = torch.empty(B, n, dtype=A.dtype, device=A.device)
    vt = torch.empty_like(work)
    info = _zero_info(B, A)
    _native.lib().eigh_jacobi(_native.dtype_code(A.dtype), work.data_ptr(), w.data_ptr(), vt.data_ptr(),
                              info.data_ptr(), B, n, int(max_sweeps), _native.exec_args(A))
    w, order = torch.sort(w * s.view(B, 1), dim=-1)
    V = _polish(torch.gather(vt, 1, order.unsqueeze(-1).expand(B, n, n)).mT).contiguous()
    return w.reshape(A.shape[:-1]), V.reshape(A.shape), info.reshape(A.shape[:-2])


# ---------------------------------------------------------------- svd_jacobi
def _check_tall(op: str, A: torch.Tensor) -> None:
    torch._check(A.dtype in FLOATING, lambda: f"{op}: A must be float32 or float64, got {A.dtype}")
    torch._check(A.dim() >= 2, lambda: f"{op}: A must have at least 2 dims, got shape {tuple(A.shape)}")
    torch._check(A.shape[-2] >= A.shape[-1], lambda: f"{op}: A must have m >= n, got shape {tuple(A.shape)}")
    torch._check(A.shape[-1] <= MAX_N, lambda: f"{op}: n must be <= {MAX_N}, got {A.shape[-1]}")


@torch.library.custom_op("subspace_linalg::svd_jacobi", mutates_args=())
def svd_jacobi(A: torch.Tensor, max_sweeps: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batched thin SVD of A (..., m, n), m >= n, by one-sided (Hestenes) Jacobi. Returns
    (U (..., m, n) orthonormal, S (..., n) descending, Vh (..., n, n), info: 1 where
    max_sweeps were reached before convergence)."""
    _check_tall("svd_jacobi", A)
    return _ref.svd_jacobi(A, max_sweeps)


@svd_jacobi.register_fake
def _(A, max_sweeps):
    _check_tall("svd_jacobi", A)
    m, n = A.shape[-2], A.shape[-1]
    b = A.shape[:-2]
    return (torch.empty(b + (m, n), dtype=A.dtype, device=A.device), torch.empty(b + (n,), dtype=A.dtype, device=A.device),
            torch.empty(b + (n, n), dtype=A.dtype, device=A.device), _info(A))


def _complete_columns(U: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    """Replace the columns of U flagged in ``zero`` (trailing: S is sorted) by an orthonormal
    completion of the others (Householder QR of U with those columns zeroed)."""
    Uz = torch.where(zero.unsqueeze(-2), torch.zeros((), dtype=U.dtype, device=U.device), U)
    Q, _ = torch.linalg.qr(Uz)
    return torch.where(zero.unsqueeze(-2), Q, U)


@svd_jacobi.register_kernel(("cpu", "cuda"))
def _(A, max_sweeps):
    _check_tall("svd_jacobi", A)
    m, n = A.shape[-2], A.shape[-1]
    a = A.reshape((_nbatch(A), m, n))
    B = a.shape[0]
    s = _scale(a)
    at = (a / s).mT.contiguous()  # (B, n, m): row p = column p of A
    vt = torch.empty(B, n, n, dtype=A.dtype, device=A.device)
    info = _zero_info(B, A)
    _native.lib().svd_jacobi(_native.dtype_code(A.dtype), at.data_ptr(), vt.data_ptr(), info.data_ptr(),
                             B, m, n, int(max_sweeps), _native.exec_args(A))
    S = torch.linalg.vector_norm(at, dim=-1)  # (B, n)
    S, order = torch.sort(S, dim=-1, descending=True)
    at = torch.gather(at, 1, order.unsqueeze(-1).expand(B, n, m))
    Vh = torch.gather(vt, 1, order.unsqueeze(-1).expand(B, n, n))
    zero = S <= torch.finfo(A.dtype).tiny
    U = (at / torch.where(zero, torch.ones_like(S), S).unsqueeze(-1)).mT
    if n and bool(zero.any()):  # rank-deficient: complete U to an orthonormal basis
        U = _complete_columns(U, zero)
    U = _polish(U)
    Vh = _polish(Vh.mT).mT
    S = S * s.view(B, 1)
    b = A.shape[:-2]
    return (U.contiguous().reshape(b + (m, n)), S.reshape(b + (n,)), Vh.contiguous().reshape(b + (n, n)),
            info.reshape(b))
