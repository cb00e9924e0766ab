"""DCT-II basis, fast DCT, and alignment-based column selection."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import subspace_linalg as sl
from _tolerances import rtol
from conftest import devices


def _rand(shape, dtype=torch.float64, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64).to(dtype=dtype, device=device)


@pytest.mark.parametrize("n", [1, 2, 7, 64, 300])
def test_dct_matrix_equals_scipy(n):
    fft = pytest.importorskip("scipy.fft")
    M = sl.dct_matrix(n, dtype=torch.float64)
    ref = fft.dct(np.eye(n), norm="ortho")
    assert np.abs(M.numpy() - ref).max() <= 1e-12
    # columns are the orthonormal basis vectors
    assert float((M.T @ M - torch.eye(n, dtype=torch.float64)).norm()) <= rtol("orth", torch.float64, n)


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("n", [16, 129, 1000, 1025, 4096])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_dct_equals_matrix_product(device, n, dtype):
    x = _rand((3, 5, n), dtype, device, n)
    y = sl.dct(x)
    ref = x.double() @ sl.dct_matrix(n, dtype=torch.float64, device=device)
    assert float((y.double() - ref).norm() / ref.norm()) <= rtol("fft", dtype, n)
    # along another dim
    y1 = sl.dct(x.transpose(-1, -2), dim=-2)
    assert float((y1.transpose(-1, -2).double() - ref).norm() / ref.norm()) <= rtol("fft", dtype, n)


def test_dct_scipy_and_lowp():
    fft = pytest.importorskip("scipy.fft")
    x = _rand((4, 1500), seed=1)
    assert np.abs(sl.dct(x).numpy() - fft.dct(x.numpy(), norm="ortho", axis=-1)).max() <= rtol("fft", torch.float64, 1500)
    xb = x.bfloat16()
    yb = sl.dct(xb)
    assert yb.dtype == torch.bfloat16
    exact = x @ sl.dct_matrix(1500, dtype=torch.float64)
    torch_err = float(((xb @ sl.dct_matrix(1500, dtype=torch.bfloat16)).double() - exact).norm() / exact.norm())
    assert float((yb.double() - exact).norm() / exact.norm()) <= max(2 * torch_err, rtol("fft", torch.bfloat16, 1500))


def test_dct_autograd():
    # the FFT path's gradient is the adjoint: d<w, dct(x)>/dx = w @ M^T
    n = 1030
    x = _rand((2, n), seed=2).requires_grad_()
    w = _rand((2, n), seed=3)
    (sl.dct(x) * w).sum().backward()
    ref = w @ sl.dct_matrix(n, dtype=torch.float64).T
    assert float((x.grad - ref).norm() / ref.norm()) <= rtol("fft", torch.float64, n)


@pytest.mark.parametrize("norm", ["l1", "l2"])
def test_alignment_selection(norm):
    m, n, r = 40, 300, 12
    G = _rand((2, m, n), seed=3)
    idx, scores = sl.select_columns_by_alignment(G, None, r, norm=norm, return_scores=True)
    M = sl.dct_matrix(n, dtype=torch.float64)
    S = G @ M
    ref_scores = S.abs().sum(-2) if norm == "l1" else S.norm(dim=-2)
    assert float((scores - ref_scores).norm() / ref_scores.norm()) <= rtol("fft", torch.float64, n)
    ref = torch.topk(ref_scores, r, dim=-1).indices.sort(-1).values
    assert torch.equal(idx, ref)
    # an explicit basis gives the same answer
    assert torch.equal(sl.select_columns_by_alignment(G, M, r, norm=norm), ref)


def test_alignment_recovers_planted_subspace():
    n, r = 128, 6
    M = sl.dct_matrix(n, dtype=torch.float64)
    true = torch.tensor([3, 17, 40, 41, 90, 127])
    G = _rand((30, r), seed=4) @ M[:, true].T * 10 + 0.01 * _rand((30, n), seed=5)
    assert torch.equal(sl.select_columns_by_alignment(G, None, r), true)


def test_compile_fullgraph_dct():
    x = _rand((4, 2048), torch.float32, seed=6)
    cf = torch.compile(lambda t: sl.dct(t), fullgraph=True, backend="aot_eager")
    assert torch.allclose(cf(x), sl.dct(x), rtol=rtol("fft", torch.float32, 2048), atol=rtol("fft", torch.float32, 2048))


def test_dct_errors():
    with pytest.raises(ValueError, match="n must be >= 1"):
        sl.dct_matrix(0)
    with pytest.raises(TypeError, match="dtype"):
        sl.dct_matrix(4, dtype=torch.int32)
    with pytest.raises(ValueError, match="rows"):
        sl.select_columns_by_alignment(torch.randn(3, 5), torch.randn(4, 4), 2)
    with pytest.raises(ValueError, match="r must be <= 5"):
        sl.select_columns_by_alignment(torch.randn(3, 5), None, 6)
    with pytest.raises(ValueError, match="norm"):
        sl.select_columns_by_alignment(torch.randn(3, 5), None, 2, norm="linf")


@pytest.mark.parametrize("shape", [(2, 700, 512), (1100, 1025), (3, 90, 3000)])
def test_dct_fft_in_row_blocks_equals_matrix_product(shape):
    """Beyond 2 x (2^18 / n) rows the FFT path transforms blocks of rows (and stays
    differentiable)."""
    n = shape[-1]
    x = _rand(shape, seed=n).requires_grad_()
    y = sl.dct(x)
    M = sl.dct_matrix(n, dtype=torch.float64)
    ref = x.detach() @ M
    assert float((y.detach() - ref).norm() / ref.norm()) <= rtol("fft", torch.float64, n)
    w = _rand(shape, seed=n + 1)
    (y * w).sum().backward()
    gref = w @ M.T
    assert float((x.grad - gref).norm() / gref.norm()) <= rtol("fft", torch.float64, n)
