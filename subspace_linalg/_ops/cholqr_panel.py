"""subspace_linalg::cholqr_panel: fused CholeskyQR passes on a batch of tall panels.

    cholqr_panel(Y, mode, cond_max, gate) -> (Q, L, X, info)     Y (B, m, k), m >= k

mode 0: one pass, Q = Y L^{-T} (L = chol(Y^T Y)), X = L^{-1}; mode 1: CholeskyQR2 with its
second product left undone, Q = Q1 (the first pass's basis), L = L1 L2, X = L2^{-1} (the
orthonormal basis is Q X^T and Y = (Q X^T) L^T); mode 2: CholeskyQR2, Q formed. info (B,)
int32: 0 accepted, 1 the first pass failed (a Cholesky breakdown, or max/min of diag L1
above ``cond_max``), 2 the second failed (||Q1^T Q1 - I||_F above ``gate``, or a
breakdown); a failed element has Q, L and X zero. float32/float64, k <= 512. Q is
column-major (the transposed view of a contiguous (B, k, m) block; a column-major Y is
read in place, and on the CPU with AVX2 or AVX-512 a row-major one too; any other layout
copied first by subspace_linalg::transpose_copy), L and X
contiguous. The cpu and cuda kernels call the native code; other devices use the
pure-torch reference (subspace_linalg/reference/cholqr_panel.py).
"""
from __future__ import annotations

import torch

from .. import _native
from . import transpose as _transpose
from .._dtypes import FLOATING
from ..reference import cholqr_panel as _ref

MAX_K = 512  # == sl::kSmallDenseMaxN


def _check(Y: torch.Tensor, mode: int) -> None:
    op = "cholqr_panel"
    torch._check(Y.dtype in FLOATING, lambda: f"{op}: Y must be float32 or float64, got {Y.dtype}")
    torch._check(Y.dim() == 3, lambda: f"{op}: Y must be (B, m, k), got shape {tuple(Y.shape)}")
    torch._check(Y.shape[-2] >= Y.shape[-1], lambda: f"{op}: Y must have m >= k, got shape {tuple(Y.shape)}")
    torch._check(Y.shape[-1] <= MAX_K, lambda: f"{op}: k must be <= {MAX_K}, got {Y.shape[-1]}")
    torch._check(mode in (0, 1, 2), lambda: f"{op}: mode must be 0, 1 or 2, got {mode}")


def _outputs(Y: torch.Tensor):
    B, m, k = Y.shape
    kw = dict(dtype=Y.dtype, device=Y.device)
    return (torch.empty(B, k, m, **kw).mT, torch.empty(B, k, k, **kw), torch.empty(B, k, k, **kw),
            torch.empty(B, dtype=torch.int32, device=Y.device))


@torch.library.custom_op("subspace_linalg::cholqr_panel", mutates_args=())
def cholqr_panel(Y: torch.Tensor, mode: int, cond_max: float,
                 gate: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fused CholeskyQR passes (see the module docstring)."""
    _check(Y, mode)
    return _ref.cholqr_panel(Y, mode, cond_max, gate)


@cholqr_panel.register_fake
def _(Y, mode, cond_max, gate):
    _check(Y, mode)
    return _outputs(Y)


_ROW_MAJOR: list = []


def _row_major_ok(Y: torch.Tensor) -> bool:
    """Whether the native kernel reads Y's row-major panels in place: on the CPU with the
    AVX2 / AVX-512 kernels (their packed Gram and product pack any layout; row-major panels
    take them at every width), not on CUDA. Measured on an AMD EPYC (AVX2, 2 threads),
    in place against the transposed copy first, median of 41 round-robin, one pass /
    factored: 2048 x 74 1.23x / 1.09x, 5461 x 266 1.36x / 1.19x, 2048 x 266 1.08x / 1.07x,
    16 x 512 x 42 1.20x / 1.12x, 8192 x 64 1.22x / 1.15x, 32 x 1024 x 32 1.38x / 1.11x,
    512 x 26 1.22x / 1.38x; orthonormalize of a row-major block 1.04-1.30x (8192 x 64,
    32 x 1024 x 32, 16384 x 256, 4096 x 200, two runs); rsvd (whose right products are
    row-major) 0.99-1.05x, bitwise the same results (bench inputs, two runs; the AVX2
    kernels are bitwise layout-independent from 64 columns, where both layouts take the
    packed kernels). Not measured on AVX-512."""
    if Y.device.type != "cpu":
        return False
    if not _ROW_MAJOR:
        _ROW_MAJOR.append(bool(_native.lib().cholqr_panel_cpu_row_major()))
    return _ROW_MAJOR[0]


def kernel(Y, mode, cond_max, gate):
    """The native kernel of cholqr_panel (CPU or CUDA) without the checks: orth calls it
    directly on the CPU outside torch.compile, the way sl.spm calls spm_cp3's; the
    dispatcher costs 30-80 us a call, as much as the kernel itself at 8 x 128 x 18
    (37 us) or 512 x 26 (34 us) (AMD EPYC)."""
    B, m, k = Y.shape
    if Y.numel() == 0:
        Q, L, X, info = _outputs(Y)
        return Q, L, X, info.zero_()
    col_major = Y.stride(-2) == 1 and Y.stride(-1) >= m
    if not col_major and not (Y.stride(-1) == 1 and Y.stride(-2) >= k and k > 1 and _row_major_ok(Y)):
        Y = _transpose.kernel(Y).mT  # to column-major panels: the native transposed copy
    Q, L, X, info = _outputs(Y)
    C = _native.lib()
    work = torch.empty(C.cholqr_panel_work_elems(mode, B, m, k), dtype=Y.dtype, device=Y.device)
    C.cholqr_panel(_native.dtype_code(Y.dtype), mode, Y.data_ptr(), Y.stride(0), Y.stride(-2), Y.stride(-1), Q.data_ptr(),
                   L.data_ptr(), X.data_ptr(), info.data_ptr(), work.data_ptr(), B, m, k, float(cond_max),
                   float(gate), _native.exec_args(Y))
    return Q, L, X, info


@cholqr_panel.register_kernel(("cpu", "cuda"))
def _(Y, mode, cond_max, gate):
    _check(Y, mode)
    return kernel(Y, mode, cond_max, gate)
