"""subspace_linalg::gather_rows / scatter_rows / scatter_rows_ — fused row gather and
scatter with an optional per-row scale (each the other's adjoint).

Op contract: G, X (B, m, n) / (B, k, n); idx int64 (B or 1, k) (a leading 1 shares the
indices across the batch); scale None or idx's shape in the data dtype. Indices are
checked against the row count before anything is written (ValueError): on the CPU by one
native pass over the host index (no tensor ops, no sync), on CUDA here with torch."""
from __future__ import annotations

from typing import Optional

import torch

from .. import _native
from .._dtypes import ALL_FLOATING
from ..reference import select as _ref


def _check(fn: str, X: torch.Tensor, idx: torch.Tensor, scale: Optional[torch.Tensor]) -> None:
    torch._check(X.dtype in ALL_FLOATING, lambda: f"{fn}: data must be floating point, got {X.dtype}")
    torch._check(X.dim() == 3, lambda: f"{fn}: data must be 3-D (B, rows, n), got {tuple(X.shape)}")
    torch._check(idx.dtype == torch.int64, lambda: f"{fn}: idx must be int64, got {idx.dtype}")
    torch._check(idx.dim() == 2, lambda: f"{fn}: idx must be 2-D (B or 1, k), got {tuple(idx.shape)}")
    torch._check(idx.shape[0] in (1, X.shape[0]), lambda: f"{fn}: idx batch {idx.shape[0]} vs data batch {X.shape[0]}")
    torch._check(idx.device == X.device, lambda: f"{fn}: idx must be on the data's device {X.device}, got {idx.device}")
    if scale is not None:
        torch._check(scale.shape == idx.shape, lambda: f"{fn}: scale shape {tuple(scale.shape)} != idx shape {tuple(idx.shape)}")
        torch._check(scale.dtype == X.dtype, lambda: f"{fn}: scale dtype {scale.dtype} != data dtype {X.dtype}")
        torch._check(scale.device == X.device,
                     lambda: f"{fn}: scale must be on the data's device {X.device}, got {scale.device}")


def _check_eager(fn: str, X: torch.Tensor, idx: torch.Tensor, scale: Optional[torch.Tensor]) -> None:
    """``_check`` for real tensors: plain comparisons first (the torch._check calls only
    when one fails, for their message)."""
    if (X.dtype in ALL_FLOATING and X.dim() == 3 and idx.dtype == torch.int64 and idx.dim() == 2
            and idx.shape[0] in (1, X.shape[0]) and idx.device == X.device
            and (scale is None or (scale.shape == idx.shape and scale.dtype == X.dtype and scale.device == X.device))):
        return
    _check(fn, X, idx, scale)


def check_bounds(fn: str, idx: torch.Tensor, rows: int) -> bool:
    """ValueError for an index outside [0, rows); returns whether every index row is
    strictly increasing (so unique). One host sync."""
    if idx.numel() == 0:
        return True
    lo, hi = torch.aminmax(idx)
    inc = bool(idx.shape[-1] < 2) or (idx[..., 1:] > idx[..., :-1]).all()
    lo, hi, inc = (torch.stack([lo, hi, torch.as_tensor(inc, device=idx.device).to(torch.int64)])).tolist()
    if lo < 0 or hi >= rows:
        bad = lo if lo < 0 else hi
        raise ValueError(f"{fn}: idx holds {bad}, outside [0, {rows}) for {rows} rows")
    return bool(inc)


def _spec3(t: torch.Tensor) -> tuple[int, ...]:
    return (*t.shape, *t.stride())


# per-call constants of the native calls, looked up once (the ops are often called on
# data that has just evicted the interpreter's caches, so every Python step counts)
_DTYPE_CODES: dict = {}
_CPU_EXEC: list = []


def _dtype_code(dtype: torch.dtype) -> int:
    code = _DTYPE_CODES.get(dtype)
    if code is None:
        code = _DTYPE_CODES[dtype] = _native.dtype_code(dtype)
    return code


def _exec(t: torch.Tensor):
    if t.device.type != "cpu":
        return _native.exec_args(t)
    if not _CPU_EXEC:
        _CPU_EXEC.append(_native.exec_args(t))
    return _CPU_EXEC[0]


def _check_bounds_host(fn: str, idx: torch.Tensor, rows: int) -> bool:
    """check_bounds for a CPU index (contiguous rows): one native pass."""
    isb = 0 if idx.shape[0] == 1 else idx.stride(0)
    return _native.lib().check_row_index(fn, idx.data_ptr(), idx.shape[-1], isb, idx.shape[0], rows)


def _index_args(idx: torch.Tensor, scale: Optional[torch.Tensor]):
    idx = idx if idx.stride(-1) == 1 else idx.contiguous()
    if scale is not None and scale.stride(-1) != 1:
        scale = scale.contiguous()
    isb = 0 if idx.shape[0] == 1 else idx.stride(0)
    sp = 0 if scale is None else scale.data_ptr()
    ssb = 0 if scale is None or scale.shape[0] == 1 else scale.stride(0)
    return idx, scale, (idx.data_ptr(), idx.shape[-1], isb, sp, ssb)


def _gather_reference(G, idx, scale):
    _check("gather_rows", G, idx, scale)
    check_bounds("gather_rows", idx, G.shape[1])
    return _ref.gather_rows(G, idx, scale)


@torch.library.custom_op("subspace_linalg::gather_rows", mutates_args=())
def gather_rows(G: torch.Tensor, idx: torch.Tensor, scale: Optional[torch.Tensor]) -> torch.Tensor:
    """out (B, k, n) contiguous: out[b, j] = G[b, idx[b, j]] * scale[b, j]."""
    return _gather_reference(G, idx, scale)


@gather_rows.register_fake
def _(G, idx, scale):
    _check("gather_rows", G, idx, scale)
    return G.new_empty((G.shape[0], idx.shape[-1], G.shape[2]))


def _gather_native(G, idx, scale):
    out = G.new_empty((G.shape[0], idx.shape[-1], G.shape[2]))
    idx, scale, ia = _index_args(idx, scale)
    if out.numel() == 0:
        if G.device.type == "cpu" and idx.numel() != 0:  # no native call to check them
            _check_bounds_host("gather_rows", idx, G.shape[1])
        return out
    _native.lib().gather_rows(_dtype_code(G.dtype), G.data_ptr(), _spec3(G), *ia, out.data_ptr(), _spec3(out),
                              _exec(G))
    return out


def _gather_cpu(G, idx, scale):
    _check_eager("gather_rows", G, idx, scale)
    # bounds: the native call checks them before writing (ValueError)
    return _gather_native(G, idx, scale)


def _gather_cuda(G, idx, scale):
    _check_eager("gather_rows", G, idx, scale)
    check_bounds("gather_rows", idx, G.shape[1])
    return _gather_native(G, idx, scale)


gather_rows.register_kernel("cpu")(_gather_cpu)
gather_rows.register_kernel("cuda")(_gather_cuda)

# subspace_linalg::gather_rows_nograd: the same kernels and contract, registered with
# torch.library.Library.impl and no autograd formula, for calls that need no gradient
# (sl.gather_rows picks it then). The custom op's registration (its autograd layer and
# kernel wrappers) costs 80-230 us per call right after a large copy has evicted the
# interpreter's caches, as much as the copy itself (scripts/gather_layers.py); this op
# costs what its kernel function costs.
_LIB = torch.library.Library("subspace_linalg", "FRAGMENT")
_LIB.define("gather_rows_nograd(Tensor G, Tensor idx, Tensor? scale) -> Tensor")
_LIB.impl("gather_rows_nograd", _gather_cpu, "CPU")
_LIB.impl("gather_rows_nograd", _gather_cuda, "CUDA")
# other devices: the reference, as the custom op's default
_LIB.impl("gather_rows_nograd", _gather_reference, "CompositeExplicitAutograd")


@torch.library.register_fake("subspace_linalg::gather_rows_nograd", lib=_LIB)
def _(G, idx, scale):
    _check("gather_rows", G, idx, scale)
    return G.new_empty((G.shape[0], idx.shape[-1], G.shape[2]))


def _scatter_native(fn, X, idx, scale, out, zero_fill: bool) -> None:
    """out[b, idx[b, j]] += X[b, j] * scale[b, j]; zero_fill: out's contents are ignored
    (out = 0 first, fused with the scatter). Checks the indices first."""
    idx, scale, ia = _index_args(idx, scale)
    if X.device.type == "cpu":
        unique = _check_bounds_host(fn, idx, out.shape[1])
    else:
        unique = check_bounds(fn, idx, out.shape[1])
    if X.numel() == 0:
        if zero_fill:
            out.zero_()
        return
    # repeated indices: a stable sort order, so each run sums in increasing j (index_add_)
    order = None if unique else torch.sort(idx, dim=-1, stable=True).indices.contiguous()
    _native.lib().scatter_rows(_dtype_code(X.dtype), X.data_ptr(), _spec3(X), *ia, out.data_ptr(), _spec3(out),
                               0 if order is None else order.data_ptr(), zero_fill, _exec(X))


@torch.library.custom_op("subspace_linalg::scatter_rows", mutates_args=())
def scatter_rows(X: torch.Tensor, idx: torch.Tensor, scale: Optional[torch.Tensor], num_rows: int) -> torch.Tensor:
    """out (B, num_rows, n), zeros except out[b, idx[b, j]] += X[b, j] * scale[b, j]."""
    _check("scatter_rows", X, idx, scale)
    check_bounds("scatter_rows", idx, num_rows)
    out = X.new_zeros((X.shape[0], num_rows, X.shape[2]))
    _ref.scatter_rows_into(X, idx, scale, out)
    return out


@scatter_rows.register_fake
def _(X, idx, scale, num_rows):
    _check("scatter_rows", X, idx, scale)
    return X.new_empty((X.shape[0], num_rows, X.shape[2]))


@scatter_rows.register_kernel(("cpu", "cuda"))
def _(X, idx, scale, num_rows):
    _check_eager("scatter_rows", X, idx, scale)
    out = X.new_empty((X.shape[0], num_rows, X.shape[2]))
    _scatter_native("scatter_rows", X, idx, scale, out, True)
    return out


@torch.library.custom_op("subspace_linalg::scatter_rows_", mutates_args=("out",))
def scatter_rows_(X: torch.Tensor, idx: torch.Tensor, scale: Optional[torch.Tensor], out: torch.Tensor) -> None:
    """In place: out[b, idx[b, j]] += X[b, j] * scale[b, j] (out (B, m, n), any strides)."""
    _check("scatter_rows_", X, idx, scale)
    check_bounds("scatter_rows_", idx, out.shape[1])
    _ref.scatter_rows_into(X, idx, scale, out)


@scatter_rows_.register_fake
def _(X, idx, scale, out):
    _check("scatter_rows_", X, idx, scale)
    return None


@scatter_rows_.register_kernel(("cpu", "cuda"))
def _(X, idx, scale, out):
    _check_eager("scatter_rows_", X, idx, scale)
    torch._check(out.dtype == X.dtype and out.dim() == 3 and out.shape[0] == X.shape[0] and out.shape[2] == X.shape[2]
                 and out.device == X.device,
                 lambda: f"scatter_rows_: out {tuple(out.shape)} {out.dtype} on {out.device} does not match X "
                         f"{tuple(X.shape)} {X.dtype} on {X.device}")
    _scatter_native("scatter_rows_", X, idx, scale, out, False)


# ---- autograd: gather and scatter are each other's adjoint -------------------------


def _gather_setup(ctx, inputs, output):
    G, idx, scale = inputs
    ctx.rows = G.shape[1]
    ctx.need_scale = scale is not None and ctx.needs_input_grad[2]
    ctx.save_for_backward(idx, scale, G if ctx.need_scale else None)


def _gather_backward(ctx, grad):
    idx, scale, G = ctx.saved_tensors
    gG = gs = None
    if ctx.needs_input_grad[0]:
        gG = torch.ops.subspace_linalg.scatter_rows.default(grad.contiguous(), idx, scale, ctx.rows)
    if ctx.need_scale:
        rows = torch.ops.subspace_linalg.gather_rows.default(G, idx, None)
        gs = (grad * rows).sum(-1)
        if idx.shape[0] == 1 and gs.shape[0] != 1:
            gs = gs.sum(0, keepdim=True)
    return gG, None, gs


gather_rows.register_autograd(_gather_backward, setup_context=_gather_setup)


def _scatter_setup(ctx, inputs, output):
    X, idx, scale, _ = inputs
    ctx.need_scale = scale is not None and ctx.needs_input_grad[2]
    ctx.save_for_backward(idx, scale, X if ctx.need_scale else None)


def _scatter_backward(ctx, grad):
    idx, scale, X = ctx.saved_tensors
    gX = gs = None
    grad = grad.contiguous()
    if ctx.needs_input_grad[0]:
        gX = torch.ops.subspace_linalg.gather_rows.default(grad, idx, scale)
    if ctx.need_scale:
        rows = torch.ops.subspace_linalg.gather_rows.default(grad, idx, None)
        gs = (rows * X).sum(-1)
        if idx.shape[0] == 1 and gs.shape[0] != 1:
            gs = gs.sum(0, keepdim=True)
    return gX, None, gs, None


scatter_rows.register_autograd(_scatter_backward, setup_context=_scatter_setup)
