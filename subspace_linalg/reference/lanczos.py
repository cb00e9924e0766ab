"""Pure-torch reference of subspace_linalg::lanczos_expand_ (the contract is in
csrc/include/sl/lanczos.h): the same steps, reductions in float64, the same Philox
directions after a breakdown (the native CPU and CUDA kernels are tested against it)."""
from __future__ import annotations

import torch

from .krylov import csr_matvec
from .sketch import GAUSSIAN, rand_matrix

LANCZOS_OK, LANCZOS_NONFINITE = 0, 2
LANCZOS_TAG = 0x4C414E43  # "LANC", kLanczosTag


def _orth_against(B: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """w minus its components along the rows of B, twice; (w', summed coefficients)."""
    if B.shape[0] == 0:
        return w, w.new_zeros(0)
    c = (B.double() @ w.double()).to(w.dtype)
    w = w - c @ B
    c2 = (B.double() @ w.double()).to(w.dtype)
    return w - c2 @ B, c + c2


def _finite(x: float) -> bool:
    return x == x and abs(x) != float("inf")


def lanczos_expand_(V: torch.Tensor, H: torch.Tensor, dense, crow, col, val, p: int, j0: int, jstop: int,
                    thresh: float, seed: int, draws: int) -> torch.Tensor:
    """Block steps from the pending rows [j0, j0 + p) of V while j + p <= jstop: products
    with the dense or CSR operator, classical Gram-Schmidt twice against the basis and the
    new rows, H's columns j..j+p-1, a Philox direction where a column breaks down.
    Returns int64 [final j, status, draws]."""
    n = V.shape[1]
    rows = V.shape[0]
    j = j0
    while j + p <= jstop and j + 2 * p <= rows:
        X = V[j:j + p]
        W = (dense @ X.mT).mT if dense is not None else csr_matvec(crow, col, val, X, n)
        r = j + p
        for s in range(p):
            w = W[s]
            before = float(torch.linalg.vector_norm(w.double()))
            w, c = _orth_against(V[:r], w)
            H[:r, j + s] = c
            w, c = _orth_against(V[r:r + s], w)
            H[r:r + s, j + s] = c
            beta = float(torch.linalg.vector_norm(w.double()))
            if not (_finite(beta) and _finite(before)):
                return torch.tensor([j, LANCZOS_NONFINITE, draws], dtype=torch.int64)
            if beta > thresh * before and beta > 0.0:
                H[r + s, j + s] = beta
                V[r + s] = w / beta
                continue
            H[r + s, j + s] = 0
            z = torch.from_numpy(rand_matrix(GAUSSIAN, seed, LANCZOS_TAG, 1, n, row0=draws)[0]).to(V)
            draws += 1
            z, _ = _orth_against(V[:r + s], z)
            nz = float(torch.linalg.vector_norm(z.double()))
            V[r + s] = z / nz if nz > 0 else z * 0
        j += p
    return torch.tensor([j, LANCZOS_OK, draws], dtype=torch.int64)
