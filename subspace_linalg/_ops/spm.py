"""subspace_linalg::spm_contract and subspace_linalg::spm_power — the inner kernels of
the Subspace Power Method (layout: csrc/include/sl/spm.h, reference: reference/spm.py)."""
from __future__ import annotations

import torch

from .. import _native
from .._dtypes import FLOATING
from ..reference import spm as _ref


def _check(V: torch.Tensor, X: torch.Tensor) -> None:
    torch._check(V.dtype in FLOATING, lambda: f"spm: V must be float32 or float64, got {V.dtype}")
    torch._check(X.dtype == V.dtype, lambda: f"spm: X must have V's dtype {V.dtype}, got {X.dtype}")
    torch._check(V.dim() == 2 and X.dim() == 2, lambda: "spm: V must be (D, R) and X (B, d)")
    d = X.shape[1]
    torch._check(V.shape[0] == d * (d + 1) // 2,
                 lambda: f"spm: V must have d (d + 1) / 2 = {d * (d + 1) // 2} rows for X of shape "
                         f"{tuple(X.shape)}, got {tuple(V.shape)}")
    torch._check(V.shape[1] >= 1 and d >= 1, lambda: "spm: need R >= 1 and d >= 1")


def _workspace(V: torch.Tensor, X: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    """(buffer, pointer, bytes): CUDA workspace, an empty tensor on the CPU."""
    if not X.is_cuda:
        return X, 0, 0
    C = _native.lib()
    nbytes = int(C.spm_workspace_bytes(_native.dtype_code(X.dtype), X.shape[1], V.shape[1], X.shape[0]))
    ws = torch.empty(max(nbytes, 1), dtype=torch.uint8, device=X.device)
    return ws, ws.data_ptr(), nbytes


@torch.library.custom_op("subspace_linalg::spm_contract", mutates_args=())
def spm_contract(V: torch.Tensor, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each row x of X (B, d): alpha = V^T (x (x) x) (B, R) and grad = sum_r alpha_r V_r x
    (B, d), V (D, R) in the packed symmetric layout; dtype of the inputs."""
    _check(V, X)
    return _ref.contract(V, X)


@spm_contract.register_fake
def _(V, X):
    _check(V, X)
    return X.new_empty(X.shape[0], V.shape[1]), X.new_empty(X.shape)


@spm_contract.register_kernel(("cpu", "cuda"))
def _(V, X):
    _check(V, X)
    V, X = V.contiguous(), X.contiguous()
    B, d = X.shape
    alpha = X.new_empty(B, V.shape[1])
    grad = X.new_empty(B, d)
    ws, wp, wb = _workspace(V, X)
    _native.lib().spm_contract(_native.dtype_code(X.dtype), d, V.shape[1], B, V.data_ptr(), X.data_ptr(),
                               alpha.data_ptr(), grad.data_ptr(), wp, wb, _native.exec_args(X))
    return alpha, grad


@torch.library.custom_op("subspace_linalg::spm_power", mutates_args=())
def spm_power(V: torch.Tensor, X0: torch.Tensor, maxiter: int, tol: float, cn: float
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Shifted power iteration of SPM from each unit row of X0 (B, d): returns the final
    points X (B, d), F(x) = |V^T (x (x) x)|^2 (B,) in X0's dtype and the iteration counts
    (B,) int64."""
    _check(V, X0)
    return _ref.power(V, X0, maxiter, tol, cn)


@spm_power.register_fake
def _(V, X0, maxiter, tol, cn):
    _check(V, X0)
    B = X0.shape[0]
    return X0.new_empty(X0.shape), X0.new_empty(B), X0.new_empty(B, dtype=torch.int64)


@spm_power.register_kernel(("cpu", "cuda"))
def _(V, X0, maxiter, tol, cn):
    _check(V, X0)
    V = V.contiguous()
    X = X0.clone(memory_format=torch.contiguous_format)
    B, d = X.shape
    f = X.new_empty(B)
    iters = torch.empty(B, dtype=torch.int64, device=X.device)
    ws, wp, wb = _workspace(V, X)
    _native.lib().spm_power(_native.dtype_code(X.dtype), d, V.shape[1], B, V.data_ptr(), X.data_ptr(),
                            f.data_ptr(), iters.data_ptr(), int(maxiter), float(tol), float(cn), wp, wb,
                            _native.exec_args(X))
    return X, f, iters
