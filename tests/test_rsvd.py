"""rsvd, range_finder, rsvd_error: invariants against float64 references (Eckart-Young
optimal error, orthonormality, singular-value interlacing), on matrices of prescribed
spectrum. Tolerances from tests/_tolerances.py."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import subspace_linalg as sl
from _tolerances import rtol
from conftest import devices

F64 = torch.float64
RATIO = 1.05  # the accuracy target: ||A - U S Vh||_F <= 1.05 x optimal rank-k error


# ---------------------------------------------------------------- test matrices
def _orth(m, k, g):
    return torch.linalg.qr(torch.randn(m, k, generator=g, dtype=F64)).Q


def with_spectrum(m, n, s, g):
    """A = U diag(s) V^T with Haar-like U, V (float64)."""
    k = s.numel()
    return (_orth(m, k, g) * s) @ _orth(n, k, g).T


def spectrum(kind, d):
    i = torch.arange(1, d + 1, dtype=F64)
    if kind.startswith("poly"):
        return i ** -float(kind[4:])
    if kind == "geometric":
        return 0.8 ** (i - 1)
    if kind == "spikes":  # flat noise floor plus a few spikes
        s = torch.full((d,), 0.05, dtype=F64)
        s[:5] = torch.tensor([10.0, 8.0, 6.0, 4.0, 2.0], dtype=F64)
        return s
    raise ValueError(kind)


def layer_gradient(dout, din, g, batch=512):
    """The gradient of a linear layer's MSE loss, dL/dW = 2/N (X W^T - Y)^T X, on inputs
    with decaying feature scales (a realistic, numerically low-rank gradient)."""
    X = torch.randn(batch, din, generator=g, dtype=F64) * torch.arange(1, din + 1, dtype=F64) ** -0.7
    W = torch.randn(dout, din, generator=g, dtype=F64) / math.sqrt(din)
    Wt = torch.randn(dout, din, generator=g, dtype=F64) / math.sqrt(din)
    Y = X @ Wt.T + 0.1 * torch.randn(batch, dout, generator=g, dtype=F64)
    return 2.0 / batch * (X @ W.T - Y).T @ X


def make(kind, m, n, g):
    if kind == "gradient":
        return layer_gradient(m, n, g)
    return with_spectrum(m, n, spectrum(kind, min(m, n)), g)


def opt_error(A, k):
    s = torch.linalg.svdvals(A.double())
    return float(s[..., k:].square().sum(-1).sqrt().max()), s


def check_svd(A, res, k, dtype, ratio=RATIO):
    """The invariants every rank-k result must meet against A (compared in float64)."""
    U, S, Vh = (t.double().cpu() for t in res)
    A = A.double().cpu()
    m, n = A.shape[-2:]
    assert U.shape == A.shape[:-2] + (m, k) and S.shape == A.shape[:-2] + (k,) and Vh.shape == A.shape[:-2] + (k, n)
    assert torch.isfinite(U).all() and torch.isfinite(S).all() and torch.isfinite(Vh).all()
    eye = torch.eye(k, dtype=F64)
    assert float((U.mT @ U - eye).norm(dim=(-2, -1)).max()) <= rtol("lowrank", dtype, m)
    assert float((Vh @ Vh.mT - eye).norm(dim=(-2, -1)).max()) <= rtol("lowrank", dtype, n)
    assert (S[..., :-1] >= S[..., 1:]).all() and (S >= 0).all()
    normA = A.norm(dim=(-2, -1))
    err = (A - U * S.unsqueeze(-2) @ Vh).norm(dim=(-2, -1))
    s = torch.linalg.svdvals(A)
    opt = s[..., k:].square().sum(-1).sqrt()
    slack = rtol("lowrank", dtype, max(m, n)) * normA
    assert (err <= ratio * opt + slack).all(), (err / opt, slack)
    assert (S <= s[..., :k] + slack.unsqueeze(-1)).all()  # interlacing: Ritz values below sigma_i


# ---------------------------------------------------------------- accuracy
KINDS = ["poly0.5", "poly1", "poly2", "geometric", "spikes", "gradient"]


@pytest.fixture(params=["householder", "cholqr"])
def orth_path(request, monkeypatch):
    """Run a test through both orthonormalization paths of the passes: the small-block
    CPU one (LAPACK Householder QR, no flags) and the flagged CholeskyQR one, whatever
    the test matrix's size."""
    from subspace_linalg import _lowrank_stages as st

    use = request.param == "householder"
    monkeypatch.setattr(st, "_householder_better", lambda Y, full: use)
    return request.param


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", ["subspace", "block_krylov"])
def test_accuracy_float64(kind, method, gen, orth_path):
    A = make(kind, 240, 160, gen(kind))
    k = 20
    res = sl.rsvd(A, k, oversample=10, power_iters=2, method=method, generator=gen(1))
    assert res.U.dtype == F64
    check_svd(A, res, k, F64)


@pytest.mark.parametrize("kind", ["poly1", "poly2", "geometric", "gradient"])
def test_accuracy_float32(kind, gen, orth_path):
    A = make(kind, 240, 160, gen(kind)).float()
    res = sl.rsvd(A, 16, generator=gen(2))
    assert res.S.dtype == torch.float32
    check_svd(A, res, 16, torch.float32)


def test_block_krylov_beats_subspace_at_equal_passes(gen):
    A = make("poly0.5", 300, 200, gen(3))
    k, opt = 10, opt_error(A, 10)[0]
    e = {}
    for method in ("subspace", "block_krylov"):
        U, S, Vh = sl.rsvd(A, k, oversample=0, power_iters=1, method=method, generator=gen(4))
        e[method] = float((A - U * S @ Vh).norm()) / opt
    assert e["block_krylov"] < e["subspace"]


@pytest.mark.parametrize("shape", [(120, 300), (64, 64), (200, 30)])
def test_wide_square_tall(shape, gen, orth_path):
    m, n = shape
    A = make("poly1", m, n, gen(5))
    check_svd(A, sl.rsvd(A, 12, generator=gen(6)), 12, F64)
    k = min(m, n)  # full rank requested: exact
    check_svd(A, sl.rsvd(A, k, generator=gen(6)), k, F64)


def test_batched(gen, orth_path):
    A = torch.stack([make(kind, 90, 70, gen(i)) for i, kind in enumerate(["poly1", "geometric", "spikes", "poly2"])])
    A = A.reshape(2, 2, 90, 70)
    for method in ("subspace", "block_krylov"):
        res = sl.rsvd(A, 8, method=method, generator=gen(7))
        check_svd(A, res, 8, F64)


@pytest.mark.parametrize("dtype", [F64, torch.float32])
def test_batch_of_sixteen_takes_jacobi_on_the_triangular_factor(dtype, gen, monkeypatch):
    """16 or more small matrices: the small SVD of the upper triangular R runs one-sided
    Jacobi on R^T (the CPU rule in _lowrank_stages, where the float64 Gram SVD declines,
    switched off here); also rank-deficient elements."""
    from subspace_linalg import _lowrank_stages as st

    calls = []
    real = st._svd_small
    monkeypatch.setattr(st, "_svd_gram", lambda R: None)
    monkeypatch.setattr(st, "_svd_small", lambda R, **kw: calls.append(kw.get("method")) or real(R, **kw))
    monkeypatch.setattr(st, "_native_threads", lambda: 2)  # the rule needs two threads (see below)
    kinds = ["poly1", "geometric", "spikes", "poly2"] * 4
    A = torch.stack([make(kind, 120, 90, gen(i)) for i, kind in enumerate(kinds)]).to(dtype)
    A[3] = 0
    A[5] = with_spectrum(120, 90, torch.tensor([2.0, 1.0, 0.5], dtype=F64), gen(99)).to(dtype)
    for method in ("subspace", "block_krylov"):
        calls.clear()
        res = sl.rsvd(A, 12, method=method, generator=gen(7))
        if method == "subspace":  # (block Krylov's (q + 1) l = 66 columns exceed the rule's n <= 64)
            assert calls[0] == "jacobi"  # (then LAPACK for the few elements recomputed after a failed flag)
        check_svd(A, res, 12, dtype)
        assert (res.S[3] == 0).all()


def test_batch_of_sixteen_at_one_thread_keeps_lapack(gen, monkeypatch):
    from subspace_linalg import _lowrank_stages as st

    calls = []
    real = st._svd_small
    monkeypatch.setattr(st, "_svd_gram", lambda R: None)  # (the rule behind the Gram SVD)
    monkeypatch.setattr(st, "_svd_small", lambda R, **kw: calls.append(kw.get("method")) or real(R, **kw))
    monkeypatch.setattr(st, "_native_threads", lambda: 1)
    A = torch.stack([make("poly1", 120, 90, gen(i)) for i in range(16)]).float()
    res = sl.rsvd(A, 12, generator=gen(7))
    assert calls == [None]
    check_svd(A, res, 12, torch.float32)


@pytest.mark.parametrize("batch,l,cond", [((), 8, 10.0), ((), 74, 1e3), ((16,), 42, 1e2), ((), 266, 3e3)])
def test_gram_svd_of_the_small_factor(batch, l, cond, gen):
    """The float32 small SVD from the float64 Gram (_lowrank_stages._svd_gram) against the
    float64 SVD: singular values, orthonormal factors, reconstruction; upper triangular R
    as the drivers pass it, log-spaced spectrum of condition ``cond``."""
    from subspace_linalg import _lowrank_stages as st

    g = gen(l)
    s = torch.logspace(0, -math.log10(cond), l, dtype=F64)
    R = torch.linalg.qr((_orth(l, l, g) * s) @ _orth(l, l, g).T).R if not batch else torch.stack(
        [torch.linalg.qr((_orth(l, l, g) * s) @ _orth(l, l, g).T).R for _ in range(batch[0])])
    R32 = R.float()
    res = st._svd_gram(R32)
    assert res is not None and all(t.dtype == torch.float32 for t in res)
    U, S, Vh = (t.double() for t in res)
    R = R32.double()
    S_ref = torch.linalg.svdvals(R)
    eye = torch.eye(l, dtype=F64)
    assert float(((S - S_ref).abs() / S_ref[..., :1]).max()) <= rtol("small_dense", torch.float32, l)
    assert (S[..., :-1] >= S[..., 1:]).all()
    assert float((U.mT @ U - eye).norm(dim=(-2, -1)).max()) <= rtol("orth", torch.float32, l)
    assert float((Vh @ Vh.mT - eye).norm(dim=(-2, -1)).max()) <= rtol("orth", torch.float32, l)
    err = (R - U * S.unsqueeze(-2) @ Vh).norm(dim=(-2, -1)) / R.norm(dim=(-2, -1))
    assert float(err.max()) <= rtol("small_dense", torch.float32, l)


def test_gram_svd_declines_where_the_gram_loses_the_small_values(gen, monkeypatch):
    """Rank-deficient, zero, too ill-conditioned (1e5 > 1e4 = the floor's condition) or
    non-finite R: _svd_gram returns None and svd_small takes the SVD instead."""
    from subspace_linalg import _lowrank_stages as st

    g = gen(5)
    good = torch.linalg.qr(torch.randn(3, 20, 20, generator=g, dtype=F64)).R.float()
    deficient = good.clone()
    deficient[1, -1, -1] = 0.0  # one singular value 0 (R upper triangular)
    ill = torch.linalg.qr((_orth(20, 20, g) * torch.logspace(0, -5, 20, dtype=F64)) @ _orth(20, 20, g).T).R.float()
    nan = good.clone()
    nan[0, 0, 3] = float("nan")
    assert st._svd_gram(good) is not None
    for R in (deficient, torch.zeros(20, 20), ill, nan):
        assert st._svd_gram(R) is None
    calls = []
    real = st._svd_small
    monkeypatch.setattr(st, "_svd_small", lambda R, **kw: calls.append(1) or real(R, **kw))
    for R in (deficient, ill):
        U, S, Vh = st.svd_small(R)
        assert calls  # the fallback ran
        calls.clear()
        S_ref = torch.linalg.svdvals(R.double())
        assert float((S.double() - S_ref).abs().max()) <= rtol("small_dense", torch.float32, 20) * float(S_ref.max())
    st.svd_small(good)
    assert not calls  # the Gram SVD took it


def test_rank_deficient_and_zero(gen, orth_path):
    A = with_spectrum(80, 60, torch.tensor([3.0, 2.0, 1.0, 0.5, 0.25], dtype=F64), gen(8))
    for method in ("subspace", "block_krylov"):
        res = sl.rsvd(A, 10, method=method, generator=gen(9))
        check_svd(A, res, 10, F64)
        assert float(res.S[5:].abs().max()) <= rtol("lowrank", F64, 80) * 3.0
    Z = torch.zeros(2, 50, 40, dtype=torch.float32)
    res = sl.rsvd(Z, 6, generator=gen(10))
    check_svd(Z, res, 6, torch.float32)
    assert (res.S == 0).all()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_input(dtype, gen):
    A = make("poly1", 200, 128, gen(11)).to(dtype)
    res = sl.rsvd(A, 16, generator=gen(12))
    assert res.U.dtype == res.S.dtype == res.Vh.dtype == torch.float32  # computed and returned in float32
    check_svd(A.float(), res, 16, torch.float32)  # against the matrix the input holds


@pytest.mark.parametrize("kind", KINDS)
def test_mixed_precision_passes_float32(kind, gen, orth_path):
    """pass_dtype=bfloat16: every product but the last two in bfloat16; the two full-precision
    products restore the default's accuracy bound on every spectrum, fast-decaying included."""
    A = make(kind, 240, 160, gen(kind)).float()
    for q in (1, 2, 3):
        res = sl.rsvd(A, 16, power_iters=q, generator=gen(40), pass_dtype=torch.bfloat16)
        assert res.S.dtype == torch.float32
        check_svd(A, res, 16, torch.float32)


def test_mixed_precision_passes_float64_and_bf16_input(gen):
    A = make("poly2", 200, 240, gen(41))  # wide: factored as A^T
    check_svd(A, sl.rsvd(A, 12, generator=gen(42), pass_dtype=torch.float32), 12, F64)
    Ab = make("gradient", 200, 128, gen(43)).to(torch.bfloat16)
    res = sl.rsvd(Ab, 16, generator=gen(44), pass_dtype=torch.bfloat16)  # Ab itself is the low copy
    check_svd(Ab.float(), res, 16, torch.float32)
    # warm start with q = 2 (4 passes: the first two in bfloat16), batched
    A2 = torch.stack([make("geometric", 120, 90, gen(45)), make("poly1", 120, 90, gen(46))]).float()
    U0 = sl.rsvd(A2, 8, generator=gen(47)).U
    check_svd(A2, sl.rsvd(A2, 8, init=U0, power_iters=2, pass_dtype=torch.bfloat16), 8, torch.float32)
    # same seed, same result
    r1 = sl.rsvd(A2, 8, generator=gen(48), pass_dtype=torch.bfloat16)
    r2 = sl.rsvd(A2, 8, generator=gen(48), pass_dtype=torch.bfloat16)
    assert all(torch.equal(a, b) for a, b in zip(r1, r2))


def test_pass_dtype_ignored_without_fast_gemms(gen):
    """Where GEMMs in pass_dtype are emulated (a CPU without AVX-512 BF16 / AMX), pass_dtype
    is ignored: the result is the full-precision one, bit for bit; with them it is not."""
    from subspace_linalg import _gemm

    A = make("poly1", 160, 120, gen(60)).float()
    full = sl.rsvd(A, 8, generator=gen(61))
    prev = _gemm.set_fast_dtypes(False)
    try:
        assert not _gemm.fast_dtype(torch.bfloat16, "cpu") and not _gemm.fast_dtype(torch.float16, "cpu")
        low = sl.rsvd(A, 8, generator=gen(61), pass_dtype=torch.bfloat16)
        assert all(torch.equal(a, b) for a, b in zip(full, low))
        _gemm.set_fast_dtypes(None)  # detection from /proc/cpuinfo
        flags = _gemm._cpuinfo()[1]
        assert _gemm.fast_dtype(torch.bfloat16, "cpu") == bool({"avx512_bf16", "amx_bf16"} & flags)
        assert _gemm.fast_dtype(torch.float32, "cpu") and _gemm.fast_dtype(torch.bfloat16, "cuda")
        _gemm.set_fast_dtypes(True)
        mixed = sl.rsvd(A, 8, generator=gen(61), pass_dtype=torch.bfloat16)
        assert not torch.equal(mixed.S, full.S)  # the bfloat16 passes change the rounding
        check_svd(A, mixed, 8, torch.float32)
    finally:
        _gemm.set_fast_dtypes(prev)


def test_sign_convention_and_reproducibility(gen):
    A = make("spikes", 150, 100, gen(13))
    r1 = sl.rsvd(A, 10, generator=torch.Generator().manual_seed(5))
    r2 = sl.rsvd(A, 10, generator=torch.Generator().manual_seed(5))
    r3 = sl.rsvd(A, 10, generator=torch.Generator().manual_seed(6))
    for a, b in zip(r1, r2):
        assert torch.equal(a, b)
    assert not torch.equal(r1.U, r3.U)
    # sign convention: largest-|entry| of every U column is positive, so two different
    # sketches agree on the converged (well separated) leading vectors
    idx = r1.U.abs().argmax(0)
    assert (r1.U[idx, torch.arange(10)] > 0).all()
    assert float((r1.U[:, :3] - r3.U[:, :3]).abs().max()) < 1e-6
    Q1 = sl.range_finder(A, 12, generator=torch.Generator().manual_seed(1))
    Q2 = sl.range_finder(A, 12, generator=torch.Generator().manual_seed(1))
    assert torch.equal(Q1, Q2)


# ---------------------------------------------------------------- warm start
@pytest.mark.parametrize("method", ["subspace", "block_krylov"])
def test_warm_start_one_iteration(method, gen, orth_path):
    """GaLore refresh: after a small perturbation, one power iteration from the previous U
    without oversampling reaches <= 1.05 x optimal."""
    g = gen(14)
    A0 = layer_gradient(256, 192, g)
    k = 16
    U0 = sl.rsvd(A0, k, generator=gen(15)).U
    A1 = A0 + 1e-2 * A0.norm() / math.sqrt(A0.numel()) * torch.randn(A0.shape, generator=g, dtype=F64)
    res = sl.rsvd(A1, k, oversample=0, power_iters=1, init=U0, method=method)
    check_svd(A1, res, k, F64)
    # and the previous basis is already close: a fresh one with no iteration is much worse
    cold = sl.rsvd(A1, k, oversample=0, power_iters=0, generator=gen(16))
    assert float((A1 - res.U * res.S @ res.Vh).norm()) < float((A1 - cold.U * cold.S @ cold.Vh).norm())


def test_warm_start_float32_batched_and_padding(gen, orth_path):
    A = torch.stack([make("geometric", 120, 90, gen(17)), make("poly2", 120, 90, gen(18))]).float()
    U0 = sl.rsvd(A, 8, generator=gen(19)).U
    res = sl.rsvd(A, 8, init=U0[..., :8], power_iters=1, generator=gen(20))  # padded with 10 columns
    check_svd(A, res, 8, torch.float32)
    # power_iters=0: a Rayleigh-Ritz projection of A on init (one pass): the best rank-8
    # approximation within range(init), already near optimal from a converged basis
    res0 = sl.rsvd(A, 8, init=U0, oversample=0, power_iters=0)
    check_svd(A, res0, 8, torch.float32, ratio=1.1)
    Q = sl.range_finder(A, 14, init=U0, power_iters=1, generator=gen(21))
    assert Q.shape == (2, 120, 14)
    assert float((Q.mT @ Q - torch.eye(14)).norm(dim=(-2, -1)).max()) <= rtol("lowrank", torch.float32, 120)


def test_range_finder_captures_top_subspace(gen):
    A = make("poly1", 200, 150, gen(22))
    k = 10
    Q = sl.range_finder(A, k + 10, generator=gen(23))
    assert Q.shape == (200, 20) and Q.dtype == F64
    assert float((Q.T @ Q - torch.eye(20, dtype=F64)).norm()) <= rtol("lowrank", F64, 200)
    err = float((A - Q @ (Q.T @ A)).norm())
    assert err <= RATIO * opt_error(A, k)[0]


# ---------------------------------------------------------------- adaptive rank
@pytest.mark.parametrize("dtype,tol", [(F64, 1e-2), (F64, 1e-10), (torch.float32, 1e-2)])
def test_adaptive_rank(dtype, tol, gen):
    A = torch.stack([make("geometric", 160, 140, gen(24)), make("poly2", 160, 140, gen(25))]).to(dtype)
    U, S, Vh = sl.rsvd(A, None, tol=tol, generator=gen(26))
    k = S.shape[-1]
    A64 = A.double()
    err = (A64 - U.double() * S.double().unsqueeze(-2) @ Vh.double()).norm(dim=(-2, -1))
    assert (err <= tol * A64.norm(dim=(-2, -1)) * (1 + rtol("lowrank", dtype, 160))).all()
    # k is minimal up to a couple of directions: the optimal rank meeting tol per element
    s = torch.linalg.svdvals(A64)
    tails = s.square().flip(-1).cumsum(-1).flip(-1)
    kstar = int(((tails > (tol * A64.norm(dim=(-2, -1))).square().unsqueeze(-1)).sum(-1)).max())
    assert kstar <= k <= kstar + 2
    assert (S[..., :-1] >= S[..., 1:]).all()


def test_adaptive_rank_cap(gen):
    A = make("poly0.5", 100, 80, gen(27))
    U, S, Vh = sl.rsvd(A, 12, tol=1e-6, generator=gen(28))  # tol unreachable at rank 12: capped
    assert S.shape == (12,)
    check_svd(A, (U, S, Vh), 12, F64, ratio=1.3)


# ---------------------------------------------------------------- error estimate
def test_rsvd_error_estimate(gen):
    A = torch.stack([make("poly1", 150, 120, gen(29)), make("spikes", 150, 120, gen(30))])
    U, S, Vh = sl.rsvd(A, 10, power_iters=1, generator=gen(31))
    est = sl.rsvd_error(A, U, S, Vh, generator=gen(32))
    true = torch.linalg.matrix_norm(A - U * S.unsqueeze(-2) @ Vh, ord=2)
    assert est.shape == (2,)
    assert (est <= true * (1 + rtol("lowrank", F64, 150))).all() and (est >= 0.95 * true).all()
    assert torch.equal(est, sl.rsvd_error(A, U, S, Vh, generator=gen(32)))


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("call,exc,word", [
    (lambda A: sl.rsvd(A[0], 2), ValueError, "A"),
    (lambda A: sl.rsvd(A, 0), ValueError, "rank"),
    (lambda A: sl.rsvd(A, 21), ValueError, "rank"),
    (lambda A: sl.rsvd(A, 2.0), TypeError, "rank"),
    (lambda A: sl.rsvd(A.long(), 2), TypeError, "A"),
    (lambda A: sl.rsvd(A[:, :0], 1), ValueError, "A"),
    (lambda A: sl.rsvd(A, 2, oversample=-1), ValueError, "oversample"),
    (lambda A: sl.rsvd(A, 2, power_iters=-1), ValueError, "power_iters"),
    (lambda A: sl.rsvd(A, 2, method="lanczos"), ValueError, "method"),
    (lambda A: sl.rsvd(A, None), ValueError, "tol"),
    (lambda A: sl.rsvd(A, None, tol=1.5), ValueError, "tol"),
    (lambda A: sl.rsvd(A, None, tol=0.1, method="block_krylov"), ValueError, "method"),
    (lambda A: sl.rsvd(A, 4, init=torch.zeros(30, 3)), ValueError, "init"),
    (lambda A: sl.rsvd(A, 4, init=torch.zeros(29, 5)), ValueError, "init"),
    (lambda A: sl.rsvd(A, 4, generator=1), TypeError, "generator"),
    (lambda A: sl.rsvd(A, 4, check_finite=1), TypeError, "check_finite"),
    (lambda A: sl.rsvd(A, 4, pass_dtype="bfloat16"), TypeError, "pass_dtype"),
    (lambda A: sl.rsvd(A, 4, pass_dtype=torch.int8), TypeError, "pass_dtype"),
    (lambda A: sl.rsvd(A, 4, pass_dtype=torch.float64), ValueError, "pass_dtype"),
    (lambda A: sl.rsvd(A, 4, pass_dtype=torch.bfloat16, method="block_krylov"), ValueError, "pass_dtype"),
    (lambda A: sl.rsvd(A, None, tol=0.1, pass_dtype=torch.bfloat16), ValueError, "pass_dtype"),
    (lambda A: sl.range_finder(A, 0), ValueError, "size"),
    (lambda A: sl.range_finder(A, 25), ValueError, "size"),
    (lambda A: sl.rsvd_error(A, torch.zeros(30, 2), torch.zeros(3), torch.zeros(2, 20)), ValueError, "S"),
])
def test_bad_input(call, exc, word):
    A = torch.randn(30, 20)
    with pytest.raises(exc, match=word):
        call(A)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_check_finite_counts_every_kind_of_non_finite_entry(bad, dtype):
    from subspace_linalg import _validate

    A = torch.randn(3, 40, 30).to(dtype)
    _validate.check_finite("f", "A", A)  # finite: no error
    where = torch.randperm(A.numel(), generator=torch.Generator().manual_seed(5))[:3]
    A.view(-1)[where] = bad
    with pytest.raises(ValueError, match=r"f: A has 3 non-finite .* of 3600"):
        _validate.check_finite("f", "A", A)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_input(bad):
    A = torch.randn(30, 20)
    A[3, 4] = bad
    with pytest.raises(ValueError, match="non-finite"):
        sl.rsvd(A, 4)
    with pytest.raises(ValueError, match="non-finite"):
        sl.range_finder(A, 4)
    with pytest.raises(ValueError, match="non-finite"):
        sl.polar(A)


# ---------------------------------------------------------------- compile and devices
def test_compile_fullgraph(gen):
    """The deterministic core (start block given, no generator, no host read: the flags of
    the sync-free orthonormalization are returned, not read) traces with fullgraph=True.
    The public driver itself reads the flags back once (data-dependent control flow), and
    torch.compile cannot take a torch.Generator."""
    from subspace_linalg import _rsvd_core as core

    def pipeline(A, X0):
        fo = core.FlaggedOrth()
        res = core.fix_signs(core.lowrank_svd(A, X0, 8, 5, orth=fo))
        return res, fo.ok

    A = make("poly1", 96, 64, gen(33)).float()
    X0 = A @ torch.randn(64, 18, generator=gen(34))
    res, ok = torch.compile(pipeline, fullgraph=True)(A, X0)
    assert ok is None or bool(ok.all())
    check_svd(A, res, 8, torch.float32)
    A = make("poly1", 1200, 900, gen(35)).float()  # large enough for the flagged CholeskyQR path
    X0 = A @ torch.randn(900, 40, generator=gen(36))
    res, ok = torch.compile(pipeline, fullgraph=True)(A, X0)
    assert ok is not None and bool(ok.all())
    check_svd(A, res, 8, torch.float32)


def test_failed_flags_are_recomputed(monkeypatch, gen):
    """A sync-free orthonormalization that fails (garbage Q, flag False) on some batch
    elements: the drivers recompute exactly those with the robust one."""
    from subspace_linalg import _lowrank_stages as st

    def failing(Y):
        Q = torch.linalg.qr(Y).Q.clone()
        ok = torch.ones(Y.shape[:-2], dtype=torch.bool)
        if Y.dim() == 2:
            return torch.zeros_like(Q), torch.tensor(False)
        Q[1] = 0.0
        ok[1] = False
        return Q, ok

    monkeypatch.setattr(st, "_cholqr2", failing)
    monkeypatch.setattr(st, "_householder_better", lambda Y, full: False)  # the flagged path at every size
    A = torch.stack([make(kind, 90, 70, gen(i)) for i, kind in enumerate(["poly1", "geometric", "spikes"])])
    for method in ("subspace", "block_krylov"):
        check_svd(A, sl.rsvd(A, 8, method=method, generator=gen(36)), 8, F64)
    check_svd(A[0], sl.rsvd(A[0], 8, generator=gen(37)), 8, F64)
    Q = sl.range_finder(A, 12, generator=gen(38))
    assert float((Q.mT @ Q - torch.eye(12, dtype=F64)).norm(dim=(-2, -1)).max()) <= rtol("lowrank", F64, 90)
    U, S, Vh = sl.rsvd(A, None, tol=1e-2, generator=gen(39))
    err = (A - U * S.unsqueeze(-2) @ Vh).norm(dim=(-2, -1))
    assert (err <= 1e-2 * A.norm(dim=(-2, -1)) * (1 + rtol("lowrank", F64, 90))).all()


@pytest.mark.parametrize("batch", [(), (3,)])
@pytest.mark.parametrize("rows,cols,l", [(40, 30, 7), (300, 900, 20), (64, 64, 200), (2100, 2050, 12), (2100, 2050, 26)])
@pytest.mark.parametrize("layout", ["row", "col"])
def test_pass_products_equal_the_plain_product_in_every_orientation(batch, rows, cols, l, layout, gen):
    """_mm and tall_times_small choose a GEMM orientation by shape, layout and size (the
    2100 x 2050 float32 A is above the 16 MiB row-major limit, and with l = 26 its
    product is made with X padded to 32 columns); every branch computes the same product."""
    from subspace_linalg import _rsvd_core as core
    from subspace_linalg.orth import tall_times_small

    g = gen(rows + cols + l)
    S = torch.randn(batch + (cols, rows) if layout == "col" else batch + (rows, cols), generator=g)
    M = S.mT if layout == "col" else S  # (rows, cols), a transposed view or row-major
    X = torch.randn(batch + (cols, l), generator=g)
    want = M.double() @ X.double()
    tol = 20 * math.sqrt(cols) * torch.finfo(torch.float32).eps
    got = core._mm(M, X)
    assert got.shape == want.shape
    assert float((got.double() - want).abs().max()) <= tol * float(want.abs().max())
    W = torch.randn(batch + (l, 5), generator=g)
    got = tall_times_small(X, W)
    want = X.double() @ W.double()
    assert float((got.double() - want).abs().max()) <= 20 * math.sqrt(l) * torch.finfo(torch.float32).eps * float(want.abs().max())


@pytest.mark.parametrize("l", [26, 266])
def test_blas_policy_makes_a_large_transposed_product_row_major(l, gen, monkeypatch):
    """Under the "blas" policy (MKL on an Intel CPU) A^T X of a row-major A above the 16 MiB
    limit, at any width, is the row-major product (X^T A)^T: a column-major result (the
    layout the orthonormalization reads in place), the same product."""
    from subspace_linalg import _gemm
    from subspace_linalg import _rsvd_core as core

    g = gen(l)
    A = torch.randn(2100, 2050, generator=g)  # 17.2 MB of float32
    X = torch.randn(2100, l, generator=g)
    want = A.double().mT @ X.double()
    tol = 20 * math.sqrt(2100) * torch.finfo(torch.float32).eps * float(want.abs().max())
    monkeypatch.setitem(_gemm._state, "policy", "blas")
    assert not _gemm.routed(A.mT, X)  # (MKL's product, not oneDNN's)
    got = core._mm(A.mT, X)
    assert got.shape == (2050, l) and got.stride(-2) == 1 and got.mT.is_contiguous()
    assert float((got.double() - want).abs().max()) <= tol


def test_small_cpu_blocks_take_householder_and_large_ones_the_flagged_cholqr(monkeypatch, gen):
    """The size rule of the passes' orthonormalization on the CPU, observed through the
    functions it calls (the accuracy tests run both paths through ``orth_path``)."""
    from subspace_linalg import _lowrank_stages as st

    calls = []
    for name in ("_cholqr2", "_cholqr2_factored", "_cholqr_span"):
        real = getattr(st, name)
        monkeypatch.setattr(st, name, lambda Y, _real=real, _n=name: (calls.append(_n), _real(Y))[1])
    small = make("poly1", 240, 160, gen(40))
    check_svd(small, sl.rsvd(small, 16, generator=gen(41)), 16, F64)
    assert calls == []
    big = make("poly1", 1500, 1000, gen(42))
    check_svd(big, sl.rsvd(big, 40, generator=gen(43)), 40, F64)
    assert "_cholqr_span" in calls and "_cholqr2_factored" in calls


@pytest.mark.parametrize("device", devices())
def test_device(device, gen):
    A = make("poly1", 200, 160, gen(34)).float().to(device)
    g = torch.Generator(device="cpu").manual_seed(3)
    res = sl.rsvd(A, 12, generator=g)  # sketch drawn on the generator's device, moved to A's
    assert res.U.device == A.device
    check_svd(A, res, 12, torch.float32)
    res = sl.rsvd(A, 12, method="block_krylov", init=res.U, power_iters=1)
    check_svd(A, res, 12, torch.float32)
    np.testing.assert_array_less(0, res.S.cpu().numpy() + 1)


@pytest.mark.cuda
def test_no_host_sync_in_power_iterations(gen):
    """The passes (GEMMs + orthonormalization) never read back to the host."""
    from subspace_linalg import _rsvd_core as core

    A = make("poly1", 300, 200, gen(35)).float().cuda()
    X0 = core.start_block(A, 20, None, None)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        fo = core.FlaggedOrth()
        Q = fo(X0)
        P, X, left = core.alternate(A, Q, 5, fo)
        Qk, Z = core.block_krylov(A, Q, 2, fo)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert P.shape == (200, 20) and Qk.shape == (300, 60)


def test_a_batch_shares_one_sketch(gen):
    """The cold start draws one Gaussian Omega for the whole batch (broadcast): equal
    elements give equal factorizations, each still within the accuracy bound, and the same
    generator seed gives the same results."""
    A1 = make("poly1", 90, 70, gen(1))
    A = torch.stack([A1, make("geometric", 90, 70, gen(2)), A1]).float()
    res = sl.rsvd(A, 8, generator=gen(5))
    for t in res:
        assert torch.equal(t[0], t[2])
    check_svd(A, res, 8, torch.float32)
    again = sl.rsvd(A, 8, generator=gen(5))
    assert all(torch.equal(a, b) for a, b in zip(res, again))
    Q = sl.range_finder(A, 10, generator=gen(6))
    assert torch.equal(Q[0], Q[2])
    ada = sl.rsvd(A, None, tol=0.3, generator=gen(8))  # (the adaptive mode's blocks too)
    for t in ada:
        assert torch.equal(t[0], t[2])


def test_cpu_flag_failures_are_fixed_in_place_without_a_second_run(monkeypatch, gen):
    """float32 blocks past CholeskyQR's condition limit (sigma_i = i^-2, l = 74: kappa 5476 >
    u^-1/2) fail their flags at every pass. On the CPU the failed elements are replaced by
    Householder QR at once: the passes are made once (2q + 2 products, not twice that), the
    result as accurate; in a batch only the failing element is replaced."""
    from subspace_linalg import _rsvd_core as core

    calls = []
    real = core.product
    monkeypatch.setattr(core, "product", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    d = 500
    fast = with_spectrum(600, d, torch.arange(1, d + 1, dtype=F64) ** -2.0, gen(40)).float()
    res = sl.rsvd(fast, 64, generator=gen(41))
    assert len(calls) == 6
    check_svd(fast, res, 64, torch.float32)
    slow = with_spectrum(600, d, torch.arange(1, d + 1, dtype=F64) ** -0.5, gen(42)).float()
    calls.clear()
    res = sl.rsvd(torch.stack([slow, fast, slow]), 64, generator=gen(43))
    assert len(calls) == 6
    check_svd(torch.stack([slow, fast, slow]), res, 64, torch.float32)


@pytest.mark.parametrize("alpha", [2.0, 3.0])
def test_float32_fast_decay_keeps_the_optimal_error(alpha, gen):
    """float32, sigma_i = i^-alpha with alpha = 2, 3: every block is past CholeskyQR's
    condition limit, and the rescue must keep the small singular directions. Householder
    does: within 1.05x of the optimal rank-k error, as torch.svd_lowrank. A shifted
    CholeskyQR pass in its place, tried, left 15x at alpha = 3 (its shift drops the
    directions below sqrt(u))."""
    d = 500
    s = torch.arange(1, d + 1, dtype=F64) ** -alpha
    A64 = with_spectrum(600, d, s, gen(50))
    U, S, Vh = sl.rsvd(A64.float(), 64, generator=gen(51))
    err = float((A64 - (U.double() * S.double()) @ Vh.double()).norm())
    assert err <= 1.05 * float(s[64:].square().sum().sqrt())


def test_nan_input_without_the_check_still_raises(gen):
    """check_finite=False skips rsvd's own check; a NaN that reaches a block still ends in
    a ValueError (the rescue's), never in a silent NaN result."""
    A = make("poly1", 600, 500, gen(60)).float()
    A[3, 4] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        sl.rsvd(A, 64, check_finite=False)
