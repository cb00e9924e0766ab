"""Bridge to the native module: loads ``_C`` once and turns tensors into what the
bindings take (raw pointer, row views, dtype code, device and stream).

Nothing above this module touches ``_C``. Outputs and workspace are always allocated by
torch on the Python side; native code never allocates device memory.
"""
from __future__ import annotations

import torch

try:  # torch is imported first: only one libgomp is ever mapped (see TOOLCHAIN.md)
    from . import _C  # type: ignore[attr-defined]

    _IMPORT_ERROR: str | None = None
except ImportError as exc:  # pragma: no cover - exercised only on broken installs
    _C = None
    _IMPORT_ERROR = f"{type(exc).__name__}: {exc}"

_REBUILD = "reinstall with `pip install .` (add -Ccmake.define.SUBSPACE_LINALG_CUDA=ON for CUDA kernels)"


def available() -> bool:
    """True when the native extension imported."""
    return _C is not None


def import_error() -> str | None:
    return _IMPORT_ERROR


def lib():
    """The native module, or a RuntimeError saying how to get it."""
    if _C is None:
        raise RuntimeError(f"subspace_linalg: the native extension _C failed to import ({_IMPORT_ERROR}); {_REBUILD}")
    return _C


def has_cuda() -> bool:
    """True when this build has CUDA kernels (it says nothing about a GPU being present)."""
    return _C is not None and bool(_C.WITH_CUDA)


def dtype_code(dtype: torch.dtype) -> int:
    """The native dtype code (from the C++ enum) for a torch dtype."""
    C = lib()
    table = {
        torch.float32: C.DTYPE_F32,
        torch.float64: C.DTYPE_F64,
        torch.float16: C.DTYPE_F16,
        torch.bfloat16: C.DTYPE_BF16,
    }
    try:
        return table[dtype]
    except KeyError:
        raise TypeError(f"subspace_linalg: no native kernel for dtype {dtype}") from None


def exec_args(t: torch.Tensor) -> tuple[int, int, int]:
    """(device_type, device_index, stream) for a launch on ``t``'s device: CUDA launches go
    to torch's current stream of that device."""
    C = lib()
    if t.device.type == "cuda":
        if not C.WITH_CUDA:
            raise RuntimeError(f"subspace_linalg: this build has no CUDA kernels; {_REBUILD}")
        idx = t.device.index if t.device.index is not None else torch.cuda.current_device()
        return (C.DEVICE_CUDA, idx, torch.cuda.current_stream(idx).cuda_stream)
    if t.device.type != "cpu":
        raise ValueError(f"subspace_linalg: native kernels run on cpu or cuda tensors, got device {t.device}")
    return (C.DEVICE_CPU, -1, 0)


def rows(x: torch.Tensor) -> tuple[torch.Tensor, int, list[int]]:
    """View ``x`` (..., n) as rows for the native RowsView: returns (tensor, pointer,
    [n1, n2, n, s1, s2, s_elem]). Batch dims that coalesce into two keep their strides;
    otherwise the tensor is made contiguous (the returned tensor keeps it alive)."""
    if x.dim() == 0:
        x = x.reshape(1)
    n = x.shape[-1]
    s_elem = x.stride(-1) if n > 1 else 1
    dims = [(s, st) for s, st in zip(x.shape[:-1], x.stride()[:-1]) if s != 1]
    merged: list[list[int]] = []
    for size, stride in dims:
        if merged and merged[-1][1] == stride * size:
            merged[-1][0] *= size
            merged[-1][1] = stride
        else:
            merged.append([size, stride])
    if len(merged) > 2:
        x = x.contiguous()
        r = x.numel() // n if n else 0
        return x, x.data_ptr(), [1, r, n, 0, n, 1]
    while len(merged) < 2:
        merged.insert(0, [1, 0])
    (n1, s1), (n2, s2) = merged
    return x, x.data_ptr(), [n1, n2, n, s1, s2, s_elem]


def cuda_runtime_version() -> str | None:
    """'major.minor' of the CUDA runtime the kernels were built with, or None."""
    if not has_cuda():
        return None
    v = int(_C.cuda_runtime_version())
    return f"{v // 1000}.{(v % 1000) // 10}" if v > 0 else None
