"""The two numerical stages the randomized low-rank drivers inject (a local shim).

``orthonormalize(Y) -> Q`` for (..., p, l), p >= l, ``orthonormalize_flagged(Y) -> (Q, ok)``
(the same without any host synchronization, with a per-element success flag, for the
power iterations), ``orthonormalize_flagged_span(Y) -> (Q, ok)`` (one CholeskyQR pass: a
well-conditioned basis of range(Y), for the intermediate passes) and ``svd_small(R) -> SVDResult`` for (..., l, l). They come from ``subspace_linalg.orth`` / ``subspace_linalg.small_dense``
(native CholeskyQR2 with fallbacks, batched Jacobi). The drivers call these names only,
so swapping the implementation touches this file alone.
"""
from __future__ import annotations

import torch

from ._results import SVDResult

from .orth import cholqr2 as _cholqr2  # sync-free CholeskyQR2 returning (Q, ok)
from .orth import cholqr2_factored as _cholqr2_factored  # the same as (Q1, T, R, ok), Q = Q1 T, Y = Q R
from .orth import cholqr_span as _cholqr_span  # one sync-free CholeskyQR pass returning (Q, ok)
from .orth import householder_better as _householder_better  # small CPU blocks: LAPACK QR measures faster
from .orth import orthonormalize as _orthonormalize
from .small_dense import svd_small as _svd_small


_SMALL_MAX = 512  # svd_small's documented range (k <= 512); larger ones go to LAPACK / cuSOLVER
# Batches of at least 16 small R (n <= 64) on the CPU: Jacobi on R^T. Measured on an AMD
# EPYC (2 threads), upper triangular R with sigma_i = 1/i, LAPACK SVD against Jacobi on R^T
# in ms: 16 x 18^2 0.42 / 0.36, 16 x 42^2 3.14 / 2.08, 16 x 74^2 8.0 / 7.0, 64 x 42^2
# 12.1 / 5.7; at batch 8 LAPACK is faster (0.58-0.92x), and for one matrix 3-4x faster.
# The gain is the batch split over threads: at one thread LAPACK wins (16 x 42^2: 2.22 /
# 2.72 ms, 64 x 74^2: 23.1 / 43.6), so the rule needs two or more.
_JACOBI_TRI_MAX_N = 64
_JACOBI_TRI_MIN_BATCH = 16


def _native_threads() -> int:
    """The OpenMP threads the native kernels get (0 without the native module)."""
    from . import _native

    C = _native._C
    return int(C.openmp_max_threads()) if C is not None else 0


def orthonormalize(Y: torch.Tensor, *, check_finite: bool = True) -> torch.Tensor:
    """An orthonormal basis Q (..., p, l) whose span contains range(Y), Y (..., p, l), p >= l
    (``check_finite=False``: for a caller that checked its inputs itself)."""
    return _orthonormalize(Y, check_finite=check_finite)


def orthonormalize_householder(Y: torch.Tensor) -> torch.Tensor:
    """Householder QR's orthonormal basis of Y (..., p, l) (R's diagonal non-negative):
    always orthonormal, no flag; the CPU rescue of a failed flagged CholeskyQR. A
    non-finite Y (an A with NaN under check_finite=False) raises orthonormalize's
    ValueError, as the robust rerun did."""
    return _orthonormalize(Y, method="householder")


def orthonormalize_flagged(Y: torch.Tensor):
    """``(Q, ok)`` with no host synchronization: ok (a bool tensor of Y's batch shape, or
    None when the method cannot fail) is False where Q must not be trusted; those elements
    are to be recomputed with :func:`orthonormalize`. Small CPU blocks: Householder QR
    (ok None, see :func:`_householder_better`)."""
    if _householder_better(Y, True):
        return torch.linalg.qr(Y).Q, None
    return _cholqr2(Y)


def orthonormalize_flagged_factored(Y: torch.Tensor):
    """As :func:`orthonormalize_flagged`, returning ``(Q1, T, R, ok)`` with Q = Q1 @ T and
    Y = Q @ R (T, R small upper triangular): the caller applies T to small matrices only.
    Small CPU blocks: Householder QR, returned as (Q, None, R, None)."""
    if _householder_better(Y, True):
        Q, R = torch.linalg.qr(Y)
        return Q, None, R, None
    return _cholqr2_factored(Y)


def orthonormalize_flagged_span(Y: torch.Tensor):
    """As :func:`orthonormalize_flagged` for a basis that only has to span range(Y) with a
    condition number near 1 (the intermediate passes of a power iteration): half the work.
    Small CPU blocks: Householder QR (ok None)."""
    if _householder_better(Y, False):
        return torch.linalg.qr(Y).Q, None
    return _cholqr_span(Y)


_GRAM_MIN_RATIO = 1e-8  # smallest lambda_min / lambda_max of R^T R the Gram SVD accepts (see _svd_gram)


def _svd_gram(R: torch.Tensor):
    """Thin SVD of float32 R (..., l, l) from the eigendecomposition of its float64 Gram
    R^T R = V diag(lam) V^T: S = sqrt(lam), U = R V S^{-1} (formed in float64), or None
    where some element has lam_min <= 1e-8 lam_max or a non-finite Gram (one host read).
    The Gram of float32 data is exact to float64 rounding, so U^T U - I is of the order
    u64 lam_max / lam_min <= 1e-8 before the rounding to float32, and S as accurate as
    float32 holds it; below the floor (a rank-deficient or fast-decaying R) the caller
    takes the SVD. Measured on an Intel Xeon (family 6 model 167, 2 threads), eigh of the
    float64 Gram against the float32 SVD, ms: 74^2 0.26 / 0.41, 16 x 42^2 1.66 / 2.82
    (Jacobi 2.12), 266^2 3.67 / 5.50; whole rsvd, this against the SVD (median of 5
    alternating rounds, bench inputs): 2048^2 r64 20.91 / 21.31, 16 x 512^2 r32 21.32 /
    22.12, 2048 x 5461 r256 188.9 / 193.4, its warm refresh 65.3 / 66.7. CPU only (not
    measured on a GPU)."""
    R64 = R.to(torch.float64)
    G = R64.mT @ R64
    if not bool(torch.isfinite(G).all()):
        return None
    lam, V = torch.linalg.eigh(G)  # ascending
    lam, V = lam.flip(-1), V.flip(-1)
    if not bool((lam[..., -1] > _GRAM_MIN_RATIO * lam[..., 0]).all()):
        return None
    S = lam.sqrt()
    U = (R64 @ V) / S.unsqueeze(-2)
    return SVDResult(U.to(R.dtype), S.to(R.dtype), V.mT.to(R.dtype))


def svd_small(R: torch.Tensor) -> SVDResult:
    """Thin SVD of small square matrices (..., l, l); S descending (block Krylov's
    (q + 1) l can exceed svd_small's range: those go to torch.linalg.svd). float32 on the
    CPU (outside torch.compile) first tries the float64 Gram (:func:`_svd_gram`)."""
    n = R.shape[-1]
    if R.dtype == torch.float32 and R.device.type == "cpu" and n <= _SMALL_MAX and not torch.compiler.is_compiling():
        res = _svd_gram(R)
        if res is not None:
            return res
    if (R.device.type == "cpu" and n <= _JACOBI_TRI_MAX_N and R.numel() >= _JACOBI_TRI_MIN_BATCH * n * n and R.dim() > 2
            and _native_threads() >= 2):
        # a batch of the drivers' upper triangular R: one-sided Jacobi on R^T (lower
        # triangular: few sweeps) beats LAPACK's batched SVD; see _JACOBI_TRI_MAX_N
        U, S, Vh = _svd_small(R.mT, method="jacobi", check_finite=False)
        return SVDResult(Vh.mT, S, U.mT)
    if R.shape[-1] <= _SMALL_MAX:
        # R = Qp^T P is finite whenever A is (checked by the drivers): no finiteness check,
        # which would also read back to the host and break torch.compile(fullgraph=True)
        U, S, Vh = _svd_small(R, check_finite=False)
        return SVDResult(U, S, Vh)
    U, S, Vh = torch.linalg.svd(R, full_matrices=False)
    return SVDResult(U, S, Vh)
