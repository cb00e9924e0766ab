"""Subspace power family: ``sl.spm`` vs TensorLy's CP-ALS (``parafac``) and
``symmetric_parafac_power_iteration`` on planted symmetric tensors; ``sl.subspace_iteration``
vs ``torch.lobpcg`` and SciPy's ``eigsh`` (ARPACK) on matrices with a clear spectral gap.

Errors: tensors, ``|T_hat - T| / |T|`` against the noiseless planted tensor; eigenpairs,
the largest of the relative eigenvalue error and ``|A v - lambda v| / |lambda_max|``.
"""
from __future__ import annotations

import math
import warnings

import torch

import subspace_linalg as sl

from ..spec import Case, Peer

SUITE = "power"


# ---- symmetric CP --------------------------------------------------------------------------

def _planted(d, r, order, dtype, device, seed):
    g = torch.Generator().manual_seed(seed)
    A = torch.nn.functional.normalize(torch.randn(d, r, generator=g, dtype=torch.float64), dim=0)
    w = torch.randn(r, generator=g, dtype=torch.float64)
    w = w + 0.5 * torch.sign(w)
    return _cp_full(w, [A] * order), w, A


def _cp_full(w, factors):
    letters = "ijkl"[: len(factors)]
    spec = "r," + ",".join(f"{c}r" for c in letters) + "->" + letters
    return torch.einsum(spec, w, *factors)


def _as_cp(res, order):
    """(weights, [factor] * order) in float64 on the CPU from ours or TensorLy's result."""
    if isinstance(res, sl.CPResult):
        return res.weights.double().cpu(), [res.factors.double().cpu()] * order
    w, F = res
    w = torch.as_tensor(w).double()
    if isinstance(F, (list, tuple)):
        return w, [torch.as_tensor(f).double() for f in F]
    return w, [torch.as_tensor(F).double()] * order


def _cp_case(d, r, order, dtype, device, parafac_iters) -> Case:
    def setup():
        T64, _, _ = _planted(d, r, order, dtype, device, seed=1000 * d + r)
        T = T64.to(dtype=dtype, device=device)
        return {"T": T, "T64": T64, "Tnp": T.cpu().numpy()}

    def check(inp, res):
        w, F = _as_cp(res, order)
        T64 = inp["T64"]
        return float((_cp_full(w, F) - T64).norm() / T64.norm())

    def ours(inp):
        return sl.spm(inp["T"], rank=r, generator=torch.Generator().manual_seed(0))

    def parafac(inp):
        from tensorly.decomposition import parafac as tl_parafac

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cp = tl_parafac(inp["Tnp"], r, n_iter_max=parafac_iters, init="svd", tol=1e-12)
        return cp.weights, cp.factors

    def sym_power(inp):
        from tensorly.decomposition import symmetric_parafac_power_iteration

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return symmetric_parafac_power_iteration(inp["Tnp"], r)

    tol = 1e-10 if dtype == torch.float64 else 1e-4
    return Case(SUITE, f"spm order {order} d={d} r={r} {str(dtype).replace('torch.', '')}", setup, ours, check, tol,
                [Peer(f"tensorly parafac (ALS, {parafac_iters} it)", parafac, requires=("tensorly",)),
                 Peer("tensorly symmetric_parafac_power_iteration", sym_power, requires=("tensorly",))],
                params={"d": d, "r": r, "order": order, "dtype": str(dtype), "parafac_n_iter_max": parafac_iters},
                note="error vs the noiseless planted tensor; TensorLy runs the NumPy backend")


# ---- eigenpairs ----------------------------------------------------------------------------

def _gap_matrix(n, k, dtype, device, seed):
    """Dense symmetric: top-k eigenvalues 10 ... 5, the rest uniform in [0, 1)."""
    g = torch.Generator().manual_seed(seed)
    Q = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64)).Q
    ev = torch.cat([torch.linspace(10, 5, k, dtype=torch.float64), torch.rand(n - k, generator=g, dtype=torch.float64)])
    A = (Q * ev) @ Q.T
    A = (A + A.T) / 2
    return A, torch.linspace(10, 5, k, dtype=torch.float64)


def _sparse_gap(n, k, seed):
    """Sparse symmetric (CSR): 1-D Laplacian (spectrum in [0, 4]) plus k planted diagonal
    spikes 40 ... 20 far apart: the top-k eigenvalues are near the spikes."""
    idx = torch.arange(n)
    rows = torch.cat([idx, idx[:-1], idx[1:]])
    cols = torch.cat([idx, idx[1:], idx[:-1]])
    vals = torch.cat([torch.full((n,), 2.0), torch.full((n - 1,), -1.0), torch.full((n - 1,), -1.0)]).double()
    g = torch.Generator().manual_seed(seed)
    spikes = torch.randperm(n, generator=g)[:k]
    vals[spikes] += torch.linspace(40, 20, k, dtype=torch.float64)
    A = torch.sparse_coo_tensor(torch.stack([rows, cols]), vals, (n, n)).coalesce()
    return A


def _eig_error(A, k, w, V):
    w = torch.as_tensor(w).double().cpu()
    V = torch.as_tensor(V).double().cpu()
    order = w.abs().argsort(descending=True)[:k]
    w, V = w[order], V[:, order]
    R = A @ V - V * w
    lam_max = float(w.abs().max())
    return float(R.norm(dim=0).max()) / lam_max


def _eig_case(kind, n, k, dtype, device) -> Case:
    def setup():
        with warnings.catch_warnings():  # torch's "sparse CSR is beta" notices
            warnings.simplefilter("ignore")
            return _setup()

    def _setup():
        if kind == "dense":
            A64, ref = _gap_matrix(n, k, dtype, device, seed=n + k)
            A = A64.to(dtype=dtype, device=device)
            inp = {"A": A, "A64": A64, "Anp": A64.to(dtype).numpy()}
        else:
            coo = _sparse_gap(n, k, seed=n + k)
            A = coo.to(dtype).to_sparse_csr().to(device)
            try:
                import scipy.sparse as sp

                c = coo.to(dtype)
                inp_np = sp.csr_matrix((c.values().numpy(), c.indices().numpy()), shape=(n, n))
            except ImportError:
                inp_np = None
            inp = {"A": A, "A64": coo, "Anp": inp_np, "Acoo": coo.to(dtype).to(device)}
        inp["X0"] = torch.randn(n, k, generator=torch.Generator().manual_seed(5), dtype=dtype).to(device)
        return inp

    def check(inp, res):
        w, V = res
        return _eig_error(inp["A64"], k, w, V)

    def ours(inp):
        return sl.subspace_iteration(inp["A"], k, generator=torch.Generator().manual_seed(0))

    def lobpcg(inp):
        A = inp["A"] if kind == "dense" else inp["Acoo"]
        w, V = torch.lobpcg(A, k=k, X=inp["X0"], largest=True, tol=None)
        return w, V

    def eigsh(inp):
        from scipy.sparse.linalg import eigsh as sp_eigsh

        return sp_eigsh(inp["Anp"], k=k, which="LM")

    # float32: the solver's documented default stopping test is |Av - lambda v| <= 10 sqrt(n) eps
    # |lambda_max| (3.8e-4 at n = 1e5), checked here against the float64 matrix with 2x slack
    tol = 1e-9 if dtype == torch.float64 else max(1e-4, 2 * 10 * math.sqrt(n) * torch.finfo(dtype).eps)
    name = f"subspace_iteration {kind} n={n} k={k} {str(dtype).replace('torch.', '')}"
    return Case(SUITE, name, setup, ours, check, tol,
                [Peer("torch.lobpcg", lobpcg), Peer("scipy eigsh (ARPACK)", eigsh, requires=("scipy",))],
                params={"kind": kind, "n": n, "k": k, "dtype": str(dtype)},
                note="error: max |Av - lambda v| / |lambda_max| over the top-k pairs")


def _tracking_case(n, k, dtype, device) -> Case:
    """Subspace tracking: A drifts by 1e-9 |A| per step; every solver is warm-started from
    the eigenvectors of the previous step (ours: init=, lobpcg: X=, eigsh: v0=)."""
    def setup():
        A64, _ = _gap_matrix(n, k, dtype, device, seed=7 * n + k)
        E = torch.randn(n, n, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
        E = (E + E.T) / (E + E.T).norm() * A64.norm()
        At64 = A64 + 1e-9 * E
        w, V = torch.linalg.eigh(A64)
        prev = V[:, -k:].flip(-1)
        return {"A": At64.to(dtype=dtype, device=device), "A64": At64, "Anp": At64.to(dtype).numpy(),
                "prev": prev.to(dtype=dtype, device=device)}

    def check(inp, res):
        w, V = res
        return _eig_error(inp["A64"], k, w, V)

    def ours(inp):
        return sl.subspace_iteration(inp["A"], k, init=inp["prev"])

    def lobpcg(inp):
        return torch.lobpcg(inp["A"], k=k, X=inp["prev"], largest=True)

    def eigsh(inp):
        from scipy.sparse.linalg import eigsh as sp_eigsh

        return sp_eigsh(inp["Anp"], k=k, which="LM", v0=inp["prev"][:, 0].cpu().numpy())

    tol = 1e-9 if dtype == torch.float64 else 1e-4
    return Case(SUITE, f"subspace_iteration warm tracking n={n} k={k} {str(dtype).replace('torch.', '')}", setup,
                ours, check, tol,
                [Peer("torch.lobpcg (X=prev)", lobpcg), Peer("scipy eigsh (v0=prev)", eigsh, requires=("scipy",))],
                params={"kind": "tracking", "n": n, "k": k, "dtype": str(dtype), "drift": 1e-9},
                note="one step of tracking a drifting matrix, warm-started from the previous eigenvectors")


def cases(device: str, dtype: torch.dtype, quick: bool) -> list[Case]:
    if dtype not in (torch.float32, torch.float64):
        return []
    out = []
    if quick:
        cp = [(12, 8, 3, 100), (10, 15, 4, 100)]
        eig = [("dense", 600, 8), ("csr", 5000, 6)]
    else:
        cp = [(20, 15, 3, 500), (12, 30, 4, 500), (20, 60, 4, 500)]
        eig = [("dense", 1000, 8), ("dense", 3000, 16), ("csr", 100000, 8)]
    out += [_cp_case(d, r, o, dtype, device, it) for d, r, o, it in cp]
    out += [_eig_case(kind, n, k, dtype, device) for kind, n, k in eig]
    out.append(_tracking_case(600 if quick else 3000, 8 if quick else 16, dtype, device))
    return out
