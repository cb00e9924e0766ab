"""Subspace Power Method: planted symmetric CP tensors, validation, the native ops."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

import subspace_linalg as sl
from subspace_linalg.reference import spm as ref

from _spm_cases import extract_inputs, planted, reconstruct
from _tolerances import rtol
from conftest import devices


def sym_noise(shape, g):
    N = torch.randn(shape, generator=g, dtype=torch.float64)
    perms = list(itertools.permutations(range(len(shape))))
    return sum(N.permute(p) for p in perms) / len(perms)


def match(A, F):
    """|cos| between each planted column of A and its best recovered factor."""
    return (A.T @ F.double()).abs().max(dim=1).values


@pytest.mark.parametrize("d,r,order", [(20, 15, 3), (12, 30, 4), (20, 60, 4)])
def test_planted_noiseless_float64(d, r, order, gen):
    T, w, A = planted(d, r, order, gen(d * 1000 + r))
    res = sl.spm(T, generator=gen(1))  # rank not given: found from the spectrum
    assert res.weights.shape == (r,) and res.factors.shape == (d, r)
    assert res.weights.dtype == torch.float64
    torch.testing.assert_close(res.factors.norm(dim=0), torch.ones(r, dtype=torch.float64))
    err = float((reconstruct(*res, order) - T).norm() / T.norm())
    assert err <= 1e-10
    assert float(match(A, res.factors).min()) >= 1 - 1e-8
    # weights ordered by decreasing magnitude
    assert bool((res.weights.abs()[:-1] >= res.weights.abs()[1:]).all())


@pytest.mark.parametrize("device", [pytest.param("cuda", marks=pytest.mark.cuda)])
@pytest.mark.parametrize("order,d,r", [(3, 20, 15), (4, 12, 30)])
def test_planted_on_cuda(device, order, d, r, gen):
    T, w, A = planted(d, r, order, gen(d * 1000 + r))
    res = sl.spm(T.to(device), generator=gen(1))
    assert res.factors.device.type == "cuda" and res.factors.shape == (d, r)
    err = float((reconstruct(res.weights.cpu(), res.factors.cpu(), order) - T).norm() / T.norm())
    assert err <= 1e-10
    assert float(match(A, res.factors.cpu()).min()) >= 1 - 1e-8


def test_planted_order4_given_rank_float32(gen):
    d, r = 12, 20
    T, w, A = planted(d, r, 4, gen(7), dtype=torch.float32)
    res = sl.spm(T, rank=r, generator=gen(2))
    assert res.weights.dtype == torch.float32
    err = float((reconstruct(*res, 4) - T.double()).norm() / T.double().norm())
    assert err <= rtol("tensor", torch.float32, d * d)


@pytest.mark.parametrize("d,r,order", [(20, 15, 3), (15, 30, 4)])
def test_noisy_recovered_to_noise_level(d, r, order, gen):
    noise = 1e-3
    T, w, A = planted(d, r, order, gen(d + r))
    N = sym_noise(T.shape, gen(3))
    N = N * (noise * T.norm() / N.norm())
    res = sl.spm(T + N, rank=r, generator=gen(4))
    err = float((reconstruct(*res, order) - T).norm() / T.norm())
    assert err <= 2 * noise
    assert float(match(A, res.factors).min()) >= 1 - 10 * noise


def test_odd_order_weights_positive(gen):
    T, w, A = planted(10, 6, 3, gen(11))
    res = sl.spm(T, rank=6, generator=gen(5))
    assert bool((res.weights > 0).all())


def test_reproducible_with_generator(gen):
    T, _, _ = planted(10, 12, 4, gen(12))
    a = sl.spm(T, generator=torch.Generator().manual_seed(3))
    b = sl.spm(T, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.weights, b.weights) and torch.equal(a.factors, b.factors)


# ---- validation --------------------------------------------------------------------------

def test_non_symmetric_names_largest_asymmetry(gen):
    T, _, _ = planted(6, 4, 4, gen(13))
    T = T.clone()
    T[0, 1, 2, 3] += 0.5
    with pytest.raises(ValueError, match=r"spm: T must be symmetric; its largest asymmetry is \|T\[0, 1, 2, 3\]"):
        sl.spm(T)


@pytest.mark.parametrize("shape", [(5, 5, 4), (5, 5, 5, 6)])
def test_ragged_shape(shape):
    with pytest.raises(ValueError, match="ragged shape"):
        sl.spm(torch.zeros(shape, dtype=torch.float64))


@pytest.mark.parametrize("shape", [(5, 5), (3, 3, 3, 3, 3)])
def test_order_out_of_range(shape):
    with pytest.raises(ValueError, match="order 3 or 4"):
        sl.spm(torch.zeros(shape, dtype=torch.float64))


def test_rank_out_of_range(gen):
    T, _, _ = planted(5, 3, 4, gen(14))
    with pytest.raises(ValueError, match="rank must be <= 15"):
        sl.spm(T, rank=16)
    with pytest.raises(ValueError, match="rank must be >= 1"):
        sl.spm(T, rank=0)
    T3, _, _ = planted(5, 3, 3, gen(15))
    with pytest.raises(ValueError, match="rank must be <= 5"):
        sl.spm(T3, rank=6)


def test_rank_above_numerical_rank(gen):
    T, _, _ = planted(6, 3, 4, gen(19))
    with pytest.raises(ValueError, match="rank=5 exceeds the numerical rank 3"):
        sl.spm(T, rank=5)


def test_integer_dtype_and_bad_types():
    with pytest.raises(TypeError, match="spm: T must have dtype"):
        sl.spm(torch.zeros(4, 4, 4, dtype=torch.int64))
    with pytest.raises(TypeError, match="spm: rank must be an int"):
        sl.spm(torch.zeros(4, 4, 4), rank=2.0)
    with pytest.raises(ValueError, match="spm: tol must be > 0"):
        sl.spm(torch.zeros(4, 4, 4), tol=0.0)


def test_non_finite():
    T = torch.zeros(4, 4, 4, dtype=torch.float64)
    T[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        sl.spm(T)


def test_zero_tensor_has_rank_zero():
    res = sl.spm(torch.zeros(4, 4, 4, 4, dtype=torch.float64))
    assert res.weights.shape == (0,) and res.factors.shape == (4, 0)


# ---- native ops ----------------------------------------------------------------------------

def _op_inputs(d, R, B, dtype, device, g):
    V = torch.linalg.qr(torch.randn(d * (d + 1) // 2, R, generator=g, dtype=torch.float64))[0]
    X = torch.nn.functional.normalize(torch.randn(B, d, generator=g, dtype=torch.float64), dim=-1)
    return V.to(dtype=dtype, device=device), X.to(dtype=dtype, device=device)


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_native_ops_match_reference(device, dtype, gen):
    d, R, B = 9, 7, 5
    V, X = _op_inputs(d, R, B, dtype, device, gen(16))
    alpha, grad = torch.ops.subspace_linalg.spm_contract(V, X)
    a_ref, g_ref = ref.contract(V.double().cpu(), X.double().cpu())
    tol = rtol("small_dense", dtype, d * R)
    torch.testing.assert_close(alpha.double().cpu(), a_ref, rtol=tol, atol=tol)
    torch.testing.assert_close(grad.double().cpu(), g_ref, rtol=tol, atol=tol)
    # the fused loop: same iterates as the reference for a fixed number of steps
    Xn, f, it = torch.ops.subspace_linalg.spm_power(V, X, 6, 0.0, math.sqrt(0.5))
    Xr, fr, itr = ref.power(V.double().cpu(), X.double().cpu(), 6, 0.0, math.sqrt(0.5))
    assert it.dtype == torch.int64 and it.tolist() == itr.tolist() == [6] * B
    torch.testing.assert_close(Xn.double().cpu(), Xr, rtol=10 * tol, atol=10 * tol)
    torch.testing.assert_close(f.double().cpu(), fr, rtol=10 * tol, atol=10 * tol)
    # the gradient is (1/4) grad F: check against autograd in float64
    x = X[:1].double().cpu().requires_grad_(True)
    a, _ = ref.contract(V.double().cpu(), x)
    (a * a).sum().backward()
    torch.testing.assert_close(4 * g_ref[:1], x.grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("order,d,r", [(4, 8, 12), (3, 9, 6)])
def test_extract_native_matches_reference(device, order, d, r, gen):
    args, A = extract_inputs(order, d, r, torch.float64, device, gen(20 + order))
    w, F, fb = torch.ops.subspace_linalg.spm_extract(*args)
    wr, Fr, fbr = ref.extract(*[a.cpu() if isinstance(a, torch.Tensor) else a for a in args])
    tol = rtol("tensor", torch.float64, d * r)
    torch.testing.assert_close(w.cpu(), wr, rtol=tol, atol=tol)
    torch.testing.assert_close(F.cpu(), Fr, rtol=tol, atol=tol)
    torch.testing.assert_close(fb.cpu(), fbr, rtol=tol, atol=tol)
    assert float(match(A, F.cpu().T).min()) >= 1 - 1e-8  # every planted factor found once deflated


@pytest.mark.parametrize("device", devices())
def test_opcheck(device, gen):
    V, X = _op_inputs(6, 4, 3, torch.float64, device, gen(17))
    torch.library.opcheck(torch.ops.subspace_linalg.spm_contract.default, (V, X))
    torch.library.opcheck(torch.ops.subspace_linalg.spm_power.default, (V, X, 5, 1e-12, math.sqrt(0.5)))
    for order in (3, 4):
        args, _ = extract_inputs(order, 5, 4, torch.float64, device, gen(30 + order))
        torch.library.opcheck(torch.ops.subspace_linalg.spm_extract.default, tuple(args))


def test_power_op_compiles_fullgraph(gen):
    V, X = _op_inputs(6, 4, 3, torch.float64, "cpu", gen(18))

    def step(V, X):
        Xn, f, it = torch.ops.subspace_linalg.spm_power.default(V, X, 20, 1e-12, math.sqrt(0.5))
        return Xn * 2, f + 1

    out = torch.compile(step, fullgraph=True)(V, X)
    exp = step(V, X)
    torch.testing.assert_close(out[0], exp[0])
    torch.testing.assert_close(out[1], exp[1])


# ---- spm_cp3: the whole order-3 SPM in one op ------------------------------------------

def _cp3_args(T, rank=0, seed=1234):
    eps = torch.finfo(T.dtype).eps
    return (T, rank, 3, 5000, 64 * eps, math.sqrt(0.5), 1e-2, seed)


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("d,r,rank,noise", [(12, 8, 0, 0.0), (9, 9, 9, 0.0), (10, 6, 6, 1e-3)])
def test_cp3_native_matches_reference(device, dtype, d, r, rank, noise, gen):
    T, _, A = planted(d, r, 3, gen(40 + d + r))
    if noise:
        N = sym_noise(T.shape, gen(41))
        T = T + N * (noise * T.norm() / N.norm())
    T = T.to(dtype=dtype, device=device)
    w, F, sig, info = torch.ops.subspace_linalg.spm_cp3(*_cp3_args(T, rank))
    assert info.dtype == torch.float64 and info.shape == (8,)
    assert info[7].item() == 0 and info[4].item() == r  # the rank found (rank 0) or given
    R = r
    # the pure-torch steps in float64 at that rank (float32 rounding is above float64's cutoff)
    wr, Fr, sr, ir = ref.cp3(*_cp3_args(T.double().cpu(), R))
    assert ir[7].item() == 0
    tol = 100 * rtol("tensor", dtype, d * r) + (10 * noise if dtype == torch.float32 else 0.0)
    torch.testing.assert_close(sig.double().cpu(), sr, rtol=tol, atol=tol * float(sr[0]))
    torch.testing.assert_close(w[:R].double().cpu(), wr[:R], rtol=tol, atol=tol)
    torch.testing.assert_close(F[:, :R].double().cpu(), Fr[:, :R], rtol=tol, atol=tol)
    assert bool((w[R:] == 0).all()) and bool((F[:, R:] == 0).all())
    limit = 1e-8 if (dtype == torch.float64 and not noise) else 10 * max(noise, 1e-4)
    assert float(match(A, F[:, :R].double().cpu()).min()) >= 1 - limit


def test_cp3_statuses(gen):
    T, _, _ = planted(8, 5, 3, gen(50))
    w, F, sig, info = torch.ops.subspace_linalg.spm_cp3(*_cp3_args(T, 7))  # rank 7 > numerical rank 5
    assert info[7].item() == 2 and info[5].item() == 5
    _, _, _, info = torch.ops.subspace_linalg.spm_cp3(*_cp3_args(torch.zeros(4, 4, 4, dtype=torch.float64)))
    assert info[7].item() == 3 and info[4].item() == 0
    B = T.clone()
    B[0, 1, 2] += 1e-3
    _, _, _, info = torch.ops.subspace_linalg.spm_cp3(*_cp3_args(B))
    assert info[7].item() == 1 and info[2].item() == pytest.approx(1e-3, rel=1e-6)
    B = T.clone()
    B[1, 1, 1] = float("nan")
    _, _, _, info = torch.ops.subspace_linalg.spm_cp3(*_cp3_args(B))
    assert info[7].item() == 1
    for args in ((T, -1), (T, 9), (T.float()[:, :, :7], 0)):
        with pytest.raises(RuntimeError, match="spm_cp3"):
            torch.ops.subspace_linalg.spm_cp3(*_cp3_args(*args))


def test_cp3_seed_reproducible_and_compressed_search_exact(gen):
    # the search runs in span(Ub): the factors of a noiseless tensor with r < d lie there
    T, w, A = planted(14, 6, 3, gen(51))
    a = torch.ops.subspace_linalg.spm_cp3(*_cp3_args(T, 0, seed=7))
    b = torch.ops.subspace_linalg.spm_cp3(*_cp3_args(T, 0, seed=7))
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    F = a[1][:, :6]
    err = float((reconstruct(a[0][:6], F, 3) - T).norm() / T.norm())
    assert err <= 1e-12 and float(match(A, F).min()) >= 1 - 1e-10


@pytest.mark.parametrize("device", devices())
def test_cp3_opcheck(device, gen):
    T, _, _ = planted(6, 4, 3, gen(52))
    torch.library.opcheck(torch.ops.subspace_linalg.spm_cp3.default, _cp3_args(T.to(device)))


def test_cp3_compiles_fullgraph(gen):
    T, _, _ = planted(7, 5, 3, gen(53))

    def f(T):
        w, F, sig, info = torch.ops.subspace_linalg.spm_cp3.default(*_cp3_args(T))
        return w * 2, F + 1, info

    out = torch.compile(f, fullgraph=True)(T)
    exp = f(T)
    for x, y in zip(out, exp):
        torch.testing.assert_close(x, y)


@pytest.mark.parametrize("order,d", [(3, 6), (4, 5)])
def test_far_from_low_rank_warns(order, d, gen):
    # symmetric noise has no rank-one terms for the power iteration to find: said, not hidden
    T = sym_noise((d,) * order, gen(60 + order))
    with pytest.warns(sl.NotConvergedWarning, match="1 - F") as rec:
        res = sl.spm(T, rank=d, generator=gen(61))
    assert rec[0].filename == __file__  # attributed to the caller
    assert res.factors.shape == (d, d) and bool(torch.isfinite(res.weights).all())


def test_cp3_composed_path_matches_native(gen):
    # the CUDA kernel of spm_cp3 composes torch.linalg with the native spm_extract and Philox
    # fill: run that composition here on CPU tensors against the native one-call kernel
    T, _, A = planted(11, 7, 3, gen(54))
    args = _cp3_args(T, 0, seed=99)
    w, F, sig, info = torch.ops.subspace_linalg.spm_cp3(*args)
    wc, Fc, sc, ic = ref.cp3(*args, extract=torch.ops.subspace_linalg.spm_extract.default,
                             fill=torch.ops.subspace_linalg.random_fill_.default)
    assert ic.tolist()[4:6] == info.tolist()[4:6] == [7.0, 7.0] and ic[7].item() == 0
    tol = 100 * rtol("tensor", torch.float64, 11 * 7)
    torch.testing.assert_close(wc, w, rtol=tol, atol=tol)
    torch.testing.assert_close(Fc, F, rtol=tol, atol=tol)
    torch.testing.assert_close(sc, sig, rtol=tol, atol=tol * float(sig[0]))
