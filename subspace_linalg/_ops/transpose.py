"""subspace_linalg::transpose_copy: the transpose of the last two dims as a contiguous copy.

    transpose_copy(A) -> At        A (..., r, c) -> At (..., c, r) contiguous, At = A.mT

Any dtype of 2, 4 or 8 bytes (the bits are moved). A that is not contiguous is made so
first. The cpu and cuda kernels call the native code (on the CPU 2-3x the speed of torch's
transposing copy, see csrc/cpu/transpose.cpp); other devices use the pure-torch reference
(subspace_linalg/reference/transpose.py).
"""
from __future__ import annotations

import torch

from .. import _native
from ..reference import transpose as _ref


def _check(A: torch.Tensor) -> None:
    torch._check(A.dim() >= 2, lambda: f"transpose_copy: A must have at least 2 dims, got shape {tuple(A.shape)}")
    torch._check(A.element_size() in (2, 4, 8) and not A.is_complex(),
                 lambda: f"transpose_copy: A must be a real dtype of 2, 4 or 8 bytes, got {A.dtype}")


@torch.library.custom_op("subspace_linalg::transpose_copy", mutates_args=())
def transpose_copy(A: torch.Tensor) -> torch.Tensor:
    """A.mT as a contiguous tensor."""
    _check(A)
    return _ref.transpose_copy(A)


@transpose_copy.register_fake
def _(A):
    _check(A)
    return A.new_empty(A.shape[:-2] + (A.shape[-1], A.shape[-2]))


@transpose_copy.register_kernel(("cpu", "cuda"))
def _(A):
    _check(A)
    return kernel(A)


def kernel(A: torch.Tensor) -> torch.Tensor:
    """The native kernel of transpose_copy (CPU or CUDA) without the checks and the
    dispatcher, for callers that already run past it (cholqr_panel's kernel): the custom
    op costs 51 us a call at 1 x 512 x 26 float32, this 17 (torch.mT.contiguous() 26; median
    of 301 round-robin, AMD EPYC, AVX2)."""
    r, c = A.shape[-2], A.shape[-1]
    out = A.new_empty(A.shape[:-2] + (c, r))
    if out.numel() == 0:
        return out
    a = A.contiguous()
    _native.lib().transpose_copy(a.data_ptr(), out.data_ptr(), a.numel() // (r * c), r, c, a.element_size(),
                                 _native.exec_args(a))
    return out
