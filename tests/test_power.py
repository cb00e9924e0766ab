"""Block subspace iteration: eigenpairs vs torch.linalg.eigh, warm-started tracking,
dense / batched / CSR / operator inputs, validation."""
from __future__ import annotations

import math

import pytest
import torch

import subspace_linalg as sl
from subspace_linalg.errors import NotConvergedWarning

from _tolerances import rtol
from conftest import devices


def spectrum_matrix(n, top, rest_max, g, batch=(), signs=False, dtype=torch.float64):
    """Symmetric matrix with eigenvalues `top` (a list) and the rest uniform in [0, rest_max)."""
    k = len(top)
    Q = torch.linalg.qr(torch.randn(batch + (n, n), generator=g, dtype=torch.float64)).Q
    ev = torch.cat([torch.tensor(top, dtype=torch.float64).expand(batch + (k,)),
                    rest_max * torch.rand(batch + (n - k,), generator=g, dtype=torch.float64)], -1)
    if signs:
        ev = ev * torch.where(torch.rand(ev.shape, generator=g) < 0.5, -1.0, 1.0).double()
    A = (Q * ev.unsqueeze(-2)) @ Q.mT
    return ((A + A.mT) / 2).to(dtype)


def top_by_magnitude(A, k):
    w, V = torch.linalg.eigh(A.double())
    idx = w.abs().argsort(dim=-1, descending=True)[..., :k]
    return w.gather(-1, idx), V.gather(-1, idx.unsqueeze(-2).expand(V.shape[:-1] + (k,)))


def max_sin_angle(U, V):
    """Largest principal angle sine between the spans of orthonormal U and V:
    |(I - V V^T) U|_2 (accurate for small angles, unlike sqrt(1 - cos^2))."""
    U, V = U.double(), V.double()
    return float(torch.linalg.matrix_norm(U - V @ (V.mT @ U), ord=2))


@pytest.mark.parametrize("device", devices())
def test_dense_float64_matches_eigh(device, gen):
    n, k = 300, 8
    A = spectrum_matrix(n, [10 - 0.5 * i for i in range(k)], 1.0, gen(1)).to(device)
    res = sl.subspace_iteration(A, k, generator=gen(2))
    w, V = top_by_magnitude(A.cpu(), k)
    assert res.eigenvalues.shape == (k,) and res.eigenvectors.shape == (n, k)
    torch.testing.assert_close(res.eigenvalues.cpu(), w, rtol=1e-8, atol=0)
    assert max_sin_angle(res.eigenvectors.cpu(), V) <= 1e-8
    # each pair: the residual bound it reports, and orthonormal vectors
    R = A @ res.eigenvectors - res.eigenvectors * res.eigenvalues
    assert float(R.norm(dim=0).max()) <= 1e-10 * 10 * 1.01
    assert bool(res.converged.all()) and res.iterations >= 1
    I = torch.eye(k, dtype=A.dtype, device=device)
    assert float((res.eigenvectors.mT @ res.eigenvectors - I).norm()) <= rtol("orth", torch.float64, n)


def test_indefinite_ordered_by_magnitude(gen):
    A = spectrum_matrix(120, [9.0, 8.0, 7.0, 6.0], 0.5, gen(3), signs=True)
    res = sl.subspace_iteration(A, 4, generator=gen(4))
    w, _ = top_by_magnitude(A, 4)
    torch.testing.assert_close(res.eigenvalues, w, rtol=1e-8, atol=0)
    assert bool((res.eigenvalues.abs()[:-1] >= res.eigenvalues.abs()[1:]).all())


def test_batched_and_float32(gen):
    A = spectrum_matrix(80, [5.0, 4.0, 3.0], 0.5, gen(5), batch=(3, 2))
    res = sl.subspace_iteration(A, 3, generator=gen(6))
    w, V = top_by_magnitude(A, 3)
    assert res.eigenvalues.shape == (3, 2, 3) and res.eigenvectors.shape == (3, 2, 80, 3)
    torch.testing.assert_close(res.eigenvalues, w, rtol=1e-8, atol=0)
    A32 = A.float()
    r32 = sl.subspace_iteration(A32, 3, generator=gen(7))
    assert r32.eigenvalues.dtype == torch.float32
    torch.testing.assert_close(r32.eigenvalues.double(), w, rtol=rtol("eig", torch.float32, 80), atol=0)


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")
def test_csr_and_operator_inputs(gen):
    n, k = 400, 5
    g = gen(8)
    # sparse symmetric: a tridiagonal Laplacian-like matrix plus a planted top block
    A = torch.zeros(n, n, dtype=torch.float64)
    idx = torch.arange(n)
    A[idx, idx] = 2.0
    A[idx[:-1], idx[:-1] + 1] = -1.0
    A[idx[1:], idx[1:] - 1] = -1.0
    A[idx[:k], idx[:k]] = torch.tensor([40.0, 30.0, 20.0, 15.0, 10.0], dtype=torch.float64)
    csr = A.to_sparse_csr()
    w, V = top_by_magnitude(A, k)
    res = sl.subspace_iteration(csr, k, generator=g)
    torch.testing.assert_close(res.eigenvalues, w, rtol=1e-8, atol=0)
    assert max_sin_angle(res.eigenvectors, V) <= 1e-8

    class Op:  # duck-typed operator: shape, dtype, device, matmul
        shape = (n, n)
        dtype = torch.float64
        device = torch.device("cpu")
        calls = 0

        def matmul(self, X):
            Op.calls += 1
            return A @ X

    op = Op()
    r2 = sl.subspace_iteration(op, k, generator=gen(9))
    torch.testing.assert_close(r2.eigenvalues, w, rtol=1e-8, atol=0)
    assert Op.calls == r2.iterations

    class Bare:  # only shape and @: dtype and device come from init
        shape = (n, n)

        def __matmul__(self, X):
            return A @ X

    r3 = sl.subspace_iteration(Bare(), k, init=r2.eigenvectors)
    torch.testing.assert_close(r3.eigenvalues, w, rtol=1e-8, atol=0)
    assert r3.iterations <= 2


def test_warm_start_tracking_two_iterations(gen):
    """A slowly drifting matrix (relative drift 1e-9 per step, gap ratio 1e-2): each
    warm-started call converges to the default float64 tolerance in <= 2 products."""
    n, k = 200, 6
    A = spectrum_matrix(n, [10.0, 9.0, 8.0, 7.0, 6.0, 5.0], 0.05, gen(10))
    E = torch.randn(n, n, generator=gen(11), dtype=torch.float64)
    E = (E + E.T) / (E + E.T).norm()
    cold = sl.subspace_iteration(A, k, generator=gen(12))
    prev = cold.eigenvectors
    for step in range(1, 6):
        At = A + (1e-9 * 10 * step) * E
        res = sl.subspace_iteration(At, k, init=prev)
        assert res.iterations <= 2, res.iterations
        w, V = top_by_magnitude(At, k)
        torch.testing.assert_close(res.eigenvalues, w, rtol=1e-10, atol=0)
        prev = res.eigenvectors
    assert cold.iterations > 2


def test_fixed_budget_and_not_converged_warning(gen):
    A = spectrum_matrix(150, [5.0, 4.9, 4.8], 4.7, gen(13))  # tiny gap: slow
    res = sl.subspace_iteration(A, 3, iters=2, generator=gen(14))  # fixed budget: no warning
    assert res.iterations == 2
    with pytest.warns(NotConvergedWarning, match=r"max residual .* tolerance 1\.000e-12"):
        r2 = sl.subspace_iteration(A, 3, iters=3, tol=1e-12, generator=gen(15))
    assert not bool(r2.converged.all()) and r2.iterations == 3


def test_reproducible(gen):
    A = spectrum_matrix(60, [3.0, 2.0], 0.5, gen(16))
    a = sl.subspace_iteration(A, 2, generator=torch.Generator().manual_seed(1))
    b = sl.subspace_iteration(A, 2, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a.eigenvectors, b.eigenvectors)


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")
def test_validation(gen):
    A = spectrum_matrix(20, [3.0], 0.5, gen(17))
    with pytest.raises(ValueError, match="subspace_iteration: A must be square"):
        sl.subspace_iteration(A[:, :10], 2)
    with pytest.raises(ValueError, match="k must be <= 20"):
        sl.subspace_iteration(A, 21)
    with pytest.raises(ValueError, match="k must be >= 1"):
        sl.subspace_iteration(A, 0)
    with pytest.raises(TypeError, match="subspace_iteration: A must have dtype"):
        sl.subspace_iteration(A.long(), 2)
    with pytest.raises(TypeError, match="subspace_iteration: A must be a torch.Tensor"):
        sl.subspace_iteration([[1.0]], 1)
    B = A.clone()
    B[0, 1] += 1.0
    with pytest.raises(ValueError, match="A must be symmetric"):
        sl.subspace_iteration(B, 2)
    with pytest.raises(ValueError, match="init must have shape"):
        sl.subspace_iteration(A, 2, init=torch.zeros(19, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="tol must be > 0"):
        sl.subspace_iteration(A, 2, tol=-1.0)
    for bad in (math.inf, math.nan):
        C = A.clone()
        C[3, 5] = C[5, 3] = bad
        with pytest.raises(ValueError, match="non-finite"):
            sl.subspace_iteration(C, 2)
        with pytest.raises(ValueError, match="non-finite"):
            sl.subspace_iteration(C.to_sparse_csr(), 2)
