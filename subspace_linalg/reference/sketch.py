"""Pure reference of the sketching kernels: Philox4x32-10 in NumPy (uint64 arithmetic),
the counter-based entries of sl/philox.h, the sparse sign table, and the CSR apply in
torch. The fallback on devices without native kernels and an oracle of the tests."""
from __future__ import annotations

import numpy as np
import torch

from .._dtypes import compute_dtype

_M0, _M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
_W0, _W1 = np.uint64(0x9E3779B9), np.uint64(0xBB67AE85)
_MASK = np.uint64(0xFFFFFFFF)

GAUSSIAN, RADEMACHER, UNIFORM = 0, 1, 2


def philox(seed: int, c0, c1, c2, c3):
    """Philox4x32-10 of counters (arrays, broadcast) under the 64-bit key ``seed``."""
    x = [np.asarray(c, dtype=np.uint64) & _MASK for c in np.broadcast_arrays(c0, c1, c2, c3)]
    k0, k1 = np.uint64(seed & 0xFFFFFFFF), np.uint64((seed >> 32) & 0xFFFFFFFF)
    with np.errstate(over="ignore"):
        for _ in range(10):
            p0 = _M0 * x[0]
            p1 = _M1 * x[2]
            hi0, lo0 = p0 >> np.uint64(32), p0 & _MASK
            hi1, lo1 = p1 >> np.uint64(32), p1 & _MASK
            x = [hi1 ^ x[1] ^ k0, lo1, hi0 ^ x[3] ^ k1, lo0]
            k0 = (k0 + _W0) & _MASK
            k1 = (k1 + _W1) & _MASK
    return x


def _u01(lo, hi):
    b = ((hi << np.uint64(32)) | lo) >> np.uint64(11)
    return (b.astype(np.float64) + 1.0) * (1.0 / 9007199254740992.0)


def rand_matrix(kind: int, seed: int, tag: int, rows: int, cols: int, row0: int = 0) -> np.ndarray:
    """Entries (i, j), i in [row0, row0 + rows), of the counter-based random matrix,
    float64 (sl/philox.h)."""
    i = np.arange(row0, row0 + rows, dtype=np.uint64)[:, None]
    j = np.arange(cols, dtype=np.uint64)[None, :]
    if kind == GAUSSIAN:
        r = philox(seed, i, j >> np.uint64(1), tag, 0)
        u1, u2 = _u01(r[0], r[1]), _u01(r[2], r[3])
        rad = np.sqrt(-2.0 * np.log(u1))
        ang = 6.283185307179586 * u2
        return np.where((j & np.uint64(1)) == 1, rad * np.sin(ang), rad * np.cos(ang))
    if kind == RADEMACHER:
        r = philox(seed, i, j >> np.uint64(7), tag, 1)
        b = (j & np.uint64(127)).astype(np.int64)
        words = np.stack(np.broadcast_arrays(*r), axis=0)
        w = np.take_along_axis(words, np.broadcast_to(b >> 5, words.shape[1:])[None], axis=0)[0]
        bit = (w >> (b & 31).astype(np.uint64)) & np.uint64(1)
        return np.where(bit == 1, 1.0, -1.0)
    r = philox(seed, i, j, tag, 2)
    return _u01(r[0], r[1])


def random_fill(out: torch.Tensor, kind: int, seed: int, tag: int, scale: float) -> None:
    vals = scale * rand_matrix(kind, seed, tag, out.shape[0], out.shape[1])
    out.copy_(torch.from_numpy(vals).to(out.dtype))


def sparse_sign_table(n: int, size: int, zeta: int, seed: int, tag: int) -> torch.Tensor:
    """(n, zeta) int32 codes 2 * pos + (sign < 0), as sl::sparse_sign_column."""
    codes = np.zeros((n, zeta), dtype=np.int64)
    for i in range(n):
        attempt = 0
        for t in range(zeta):
            while True:
                r = philox(seed, i, attempt, tag, 3)
                attempt += 1
                b = (int(r[1]) << 32) | int(r[0])
                pos, sbit = b % size, int(r[2]) & 1
                if all((codes[i, q] >> 1) != pos for q in range(t)):
                    break
            codes[i, t] = 2 * pos + sbit
    return torch.from_numpy(codes.astype(np.int32))


def sparse_apply(X: torch.Tensor, ptr: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor, out_len: int,
                 transpose_out: bool) -> torch.Tensor:
    """Y[b, r, j] = sum_p vals[p] X[b, r, cols[p]] over p in [ptr[j], ptr[j+1]); (B, R, J)
    contiguous, or its transpose (B, J, R) contiguous when ``transpose_out``."""
    cdt = compute_dtype(X.dtype)
    B, R, _ = X.shape
    counts = (ptr[1:] - ptr[:-1]).to(torch.int64)
    rows = torch.repeat_interleave(torch.arange(out_len, device=X.device), counts)
    terms = X.to(cdt).index_select(-1, cols) * vals.to(cdt)
    Y = torch.zeros(B, R, out_len, dtype=cdt, device=X.device).index_add_(-1, rows, terms)
    Y = Y.to(X.dtype)
    return Y.transpose(-1, -2).contiguous() if transpose_out else Y.contiguous()


def srht(X: torch.Tensor, signs: torch.Tensor, rows: torch.Tensor, N: int, transpose_out: bool) -> torch.Tensor:
    """Y[b, r, t] = (H_N pad_N(signs * X[b, r]))[rows[t]] (unnormalized H); (B, R, s)
    contiguous, or (B, s, R) when ``transpose_out``."""
    from ..hadamard import fwht

    cdt = compute_dtype(X.dtype)
    Z = torch.nn.functional.pad(X.to(cdt) * signs.to(cdt), (0, N - X.shape[-1]))
    Y = fwht(Z, normalized=False).index_select(-1, rows).to(X.dtype)
    return Y.transpose(-1, -2).contiguous() if transpose_out else Y.contiguous()
