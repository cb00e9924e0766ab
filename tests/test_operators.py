"""LinearOperator and as_operator: the duck type every operator-taking routine uses."""
from __future__ import annotations

import pytest
import torch

import subspace_linalg as sl
from subspace_linalg.operators import CSROperator, DenseOperator

from _krylov_cases import dense_to_csr
from _tolerances import rtol as table_rtol


def _sym(n, g, batch=()):
    X = torch.randn(*batch, n, n, generator=g, dtype=torch.float64)
    return X + X.mT


@pytest.mark.parametrize("kind", ["dense", "csr", "linop", "duck"])
def test_as_operator_kinds_agree(kind, gen):
    g = gen(31)
    n = 20
    A = _sym(n, g)
    if kind == "dense":
        src = A
    elif kind == "csr":
        src = dense_to_csr(A)
    elif kind == "linop":
        src = sl.LinearOperator((n, n), lambda x: x @ A.mT, dtype=A.dtype, device="cpu")
    else:
        class Duck:
            shape, dtype, device = (n, n), torch.float64, torch.device("cpu")

            def __matmul__(self, X):
                return A @ X
        src = Duck()
    op = sl.as_operator(src)
    assert tuple(op.shape) == (n, n) and op.dtype == torch.float64 and op.device.type == "cpu"
    tol = table_rtol("transform", torch.float64, n)
    v = torch.randn(n, generator=g, dtype=torch.float64)
    X = torch.randn(n, 3, generator=g, dtype=torch.float64)
    rows = torch.randn(2, 5, n, generator=g, dtype=torch.float64)
    assert float((op @ v - A @ v).norm() / (A @ v).norm()) <= tol            # vector
    assert float((op.matmul(X) - A @ X).norm() / (A @ X).norm()) <= tol      # block of columns
    assert (op @ X).shape == (n, 3)
    ref_rows = rows @ A.mT
    assert float((op.matvec(rows) - ref_rows).norm() / ref_rows.norm()) <= tol  # batch of row vectors
    assert float((op.to_dense() - A).norm() / A.norm()) <= tol
    if kind in ("dense", "csr"):
        assert torch.allclose(op.diagonal(), torch.diagonal(A))
    assert sl.as_operator(op) is op
    assert isinstance(sl.as_operator(A), DenseOperator) and isinstance(sl.as_operator(dense_to_csr(A)), CSROperator)


def test_batched_dense_and_linear_operator_rmatvec(gen):
    g = gen(32)
    A = torch.randn(4, 6, 9, generator=g, dtype=torch.float64)
    op = sl.as_operator(A, square=False)
    x = torch.randn(4, 9, generator=g, dtype=torch.float64)
    assert torch.allclose(op.matvec(x), (A @ x.unsqueeze(-1)).squeeze(-1))
    y = torch.randn(4, 6, generator=g, dtype=torch.float64)
    assert torch.allclose(op.rmatvec(y), (A.mT @ y.unsqueeze(-1)).squeeze(-1))
    L = sl.LinearOperator((6, 9), lambda v: v @ A[0].mT, dtype=torch.float64, rmatvec=lambda w: w @ A[0])
    assert torch.allclose(L.rmatmul(torch.eye(6, dtype=torch.float64)), A[0].mT)
    assert "LinearOperator(shape=(6, 9)" in repr(L)
    with pytest.raises(NotImplementedError):
        sl.LinearOperator((3, 3), lambda v: v, dtype=torch.float64).rmatvec(torch.ones(3))


def test_bad_operators():
    with pytest.raises(ValueError, match="shape must be"):
        sl.LinearOperator((3,), lambda v: v, dtype=torch.float64)
    with pytest.raises(TypeError, match="matvec must be callable"):
        sl.LinearOperator((3, 3), 5, dtype=torch.float64)
    with pytest.raises(TypeError, match="dtype must be a floating"):
        sl.LinearOperator((3, 3), lambda v: v, dtype=torch.int32)
    with pytest.raises(TypeError, match="A must be a torch.Tensor"):
        sl.as_operator("matrix")
    with pytest.raises(ValueError, match="A must be square"):
        sl.as_operator(torch.ones(3, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"A must be \(\.\.\., n, n\)"):
        sl.as_operator(torch.ones(3, dtype=torch.float64))
    with pytest.raises(TypeError, match="A must have dtype float32 or float64"):
        sl.as_operator(torch.ones(3, 3, dtype=torch.float16))


@pytest.mark.parametrize("device", [pytest.param("cpu"), pytest.param("cuda", marks=pytest.mark.cuda)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("S", [1, 3, 4, 8, 16, 29])  # 29 = 16 + 8 + 4 + 1: every chunk width of the CPU kernel
def test_csr_matvec_op(device, dtype, S, gen):
    from subspace_linalg.reference.krylov import csr_matvec as ref_csr

    g = gen(33)
    m, n = 50, 40
    D = torch.randn(m, n, generator=g, dtype=torch.float64)
    D[torch.rand(m, n, generator=g) < 0.8] = 0.0
    D[7] = 0.0  # an empty row
    A = dense_to_csr(D).to(dtype)
    crow, col, val = (t.clone().to(device) for t in (A.crow_indices(), A.col_indices(), A.values()))
    x = torch.randn(S, n, generator=g, dtype=torch.float64).to(dtype=dtype, device=device)
    y = torch.ops.subspace_linalg.csr_matvec.default(crow, col, val, x, m)
    want = x.double().cpu() @ D.T
    assert float((y.double().cpu() - want).norm() / want.norm()) <= table_rtol("transform", dtype, n)
    tol = table_rtol("transform", dtype, n)

    def close(a, b):  # entrywise, relative to the largest entry (summation orders differ)
        return float((a.double() - b.double()).abs().max()) <= tol * float(b.double().abs().max())

    assert close(y, ref_csr(crow, col, val, x, m))
    xi = x.mT.contiguous().mT  # interleaved vectors (the CSR operator's layout for several)
    yi = torch.ops.subspace_linalg.csr_matvec.default(crow, col, val, xi, m)
    assert close(yi, y)
    assert float((yi.double().cpu() - want).norm() / want.norm()) <= tol
    torch.library.opcheck(torch.ops.subspace_linalg.csr_matvec.default, (crow, col, val, x, m))
    torch.library.opcheck(torch.ops.subspace_linalg.csr_matvec.default, (crow, col, val, xi, m))
