"""rsvd: ours vs torch.svd_lowrank (same q and oversampling), torch.linalg.svd (truncated),
scikit-learn's randomized_svd, and the time of rsvd's own GEMMs (the 2q + 2 products with
A alone, no orthonormalization or small SVD) as a floor.

Inputs have a prescribed spectrum sigma_i = i^-1 (a GaLore-like gradient; one row i^-2, a
fast decay whose float32 blocks are past CholeskyQR's condition limit), so the optimal
rank-k error is known; every row's error is the excess ||A - U S Vh||_F / optimal - 1
(max over a batch), for ours and for each peer (truncated to rank k)."""
from __future__ import annotations

import math

import torch

import subspace_linalg as sl

from ..spec import Case, Peer

SUITE = "rsvd"
P, Q = 10, 2  # oversampling and power iterations, the same for every randomized method
TOL = 0.05    # the target: <= 1.05 x the optimal error


def _basis(rows, cols, g, batch, where="cpu"):
    """An orthonormal (rows x cols) basis in float64: the Gaussian is drawn on the CPU (the
    same numbers for every device), its QR made on ``where``."""
    return torch.linalg.qr(torch.randn(batch + (rows, cols), generator=g, dtype=torch.float64).to(where)).Q


def _matrix(batch, m, n, seed, where="cpu", alpha=1.0):
    g = torch.Generator().manual_seed(seed)
    d = min(m, n)
    s = torch.arange(1, d + 1, dtype=torch.float64, device=where) ** -alpha
    U, V = _basis(m, d, g, batch, where), _basis(n, d, g, batch, where)
    return U, s, V


def _rotate(B, angle, g):
    """Turn every column of the orthonormal B by about ``angle`` radians (random direction)."""
    step = angle / math.sqrt(B.shape[-2]) * torch.randn(B.shape, generator=g, dtype=B.dtype)
    return torch.linalg.qr(B + step).Q


def _excess(inp, res) -> float:
    A = inp["A64"]
    U, S, Vh = (torch.as_tensor(t).to(dtype=torch.float64, device=A.device) for t in res)
    err = (A - U * S.unsqueeze(-2) @ Vh).norm(dim=(-2, -1))
    return float((err / inp["opt"]).max() - 1.0)


def _gemm_chain(A, X, passes, low=None):
    """rsvd's products with A alone: A @ X, A^T @ Y, ... (``passes`` of them); with ``low``
    (mixed precision) the cast of A and all but the last two products in that dtype, made
    as rsvd makes them (``_rsvd_core.product``; a float32 batch: the right products from
    the transposed copy of A, whose making is counted here too)."""
    from subspace_linalg._rsvd_core import columns_copy, product

    Alow = None if low is None else A.to(low)
    Acols = columns_copy(A, X.shape[-1], (passes + 1) // 2) if low is None else None
    Y, left = X, False
    for i in range(passes):
        Y = product(A, Y, left, Alow if i < passes - 2 else None, Acols)
        left = not left
    return Y


def _setup(batch, m, n, k, dtype, device, seed, warm_delta=None, l=None, alpha=1.0):
    # the float64 test matrix of a large case is made (and checked) on the GPU: on the
    # CPU its QRs and product (4096 x 11008: about 0.5 TFLOP in float64) take minutes
    where = device if str(device).startswith("cuda") and m * n >= (1 << 24) else "cpu"

    def setup():
        U, s, V = _matrix(batch, m, n, seed, where, alpha)
        inp = {}
        if warm_delta is not None:  # the previous step's matrix and its basis (GaLore refresh)
            A0 = ((U * s) @ V.mT).to(dtype=dtype, device=device)
            inp["U0"] = sl.rsvd(A0, k, generator=torch.Generator(device=device).manual_seed(1)).U
            g = torch.Generator().manual_seed(seed + 1)
            U, V = _rotate(U, warm_delta, g), _rotate(V, warm_delta, g)
        A64 = (U * s) @ V.mT
        inp.update(A64=A64, A=A64.to(dtype=dtype, device=device), opt=float(s[k:].square().sum().sqrt()),
                   gen=torch.Generator(device=device).manual_seed(0),
                   X=torch.randn(batch + (n, l or min(k + P, m, n)), dtype=dtype if dtype in (torch.float32, torch.float64)
                                 else torch.float32, device=device))
        return inp
    return setup


def _params(batch, m, n, k, dtype, **kw):
    return {"batch": list(batch), "m": m, "n": n, "rank": k, "oversample": P, "power_iters": Q,
            "dtype": str(dtype).replace("torch.", ""), **kw}


def _name(batch, m, n, k, dtype, what="rsvd"):
    b = f"{batch[0]}x" if batch else ""
    return f"{what} {b}{m}x{n} r{k} {str(dtype).replace('torch.', '')}"


def _lowrank_peer(k, cast=False):
    """torch.svd_lowrank at the same q and oversampling; ``cast``: on A.float() (it raises
    on bfloat16 / float16 input: what its users do instead, the cast timed with it)."""
    def fn(inp):
        torch.manual_seed(0)  # svd_lowrank draws its sketch from the global RNG: seeded, reproducible errors
        U, S, V = torch.svd_lowrank(inp["A"].float() if cast else inp["A"], q=k + P, niter=Q)
        return U[..., :k], S[..., :k], V[..., :k].mT
    return Peer(f"torch.svd_lowrank({'A.float(), ' if cast else ''}q=k+{P}, niter={Q})", fn)


def _lowrank_peers(k, dtype):
    """svd_lowrank as it is, and for a 16-bit input also on A.float() (as it is, it raises:
    the row shows that)."""
    peers = [_lowrank_peer(k)]
    if dtype not in (torch.float32, torch.float64):
        peers.append(_lowrank_peer(k, cast=True))
    return peers


def _full_svd_peer(k):
    def fn(inp):
        U, S, Vh = torch.linalg.svd(inp["A"], full_matrices=False)
        return U[..., :k], S[..., :k], Vh[..., :k, :]
    return Peer("torch.linalg.svd (truncated)", fn)


def _sklearn_peer(k):
    def fn(inp):
        from sklearn.utils.extmath import randomized_svd

        return randomized_svd(inp["A"].cpu().numpy(), k, n_oversamples=P, n_iter=Q, random_state=0)
    return Peer(f"sklearn randomized_svd(n_oversamples={P}, n_iter={Q})", fn, requires=("sklearn",))


def _gemm_peer(passes, low=None):
    what = "" if low is None else f", all but the last two in {_dt(low)} + the cast"
    return Peer(f"its own GEMMs alone ({passes} passes{what}, floor)",
                lambda inp: _gemm_chain(inp["A"].to(inp["X"].dtype), inp["X"], passes, low), check=False)


def _dt(dtype) -> str:
    return str(dtype).replace("torch.", "")


def _flops(batch, m, n, l, passes):
    return 2 * m * n * l * passes * math.prod(batch)


def _cold(batch, m, n, k, dtype, device, peers, seed, low=None, alpha=1.0):
    l = min(k + P, m, n)
    what = "rsvd" if low is None else f"rsvd pass_dtype={_dt(low)}"
    if alpha != 1.0:  # a faster decay: sigma_i = i^-alpha (the name says so)
        what += f" sigma=i^-{alpha:g}"
    note = "error = ||A - U S Vh||_F / optimal - 1; check_finite=False (as the peers)"
    if low is not None:
        note += (f"; mixed precision: the sketch and the first {2 * Q - 1} power passes in {_dt(low)}, "
                 "the last two products in the input precision")
    return Case(SUITE, _name(batch, m, n, k, dtype, what), _setup(batch, m, n, k, dtype, device, seed, alpha=alpha),
                lambda inp: sl.rsvd(inp["A"], k, oversample=P, power_iters=Q, generator=inp["gen"], check_finite=False,
                                    pass_dtype=low),
                _excess, TOL, peers + [_gemm_peer(2 * Q + 2, low)],
                flops=_flops(batch, m, n, l, 2 * Q + 2),
                params=_params(batch, m, n, k, dtype, pass_dtype=low and _dt(low), alpha=alpha),
                note=note)


def _warm(m, n, k, dtype, device, seed, delta=0.05):
    def ours(inp):
        return sl.rsvd(inp["A"], k, init=inp["U0"], oversample=0, power_iters=1, check_finite=False)

    return Case(SUITE, _name((), m, n, k, dtype, "rsvd warm refresh"), _setup((), m, n, k, dtype, device, seed, delta, l=k),
                ours, _excess, TOL, [_full_svd_peer(k), _gemm_peer(2)],
                flops=_flops((), m, n, k, 2), params=_params((), m, n, k, dtype, warm_delta=delta, warm_power_iters=1),
                note=f"init = the rank-k U of the previous matrix (its singular vectors turned by ~{delta} rad), "
                     "oversample=0, one power iteration (2 passes)")


def _transpose_case(batch, m, n, dtype, device) -> Case:
    """The native transposed copy the batched rsvd makes once for its right products,
    beside torch's transposing copy."""
    op = torch.ops.subspace_linalg.transpose_copy.default

    def setup():
        g = torch.Generator().manual_seed(m + n)
        return {"A": torch.randn(batch + (m, n), generator=g, dtype=torch.float64).to(dtype=dtype, device=device)}

    def check(inp, At):
        return 0.0 if torch.equal(At, inp["A"].mT.contiguous()) else float("inf")

    b = f"{batch[0]}x" if batch else ""
    return Case(SUITE, f"transpose_copy {b}{m}x{n} {_dt(dtype)}", setup, lambda inp: op(inp["A"]), check, 0.0,
                [Peer("A.mT.contiguous()", lambda inp: inp["A"].mT.contiguous())],
                params={"batch": list(batch), "m": m, "n": n, "dtype": _dt(dtype)},
                note="bitwise check; the rsvd of a float32 batch makes its right products from this copy")


def cases(device: str, dtype: torch.dtype, quick: bool) -> list[Case]:
    # mixed-precision rows where the input is float32 (bfloat16 passes; float32 last two) and
    # the device has fast bfloat16 GEMMs (elsewhere rsvd ignores pass_dtype: see _gemm.fast_dtype)
    from subspace_linalg import _gemm

    low = torch.bfloat16 if dtype == torch.float32 and _gemm.fast_dtype(torch.bfloat16, device) else None
    if quick:
        rows = [
            _cold((), 512, 512, 16, dtype, device, _lowrank_peers(16, dtype) + [_sklearn_peer(16)], 1),
            _cold((8,), 128, 128, 8, dtype, device, _lowrank_peers(8, dtype), 2),
            _cold((), 384, 1024, 48, dtype, device, [_full_svd_peer(48)], 3),
            _warm(384, 1024, 48, dtype, device, 4),
        ]
        if low is not None:
            rows.insert(1, _cold((), 512, 512, 16, dtype, device, [_lowrank_peer(16)], 1, low))
        return rows
    rows = [
        _cold((), 2048, 2048, 64, dtype, device, _lowrank_peers(64, dtype) + [_sklearn_peer(64)], 1),
        _cold((16,), 512, 512, 32, dtype, device, _lowrank_peers(32, dtype), 2),
        _cold((), 2048, 5461, 256, dtype, device, [_full_svd_peer(256)] + _lowrank_peers(256, dtype), 3),
        _warm(2048, 5461, 256, dtype, device, 4),
        # a fast decay (sigma_i = i^-2): float32 blocks past CholeskyQR's condition limit
        _cold((), 2048, 2048, 64, dtype, device, _lowrank_peers(64, dtype), 1, alpha=2.0),
        _transpose_case((16,), 512, 512, dtype, device),
    ]
    if low is not None:
        rows[1:1] = [_cold((), 2048, 2048, 64, dtype, device, [_lowrank_peer(64)], 1, low)]
        rows[3:3] = [_cold((16,), 512, 512, 32, dtype, device, [_lowrank_peer(32)], 2, low)]
        rows[5:5] = [_cold((), 2048, 5461, 256, dtype, device, [_full_svd_peer(256), _lowrank_peer(256)], 3, low)]
    if str(device).startswith("cuda"):
        # the GPU row (a LLaMA-7B MLP gradient): fp32 and, with --dtype bfloat16, bf16
        rows.append(_cold((), 4096, 11008, 256, dtype, device, _lowrank_peers(256, dtype), 5))
    return rows
