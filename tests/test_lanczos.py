"""lanczos against scipy eigsh / torch.linalg.eigh; Hutchinson and SLQ estimators."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse.linalg as spla
import torch

import subspace_linalg as sl
from subspace_linalg.errors import NotConvergedWarning

from _krylov_cases import poisson2d_scipy, spectrum_matrix, to_torch
from _tolerances import rtol as table_rtol


# the acceptance bounds for the 2-D Poisson matrix (48^2) against scipy eigsh
POISSON_EIGENVALUE_RTOL = 1e-8
POISSON_RESIDUAL_MAX = 1e-6
# what lanczos's default tol (1e-10 relative residual in float64) guarantees, with rounding
LANCZOS_F64 = 1e-10


def _gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def poisson48():
    P = poisson2d_scipy(48)
    ref = {w: np.sort(spla.eigsh(P, 6, which=w, return_eigenvectors=False, tol=1e-14)) for w in ("LA", "SA")}
    return P, ref


@pytest.mark.parametrize("layout", ["csr", "dense"])
@pytest.mark.parametrize("which", ["largest", "smallest"])
def test_poisson_2d_48_matches_eigsh(poisson48, layout, which):
    P, ref = poisson48
    A = to_torch(P, torch.float64, layout)
    res = sl.lanczos(A, 6, which=which, generator=_gen(1))
    want = ref["LA" if which == "largest" else "SA"]
    lam, V = res.eigenvalues, res.eigenvectors
    assert lam.shape == (6,) and V.shape == (P.shape[0], 6) and lam.dtype == torch.float64
    assert bool((lam[1:] >= lam[:-1]).all())  # ascending
    rel = np.abs(lam.numpy() - want) / np.abs(want)
    assert rel.max() <= POISSON_EIGENVALUE_RTOL, rel
    Ad = torch.from_numpy(P.toarray())
    resid = torch.linalg.vector_norm(Ad @ V - V * lam, dim=0)
    assert float(resid.max()) <= POISSON_RESIDUAL_MAX
    assert float((V.T @ V - torch.eye(6, dtype=torch.float64)).abs().max()) <= table_rtol("orth", torch.float64, P.shape[0])


def test_float32_and_both_ends(gen):
    g = gen(21)
    evals = torch.linspace(-3, 5, 200, dtype=torch.float64)
    A64 = spectrum_matrix(evals, g)
    res = sl.lanczos(A64.float(), 5, which="both", generator=g)
    want = torch.cat([evals[:2], evals[-3:]])
    assert res.eigenvalues.dtype == torch.float32
    err = float((res.eigenvalues.double() - want).abs().max() / evals.abs().max())
    assert err <= table_rtol("eig", torch.float32, 200)
    r = torch.linalg.vector_norm(A64.float() @ res.eigenvectors - res.eigenvectors * res.eigenvalues, dim=0)
    assert float(r.max()) <= table_rtol("eig", torch.float32, 200) * float(evals.abs().max())


@pytest.mark.parametrize("which", ["largest", "smallest", "both"])
def test_degenerate_spectrum_no_ghosts_no_nan(which, gen):
    g = gen(22)
    evals = torch.tensor([3.0] * 40 + [2.0] * 40 + [1.0] * 40, dtype=torch.float64)
    A = spectrum_matrix(evals, g)
    res = sl.lanczos(A, 6, which=which, generator=g)
    lam, V = res.eigenvalues, res.eigenvectors
    assert bool(torch.isfinite(lam).all()) and bool(torch.isfinite(V).all())
    top = {"largest": [3.0] * 6, "smallest": [1.0] * 6, "both": [1.0] * 3 + [3.0] * 3}[which]
    tol = table_rtol("eig", torch.float64, 120) * 3.0
    assert float((lam - torch.tensor(top, dtype=torch.float64)).abs().max()) <= tol
    # no ghosts: the k vectors are distinct (orthonormal) eigenvectors
    assert float((V.T @ V - torch.eye(6, dtype=torch.float64)).abs().max()) <= table_rtol("orth", torch.float64, 120)
    assert float(torch.linalg.vector_norm(A @ V - V * lam, dim=0).max()) <= LANCZOS_F64 * 3.0


def test_identity_and_tiny_operators(gen):
    g = gen(23)
    eye = torch.eye(30, dtype=torch.float64)
    res = sl.lanczos(eye, 4, generator=g)  # immediate breakdown: every vector is an eigenvector
    assert torch.allclose(res.eigenvalues, torch.ones(4, dtype=torch.float64))
    assert float((res.eigenvectors.T @ res.eigenvectors - torch.eye(4, dtype=torch.float64)).abs().max()) <= \
        table_rtol("eig", torch.float64, 30)
    A = spectrum_matrix(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64), g)
    res = sl.lanczos(A, 3, which="smallest", generator=g)  # k = n
    assert torch.allclose(res.eigenvalues, torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64), atol=1e-12)


def test_batched_matrix_free_and_reproducible(gen):
    g = gen(24)
    X = torch.randn(3, 60, 60, generator=g, dtype=torch.float64)
    A = X + X.mT
    res = sl.lanczos(A, 3, generator=_gen(5))
    ref = torch.linalg.eigvalsh(A)[:, -3:]
    assert res.eigenvalues.shape == (3, 3) and res.eigenvectors.shape == (3, 60, 3)
    assert float((res.eigenvalues - ref).abs().max()) <= LANCZOS_F64 * 10 * float(ref.abs().max())
    again = sl.lanczos(A, 3, generator=_gen(5))
    assert torch.equal(res.eigenvectors, again.eigenvectors)
    L = sl.LinearOperator((60, 60), lambda v: v @ A[0].mT, dtype=torch.float64)
    r0 = sl.lanczos(L, 2, which="smallest", generator=g)
    assert float((r0.eigenvalues - torch.linalg.eigvalsh(A[0])[:2]).abs().max()) <= LANCZOS_F64 * 10 * float(ref.abs().max())


def test_not_converged_warns(gen):
    A = spectrum_matrix(torch.linspace(0, 1, 300, dtype=torch.float64) ** 3, gen(25))
    with pytest.warns(NotConvergedWarning, match=r"residual .*= [0-9.e+-]+ vs tolerance"):
        res = sl.lanczos(A, 4, which="smallest", maxiter=2, generator=gen(26))
    assert bool(torch.isfinite(res.eigenvalues).all())


def test_bad_input():
    A = torch.eye(10, dtype=torch.float64)
    with pytest.raises(ValueError, match="k must be <= 10"):
        sl.lanczos(A, 11)
    with pytest.raises(ValueError, match="k must be >= 1"):
        sl.lanczos(A, 0)
    with pytest.raises(ValueError, match="which must be one of"):
        sl.lanczos(A, 2, which="LM")
    with pytest.raises(ValueError, match="A must be square"):
        sl.lanczos(torch.ones(10, 4, dtype=torch.float64), 2)
    with pytest.raises(TypeError, match="A must have dtype float32 or float64"):
        sl.lanczos(torch.eye(4, dtype=torch.int64), 2)
    with pytest.raises(ValueError, match="maxiter must be >= 1"):
        sl.lanczos(A, 2, maxiter=0)
    with pytest.raises(TypeError, match="generator must be"):
        sl.lanczos(A, 2, generator=3)
    with pytest.raises(ValueError, match="num_samples must be >= 1"):
        sl.hutchinson_trace(A, 0)
    with pytest.raises(ValueError, match="steps must be >= 1"):
        sl.slq_spectrum(A, 2, 0)


def test_hutchinson_unbiased_within_confidence_interval(gen):
    g = gen(27)
    n, s, seeds = 40, 8, 150
    X = torch.randn(n, n, generator=g, dtype=torch.float64)
    A = X + X.T + 3 * torch.diag(torch.rand(n, generator=g, dtype=torch.float64))
    tr = float(torch.trace(A))
    est = torch.stack([sl.hutchinson_trace(A, s, generator=_gen(1000 + i)) for i in range(seeds)])
    var = 2 * (float((A * A).sum()) - float((torch.diagonal(A) ** 2).sum())) / s  # exact variance per call
    se = math.sqrt(var / seeds)
    assert abs(float(est.mean()) - tr) <= 4 * se
    # the sample variance agrees with the formula (no hidden bias in the probes)
    assert 0.5 * var <= float(est.var()) <= 2.0 * var
    # batched operators and CSR
    Ab = torch.stack([A, 2 * A])
    eb = sl.hutchinson_trace(Ab, 4000, generator=_gen(3))
    assert eb.shape == (2,) and abs(float(eb[1] / eb[0]) - 2) < 0.2
    from _krylov_cases import dense_to_csr
    assert abs(float(sl.hutchinson_trace(dense_to_csr(A), 4000, generator=_gen(4))) - tr) <= 4 * math.sqrt(var * s / 4000)


def test_slq_recovers_moments_of_a_known_spectrum(gen):
    g = gen(28)
    n = 120
    evals = torch.rand(n, generator=g, dtype=torch.float64) * 4 - 1
    A = spectrum_matrix(evals, g)
    P, steps = 400, 12
    nodes, weights = sl.slq_spectrum(A, P, steps, generator=_gen(6))
    assert nodes.shape == (P, steps) and weights.shape == (P, steps)
    assert torch.allclose(weights.sum(-1), torch.ones(P, dtype=torch.float64), atol=1e-12)
    for p in range(1, 5):
        per_probe = (weights * nodes ** p).sum(-1)
        truth = float((evals ** p).mean())
        se = float(per_probe.std()) / math.sqrt(P)
        assert abs(float(per_probe.mean()) - truth) <= 4 * se + 1e-12, p
    # the density lives inside the spectrum
    assert float(nodes.min()) >= float(evals.min()) - 1e-10 and float(nodes.max()) <= float(evals.max()) + 1e-10


def test_slq_breakdown_on_few_distinct_eigenvalues(gen):
    g = gen(29)
    ev = torch.tensor([0.5, 1.0, 2.0, 4.0, 8.0], dtype=torch.float64).repeat_interleave(8)
    A = spectrum_matrix(ev, g)
    nodes, weights = sl.slq_spectrum(A, 50, 10, generator=_gen(7))  # Krylov space of dim 5
    assert bool(torch.isfinite(nodes).all()) and bool(torch.isfinite(weights).all())
    heavy = nodes[weights > 1e-10]
    dist = (heavy.unsqueeze(-1) - ev.unique()).abs().min(-1).values
    assert float(dist.max()) <= table_rtol("eig", torch.float64, 40) * 8.0
    for p in (1, 2, 3):
        per_probe = (weights * nodes ** p).sum(-1)
        se = float(per_probe.std()) / math.sqrt(50)
        assert abs(float(per_probe.mean()) - float((ev ** p).mean())) <= 4 * se + 1e-12


def test_empty_operators():
    """n = 0: k = 1 is out of range (a ValueError naming k, not a ZeroDivisionError); an
    empty batch of matrices gives empty results; slq_spectrum refuses n = 0."""
    for A in (torch.zeros(0, 0), torch.zeros(3, 0, 0)):
        with pytest.raises(ValueError, match="lanczos: k must be <= 0"):
            sl.lanczos(A, 1)
    w, V = sl.lanczos(torch.zeros(0, 4, 4), 2)
    assert w.shape == (0, 2) and V.shape == (0, 4, 2)
    with pytest.raises(ValueError, match="slq_spectrum: A must have at least one row"):
        sl.slq_spectrum(torch.zeros(0, 0), 2, 3)
