"""Small dense batched linear algebra for the k x k stage of randomized low-rank methods:
Cholesky with a breakdown flag, triangular solves, symmetric eigendecomposition and SVD
of many small matrices at once (native CPU/OpenMP and CUDA kernels for n <= 512; torch.linalg
beyond).

All functions take leading batch dims. float32/float64 compute in their own precision;
float16/bfloat16 inputs are computed in float32 and the results are float32.
"""
from __future__ import annotations

import warnings

import torch

from . import _validate
from ._dtypes import ALL_FLOATING, compute_dtype
from ._results import EighResult, SVDResult
from .errors import NotConvergedWarning

MAX_N = 512
DEFAULT_SWEEPS = 30
METHODS = ("auto", "jacobi", "torch")


def _cpu_jacobi_better(kind: str, A: torch.Tensor) -> bool:
    """Where the batch-interleaved native Jacobi kernels beat LAPACK on the CPU: many small
    matrices (LAPACK runs a batch one matrix at a time). Measured on an AMD EPYC (2
    threads, MKL; speedup of Jacobi over torch.linalg, median of 5): SVD, float32, n = 16..48
    at batch 32-256: 1.1-1.5x, n = 8 at batch 64/256: 1.2/2.1x, float64 n = 16..48 at
    batch 32-256: 1.1-1.9x; below batch 32 or above n = 48, 0.4-0.9x. eigh, float32,
    n = 16..32 at batch 64/256: 1.2-1.5x; float64 below 1x but at batch 256, n <= 16."""
    m, n = A.shape[-2], A.shape[-1]
    batch = A.numel() // max(m * n, 1)
    if kind == "svd":  # square only: a rectangular A goes through a batched LAPACK QR first
        return m == n and ((16 <= n <= 48 and batch >= 32) or (n < 16 and batch >= 64))
    if A.dtype == torch.float32:
        return (16 <= n <= 32 and batch >= 64) or (n < 16 and batch >= 256)
    return False


def _cuda_jacobi_better(A: torch.Tensor) -> bool:
    """On CUDA: the native Jacobi kernels where the native small kernels' rule takes them
    (``_ops.small_dense.cuda_native_better``: min(m, n) <= 32 or batches of 64 and more)."""
    from ._ops.small_dense import cuda_native_better

    return cuda_native_better(A)


def _use_jacobi(fn: str, method: str, A: torch.Tensor, kind: str) -> bool:
    """"auto": on CUDA the native Jacobi kernels (one thread block per matrix, where
    torch's batched solvers stop at 32 x 32) for small matrices or many of them, and
    cuSOLVER (torch.linalg) for a few larger ones, which one block per matrix would leave
    to a single multiprocessor (:func:`_cuda_jacobi_better`; not yet measured on a GPU); on
    the CPU where they measure faster than LAPACK (:func:`_cpu_jacobi_better`: large
    batches of small matrices), else torch.linalg (LAPACK; 3-20x faster than Jacobi for a
    few matrices at n = 32..128, bench/suites/orth.py); "jacobi" / "torch" force one."""
    _validate.check_choice(fn, "method", method, METHODS)
    if method == "auto":
        if A.device.type == "cuda":
            return _cuda_jacobi_better(A)
        return A.device.type == "cpu" and _cpu_jacobi_better(kind, A)
    return method == "jacobi"


def _ops():
    from . import _ops  # noqa: F401  (registers the ops)

    return torch.ops.subspace_linalg


def _prep(fn: str, name: str, A, check_finite: bool, *, square: bool) -> torch.Tensor:
    _validate.check_tensor(fn, name, A, dtypes=ALL_FLOATING, min_ndim=2)
    if square and A.shape[-1] != A.shape[-2]:
        raise ValueError(f"{fn}: {name} must be square (..., n, n), got shape {tuple(A.shape)}")
    if check_finite:
        _validate.check_finite(fn, name, A)
    return A.to(compute_dtype(A.dtype))


def cholesky_small(A: torch.Tensor, *, check_finite: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched Cholesky factor of symmetric positive definite A (..., n, n) (lower triangle
    read), like ``torch.linalg.cholesky_ex``: returns ``(L, info)`` with L (..., n, n) lower
    triangular and info int32 (...): 0 on success, else j + 1 for the first pivot j that is
    not positive and finite (L's rows >= j are then zero: never NaN). Never raises for an
    indefinite matrix: check ``info``. A NaN or Inf in the lower triangle is reported
    through info as well, so the finiteness check is off by default (``check_finite=True``
    raises ValueError instead)."""
    A = _prep("cholesky_small", "A", A, check_finite, square=True)
    if A.shape[-1] > MAX_N:
        from .reference.small_dense import cholesky_small as ref

        return ref(A)
    return _ops().cholesky_small.default(A)


def tril_inverse_small(L: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched inverse of the lower triangle of L (..., n, n): returns ``(X, info)``, X = L^{-1}
    lower triangular, info int32 (...) = j + 1 for the first zero or non-finite diagonal entry
    (X is zero there), else 0."""
    L = _prep("tril_inverse_small", "L", L, False, square=True)
    if L.shape[-1] > MAX_N:
        from .reference.small_dense import tril_inverse_small as ref

        return ref(L)
    return _ops().tril_inverse_small.default(L)


def solve_cholesky_right(Y: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
    """``Y @ L^{-T}`` = ``Y R^{-1}`` for R = L^T upper triangular: the Q = Y R^{-1} step of
    CholeskyQR. Y (..., m, k), L (..., k, k) lower triangular with a nonzero diagonal
    (ValueError otherwise). Computed as the native triangular inverse of L followed by one
    torch GEMM (faster than a substitution over m rows on CPU and GPU). Returns (..., m, k)
    in the compute dtype of Y."""
    fn = "solve_cholesky_right"
    _validate.check_tensor(fn, "Y", Y, dtypes=ALL_FLOATING, min_ndim=2)
    _validate.check_tensor(fn, "L", L, dtypes=ALL_FLOATING, min_ndim=2)
    if L.shape[-1] != L.shape[-2] or L.shape[-1] != Y.shape[-1]:
        raise ValueError(f"{fn}: L must be (..., k, k) with k = Y.shape[-1] = {Y.shape[-1]}, got shape {tuple(L.shape)}")
    _validate.check_same_device(fn, Y=Y, L=L)
    dt = compute_dtype(Y.dtype)
    X, info = tril_inverse_small(L.to(dt))
    if bool((info > 0).any()):
        raise ValueError(f"{fn}: L has a zero or non-finite diagonal entry (info {info.max().item()})")
    return Y.to(dt) @ X.mT


def eigh_small(A: torch.Tensor, *, method: str = "auto", max_sweeps: int = DEFAULT_SWEEPS,
               check_finite: bool = True) -> EighResult:
    """Eigendecomposition of symmetric A (..., n, n), n <= 512. ``method="jacobi"``: the
    native batched two-sided cyclic Jacobi kernel (round-robin order; one Newton-Schulz
    polish of the eigenvectors); ``"torch"``: torch.linalg.eigh; ``"auto"`` (default):
    Jacobi on CUDA for n <= 32 or batches of 64 and more, and on the CPU for large
    batches of small float32 matrices
    (16 <= n <= 32 with batch >= 64, n < 16 with batch >= 256), where it measures faster;
    torch.linalg.eigh otherwise. Like
    ``torch.linalg.eigh`` the lower triangle is read. Returns ``EighResult(eigenvalues
    (..., n) ascending, eigenvectors (..., n, n) as columns)``; float32 for 16-bit inputs.
    Warns NotConvergedWarning if some matrix needed more than ``max_sweeps`` sweeps."""
    fn = "eigh_small"
    A = _prep(fn, "A", A, check_finite, square=True)
    n = A.shape[-1]
    _validate.check_int(fn, "max_sweeps", max_sweeps, minimum=1)
    if n > MAX_N:
        raise ValueError(f"{fn}: n must be <= {MAX_N}, got shape {tuple(A.shape)}")
    if not _use_jacobi(fn, method, A, "eigh"):
        return EighResult(*torch.linalg.eigh(A))
    A = A.tril() + A.tril(-1).mT
    w, V, info = _ops().eigh_jacobi.default(A, int(max_sweeps))
    _warn_info(fn, info, max_sweeps)
    return EighResult(w, V)


def svd_small(A: torch.Tensor, *, method: str = "auto", max_sweeps: int = DEFAULT_SWEEPS,
              check_finite: bool = True) -> SVDResult:
    """Thin SVD of A (..., m, n) with min(m, n) <= 512: ``SVDResult(U (..., m, r), S (..., r)
    descending, Vh (..., r, n))``, r = min(m, n), like ``torch.linalg.svd(A,
    full_matrices=False)``. ``method="jacobi"``: a tall A (m > n) is first reduced by a
    Householder QR through torch (A = QR, then the SVD of R), a wide one is transposed, and
    the square core runs the native batched one-sided (Hestenes) Jacobi kernel (high
    relative accuracy); U and V get one Newton-Schulz polish and U is completed to an
    orthonormal basis when A is rank-deficient. ``"torch"``: torch.linalg.svd. ``"auto"``
    (default): Jacobi on CUDA for n <= 32 or batches of 64 and more, and on the CPU for
    large batches of small matrices (square core n <= 48 with batch >= 32, n < 16 with
    batch >= 64), where it measures faster; torch.linalg.svd otherwise.
    float32 results for 16-bit inputs. Warns NotConvergedWarning if some matrix needed more
    than ``max_sweeps`` sweeps."""
    fn = "svd_small"
    A = _prep(fn, "A", A, check_finite, square=False)
    _validate.check_int(fn, "max_sweeps", max_sweeps, minimum=1)
    m, n = A.shape[-2], A.shape[-1]
    if min(m, n) > MAX_N:
        raise ValueError(f"{fn}: min(m, n) must be <= {MAX_N}, got shape {tuple(A.shape)}")
    if not _use_jacobi(fn, method, A, "svd"):
        return SVDResult(*torch.linalg.svd(A, full_matrices=False))
    if m < n:
        U, S, Vh = svd_small(A.mT, method="jacobi", max_sweeps=max_sweeps, check_finite=False)
        return SVDResult(Vh.mT, S, U.mT)
    if m > n and n > 0:
        Q, R = torch.linalg.qr(A)
        Ur, S, Vh, info = _ops().svd_jacobi.default(R, int(max_sweeps))
        U = Q @ Ur
    else:
        U, S, Vh, info = _ops().svd_jacobi.default(A, int(max_sweeps))
    _warn_info(fn, info, max_sweeps)
    return SVDResult(U, S, Vh)


def _warn_info(fn: str, info: torch.Tensor, max_sweeps: int) -> None:
    if info.numel() and bool((info != 0).any()):
        bad = int((info != 0).sum())
        warnings.warn(f"{fn}: {bad} of {info.numel()} matrices did not converge within max_sweeps={max_sweeps} "
                      f"Jacobi sweeps (off-diagonal tolerance eps-level); results are approximate",
                      NotConvergedWarning, stacklevel=3)
