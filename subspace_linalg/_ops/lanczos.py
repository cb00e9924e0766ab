"""subspace_linalg::lanczos_expand_ — the block Lanczos basis expansion of the
thick-restart driver (subspace_linalg/spectral.py): native CPU kernel
(csrc/cpu/lanczos.cpp) and its CUDA twin (csrc/cuda/lanczos.cu: one persistent block, no
host reads inside the expansion; never run on a GPU yet)."""
from __future__ import annotations

from typing import Optional

import torch

from .. import _native
from .._dtypes import FLOATING
from ..reference import lanczos as _ref


def _check(V, H, dense, crow, col, val, p, j0, jstop) -> None:
    torch._check(V.dtype in FLOATING and V.dim() == 2,
                 lambda: f"lanczos_expand_: V must be 2-D float32/64, got {tuple(V.shape)} {V.dtype}")
    rows, n = V.shape
    torch._check(H.dtype == V.dtype and H.dim() == 2 and H.shape[0] == rows and H.shape[1] >= rows,
                 lambda: f"lanczos_expand_: H must be ({rows}, >= {rows}) {V.dtype}, got {tuple(H.shape)} {H.dtype}")
    torch._check(p >= 1 and 0 <= j0 and j0 + p <= rows <= n,
                 lambda: f"lanczos_expand_: need p >= 1, 0 <= j0, j0 + p <= rows <= n; got p={p}, j0={j0}, "
                         f"rows={rows}, n={n}")
    torch._check(jstop >= 0, lambda: f"lanczos_expand_: jstop must be >= 0, got {jstop}")
    if dense is not None:
        torch._check(dense.shape == (n, n) and dense.dtype == V.dtype,
                     lambda: f"lanczos_expand_: dense must be ({n}, {n}) {V.dtype}, got {tuple(dense.shape)} {dense.dtype}")
    else:
        torch._check(crow is not None and col is not None and val is not None,
                     lambda: "lanczos_expand_: needs dense or the CSR arrays crow, col, val")
        torch._check(crow.shape == (n + 1,) and crow.dtype == torch.int64 and col.dtype == torch.int64,
                     lambda: f"lanczos_expand_: crow must be ({n + 1},) int64 and col int64")
        torch._check(val.dtype == V.dtype and col.shape == val.shape,
                     lambda: f"lanczos_expand_: val must be {V.dtype} with col's shape")


@torch.library.custom_op("subspace_linalg::lanczos_expand_", mutates_args=("V", "H"))
def lanczos_expand_(V: torch.Tensor, H: torch.Tensor, dense: Optional[torch.Tensor], crow: Optional[torch.Tensor],
                    col: Optional[torch.Tensor], val: Optional[torch.Tensor], p: int, j0: int, jstop: int,
                    thresh: float, seed: int, draws: int) -> torch.Tensor:
    """Block Lanczos steps from the pending rows [j0, j0 + p) of V (rows, n) while
    j + p <= jstop, with the symmetric operator (dense (n, n) or CSR crow/col/val), filling
    H (rows, >= rows) (see csrc/include/sl/lanczos.h). Returns int64 [final j, status
    (0 ok, 2 non-finite), draws] on the CPU."""
    _check(V, H, dense, crow, col, val, p, j0, jstop)
    return _ref.lanczos_expand_(V, H, dense, crow, col, val, p, j0, jstop, thresh, seed, draws)


@lanczos_expand_.register_fake
def _(V, H, dense, crow, col, val, p, j0, jstop, thresh, seed, draws):
    _check(V, H, dense, crow, col, val, p, j0, jstop)
    return torch.empty(3, dtype=torch.int64)


def _expand(V, H, dense, crow, col, val, p, j0, jstop, thresh, seed, draws) -> torch.Tensor:
    """The native call on V's device (every tensor contiguous, shapes checked by the
    caller). On CUDA one persistent block runs the whole expansion on torch's current
    stream, with a device workspace; the only host read is the 3-entry result at the end."""
    C = _native.lib()
    rows, n = V.shape
    csr = dense is None
    code = _native.dtype_code(V.dtype)
    ws = None
    if V.device.type == "cuda":
        ws = torch.empty(int(C.lanczos_expand_cuda_workspace_bytes(code, n, p, rows)), dtype=torch.uint8,
                         device=V.device)
    out = torch.zeros(3, dtype=torch.int64, device=V.device)
    C.lanczos_expand(
        code, n, p, rows, H.stride(0), j0, jstop, float(thresh), int(seed), int(draws),
        0 if csr else dense.data_ptr(), 0 if csr else dense.stride(0), crow.data_ptr() if csr else 0,
        col.data_ptr() if csr else 0, val.data_ptr() if csr else 0, val.numel() if csr else 0,
        V.data_ptr(), H.data_ptr(), out.data_ptr(), 0 if ws is None else ws.data_ptr(), 0 if ws is None else ws.numel(),
        _native.exec_args(V))
    return out.cpu()


def expand_cpu(V, H, dense, crow, col, val, p: int, j0: int, jstop: int, thresh: float, seed: int,
               draws: int) -> torch.Tensor:
    """The native CPU call (every tensor contiguous, shapes checked by the caller)."""
    return _expand(V, H, dense, crow, col, val, p, j0, jstop, thresh, seed, draws)


def _contig(t):
    return t if t is None or t.is_contiguous() else t.contiguous()


@lanczos_expand_.register_kernel(("cpu", "cuda"))
def _(V, H, dense, crow, col, val, p, j0, jstop, thresh, seed, draws):
    _check(V, H, dense, crow, col, val, p, j0, jstop)
    torch._check(V.is_contiguous() and H.is_contiguous(), lambda: "lanczos_expand_: V and H must be contiguous")
    return _expand(V, H, _contig(dense), _contig(crow), _contig(col), _contig(val), p, j0, jstop, thresh, seed, draws)
