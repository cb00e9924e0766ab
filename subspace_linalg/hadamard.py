"""Walsh-Hadamard transform: the public driver."""
from __future__ import annotations

import math

import torch

from . import _validate
from ._dtypes import ALL_FLOATING

_fwht_op = None


def _op():
    global _fwht_op
    if _fwht_op is None:
        from . import _ops  # noqa: F401  (registers the ops)

        _fwht_op = torch.ops.subspace_linalg.fwht.default
    return _fwht_op


def fwht(x: torch.Tensor, *, dim: int = -1, normalized: bool = True) -> torch.Tensor:
    """Walsh-Hadamard transform of ``x`` along ``dim`` (Sylvester order).

    With ``normalized=True`` (default) this is the orthonormal transform
    ``H_n / sqrt(n)`` — equal to ``scipy.linalg.hadamard(n) / sqrt(n)`` applied along
    ``dim`` — which is symmetric and its own inverse. With ``normalized=False`` the entries
    of H are +-1. The length along ``dim`` must be a power of two (1 is allowed).

    Any batch shape and strides; float32 and float64 compute in their own precision,
    float16 and bfloat16 accumulate in float32 and return their input dtype. Differentiable
    (the transform is its own adjoint). Returns a new tensor of x's shape and dtype (a
    strided view of a contiguous result when ``dim`` is not the last).
    """
    fn = "fwht"
    _validate.check_tensor(fn, "x", x, dtypes=ALL_FLOATING, min_ndim=1)
    d = _validate.check_dim(fn, x, dim)
    if not isinstance(normalized, bool):
        raise TypeError(f"{fn}: normalized must be a bool, got {type(normalized).__name__}")
    n = x.shape[d]
    if n < 1 or n & (n - 1):
        raise ValueError(f"{fn}: the length along dim {dim} must be a power of two, got {n} (shape {tuple(x.shape)})")
    scale = 1.0 / math.sqrt(n) if normalized else 1.0
    last = d == x.dim() - 1
    xm = x if last else x.movedim(d, -1)
    y = _op()(xm, scale)
    return y if last else y.movedim(-1, d)
