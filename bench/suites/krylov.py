"""krylov: batched CG on many small dense systems (native whole loop) beside a Python loop
of scipy cg, linear_operator's linear_cg, the pure-torch composition of the same loop and
batched Cholesky (which wins for small dense systems); the fused CG update beside its torch
composition; CG on a matrix-free Kronecker-sum operator (MaTS) beside forming the dense
Kronecker matrix; 2-D Poisson CSR beside scipy cg; Lanczos beside scipy eigsh."""
from __future__ import annotations

import math
import warnings

import torch

import subspace_linalg as sl
from subspace_linalg.reference import krylov as ref

from ..spec import Case, Peer

SUITE = "krylov"
# the rtol asked of every solver in a row (float32 cannot reach float64's)
_RTOL = {torch.float64: 1e-6, torch.float32: 1e-4}


def _dname(dtype) -> str:
    return str(dtype).replace("torch.", "")


def _spd_batch(S: int, n: int, kmax: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(S, n, n, generator=g, dtype=torch.float64))
    kappa = torch.logspace(0, math.log10(kmax), S, dtype=torch.float64)
    ev = torch.exp(torch.log(kappa).unsqueeze(-1) * torch.linspace(0, 1, n, dtype=torch.float64))
    A = (Q * ev.unsqueeze(-2)) @ Q.mT
    return (A + A.mT) / 2


def _relres(A_apply, b, x) -> torch.Tensor:
    """Per-system ||b - A x|| / ||b|| in float64 on the CPU."""
    r = b.double().cpu() - A_apply(x.double().cpu())
    return torch.linalg.vector_norm(r, dim=-1) / torch.linalg.vector_norm(b.double().cpu(), dim=-1)


def _quiet(fn):
    def run(inp):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn(inp)
    return run


def _batched_case(S: int, n: int, kmax: float, dtype, device) -> Case:
    rtol = _RTOL[dtype]

    def setup():
        A64 = _spd_batch(S, n, kmax, seed=S + n)
        g = torch.Generator().manual_seed(1)
        b64 = torch.randn(S, n, generator=g, dtype=torch.float64)
        A, b = A64.to(dtype=dtype, device=device), b64.to(dtype=dtype, device=device)
        tol = rtol * torch.linalg.vector_norm(b, dim=-1)
        inp = {"A": A, "b": b, "A64": A64, "tol": tol, "x0": torch.zeros_like(b),
               "Anp": A64.numpy().astype("float64" if dtype == torch.float64 else "float32"),
               "bnp": b64.numpy().astype("float64" if dtype == torch.float64 else "float32")}
        inp["L"] = sl.LinearOperator(A.shape, lambda v: (A @ v.unsqueeze(-1)).squeeze(-1), dtype=dtype, device=device)
        # the matvecs' minimum traffic: every iteration of system s reads its n x n matrix once
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            its = int(sl.cg(A, b, rtol=rtol).iterations.sum())
        case.bytes_moved = its * n * n * A.element_size()
        return inp

    def check(inp, x):
        x = x if isinstance(x, torch.Tensor) else torch.as_tensor(x)
        return float(_relres(lambda v: (inp["A64"] @ v.unsqueeze(-1)).squeeze(-1), inp["b"], x.reshape(S, n)).max())

    def scipy_loop(inp):
        import scipy.sparse.linalg as spla

        return torch.from_numpy(__import__("numpy").stack(
            [spla.cg(inp["Anp"][s], inp["bnp"][s], rtol=rtol, maxiter=10 * n)[0] for s in range(S)]))

    def linear_cg(inp):
        from linear_operator.utils.linear_cg import linear_cg as lcg

        A = inp["A"]
        return lcg(lambda X: A @ X, inp["b"].unsqueeze(-1), tolerance=rtol, max_iter=10 * n).squeeze(-1)

    def torch_composition(inp):
        return ref.cg_dense(inp["A"], inp["b"], inp["x0"], None, inp["tol"], 10 * n)[0]

    def cholesky(inp):
        L = torch.linalg.cholesky(inp["A"])
        return torch.cholesky_solve(inp["b"].unsqueeze(-1), L).squeeze(-1)

    peers = [
        Peer("linear_operator linear_cg (same tolerance)", _quiet(linear_cg), requires=("linear_operator",)),
        Peer("same CG loop composed of torch ops", _quiet(torch_composition)),
        Peer("sl.cg operator loop (LinearOperator: bmm + cg_step/cg_direction)",
             _quiet(lambda inp: sl.cg(inp["L"], inp["b"], rtol=rtol).x)),
        Peer("torch batched cholesky + cholesky_solve", cholesky),
    ]
    if S <= 4096:  # a Python loop over 8192 systems takes minutes per timing
        peers.insert(0, Peer("scipy cg, Python loop over systems", _quiet(scipy_loop), requires=("scipy",)))
    case = Case(SUITE, f"cg batched {S}x(n={n}) kappa 1..{kmax:g} {_dname(dtype)}", setup,
                _quiet(lambda inp: sl.cg(inp["A"], inp["b"], rtol=rtol).x), check, tol=(2 if dtype == torch.float64 else 10) * rtol,
                peers=peers, params={"S": S, "n": n, "kappa_max": kmax, "rtol": rtol, "dtype": _dname(dtype)},
                note="error = max over systems of ||b-Ax||/||b||; ours: native whole loop (cg_dense); "
                     "GB/s: matrix bytes read by all iterations")
    return case


def _update_case(S: int, n: int, dtype, device) -> Case:
    def setup():
        g = torch.Generator().manual_seed(S + n)
        mk = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64).to(dtype=dtype, device=device)  # noqa: E731
        inp = {"args": (mk(S, n), mk(S, n), mk(S).abs(), mk(S, n), mk(S, n), mk(S),
                        (torch.arange(S) % 4 != 3).to(device))}
        return inp

    def fresh(args):
        return [a.clone() for a in args[:3]] + list(args[3:])

    def ours(inp):
        a = fresh(inp["args"])
        torch.ops.subspace_linalg.cg_update_.default(*a)
        return a

    def torch_ref(inp):
        a = fresh(inp["args"])
        ref.cg_update_(*a)
        return a

    def check(inp, out):
        want = torch_ref(inp)
        return max(float((o - w).norm() / w.norm()) for o, w in zip(out[:3], want[:3]))

    esize = torch.empty((), dtype=dtype).element_size()
    # r.r sums n terms in another order than torch's pairwise sum
    tol = 10 * math.sqrt(n) * torch.finfo(dtype).eps
    return Case(SUITE, f"fused cg_update {S}x{n} {_dname(dtype)}", setup, ours, check, tol=tol,
                peers=[Peer("torch composition (where/add/sub/sum)", torch_ref)],
                bytes_moved=6 * S * n * esize, params={"S": S, "n": n, "dtype": _dname(dtype)},
                note="timings include cloning x, r, rr (both sides)")


def _step_case(S: int, n: int, dtype, device) -> Case:
    """One iteration's vector work of the operator loop: native cg_step + cg_direction (as
    the driver calls them) beside the same two steps composed of torch ops."""
    from subspace_linalg._ops import krylov as kops

    def setup():
        g = torch.Generator().manual_seed(S * 7 + n)
        mk = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64).to(dtype=dtype, device=device)  # noqa: E731
        p = mk(S, n)
        return {"x": mk(S, n), "r": mk(S, n), "p": p, "Ap": p * (mk(S, n).abs() + 0.1),
                "rz": mk(S).abs() + 1, "tol2": torch.full((S,), 1e-30, dtype=dtype, device=device)}

    def run(inp, step, direction):
        x, r, p = inp["x"].clone(), inp["r"].clone(), inp["p"].clone()
        rr = torch.empty(S, dtype=dtype, device=device)
        rz = inp["rz"].clone()
        st = torch.zeros(S, dtype=torch.int32, device=device)
        it = torch.zeros(S, dtype=torch.int32, device=device)
        step(x, r, rr, st, it, p, inp["Ap"], rz, inp["tol2"])
        direction(p, r, rr, rz, st)
        return x, r, p

    def check(inp, out):
        want = run(inp, ref.cg_step_, ref.cg_direction_)
        return max(float((o - w).norm() / w.norm()) for o, w in zip(out, want))

    esize = torch.empty((), dtype=dtype).element_size()
    return Case(SUITE, f"cg_step + cg_direction {S}x{n} {_dname(dtype)}", setup,
                lambda inp: run(inp, kops.cg_step, kops.cg_direction), check,
                tol=10 * math.sqrt(n) * torch.finfo(dtype).eps,
                peers=[Peer("same two steps composed of torch ops", lambda inp: run(inp, ref.cg_step_, ref.cg_direction_))],
                bytes_moved=9 * S * n * esize, params={"S": S, "n": n, "dtype": _dname(dtype)},
                note="timings include cloning x, r, p (both sides)")


def _csr_case(m: int, S: int, dtype, device) -> Case:
    """The CSR operator's product (native csr_matvec) beside torch's sparse CSR matmul."""
    N = m * m

    def setup():
        import numpy as np
        import scipy.sparse as sp

        T = sp.diags([-np.ones(m - 1), 2 * np.ones(m), -np.ones(m - 1)], [-1, 0, 1])
        I = sp.identity(m)
        P = (sp.kron(T, I) + sp.kron(I, T)).tocsr()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            A = torch.sparse_csr_tensor(torch.from_numpy(P.indptr).long(), torch.from_numpy(P.indices).long(),
                                        torch.from_numpy(P.data).to(dtype), size=P.shape).to(device)
        g = torch.Generator().manual_seed(m)
        x = torch.randn(S, N, generator=g, dtype=torch.float64).to(dtype=dtype, device=device)
        return {"A": A, "x": x, "xT": x.T.contiguous(), "P": P, "crow": A.crow_indices().clone(),
                "col": A.col_indices().clone(), "val": A.values().clone()}

    def check(inp, y):
        want = inp["x"].double().cpu().numpy() @ inp["P"].T
        y = y.double().cpu().numpy()
        return float(((y - want) ** 2).sum() ** 0.5 / (want ** 2).sum() ** 0.5)

    from subspace_linalg._ops import krylov as kops

    def ours(inp):
        # several vectors: the interleaved layout, the same (N, S) storage torch's product gets
        x = inp["x"] if S == 1 else inp["xT"].mT
        return kops.csr_matvec_fast(inp["crow"], inp["col"], inp["val"], x, N)

    return Case(SUITE, f"csr_matvec 2-D Poisson {m}x{m} (N={N}) x {S} vectors {_dname(dtype)}", setup,
                ours, check,
                tol=10 * torch.finfo(dtype).eps,
                peers=[Peer("torch sparse CSR @ dense", lambda inp: (inp["A"] @ inp["xT"]).T)],
                params={"m": m, "N": N, "S": S, "dtype": _dname(dtype)},
                note="the CSR operator uses the native kernel on the CPU (several vectors interleaved) and "
                     "cuSPARSE's SpMM for several vectors on a GPU")


def _mats_case(d: int, T: int, dtype, device) -> Case:
    rtol = _RTOL[dtype]
    N = d * d

    def setup():
        g = torch.Generator().manual_seed(d * 10 + T)

        def spd(k):
            Q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
            ev = torch.linspace(1, k, d, dtype=torch.float64)
            return ((Q * ev) @ Q.T + ((Q * ev) @ Q.T).T) / 2

        As = torch.stack([spd(10.0) for _ in range(T)]).to(dtype=dtype, device=device)
        Bs = torch.stack([spd(10.0) for _ in range(T)]).to(dtype=dtype, device=device)
        b = torch.randn(N, generator=g, dtype=torch.float64).to(dtype=dtype, device=device)

        def matvec(x):
            X = x.reshape(x.shape[:-1] + (d, d)).unsqueeze(-3)
            return (As @ X @ Bs).sum(-3).reshape(x.shape)

        op = sl.LinearOperator((N, N), matvec, dtype=dtype, device=device)
        return {"op": op, "As": As, "Bs": Bs, "b": b, "matvec": matvec}

    def check(inp, x):
        r = inp["b"] - inp["matvec"](x)
        return float(torch.linalg.vector_norm(r.double()) / torch.linalg.vector_norm(inp["b"].double()))

    def dense_kron(inp):
        K = sum(torch.kron(inp["As"][i], inp["Bs"][i].T.contiguous()) for i in range(T))
        return torch.cholesky_solve(inp["b"].unsqueeze(-1), torch.linalg.cholesky(K)).squeeze(-1)

    return Case(SUITE, f"cg matrix-free Kronecker sum (MaTS) T={T} d={d} (N={N}) {_dname(dtype)}", setup,
                _quiet(lambda inp: sl.cg(inp["op"], inp["b"], rtol=rtol).x), check,
                tol=(2 if dtype == torch.float64 else 10) * rtol,
                peers=[Peer("form dense sum_i kron(A_i, B_i^T) + cholesky solve", dense_kron)],
                params={"d": d, "T": T, "N": N, "rtol": rtol, "dtype": _dname(dtype)},
                note="operator X -> sum_i A_i X B_i, never formed by ours")


def _poisson_case(m: int, dtype, device) -> Case:
    rtol = _RTOL[dtype]
    N = m * m

    def setup():
        import numpy as np
        import scipy.sparse as sp

        T = sp.diags([-np.ones(m - 1), 2 * np.ones(m), -np.ones(m - 1)], [-1, 0, 1])
        I = sp.identity(m)
        P = (sp.kron(T, I) + sp.kron(I, T)).tocsr()
        npd = np.float64 if dtype == torch.float64 else np.float32
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            A = torch.sparse_csr_tensor(torch.from_numpy(P.indptr).long(), torch.from_numpy(P.indices).long(),
                                        torch.from_numpy(P.data).to(dtype), size=P.shape).to(device)
        g = torch.Generator().manual_seed(m)
        b64 = torch.randn(N, generator=g, dtype=torch.float64)
        return {"A": A, "P": P.astype(npd), "b": b64.to(dtype=dtype, device=device), "bnp": b64.numpy().astype(npd),
                "P64": P}

    def check(inp, x):
        x = torch.as_tensor(x).double().cpu().numpy()
        b = inp["b"].double().cpu().numpy()
        import numpy as np

        return float(np.linalg.norm(b - inp["P64"] @ x) / np.linalg.norm(b))

    def scipy_cg(inp):
        import scipy.sparse.linalg as spla

        return torch.from_numpy(spla.cg(inp["P"], inp["bnp"], rtol=rtol, maxiter=10 * N)[0])

    return Case(SUITE, f"cg 2-D Poisson CSR {m}x{m} (N={N}) {_dname(dtype)}", setup,
                _quiet(lambda inp: sl.cg(inp["A"], inp["b"], rtol=rtol).x), check,
                tol=(2 if dtype == torch.float64 else 10) * rtol,
                peers=[Peer("scipy.sparse.linalg.cg (CSR)", _quiet(scipy_cg), requires=("scipy",))],
                params={"m": m, "N": N, "rtol": rtol, "dtype": _dname(dtype)})


def _lanczos_case(m: int, k: int, which: str, dtype, device) -> Case:
    N = m * m
    i = torch.arange(1, m + 1, dtype=torch.float64)
    lam1 = 2 - 2 * torch.cos(i * math.pi / (m + 1))
    exact = torch.sort((lam1[:, None] + lam1[None, :]).reshape(-1)).values
    want = exact[-k:] if which == "largest" else exact[:k]

    def setup():
        import numpy as np
        import scipy.sparse as sp

        T = sp.diags([-np.ones(m - 1), 2 * np.ones(m), -np.ones(m - 1)], [-1, 0, 1])
        I = sp.identity(m)
        P = (sp.kron(T, I) + sp.kron(I, T)).tocsr()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            A = torch.sparse_csr_tensor(torch.from_numpy(P.indptr).long(), torch.from_numpy(P.indices).long(),
                                        torch.from_numpy(P.data).to(dtype), size=P.shape).to(device)
        npd = np.float64 if dtype == torch.float64 else np.float32
        return {"A": A, "P": P.astype(npd)}

    def check(inp, lam):
        lam = torch.sort(torch.as_tensor(lam).double().cpu()).values
        return float(((lam - want).abs() / want.abs()).max())

    def eigsh(inp):
        import scipy.sparse.linalg as spla

        return torch.from_numpy(spla.eigsh(inp["P"], k, which="LA" if which == "largest" else "SA",
                                           return_eigenvectors=True)[0])

    return Case(SUITE, f"lanczos {which} {k} of 2-D Poisson {m}x{m} (N={N}) {_dname(dtype)}", setup,
                _quiet(lambda inp: sl.lanczos(inp["A"], k, which=which,
                                              generator=torch.Generator().manual_seed(0)).eigenvalues),
                check, tol=1e-8 if dtype == torch.float64 else 1e-3,
                peers=[Peer("scipy.sparse.linalg.eigsh (ARPACK)", eigsh, requires=("scipy",))],
                params={"m": m, "k": k, "which": which, "dtype": _dname(dtype)},
                note="error = max relative eigenvalue error vs the analytic spectrum")


def cases(device: str, dtype: torch.dtype, quick: bool) -> list[Case]:
    if dtype not in (torch.float32, torch.float64):
        return []
    out = []
    if quick:
        out.append(_batched_case(512, 64, 1e4, dtype, device))
        out.append(_update_case(512, 64, dtype, device))
        out.append(_step_case(512, 64, dtype, device))
        out.append(_csr_case(64, 1, dtype, device))
        out.append(_mats_case(32, 3, dtype, device))
        out.append(_poisson_case(64, dtype, device))
        out.append(_lanczos_case(32, 6, "largest", dtype, device))
        return out
    out.append(_batched_case(512, 64, 1e4, dtype, device))
    out.append(_batched_case(4096, 32, 1e3, dtype, device))
    if str(device).startswith("cuda"):
        out.append(_batched_case(8192, 128, 1e4, dtype, device))
    out.append(_update_case(512, 64, dtype, device))
    out.append(_update_case(4, 1 << 20, dtype, device))
    out.append(_step_case(512, 64, dtype, device))
    out.append(_step_case(4, 1 << 20, dtype, device))
    out.append(_csr_case(256, 1, dtype, device))
    out.append(_csr_case(128, 16, dtype, device))
    out.append(_mats_case(64, 3, dtype, device))
    out.append(_poisson_case(128, dtype, device))
    out.append(_lanczos_case(48, 6, "largest", dtype, device))
    out.append(_lanczos_case(48, 6, "smallest", dtype, device))
    return out
