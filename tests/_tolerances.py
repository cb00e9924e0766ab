"""THE tolerance table of the tests: rtol = C_op * sqrt(n) * eps(dtype) (RandLAPACK
style), C_op per op class. float16/bfloat16 rows also accept <= 2x the error of plain
torch in the same dtype (fast-hadamard-transform's rule), see ``lowp_bound``.

Never write a tolerance inline in a test: add an op class here."""
from __future__ import annotations

import math

import torch

# C_op per op class; the bound is C_op * sqrt(n) * eps(compute dtype)
C_OP = {
    "transform": 4.0,      # fwht, dct, sketches applied exactly (orthogonal/structured maps)
    "fft": 10.0,           # transforms through a complex FFT (DCT-II by Makhoul), forward and adjoint
    "gemm": 4.0,           # one product, against |M| |X| (the classical bound's scale)
    "gather": 0.0,         # gather/scatter: bitwise
    "orth": 10.0,          # ||Q^T Q - I||_F, backward error of orthonormalization
    "small_dense": 50.0,   # batched Cholesky / triangular solve / Jacobi eig-SVD (relative residuals)
    "lowrank": 50.0,       # rsvd invariants (orthonormality of U, V; reconstruction vs optimal)
    "eig": 100.0,          # subspace iteration / Lanczos eigenpairs
    "solve": 10.0,         # CG residual bound slack on top of rtol
    "tensor": 100.0,       # SPM CP reconstruction
}

EPS = {
    torch.float64: torch.finfo(torch.float64).eps,
    torch.float32: torch.finfo(torch.float32).eps,
    torch.bfloat16: torch.finfo(torch.bfloat16).eps,
    torch.float16: torch.finfo(torch.float16).eps,
}


def rtol(op: str, dtype: torch.dtype, n: int = 1) -> float:
    """Relative tolerance for op class ``op`` on problems of size ``n`` in ``dtype``."""
    return C_OP[op] * math.sqrt(max(n, 1)) * EPS[dtype]


def lowp_bound(op: str, dtype: torch.dtype, n: int, torch_error: float) -> float:
    """For float16/bfloat16: the larger of the table bound and 2x plain torch's error."""
    return max(rtol(op, dtype, n), 2.0 * torch_error)
