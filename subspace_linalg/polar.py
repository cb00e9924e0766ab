"""Polar factor and principal angles between subspaces."""
from __future__ import annotations

import torch

from . import _gemm, _validate
from ._dtypes import ALL_FLOATING, compute_dtype
from ._lowrank_stages import orthonormalize


def polar(A: torch.Tensor, *, check_finite: bool = True) -> torch.Tensor:
    """Orthogonal polar factor U Vh of the thin SVD A = U diag(S) Vh, A (..., m, n).

    Returns (..., m, n) with orthonormal columns (m >= n) or rows (m < n): the nearest
    semi-orthogonal matrix to A in the Frobenius norm (used by TSV-M / Iso-CTS merging).
    For rank-deficient A the factor is not unique; this returns U Vh of torch's SVD.
    float32/float64 compute in their own precision; float16/bfloat16 inputs compute in
    float32 and return float32. Raises ValueError for non-finite input unless
    ``check_finite=False``.
    """
    fn = "polar"
    _validate.check_tensor(fn, "A", A, dtypes=ALL_FLOATING, min_ndim=2, allow_empty=False)
    if not isinstance(check_finite, bool):
        raise TypeError(f"{fn}: check_finite must be a bool, got {type(check_finite).__name__}")
    if check_finite:
        _validate.check_finite(fn, "A", A)
    A = A.to(compute_dtype(A.dtype))
    U, _, Vh = torch.linalg.svd(A, full_matrices=False)
    return _gemm.mm(U, Vh)


def principal_angles(Q1: torch.Tensor, Q2: torch.Tensor, *, check_finite: bool = True) -> torch.Tensor:
    """Principal angles (radians, ascending) between range(Q1) and range(Q2).

    Q1 (..., m, p), Q2 (..., m, r) with p, r <= m; batch dims broadcast. The columns need
    not be orthonormal: both are orthonormalized first (as scipy.linalg.subspace_angles).
    Returns (..., min(p, r)) in the compute dtype (float32 for 16-bit inputs).

    Cosines come from the singular values of Q1^T Q2 (clamped to [0, 1]); angles below
    pi/4 use the sines instead (the singular values of the part of one basis outside the
    other: Knyazev & Argentati 2002), which keeps small angles accurate to ~eps instead of
    ~sqrt(eps). ``check_finite=False`` skips the NaN/Inf check of Q1 and Q2 (a non-finite
    input then gives undefined angles).
    """
    fn = "principal_angles"
    if not isinstance(check_finite, bool):
        raise TypeError(f"{fn}: check_finite must be a bool, got {type(check_finite).__name__}")
    for name, Q in (("Q1", Q1), ("Q2", Q2)):
        _validate.check_tensor(fn, name, Q, dtypes=ALL_FLOATING, min_ndim=2, allow_empty=False)
        if Q.shape[-1] > Q.shape[-2]:
            raise ValueError(f"{fn}: {name} must have at most as many columns as rows, got shape {tuple(Q.shape)}")
    if Q1.shape[-2] != Q2.shape[-2]:
        raise ValueError(f"{fn}: Q1 and Q2 must have the same number of rows, got {tuple(Q1.shape)} and {tuple(Q2.shape)}")
    _validate.check_same_device(fn, Q1=Q1, Q2=Q2)
    if check_finite:
        _validate.check_finite(fn, "Q1", Q1)
        _validate.check_finite(fn, "Q2", Q2)
    cdt = torch.promote_types(compute_dtype(Q1.dtype), compute_dtype(Q2.dtype))
    batch = torch.broadcast_shapes(Q1.shape[:-2], Q2.shape[:-2])
    Q1 = orthonormalize(Q1.to(cdt).expand(batch + Q1.shape[-2:]), check_finite=False)
    Q2 = orthonormalize(Q2.to(cdt).expand(batch + Q2.shape[-2:]), check_finite=False)
    if Q1.shape[-1] < Q2.shape[-1]:
        Q1, Q2 = Q2, Q1  # Q1 is the wider basis: the sines are those of Q2 outside range(Q1)
    C = _gemm.mm(Q1.mT, Q2)
    cos = torch.linalg.svdvals(C).clamp(0.0, 1.0)            # descending -> angles ascending
    sin = torch.linalg.svdvals(Q2 - _gemm.mm(Q1, C)).clamp(0.0, 1.0)  # descending -> angles descending
    sin = sin.flip(-1)
    return torch.where(cos * cos >= 0.5, torch.asin(sin), torch.acos(cos))

