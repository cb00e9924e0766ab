"""subspace_linalg::fwht — Walsh-Hadamard transform along the last dim."""
from __future__ import annotations

import math

import torch

from .. import _native
from .._dtypes import ALL_FLOATING
from ..reference import fwht as _ref


def _check(x: torch.Tensor) -> None:
    torch._check(x.dtype in ALL_FLOATING, lambda: f"fwht: x must be floating point, got {x.dtype}")
    torch._check(x.dim() >= 1, lambda: "fwht: x must have at least one dim")


@torch.library.custom_op("subspace_linalg::fwht", mutates_args=())
def fwht(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Sylvester-ordered Walsh-Hadamard transform of the last dim (a power of two) times
    ``scale``; contiguous output of x's shape and dtype. Devices without a native kernel
    use the pure-torch reference."""
    _check(x)
    return _ref.fwht_last(x, scale)


@fwht.register_fake
def _(x, scale):
    _check(x)
    return torch.empty(x.shape, dtype=x.dtype, device=x.device)


def _native_call(x: torch.Tensor, out: torch.Tensor, scale: float) -> None:
    C = _native.lib()
    xv, xp, xs = _native.rows(x)
    ov, op_, os_ = _native.rows(out)
    C.fwht(_native.dtype_code(x.dtype), xp, xs, op_, os_, scale, _native.exec_args(x))


@fwht.register_kernel(("cpu", "cuda"))
def _(x, scale):
    _check(x)
    n = x.shape[-1]
    code = _native.dtype_code(x.dtype)
    if (x.is_cuda and x.dtype in (torch.float16, torch.bfloat16) and x.numel()
            and n > _native.lib().fwht_local_len(code)):
        # the CUDA kernel's passes beyond one chunk (and the split below) keep their
        # intermediate in x's dtype, unscaled: rounded to 8-11 bits midway and, in float16,
        # overflowing (an all-8 row of 16384 gives inf); the contract computes 16-bit
        # formats in float, as the CPU kernel does. (Found by review; not run on a GPU.)
        return _native_kernel(x.float(), scale).to(x.dtype)
    return _native_kernel(x, scale)


def _native_kernel(x: torch.Tensor, scale: float) -> torch.Tensor:
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    if x.numel() == 0:
        return out
    n = x.shape[-1]
    code = _native.dtype_code(x.dtype)
    limit = _native.lib().fwht_cuda_max_len(code) if x.is_cuda else n
    if n <= limit:
        _native_call(x, out, scale)
        return out
    # H_n = H_a (x) H_b: transform the trailing b, then the leading a (each within limit)
    b = limit
    a = n // b
    tmp = torch.empty(x.shape[:-1] + (a, b), dtype=x.dtype, device=x.device)
    _native_call(x.reshape(x.shape[:-1] + (a, b)), tmp, math.sqrt(abs(scale)))
    res = torch.empty(x.shape[:-1] + (b, a), dtype=x.dtype, device=x.device)
    _native_call(tmp.transpose(-1, -2), res, math.copysign(math.sqrt(abs(scale)), scale))
    out.copy_(res.transpose(-1, -2).reshape(x.shape))
    return out


def _setup_context(ctx, inputs, output):
    ctx.scale = inputs[1]


def _backward(ctx, grad):
    # H is symmetric: the adjoint of x -> s H x is g -> s H g
    return torch.ops.subspace_linalg.fwht.default(grad.contiguous(), ctx.scale), None


fwht.register_autograd(_backward, setup_context=_setup_context)
