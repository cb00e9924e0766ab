"""orthonormalize: orthonormality to C sqrt(k) u up to condition 1/u, range preserved,
per-element fallbacks, rank-deficient / zero input, bad input."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.linalg
import torch

import subspace_linalg as sl
from subspace_linalg.errors import NumericalWarning

from _tolerances import rtol
from conftest import devices

DTYPES = [torch.float32, torch.float64]


def _with_cond(b, m, k, kappa, g, dtype=torch.float64, device="cpu"):
    """Y = U diag(s) V^T, s logspaced from 1 to 1/kappa (float64 build, then cast)."""
    U, _ = torch.linalg.qr(torch.randn(*b, m, k, dtype=torch.float64, generator=g))
    V, _ = torch.linalg.qr(torch.randn(*b, k, k, dtype=torch.float64, generator=g))
    s = torch.logspace(0, -math.log10(kappa), k, dtype=torch.float64)
    return ((U * s) @ V.mT).to(dtype=dtype, device=device)


def _inner(X, Y, rows=128):
    """X^T Y in float64 summed over row blocks: the check's own rounding stays small
    whatever order the BLAS accumulates a long inner dimension in."""
    X, Y = X.double().cpu(), Y.double().cpu()
    return torch.stack([X[..., i:i + rows, :].mT @ Y[..., i:i + rows, :]
                        for i in range(0, X.shape[-2], rows)]).sum(0)


def _orth_err(Q):
    eye = torch.eye(Q.shape[-1], dtype=torch.float64)
    return float(torch.linalg.matrix_norm(_inner(Q, Q) - eye).max())


def _range_residual(Q, Y):
    """max over the batch of ||Y - Q Q^T Y||_F / ||Y||_F (0 for a zero Y)."""
    Q, Y = Q.double().cpu(), Y.double().cpu()
    Y = Y / Y.abs().amax(dim=(-2, -1), keepdim=True).clamp_min(1e-300)  # no overflow in the norms
    r = torch.linalg.matrix_norm(Y - Q @ _inner(Q, Y))
    return float((r / torch.linalg.matrix_norm(Y).clamp_min(1e-300)).max())


def _u(dtype):
    return torch.finfo(dtype).eps / 2


@pytest.fixture(params=["size-rule", "cholqr", "cholqr-scqr3"])
def auto_path(request, monkeypatch):
    """Run an "auto" test as the size rule decides (small CPU blocks: Householder QR), with
    the CholeskyQR2 path forced at every size (a failed element rescued by Householder QR,
    as on the CPU), and with the GPU's rescue (shifted CholeskyQR3 first) on the CPU."""
    from subspace_linalg import orth

    if request.param != "size-rule":
        monkeypatch.setattr(orth, "householder_better", lambda Y, full=True: False)
    if request.param == "cholqr-scqr3":
        monkeypatch.setattr(orth, "_householder_rescue", lambda Y: False)
    return request.param


def test_auto_takes_householder_for_small_cpu_blocks_only(monkeypatch, gen):
    """orthonormalize: the fused CholeskyQR2 wherever it applies (CPU float32/float64 outside
    autograd), at every size; Householder for small blocks it does not take (autograd).
    The drivers' rule keeps Householder up to batch m l^2 = 2^18 (householder_better)."""
    from subspace_linalg import orth

    calls = []
    real = orth._cholqr2
    monkeypatch.setattr(orth, "_cholqr2", lambda Y, G=None: (calls.append(tuple(Y.shape)), real(Y, G))[1])
    small = _with_cond((), 300, 16, 1e2, gen(11), torch.float64)
    assert _orth_err(sl.orthonormalize(small)) <= rtol("orth", torch.float64, 16)
    assert calls == [(1, 300, 16)]
    calls.clear()
    grad = small.clone().requires_grad_()
    assert _orth_err(sl.orthonormalize(grad).detach()) <= rtol("orth", torch.float64, 16)
    assert calls == []
    big = _with_cond((4,), 1000, 48, 1e2, gen(12), torch.float64)
    assert _orth_err(sl.orthonormalize(big)) <= rtol("orth", torch.float64, 48)
    assert calls == [(4, 1000, 48)]
    assert orth.householder_better(torch.randn(18, 256).mT) and not orth.householder_better(torch.randn(26, 512).mT)


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("log_kappa", [0, 3, 5, "1/u"])
@pytest.mark.parametrize("method", ["auto", "cholqr2", "shifted_cholqr3", "householder"])
def test_orthonormal_up_to_condition_one_over_u(device, dtype, log_kappa, method, gen, auto_path):
    """The acceptance: ||Q^T Q - I||_F <= C sqrt(k) u for kappa up to 1/u; range kept."""
    m, k = 500, 24
    kappa = 1.0 / _u(dtype) if log_kappa == "1/u" else 10.0 ** log_kappa
    Y = _with_cond((2,), m, k, kappa, gen(log_kappa), dtype, device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NumericalWarning)  # explicit methods may fall back, loudly
        Q = sl.orthonormalize(Y, method=method)
    assert Q.shape == Y.shape and Q.dtype == dtype and Q.device == Y.device
    assert _orth_err(Q) <= rtol("orth", dtype, k)
    # range preserved: every column of Y lies in span(Q) to roundoff of Y's own size
    assert _range_residual(Q, Y) <= rtol("orth", dtype, k)


@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_qr_factorization(dtype, gen, auto_path):
    """Full-rank Y: Q = Y R^{-1} with diag(R) > 0, the Q of SciPy's QR up to column signs."""
    Y = _with_cond((), 300, 16, 1e2, gen(1), dtype)
    Q = sl.orthonormalize(Y)
    Qs, Rs = scipy.linalg.qr(Y.double().numpy(), mode="economic")
    Qs = Qs * np.sign(np.diag(Rs))
    assert np.linalg.norm(Q.double().numpy() - Qs) <= rtol("orth", dtype, 16) * 1e2
    R = Q.double().mT @ Y.double()  # upper triangular with positive diagonal
    assert float(torch.tril(R, -1).abs().max()) <= rtol("orth", dtype, 16) * float(R.abs().max())
    assert bool((torch.diagonal(R) > 0).all())


@pytest.mark.parametrize("dtype", DTYPES)
def test_plain_cholqr2_would_fail_but_we_do_not(dtype, gen, auto_path):
    """kappa = 1e5 (float32) / 1e12 (float64): plain CholeskyQR2 is not orthonormal there;
    "cholqr2" detects it, warns and recomputes; "auto" falls back silently."""
    kappa = 1e5 if dtype == torch.float32 else 1e12
    Y = _with_cond((), 2000, 32, kappa, gen(2), dtype)
    # plain CholeskyQR2 (no checks) through torch.linalg: far from orthonormal or NaN
    Q = Y
    for _ in range(2):
        L = torch.linalg.cholesky_ex(Q.mT @ Q).L
        Q = torch.linalg.solve_triangular(L, Q.mT, upper=False).mT
    assert not (_orth_err(Q) <= rtol("orth", dtype, 32))
    with pytest.warns(NumericalWarning, match="Householder"):
        Qc = sl.orthonormalize(Y, method="cholqr2")
    assert _orth_err(Qc) <= rtol("orth", dtype, 32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Qa = sl.orthonormalize(Y)
    assert _orth_err(Qa) <= rtol("orth", dtype, 32)
    assert _range_residual(Qa, Y) <= rtol("orth", dtype, 32)


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype", DTYPES)
def test_batched_mixed_conditioning(device, dtype, gen, auto_path):
    """One batch: well-conditioned, beyond 1/u, rank-deficient, zero, tiny and huge scale;
    the fallback is per element (the good ones equal the CholeskyQR2-only result)."""
    g = gen(3)
    m, k = 200, 12
    u = _u(dtype)
    Y = _with_cond((6,), m, k, 10.0, g, torch.float64)
    Y[1] = _with_cond((), m, k, 1e3 / u, g, torch.float64)
    Y[2] = torch.randn(m, 5, dtype=torch.float64, generator=g) @ torch.randn(5, k, dtype=torch.float64, generator=g)
    Y[3] = 0.0
    scale = 1e-30 if dtype == torch.float32 else 1e-200
    Y[4] = Y[4] * scale
    Y[5] = Y[5] / scale
    Y = Y.to(dtype=dtype, device=device)
    Q = sl.orthonormalize(Y)
    assert bool(torch.isfinite(Q).all())
    tol = rtol("orth", dtype, k)
    for b in range(6):
        assert _orth_err(Q[b]) <= tol, b
        if b != 3:
            assert _range_residual(Q[b], Y[b]) <= tol, b
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NumericalWarning)
        Q0 = sl.orthonormalize(Y[:1], method="cholqr2")
    # (batches of >= 4 use the interleaved CPU kernels: equal to roundoff, not bitwise)
    torch.testing.assert_close(Q[0], Q0[0], rtol=0, atol=rtol("orth", dtype, k))
    # a zero block gets the leading columns of the identity
    torch.testing.assert_close(Q[3].cpu(), torch.eye(m, k, dtype=dtype), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_rank_deficient_span_contains_range(dtype, gen, auto_path):
    g = gen(4)
    m, k, r = 120, 20, 7
    Y = (torch.randn(3, m, r, dtype=torch.float64, generator=g) @ torch.randn(3, r, k, dtype=torch.float64, generator=g))
    Y[1, :, 5:9] = 0.0
    Y = Y.to(dtype)
    for method in ("auto", "householder"):
        Q = sl.orthonormalize(Y, method=method)
        assert _orth_err(Q) <= rtol("orth", dtype, k)
        assert _range_residual(Q, Y) <= rtol("orth", dtype, k)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_input_computed_in_float32(dtype, gen):
    Y = torch.randn(2, 256, 16, generator=gen(5)).to(dtype)
    Q = sl.orthonormalize(Y)
    assert Q.dtype == torch.float32
    assert _orth_err(Q) <= rtol("orth", torch.float32, 16)
    assert _range_residual(Q, Y.float()) <= rtol("orth", torch.float32, 16)


def test_shapes_square_empty_and_leading_dims(gen):
    Y = torch.randn(2, 3, 40, 40, dtype=torch.float64, generator=gen(6))
    Q = sl.orthonormalize(Y)
    assert Q.shape == Y.shape and _orth_err(Q.reshape(6, 40, 40)) <= rtol("orth", torch.float64, 40)
    assert sl.orthonormalize(torch.zeros(5, 0)).shape == (5, 0)
    assert sl.orthonormalize(torch.zeros(0, 7, 3)).shape == (0, 7, 3)
    Yt = torch.randn(3, 50, dtype=torch.float64, generator=gen(7)).mT  # non-contiguous view
    assert _orth_err(sl.orthonormalize(Yt)) <= rtol("orth", torch.float64, 3)


def test_k_beyond_native_limit(gen):
    Y = torch.randn(560, 520, dtype=torch.float64, generator=gen(8))
    Q = sl.orthonormalize(Y)
    assert _orth_err(Q) <= rtol("orth", torch.float64, 520)
    assert _range_residual(Q, Y) <= rtol("orth", torch.float64, 520)


def test_sync_free_cholqr2_flags(gen):
    from subspace_linalg.orth import cholqr2

    Y = _with_cond((3,), 300, 10, 10.0, gen(10), torch.float64)
    Y[1] = 0.0
    Q, ok = cholqr2(Y)
    assert ok.tolist() == [True, False, True]
    assert bool(torch.isfinite(Q).all())
    assert _orth_err(Q[[0, 2]]) <= rtol("orth", torch.float64, 10)
    torch.testing.assert_close(Q[[0, 2]], sl.orthonormalize(Y[[0, 2]]), rtol=0, atol=rtol("orth", torch.float64, 10))


def test_bad_input():
    with pytest.raises(ValueError, match="orthonormalize: Y must be tall"):
        sl.orthonormalize(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="at least 2 dims"):
        sl.orthonormalize(torch.zeros(5))
    with pytest.raises(TypeError, match="Y must have dtype"):
        sl.orthonormalize(torch.zeros(5, 2, dtype=torch.int32))
    with pytest.raises(TypeError, match="Y must be a torch.Tensor"):
        sl.orthonormalize(np.zeros((5, 2)))
    with pytest.raises(ValueError, match="method must be one of"):
        sl.orthonormalize(torch.zeros(5, 2), method="qr")
    Y = torch.randn(6, 2)
    Y[1, 1] = float("nan")
    with pytest.raises(ValueError, match="Y has 1 non-finite"):
        sl.orthonormalize(Y)


def test_compile_fullgraph_cholqr_pass(gen):
    """One CholeskyQR pass written with the ops traces into one graph."""
    ops = torch.ops.subspace_linalg

    def cholqr(Y):
        L, info = ops.cholesky_small(Y.mT @ Y)
        X, info2 = ops.tril_inverse_small(L)
        return Y @ X.mT, info + info2

    Y = torch.randn(4, 64, 8, dtype=torch.float64, generator=gen(9))
    Q, info = torch.compile(cholqr, fullgraph=True)(Y)
    Qe, _ = cholqr(Y)
    assert int(info.abs().sum()) == 0
    torch.testing.assert_close(Q, Qe)
    assert _orth_err(Q) <= rtol("orth", torch.float64, 8) * 1e2  # one pass: kappa^2 u


@pytest.mark.parametrize("dtype", DTYPES)
def test_tall_block_orthonormal_whatever_the_blas_summation_order(dtype, gen):
    """16384 x 256: the Gram's inner dimension is long; formed as one GEMM, MKL's dgemm on
    an AMD EPYC left ||Q^T Q - I||_F = 5.0e-14 in float64, above 10 sqrt(k) eps = 3.6e-14
    (Householder QR: 4.9e-15); the blocked Gram keeps it at Householder's level."""
    Y = _with_cond((), 16384, 256, 1e2, gen(), dtype)
    Q = sl.orthonormalize(Y)
    assert _orth_err(Q) <= rtol("orth", dtype, 256)
    assert _range_residual(Q, Y) <= rtol("orth", dtype, 256)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m,k", [(300, 130), (5000, 150), (2000, 127)])
def test_gram_from_its_lower_half_matches_float64(m, k, dtype, gen):
    """One matrix with k >= 128: the Gram from three quarters of the products (and row
    blocks beyond 4096 rows) matches the float64 Gram; its off-diagonal blocks are
    exact transposes."""
    from subspace_linalg.orth import _gram

    Y = torch.randn(m, k, dtype=dtype, generator=gen(m + k))
    G = _gram(Y)
    h = 80 if k >= 128 else k
    assert torch.equal(G[:h, h:], G[h:, :h].mT)
    want = _inner(Y, Y)
    err = float((G.double() - want).abs().max() / want.abs().max())
    assert err <= 10 * math.sqrt(m) * torch.finfo(dtype).eps


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [100, 300])
def test_lapack_cholesky_with_native_inverse_flags_each_failure(k, dtype, gen):
    """One matrix on the CPU: k = 100, LAPACK's Cholesky and the native triangular inverse;
    k = 300, both native (see orth._cpu_lapack_better). An indefinite or non-finite Gram
    gives ok False and X = L = 0, a good one X = L^{-1}."""
    from subspace_linalg.orth import _chol_inv

    Y = torch.randn(2 * k, k, dtype=dtype, generator=gen(k))
    good = Y.mT @ Y
    for G, want in ((good, True), (-good, False), (good.clone().index_put_((torch.tensor([k - 1]), torch.tensor([0])), torch.tensor(float("nan"), dtype=dtype)), False)):
        X, L, ok = _chol_inv(G.unsqueeze(0))
        assert ok.tolist() == [want]
        if want:
            eye = torch.eye(k, dtype=torch.float64)
            assert float((X[0].double() @ L[0].double() - eye).abs().max()) <= 1e3 * k * torch.finfo(dtype).eps * 1e2
            torch.testing.assert_close(L[0] @ L[0].mT, G, rtol=1e3 * torch.finfo(dtype).eps, atol=1e3 * torch.finfo(dtype).eps * float(G.abs().max()))
        else:
            assert not bool(X.any()) and not bool(L.any())
