"""subspace_linalg::lanczos_expand_ (the native block Lanczos expansion under sl.lanczos
for one dense or CSR matrix): the Lanczos relation and orthonormality, native against the
pure-torch steps (its CUDA path), breakdown directions, non-finite status, opcheck and
torch.compile; sl.lanczos through the native and the operator paths."""
from __future__ import annotations

import pytest
import torch

import subspace_linalg as sl
from subspace_linalg._ops import lanczos as lops
from subspace_linalg.reference import lanczos as ref

from _krylov_cases import dense_to_csr, poisson2d_scipy, spectrum_matrix, to_torch
from _tolerances import rtol
from conftest import devices

DTYPES = [torch.float32, torch.float64]


def _mats(A: torch.Tensor, layout: str):
    if layout == "dense":
        return (A.contiguous(), None, None, None)
    C = dense_to_csr(A)
    return (None, C.crow_indices().long().clone(), C.col_indices().long().clone(), C.values().clone())


def _start(n: int, p: int, rows: int, dtype, g):
    V = torch.zeros(rows, n, dtype=dtype)
    V[:p] = torch.linalg.qr(torch.randn(n, p, generator=g, dtype=torch.float64)).Q.mT.to(dtype)
    return V, torch.zeros(rows, rows, dtype=dtype)


def _check_relation(A, V, H, m, p, dtype):
    """A V[:m]^T = V[:m+p]^T H[:m+p, :m] and V[:m+p] orthonormal, in float64."""
    A64, V64, H64 = A.double(), V[: m + p].double(), H[: m + p, :m].double()
    scale = float(torch.linalg.matrix_norm(A64, 2))
    lhs = A64 @ V64[:m].mT
    err = float((lhs - V64.mT @ H64).abs().max()) / scale
    orth = float((V64 @ V64.mT - torch.eye(m + p, dtype=torch.float64)).abs().max())
    n = A.shape[0]
    assert err <= rtol("eig", dtype, n) * 10, err
    assert orth <= rtol("orth", dtype, n) * 10, orth


def _on(device, mats):
    return tuple(None if t is None else t.to(device) for t in mats)


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["dense", "csr"])
@pytest.mark.parametrize("p", [1, 3])
def test_native_expansion_keeps_the_lanczos_relation_and_matches_the_torch_steps(device, dtype, layout, p, gen):
    """The native kernel of ``device`` (CPU, or the CUDA twin) against the pure-torch steps."""
    g = gen(3 + p)
    n, rows = 300, 40
    A = spectrum_matrix(torch.linspace(-2.0, 5.0, n, dtype=torch.float64) ** 3, g).to(dtype)
    mats = _mats(A, layout)
    V, H = _start(n, p, rows, dtype, g)
    V2, H2 = V.clone(), H.clone()
    stop = rows - p
    Vd, Hd = V.to(device), H.to(device)
    out = torch.ops.subspace_linalg.lanczos_expand_(Vd, Hd, *_on(device, mats), p, 0, stop, 1e-6, 7, 0).tolist()
    V, H = Vd.cpu(), Hd.cpu()
    out2 = ref.lanczos_expand_(V2, H2, *mats, p, 0, stop, 1e-6, 7, 0).tolist()
    m = out[0]
    assert out == out2 == [m, 0, 0] and m + p > stop and m <= stop
    _check_relation(A, V, H, m, p, dtype)
    _check_relation(A, V2, H2, m, p, dtype)
    # the first block steps agree to rounding (Lanczos amplifies differences over the steps)
    k = 2 * p
    assert float((V[:k] - V2[:k]).abs().max()) <= rtol("eig", dtype, n) * 1e2


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype", DTYPES)
def test_breakdown_gets_a_fresh_philox_direction_coupled_to_nothing(device, dtype, gen):
    """Three distinct eigenvalues: the Krylov space of a 2-block is exhausted after three
    steps; every further slot is a Philox direction (draw counter), the same in the native
    kernel and the torch steps, and the basis stays orthonormal."""
    g = gen(11)
    n, p, rows = 60, 2, 14
    A = spectrum_matrix(torch.tensor([3.0] * 20 + [2.0] * 20 + [1.0] * 20, dtype=torch.float64), g).to(dtype)
    mats = _mats(A, "dense")
    V, H = _start(n, p, rows, dtype, g)
    V2, H2 = V.clone(), H.clone()
    Vd, Hd = V.to(device), H.to(device)
    out = torch.ops.subspace_linalg.lanczos_expand_(Vd, Hd, *_on(device, mats), p, 0, rows - p,
                                                    10 * 4 * torch.finfo(dtype).eps, 5, 3).tolist()
    V, H = Vd.cpu(), Hd.cpu()
    out2 = ref.lanczos_expand_(V2, H2, *mats, p, 0, rows - p, 10 * 4 * torch.finfo(dtype).eps, 5, 3).tolist()
    m, status, draws = out
    assert status == 0 and draws > 3 and out2 == out
    _check_relation(A, V, H, m, p, dtype)
    # a refilled slot couples to nothing: some subdiagonal block entries are exactly zero
    sub = torch.stack([H[j + p + s, j + s] for j in range(0, m, p) for s in range(p)])
    assert int((sub == 0).sum()) == draws - 3


def test_non_finite_product_stops_with_status_two(gen):
    A = spectrum_matrix(torch.linspace(1, 2, 50, dtype=torch.float64), gen(2))
    A[3, 7] = A[7, 3] = float("nan")
    for layout in ("dense", "csr"):
        mats = _mats(A, layout)
        V, H = _start(50, 2, 12, torch.float64, gen(3))
        assert lops.expand_cpu(V, H, *mats, 2, 0, 10, 1e-12, 1, 0).tolist()[1] == 2
        assert ref.lanczos_expand_(V.clone(), H.clone(), *mats, 2, 0, 10, 1e-12, 1, 0).tolist()[1] == 2
    C = dense_to_csr(A)
    with pytest.raises(ValueError, match="lanczos: A @ v has non-finite"):
        sl.lanczos(C, 2, generator=gen(4))


def test_bad_arguments_name_the_op():
    V, H = torch.zeros(8, 20, dtype=torch.float64), torch.zeros(8, 8, dtype=torch.float64)
    A = torch.eye(20, dtype=torch.float64)
    op = torch.ops.subspace_linalg.lanczos_expand_.default
    with pytest.raises(RuntimeError, match="lanczos_expand_: need p >= 1"):
        op(V, H, A, None, None, None, 0, 0, 6, 1e-12, 1, 0)
    with pytest.raises(RuntimeError, match="lanczos_expand_: H must be"):
        op(V, torch.zeros(7, 7, dtype=torch.float64), A, None, None, None, 2, 0, 6, 1e-12, 1, 0)
    with pytest.raises(RuntimeError, match="lanczos_expand_: dense must be"):
        op(V, H, torch.eye(19, dtype=torch.float64), None, None, None, 2, 0, 6, 1e-12, 1, 0)
    with pytest.raises(RuntimeError, match="lanczos_expand_: needs dense or the CSR arrays"):
        op(V, H, None, None, None, None, 2, 0, 6, 1e-12, 1, 0)


@pytest.mark.parametrize("layout", ["dense", "csr"])
def test_opcheck(layout, gen):
    g = gen(5)
    A = spectrum_matrix(torch.linspace(-1, 1, 40, dtype=torch.float64), g)
    V, H = _start(40, 2, 12, torch.float64, g)
    torch.library.opcheck(torch.ops.subspace_linalg.lanczos_expand_.default,
                          (V, H, *_mats(A, layout), 2, 0, 10, 1e-12, 3, 0))


def test_compile_fullgraph(gen):
    g = gen(6)
    A = spectrum_matrix(torch.linspace(-1, 1, 40, dtype=torch.float64), g)

    def step(V, H, A):
        return torch.ops.subspace_linalg.lanczos_expand_(V, H, A, None, None, None, 2, 0, 10, 1e-12, 3, 0)

    V, H = _start(40, 2, 12, torch.float64, g)
    V2, H2 = V.clone(), H.clone()
    out = torch.compile(step, fullgraph=True)(V, H, A)
    out2 = step(V2, H2, A)
    assert out.tolist() == out2.tolist()
    torch.testing.assert_close(V, V2)
    torch.testing.assert_close(H, H2)


@pytest.mark.parametrize("which", ["largest", "smallest", "both"])
def test_native_and_operator_paths_find_the_same_eigenpairs(which, gen):
    """One CSR matrix runs the native driver, the same matrix as a LinearOperator the
    torch block loop: both find the 2-D Poisson eigenvalues (with their multiplicity 2)."""
    P = poisson2d_scipy(20)
    A = to_torch(P, torch.float64, "csr")
    D = to_torch(P, torch.float64, "dense")
    op = sl.LinearOperator(D.shape, lambda x: x @ D, dtype=torch.float64)
    want = torch.linalg.eigvalsh(D)
    want = {"largest": want[-6:], "smallest": want[:6], "both": torch.cat([want[:3], want[-3:]])}[which]
    for M in (A, op):
        res = sl.lanczos(M, 6, which=which, generator=gen(8))
        assert float((res.eigenvalues - want).abs().max()) <= 1e-8
        r = torch.linalg.vector_norm(D @ res.eigenvectors - res.eigenvectors * res.eigenvalues, dim=0)
        assert float(r.max()) <= 1e-8 * 8


@pytest.mark.cuda
@pytest.mark.parametrize("layout", ["dense", "csr"])
def test_cuda_path_matches_the_cpu_driver(layout, gen):
    """On CUDA the expansion is the native CUDA kernel: the same eigenpairs as on the CPU."""
    P = poisson2d_scipy(16)
    A = to_torch(P, torch.float64, layout)
    res_cpu = sl.lanczos(A, 4, generator=gen(9))
    res_gpu = sl.lanczos(A.to("cuda"), 4, generator=gen(9))
    torch.testing.assert_close(res_gpu.eigenvalues.cpu(), res_cpu.eigenvalues, rtol=0, atol=1e-9)


@pytest.mark.cuda
def test_cuda_kernel_non_finite_product_stops_with_status_two(gen):
    A = spectrum_matrix(torch.linspace(1, 2, 50, dtype=torch.float64), gen(2))
    A[3, 7] = A[7, 3] = float("nan")
    for layout in ("dense", "csr"):
        V, H = _start(50, 2, 12, torch.float64, gen(3))
        out = torch.ops.subspace_linalg.lanczos_expand_(V.cuda(), H.cuda(), *_on("cuda", _mats(A, layout)), 2, 0, 10,
                                                       1e-12, 1, 0).tolist()
        assert out[1] == 2
