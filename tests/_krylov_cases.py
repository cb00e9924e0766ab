"""Test matrices of the Krylov family: Poisson 1-D / 2-D (dense and CSR) and random SPD
matrices with a prescribed spectrum (CoLA-style spectrum control)."""
from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
import torch


def poisson1d_scipy(n: int) -> sp.csr_matrix:
    return sp.diags([-np.ones(n - 1), 2 * np.ones(n), -np.ones(n - 1)], [-1, 0, 1], format="csr")


def poisson2d_scipy(m: int) -> sp.csr_matrix:
    T = poisson1d_scipy(m)
    eye = sp.identity(m, format="csr")
    return (sp.kron(T, eye) + sp.kron(eye, T)).tocsr()


def to_torch(A: sp.spmatrix, dtype: torch.dtype, layout: str) -> torch.Tensor:
    A = A.tocsr()
    if layout == "dense":
        return torch.from_numpy(A.toarray()).to(dtype)
    with warnings.catch_warnings():  # torch: "Sparse CSR tensor support is in beta state"
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(torch.from_numpy(A.indptr).long(), torch.from_numpy(A.indices).long(),
                                       torch.from_numpy(A.data).to(dtype), size=A.shape,
                                       check_invariants=True)


def dense_to_csr(A: torch.Tensor) -> torch.Tensor:
    return to_torch(sp.csr_matrix(A.numpy()), A.dtype, "csr")


def spd(n: int, kappa: float, gen: torch.Generator, *, batch=(), dtype=torch.float64,
        spread: str = "log") -> torch.Tensor:
    """Q diag(lambda) Q^T with a Haar-random Q and eigenvalues from 1 to kappa, spaced
    geometrically (``spread="log"``: CG's hard case) or evenly (``"linear"``); kappa may be a
    tensor of shape ``batch`` (one condition number per matrix)."""
    Q, _ = torch.linalg.qr(torch.randn(*batch, n, n, generator=gen, dtype=torch.float64))
    k = torch.as_tensor(kappa, dtype=torch.float64)
    t = torch.linspace(0, 1, n, dtype=torch.float64)
    kk = k.unsqueeze(-1) if k.dim() else k
    ev = torch.exp(torch.log(kk) * t) if spread == "log" else 1 + (kk - 1) * t
    A = (Q * ev.unsqueeze(-2)) @ Q.mT
    return ((A + A.mT) / 2).to(dtype)


def spectrum_matrix(evals: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A symmetric matrix with exactly the given eigenvalues (float64)."""
    n = evals.numel()
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    A = (Q * evals.to(torch.float64)) @ Q.T
    return (A + A.T) / 2
