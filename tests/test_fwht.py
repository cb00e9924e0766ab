import math

import numpy as np
import pytest
import scipy.linalg
import torch

import subspace_linalg as sl
from subspace_linalg.reference.fwht import fwht_last
from _tolerances import lowp_bound, rtol

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


def _dense_ref(x64: np.ndarray, n: int) -> np.ndarray:
    return x64 @ (scipy.linalg.hadamard(n) / math.sqrt(n))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("n", [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096])
def test_equals_scipy_hadamard_float64(n, device):
    g = torch.Generator().manual_seed(n)
    x = torch.randn(5, n, generator=g, dtype=torch.float64)
    y = sl.fwht(x.to(device)).cpu().numpy()
    ref = _dense_ref(x.numpy(), n)
    err = np.linalg.norm(y - ref) / np.linalg.norm(ref)
    assert err <= 1e-12, err


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("n", [8192, 1 << 15, 1 << 17])
def test_orthonormal_involution_large(n, device):
    g = torch.Generator().manual_seed(n)
    x = torch.randn(3, n, generator=g, dtype=torch.float64).to(device)
    y = sl.fwht(x)
    # orthonormal: norms preserved; involution: applying twice gives x back
    assert torch.allclose(y.norm(dim=-1), x.norm(dim=-1), rtol=rtol("transform", torch.float64, n))
    back = sl.fwht(y)
    assert float((back - x).norm() / x.norm()) <= rtol("transform", torch.float64, n)
    # and equal to the (independent) pure-torch reference
    ref = fwht_last(x.cpu(), 1 / math.sqrt(n))
    assert float((y.cpu() - ref).norm() / ref.norm()) <= rtol("transform", torch.float64, n)


def test_one_row_of_2_to_20():
    n = 1 << 20
    x = torch.randn(1, n, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = sl.fwht(x)
    assert float((sl.fwht(y) - x).norm() / x.norm()) <= rtol("transform", torch.float64, n)
    # the constant vector maps to sqrt(n) e_0
    e = sl.fwht(torch.ones(1, n, dtype=torch.float64))
    assert abs(float(e[0, 0]) - math.sqrt(n)) < 1e-6 and float(e[0, 1:].abs().max()) < 1e-6


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_batched_any_dim_non_contiguous(dtype, device):
    g = torch.Generator().manual_seed(7)
    base = torch.randn(6, 64, 10, 3, generator=g, dtype=torch.float64)
    x = base.to(dtype=dtype, device=device)
    for dim in range(4):
        n = x.shape[dim]
        if n & (n - 1):
            continue
        y = sl.fwht(x, dim=dim)
        ref = np.moveaxis(_dense_ref(np.moveaxis(base.numpy(), dim, -1), n), -1, dim)
        err = np.linalg.norm(y.double().cpu().numpy() - ref) / np.linalg.norm(ref)
        assert err <= rtol("transform", dtype, n), (dim, err)
    # non-contiguous views: a transpose, a strided slice, an offset view
    views = [x.transpose(0, 1), x[::2, :, 1:], x[:, :, ::3, 1]]
    for v in views:
        dim = 1 if v.shape[1] == 64 else 0
        y = sl.fwht(v, dim=dim)
        ref = np.moveaxis(_dense_ref(np.moveaxis(v.double().cpu().numpy(), dim, -1), v.shape[dim]), -1, dim)
        assert np.linalg.norm(y.double().cpu().numpy() - ref) / np.linalg.norm(ref) <= rtol("transform", dtype, 64)
    # batch dims that cannot coalesce into two force a copy; the result is the same
    w = x.permute(2, 0, 3, 1)[:, ::2]
    assert torch.allclose(sl.fwht(w, dim=-1), sl.fwht(w.contiguous(), dim=-1))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("n", [64, 4096, 16384])
def test_low_precision_within_2x_torch(dtype, n, device):
    g = torch.Generator().manual_seed(n + 3)
    x64 = torch.randn(8, n, generator=g, dtype=torch.float64)
    x = x64.to(dtype).to(device)
    ref = fwht_last(x.double().cpu(), 1 / math.sqrt(n))  # exact transform of the rounded input
    y = sl.fwht(x)
    assert y.dtype == dtype
    err = float((y.double().cpu() - ref).norm() / ref.norm())
    # plain torch in the same dtype: the dense matmul (fp32 accumulation where supported)
    if n <= 4096:
        H = torch.from_numpy(scipy.linalg.hadamard(n) / math.sqrt(n)).to(dtype).to(device)
        t_err = float(((x @ H).double().cpu() - ref).norm() / ref.norm())
    else:
        t_err = float((fwht_last(x.cpu(), 1 / math.sqrt(n)).double() - ref).norm() / ref.norm())
    assert err <= lowp_bound("transform", dtype, n, t_err), (err, t_err)


def test_unnormalized():
    x = torch.randn(4, 32, dtype=torch.float64)
    y = sl.fwht(x, normalized=False)
    ref = x.numpy() @ scipy.linalg.hadamard(32)
    assert np.allclose(y.numpy(), ref, rtol=0, atol=1e-12)


def test_empty_and_scalar_rows():
    assert sl.fwht(torch.empty(0, 16)).shape == (0, 16)
    x = torch.randn(3, 1)
    assert torch.equal(sl.fwht(x), x)


@pytest.mark.parametrize("device", DEVICES)
def test_autograd_adjoint(device):
    x = torch.randn(3, 16, dtype=torch.float64, device=device, requires_grad=True)
    torch.autograd.gradcheck(lambda t: sl.fwht(t, dim=-1), (x,))
    y = torch.randn(16, 3, dtype=torch.float64, device=device, requires_grad=True)
    torch.autograd.gradcheck(lambda t: sl.fwht(t, dim=0, normalized=False), (y,))


def test_bad_input():
    with pytest.raises(ValueError, match=r"fwht: the length along dim -1 must be a power of two, got 12"):
        sl.fwht(torch.randn(3, 12))
    with pytest.raises(ValueError, match="dim 0 .* got 3"):
        sl.fwht(torch.randn(3, 8), dim=0)
    with pytest.raises(TypeError, match="fwht: x must have dtype"):
        sl.fwht(torch.ones(4, 8, dtype=torch.int32))
    with pytest.raises(TypeError, match="fwht: x must have dtype"):
        sl.fwht(torch.ones(4, 8, dtype=torch.complex64))
    with pytest.raises(TypeError, match="fwht: x must be a torch.Tensor"):
        sl.fwht(np.ones(8))
    with pytest.raises(ValueError, match="fwht: dim must be in"):
        sl.fwht(torch.randn(4, 8), dim=2)
    with pytest.raises(ValueError, match="at least 1 dims"):
        sl.fwht(torch.tensor(1.0))


def test_native_rejects_bad_views_with_valueerror():
    # the native layer re-checks: a non power-of-two row length is a ValueError, not a crash
    from subspace_linalg import _native

    x = torch.randn(2, 6)
    out = torch.empty_like(x)
    _, xp, xs = _native.rows(x)
    _, op, os_ = _native.rows(out)
    with pytest.raises(ValueError, match="power of two"):
        _native.lib().fwht(_native.dtype_code(x.dtype), xp, xs, op, os_, 1.0, _native.exec_args(x))
    with pytest.raises(ValueError, match="unknown dtype code"):
        _native.lib().fwht(99, xp, [1, 2, 8, 0, 8, 1], op, [1, 2, 8, 0, 8, 1], 1.0, _native.exec_args(x))


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    for shape, dtype in [((4, 16), torch.float32), ((2, 3, 64), torch.float64), ((5, 8), torch.bfloat16)]:
        x = torch.randn(shape, dtype=dtype, device=device)
        torch.library.opcheck(torch.ops.subspace_linalg.fwht.default, (x, 0.25))
    x = torch.randn(4, 16, dtype=torch.float64, device=device, requires_grad=True)
    torch.library.opcheck(torch.ops.subspace_linalg.fwht.default, (x, 0.25))


def test_torch_compile_fullgraph():
    def f(x):
        return torch.sin(sl.fwht(x, dim=0) * 2.0)

    x = torch.randn(32, 8, dtype=torch.float64)
    compiled = torch.compile(f, fullgraph=True)
    assert torch.allclose(compiled(x), f(x))


def test_reference_used_off_native_devices():
    # the default kernel of the op is the pure-torch reference (meta tensors use the fake)
    x = torch.empty(3, 8, device="meta")
    assert sl.fwht(x).shape == (3, 8)


@pytest.mark.cuda
def test_cuda_respects_current_stream():
    s = torch.cuda.Stream()
    x = torch.randn(64, 4096, device="cuda")
    with torch.cuda.stream(s):
        y = sl.fwht(x)
    s.synchronize()
    assert torch.allclose(y.cpu(), sl.fwht(x.cpu()), atol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("n", [16384, 1 << 22])
def test_long_16bit_rows_computed_in_float(device, dtype, n):
    """Rows longer than one CUDA chunk (8192) in float16 / bfloat16: the transform runs in
    float (the contract), so an all-8 row gives 8 sqrt(n) at index 0 and zeros elsewhere,
    finite, as the CPU kernel does (float16: 1024 for n = 16384, where an unscaled float16
    intermediate overflows). n = 2^22 also takes the two-call split on CUDA."""
    x = torch.full((2, n), 8.0, dtype=dtype, device=device)
    y = sl.fwht(x).float().cpu()
    assert bool(torch.isfinite(y).all())
    expect = 8.0 * math.sqrt(n)
    assert abs(float(y[0, 0]) - expect) <= 1e-2 * expect
    assert float(y[:, 1:].abs().max()) == 0.0
