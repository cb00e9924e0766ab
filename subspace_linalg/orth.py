"""Robust orthonormalization of tall-skinny blocks: CholeskyQR2 on the fast path, checked
per batch element, with shifted CholeskyQR3 and Householder QR as fallbacks."""
from __future__ import annotations

import math
import warnings

import torch

from . import _gemm, _validate
from ._dtypes import ALL_FLOATING, compute_dtype
from .errors import NumericalWarning

METHODS = ("auto", "cholqr2", "shifted_cholqr3", "householder")
_MAX_NATIVE = 512
# CholeskyQR2's second pass starts from Q1; it is accepted when ||Q1^T Q1 - I||_F <= this
# (then kappa(Q1) <= sqrt(3) and the second pass is orthonormal to O(k u)).
_GATE = 0.5


def _cpu_lapack_better(A: torch.Tensor) -> bool:
    """Where LAPACK (potrf, trsm) beats the native CPU Cholesky and triangular inverse: one
    matrix below n = 256 (the native call also pays the custom-op dispatch). Measured on the
    2-core AMX Xeon, cholesky_small against cholesky_ex, ms: one matrix n = 96 0.092 / 0.057,
    192 0.16 / 0.11-0.12, 224 0.19-0.21 / 0.13-0.14, 256 0.23 / 0.29, 320 0.35 / 0.35, 512
    1.02 / 1.42-1.48; two matrices 128 0.13 / 0.23, 256 0.30-0.31 / 0.59; 3 x 96 0.135 /
    0.134, 3 x 192 0.25 / 0.33, 8 x 256 0.90 / 2.35 (the native one-matrix Cholesky by blocks
    of 16 columns; before it, LAPACK also won at n > 128 and for up to three matrices). CUDA
    has its own rule inside the ops."""
    if A.device.type != "cpu":
        return False
    n = A.shape[-1]
    batch = A.numel() // max(n * n, 1)
    return batch == 1 and n < 256


_GRAM_ROWS = 2048  # rows per block of the Gram's inner dimension
_GRAM_MAX_BLOCKS = 16


def _gram(Y: torch.Tensor) -> torch.Tensor:
    """Y^T Y, for a tall Y as the sum of row-block Grams (at most 16 blocks of >= 2048
    rows, summed by torch's pairwise reduction): the rounding of a long inner product then
    no longer depends on the order the BLAS accumulates it in. Measured on an AMD EPYC
    (MKL): ||Q^T Q - I||_F of CholeskyQR2 in float64 went from 1.8e-14 to 5.3e-15 at
    8192 x 64 and from 5.0e-14 to 7.8e-15 at 16384 x 256 (Householder QR: 4.9e-15), float32
    1.2-2.6x lower; orthonormalize's time unchanged within the noise (3 float32 sizes).
    One matrix with k >= 128 columns: each block's Gram from its lower half (see
    :func:`_sym_gram`). float32 on the CPU through oneDNN (see :func:`_dnn_inner`)."""
    if _gemm.routed(Y.mT, Y):
        return _dnn_inner(Y, Y)
    if Y.shape[-1] >= _SYM_GRAM_MIN_K and Y.numel() == Y.shape[-2] * Y.shape[-1]:
        return _row_blocked(Y.shape[-2], lambda i, j: _sym_gram(Y[..., i:j, :]))
    return tall_inner(Y, Y)


_SYM_GRAM_MIN_K = 128


def _sym_gram(Y: torch.Tensor) -> torch.Tensor:
    """Y^T Y from three quarters of the products: the leading h x h block (h = k/2 rounded
    up to 16 columns) and the trailing rows [Y2^T Y1, Y2^T Y2], the upper right block
    copied from the transpose (torch has no SYRK). Measured on an AMD EPYC (2 threads,
    MKL), one GEMM against this, float32: 5461 x 256 5.0 / 4.1-4.4 ms, 5461 x 266 5.8-6.0 /
    4.4-5.1, 2048 x 256 1.8 / 1.6, 4096 x 512 14.4 / 11.5-12.0, 2048 x 138 0.58 / 0.53;
    float64 1.05-1.3x as well."""
    k = Y.shape[-1]
    h = -(-(k // 2) // 16) * 16
    G = Y.new_empty(Y.shape[:-2] + (k, k))
    Y1 = Y[..., :h]
    G[..., :h, :h] = Y1.mT @ Y1
    G21 = Y[..., h:].mT @ Y
    G[..., h:, :] = G21
    G[..., :h, h:] = G21[..., :h].mT
    return G


def _row_blocked(m: int, inner):
    """``inner(0, m)`` for up to 2 * 2048 rows, else the sum of ``inner(i, j)`` over at most
    16 row blocks of >= 2048 rows (torch's pairwise reduction)."""
    if m <= 2 * _GRAM_ROWS:
        return inner(0, m)
    rows = max(_GRAM_ROWS, -(-m // _GRAM_MAX_BLOCKS))
    return torch.stack([inner(i, min(i + rows, m)) for i in range(0, m, rows)]).sum(0)


def tall_inner(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """X^T Y for tall X (..., m, p) and Y (..., m, q), blocked over rows as :func:`_gram`
    (whose rounding it shares). Also faster for very tall float64 blocks with MKL:
    100000 x 16 took 17.7 ms as one GEMM and 4.7 ms as 16 row blocks (AMD EPYC)."""
    if _gemm.routed(X.mT, Y):
        return _dnn_inner(X, Y)
    return _row_blocked(X.shape[-2], lambda i, j: X[..., i:j, :].mT @ Y[..., i:j, :])


def _dnn_inner(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """X^T Y as one oneDNN product (float32, CPU), not blocked over rows: blocks do not
    change oneDNN's rounding, which is 2-3x MKL's blocked one and still at the float32
    floor (relative error against float64, Gram of a column-major block: 5461 x 256
    2.2e-7 against 8.1e-8, 16384 x 256 1.4e-7 against 6.3e-8), at 2.1-2.4x its speed
    (1.63 against 3.84 ms, 5.07 against 12.2; AMD EPYC)."""
    return _gemm.dnn(X.mT, Y)


# LAPACK's Cholesky with the native triangular inverse from this order up (one matrix):
# measured on an AMD EPYC, native against solve_triangular(L, I), in us: n = 96: 76 / 90,
# 128: 128 / 182, 192: 242 / 402, 256: 427 / 919, 384: 1133 / 1979, 512: 2798 / 3167;
# 4 x 256: 1049 / 3032. (LAPACK's Cholesky beats the native one there: 247 / 934 us at 256.)
_NATIVE_INV_MIN = 96


def _chol_inv(G: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(X = L^{-1}, L, ok) for the Gram matrices G = L L^T; a failed element (Cholesky
    breakdown, zero pivot) gets X = 0 and L = 0 and ok False. Native batched kernels
    where they measure faster (see _cpu_lapack_better); else LAPACK in 9 torch ops, a zero
    or non-finite pivot showing as a non-finite X (these run several times per rsvd call,
    whose small sizes are op-bound); from n = 96 up, LAPACK's Cholesky with the native
    inverse."""
    k = G.shape[-1]
    if k <= _MAX_NATIVE and not _cpu_lapack_better(G):
        L, info = torch.ops.subspace_linalg.cholesky_small.default(G)
        X, info2 = torch.ops.subspace_linalg.tril_inverse_small.default(L)
        ok = (info == 0) & (info2 == 0)  # (a failed L keeps its rows above the pivot: zeroed)
        return X, L.masked_fill((~ok).view(ok.shape + (1, 1)), 0), ok
    L, info = torch.linalg.cholesky_ex(G)
    if _NATIVE_INV_MIN <= k <= _MAX_NATIVE and G.device.type == "cpu":
        # a NaN in L reaches its diagonal, which the native inverse checks (info2)
        X, info2 = torch.ops.subspace_linalg.tril_inverse_small.default(L)
        ok = (info == 0) & (info2 == 0)
        bad = (~ok).view(ok.shape + (1, 1))
        return X.masked_fill(bad, 0), L.masked_fill(bad, 0), ok
    X = torch.linalg.solve_triangular(L, torch.eye(k, dtype=G.dtype, device=G.device), upper=False)
    ok = (info == 0) & torch.isfinite(X).all((-2, -1))
    bad = (~ok).view(ok.shape + (1, 1))
    return X.masked_fill(bad, 0), L.masked_fill(bad, 0), ok


_HOUSEHOLDER_SPAN_WORK = 1 << 19   # batch * m * l^2 up to which Householder beats one CholeskyQR pass
_HOUSEHOLDER_FULL_WORK = 1 << 21   # m * l^2 up to which it beats CholeskyQR2 (one matrix; batches: 1 << 19)
_HOUSEHOLDER_PANEL_WORK = 1 << 18  # ... and where the fused CholeskyQR applies (see householder_better)


def householder_better(Y: torch.Tensor, full: bool = True) -> bool:
    """Small blocks on the CPU, where the flagged CholeskyQR's 20-40 small torch ops cost
    more than its arithmetic: one LAPACK Householder QR (always orthonormal, no flag, no
    fallback) is faster there. ``full``: against CholeskyQR2 (a final basis), else against
    one CholeskyQR pass (an intermediate one). Measured on an AMD EPYC (2 threads, MKL),
    QR against CholeskyQR / CholeskyQR2 (factored), in us: 128 x 18: 17 / 132 / 250;
    512 x 26: 83-125 / 157 / 300; 8 x 128 x 18: 100 / 206 / 399; 512 x 42: 301 / 215 /
    449; 384 x 58: 432 / 276 / 593; 1024 x 42: 465 / 251 / 547; 2048 x 42: 801 / 324 / 738;
    4 x 256 x 32: 808 / 286 / 535 (LAPACK runs a batch one matrix at a time).

    Those limits are against the composite CholeskyQR. Where the fused native call applies
    (:func:`_panel_better`, called past the dispatcher) it is the faster one down to
    batch m l^2 = 2^18 inside the drivers: rsvd, Householder against fused, in-process
    alternating, median ratio of 12 rounds (AMD EPYC): 512^2 r16 (512 x 26) 1.05-1.18x,
    8 x 128^2 r8 1.04-1.06x, 1024 x 256 r16 1.22x, 32 x 64^2 r4 1.21x; below, 256^2 r8
    (256 x 18, 2^16.3) 0.66x and a warm 768^2 r15 (768 x 15) 0.91x."""
    if Y.device.type != "cpu":
        return False
    work = Y.numel() * Y.shape[-1]
    if _panel_better(Y):
        return work <= _HOUSEHOLDER_PANEL_WORK
    single = Y.numel() == Y.shape[-2] * Y.shape[-1]
    return work <= (_HOUSEHOLDER_FULL_WORK if full and single else _HOUSEHOLDER_SPAN_WORK)


def tall_times_small(Y: torch.Tensor, S: torch.Tensor) -> torch.Tensor:
    """Y @ S for a tall Y (..., m, k) and a small S (..., k, l). Batched (more than one
    matrix) with l < 192 it is made as the wide product (S^T Y^T)^T: MKL's batched GEMM is
    slow for a tall narrow output; measured on an AMD EPYC 2.7x faster at 16 x 512 x 42
    (0.23 against 0.63 ms) and level at 16 x 128 x 18; a single matrix keeps Y @ S (1.4-1.8x
    faster there at 2048 x 74 and 5461 x 256). CPU only (not measured on a GPU). float32 on
    the CPU through oneDNN where :func:`_gemm.routed` takes it: 5461 x 256 x 256 1.65
    against 3.76 ms, 2048 x 74 x 74 0.071 against 0.142 (AMD EPYC)."""
    if _gemm.routed(Y, S):
        return _gemm.dnn(Y, S)
    if _gemm.wide_f64_better(Y, S):  # float64: the wide product throughout (5461 x 266 x 256 12.6 against 18.7 ms)
        return (S.mT @ Y.mT).mT
    if Y.device.type == "cpu" and Y.dim() > 2 and S.shape[-1] < 192 and Y.numel() > Y.shape[-2] * Y.shape[-1]:
        return (S.mT @ Y.mT).mT
    return Y @ S


_PANEL_MAX_K = 288  # widest block the fused CholeskyQR takes (see _panel_better) ...
_PANEL_COPY_MAX_K = 128  # ... and the widest it copies to column-major first (the drivers' blocks already are)
_PANEL_WIDE_MAX_K = 512  # with the AVX-512 or AVX2 kernels (the packed Gram): any block up to 512
_WIDE = None  # whether they are there (see _wide_panels)


def _wide_panels() -> bool:
    """Whether the CPU kernels here have the wide-panel Gram (the AVX-512 and AVX2 targets;
    not the generic one). Cached in a module global, not functools.cache: torch.compile
    traces this (from _panel_better) and refuses lru_cache-wrapped calls."""
    global _WIDE
    if _WIDE is None:
        from . import _native

        C = _native._C
        _WIDE = C is not None and str(C.small_dense_cpu_isa()) in ("avx512", "avx2")
    return _WIDE


def _panel_better(Y: torch.Tensor) -> bool:
    """Where the fused native CholeskyQR (``subspace_linalg::cholqr_panel``: Gram, Cholesky,
    inverse and product in one call, split over the threads by panel and by rows) replaces
    the composite of torch GEMMs and small-kernel calls: CPU blocks of at most 288 columns,
    outside autograd. Measured on an AMD EPYC (2 threads), fused against composite, one
    pass / CholeskyQR2 factored / formed, in ms: 16 x 512 x 42 0.35 / 0.69 / 0.88 against
    1.24 / 2.08 / 2.56; 32 x 1024 x 32 0.73 / 1.43 / 1.76 against 2.65 / 4.41 / 5.59;
    64 x 256 x 26 0.75 / 1.64 / 2.03 against 1.44 / 2.62 / 3.15; 8 x 128 x 18 0.055 /
    0.091 / 0.097 against 0.28 / 0.56 / 0.59; one matrix 2048 x 74 0.34 / 0.57 / 0.76
    against 1.04 / 2.01 / 2.32, 8192 x 64 0.75 / 1.31 / 1.70 against 1.92 / 3.75 / 4.07.
    Wider blocks, one pass / factored: 2048 x 192 2.18 / 3.76 against 3.13 / 5.12, 2048 x
    256 3.97 / 7.35 against 4.64 / 8.95, 5461 x 256 8.9 / 15.1 against 10.4 / 18.2, 4 x 2048
    x 256 15.4 / 26.2 against 18.6 / 31.5, 2048 x 266 4.9 / 8.8 against 6.4 / 11.7, 5461 x 266
    11.6 / 16.5 against 11.7 / 19.0 (rsvd 2048 x 5461 r256, l = 266: 300 against 315 ms);
    beyond, the k x k stage is LAPACK's ground (4096
    x 384: 18.3 / 31.6 against 19.7 / 27.8; 8192 x 512: 77 / 149 against 52 / 84). Those
    were column-major blocks (the layout of the drivers' products); another layout is copied
    first, which at 16384 x 256 costs more than the margin (orthonormalize of a row-major
    block 72.5 against 57.1 ms): above 128 columns only column-major blocks are taken.
    float64, one pass / factored: 16 x 512 x 42 0.84 / 1.43 against 2.39 / 4.34, 2048 x 74
    0.66 / 0.95 against 1.98 / 2.99, 8192 x 64 1.69 / 1.95 against 8.42 / 11.8, 4 x 1024 x
    128 3.02 / 5.94 against 6.41 / 10.0, 5461 x 256 18.4 / 30.0 against 33.2 / 51.8. CUDA
    keeps the composite (cuBLAS GEMMs; the fused CUDA kernels are unmeasured).

    Those limits (288 columns, 128 in another layout) are the rule of the generic target.
    With AVX2 (an AMD EPYC without AVX-512, 2 threads, float32, column-major, one pass /
    factored / orthonormalize against the composite, ms): 2048 x 42 0.32 / 0.48 against
    0.68 / 1.19, 2048 x 256 3.4 / 4.7 against 4.8 / 8.3, 5461 x 266 7.2 / 11.2 against
    12.5 / 19.4, 4096 x 384 13.8 / 22.7 / 30.4 against 20.6 / 31.7 / 41.8, 8192 x 512 48 /
    74 / 96 against 65 / 109 / 134; row-major 8192 x 384 30 / 40 / 61 against 38 / 56 /
    102, 16384 x 256 27 / 37 / 73 against 29 / 52 / 69 (the one level case). With AVX-512,
    the packed Gram kernel (from 128 columns, csrc/cpu/panel_gram_kernels.inc) makes the
    fused call faster at every width up to 512, in any layout (AMD EPYC, float32, one pass /
    factored against the composite, ms): 2048 x 266 3.2 / 5.3 against 5.3 / 8.8, 5461 x 266
    7.5 / 11.3 against 11.3 / 17.6, 4096 x 384 11.2 / 17.0 against 16.8 / 24.7, 8192 x 512
    42 / 64 against 51 / 83, 2048 x 512 14.5 / 24.3 against 17.2 / 32.5; orthonormalize of a
    row-major block (copied first) 16384 x 256 44 against 57, 8192 x 384 44 against 61,
    8192 x 512 107 against 113, 4096 x 200 8.0 against 16.2. (Those row-major figures
    include the copy, which the AVX2 and AVX-512 kernels no longer need: they read row-major
    panels in place, see ``_ops.cholqr_panel._row_major_ok``.)"""
    k = Y.shape[-1]
    if Y.device.type != "cpu" or Y.dtype not in (torch.float32, torch.float64) or (
            Y.requires_grad and torch.is_grad_enabled()):
        return False
    if _wide_panels():
        return k <= _PANEL_WIDE_MAX_K
    return k <= _PANEL_MAX_K and (k <= _PANEL_COPY_MAX_K or _column_major(Y))


def _column_major(Y: torch.Tensor) -> bool:
    return Y.stride(-2) == 1 and Y.stride(-1) >= Y.shape[-2]


def _panel(Y: torch.Tensor, mode: int):
    """cholqr_panel on (B, m, k) with orthonormalize's acceptance thresholds (its kernel
    directly on the CPU outside torch.compile: ``_ops.cholqr_panel.kernel``)."""
    u = torch.finfo(Y.dtype).eps / 2
    if Y.device.type == "cpu" and not torch.compiler.is_compiling():
        from ._ops import cholqr_panel as _cp

        return _cp.kernel(Y, mode, 1.0 / math.sqrt(u), _GATE)
    return torch.ops.subspace_linalg.cholqr_panel.default(Y, mode, 1.0 / math.sqrt(u), _GATE)


def _cholqr_from(Y: torch.Tensor, G: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One CholeskyQR pass from the Gram G of Y: (Q = Y L^{-T}, L, ok). A failed element
    (Cholesky breakdown, zero pivot) gets Q = 0 (finite) and ok False."""
    X, L, ok = _chol_inv(G)
    return tall_times_small(Y, X.mT), L, ok


def _cholqr1(Y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One CholeskyQR pass on (B, m, k) with a per-element flag: no breakdown and a
    Cholesky-diagonal condition estimate below u^{-1/2} (Gram below 1/u). Q spans range(Y)
    but is orthonormal only to O(kappa(Y)^2 u): a basis for the next pass of a power
    iteration, not a final one."""
    if _panel_better(Y):
        Q, _, _, info = _panel(Y, 0)
        return Q, info == 0
    u = torch.finfo(Y.dtype).eps / 2
    Q, L, ok = _cholqr_from(Y, _gram(Y))
    d = torch.diagonal(L, dim1=-2, dim2=-1)
    return Q, ok & (d.amax(-1) <= d.amin(-1) / math.sqrt(u))


def _first_factor(G: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CholeskyQR2's first factor from the Gram G: (X1 = L1^{-1}, L1, ok), ok False on a
    breakdown or a Cholesky-diagonal condition estimate beyond u^{-1/2} (Gram beyond 1/u)."""
    u = torch.finfo(G.dtype).eps / 2
    X1, L1, ok1 = _chol_inv(G)
    d = torch.diagonal(L1, dim1=-2, dim2=-1)
    return X1, L1, ok1 & (d.amax(-1) <= d.amin(-1) / math.sqrt(u))


def _second_factor(Q1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CholeskyQR2's second factor of the first-pass basis Q1: (X2 = L2^{-1}, L2, ok), ok
    False unless Q1 is nearly orthonormal (||Q1^T Q1 - I||_F <= 1/2) and G2 factors."""
    G2 = _gram(Q1)
    eye = torch.eye(Q1.shape[-1], dtype=Q1.dtype, device=Q1.device)
    dev = torch.linalg.matrix_norm(G2 - eye)
    X2, L2, ok2 = _chol_inv(G2)
    return X2, L2, ok2 & (dev <= _GATE)  # dev NaN/inf -> False


def _cholqr2_factored(Y: torch.Tensor, G: torch.Tensor | None = None):
    """CholeskyQR2 on (B, m, k) with its second product left undone: ``(Q1, T, R, ok)`` with
    Q = Q1 T orthonormal (T = L2^{-T}, upper triangular k x k) and Y = Q R (R = L2^T L1^T,
    upper triangular). A caller that only multiplies Q by small matrices saves the m k^2
    GEMM of the second pass (and the one of R = Q^T Y). The flag: the first pass's factor
    must be usable (:func:`_first_factor`) and its Q1 nearly orthonormal
    (:func:`_second_factor`)."""
    if G is None and _panel_better(Y):
        Q1, L, X, info = _panel(Y, 1)
        return Q1, X.mT, L.mT, info == 0
    X1, L1, ok1 = _first_factor(_gram(Y) if G is None else G)
    Q1 = tall_times_small(Y, X1.mT)
    X2, L2, ok2 = _second_factor(Q1)
    return Q1, X2.mT, (L1 @ L2).mT, ok1 & ok2


def _cholqr2_or_stop(Y: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
    """CholeskyQR2 of one matrix (1, m, k) that stops after the first factor when that one
    already fails (one host read): ``(None, ok)`` then, else ``(Q, ok)``. (Where the fused
    kernel applies, both passes are one call: ``(Q, ok)`` with Q zero where ok fails.)"""
    if _panel_better(Y):
        return _cholqr2(Y)
    X1, L1, ok1 = _first_factor(_gram(Y))
    if not bool(ok1.all()):
        return None, ok1
    Q1 = tall_times_small(Y, X1.mT)
    X2, _, ok2 = _second_factor(Q1)
    return tall_times_small(Q1, X2.mT), ok2


def _householder_rescue(Y: torch.Tensor) -> bool:
    """Whether orthonormalize(method="auto") rescues a failed CholeskyQR2 element with
    Householder QR directly (CPU) instead of shifted CholeskyQR3 first (GPU: GEMMs). On
    the CPU Householder is as fast or faster and unconditionally stable: float32 8192 x 64
    at kappa = 1e5: 7.6 against 7.3 ms, 16384 x 256: 100 against 131 ms (AMD EPYC, MKL); a
    single matrix also skips CholeskyQR2's second pass once the first factor has failed."""
    return Y.device.type == "cpu"


def _cholqr2(Y: torch.Tensor, G: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """CholeskyQR2 on (B, m, k) with a per-element acceptance flag (see
    :func:`_cholqr2_factored`)."""
    if G is None and _panel_better(Y):
        Q, _, _, info = _panel(Y, 2)
        return Q, info == 0
    Q1, T, _, ok = _cholqr2_factored(Y, G)
    return tall_times_small(Q1, T), ok


def _shifted_cholqr3(Y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Shifted CholeskyQR (Fukaya et al. 2020) then CholeskyQR2: for kappa(Y) up to about
    1/u. The shift s = u (sqrt(m) + k + 1) ||Y||_F^2 covers the rounding of the Gram matrix
    in practice; a breakdown is still detected (and reported in the flag)."""
    m, k = Y.shape[-2], Y.shape[-1]
    dt = Y.dtype
    u = torch.finfo(dt).eps / 2
    G = _gram(Y)
    tr = torch.diagonal(G, dim1=-2, dim2=-1).sum(-1)
    s = u * (math.sqrt(m) + k + 1) * tr
    Gs = G + s[:, None, None] * torch.eye(k, dtype=dt, device=Y.device)
    Q1, _, ok1 = _cholqr_from(Y, Gs)
    Q, ok = _cholqr2(Q1)
    return Q, ok & ok1


def _householder(Y: torch.Tensor) -> torch.Tensor:
    """Householder QR through torch with R's diagonal made non-negative (the same sign
    convention as CholeskyQR); always orthonormal, span contains range(Y)."""
    Q, R = torch.linalg.qr(Y)
    d = torch.diagonal(R, dim1=-2, dim2=-1)
    sign = torch.where(d < 0, -torch.ones_like(d), torch.ones_like(d))
    return Q * sign.unsqueeze(-2)


def _fill(Q: torch.Tensor, ok: torch.Tensor, Y: torch.Tensor, fallback) -> torch.Tensor:
    """Replace the elements of Q whose flag is False by ``fallback`` applied to them (all of
    them: ``fallback(Y)``, no copies)."""
    if not bool(ok.any()):
        return fallback(Y)
    bad = torch.nonzero(~ok).flatten()
    Q = Q.clone()
    Q[bad] = fallback(Y[bad])
    return Q


def _flagged(fn: str, Y: torch.Tensor, impl) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate Y (..., m, k), m >= k, and run a flagged (B, m, k) kernel over its batch."""
    _validate.check_tensor(fn, "Y", Y, dtypes=ALL_FLOATING, min_ndim=2)
    m, k = Y.shape[-2], Y.shape[-1]
    if m < k:
        raise ValueError(f"{fn}: Y must be tall (..., m, k) with m >= k, got shape {tuple(Y.shape)}")
    dt = compute_dtype(Y.dtype)
    if Y.numel() == 0:
        return torch.empty(Y.shape, dtype=dt, device=Y.device), torch.ones(Y.shape[:-2], dtype=torch.bool, device=Y.device)
    Q, ok = impl((Y if Y.dtype == dt else Y.to(dt)).reshape((-1, m, k)))
    return Q.reshape(Y.shape), ok.reshape(Y.shape[:-2])


def cholqr2(Y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """CholeskyQR2 of Y (..., m, k) with no host synchronization and no fallback, for
    pipelines that check once at the end (e.g. inside power iterations): returns
    ``(Q, ok)`` with ok a bool tensor of the batch shape, True where Q passed the checks of
    :func:`orthonormalize` (then Q^T Q = I to O(sqrt(k) u)); where ok is False, Q is finite
    but not to be trusted (recompute those elements with :func:`orthonormalize`). float16 /
    bfloat16 inputs are computed in float32; no finiteness check (a non-finite Y gives
    ok False)."""
    return _flagged("cholqr2", Y, _cholqr2)


def cholqr2_factored(Y: torch.Tensor):
    """:func:`cholqr2` with its last product left to the caller: ``(Q1, T, R, ok)`` with
    Q = Q1 @ T orthonormal (T upper triangular (..., k, k)), Y = Q @ R (R upper triangular)
    and ok as in cholqr2. For pipelines that only multiply Q by small matrices
    (Q (T W) instead of (Q1 T) W), saving the m k^2 GEMMs of the second product and of
    R = Q^T Y. No host synchronization."""
    fn = "cholqr2_factored"
    _validate.check_tensor(fn, "Y", Y, dtypes=ALL_FLOATING, min_ndim=2)
    m, k = Y.shape[-2], Y.shape[-1]
    if m < k:
        raise ValueError(f"{fn}: Y must be tall (..., m, k) with m >= k, got shape {tuple(Y.shape)}")
    dt = compute_dtype(Y.dtype)
    batch = Y.shape[:-2]
    if Y.numel() == 0:
        eye = torch.eye(k, dtype=dt, device=Y.device).expand(batch + (k, k))
        return (torch.empty(Y.shape, dtype=dt, device=Y.device), eye, torch.zeros(batch + (k, k), dtype=dt, device=Y.device),
                torch.ones(batch, dtype=torch.bool, device=Y.device))
    Q1, T, R, ok = _cholqr2_factored((Y if Y.dtype == dt else Y.to(dt)).reshape((-1, m, k)))
    return Q1.reshape(Y.shape), T.reshape(batch + (k, k)), R.reshape(batch + (k, k)), ok.reshape(batch)


def cholqr_span(Y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One CholeskyQR pass of Y (..., m, k), no host synchronization: ``(Q, ok)`` as
    :func:`cholqr2`, but Q is only guaranteed to span range(Y) with a condition number near
    1 (||Q^T Q - I|| = O(kappa(Y)^2 u)), which is all the intermediate passes of a power
    iteration need (half the work of CholeskyQR2). ok is False on a Cholesky breakdown or a
    Gram condition estimate beyond 1/u."""
    return _flagged("cholqr_span", Y, _cholqr1)


def orthonormalize(Y: torch.Tensor, *, method: str = "auto", check_finite: bool = True) -> torch.Tensor:
    """Orthonormal basis Q (..., m, k) of the columns of Y (..., m, k), m >= k: Q^T Q = I to
    a few units of roundoff times sqrt(k), and range(Y) contained in range(Q).

    Q = Y R^{-1} for the upper triangular R with a positive diagonal when Y has full rank
    (the QR factorization), whatever the method. ``method``:

    * ``"auto"`` (default): CholeskyQR2, on the CPU one fused native call wherever it applies
      (float32/float64 outside autograd, up to 512 columns with the AVX-512 kernels, see
      :func:`_panel_better`; faster than Householder at every size measured); small CPU
      blocks it does not take (batch m k^2 up to 2^21 for one matrix, 2^19 for a batch; see
      :func:`householder_better`) Householder QR; otherwise CholeskyQR2 from two Gram GEMMs
      through torch, the native batched Cholesky and triangular inverse, and two GEMMs.
      CholeskyQR2 is checked per batch element: a Cholesky
      breakdown, a Cholesky-diagonal condition estimate beyond u^{-1/2} (Gram beyond 1/u) or
      a first-pass Q with ||Q1^T Q1 - I||_F > 1/2 sends that element to shifted CholeskyQR3
      (condition numbers up to about 1/u), and an element that fails there too (numerically
      rank-deficient, zero, overflowing) to Householder QR (torch.linalg.qr). Silent.
    * ``"cholqr2"``, ``"shifted_cholqr3"``: that algorithm only; an element where it fails is
      recomputed by Householder QR with a NumericalWarning (never a non-orthonormal Q).
    * ``"householder"``: torch.linalg.qr.

    Rank-deficient and zero Y give an orthonormal Q whose span contains range(Y) (for a zero
    Y the leading columns of the identity). float32/float64 compute and return in their own
    dtype; float16/bfloat16 inputs are computed in float32 and Q is float32. Non-finite
    input raises ValueError (``check_finite=False`` skips the check; on the CholeskyQR paths
    it is free when every element factors, since a NaN or Inf in Y reaches the Gram diagonal
    and breaks the Cholesky factorization). The Cholesky paths synchronize once with the
    host to learn whether any element needs a fallback.
    """
    fn = "orthonormalize"
    _validate.check_tensor(fn, "Y", Y, dtypes=ALL_FLOATING, min_ndim=2)
    _validate.check_choice(fn, "method", method, METHODS)
    if not isinstance(check_finite, bool):
        raise TypeError(f"{fn}: check_finite must be a bool, got {type(check_finite).__name__}")
    m, k = Y.shape[-2], Y.shape[-1]
    if m < k:
        raise ValueError(f"{fn}: Y must be tall (..., m, k) with m >= k, got shape {tuple(Y.shape)}")
    dt = compute_dtype(Y.dtype)
    if Y.numel() == 0:
        return torch.empty(Y.shape, dtype=dt, device=Y.device)
    Yb = Y.to(dt).reshape((-1, m, k))
    # (the public entry: the fused CholeskyQR2 wherever it applies, 1.7-5.9x faster than
    # Householder at 256 x 18 .. 8192 x 16, 4 x 256 x 26, 8 x 128 x 18 on the AMD EPYC)
    if method == "householder" or (method == "auto" and not _panel_better(Yb) and householder_better(Yb)):
        if check_finite:
            _validate.check_finite(fn, "Y", Y)
        return _householder(Yb).reshape(Y.shape)
    direct = method == "auto" and _householder_rescue(Yb)
    if method == "shifted_cholqr3":
        Q, ok = _shifted_cholqr3(Yb)
    elif direct and Yb.shape[0] == 1:
        Q, ok = _cholqr2_or_stop(Yb)
    else:
        Q, ok = _cholqr2(Yb)
    if bool(ok.all()):
        # every Gram matrix factored: its diagonal (the squared column norms of Y) was finite,
        # so Y was finite: the finiteness check costs nothing on this path
        return Q.reshape(Y.shape)
    if check_finite:
        _validate.check_finite(fn, "Y", Y)
    if direct:
        Q = _householder(Yb) if Q is None else _fill(Q, ok, Yb, _householder)
    elif method == "auto":
        def rescue(Ybad):
            Qs, oks = _shifted_cholqr3(Ybad)
            return Qs if bool(oks.all()) else _fill(Qs, oks, Ybad, _householder)

        Q = _fill(Q, ok, Yb, rescue)
    else:
        nbad = int((~ok).sum())
        warnings.warn(f"{fn}: method={method!r} failed on {nbad} of {ok.numel()} batch elements (ill-conditioned "
                      f"or rank-deficient Y); those were recomputed by Householder QR", NumericalWarning, stacklevel=2)
        Q = _fill(Q, ok, Yb, _householder)
    return Q.reshape(Y.shape)
