"""The float32 CPU product route through oneDNN (subspace_linalg._gemm): results against
float64, every layout the callers use, batches, and every case that must fall back to
torch.matmul."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from subspace_linalg import _gemm
from subspace_linalg._rsvd_core import _mm
from subspace_linalg.operators import DenseOperator
from subspace_linalg.orth import tall_times_small

from _tolerances import rtol

needs_dnn = pytest.mark.skipif(not _gemm.enabled(), reason="torch built without oneDNN")


def _layout(T, col):
    """T with the same values, stored column-major when ``col``."""
    return T.mT.contiguous().mT if col else T.contiguous()


def _check(P, M, X):
    ref = M.double() @ X.double()
    scale = (M.double().abs() @ X.double().abs()).norm()
    assert P.dtype == torch.float32 and P.shape == ref.shape
    err = float((P.double() - ref).norm() / scale)
    assert err <= rtol("gemm", torch.float32, M.shape[-1]), err


@needs_dnn
@pytest.mark.parametrize("m_col", [False, True])
@pytest.mark.parametrize("x_col", [False, True])
@pytest.mark.parametrize("shape", [(700, 300, 37), (300, 2048, 16), (4096, 64, 64)])
def test_routed_product_matches_float64(gen, m_col, x_col, shape):
    r, c, l = shape
    g = gen(r + c + l)
    M = _layout(torch.randn(r, c, generator=g), m_col)
    X = _layout(torch.randn(c, l, generator=g), x_col)
    assert _gemm.routed(M, X)
    _check(_gemm.mm(M, X), M, X)


@needs_dnn
@pytest.mark.parametrize("m_col", [False, True])
@pytest.mark.parametrize("batch", [(1,), (3,), (2, 2)])
def test_routed_batched_product(gen, m_col, batch):
    g = gen(len(batch))
    M = torch.randn(batch + (400, 300), generator=g)
    M = M.mT.contiguous().mT if m_col else M
    X = torch.randn(batch + (300, 40), generator=g)
    assert _gemm.routed(M, X)
    P = _gemm.mm(M, X)
    assert P.shape == batch + (400, 40)
    _check(P, M, X)


@needs_dnn
def test_transposed_view_of_row_major_matrix(gen):
    """The left pass of rsvd: A^T X for a row-major A, as rsvd's _mm makes it."""
    g = gen()
    A = torch.randn(1500, 900, generator=g)
    Y = torch.randn(1500, 50, generator=g)
    assert _gemm.routed(A.mT, Y)
    _check(_mm(A.mT, Y), A.mT, Y)


needs_threads = pytest.mark.skipif(torch.get_num_threads() < 2, reason="the convolution route needs two threads")


@needs_dnn
@needs_threads
@pytest.mark.parametrize("x_layout", ["row", "col", "slice"])
@pytest.mark.parametrize("batch", [(2,), (3, 2)])
def test_batched_transposed_product_is_one_grouped_convolution(gen, x_layout, batch):
    """A^T X for a batch of row-major A (rsvd's left passes): one grouped convolution,
    equal to the float64 product, column-major like every routed result."""
    g = gen(len(batch))
    A = torch.randn(batch + (300, 260), generator=g)
    X = _make(batch + (300, 40), x_layout, g)
    M = A.mT
    assert _gemm._conv_case(M.reshape((-1,) + M.shape[-2:]), 260 * 300 * 40) and _gemm.routed(M, X)
    P = _mm(M, X)
    assert P.shape == batch + (260, 40) and P.mT.is_contiguous()
    _check(P, M, X)


@needs_dnn
@needs_threads
def test_grouped_convolution_floors():
    """Small elements (below 2^20 multiply-adds), a narrow A^T (a Gram's shape), one
    matrix, a row-major M, one thread, oneDNN switched off and a user-set reduced-precision
    convolution do not take the convolution."""
    A = torch.randn(4, 100, 100)
    assert not _gemm._conv_case(A.mT, 100 * 100 * 20)
    Y = torch.randn(8, 4096, 64)
    assert not _gemm._conv_case(Y.mT, 4096 * 64 * 64)
    Yc = torch.randn(8, 74, 1024).mT  # a tall-times-small Y S (short contraction)
    assert not _gemm._conv_case(Yc, 1024 * 74 * 74)
    assert not _gemm.routed(Yc, torch.randn(8, 74, 74))  # nor the loop of calls (narrow M)
    assert not _gemm._conv_case(torch.randn(2, 300, 300).mT, 300 * 300 * 160)
    assert not _gemm._conv_case(torch.randn(1, 300, 260).mT, 300 * 260 * 40)
    assert not _gemm._conv_case(torch.randn(2, 260, 300), 300 * 260 * 40)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert not _gemm._conv_case(torch.randn(2, 300, 260).mT, 300 * 260 * 40)
    finally:
        torch.set_num_threads(threads)
    try:
        torch.backends.mkldnn.enabled = False
        assert not _gemm._conv_case(torch.randn(2, 300, 260).mT, 300 * 260 * 40)
    finally:
        torch.backends.mkldnn.enabled = True
    conv = torch.backends.mkldnn.conv
    prev = conv.fp32_precision
    try:
        conv.fp32_precision = "bf16"
        assert not _gemm._conv_case(torch.randn(2, 300, 260).mT, 300 * 260 * 40)
    finally:
        conv.fp32_precision = prev
    assert _gemm._conv_case(torch.randn(2, 300, 260).mT, 300 * 260 * 40)


@needs_dnn
def test_tall_times_small_routed(gen):
    g = gen()
    Y = torch.randn(5000, 96, generator=g)
    S = torch.randn(96, 96, generator=g)
    assert _gemm.routed(Y, S)
    _check(tall_times_small(Y, S), Y, S)


@needs_dnn
def test_non_finite_values_propagate(gen):
    g = gen()
    M = torch.randn(800, 600, generator=g)
    X = torch.randn(600, 20, generator=g)
    M[17, 5] = float("nan")
    X[3, 2] = float("inf")
    P = _gemm.mm(M, X)
    ref = M.double() @ X.double()
    assert torch.equal(torch.isnan(P), torch.isnan(ref))
    assert torch.equal(torch.isinf(P), torch.isinf(ref))


@pytest.mark.parametrize("case", ["float64", "small", "grad", "broadcast", "empty", "strided", "batch_small"])
def test_falls_back_to_matmul(case):
    M, X = torch.randn(800, 600), torch.randn(600, 20)
    if case == "float64":
        M, X = M.double(), X.double()
    elif case == "small":
        M, X = M[:64, :64], X[:64]
    elif case == "grad":
        M.requires_grad_(True)
    elif case == "broadcast":
        M = M.expand(2, 800, 600)
    elif case == "empty":
        X = X[:, :0]
    elif case == "strided":
        M = torch.randn(800, 1200)[:, ::2]
    elif case == "batch_small":
        M, X = torch.randn(8, 128, 128), torch.randn(8, 128, 18)
    assert not _gemm.routed(M, X)
    P = _gemm.mm(M, X)
    assert torch.equal(P, M @ X)


def test_grad_flows_through_the_fallback():
    M = torch.randn(800, 600, requires_grad=True)
    X = torch.randn(600, 20)
    _gemm.mm(M, X).sum().backward()
    assert torch.allclose(M.grad, X.sum(1).expand(800, 600), rtol=1e-5, atol=1e-5)


def test_compiled_caller_traces_the_fallback():
    """Inside torch.compile the route is off (inductor cannot lower the op), fullgraph."""
    f = torch.compile(lambda a, x: _gemm.mm(a, x), fullgraph=True, backend="eager")
    M, X = torch.randn(800, 600), torch.randn(600, 20)
    _check(f(M, X), M, X)


def test_set_enabled_off_and_on():
    prev = _gemm.set_enabled(False)
    try:
        M, X = torch.randn(800, 600), torch.randn(600, 20)
        assert not _gemm.routed(M, X)
        assert torch.equal(_gemm.mm(M, X), M @ X)
    finally:
        _gemm.set_enabled(prev)
    assert _gemm.enabled() == prev


def test_environment_switch_turns_the_route_off():
    code = "from subspace_linalg import _gemm; print(_gemm.enabled())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**__import__("os").environ, "SUBSPACE_LINALG_ONEDNN": "0"})
    assert out.stdout.strip() == "False"


@needs_dnn
def test_blas_policy_keeps_only_single_row_major_products(gen):
    """Under "blas" (MKL on an Intel CPU) batches, transposed M and the convolution stay
    with torch.matmul; a single row-major M still takes the route with a column-major X,
    and with a row-major X (copied) only from 1024 rows at a width that is not a multiple
    of 16; results stay right."""
    prev = _gemm.set_policy("blas")
    try:
        g = gen()
        A = torch.randn(800, 600, generator=g)
        X = torch.randn(40, 600, generator=g).mT  # column-major
        assert _gemm.routed(A, X)
        _check(_gemm.mm(A, X), A, X)
        Xr = X.contiguous()
        assert not _gemm.routed(A, Xr)  # 800 rows: the copy is not paid for
        _check(_gemm.mm(A, Xr), A, Xr)
        A2 = torch.randn(1100, 600, generator=g)
        assert _gemm.routed(A2, Xr)  # 1100 rows, 40 columns
        _check(_gemm.mm(A2, Xr), A2, Xr)
        X48 = torch.randn(600, 48, generator=g)
        assert not _gemm.routed(A2, X48) and _gemm.routed(A2, X48.mT.contiguous().mT)  # MKL's full tiles
        _check(_gemm.mm(A2, X48), A2, X48)
        At = torch.randn(600, 800, generator=g).mT
        assert not _gemm.routed(At, X)
        _check(_gemm.mm(At, X), At, X)
        B = torch.randn(4, 260, 300, generator=g).mT   # (4, 300, 260), the convolution's layout
        XB = torch.randn(4, 260, 40, generator=g)
        assert not _gemm.routed(B, XB) and not _gemm.conv_sizes(300, 260, 40)
        _check(_gemm.mm(B, XB), B, XB)
    finally:
        _gemm.set_policy(prev)
    assert _gemm.policy() == prev


def test_set_policy_rejects_an_unknown_name():
    with pytest.raises(ValueError, match=r"set_policy: name must be one of .*got 'mkl'"):
        _gemm.set_policy("mkl")


@pytest.mark.parametrize("env,expect", [("blas", "blas"), ("onednn", "onednn"), ("torch", "torch")])
def test_policy_environment_variable(env, expect):
    code = "from subspace_linalg import _gemm; print(_gemm.policy())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**__import__("os").environ, "SUBSPACE_LINALG_GEMM_POLICY": env})
    assert out.stdout.strip() == expect


def test_policy_environment_variable_unknown_value_warns():
    code = ("import warnings; warnings.simplefilter('error'); from subspace_linalg import _gemm\n"
            "try:\n    _gemm.policy()\nexcept RuntimeWarning as e:\n    print('warned', e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**__import__("os").environ, "SUBSPACE_LINALG_GEMM_POLICY": "mkl"})
    assert out.stdout.startswith("warned") and "'mkl'" in out.stdout


def test_policy_auto_follows_the_cpu_vendor():
    code = "from subspace_linalg import _gemm; print(_gemm.policy(), _gemm._intel_mkl())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**__import__("os").environ, "SUBSPACE_LINALG_GEMM_POLICY": "auto"})
    pol, intel = out.stdout.split()
    avx512 = "avx512f" in _gemm._cpuinfo()[1]
    assert pol == ("torch" if not avx512 else "blas" if intel == "True" else "onednn")


def test_torch_policy_routes_nothing(gen):
    """Under "torch" (a CPU without AVX-512) no product takes the oneDNN route, batches and
    the grouped convolution included; results stay right."""
    prev = _gemm.set_policy("torch")
    try:
        g = gen()
        A = torch.randn(800, 600, generator=g)
        X = torch.randn(40, 600, generator=g).mT
        assert not _gemm.routed(A, X)
        _check(_gemm.mm(A, X), A, X)
        B = torch.randn(4, 300, 260, generator=g).mT
        XB = torch.randn(4, 300, 40, generator=g)
        assert not _gemm.routed(B, XB) and not _gemm.conv_sizes(260, 300, 40)
        _check(_gemm.mm(B, XB), B, XB)
    finally:
        _gemm.set_policy(prev)
    prev = _gemm.set_policy("onednn")
    try:
        assert _gemm.routed(A, X) == _gemm.enabled()  # the same product under "onednn"
    finally:
        _gemm.set_policy(prev)


@needs_dnn
def test_rsvd_same_accuracy_with_and_without_the_route(gen):
    """rsvd through oneDNN and through torch.matmul: both near the optimal error."""
    import subspace_linalg as sl

    g = gen()
    U = torch.linalg.qr(torch.randn(1200, 300, generator=g, dtype=torch.float64)).Q
    V = torch.linalg.qr(torch.randn(900, 300, generator=g, dtype=torch.float64)).Q
    s = torch.arange(1, 301, dtype=torch.float64) ** -1.0
    A64 = (U * s) @ V.mT
    A = A64.float()
    k = 40
    opt = float(s[k:].norm())
    errs = []
    for on in (True, False):
        prev = _gemm.set_enabled(on)
        try:
            r = sl.rsvd(A, k, generator=torch.Generator().manual_seed(3))
        finally:
            _gemm.set_enabled(prev)
        errs.append(float((A64 - (r.U.double() * r.S.double()) @ r.Vh.double()).norm()) / opt)
    assert max(errs) <= 1.05, errs
    assert abs(errs[0] - errs[1]) <= 1e-3, errs


@needs_dnn
def test_rows_of_a_batch_against_one_matrix(gen):
    """A contiguous (..., r, c) block times a 2-D (c, l): one product of all its rows."""
    g = gen()
    M = torch.randn(3, 400, 300, generator=g)
    X = torch.randn(300, 40, generator=g)
    assert _gemm.routed(M.reshape(-1, 300), X)
    P = _gemm.mm(M, X)
    assert P.shape == (3, 400, 40)
    _check(P, M, X.expand(3, 300, 40))


@needs_dnn
def test_dense_operator_products_routed(gen):
    import subspace_linalg as sl

    g = gen()
    A = torch.randn(900, 700, generator=g)
    op = DenseOperator(A)
    X = torch.randn(700, 8, generator=g)
    Y = torch.randn(900, 8, generator=g)
    assert _gemm.routed(A, X)
    _check(op.matmul(X), A, X)
    _check(op.matvec(X.mT.contiguous()).mT, A, X)
    _check(op.rmatvec(Y.mT.contiguous()).mT, A.mT, Y)


def _make(shape, layout, g):
    """A float32 block of ``shape`` stored row-major, column-major, or as a column slice
    (a leading dimension above the width: not dense, must not take the route)."""
    if layout == "row":
        return torch.randn(shape, generator=g)
    if layout == "col":
        return torch.randn(shape[:-2] + (shape[-1], shape[-2]), generator=g).mT
    return torch.randn(shape[:-1] + (shape[-1] + 3,), generator=g)[..., : shape[-1]]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batch=st.sampled_from([(), (1,), (2,), (3, 1)]),
    r=st.integers(1, 700), c=st.integers(1, 700), l=st.integers(1, 90),
    m_layout=st.sampled_from(["row", "col", "slice"]),
    x_layout=st.sampled_from(["row", "col", "slice"]),
    seed=st.integers(0, 2**31 - 1),
)
def test_product_matches_float64_in_every_layout(batch, r, c, l, m_layout, x_layout, seed):
    """Whatever the shapes (across the size floors) and layouts: mm equals the float64
    product to float32 rounding, and a non-dense M never takes the route."""
    g = torch.Generator().manual_seed(seed)
    M = _make(batch + (r, c), m_layout, g)
    X = _make(batch + (c, l), x_layout, g)
    if m_layout == "slice" and r > 1 and c > 1:
        assert not _gemm.routed(M, X)
    _check(_gemm.mm(M, X), M, X)
