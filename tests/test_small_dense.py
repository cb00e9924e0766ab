"""Small dense batched kernels against float64 NumPy/SciPy, through invariants."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

import subspace_linalg as sl
from subspace_linalg import _native
from subspace_linalg._ops import small_dense as ops_mod
from subspace_linalg.errors import NotConvergedWarning

from _tolerances import rtol
from conftest import devices

OPS = torch.ops.subspace_linalg
DTYPES = [torch.float32, torch.float64]


def _spd(b, n, dtype, g, cond=10.0, device="cpu"):
    """SPD matrices with eigenvalues logspaced in [1/cond, 1] (float64 build, then cast)."""
    Q, _ = torch.linalg.qr(torch.randn(*b, n, n, dtype=torch.float64, generator=g))
    w = torch.logspace(0, -np.log10(cond), n, dtype=torch.float64)
    return ((Q * w) @ Q.mT).to(dtype=dtype, device=device)


def _sym(b, n, dtype, g, device="cpu"):
    A = torch.randn(*b, n, n, dtype=torch.float64, generator=g)
    return (A + A.mT).to(dtype=dtype, device=device)


def _fro(x):
    return torch.linalg.matrix_norm(x.double().cpu())


def test_max_n_matches_native():
    assert ops_mod.MAX_N == _native.lib().SMALL_DENSE_MAX_N == sl.small_dense.MAX_N


# ---------------------------------------------------------------- Cholesky
@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [((), 1), ((3,), 5), ((2, 2), 32), ((2,), 130)])
def test_cholesky_matches_numpy(device, dtype, shape, gen):
    b, n = shape
    A = _spd(b, n, dtype, gen(n), device=device)
    L, info = sl.cholesky_small(A)
    assert L.shape == A.shape and info.shape == A.shape[:-2] and info.dtype == torch.int32
    assert bool((info == 0).all())
    assert torch.equal(L, L.tril())
    tol = rtol("small_dense", dtype, n)
    back = _fro(L @ L.mT - A) / _fro(A)
    assert float(back.max()) <= tol
    Lnp = np.linalg.cholesky(A.double().cpu().numpy())
    fwd = np.linalg.norm(L.double().cpu().numpy() - Lnp, axis=(-2, -1)) / np.linalg.norm(Lnp, axis=(-2, -1))
    assert float(np.max(fwd)) <= tol * 10  # cond(A) = 10


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype", DTYPES)
def test_cholesky_breakdown_flag(device, dtype, gen):
    n = 6
    A = _spd((4,), n, dtype, gen(1), device=device).clone()
    A[1, 3, 3] = -1.0  # indefinite: first bad pivot at 3 or before
    A[2] = 0.0  # zero matrix: pivot 0
    A[3, 2, 2] = float("nan")  # NaN: flagged, never propagated
    L, info = OPS.cholesky_small(A)
    ref_info = torch.linalg.cholesky_ex(A[:3].double().cpu()).info
    assert info[0] == 0 and info[2] == 1 and info[3] == 3
    assert int(info[1]) == int(ref_info[1]) > 0
    assert bool(torch.isfinite(L).all())
    for b in range(1, 4):
        j = int(info[b]) - 1
        assert bool((L[b, j:] == 0).all())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, bad", [(40, 37), (300, 170), (300, 16), (130, 0)])
def test_blocked_cholesky_breakdown_keeps_the_rows_above(dtype, n, bad, gen):
    """Few matrices (the blocked one-matrix kernel, 16 columns a block): a breakdown at pivot
    ``bad`` (inside a block, on its first column, at the very first) gives info = bad + 1,
    rows < bad equal to the factor of the leading block (float64 LAPACK), rows >= bad zero;
    a NaN is flagged the same way; a good matrix matches LAPACK."""
    A = _spd((2,), n, dtype, gen(n + bad), cond=100.0).clone()
    good = A[0].clone()
    A[0, bad, bad] = -1e3 * float(A[0].abs().max())  # the Schur complement's pivot goes negative
    A[1, bad, bad] = float("nan")
    L, info = OPS.cholesky_small(A)
    assert info.tolist() == [bad + 1, bad + 1]
    assert bool(torch.isfinite(L).all()) and bool((L[:, bad:] == 0).all())
    tol = rtol("small_dense", dtype, n)
    if bad:
        for b in range(2):
            ref = torch.linalg.cholesky(A[b, :bad, :bad].double())
            assert float(_fro(L[b, :bad, :bad].double() - ref) / _fro(ref)) <= tol * 10
            assert bool((L[b, :bad, bad:] == 0).all())
    L1, info1 = OPS.cholesky_small(good.unsqueeze(0))
    ref = torch.linalg.cholesky(good.double())
    assert int(info1) == 0 and float(_fro(L1[0].double() - ref) / _fro(ref)) <= tol * 10


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch, n", [(16, 42), (8, 40), (12, 64), (40, 26)])
def test_interleaved_groups_against_lapack(dtype, batch, n, gen):
    """The batch-interleaved CPU kernels in both group widths (W lanes, and W / 2 when the
    batch fills at most one group and two threads are there), with a breakdown in the
    middle of a group: Cholesky and the inverse against float64 LAPACK."""
    A = _spd((batch,), n, dtype, gen(batch + n), cond=100.0)
    A[batch // 2, n // 2, n // 2] = -1.0
    L, info = OPS.cholesky_small(A)
    ref = torch.linalg.cholesky_ex(A.double())
    assert torch.equal(info, ref.info.to(torch.int32))
    ok = info == 0
    tol = rtol("small_dense", dtype, n)
    err = _fro(L[ok].double() - ref.L[ok]) / _fro(ref.L[ok])
    assert float(err.max()) <= tol * 10
    X, xinfo = OPS.tril_inverse_small(L[ok])
    assert bool((xinfo == 0).all())
    Xref = torch.linalg.inv(L[ok].double())
    assert float((_fro(X.double() - Xref) / _fro(Xref)).max()) <= tol * 10


# ---------------------------------------------------------------- triangular inverse and solve
@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 9, 64, 200])
def test_tril_inverse_and_solve(device, dtype, n, gen):
    g = gen(n)
    L = sl.cholesky_small(_spd((3,), n, dtype, g, device=device))[0]
    X, info = sl.tril_inverse_small(L)
    assert bool((info == 0).all()) and torch.equal(X, X.tril())
    tol = rtol("small_dense", dtype, n)
    # cond(L) = sqrt(cond(A)) ~ 3.2
    assert float((_fro(X @ L - torch.eye(n, dtype=dtype, device=device))).max()) <= tol * 4
    Y = torch.randn(3, 50, n, dtype=torch.float64, generator=g).to(dtype=dtype, device=device)
    Q = sl.solve_cholesky_right(Y, L)
    # X = Y L^{-T}  <=>  L X^T = Y^T
    ref = np.stack([scipy.linalg.solve_triangular(L[i].double().cpu().numpy().T, Y[i].double().cpu().numpy().T,
                                                  lower=False, trans="T").T for i in range(3)])
    err = np.linalg.norm(Q.double().cpu().numpy() - ref) / np.linalg.norm(ref)
    assert err <= tol * 4


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [127, 128, 131, 300, 512])
def test_tril_inverse_of_one_matrix_split_over_columns(dtype, n, gen):
    """One matrix from n = 128 (CPU): the columns of X split between two threads, four rows
    at a time; against the float64 inverse, exactly lower triangular; a zero pivot flagged."""
    L = sl.cholesky_small(_spd((1,), n, dtype, gen(n), cond=100.0))[0]
    X, info = OPS.tril_inverse_small(L)
    assert int(info) == 0 and torch.equal(X, X.tril())
    ref = torch.linalg.inv(L[0].double())
    assert float(_fro(X[0].double() - ref) / _fro(ref)) <= rtol("small_dense", dtype, n) * 10
    L[0, n - 2, n - 2] = 0.0
    X, info = OPS.tril_inverse_small(L)
    assert int(info) == n - 1 and not bool(X.any())


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("batch", [3, 7])  # per-matrix and batch-interleaved CPU kernels
def test_tril_inverse_zero_diagonal(device, batch):
    L = torch.eye(4, dtype=torch.float64, device=device).repeat(batch, 1, 1)
    L[:, 3, 0] = 2.0
    L[1, 2, 2] = 0.0
    L[-1, 1, 1] = float("inf")
    X, info = OPS.tril_inverse_small(L)
    assert info.tolist() == [0, 3] + [0] * (batch - 3) + [2]
    assert torch.equal(X[0], 2 * torch.eye(4, dtype=torch.float64, device=device) - L[0])
    assert bool((X[1] == 0).all()) and bool((X[-1] == 0).all())
    with pytest.raises(ValueError, match="diagonal"):
        sl.solve_cholesky_right(torch.ones(2, 5, 4, dtype=torch.float64, device=device), L)


# ---------------------------------------------------------------- eigh
@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [((), 1), ((5,), 2), ((3,), 7), ((2, 2), 33), ((2,), 96)])
@pytest.mark.parametrize("method", ["jacobi", "auto"])
def test_eigh_matches_numpy(device, dtype, shape, method, gen):
    b, n = shape
    A = _sym(b, n, dtype, gen(n), device=device)
    w, V = sl.eigh_small(A, method=method)
    assert w.shape == A.shape[:-1] and V.shape == A.shape and w.dtype == dtype
    tol = rtol("small_dense", dtype, n)
    A64 = A.double().cpu()
    w_np = np.linalg.eigvalsh(A64.numpy())
    nA = np.linalg.norm(A64.numpy(), axis=(-2, -1))
    assert float(np.max(np.abs(w.double().cpu().numpy() - w_np).max(-1) / nA)) <= tol
    assert bool((w[..., 1:] >= w[..., :-1]).all())  # ascending
    V64 = V.double().cpu()
    assert float(_fro(V64.mT @ V64 - torch.eye(n, dtype=torch.float64)).max()) <= tol
    res = _fro(A64 @ V64 - V64 * w.double().cpu().unsqueeze(-2)) / _fro(A64)
    assert float(res.max()) <= tol


@pytest.mark.parametrize("dtype", DTYPES)
def test_eigh_degenerate_and_lower_triangle(dtype, gen):
    n = 12
    Q, _ = torch.linalg.qr(torch.randn(n, n, dtype=torch.float64, generator=gen(3)))
    w0 = torch.tensor([-2.0] * 4 + [0.0] * 4 + [3.0] * 4, dtype=torch.float64)
    A = ((Q * w0) @ Q.mT).to(dtype)
    A_upper_garbage = A.tril() + 100.0 * torch.triu(torch.ones(n, n, dtype=dtype), 1)  # upper ignored
    w, V = sl.eigh_small(A_upper_garbage, method="jacobi")
    tol = rtol("small_dense", dtype, n)
    assert float((w.double() - w0).abs().max()) <= tol * 3
    assert float(_fro(V.mT @ V - torch.eye(n, dtype=dtype))) <= tol
    w, V = sl.eigh_small(torch.zeros(2, n, n, dtype=dtype), method="jacobi")
    assert bool((w == 0).all()) and float(_fro(V.mT @ V - torch.eye(n, dtype=dtype)).max()) <= tol


@pytest.mark.parametrize("batch", [2, 5])  # per-matrix and batch-interleaved CPU kernels
def test_eigh_not_converged_warns(batch, gen):
    A = _sym((batch,), 40, torch.float64, gen(4))
    with pytest.warns(NotConvergedWarning, match="max_sweeps=1"):
        sl.eigh_small(A, method="jacobi", max_sweeps=1)


# ---------------------------------------------------------------- svd
@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [((), 1, 1), ((4,), 8, 8), ((3,), 40, 12), ((2,), 12, 40), ((2, 2), 64, 64),
                                   ((), 300, 100),
                                   # batch-interleaved CPU kernel (batch >= 16 float32 / 8 float64 lanes), with
                                   # a partly filled last group
                                   ((17,), 20, 20), ((9,), 24, 10),
                                   # at most one full group: two half-width groups on two threads
                                   ((12,), 42, 42), ((6,), 42, 42),
                                   ((40,), 24, 24)])  # "auto" takes Jacobi on the CPU here
@pytest.mark.parametrize("method", ["jacobi", "auto"])
def test_svd_matches_numpy(device, dtype, shape, method, gen):
    b, m, n = shape
    A = torch.randn(*b, m, n, dtype=torch.float64, generator=gen(m * n)).to(dtype=dtype, device=device)
    U, S, Vh = sl.svd_small(A, method=method)
    r = min(m, n)
    assert U.shape == A.shape[:-2] + (m, r) and S.shape == A.shape[:-2] + (r,) and Vh.shape == A.shape[:-2] + (r, n)
    tol = rtol("small_dense", dtype, max(m, n))
    A64 = A.double().cpu()
    S_np = np.linalg.svd(A64.numpy(), compute_uv=False)
    assert float(np.max(np.abs(S.double().cpu().numpy() - S_np).max(-1) / S_np[..., 0])) <= tol
    assert bool((S[..., 1:] <= S[..., :-1]).all())
    U64, V64 = U.double().cpu(), Vh.double().cpu().mT
    eye = torch.eye(r, dtype=torch.float64)
    assert float(_fro(U64.mT @ U64 - eye).max()) <= tol
    assert float(_fro(V64.mT @ V64 - eye).max()) <= tol
    rec = _fro((U64 * S.double().cpu().unsqueeze(-2)) @ V64.mT - A64) / _fro(A64)
    assert float(rec.max()) <= tol


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch", [2, 17])  # per-matrix and batch-interleaved CPU kernels
def test_svd_rank_deficient_and_zero(dtype, batch, gen):
    g = gen(5)
    m, n, r = 30, 10, 4
    A = (torch.randn(batch, m, r, dtype=torch.float64, generator=g) @ torch.randn(batch, r, n, dtype=torch.float64, generator=g))
    A = torch.cat([A, torch.zeros(1, m, n, dtype=torch.float64)]).to(dtype)
    A[0, :, 3] = 0.0  # an exactly zero column too
    U, S, Vh = sl.svd_small(A, method="jacobi")
    tol = rtol("small_dense", dtype, m)
    eye = torch.eye(n, dtype=torch.float64)
    assert bool(torch.isfinite(U).all() and torch.isfinite(S).all() and torch.isfinite(Vh).all())
    assert float(_fro(U.double().mT @ U.double() - eye).max()) <= tol
    assert float(_fro(Vh.double() @ Vh.double().mT - eye).max()) <= tol
    assert float(S[-1].abs().max()) == 0.0
    rec = _fro((U.double() * S.double().unsqueeze(-2)) @ Vh.double() - A.double())
    assert float(rec.max()) <= tol * float(_fro(A.double()).max())


def test_svd_low_precision_input_returns_float32(gen):
    A = torch.randn(3, 20, 6, generator=gen(6)).to(torch.bfloat16)
    U, S, Vh = sl.svd_small(A, method="jacobi")
    assert U.dtype == S.dtype == Vh.dtype == torch.float32
    S_np = np.linalg.svd(A.double().numpy(), compute_uv=False)
    assert np.max(np.abs(S.double().numpy() - S_np) / S_np[..., :1]) <= rtol("small_dense", torch.float32, 20)


def test_auto_takes_jacobi_on_the_cpu_for_large_batches_of_small_matrices(gen):
    """The measured CPU rule of "auto": the native Jacobi kernels for many small matrices
    (the same result as method="jacobi", bitwise), LAPACK for few or larger ones."""
    from subspace_linalg import small_dense as sd

    A = torch.randn(64, 24, 24, generator=gen(21))
    S = A + A.mT
    assert sd._cpu_jacobi_better("svd", A) and sd._cpu_jacobi_better("eigh", S)
    for got, want in zip(sl.svd_small(A), sl.svd_small(A, method="jacobi")):
        assert torch.equal(got, want)
    for got, want in zip(sl.eigh_small(S), sl.eigh_small(S, method="jacobi")):
        assert torch.equal(got, want)
    assert not sd._cpu_jacobi_better("svd", A[:8]) and not sd._cpu_jacobi_better("svd", torch.randn(64, 80, 80))
    assert not sd._cpu_jacobi_better("svd", torch.randn(64, 40, 24))  # rectangular: QR first
    assert not sd._cpu_jacobi_better("eigh", S.double())


def test_cuda_rule_keeps_few_large_matrices_off_the_one_block_kernels():
    """The CUDA rule of "auto" (a shape rule, checked here on CPU tensors): Jacobi for
    n <= 32 or batches of 64 and more; cuSOLVER for a few larger matrices, such as the
    single 266 x 266 R of an rsvd at rank 256, which one block per matrix would leave to
    one multiprocessor. The native CUDA Cholesky follows the same thresholds."""
    from subspace_linalg import small_dense as sd
    from subspace_linalg._ops import small_dense as ops_sd

    assert not sd._cuda_jacobi_better(torch.empty(266, 266))
    assert not sd._cuda_jacobi_better(torch.empty(16, 42, 42))
    assert not sd._cuda_jacobi_better(torch.empty(8, 600, 40))
    assert sd._cuda_jacobi_better(torch.empty(16, 32, 32)) and sd._cuda_jacobi_better(torch.empty(3, 500, 20))
    assert sd._cuda_jacobi_better(torch.empty(64, 128, 128))
    assert not ops_sd._cuda_library_better(torch.empty(266, 266))  # a CPU tensor: never the library route


# ---------------------------------------------------------------- bad input
def test_bad_input():
    with pytest.raises(TypeError, match="A must have dtype"):
        sl.eigh_small(torch.ones(3, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="at least 2 dims"):
        sl.svd_small(torch.ones(3))
    with pytest.raises(ValueError, match="square"):
        sl.cholesky_small(torch.ones(3, 4))
    with pytest.raises(ValueError, match="n must be <= 512"):
        sl.eigh_small(torch.zeros(513, 513))
    with pytest.raises(ValueError, match="non-finite"):
        sl.svd_small(torch.tensor([[1.0, float("inf")]]))
    with pytest.raises(ValueError, match="method must be one of"):
        sl.svd_small(torch.eye(3), method="lapack")
    with pytest.raises(ValueError, match="max_sweeps must be >= 1"):
        sl.eigh_small(torch.eye(3), max_sweeps=0)


# ---------------------------------------------------------------- op contracts
@pytest.mark.parametrize("device", devices())
def test_opcheck(device, gen):
    g = gen(7)
    A = _spd((2,), 5, torch.float64, g, device=device)
    torch.library.opcheck(OPS.cholesky_small.default, (A,))
    L = torch.linalg.cholesky(A)
    torch.library.opcheck(OPS.tril_inverse_small.default, (L,))
    torch.library.opcheck(OPS.eigh_jacobi.default, (A, 30))
    B = torch.randn(2, 7, 4, dtype=torch.float32, generator=g).to(device)
    torch.library.opcheck(OPS.svd_jacobi.default, (B, 30))


@pytest.mark.cuda
def test_cuda_native_kernels_many_matrices(gen):
    """batch >= 64 keeps the native CUDA Cholesky / inverse for n > 32 (fewer, larger
    matrices go to cuSOLVER through the reference); compare with the CPU kernels."""
    A = _spd((64,), 100, torch.float64, gen(11))
    A[5, 50, 50] = -1.0
    L, info = OPS.cholesky_small(A.cuda())
    Lc, infoc = OPS.cholesky_small(A)
    assert torch.equal(info.cpu(), infoc)
    ok = infoc == 0
    tol = rtol("small_dense", torch.float64, 100)
    assert float((L.cpu()[ok] - Lc[ok]).abs().max()) <= tol
    X, xinfo = OPS.tril_inverse_small(Lc.cuda())  # all 64 (the failed one has zero rows: info > 0)
    Xc, xinfoc = OPS.tril_inverse_small(Lc)
    assert torch.equal(xinfo.cpu(), xinfoc) and int(xinfoc[5]) > 0
    assert float((X.cpu() - Xc).abs().max() / Xc.abs().max()) <= tol


@pytest.mark.parametrize("device", devices())
def test_raw_ops_batches_of_empty_matrices(device):
    """A batch of n = 0 matrices (or m x 0 for the SVD): empty outputs and info 0, as the
    reference (the native launchers return before writing info there; the batch is counted,
    not inferred from zero elements); the public functions too."""
    from subspace_linalg.reference import small_dense as ref

    ops = torch.ops.subspace_linalg
    cases = [("cholesky_small", (3, 0, 0), ()), ("tril_inverse_small", (3, 0, 0), ()),
             ("eigh_jacobi", (3, 0, 0), (10,)), ("svd_jacobi", (3, 4, 0), (10,)), ("svd_jacobi", (2, 3, 0, 0), (10,))]
    for name, shape, extra in cases:
        A = torch.zeros(shape, device=device)
        got, want = getattr(ops, name)(A, *extra), getattr(ref, name)(A.cpu(), *extra)
        assert [t.shape for t in got] == [t.shape for t in want], name
        assert torch.equal(got[-1].cpu(), want[-1]) and not bool(got[-1].any()), name
    L, info = sl.cholesky_small(torch.zeros(3, 0, 0, device=device))
    assert L.shape == (3, 0, 0) and info.tolist() == [0, 0, 0]
