"""cg against scipy.sparse.linalg.cg: residual bound, iteration counts, batching, warnings,
breakdown, preconditioners, bad input; the native ops against their references."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse.linalg as spla
import torch

import subspace_linalg as sl
from subspace_linalg.errors import NotConvergedWarning
from subspace_linalg.reference import krylov as ref

from _krylov_cases import dense_to_csr, poisson1d_scipy, poisson2d_scipy, spd, to_torch
from _tolerances import rtol as table_rtol
from conftest import devices

# the rtol asked of cg per dtype in these tests (float32 cannot reach float64's)
RTOL = {torch.float64: 1e-8, torch.float32: 1e-4}


def scipy_cg_iters(A, b, rtol, maxiter=None):
    count = [0]

    def cb(_):
        count[0] += 1

    x, info = spla.cg(A, b, rtol=rtol, maxiter=maxiter, callback=cb)
    return x, info, count[0]


def residual_bound_ok(A64: torch.Tensor, b64: torch.Tensor, x: torch.Tensor, rtol: float, atol: float, dtype) -> tuple:
    """||b - A x|| <= max(rtol ||b||, atol) + the rounding floor of the working precision
    (C * sqrt(n) * eps * ||A|| ||x||: what recursive residuals can drift from true ones)."""
    x64 = x.to(torch.float64)
    res = torch.linalg.vector_norm(b64 - (A64 @ x64.unsqueeze(-1)).squeeze(-1), dim=-1)
    n = A64.shape[-1]
    normA = torch.linalg.matrix_norm(A64, ord=2)
    floor = table_rtol("solve", dtype, n) * normA * torch.linalg.vector_norm(x64, dim=-1)
    bound = torch.clamp_min(rtol * torch.linalg.vector_norm(b64, dim=-1), atol) + floor
    return bool((res <= bound).all()), res, bound


def _cases():
    out = []
    for dtype in (torch.float64, torch.float32):
        for layout in ("dense", "csr"):
            out.append(pytest.param("poisson1d", 120, layout, dtype, id=f"poisson1d-{layout}-{dtype}"))
            out.append(pytest.param("poisson2d", 15, layout, dtype, id=f"poisson2d-{layout}-{dtype}"))
        for kappa in (1.0, 1e2, 1e4):
            out.append(pytest.param("spd-log", kappa, "dense", dtype, id=f"spd-log-k{kappa:g}-{dtype}"))
        for kappa in (1e4, 1e6):
            out.append(pytest.param("spd-linear", kappa, "dense", dtype, id=f"spd-linear-k{kappa:g}-{dtype}"))
    return out


@pytest.mark.parametrize("kind,size,layout,dtype", _cases())
def test_cg_matches_scipy(kind, size, layout, dtype, gen):
    g = gen(f"{kind}-{size}-{layout}-{dtype}")
    if kind.startswith("spd"):
        A64 = spd(80, size, g, spread=kind[4:])
        Asp = A64.numpy()
        A = A64.to(dtype)
    else:
        Asp = poisson1d_scipy(size) if kind == "poisson1d" else poisson2d_scipy(size)
        A64 = torch.from_numpy(Asp.toarray())
        A = to_torch(Asp, dtype, layout)
    n = A64.shape[0]
    b64 = torch.randn(n, generator=g, dtype=torch.float64)
    rt = RTOL[dtype]
    res = sl.cg(A, b64.to(dtype), rtol=rt)
    assert bool(res.converged)
    assert res.x.dtype == dtype and res.x.shape == (n,)
    ok, r, bound = residual_bound_ok(A64, b64, res.x, rt, 0.0, dtype)
    assert ok, (float(r), float(bound))
    # iteration counts within a few of scipy's at equal rtol, same precision
    np_dtype = np.float64 if dtype == torch.float64 else np.float32
    _, info, its = scipy_cg_iters(Asp.astype(np_dtype), b64.numpy().astype(np_dtype), rt)
    # float32 at kappa 1e6 is rounding-dominated: iteration counts of two correct float32
    # CGs differ by tens of percent there, so only the residual bound is checked
    if info == 0 and not (dtype == torch.float32 and size >= 1e6):
        # within 3; where rounding dominates (more iterations than n: finite-precision CG's
        # delay, sensitive to the order of summation) within 10 %
        slack = 3 if its < n else max(3, int(0.1 * its))
        assert abs(int(res.iterations) - its) <= slack, (int(res.iterations), its)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_batched_512_systems_each_meets_its_bound(dtype, gen):
    g = gen(7)
    S, n = 512, 64
    kappa = torch.logspace(0, 4, S, dtype=torch.float64)
    A64 = spd(n, kappa, g, batch=(S,))
    b64 = torch.randn(S, n, generator=g, dtype=torch.float64)
    rt = RTOL[dtype]
    res = sl.cg(A64.to(dtype), b64.to(dtype), rtol=rt)
    assert res.converged.shape == (S,) and bool(res.converged.all())
    ok, r, bound = residual_bound_ok(A64, b64, res.x, rt, 0.0, dtype)
    assert ok, float((r / bound).max())
    assert res.iterations.shape == (S,) and res.iterations.dtype == torch.int64
    # per-system counts: they grow with kappa and match scipy's per system
    assert int(res.iterations[0]) <= 3 < int(res.iterations[-1])
    if dtype == torch.float64:
        idx = torch.arange(0, S, 37)
        for s in idx.tolist():
            _, info, its = scipy_cg_iters(A64[s].numpy(), b64[s].numpy(), rt)
            assert info == 0 and abs(int(res.iterations[s]) - its) <= max(3, its // 10), (s, int(res.iterations[s]), its)
    # the residual norm reported is the system's own
    assert bool((res.residual_norm <= rt * torch.linalg.vector_norm(b64.to(dtype), dim=-1)).all())


@pytest.mark.parametrize("path", ["native", "operator"])
def test_not_converged_warns_and_reports(path, gen):
    g = gen(3)
    A = spd(50, 1e4, g)
    b = torch.randn(50, generator=g, dtype=torch.float64)
    A_in = A if path == "native" else sl.LinearOperator(A.shape, lambda v: v @ A.mT, dtype=A.dtype)
    with pytest.warns(NotConvergedWarning, match=r"residual .*= [0-9.e+-]+ vs tolerance .*= [0-9.e+-]+"):
        res = sl.cg(A_in, b, maxiter=4)
    assert not bool(res.converged) and int(res.iterations) == 4
    true = float(torch.linalg.vector_norm(b - A @ res.x))
    floor = table_rtol("solve", torch.float64, 50) * float(torch.linalg.matrix_norm(A, ord=2) * res.x.norm())
    assert abs(float(res.residual_norm) - true) <= floor


def test_x0_untouched_and_used(gen):
    g = gen(4)
    A = spd(60, 1e3, g)
    b = torch.randn(60, generator=g, dtype=torch.float64)
    xs = torch.linalg.solve(A, b)
    x0 = xs + 1e-6 * torch.randn(60, generator=g, dtype=torch.float64)
    keep = x0.clone()
    r0 = sl.cg(A, b, rtol=1e-10)
    r1 = sl.cg(A, b, x0=x0, rtol=1e-10)
    assert torch.equal(x0, keep)
    assert bool(r1.converged) and int(r1.iterations) < int(r0.iterations)
    # x0 that already solves: zero iterations
    r2 = sl.cg(A, b, x0=xs, rtol=1e-6)
    assert int(r2.iterations) == 0 and torch.equal(r2.x, xs)


@pytest.mark.parametrize("path", ["native", "operator"])
def test_breakdown_per_system_no_nan(path, gen):
    g = gen(5)
    A = spd(40, 1e2, g, batch=(3,))
    A[1] = A[1] - 60.0 * torch.eye(40, dtype=torch.float64)  # indefinite
    b = torch.randn(3, 40, generator=g, dtype=torch.float64)
    if path == "operator":
        A_in = sl.LinearOperator(A.shape, lambda v: (A @ v.unsqueeze(-1)).squeeze(-1), dtype=A.dtype)
    else:
        A_in = A
    with pytest.warns(NotConvergedWarning, match="broke down"):
        res = sl.cg(A_in, b, rtol=1e-8)
    assert res.converged.tolist() == [True, False, True]
    assert bool(torch.isfinite(res.x).all()) and bool(torch.isfinite(res.residual_norm).all())
    assert int(res.iterations[1]) < 10 * 40


def test_preconditioners(gen):
    g = gen(6)
    n = 70
    A0 = spd(n, 10.0, g)
    d = torch.logspace(0, 3, n, dtype=torch.float64)
    A = d.sqrt()[:, None] * A0 * d.sqrt()[None, :]  # badly scaled: Jacobi fixes it
    b = torch.randn(n, generator=g, dtype=torch.float64)
    plain = sl.cg(A, b, rtol=1e-10)
    jac = sl.cg(A, b, rtol=1e-10, M="jacobi")
    dinv = 1.0 / torch.diagonal(A)
    as_callable = sl.cg(A, b, rtol=1e-10, M=lambda r: r * dinv)
    as_tensor = sl.cg(A, b, rtol=1e-10, M=torch.diag(dinv))
    csr = sl.cg(dense_to_csr(A), b, rtol=1e-10, M="jacobi")
    for r in (plain, jac, as_callable, as_tensor, csr):
        assert bool(r.converged)
        assert residual_bound_ok(A, b, r.x, 1e-10, 0.0, torch.float64)[0]
    assert int(jac.iterations) < int(plain.iterations) // 2
    assert abs(int(jac.iterations) - int(as_callable.iterations)) <= 1
    assert abs(int(jac.iterations) - int(as_tensor.iterations)) <= 1
    assert abs(int(jac.iterations) - int(csr.iterations)) <= 1
    # scipy with the same preconditioner
    M = spla.LinearOperator((n, n), matvec=lambda r: r * dinv.numpy())
    cnt = [0]
    spla.cg(A.numpy(), b.numpy(), rtol=1e-10, M=M, callback=lambda _: cnt.__setitem__(0, cnt[0] + 1))
    assert abs(int(jac.iterations) - cnt[0]) <= 3


def test_columns_batched_operators_and_callback(gen):
    g = gen(8)
    n, r = 48, 5
    A = spd(n, 1e3, g, batch=(2,))
    B = torch.randn(2, n, r, generator=g, dtype=torch.float64)
    res = sl.cg(A, B, rtol=1e-10)
    assert res.x.shape == (2, n, r) and res.iterations.shape == (2, r)
    assert residual_bound_ok(A.unsqueeze(1), B.mT, res.x.mT, 1e-10, 0.0, torch.float64)[0]
    # column j of system i equals solving vector-wise
    v = sl.cg(A[1], B[1, :, 3], rtol=1e-10)
    assert int(v.iterations) == int(res.iterations[1, 3])
    # one operator, a batch of vectors, matrix-free; callback once per iteration
    L = sl.LinearOperator((n, n), lambda x: x @ A[0].mT, dtype=A.dtype)
    calls = []
    bb = torch.randn(4, n, generator=g, dtype=torch.float64)
    out = sl.cg(L, bb, rtol=1e-10, callback=lambda xk: calls.append(xk.shape))
    assert len(calls) == int(out.iterations.max()) and calls[0] == (4, n)
    assert residual_bound_ok(A[0], bb, out.x, 1e-10, 0.0, torch.float64)[0]
    # zero right-hand side: zero iterations, zero solution
    z = sl.cg(A[0], torch.zeros(n, dtype=torch.float64))
    assert bool(z.converged) and int(z.iterations) == 0 and not bool(z.x.any())


def test_global_reduction_is_one_cg_on_the_block_diagonal(gen):
    g = gen(9)
    n, S = 30, 4
    A = spd(n, 1e2, g, batch=(S,))
    b = torch.randn(S, n, generator=g, dtype=torch.float64)
    res = sl.cg(A, b, rtol=1e-8, reduction="global")
    assert bool(res.converged.all()) and len(set(res.iterations.tolist())) == 1
    Abd = torch.block_diag(*A).numpy()
    _, info, its = scipy_cg_iters(Abd, b.reshape(-1).numpy(), 1e-8)
    assert info == 0 and abs(int(res.iterations[0]) - its) <= 2
    Ablock = torch.block_diag(*A)
    assert residual_bound_ok(Ablock, b.reshape(-1), res.x.reshape(-1), 1e-8, 0.0, torch.float64)[0]


def test_bad_input(gen):
    A = spd(10, 10.0, gen(10))
    b = torch.ones(10, dtype=torch.float64)
    with pytest.raises(ValueError, match="b must be"):
        sl.cg(A, torch.ones(7, dtype=torch.float64))
    with pytest.raises(ValueError, match="A must be square"):
        sl.cg(torch.ones(10, 9, dtype=torch.float64), b)
    with pytest.raises(TypeError, match="b must have A's dtype"):
        sl.cg(A, b.float())
    with pytest.raises(TypeError, match="x0 must have"):
        sl.cg(A, b, x0=b.float())
    with pytest.raises(ValueError, match="x0 must have b's shape"):
        sl.cg(A, b, x0=torch.ones(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="maxiter must be >= 0"):
        sl.cg(A, b, maxiter=-1)
    with pytest.raises(ValueError, match="rtol must be >= 0"):
        sl.cg(A, b, rtol=-1.0)
    bn = b.clone()
    bn[3] = float("nan")
    with pytest.raises(ValueError, match="b has 1 non-finite"):
        sl.cg(A, bn)
    with pytest.raises(ValueError, match="reduction must be one of"):
        sl.cg(A, b, reduction="mean")
    with pytest.raises(TypeError, match="A must be a torch.Tensor"):
        sl.cg([[1.0]], b)
    with pytest.raises(ValueError, match="M must be one of"):
        sl.cg(A, b, M="ilu")
    with pytest.raises(ValueError, match="needs the diagonal"):
        sl.cg(sl.LinearOperator((10, 10), lambda v: v, dtype=torch.float64), b, M="jacobi")
    with pytest.raises(TypeError, match="b must have dtype"):
        sl.cg(A, torch.ones(10, dtype=torch.int64))
    An = A.clone()
    An[0, 1] += 1.0
    with pytest.raises(ValueError, match="A must be symmetric"):
        sl.cg(An, b)


# --- the native ops ------------------------------------------------------------------

def _update_inputs(S, n, dtype, device, g):
    mk = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64).to(dtype=dtype, device=device)  # noqa: E731
    active = (torch.arange(S) % 3 != 1).to(device)
    return mk(S, n), mk(S, n), mk(S).abs(), mk(S, n), mk(S, n), mk(S), active


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("S,n", [(7, 33), (3, 5000), (1, 100000)])
def test_cg_update_matches_reference(device, dtype, S, n, gen):
    args = _update_inputs(S, n, dtype, device, gen(S * n))
    mine = [a.clone() for a in args]
    theirs = [a.clone() for a in args]
    torch.ops.subspace_linalg.cg_update_.default(*mine)
    ref.cg_update_(*theirs)
    tol = table_rtol("transform", dtype, n)
    for a, b in zip(mine[:3], theirs[:3]):
        assert float((a - b).norm() / b.norm()) <= tol
    inactive = ~args[-1]
    assert torch.equal(mine[0][inactive], args[0][inactive]) and torch.equal(mine[2][inactive], args[2][inactive])


@pytest.mark.parametrize("device", devices())
def test_cg_update_empty_systems_write_zero_rr(device, gen):
    """n = 0: rr[s] = r_s . r_s = 0 for every active system, as the reference (the CPU and
    CUDA launchers used to return before writing it), inactive ones untouched."""
    x, r, rr, p, Ap, alpha, active = _update_inputs(5, 0, torch.float64, device, gen(3))
    rr.fill_(7.0)
    torch.ops.subspace_linalg.cg_update_.default(x, r, rr, p, Ap, alpha, active)
    assert torch.equal(rr.cpu(), torch.where(active.cpu(), 0.0, 7.0).double())


def _step_inputs(S, n, dtype, device, g):
    mk = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64).to(dtype=dtype, device=device)  # noqa: E731
    p = mk(S, n)
    Ap = p * mk(S, n).abs()  # p.Ap > 0 ...
    Ap[1] = -Ap[1]  # ... except system 1: breakdown
    status = (torch.arange(S, dtype=torch.int32) % 5 == 4).to(torch.int32).to(device)  # some already converged
    iters = torch.full((S,), 3, dtype=torch.int32, device=device)
    rz = mk(S).abs() * 0.1
    tol2 = torch.full((S,), 1e-3, dtype=dtype, device=device)
    tol2[2] = 1e9  # system 2 converges at this step
    return [mk(S, n), mk(S, n), mk(S).abs(), status, iters, p, Ap, rz, tol2]


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("S,n", [(9, 33), (5, 5000), (3, 70000)])
def test_cg_step_and_direction_match_reference(device, dtype, S, n, gen):
    from subspace_linalg._ops import krylov as kops

    args = _step_inputs(S, n, dtype, device, gen(S * n + 1))
    mine, theirs, eager = ([a.clone() for a in args] for _ in range(3))
    torch.ops.subspace_linalg.cg_step_.default(*mine)
    ref.cg_step_(*theirs)
    kops.cg_step(*eager)
    tol = table_rtol("transform", dtype, n)
    for got in (mine, eager):
        for a, b in zip(got[:3], theirs[:3]):
            assert float((a - b).norm() / b.norm()) <= tol
        assert torch.equal(got[3], theirs[3]) and torch.equal(got[4], theirs[4])
    assert theirs[3].tolist()[:3] == [ref.CG_RUNNING, ref.CG_BREAKDOWN, ref.CG_CONVERGED]
    # direction: z, rz_new with one breakdown (rz_new <= 0)
    g = gen(S + n)
    p = torch.randn(S, n, generator=g, dtype=torch.float64).to(dtype=dtype, device=device)
    z = torch.randn(S, n, generator=g, dtype=torch.float64).to(dtype=dtype, device=device)
    rz_new = torch.rand(S, generator=g, dtype=torch.float64).to(dtype=dtype, device=device) + 0.1
    rz_new[0] = -1.0
    rz = torch.rand(S, generator=g, dtype=torch.float64).to(dtype=dtype, device=device) + 0.1
    st = torch.zeros(S, dtype=torch.int32, device=device)
    st[-1] = ref.CG_CONVERGED
    d_args = [p, z, rz_new, rz, st]
    mine, theirs, eager = ([a.clone() for a in d_args] for _ in range(3))
    torch.ops.subspace_linalg.cg_direction_.default(*mine)
    ref.cg_direction_(*theirs)
    kops.cg_direction(*eager)
    for got in (mine, eager):
        assert float((got[0] - theirs[0]).norm() / theirs[0].norm()) <= tol
        assert torch.equal(got[3], theirs[3]) and torch.equal(got[4], theirs[4])
    assert int(theirs[4][0]) == ref.CG_BREAKDOWN and torch.equal(theirs[0][-1], p[-1])


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cg_dense_native_matches_reference(device, dtype, gen):
    g = gen(11)
    S, n = 24, 40
    A = spd(n, torch.logspace(0, 2, S), g, batch=(S,)).to(dtype=dtype, device=device)
    b = torch.randn(S, n, generator=g, dtype=torch.float64).to(dtype=dtype, device=device)
    x0 = torch.zeros_like(b)
    minv = 1.0 / torch.diagonal(A, dim1=-2, dim2=-1)
    tol = 1e-4 * torch.linalg.vector_norm(b, dim=-1)
    for mv in (None, minv):
        x, it, res, st = torch.ops.subspace_linalg.cg_dense.default(A, b, x0, mv, tol, 200)
        xr, itr, resr, str_ = ref.cg_dense(A, b, x0, mv, tol, 200)
        assert torch.equal(st.cpu(), str_.cpu()) and bool((st == ref.CG_CONVERGED).all())
        assert int((it - itr).abs().max()) <= 1
        assert float((x - xr).norm() / xr.norm()) <= (1e-2 if dtype == torch.float32 else 1e-6)
    # G = 2 matrices, each shared by 12 consecutive systems
    x, it, res, st = torch.ops.subspace_linalg.cg_dense.default(A[:2], b, x0, None, tol, 200)
    xr, itr, resr, str_ = ref.cg_dense(A[:2], b, x0, None, tol, 200)
    assert torch.equal(st.cpu(), str_.cpu()) and int((it - itr).abs().max()) <= 1
    assert float((x - xr).norm() / xr.norm()) <= (1e-2 if dtype == torch.float32 else 1e-6)
    # shared matrix (stride 0), maxiter 0
    x, it, res, st = torch.ops.subspace_linalg.cg_dense.default(A[:1], b, x0, None, tol, 0)
    assert bool((it == 0).all()) and bool((st == ref.CG_RUNNING).all()) and torch.equal(x, x0)


@pytest.mark.parametrize("device", devices())
def test_opcheck(device, gen):
    g = gen(12)
    args = _update_inputs(5, 17, torch.float64, device, g)
    torch.library.opcheck(torch.ops.subspace_linalg.cg_update_.default, args)
    torch.library.opcheck(torch.ops.subspace_linalg.cg_step_.default, _step_inputs(6, 11, torch.float64, device, g))
    p, z = (torch.randn(4, 9, generator=g, dtype=torch.float64).to(device) for _ in range(2))
    rz_new, rz = (torch.rand(4, generator=g, dtype=torch.float64).to(device) + 0.1 for _ in range(2))
    torch.library.opcheck(torch.ops.subspace_linalg.cg_direction_.default,
                          (p, z, rz_new, rz, torch.zeros(4, dtype=torch.int32, device=device)))
    A = spd(8, 10.0, g, batch=(3,)).to(device)
    b = torch.randn(3, 8, generator=g, dtype=torch.float64).to(device)
    tol = torch.full((3,), 1e-8, dtype=torch.float64, device=device)
    torch.library.opcheck(torch.ops.subspace_linalg.cg_dense.default, (A, b, torch.zeros_like(b), None, tol, 50))
    torch.library.opcheck(torch.ops.subspace_linalg.cg_dense.default,
                          (A, b, torch.zeros_like(b), 1.0 / torch.diagonal(A, dim1=-2, dim2=-1), tol, 50))


def test_compile_fullgraph_cg_dense(gen):
    g = gen(13)
    A = spd(16, 10.0, g, batch=(4,))
    b = torch.randn(4, 16, generator=g, dtype=torch.float64)
    tol = torch.full((4,), 1e-10, dtype=torch.float64)

    def f(A, b, tol):
        x, it, res, st = torch.ops.subspace_linalg.cg_dense.default(A, b, torch.zeros_like(b), None, tol, 100)
        return x * 2.0, it

    x, it = torch.compile(f, fullgraph=True)(A, b, tol)
    assert residual_bound_ok(A, b, x / 2, 0.0, 1e-10, torch.float64)[0]


def test_hessian_vector_product_operator(gen):
    """A matrix-free Hessian (autograd HVPs, as PyHessian / DDS use): cg and slq run on it."""
    g = gen(14)
    X = torch.randn(40, 12, generator=g, dtype=torch.float64)
    w = torch.randn(12, generator=g, dtype=torch.float64, requires_grad=True)
    loss = torch.nn.functional.softplus(X @ w).sum() + 0.5 * (w * w).sum()
    (grad,) = torch.autograd.grad(loss, w, create_graph=True)

    def hvp(v):
        rows = v.reshape(-1, 12)
        out = [torch.autograd.grad(grad, w, rv, retain_graph=True)[0] for rv in rows]
        return torch.stack(out).reshape(v.shape)

    H = sl.LinearOperator((12, 12), hvp, dtype=torch.float64)
    Hd = H.to_dense()
    b = torch.randn(12, generator=g, dtype=torch.float64)
    res = sl.cg(H, b, rtol=1e-10)
    assert bool(res.converged) and not res.x.requires_grad
    assert residual_bound_ok(Hd, b, res.x, 1e-10, 0.0, torch.float64)[0]
    nodes, weights = sl.slq_spectrum(H, 4, 12, generator=gen(15))
    assert float(((weights * nodes).sum(-1).mean() - torch.trace(Hd) / 12).abs()) <= 0.5 * float(torch.trace(Hd) / 12)


# ---------------------------------------------------------------- cg_csr (the native CSR loop)
def _csr_parts(A):
    return A.crow_indices().long().clone(), A.col_indices().long().clone(), A.values().clone()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("precond", [False, True])
def test_cg_csr_native_matches_the_torch_loop(dtype, precond, gen):
    """The native whole-loop kernel and the pure-torch loop (its CUDA path) take the same
    iterations to the same solutions; several systems share the matrix."""
    g = gen(31)
    P = poisson2d_scipy(12)
    A = to_torch(P, dtype, "csr")
    crow, col, val = _csr_parts(A)
    n = P.shape[0]
    b = torch.randn(5, n, generator=g, dtype=torch.float64).to(dtype)
    b[3] = 0  # converged at the start
    x0 = torch.zeros_like(b)
    tol = torch.full((5,), 1e-4 if dtype == torch.float32 else 1e-10, dtype=dtype)
    minv = (1.0 / torch.from_numpy(P.diagonal()).to(dtype)).expand(5, n).contiguous() if precond else None
    got = torch.ops.subspace_linalg.cg_csr.default(crow, col, val, b, x0, minv, tol, 500)
    from subspace_linalg.reference import krylov as kref
    want = kref.cg_csr(crow, col, val, b, x0, minv, tol, 500)
    assert got[3].tolist() == want[3].tolist() == [1] * 5
    assert (got[1] - want[1]).abs().max() <= 1 and int(got[1][3]) == 0
    A64 = torch.from_numpy(P.toarray())
    for x in (got[0], want[0]):
        r = torch.linalg.vector_norm(b.double() - x.double() @ A64, dim=-1)
        assert bool((r <= tol.double() * 1.01 + table_rtol("solve", dtype, n) * 8 * torch.linalg.vector_norm(x.double(), dim=-1)).all())


def test_cg_csr_breakdown_and_maxiter_status(gen):
    P = poisson2d_scipy(6)
    A = -to_torch(P, torch.float64, "csr").to_dense()
    Ac = dense_to_csr(A)  # negative definite: p^T A p < 0 at the first step
    crow, col, val = _csr_parts(Ac)
    b = torch.randn(2, 36, generator=gen(1), dtype=torch.float64)
    out = torch.ops.subspace_linalg.cg_csr.default(crow, col, val, b, torch.zeros_like(b), None,
                                                   torch.full((2,), 1e-12, dtype=torch.float64), 100)
    assert out[3].tolist() == [2, 2] and bool(torch.isfinite(out[0]).all())
    crow, col, val = _csr_parts(to_torch(P, torch.float64, "csr"))
    out = torch.ops.subspace_linalg.cg_csr.default(crow, col, val, b, torch.zeros_like(b), None,
                                                   torch.full((2,), 1e-14, dtype=torch.float64), 3)
    assert out[3].tolist() == [0, 0] and out[1].tolist() == [3, 3]


def test_cg_csr_opcheck_and_compile(gen):
    P = poisson2d_scipy(5)
    crow, col, val = _csr_parts(to_torch(P, torch.float64, "csr"))
    b = torch.randn(3, 25, generator=gen(2), dtype=torch.float64)
    tol = torch.full((3,), 1e-10, dtype=torch.float64)
    args = (crow, col, val, b, torch.zeros_like(b), None, tol, 200)
    torch.library.opcheck(torch.ops.subspace_linalg.cg_csr.default, args)
    torch.library.opcheck(torch.ops.subspace_linalg.cg_csr.default,
                          args[:5] + (torch.full_like(b, 0.25),) + args[6:])

    def solve(crow, col, val, b, tol):
        return torch.ops.subspace_linalg.cg_csr(crow, col, val, b, torch.zeros_like(b), None, tol, 200)

    got = torch.compile(solve, fullgraph=True)(crow, col, val, b, tol)
    want = solve(crow, col, val, b, tol)
    for g_, w_ in zip(got, want):
        torch.testing.assert_close(g_, w_)


@pytest.mark.parametrize("m,precond", [(20, None), (20, "jacobi"), (100, None), (100, "jacobi")])
def test_cg_on_csr_takes_the_native_loop(m, precond, monkeypatch, gen):
    """A CSR matrix on the CPU: the native whole loop (m = 100: 10^4 unknowns, one system
    on all threads); the same iterations and solution as the loop of native steps (forced
    by a callback)."""
    from subspace_linalg import krylov as K

    calls = []
    real = K._native_csr
    monkeypatch.setattr(K, "_native_csr", lambda *a: (calls.append(1), real(*a))[1])
    P = poisson2d_scipy(m)
    d = torch.rand(m * m, generator=gen(3), dtype=torch.float64) + 0.5  # D P D: Jacobi matters
    A64 = torch.from_numpy(P.toarray()) * d[:, None] * d[None, :] if m <= 20 else None
    A = dense_to_csr(A64) if A64 is not None else to_torch(P, torch.float64, "csr")
    b = torch.randn(m * m, generator=gen(4), dtype=torch.float64)
    fast = sl.cg(A, b, rtol=1e-9, M=precond)
    assert calls == [1]
    slow = sl.cg(A, b, rtol=1e-9, M=precond, callback=lambda x: None)
    assert calls == [1]
    assert bool(fast.converged) and bool(slow.converged)
    assert abs(int(fast.iterations) - int(slow.iterations)) <= 1
    torch.testing.assert_close(fast.x, slow.x, rtol=0, atol=1e-7 * float(slow.x.abs().max()))


@pytest.mark.cuda
def test_cg_csr_cuda_path_matches_cpu(gen):
    P = poisson2d_scipy(10)
    crow, col, val = _csr_parts(to_torch(P, torch.float64, "csr"))
    b = torch.randn(2, 100, generator=gen(4), dtype=torch.float64)
    tol = torch.full((2,), 1e-10, dtype=torch.float64)
    cpu = torch.ops.subspace_linalg.cg_csr.default(crow, col, val, b, torch.zeros_like(b), None, tol, 300)
    gpu = torch.ops.subspace_linalg.cg_csr.default(*(t.cuda() for t in (crow, col, val, b)), torch.zeros_like(b).cuda(),
                                                   None, tol.cuda(), 300)
    torch.testing.assert_close(gpu[0].cpu(), cpu[0], rtol=0, atol=1e-8)


@pytest.mark.parametrize("shape_A,shape_b", [((0, 0), (0,)), ((3, 0, 0), (3, 0)), ((0, 4, 4), (0, 4)),
                                             ((0, 0), (0, 2)), ((5, 5), (0, 5))])
def test_empty_systems(shape_A, shape_b):
    """No unknowns (x = 0 is exact) or no systems: empty or zero results, all converged,
    zero iterations (it used to fail inside the loop or the native dense solver)."""
    A = torch.eye(shape_A[-1]).expand(shape_A).contiguous() if shape_A[-1] else torch.zeros(shape_A)
    b = torch.zeros(shape_b)
    res = sl.cg(A, b)
    assert res.x.shape == b.shape
    assert bool(res.converged.all()) and not bool(res.iterations.any()) and not bool(res.residual_norm.any())
    assert res.converged.shape == res.iterations.shape == res.residual_norm.shape
