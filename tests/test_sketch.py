"""Sketches: counter-based RNG, JL scaling, subspace embedding, reproducibility."""
from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest
import torch

import subspace_linalg as sl
from subspace_linalg.reference import sketch as ref
from _tolerances import rtol
from conftest import devices
from _subproc import run_python

KINDS = ["gaussian", "rademacher", "sparse_sign", "srht"]


def _rand(shape, dtype=torch.float64, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64).to(dtype=dtype, device=device)


def test_philox_known_answers():
    # Random123 kat_vectors, philox4x32-10
    assert [int(v) for v in ref.philox(0, 0, 0, 0, 0)] == [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]
    key = (0x299F31D0 << 32) | 0xA4093822
    out = ref.philox(key, 0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344)
    assert [int(v) for v in out] == [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1]


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("kind", [0, 1, 2])
def test_native_random_fill_matches_reference(device, kind):
    out = torch.empty(7, 300, dtype=torch.float64, device=device)
    torch.ops.subspace_linalg.random_fill_.default(out, kind, 2 ** 61 + 12345, 9, 1.0)
    expect = torch.from_numpy(ref.rand_matrix(kind, 2 ** 61 + 12345, 9, 7, 300))
    assert torch.allclose(out.cpu(), expect, rtol=rtol("transform", torch.float64), atol=0)
    codes = torch.empty(30, 8, dtype=torch.int32, device=device)
    torch.ops.subspace_linalg.sparse_sign_table_.default(codes, 20, 77, 3)
    assert torch.equal(codes.cpu(), ref.sparse_sign_table(30, 20, 8, 77, 3))


@pytest.mark.parametrize("shape", [(1, 1), (3, 2), (5, 33), (2, 64), (70, 31), (4, 4099)])
@pytest.mark.parametrize("layout", ["row", "col"])
def test_gaussian_fill_blocks_match_reference(shape, layout):
    """The CPU Gaussian fill (blocks of 16 pairs, polynomial log / sin / cos) against the
    libm formula of the reference, float64 and float32 (the float64 value rounded), at
    widths that end a block part way, in either memory layout."""
    R, C = shape
    seed, tag = 2 ** 62 - 977, 41
    expect = torch.from_numpy(ref.rand_matrix(0, seed, tag, R, C)) * 0.5
    for dtype in (torch.float64, torch.float32):
        out = torch.empty(R, C, dtype=dtype) if layout == "row" else torch.empty(C, R, dtype=dtype).mT
        torch.ops.subspace_linalg.random_fill_.default(out, 0, seed, tag, 0.5)
        assert torch.allclose(out.double(), expect.to(dtype).double(), rtol=rtol("transform", dtype), atol=0)


def test_gaussian_fill_moments():
    """2^20 entries: mean, variance, the 3-sigma tail and the sign balance of N(0, 1)."""
    out = torch.empty(1024, 1024, dtype=torch.float64)
    torch.ops.subspace_linalg.random_fill_.default(out, 0, 123456789, 5, 1.0)
    N = out.numel()
    assert abs(float(out.mean())) <= 5 / N ** 0.5
    assert abs(float(out.var()) - 1.0) <= 5 * (2 / N) ** 0.5
    tail = float((out.abs() > 3).double().mean())
    assert abs(tail - 0.0026998) <= 5 * (0.0027 / N) ** 0.5
    assert abs(float((out > 0).double().mean()) - 0.5) <= 5 * (0.25 / N) ** 0.5
    # even and odd columns (the cos and sin of one pair) uncorrelated
    assert abs(float((out[:, 0::2] * out[:, 1::2]).mean())) <= 5 / (N / 2) ** 0.5


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("m", [11, 40])  # (sparse sign CPU kernel: tiles of 16 rows) a part tile; 2 tiles + a part
def test_sketch_equals_explicit_omega_both_sides(kind, dtype, m):
    n, s = 37, 16
    op = sl.SketchOperator(n, s, kind=kind, seed=424242)
    Om = op.matrix(dtype=torch.float64)
    assert Om.shape == (n, s)
    A = _rand((2, m, n), dtype, seed=1)
    tol = rtol("transform", dtype, n)
    right = op(A)
    ref_r = A.double() @ Om
    assert float((right.double() - ref_r).norm() / ref_r.norm()) <= tol
    B = _rand((2, n, m), dtype, seed=2)
    left = op(B, side="left")
    ref_l = Om.mT @ B.double()
    assert left.shape == (2, s, m)
    assert float((left.double() - ref_l).norm() / ref_l.norm()) <= tol


@pytest.mark.parametrize("n", [1, 37, 64, 1000])
def test_srht_against_formula(n):
    la = pytest.importorskip("scipy.linalg")
    s = min(24, n)
    op = sl.SketchOperator(n, s, kind="srht", seed=77)
    signs, rows, N = op._srht(torch.float64, torch.device("cpu"))
    assert N == 1 << max(0, (n - 1).bit_length())
    assert torch.allclose(signs.abs(), torch.full_like(signs, s ** -0.5)) and bool((rows[1:] > rows[:-1]).all())
    H = torch.from_numpy(la.hadamard(N)).double()
    Om = signs[:, None] * H[rows][:, :n].T  # Omega = D H_N[:n, rows] / sqrt(s)
    A = _rand((5, n), seed=n)
    tol = rtol("transform", torch.float64, N)
    assert float((op(A) - A @ Om).norm() / (A @ Om).norm()) <= tol
    B = _rand((n, 6), seed=n + 1)
    assert float((op(B, side="left") - Om.T @ B).norm() / (Om.T @ B).norm()) <= tol


def test_sparse_sign_structure():
    op = sl.SketchOperator(50, 12, kind="sparse_sign", seed=5)
    Om = op.matrix()
    nnz = (Om != 0).sum(1)
    assert bool((nnz == 8).all())
    assert torch.allclose(Om[Om != 0].abs(), torch.full_like(Om[Om != 0], 8 ** -0.5))
    small = sl.SketchOperator(50, 3, kind="sparse_sign", seed=5).matrix()
    assert bool(((small != 0).sum(1) == 3).all())  # zeta capped at size


@pytest.mark.parametrize("kind", KINDS)
def test_jl_scaling_expectation(kind):
    n, s, trials = 48, 8, 300
    x = _rand((1, n), seed=3)
    g = torch.Generator().manual_seed(11)
    ratios = torch.tensor([float(sl.sketch(x, s, kind=kind, generator=g).pow(2).sum()) for _ in range(trials)])
    ratios /= float(x.pow(2).sum())
    mean, se = float(ratios.mean()), float(ratios.std()) / trials ** 0.5
    assert abs(mean - 1.0) < 4 * se + 1e-3, (mean, se)


@pytest.mark.parametrize("kind", KINDS)
def test_subspace_embedding(kind):
    n, d = 3000, 20
    Q, _ = torch.linalg.qr(_rand((n, d), seed=4))
    size = 20 * d  # size >= C * cols with C = 20
    SQ = sl.sketch(Q, size, kind=kind, side="left", generator=torch.Generator().manual_seed(21))
    sv = torch.linalg.svdvals(SQ)
    eps = 0.5
    assert float(sv.min()) >= 1 - eps and float(sv.max()) <= 1 + eps, sv
    # a mis-scaled sketch (size / 4 columns read as size) fails the same bound
    assert not (float((sv * 2).max()) <= 1 + eps)


def test_reproducible_and_seed_dependent():
    A = _rand((10, 64), seed=5)
    for kind in KINDS:
        a = sl.sketch(A, 16, kind=kind, generator=torch.Generator().manual_seed(1))
        b = sl.sketch(A, 16, kind=kind, generator=torch.Generator().manual_seed(1))
        c = sl.sketch(A, 16, kind=kind, generator=torch.Generator().manual_seed(2))
        assert torch.equal(a, b) and not torch.equal(a, c)


_THREAD_SCRIPT = r"""
import hashlib, sys, torch
torch.set_num_threads(int(sys.argv[1]))
import subspace_linalg as sl
h = hashlib.sha256()
A = torch.randn(300, 700, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
for kind in ("gaussian", "rademacher", "sparse_sign", "srht"):
    op = sl.SketchOperator(700, 64, kind=kind, seed=987654321)
    h.update(op.matrix().numpy().tobytes())
    h.update(op(A).numpy().tobytes())
    h.update(op(A.T.contiguous(), side="left").numpy().tobytes())
print(sl._native.lib().openmp_max_threads(), h.hexdigest())
"""


def test_identical_omega_across_thread_counts():
    outs = []
    for t in ("1", "2"):
        env = dict(os.environ, OMP_NUM_THREADS=t)
        r = run_python(["-c", _THREAD_SCRIPT, t], env=env, timeout=120)
        assert r.returncode == 0, r.stderr
        outs.append(r.stdout.split())
    assert outs[0][0] == "1" and outs[1][0] == "2"  # the native team really changed size
    assert outs[0][1] == outs[1][1]


@pytest.mark.parametrize("device", [pytest.param("cuda", marks=pytest.mark.cuda)])
@pytest.mark.parametrize("kind", KINDS)
def test_same_omega_cpu_and_cuda(device, kind):
    op = sl.SketchOperator(100, 24, kind=kind, seed=31337)
    a = op.matrix(dtype=torch.float64)
    b = op.matrix(dtype=torch.float64, device=device).cpu()
    assert torch.allclose(a, b, rtol=rtol("transform", torch.float64, 100), atol=rtol("transform", torch.float64, 100))
    A = _rand((3, 50, 100), torch.float32, seed=6)
    ya, yb = op(A), op(A.to(device)).cpu()
    assert float((ya - yb).norm() / ya.norm()) <= rtol("transform", torch.float32, 100)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_sketch(dtype):
    A = _rand((16, 128), dtype, seed=7)
    for kind in KINDS:
        op = sl.SketchOperator(128, 32, kind=kind, seed=8)
        y = op(A)
        assert y.dtype == dtype
        exact = A.double() @ op.matrix()
        torch_err = float(((A.double() @ op.matrix().to(dtype).double()).to(dtype).double() - exact).norm() / exact.norm())
        err = float((y.double() - exact).norm() / exact.norm())
        assert err <= max(4 * torch_err, rtol("transform", dtype, 128)), (kind, err, torch_err)


def test_sparse_sign_autograd_both_sides():
    op = sl.SketchOperator(9, 5, kind="sparse_sign", zeta=3, seed=3)
    A = _rand((2, 4, 9), seed=9).requires_grad_()
    assert torch.autograd.gradcheck(lambda a: op(a), (A,))
    B = _rand((2, 9, 4), seed=10).requires_grad_()
    assert torch.autograd.gradcheck(lambda b: op(b, side="left"), (B,))
    C = _rand((4, 9), seed=11).requires_grad_()
    assert torch.autograd.gradcheck(lambda c: sl.SketchOperator(9, 8, kind="srht", seed=1)(c), (C,))


@pytest.mark.parametrize("device", devices())
def test_opcheck_sketch_ops(device):
    out = torch.empty(4, 6, device=device)
    torch.library.opcheck(torch.ops.subspace_linalg.random_fill_.default, (out, 0, 5, 1, 0.5))
    codes = torch.empty(6, 3, dtype=torch.int32, device=device)
    torch.library.opcheck(torch.ops.subspace_linalg.sparse_sign_table_.default, (codes, 7, 5, 3))
    op = sl.SketchOperator(6, 7, kind="sparse_sign", zeta=3, seed=2)
    ptr, cols, vals = op._csr(torch.float32, torch.device(device))
    X = _rand((2, 3, 6), torch.float32, device, 12).requires_grad_()
    for t in (False, True):
        torch.library.opcheck(torch.ops.subspace_linalg.sparse_apply.default, (X, ptr, cols, vals, 7, t))
    sr = sl.SketchOperator(6, 5, kind="srht", seed=2)
    signs, rows, N = sr._srht(torch.float32, torch.device(device))
    for t in (False, True):
        torch.library.opcheck(torch.ops.subspace_linalg.srht.default, (X, signs, rows, N, t))


def test_compile_fullgraph_sparse_sketch():
    op = sl.SketchOperator(64, 16, kind="sparse_sign", seed=3)
    ptr, cols, vals = op._csr(torch.float32, torch.device("cpu"))

    def f(A):
        Y = torch.ops.subspace_linalg.sparse_apply.default(A, ptr, cols, vals, 16, False)
        return torch.relu(Y) * 2

    A = _rand((2, 5, 64), torch.float32, seed=13)
    cf = torch.compile(f, fullgraph=True, backend="aot_eager")
    assert torch.equal(cf(A), f(A))


def test_sketch_errors():
    A = torch.randn(5, 6)
    with pytest.raises(ValueError, match="kind"):
        sl.sketch(A, 3, kind="fourier")
    with pytest.raises(ValueError, match="side"):
        sl.sketch(A, 3, side="top")
    with pytest.raises(ValueError, match="size must be >= 1"):
        sl.sketch(A, 0)
    with pytest.raises(ValueError, match="srht"):
        sl.sketch(A, 9, kind="srht")
    with pytest.raises(TypeError, match="A must have dtype"):
        sl.sketch(A.long(), 3)
    with pytest.raises(ValueError, match="columns"):
        sl.SketchOperator(7, 3)(A)
