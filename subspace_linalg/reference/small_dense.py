"""Pure-torch references of the small dense batched ops (same contracts as the native
ones, see subspace_linalg/_ops/small_dense.py): the fallback on devices without a native
kernel and the second oracle of the tests."""
from __future__ import annotations

import torch


def _rows_from(info: torch.Tensor, n: int, device) -> torch.Tensor:
    """(..., n, 1) mask: row index >= info - 1 where info > 0."""
    r = torch.arange(n, device=device).view(*([1] * info.dim()), n, 1)
    i = info.to(torch.int64).unsqueeze(-1).unsqueeze(-1)
    return (i > 0) & (r >= i - 1)


def cholesky_small(A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(L, info) with torch.linalg.cholesky_ex; rows >= info - 1 of a failed L are zero."""
    n = A.shape[-1]
    L, info = torch.linalg.cholesky_ex(A)
    info = info.to(torch.int32)
    L = torch.where(_rows_from(info, n, A.device), torch.zeros((), dtype=A.dtype, device=A.device), L)
    return L.contiguous(), info


def tril_inverse_small(L: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(L^{-1}, info): info = j + 1 for the first zero or non-finite diagonal entry (X = 0 then)."""
    n = L.shape[-1]
    if n == 0:
        return torch.empty_like(L, memory_format=torch.contiguous_format), torch.zeros(L.shape[:-2], dtype=torch.int32, device=L.device)
    d = torch.diagonal(L, dim1=-2, dim2=-1)
    bad = (d == 0) | ~torch.isfinite(d)
    idx = torch.arange(1, n + 1, device=L.device, dtype=torch.int32).expand(bad.shape)
    first = torch.where(bad, idx, torch.full_like(idx, n + 1)).amin(-1)
    info = torch.where(first == n + 1, torch.zeros_like(first), first).to(torch.int32)
    eye = torch.eye(n, dtype=L.dtype, device=L.device).expand(L.shape)
    failed = (info > 0)[..., None, None]
    X = torch.linalg.solve_triangular(torch.where(failed, eye, L.tril()), eye, upper=False)
    X = torch.where(failed, torch.zeros((), dtype=L.dtype, device=L.device), X)
    return X.contiguous(), info


def eigh_jacobi(A: torch.Tensor, max_sweeps: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(eigenvalues ascending, eigenvectors as columns, info = 0) of the symmetric A."""
    w, V = torch.linalg.eigh(A)
    return w, V.contiguous(), torch.zeros(A.shape[:-2], dtype=torch.int32, device=A.device)


def svd_jacobi(A: torch.Tensor, max_sweeps: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(U, S descending, Vh, info = 0): thin SVD of A (..., m, n), m >= n."""
    U, S, Vh = torch.linalg.svd(A, full_matrices=False)
    return U.contiguous(), S, Vh.contiguous(), torch.zeros(A.shape[:-2], dtype=torch.int32, device=A.device)
