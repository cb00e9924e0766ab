"""subspace_linalg::random_fill_ / sparse_sign_table_ / sparse_apply — the kernels of the
sketching operators: counter-based random matrices (Philox, keyed by a seed), sparse
sign codes, and a CSR operator applied to the rows of a batch of matrices."""
from __future__ import annotations

import torch

from .. import _native
from .._dtypes import ALL_FLOATING, compute_dtype
from ..reference import sketch as _ref


def _spec2(t: torch.Tensor) -> list[int]:
    return [1, t.shape[0], t.shape[1], 0, t.stride(0), t.stride(1)]


def _spec3(t: torch.Tensor) -> list[int]:
    return [t.shape[0], t.shape[1], t.shape[2], t.stride(0), t.stride(1), t.stride(2)]


def _check_seed(seed: int, tag: int) -> None:
    torch._check(0 <= seed < 2 ** 63, lambda: f"random_fill: seed must be in [0, 2^63), got {seed}")
    torch._check(0 <= tag < 2 ** 32, lambda: f"random_fill: tag must be in [0, 2^32), got {tag}")


@torch.library.custom_op("subspace_linalg::random_fill_", mutates_args=("out",))
def random_fill_(out: torch.Tensor, kind: int, seed: int, tag: int, scale: float) -> None:
    """out[i, j] = scale * entry (i, j) of the counter-based random matrix of ``kind``
    (0 Gaussian, 1 Rademacher, 2 uniform in (0, 1]) under (seed, tag); out 2-D floating."""
    _check_seed(seed, tag)
    _ref.random_fill(out, kind, seed, tag, scale)


@random_fill_.register_fake
def _(out, kind, seed, tag, scale):
    return None


@random_fill_.register_kernel(("cpu", "cuda"))
def _(out, kind, seed, tag, scale):
    torch._check(out.dim() == 2 and out.dtype in ALL_FLOATING, lambda: "random_fill_: out must be 2-D floating")
    _check_seed(seed, tag)
    _native.lib().random_fill(_native.dtype_code(out.dtype), kind, seed, tag, scale, out.data_ptr(), _spec2(out),
                              _native.exec_args(out))


@torch.library.custom_op("subspace_linalg::sparse_sign_table_", mutates_args=("codes",))
def sparse_sign_table_(codes: torch.Tensor, size: int, seed: int, tag: int) -> None:
    """codes (n, zeta) int32: input coordinate i's zeta distinct positions in [0, size)
    and signs, code = 2 * pos + (sign < 0)."""
    _check_seed(seed, tag)
    codes.copy_(_ref.sparse_sign_table(codes.shape[0], size, codes.shape[1], seed, tag))


@sparse_sign_table_.register_fake
def _(codes, size, seed, tag):
    return None


@sparse_sign_table_.register_kernel(("cpu", "cuda"))
def _(codes, size, seed, tag):
    torch._check(codes.dim() == 2 and codes.dtype == torch.int32 and codes.is_contiguous(),
                 lambda: "sparse_sign_table_: codes must be a contiguous 2-D int32 tensor")
    _check_seed(seed, tag)
    _native.lib().sparse_sign_table(seed, tag, codes.shape[0], size, codes.shape[1], codes.data_ptr(),
                                    _native.exec_args(codes))


def _check_apply(X, ptr, cols, vals, out_len):
    torch._check(X.dim() == 3 and X.dtype in ALL_FLOATING, lambda: f"sparse_apply: X must be 3-D floating, got {X.shape}")
    torch._check(ptr.dtype == torch.int64 and cols.dtype == torch.int64, lambda: "sparse_apply: ptr/cols must be int64")
    torch._check(ptr.dim() == 1 and ptr.shape[0] == out_len + 1, lambda: "sparse_apply: ptr must have out_len + 1 entries")
    torch._check(vals.shape == cols.shape and vals.dtype == compute_dtype(X.dtype),
                 lambda: f"sparse_apply: vals must match cols and have dtype {compute_dtype(X.dtype)}")


def _out_empty(X, out_len, transpose_out):
    B, R, _ = X.shape
    return X.new_empty((B, out_len, R) if transpose_out else (B, R, out_len))


@torch.library.custom_op("subspace_linalg::sparse_apply", mutates_args=())
def sparse_apply(X: torch.Tensor, ptr: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor, out_len: int,
                 transpose_out: bool) -> torch.Tensor:
    """Y = X A for the CSR-by-columns matrix A (n x out_len): Y[b, r, j] = sum_p vals[p]
    X[b, r, cols[p]]; returns (B, R, out_len) contiguous, or (B, out_len, R) = Y^T
    contiguous when ``transpose_out``. Accumulates in the compute dtype."""
    _check_apply(X, ptr, cols, vals, out_len)
    return _ref.sparse_apply(X, ptr, cols, vals, out_len, transpose_out)


@sparse_apply.register_fake
def _(X, ptr, cols, vals, out_len, transpose_out):
    _check_apply(X, ptr, cols, vals, out_len)
    return _out_empty(X, out_len, transpose_out)


@sparse_apply.register_kernel(("cpu", "cuda"))
def _(X, ptr, cols, vals, out_len, transpose_out):
    _check_apply(X, ptr, cols, vals, out_len)
    out = _out_empty(X, out_len, transpose_out)
    if out.numel() == 0:
        return out
    Y = out.transpose(-1, -2) if transpose_out else out
    ptr, cols, vals = ptr.contiguous(), cols.contiguous(), vals.contiguous()
    _native.lib().sparse_apply(_native.dtype_code(X.dtype), X.data_ptr(), _spec3(X), ptr.data_ptr(),
                               cols.data_ptr(), vals.data_ptr(), out_len, cols.shape[0], Y.data_ptr(), _spec3(Y),
                               _native.exec_args(X))
    return out


def csr_transpose(ptr: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor, n: int):
    """The CSR (by columns) of the transpose: (ptr_t, cols_t, vals_t) of an out_len x n
    operator, entries of each column in increasing original column."""
    J = ptr.shape[0] - 1
    rows = torch.repeat_interleave(torch.arange(J, device=ptr.device), ptr[1:] - ptr[:-1])
    order = torch.sort(cols, stable=True).indices
    counts = torch.bincount(cols, minlength=n)
    ptr_t = torch.zeros(n + 1, dtype=torch.int64, device=ptr.device)
    ptr_t[1:] = torch.cumsum(counts, 0)
    return ptr_t, rows[order], vals[order]


def _setup(ctx, inputs, output):
    X, ptr, cols, vals, out_len, transpose_out = inputs
    ctx.n = X.shape[-1]
    ctx.transpose_out = transpose_out
    ctx.save_for_backward(ptr, cols, vals)


def _backward(ctx, grad):
    ptr, cols, vals = ctx.saved_tensors
    pt, ct, vt = csr_transpose(ptr, cols, vals, ctx.n)
    g = grad.transpose(-1, -2) if ctx.transpose_out else grad
    gX = torch.ops.subspace_linalg.sparse_apply.default(g, pt, ct, vt, ctx.n, False)
    return gX, None, None, None, None, None


sparse_apply.register_autograd(_backward, setup_context=_setup)


def _check_srht(X, signs, rows, N):
    torch._check(X.dim() == 3 and X.dtype in ALL_FLOATING, lambda: f"srht: X must be 3-D floating, got {X.shape}")
    torch._check(N >= X.shape[-1] and N >= 1 and (N & (N - 1)) == 0, lambda: f"srht: N = {N} must be a power of two >= n")
    torch._check(signs.dim() == 1 and signs.shape[0] == X.shape[-1] and signs.dtype == compute_dtype(X.dtype),
                 lambda: "srht: signs must be (n,) in the compute dtype")
    torch._check(rows.dim() == 1 and rows.dtype == torch.int64 and rows.shape[0] <= N,
                 lambda: "srht: rows must be (s,) int64 with s <= N")


@torch.library.custom_op("subspace_linalg::srht", mutates_args=())
def srht(X: torch.Tensor, signs: torch.Tensor, rows: torch.Tensor, N: int, transpose_out: bool) -> torch.Tensor:
    """SRHT rows: Y[b, r, t] = (H_N pad_N(signs * X[b, r]))[rows[t]], H_N unnormalized;
    (B, R, s) contiguous, or (B, s, R) = Y^T contiguous when ``transpose_out``."""
    _check_srht(X, signs, rows, N)
    return _ref.srht(X, signs, rows, N, transpose_out)


@srht.register_fake
def _(X, signs, rows, N, transpose_out):
    _check_srht(X, signs, rows, N)
    return _out_empty(X, rows.shape[0], transpose_out)


@srht.register_kernel(("cpu", "cuda"))
def _(X, signs, rows, N, transpose_out):
    _check_srht(X, signs, rows, N)
    if X.is_cuda and N > _native.lib().srht_cuda_max_len(_native.dtype_code(X.dtype)):
        return _ref.srht(X, signs, rows, N, transpose_out)  # sl.fwht's multi-pass kernel, then a gather
    out = _out_empty(X, rows.shape[0], transpose_out)
    if out.numel() == 0:
        return out
    Y = out.transpose(-1, -2) if transpose_out else out
    signs, rows = signs.contiguous(), rows.contiguous()
    _native.lib().srht(_native.dtype_code(X.dtype), X.data_ptr(), _spec3(X), signs.data_ptr(), rows.data_ptr(),
                       rows.shape[0], N, Y.data_ptr(), _spec3(Y), _native.exec_args(X))
    return out


def _srht_setup(ctx, inputs, output):
    X, signs, rows, N, transpose_out = inputs
    ctx.n, ctx.N, ctx.transpose_out, ctx.dtype = X.shape[-1], N, transpose_out, X.dtype
    ctx.save_for_backward(signs, rows)


def _srht_backward(ctx, grad):
    # adjoint: dX = signs * (H_N scatter_rows(dY))[:n]  (H symmetric)
    from ..hadamard import fwht

    signs, rows = ctx.saved_tensors
    g = grad.transpose(-1, -2) if ctx.transpose_out else grad
    Z = g.new_zeros(g.shape[:-1] + (ctx.N,), dtype=signs.dtype)
    Z = Z.index_add(-1, rows, g.to(signs.dtype))
    gX = (fwht(Z, normalized=False)[..., :ctx.n] * signs).to(ctx.dtype)
    return gX, None, None, None, None


srht.register_autograd(_srht_backward, setup_context=_srht_setup)
