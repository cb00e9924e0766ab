"""The fused CholeskyQR panel op (subspace_linalg::cholqr_panel) against float64 NumPy,
through invariants, and its failure codes, contracts and routing."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import subspace_linalg as sl
from subspace_linalg import orth
from subspace_linalg.reference import cholqr_panel as ref

from _tolerances import rtol
from conftest import devices

OP = torch.ops.subspace_linalg.cholqr_panel.default
DTYPES = [torch.float32, torch.float64]
GATE = 0.5


def _cond_max(dtype):
    return 1.0 / math.sqrt(torch.finfo(dtype).eps / 2)


def _panels(B, m, k, dtype, g, cond=100.0, layout="col"):
    """(B, m, k) with singular values logspaced in [1/cond, 1] (float64 build, then cast), in
    the given layout: 'col' column-major, 'row' row-major, 'slice' column-major rows of a
    taller block (column stride > m)."""
    U, _ = torch.linalg.qr(torch.randn(B, m + 5, k, dtype=torch.float64, generator=g))
    V, _ = torch.linalg.qr(torch.randn(B, k, k, dtype=torch.float64, generator=g))
    s = torch.logspace(0, -math.log10(cond), k, dtype=torch.float64)
    Y = ((U * s) @ V.mT).to(dtype)  # (B, m + 5, k)
    if layout == "slice":
        return Y.mT.contiguous().mT[:, 2:m + 2, :]
    Y = Y[:, :m, :]
    return Y.contiguous() if layout == "row" else Y.mT.contiguous().mT


def _fro(x):
    return torch.linalg.matrix_norm(x.double().cpu())


def _basis(Q, X, mode):
    return Q @ X.mT if mode == 1 else Q


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", [0, 1, 2])
@pytest.mark.parametrize("shape,layout", [((1, 7, 3), "col"), ((3, 100, 7), "row"), ((2, 300, 42), "col"),
                                          ((4, 1030, 64), "slice"), ((1, 5000, 17), "col"), ((2, 260, 130), "col"),
                                          # from 128 columns the packed Gram kernel (AVX-512): a row split
                                          # of one panel, odd rows and columns, a column stride > m
                                          ((1, 2051, 131), "slice"), ((1, 700, 257), "col"),
                                          # the packed product (from 64 columns) and Gram (from 80):
                                          # rows that end in a partial strip, a batch over the threads
                                          ((3, 997, 97), "slice"), ((1, 4099, 81), "col")])
def test_matches_numpy_qr(device, dtype, mode, shape, layout, gen):
    B, m, k = shape
    Y = _panels(B, m, k, dtype, gen(m * k + mode), layout=layout).to(device)
    Q, L, X, info = OP(Y, mode, _cond_max(dtype), GATE)
    assert Q.shape == Y.shape and L.shape == X.shape == (B, k, k) and info.shape == (B,)
    assert Q.mT.is_contiguous() and L.is_contiguous() and info.dtype == torch.int32
    assert bool((info == 0).all())
    assert torch.equal(L, L.tril()) and torch.equal(X, X.tril())
    eye = torch.eye(k, dtype=torch.float64)
    tol = rtol("orth", dtype, k)
    Qb = _basis(Q, X, mode).double().cpu()
    Yd = Y.double().cpu()
    # backward error of the factorization and X = inverse of its factor
    assert float((_fro(Qb @ L.double().cpu().mT - Yd) / _fro(Yd)).max()) <= tol
    inv_of = L if mode == 0 else None
    if inv_of is not None:
        assert float(_fro(X.double().cpu() @ inv_of.double().cpu() - eye).max()) <= tol * 100  # cond(L) = cond(Y) = 100
    if mode:  # CholeskyQR2: orthonormal to O(sqrt(k) u), R = L^T equal to NumPy's QR factor up to cond * tol
        assert float(_fro(Qb.mT @ Qb - eye).max()) <= tol
        R = np.linalg.qr(Yd.numpy())[1]
        R = R * np.sign(np.diagonal(R, axis1=-2, axis2=-1))[..., :, None]
        err = np.linalg.norm(L.double().cpu().numpy().swapaxes(-1, -2) - R, axis=(-2, -1)) / np.linalg.norm(R, axis=(-2, -1))
        assert float(err.max()) <= tol * 100
    else:  # one pass: orthonormal to O(cond^2 u)
        assert float(_fro(Qb.mT @ Qb - eye).max()) <= tol * 100 ** 2
    # the pure-torch reference agrees
    Qr, Lr, Xr, infor = ref.cholqr_panel(Y, mode, _cond_max(dtype), GATE)
    assert torch.equal(infor, info)
    assert float((_fro(Q - Qr) / _fro(Qr)).max()) <= tol * 100 ** 2


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", [0, 1, 2])
def test_failure_codes_and_zero_outputs(device, dtype, mode, gen):
    B, m, k = 6, 200, 12
    Y = _panels(B, m, k, dtype, gen(5)).clone()
    Y[1] = 0.0                                   # zero panel: breakdown
    Y[2, 17, 3] = float("nan")                   # non-finite
    Y[3, :, 5] = Y[3, :, 2]                      # rank-deficient
    Y[4] = _panels(1, m, k, dtype, gen(6), cond=1e7 if dtype == torch.float32 else 1e15)[0]  # beyond u^{-1/2}
    Y = Y.to(device)
    Q, L, X, info = OP(Y, mode, _cond_max(dtype), GATE)
    assert info.tolist() == [0, 1, 1, 1, 1, 0]
    for t in (Q, L, X):
        assert bool(torch.isfinite(t).all())
        assert float(t[1:5].abs().max()) == 0.0
    # the accepted elements are those of a run without the failing ones (up to rounding: a
    # batch of >= 4 runs the interleaved Cholesky, whose inner products sum in another order;
    # one pass amplifies that by cond^2, two by cond)
    good = OP(Y[[0, 5]], mode, _cond_max(dtype), GATE)
    assert torch.equal(good[3], info[[0, 5]])
    tol = rtol("orth", dtype, k) * (100 ** 2 if mode == 0 else 100)
    assert float((_fro(good[0] - Q[[0, 5]]) / _fro(good[0])).max()) <= tol


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("mode", [0, 1, 2])
def test_failed_panel_split_over_rows(device, mode, gen):
    """A failing element is left out of the later phases: with fewer panels than threads
    (each panel's rows split), from 128 columns (the packed Gram kernel), next to a good
    panel, which comes out as in a run of its own."""
    m, k = 2100, 130
    Y = _panels(2, m, k, torch.float32, gen(12)).clone()
    Y[0, :, 7] = 0.0                             # a zero column: breakdown
    Y = Y.to(device)
    Q, L, X, info = OP(Y, mode, _cond_max(torch.float32), GATE)
    assert info.tolist() == [1, 0]
    assert all(float(t[0].abs().max()) == 0.0 and bool(torch.isfinite(t).all()) for t in (Q, L, X))
    solo = OP(Y[1:].contiguous().mT.contiguous().mT, mode, _cond_max(torch.float32), GATE)
    tol = rtol("orth", torch.float32, k) * (100 ** 2 if mode == 0 else 100)
    assert int(solo[3]) == 0 and float(_fro(solo[0][0] - Q[1]) / _fro(solo[0][0])) <= tol


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("mode", [1, 2])
def test_second_pass_gate(device, mode, gen):
    # a gate of 0 rejects every second pass (||G2 - I|| > 0 in floating point): code 2
    Y = _panels(3, 150, 9, torch.float64, gen(8)).to(device)
    _, _, _, info = OP(Y, mode, _cond_max(torch.float64), 0.0)
    assert info.tolist() == [2, 2, 2]
    _, _, _, info0 = OP(Y, 0, _cond_max(torch.float64), 0.0)  # one pass has no second test
    assert info0.tolist() == [0, 0, 0]


def test_bad_input():
    with pytest.raises(RuntimeError, match="cholqr_panel: Y must be"):
        OP(torch.randn(10, 3), 0, 1e3, 0.5)
    with pytest.raises(RuntimeError, match="m >= k"):
        OP(torch.randn(2, 3, 5), 0, 1e3, 0.5)
    with pytest.raises(RuntimeError, match="mode must be"):
        OP(torch.randn(2, 8, 3), 3, 1e3, 0.5)
    with pytest.raises(RuntimeError, match="float32 or float64"):
        OP(torch.randn(2, 8, 3, dtype=torch.bfloat16), 0, 1e3, 0.5)


def test_empty():
    Q, L, X, info = OP(torch.empty(0, 8, 3), 1, 1e3, 0.5)
    assert Q.shape == (0, 8, 3) and info.shape == (0,)
    Q, L, X, info = OP(torch.empty(2, 8, 0), 2, 1e3, 0.5)
    assert Q.shape == (2, 8, 0) and L.shape == (2, 0, 0) and info.tolist() == [0, 0]


@pytest.mark.parametrize("device", devices())
def test_opcheck(device, gen):
    Y = _panels(2, 40, 5, torch.float64, gen(9)).to(device)
    for mode in (0, 1, 2):
        torch.library.opcheck(OP, (Y, mode, _cond_max(torch.float64), GATE))
    torch.library.opcheck(OP, (Y.contiguous().float(), 1, _cond_max(torch.float32), GATE))


def test_compile_fullgraph(gen):
    Y = _panels(3, 64, 6, torch.float32, gen(10))

    def f(Y):
        Q, L, X, info = OP(Y, 1, _cond_max(torch.float32), GATE)
        return Q @ X.mT, L.mT, info == 0

    got = torch.compile(f, fullgraph=True, backend="aot_eager")(Y)
    want = f(Y)
    assert all(torch.equal(a, b) for a, b in zip(got, want))


def test_routing_and_composite_agree(gen, monkeypatch):
    """The drivers' CholeskyQR entries take the fused op on the CPU (k <= 512 in any layout
    with the AVX-512 or AVX2 kernels; else k <= 288, above 128 columns only column-major blocks) and
    agree with the composite path (torch GEMMs and small kernels) they replace."""
    Y = _panels(4, 512, 42, torch.float32, gen(11))
    assert orth._panel_better(Y) and not orth._panel_better(Y.clone().requires_grad_())
    wide = torch.randn(2, 200, 300).mT
    assert orth._panel_better(wide)
    assert orth._panel_better(torch.randn(2, 300, 289).mT.contiguous().mT) == orth._wide_panels()
    assert not orth._panel_better(torch.randn(1, 600, 513).mT.contiguous().mT)
    assert orth._panel_better(wide.contiguous()) == orth._wide_panels()
    assert orth._panel_better(torch.randn(1, 600, 400).mT.contiguous().mT) == orth._wide_panels()
    assert orth._wide_panels() == (sl.info()["cpu_kernels_isa"] in ("avx512", "avx2"))
    fused = [orth.cholqr_span(Y), orth.cholqr2(Y), orth.cholqr2_factored(Y)]
    monkeypatch.setattr(orth, "_panel_better", lambda Y: False)
    comp = [orth.cholqr_span(Y), orth.cholqr2(Y), orth.cholqr2_factored(Y)]
    tol = rtol("orth", torch.float32, 42)
    for a, b in zip(fused, comp):
        assert torch.equal(a[-1], b[-1]) and bool(a[-1].all())
        assert float((_fro(a[0] - b[0]) / _fro(b[0])).max()) <= tol * 100
    Qf = fused[2][0] @ fused[2][1]
    assert float(_fro(Qf.mT @ Qf - torch.eye(42)).max()) <= tol
    assert float((_fro(Qf @ fused[2][2] - Y) / _fro(Y)).max()) <= tol
    Q = sl.orthonormalize(Y)  # the public entry, through the fused op
    assert float(_fro(Q.mT @ Q - torch.eye(42)).max()) <= tol


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", [0, 1, 2])
def test_cuda_matches_cpu(dtype, mode, gen):
    Y = _panels(5, 700, 33, dtype, gen(12), layout="slice").clone()
    Y[2] = 0.0
    Qc, Lc, Xc, infoc = OP(Y, mode, _cond_max(dtype), GATE)
    Q, L, X, info = OP(Y.cuda(), mode, _cond_max(dtype), GATE)
    assert torch.equal(info.cpu(), infoc)
    tol = rtol("orth", dtype, 33) * 100
    for a, b in ((Q, Qc), (L, Lc), (X, Xc)):
        assert float((a.cpu() - b).abs().max() / b.abs().max()) <= tol


def test_one_pass_gram_sums_stay_accurate(gen):
    """One float32 pass at kappa = 100 on 16 x 512 x 42: the range residual ||Y - Q Q^T Y||_F
    / ||Y||_F within the bench's 10 sqrt(k) u and ||Q^T Q - I||_F / kappa^2 within sqrt(k)
    u / 2. The packed Gram must split its running sums: one sum over a 256 KiB block of rows
    left the residual at 1.0e-5 (bound 7.7e-6; 5.6e-6 split, AVX2 EPYC)."""
    B, m, k = 16, 512, 42
    kappa = 100.0
    Y = _panels(B, m, k, torch.float32, gen(m + k), cond=kappa)
    Q, _, _, info = OP(Y, 0, _cond_max(torch.float32), GATE)
    assert bool((info == 0).all())
    Qd, Yd = Q.double(), Y.double()
    eps = torch.finfo(torch.float32).eps
    orth_err = float(_fro(Qd.mT @ Qd - torch.eye(k, dtype=torch.float64)).max()) / kappa ** 2
    resid = float((_fro(Yd - Qd @ (Qd.mT @ Yd)) / _fro(Yd)).max())
    assert orth_err <= math.sqrt(k) * eps / 2, orth_err
    assert resid <= 10 * math.sqrt(k) * eps, resid


@pytest.mark.cuda
@pytest.mark.parametrize("mode", [0, 2])
def test_cuda_panel_taller_than_one_grid(mode):
    """More rows than 65535 tiles of 256 (the grid's y limit): the product kernel strides
    over the rest (it used to refuse m > 65535 x 256); Q orthonormal and spanning Y, against
    the CPU."""
    m, k = 65535 * 256 + 777, 3
    g = torch.Generator().manual_seed(5)
    Y = torch.randn(1, k, m, generator=g, dtype=torch.float64).mT  # column-major
    Y = Y * torch.tensor([1.0, 0.1, 0.01], dtype=torch.float64)
    Qc, _, _, infoc = OP(Y, mode, _cond_max(torch.float64), GATE)
    Q, _, _, info = OP(Y.cuda(), mode, _cond_max(torch.float64), GATE)
    assert info.tolist() == infoc.tolist() == [0]
    Q = Q.cpu()
    assert float((Q - Qc).abs().max()) <= 1e-10
    assert float(_fro(Q.mT @ Q - torch.eye(k, dtype=torch.float64)).max()) <= (1e-4 if mode == 0 else 1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", [0, 1, 2])
@pytest.mark.parametrize("shape,pad", [((1, 300, 7), 0), ((3, 997, 20), 3), ((2, 1030, 64), 0), ((1, 2051, 74), 6),
                                       ((1, 700, 97), 0), ((4, 513, 130), 2)])
def test_row_major_panels_read_in_place(dtype, mode, shape, pad, gen):
    """Row-major panels (also with a row stride above k: a column slice of a wider block)
    go to the native kernel as they are where it packs them itself (AVX2 / AVX-512), with
    the results of the column-major copy: bitwise where both layouts take the packed Gram
    and product (from 64 columns on AVX2, 80 on AVX-512), else within the dtype's
    tolerance; the one transposing copy is gone."""
    from subspace_linalg import _native
    from subspace_linalg._ops import cholqr_panel as cp

    B, m, k = shape
    Yc = _panels(B, m, k, dtype, gen(m + k), cond=100.0)
    Yr = torch.empty(B, m, k + pad, dtype=dtype)[..., :k]
    Yr.copy_(Yc)
    assert Yr.stride(-1) == 1 and Yr.stride(-2) == k + pad
    row = cp.kernel(Yr, mode, _cond_max(dtype), GATE)
    col = cp.kernel(Yc, mode, _cond_max(dtype), GATE)
    assert torch.equal(row[3], col[3]) and bool((col[3] == 0).all())
    isa = str(_native.lib().small_dense_cpu_isa())
    packed_both = {"avx2": 64, "avx512": 80}.get(isa)
    if packed_both is not None and k >= packed_both:
        for a, b in zip(row[:3], col[:3]):
            assert torch.equal(a, b)
    tol = rtol("orth", dtype, k) * 100
    for a, b in zip(row[:3], col[:3]):
        assert float((a - b).abs().max() / b.abs().max()) <= tol
    Q = _basis(row[0], row[2], mode)
    assert float(_fro(Q.mT @ Q - torch.eye(k, dtype=dtype)).max()) <= (tol * 1e4 if mode == 0 else tol)


def test_row_major_reaches_the_kernel_untransposed(monkeypatch, gen):
    """Where the CPU kernels take row-major panels, cholqr_panel's kernel no longer makes
    the transposed copy first (it still does on a generic CPU, and for other layouts)."""
    from subspace_linalg._ops import cholqr_panel as cp

    calls = []
    real = cp._transpose.kernel
    monkeypatch.setattr(cp._transpose, "kernel", lambda A: calls.append(A.shape) or real(A))
    Y = _panels(2, 400, 30, torch.float32, gen(3)).contiguous()
    cp.kernel(Y, 2, _cond_max(torch.float32), GATE)
    assert calls == ([] if cp._row_major_ok(Y) else [Y.shape])
    cp.kernel(Y[:, :, ::2], 2, _cond_max(torch.float32), GATE)  # (a column stride 2: copied)
    assert len(calls) == (1 if cp._row_major_ok(Y) else 2)
