"""The orthonormal DCT-II basis and the SVD-free projector step (DCT-AdamW / Trion):
pick the r basis vectors best aligned with a gradient instead of computing its SVD.

Orientation: ``M = dct_matrix(n)`` equals SciPy's ``scipy.fft.dct(np.eye(n), norm="ortho")``:
M[i, k] = c_k cos(pi (2i + 1) k / (2n)), c_0 = sqrt(1/n), c_k = sqrt(2/n). Its COLUMNS are
the orthonormal DCT-II basis vectors (column k has frequency k), and the transform of a
row vector x is ``x @ M`` (``dct(x)``); ``M.T`` is the DCT-II matrix acting on columns.
"""
from __future__ import annotations

import math

import torch

from . import _gemm, _validate
from ._dtypes import ALL_FLOATING, FLOATING, compute_dtype

# Up to this length the dense product with a cached basis beats the FFT. Measured on an AMD
# EPYC (2 threads), float32, GEMM / FFT in ms: n = 256: 0.53 / 0.46 (512 rows), 1.57 / 1.60
# (2048), 6.6 / 7.9 (8192); n = 384: 1.13 / 0.75; n = 512: 1.43 / 0.53, 5.6 / 3.3, 26 / 13;
# n = 1024: 26 / 7.2 (2048 rows); float64 alike.
_MATMUL_MAX = 384
_FFT_CHUNK = 1 << 18  # the FFT path transforms rows in blocks of about this many entries
_CACHE: dict = {}
_ROWS_PER_PASS = 1 << 22  # elements of G @ Q held at once by select_columns_by_alignment
_CACHE_MAX = 8


def dct_matrix(n: int, *, dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """The orthonormal DCT-II basis (n, n), basis vectors in the COLUMNS (SciPy's
    ``dct(eye(n), norm="ortho")``): M[i, k] = c_k cos(pi (2i+1) k / (2n)). Built in
    float64 with exact argument reduction (accurate to ~1 ulp), returned in ``dtype``."""
    fn = "dct_matrix"
    n = _validate.check_int(fn, "n", n, minimum=1)
    if not isinstance(dtype, torch.dtype) or dtype not in ALL_FLOATING:
        raise TypeError(f"{fn}: dtype must be one of float32, float64, float16, bfloat16, got {dtype}")
    i = torch.arange(n, dtype=torch.int64)
    t = torch.remainder((2 * i[:, None] + 1) * i[None, :], 4 * n)  # angle in units of pi / (2n)
    M = torch.cos(t.to(torch.float64) * (math.pi / (2 * n)))
    c = torch.full((n,), math.sqrt(2.0 / n), dtype=torch.float64)
    c[0] = math.sqrt(1.0 / n)
    return (M * c).to(dtype=dtype, device=device)


def _cached_basis(n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """dct_matrix(n) kept for reuse (a few entries, oldest dropped first); never handed
    to callers, who could mutate it."""
    key = (n, dtype, str(device))
    M = _CACHE.get(key)
    if M is None:
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.pop(next(iter(_CACHE)))
        M = _CACHE[key] = dct_matrix(n, dtype=dtype, device=device)
    return M


def _dct_last(x: torch.Tensor) -> torch.Tensor:
    """Orthonormal DCT-II of the last dim in the compute dtype (Makhoul's FFT algorithm:
    even samples, then odd ones reversed, one complex FFT, a twiddle)."""
    n = x.shape[-1]
    if n <= _MATMUL_MAX and not torch.compiler.is_compiling():
        return _gemm.mm(x, _cached_basis(n, x.dtype, x.device))
    if n <= _MATMUL_MAX:
        return x @ dct_matrix(n, dtype=x.dtype, device=x.device)
    rows = max(128, _FFT_CHUNK // n)
    if x.dim() >= 2 and x.numel() // n > 2 * rows and not torch.compiler.is_compiling():
        # blocks of rows: measured 1024 x 8192 rows 96 -> 32 ms, 2048 x 8192 191 -> 66 ms
        flat = x.reshape(-1, n)
        return torch.cat([_dct_fft(flat[i:i + rows]) for i in range(0, flat.shape[0], rows)]).reshape(x.shape)
    return _dct_fft(x)


def _dct_fft(x: torch.Tensor) -> torch.Tensor:
    n = x.shape[-1]
    v = torch.cat([x[..., ::2], x[..., 1::2].flip(-1)], dim=-1)
    V = torch.fft.fft(v, dim=-1)
    k = torch.arange(n, dtype=x.dtype, device=x.device)
    ang = k * (-math.pi / (2 * n))
    y = V.real * torch.cos(ang) - V.imag * torch.sin(ang)
    scale = torch.full((n,), math.sqrt(2.0 / n), dtype=x.dtype, device=x.device)
    scale[0] = math.sqrt(1.0 / n)
    return y * scale


def dct(x: torch.Tensor, *, dim: int = -1) -> torch.Tensor:
    """Orthonormal DCT-II of ``x`` along ``dim``: equal to ``x @ dct_matrix(n)`` along that
    dim (SciPy's ``dct(x, axis=dim, norm="ortho")``). O(n log n) through one FFT
    (Makhoul) for n > 384, the product with a cached basis below. float16/bfloat16 compute in float32
    and return their dtype. Differentiable. Returns a tensor of x's shape and dtype."""
    fn = "dct"
    _validate.check_tensor(fn, "x", x, dtypes=ALL_FLOATING, min_ndim=1)
    d = _validate.check_dim(fn, x, dim)
    if x.shape[d] == 0:
        return x.clone()
    last = d == x.dim() - 1
    xm = x if last else x.movedim(d, -1)
    y = _dct_last(xm.to(compute_dtype(x.dtype))).to(x.dtype)
    return y if last else y.movedim(-1, d)


def select_columns_by_alignment(G: torch.Tensor, Q: torch.Tensor | None, r: int, *, norm: str = "l1",
                                return_scores: bool = False):
    """The SVD-free projector step: indices (..., r), ascending, of the r columns q_j of
    the orthonormal basis ``Q`` (n, p) with the largest alignment ||G q_j|| with
    ``G`` (..., m, n) (``norm="l1"``: the l1 norm of G q_j, DCT-AdamW's default; "l2":
    the Euclidean norm), in one pass over G by row blocks (at most ~4M entries of G Q
    held at once). ``Q=None`` means the DCT-II basis ``dct_matrix(n)``, applied
    through the FFT (O(m n log n), no n x n matrix). The projector is then
    ``P = Q[:, idx]`` (low-rank gradient G @ P). With ``return_scores=True`` returns
    (indices, scores (..., p) in G's compute dtype). Ties: torch.topk's order."""
    fn = "select_columns_by_alignment"
    _validate.check_tensor(fn, "G", G, dtypes=ALL_FLOATING, min_ndim=2)
    _validate.check_choice(fn, "norm", norm, ("l1", "l2"))
    n = G.shape[-1]
    cdt = compute_dtype(G.dtype)
    if Q is None:
        p = n
    else:
        _validate.check_tensor(fn, "Q", Q, dtypes=ALL_FLOATING, ndim=2)
        _validate.check_same_device(fn, G=G, Q=Q)
        if Q.shape[0] != n:
            raise ValueError(f"{fn}: Q must have G.shape[-1] = {n} rows, got shape {tuple(Q.shape)}")
        p = Q.shape[1]
    r = _validate.check_int(fn, "r", r, minimum=0, maximum=p)
    # one pass over G in row blocks: the m x p product is never held whole
    ordn = 1 if norm == "l1" else 2
    Qc = None if Q is None else Q.to(cdt)
    m = G.shape[-2]
    blk = max(1, min(m, _ROWS_PER_PASS // max(p, 1)))
    # column sums of |S| or S^2 (torch's vector_norm over dim -2 measured 1.7-10x slower:
    # 21.4 against 2.6 ms at 2048^2, AMD EPYC); l2's square root once at the end
    parts = []
    for r0 in range(0, m, blk):
        Gb = G[..., r0:r0 + blk, :].to(cdt)
        S = dct(Gb) if Qc is None else _gemm.mm(Gb, Qc)
        parts.append(S.abs().sum(-2) if ordn == 1 else S.square().sum(-2))
    scores = parts[0] if len(parts) == 1 else torch.stack(parts).sum(0)
    if ordn == 2:
        scores = scores.sqrt()
    idx = torch.sort(torch.topk(scores, r, dim=-1).indices, dim=-1).values
    return (idx, scores) if return_scores else idx
