"""polar and principal_angles against NumPy / SciPy float64 references."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

import subspace_linalg as sl
from _tolerances import rtol

F64 = torch.float64


@pytest.mark.parametrize("shape", [(40, 25), (25, 40), (3, 30, 30), (2, 1, 50, 7)])
@pytest.mark.parametrize("dtype", [F64, torch.float32])
def test_polar_matches_numpy(shape, dtype, gen):
    A = torch.randn(shape, generator=gen(0), dtype=F64)
    P = sl.polar(A.to(dtype))
    assert P.shape == A.shape and P.dtype == dtype
    U, _, Vh = np.linalg.svd(A.numpy(), full_matrices=False)
    ref = U @ Vh
    n = max(shape[-2:])
    assert np.abs(P.double().numpy() - ref).max() <= rtol("lowrank", dtype, n) * 10  # kappa(A) ~ 10-100
    # semi-orthogonal: orthonormal columns (tall) or rows (wide)
    G = P.mT @ P if shape[-2] >= shape[-1] else P @ P.mT
    eye = torch.eye(G.shape[-1], dtype=dtype)
    assert float((G - eye).norm(dim=(-2, -1)).max()) <= rtol("lowrank", dtype, n)


def test_polar_low_precision_and_bad_input():
    A = torch.randn(30, 20)
    P = sl.polar(A.bfloat16())
    assert P.dtype == torch.float32
    assert float((P.T @ P - torch.eye(20)).norm()) <= rtol("lowrank", torch.float32, 30)
    with pytest.raises(ValueError, match="A"):
        sl.polar(torch.randn(5))
    with pytest.raises(TypeError, match="A"):
        sl.polar(torch.ones(4, 4, dtype=torch.int32))


def _rotated_pair(m, p, r, angles, g):
    """Orthonormal Q1 (m, p) and Q2 (m, r) with prescribed principal angles."""
    k = len(angles)
    B = torch.linalg.qr(torch.randn(m, p + r, generator=g, dtype=F64)).Q
    Q1 = B[:, :p]
    W = B[:, p:p + k]
    th = torch.tensor(angles, dtype=F64)
    Q2 = torch.cat([Q1[:, :k] * torch.cos(th) + W * torch.sin(th), B[:, p + k:p + r]], dim=1)
    return Q1, Q2


@pytest.mark.parametrize("p,r", [(6, 6), (8, 5), (4, 7)])
def test_principal_angles_vs_scipy(p, r, gen):
    A = torch.randn(50, p, generator=gen(1), dtype=F64)
    B = torch.randn(50, r, generator=gen(2), dtype=F64)
    th = sl.principal_angles(A, B)
    ref = np.sort(scipy.linalg.subspace_angles(A.numpy(), B.numpy()))
    assert th.shape == (min(p, r),)
    assert (th[1:] >= th[:-1]).all()  # ascending
    np.testing.assert_allclose(th.numpy(), ref, atol=rtol("lowrank", F64, 50))


def test_principal_angles_small_and_large_angles(gen):
    """Tiny angles stay accurate (sine formula): arccos alone would give 0 or ~1e-8 noise."""
    angles = [1e-12, 1e-9, 1e-5, 0.3, 1.2, np.pi / 2]
    Q1, Q2 = _rotated_pair(60, 6, 6, angles, gen(3))
    th = sl.principal_angles(Q1, Q2)
    np.testing.assert_allclose(th.numpy(), np.sort(angles), rtol=1e-6, atol=rtol("lowrank", F64, 60) * 1e-3)
    # scipy (orth() by SVD) floors the two tiniest at 0 / sqrt(eps); it agrees on the rest
    ref = np.sort(scipy.linalg.subspace_angles(Q1.numpy(), Q2.numpy()))
    np.testing.assert_allclose(th.numpy()[2:], ref[2:], atol=rtol("lowrank", F64, 60))


def test_principal_angles_batched_broadcast_and_float32(gen):
    Q1 = torch.randn(3, 40, 5, generator=gen(4), dtype=F64)
    Q2 = torch.randn(40, 5, generator=gen(5), dtype=F64)
    th = sl.principal_angles(Q1, Q2)
    assert th.shape == (3, 5)
    for i in range(3):
        ref = np.sort(scipy.linalg.subspace_angles(Q1[i].numpy(), Q2.numpy()))
        np.testing.assert_allclose(th[i].numpy(), ref, atol=rtol("lowrank", F64, 40))
    th32 = sl.principal_angles(Q1.float(), Q2.float())
    assert th32.dtype == torch.float32
    np.testing.assert_allclose(th32.double().numpy(), th.numpy(), atol=rtol("lowrank", torch.float32, 40))
    # a subspace with itself: all angles zero, to the dtype's precision
    assert float(sl.principal_angles(Q1.float(), Q1.float()).abs().max()) <= rtol("lowrank", torch.float32, 40)


def test_principal_angles_bad_input():
    with pytest.raises(ValueError, match="Q2"):
        sl.principal_angles(torch.randn(10, 3), torch.randn(10, 11))
    with pytest.raises(ValueError, match="rows"):
        sl.principal_angles(torch.randn(10, 3), torch.randn(9, 3))
    with pytest.raises(TypeError, match="Q1"):
        sl.principal_angles(torch.ones(10, 3, dtype=torch.int64), torch.randn(10, 3))


def test_principal_angles_non_finite_names_itself():
    Q = torch.randn(6, 2)
    bad = Q.clone()
    bad[1, 1] = float("nan")
    for a, b, name in ((bad, Q, "Q1"), (Q, bad, "Q2")):
        with pytest.raises(ValueError, match=f"principal_angles: {name} has 1 non-finite"):
            sl.principal_angles(a, b)
    with pytest.raises(TypeError, match="principal_angles: check_finite must be a bool"):
        sl.principal_angles(Q, Q, check_finite=1)
    assert sl.principal_angles(Q, Q, check_finite=False).shape == (2,)
