"""Test cases of the Subspace Power Method shared by tests/test_spm.py and
scripts/cuda_smoke.py: planted symmetric CP tensors and the inputs sl.spm hands to the
native spm_extract."""
from __future__ import annotations

import math

import torch


def planted(d, r, order, g, dtype=torch.float64):
    A = torch.nn.functional.normalize(torch.randn(d, r, generator=g, dtype=torch.float64), dim=0)
    w = torch.randn(r, generator=g, dtype=torch.float64)
    w = w + 0.5 * torch.sign(w)  # |w| >= 0.5: every component visible
    T = reconstruct(w, A, order)
    return T.to(dtype), w, A


def reconstruct(w, F, order):
    F = F.double()
    if order == 3:
        return torch.einsum("r,ir,jr,kr->ijk", w.double(), F, F, F)
    return torch.einsum("r,ir,jr,kr,lr->ijkl", w.double(), F, F, F, F)


def extract_inputs(order, d, r, dtype, device, g):
    """The subspace, pseudo-inverse and starts that spm hands to spm_extract."""
    T, _, A = planted(d, r, order, g)
    iu = torch.triu_indices(d, d)
    s = torch.where(iu[0] == iu[1], 1.0, 2.0).double().sqrt()
    if order == 4:
        M = T[iu[0], iu[1]][:, iu[0], iu[1]]
        lam, vecs = torch.linalg.eigh(s[:, None] * M * s[None, :])
        p = lam.abs().argsort(descending=True)
        lam, vecs = lam[p], vecs[:, p]
        U = torch.empty(0, dtype=torch.float64)
    else:
        vecs, lam, Uh = torch.linalg.svd(s[:, None] * T[iu[0], iu[1]], full_matrices=False)
        U = Uh[:r].T.contiguous()
    V = (vecs[:, :r] / s[:, None]).contiguous()
    D1 = torch.diag(1 / lam[:r])
    G = torch.randn(r, 3, d, generator=g, dtype=torch.float64)
    C = torch.randn(r, 3, r, generator=g, dtype=torch.float64)
    args = [t.to(dtype=dtype, device=device) for t in (V, D1, U, G, C)]
    return args + [order == 3, 5000, 64 * torch.finfo(dtype).eps, math.sqrt(0.5), 1e-2], A
