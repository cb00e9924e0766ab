"""orth: orthonormalize vs torch.linalg.qr (and plain CholeskyQR2 through torch.linalg),
the fused CholeskyQR panel op beside the torch.linalg composite it replaces, and each
small dense batched kernel beside the torch.linalg call it replaces."""
from __future__ import annotations

import math

import torch

import subspace_linalg as sl

from ..spec import Case, Peer

SUITE = "orth"


def _name(dtype) -> str:
    return str(dtype).replace("torch.", "")


def _cdt(dtype):
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _eps(dtype) -> float:
    return torch.finfo(_cdt(dtype)).eps


def _cond_matrix(b, m, k, kappa, seed, dtype, device):
    g = torch.Generator().manual_seed(seed)
    U, _ = torch.linalg.qr(torch.randn(*b, m, k, dtype=torch.float64, generator=g))
    V, _ = torch.linalg.qr(torch.randn(*b, k, k, dtype=torch.float64, generator=g))
    s = torch.logspace(0, -math.log10(kappa), k, dtype=torch.float64)
    return ((U * s) @ V.mT).to(dtype=dtype, device=device)


_CHECK_BLOCK = 128


def _inner(X, Y):
    """X^T Y (..., m, a) x (..., m, b) in float64 as a sum of row-block products: the
    check's own rounding stays O(block u) whatever order the BLAS sums a long inner
    dimension in (MKL's dgemm on an AMD EPYC gave ||Q^T Q - I|| 3-4x above the value in
    80-bit long double at m = 8192-16384, which is more than the tolerance allows)."""
    X, Y = X.double(), Y.double()
    m = X.shape[-2]
    pad = (-m) % _CHECK_BLOCK
    if pad:
        X = torch.nn.functional.pad(X, (0, 0, 0, pad))
        Y = torch.nn.functional.pad(Y, (0, 0, 0, pad))
    nb = X.shape[-2] // _CHECK_BLOCK
    Xb = X.reshape(X.shape[:-2] + (nb, _CHECK_BLOCK, X.shape[-1]))
    Yb = Y.reshape(Y.shape[:-2] + (nb, _CHECK_BLOCK, Y.shape[-1]))
    return (Xb.mT @ Yb).sum(-3)


def _orth_error(Q) -> float:
    """max over the batch of ||Q^T Q - I||_F (float64, blocked: see _inner); inf for
    non-finite Q."""
    eye = torch.eye(Q.shape[-1], dtype=torch.float64, device=Q.device)
    e = torch.linalg.matrix_norm(_inner(Q, Q) - eye)
    return float(e.max()) if bool(torch.isfinite(e).all()) else float("inf")


def _plain_cholqr2(Y):
    """CholeskyQR2 as one writes it with torch.linalg (no checks, no fallback)."""
    Q = Y
    for _ in range(2):
        L = torch.linalg.cholesky_ex(Q.mT @ Q).L
        Q = torch.linalg.solve_triangular(L.mT, Q, upper=True, left=False)
    return Q


def _orth_case(b, m, k, kappa, dtype, device) -> Case:
    shape = (b, m, k) if b else (m, k)

    def setup():
        return {"Y": _cond_matrix((b,) if b else (), m, k, kappa, m + k + b, dtype, device)}

    def check(inp, Q):
        # orthonormality, plus the range: ||Y - Q Q^T Y|| / ||Y|| (both must be roundoff)
        Y = inp["Y"].double()
        Qd = Q.double()
        r = float(torch.linalg.matrix_norm(Y - Qd @ _inner(Qd, Y)).max() / torch.linalg.matrix_norm(Y).max())
        return max(_orth_error(Q), r)

    tol = 10.0 * math.sqrt(k) * _eps(dtype)
    peers = [Peer("torch.linalg.qr", lambda inp: torch.linalg.qr(inp["Y"]).Q)]
    if dtype in (torch.float32, torch.float64):
        peers.append(Peer("plain CholeskyQR2 (torch.linalg)", lambda inp: _plain_cholqr2(inp["Y"])))
    flops = 8 * max(b, 1) * m * k * k  # 4 GEMMs of m k^2 (two Grams, two Y X^T)
    return Case(SUITE, f"orthonormalize {'x'.join(map(str, shape))} kappa={kappa:.0e} {_name(dtype)}", setup,
                lambda inp: sl.orthonormalize(inp["Y"]), check, tol, peers, flops=flops,
                params={"shape": shape, "kappa": kappa, "dtype": _name(dtype)},
                note="auto: CholeskyQR2 + per-element fallback; error = max(||Q^T Q - I||_F, range residual)")


def _one_cholqr(Y):
    """One CholeskyQR pass as one writes it with torch.linalg (no checks)."""
    L = torch.linalg.cholesky_ex(Y.mT @ Y).L
    return torch.linalg.solve_triangular(L.mT, Y, upper=True, left=False)


def _panel_case(b, m, k, mode, dtype, device, kappa=1e2) -> Case:
    """The fused native CholeskyQR (subspace_linalg::cholqr_panel) on a batch of
    column-major panels (the layout the drivers' products return), mode 0 (one pass) or 2
    (CholeskyQR2), beside the torch.linalg composite it replaces."""
    op = torch.ops.subspace_linalg.cholqr_panel.default
    u = _eps(dtype) / 2

    def setup():
        Y = _cond_matrix((b,), m, k, kappa, 3 * m + k + b, dtype, device)
        return {"Y": Y.mT.contiguous().mT}

    def check(inp, Q):
        Y = inp["Y"].double()
        Qd = Q.double()
        r = float(torch.linalg.matrix_norm(Y - Qd @ _inner(Qd, Y)).max() / torch.linalg.matrix_norm(Y).max())
        return max(_orth_error(Q) / (kappa * kappa if mode == 0 else 1.0), r)

    if mode == 0:
        peers = [Peer("one CholeskyQR pass (torch.linalg: Gram, cholesky_ex, solve_triangular)",
                      lambda inp: _one_cholqr(inp["Y"]))]
    else:
        peers = [Peer("plain CholeskyQR2 (torch.linalg)", lambda inp: _plain_cholqr2(inp["Y"])),
                 Peer("torch.linalg.qr", lambda inp: torch.linalg.qr(inp["Y"]).Q)]
    what = "one pass" if mode == 0 else "CholeskyQR2"
    return Case(SUITE, f"cholqr_panel {what} {b}x{m}x{k} {_name(dtype)}", setup,
                lambda inp: op(inp["Y"], mode, 1.0 / math.sqrt(u), 0.5)[0], check, 10.0 * math.sqrt(k) * _eps(dtype),
                peers, flops=(2 if mode == 0 else 4) * 2 * b * m * k * k,
                params={"batch": b, "m": m, "k": k, "mode": mode, "kappa": kappa, "dtype": _name(dtype)},
                note="fused Gram + Cholesky + inverse + product; error = max(||Q^T Q - I||_F"
                     + (" / kappa^2" if mode == 0 else "") + ", range residual)")


def _spd(b, n, dtype, device, seed):
    A = _cond_matrix((b,), n, n, 1e3, seed, torch.float64, "cpu")
    return (A @ A.mT + 1e-3 * torch.eye(n, dtype=torch.float64)).to(dtype=dtype, device=device)


def _cholesky_case(b, n, dtype, device) -> Case:
    def setup():
        return {"A": _spd(b, n, dtype, device, n + b)}

    def check(inp, res):
        L, info = res
        A = inp["A"].double()
        Ld = L.double()
        if bool((info != 0).any()):
            return float("inf")
        return float((torch.linalg.matrix_norm(Ld @ Ld.mT - A) / torch.linalg.matrix_norm(A)).max())

    return Case(SUITE, f"cholesky {b}x{n}x{n} {_name(dtype)}", setup, lambda inp: sl.cholesky_small(inp["A"], check_finite=False),
                check, 50.0 * math.sqrt(n) * _eps(dtype), [Peer("torch.linalg.cholesky_ex", lambda inp: torch.linalg.cholesky_ex(inp["A"]))],
                params={"batch": b, "n": n, "dtype": _name(dtype)}, note="backward error ||LL^T - A|| / ||A||")


def _tri_case(b, n, dtype, device) -> Case:
    def setup():
        L = torch.linalg.cholesky(_spd(b, n, torch.float64, "cpu", 7 * n + b))
        return {"L": L.to(dtype=dtype, device=device), "I": torch.eye(n, dtype=dtype, device=device).expand(b, n, n)}

    def check(inp, X):
        if isinstance(X, tuple):
            X = X[0]
        L = inp["L"].double()
        eye = torch.eye(n, dtype=torch.float64, device=L.device)
        cond = float(torch.linalg.cond(L).max())
        return float(torch.linalg.matrix_norm(X.double() @ L - eye).max()) / cond

    return Case(SUITE, f"tril inverse {b}x{n}x{n} {_name(dtype)}", setup, lambda inp: sl.tril_inverse_small(inp["L"]),
                check, 50.0 * math.sqrt(n) * _eps(dtype),
                [Peer("torch.linalg.solve_triangular(L, I)", lambda inp: torch.linalg.solve_triangular(inp["L"], inp["I"], upper=False))],
                params={"batch": b, "n": n, "dtype": _name(dtype)}, note="error ||XL - I||_F / cond(L)")


def _solve_case(b, m, k, dtype, device) -> Case:
    def setup():
        L = torch.linalg.cholesky(_spd(b, k, torch.float64, "cpu", 3 * k + b))
        g = torch.Generator().manual_seed(m)
        Y = torch.randn(b, m, k, dtype=torch.float64, generator=g)
        return {"L": L.to(dtype=dtype, device=device), "Y": Y.to(dtype=dtype, device=device)}

    def check(inp, X):
        L, Y = inp["L"].double(), inp["Y"].double()
        cond = float(torch.linalg.cond(L).max())
        return float((torch.linalg.matrix_norm(X.double() @ L.mT - Y) / torch.linalg.matrix_norm(Y)).max()) / cond

    return Case(SUITE, f"Y L^-T {b}x{m}x{k} {_name(dtype)}", setup, lambda inp: sl.solve_cholesky_right(inp["Y"], inp["L"]),
                check, 50.0 * math.sqrt(k) * _eps(dtype),
                [Peer("torch.linalg.solve_triangular(L^T, Y, left=False)",
                      lambda inp: torch.linalg.solve_triangular(inp["L"].mT, inp["Y"], upper=True, left=False))],
                params={"batch": b, "m": m, "k": k, "dtype": _name(dtype)},
                note="ours: native triangular inverse + one torch GEMM; error ||X L^T - Y|| / ||Y|| / cond(L)")


def _eigh_case(b, n, dtype, device, method="auto") -> Case:
    def setup():
        g = torch.Generator().manual_seed(n + b)
        A = torch.randn(b, n, n, dtype=torch.float64, generator=g)
        return {"A": (A + A.mT).to(dtype=dtype, device=device)}

    def check(inp, res):
        w, V = res
        A, w, V = inp["A"].double(), w.double(), V.double()
        eye = torch.eye(n, dtype=torch.float64, device=A.device)
        res_ = torch.linalg.matrix_norm(A @ V - V * w.unsqueeze(-2)) / torch.linalg.matrix_norm(A)
        return max(float(res_.max()), float(torch.linalg.matrix_norm(V.mT @ V - eye).max()))

    return Case(SUITE, f"eigh_small[{method}] {b}x{n}x{n} {_name(dtype)}", setup,
                lambda inp: sl.eigh_small(inp["A"], method=method, check_finite=False),
                check, 50.0 * math.sqrt(n) * _eps(dtype), [Peer("torch.linalg.eigh", lambda inp: torch.linalg.eigh(inp["A"]))],
                params={"batch": b, "n": n, "dtype": _name(dtype), "method": method},
                note="error max(||AV - VW||/||A||, ||V^T V - I||)")


def _svd_case(b, m, n, dtype, device, method="auto") -> Case:
    def setup():
        g = torch.Generator().manual_seed(m * n + b)
        return {"A": torch.randn(b, m, n, dtype=torch.float64, generator=g).to(dtype=dtype, device=device)}

    def check(inp, res):
        U, S, Vh = res
        A = inp["A"].double()
        U, S, Vh = U.double(), S.double(), Vh.double()
        r = S.shape[-1]
        eye = torch.eye(r, dtype=torch.float64, device=A.device)
        rec = torch.linalg.matrix_norm((U * S.unsqueeze(-2)) @ Vh - A) / torch.linalg.matrix_norm(A)
        return max(float(rec.max()), float(torch.linalg.matrix_norm(U.mT @ U - eye).max()),
                   float(torch.linalg.matrix_norm(Vh @ Vh.mT - eye).max()))

    return Case(SUITE, f"svd_small[{method}] {b}x{m}x{n} {_name(dtype)}", setup,
                lambda inp: sl.svd_small(inp["A"], method=method, check_finite=False),
                check, 50.0 * math.sqrt(max(m, n)) * _eps(dtype),
                [Peer("torch.linalg.svd", lambda inp: torch.linalg.svd(inp["A"], full_matrices=False))],
                params={"batch": b, "m": m, "n": n, "dtype": _name(dtype), "method": method},
                note="error max(||USV^T - A||/||A||, ||U^T U - I||, ||V^T V - I||)")


def cases(device: str, dtype: torch.dtype, quick: bool) -> list[Case]:
    if quick:
        return [
            _orth_case(0, 8192, 64, 1e2, dtype, device),
            _orth_case(32, 1024, 32, 1e2, dtype, device),
            *([_panel_case(16, 512, 42, 2, dtype, device)] if dtype in (torch.float32, torch.float64) else []),
            _cholesky_case(256, 32, _cdt(dtype), device),
            _tri_case(256, 32, _cdt(dtype), device),
            _eigh_case(256, 32, _cdt(dtype), device, "jacobi"),
            _svd_case(256, 32, 32, _cdt(dtype), device, "jacobi"),
        ]
    out = [
        _orth_case(0, 8192, 64, 1e2, dtype, device),
        _orth_case(0, 16384, 256, 1e2, dtype, device),
        _orth_case(32, 1024, 32, 1e2, dtype, device),
        _orth_case(0, 8192, 64, 1e5 if _cdt(dtype) == torch.float32 else 1e12, dtype, device),
    ]
    if dtype in (torch.float32, torch.float64):
        out += [_panel_case(b, m, k, mode, dtype, device)
                for b, m, k in ((16, 512, 42), (1, 2048, 74), (64, 256, 26), (1, 5461, 266)) for mode in (0, 2)]
        # (1 x 5461 x 266: the widest block rsvd 2048 x 5461 at rank 256 hands it; from 128 columns
        # the packed Gram kernel on AVX-512) and a 512-column one
        out += [_panel_case(1, 8192, 512, mode, dtype, device) for mode in (0, 2)]
    for b, n in ((256, 32), (16, 128)):
        cd = _cdt(dtype)
        out += [_cholesky_case(b, n, cd, device), _tri_case(b, n, cd, device)]
        out += [_eigh_case(b, n, cd, device, meth) for meth in ("jacobi", "auto")]
        out += [_svd_case(b, n, n, cd, device, meth) for meth in ("jacobi", "auto")]
    # one large matrix (the k x k stage of a single block: the blocked one-matrix kernels)
    out += [_cholesky_case(1, 256, _cdt(dtype), device), _tri_case(1, 256, _cdt(dtype), device)]
    out += [_solve_case(1, 8192, 64, _cdt(dtype), device), _solve_case(1, 16384, 256, _cdt(dtype), device),
            _svd_case(1, 74, 2048, _cdt(dtype), device, "jacobi"), _svd_case(1, 74, 2048, _cdt(dtype), device, "auto")]
    return out
