"""Fastfood maps: explicit-matrix agreement, adjoint, approximate isometry."""
from __future__ import annotations

import math

import pytest
import torch

import subspace_linalg as sl
from _tolerances import rtol
from conftest import devices


def _rand(shape, dtype=torch.float64, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64).to(dtype=dtype, device=device)


def _hadamard(n):
    H = torch.ones(1, 1, dtype=torch.float64)
    while H.shape[0] < n:
        H = torch.cat([torch.cat([H, H], 1), torch.cat([H, -H], 1)], 0)
    return H


def _explicit(V: sl.FastfoodMap) -> torch.Tensor:
    """S H G Pi H B per block from the map's parameters, stacked and scaled (D x d)."""
    B, perm, _, g, coef = V.params(torch.float64)
    H = _hadamard(V.L)
    blocks = []
    for b in range(V.blocks):
        P = torch.eye(V.L, dtype=torch.float64)[perm[b]]  # (P z)_i = z_perm[i]
        blocks.append(torch.diag(coef[b]) @ H @ torch.diag(g[b]) @ P @ H @ torch.diag(B[b]))
    return torch.cat(blocks, 0)[:V.out_dim, :V.in_dim]


@pytest.mark.parametrize("d,D", [(5, 3), (20, 64), (100, 300), (64, 64)])
def test_matches_explicit_matrix_and_adjoint(d, D):
    V = sl.FastfoodMap(d, D, seed=1234)
    M = _explicit(V)
    x = _rand((3, d), seed=d)
    y = V(x)
    tol = rtol("transform", torch.float64, V.L * V.blocks)
    assert float((y - x @ M.T).norm() / y.norm()) <= tol
    w = _rand((3, D), seed=D)
    assert float((V.adjoint(w) - w @ M).norm() / (w @ M).norm()) <= tol
    # public functions: same generator state -> same map
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    lhs = (sl.fastfood(x, D, generator=g1) * w).sum()
    rhs = (x * sl.fastfood_adjoint(w, d, generator=g2)).sum()
    assert abs(float(lhs - rhs)) <= tol * float(lhs.abs() + 1)


def test_approximate_isometry():
    d, D, trials = 256, 4096, 200
    x = _rand((trials, d), seed=2)
    y = sl.fastfood(x, D, generator=torch.Generator().manual_seed(3))
    ratio = y.pow(2).sum(-1) / x.pow(2).sum(-1)
    assert 0.9 <= float(ratio.mean()) <= 1.1 and float(ratio.min()) > 0.7 and float(ratio.max()) < 1.3
    # the expectation over maps is exactly 1 (JL scaling)
    x1 = _rand((1, 40), seed=4)
    g = torch.Generator().manual_seed(5)
    r = torch.tensor([float(sl.fastfood(x1, 24, generator=g).pow(2).sum()) for _ in range(200)]) / float(x1.pow(2).sum())
    assert abs(float(r.mean()) - 1) < 4 * float(r.std()) / 200 ** 0.5 + 1e-3


def test_rows_look_gaussian():
    V = sl.FastfoodMap(64, 512, seed=9)
    M = _explicit(V) * math.sqrt(512)  # entries ~ N(0, 1)
    assert abs(float(M.mean())) < 0.02 and abs(float(M.var()) - 1) < 0.1


@pytest.mark.parametrize("device", devices())
def test_dtypes_and_autograd(device):
    V = sl.FastfoodMap(30, 50, seed=11)
    x = _rand((4, 30), device=device, seed=12)
    for dt in (torch.float32, torch.bfloat16):
        y = V(x.to(dt))
        assert y.dtype == dt
    xr = x.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda t: V(t), (xr,))


def test_fastfood_errors():
    with pytest.raises(ValueError, match="out_dim must be >= 1"):
        sl.fastfood(torch.randn(3, 4), 0)
    with pytest.raises(ValueError, match="last dim 4"):
        sl.FastfoodMap(4, 8)(torch.randn(3, 5))
    with pytest.raises(TypeError, match="x must have dtype"):
        sl.fastfood(torch.ones(3, 4, dtype=torch.int64), 5)


def test_bad_sizes_name_the_caller():
    """Each entry names itself and the argument (not the class both build on)."""
    with pytest.raises(ValueError, match="fastfood: out_dim must be >= 1, got 0"):
        sl.fastfood(torch.randn(3, 4), 0)
    with pytest.raises(ValueError, match="fastfood: x must have a last dim >= 1"):
        sl.fastfood(torch.zeros(3, 0), 4)
    with pytest.raises(ValueError, match="fastfood_adjoint: in_dim must be >= 1, got 0"):
        sl.fastfood_adjoint(torch.randn(3, 8), 0)
    with pytest.raises(ValueError, match="FastfoodMap: out_dim must be >= 1, got -1"):
        sl.FastfoodMap(8, -1)
