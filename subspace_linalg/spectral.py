"""Lanczos for extreme eigenpairs of symmetric operators, and the spectral estimators on
top of it: Hutchinson's trace estimator and stochastic Lanczos quadrature (SLQ)."""
from __future__ import annotations

import math
import warnings

import torch

from . import _validate
from ._results import EighResult
from .errors import NotConvergedWarning
from .operators import DenseOperator, LinearOperator, as_operator

__all__ = ["lanczos", "hutchinson_trace", "slq_spectrum"]

_DEFAULT_TOL = {torch.float64: 1e-10, torch.float32: 1e-5}
_MAX_BLOCK = 16
_MIN_BASIS = 120
_RR_EVERY = 3


def _randn(shape, generator, device, dtype) -> torch.Tensor:
    gdev = generator.device if generator is not None else torch.device(device)
    if gdev.type != torch.device(device).type:
        gdev = torch.device("cpu")
    x = torch.randn(shape, generator=generator, device=gdev, dtype=dtype)
    return x.to(device)


def _rademacher(shape, generator, device, dtype) -> torch.Tensor:
    gdev = generator.device if generator is not None else torch.device(device)
    if gdev.type != torch.device(device).type:
        gdev = torch.device("cpu")
    z = torch.randint(0, 2, shape, generator=generator, device=gdev, dtype=torch.int8)
    return (2 * z - 1).to(device=device, dtype=dtype)


def _split(k: int, which: str) -> tuple[int, int]:
    """(number wanted from the top, number wanted from the bottom)."""
    if which == "largest":
        return k, 0
    if which == "smallest":
        return 0, k
    return (k + 1) // 2, k // 2  # scipy's "BE": the extra one from the top


def _pick(theta: torch.Tensor, top: int, bot: int) -> torch.Tensor:
    """Indices (ascending theta) of the wanted Ritz values."""
    m = theta.numel()
    top, bot = min(top, m), min(bot, m)
    idx = list(range(bot)) + list(range(max(m - top, bot), m))
    return torch.tensor(idx, dtype=torch.long, device=theta.device)


def _project_out(V: torch.Tensor, W: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """W minus its components along the orthonormal columns of V, twice (CGS2); returns
    (W', the coefficients V^T W of both passes added).

    Made on the transposed block W^T (p x n, p small): C^T = W^T V and W^T - C^T V^T are
    GEMMs with few rows and long ones, the shape MKL runs fast; V^T W and V C (few columns)
    were 2.5-4x slower. Measured on an AMD EPYC (2 threads), n x 120 basis, p = 6, in us:
    n = 1024: 46 / 143 (coefficients) and 57 / 153 (update); n = 16384: 776 / 2913 and
    673 / 2007."""
    Wt = W.mT
    Ct = Wt @ V
    Wt = torch.addmm(Wt, Ct, V.mT, alpha=-1)
    Ct2 = Wt @ V
    Wt = torch.addmm(Wt, Ct2, V.mT, alpha=-1)
    return Wt.mT, (Ct + Ct2).mT


def _orth_block(W: torch.Tensor, V: torch.Tensor, width: int, generator, thresh: float
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Orthonormalize the p columns of W (already orthogonal to V) into at most ``width``
    new columns, column by column with two passes: W = Q R, Q (n, width), R (width, p).
    A column whose remainder is below ``thresh`` times its norm lies in the span already
    found (an invariant subspace: Lanczos breakdown); while slots remain it is replaced by
    a fresh random direction orthogonal to V and Q, which couples to nothing (zero R)."""
    n, p = W.shape
    if width == p:  # fast path: a well-conditioned block needs one Householder QR
        Qf, Rf = torch.linalg.qr(W)
        d = torch.diagonal(Rf).abs()
        if float(d.min()) > 1e-2 * float(torch.linalg.vector_norm(W, dim=0).max()) > 0:
            return Qf, Rf
    Q = torch.zeros(n, width, dtype=W.dtype, device=W.device)
    R = torch.zeros(width, p, dtype=W.dtype, device=W.device)
    cnt = 0
    for i in range(p):
        w = W[:, i:i + 1]
        before = float(torch.linalg.vector_norm(w))
        if cnt:
            w, c = _project_out(Q[:, :cnt], w)
            R[:cnt, i] = c[:, 0]
        if cnt == width:
            continue  # no room left: the space is exhausted, the remainder is rounding
        nrm = float(torch.linalg.vector_norm(w))
        if nrm > thresh * before and nrm > 0:
            R[cnt, i] = nrm
            Q[:, cnt:cnt + 1] = w / nrm
            cnt += 1
            continue
        z = _randn((n, 1), generator, W.device, W.dtype)
        z, _ = _project_out(V, z)
        if cnt:
            z, _ = _project_out(Q[:, :cnt], z)
        Q[:, cnt:cnt + 1] = z / torch.linalg.vector_norm(z)
        cnt += 1
    return Q[:, :cnt], R[:cnt]


def _lanczos_one(op: LinearOperator, k: int, which: str, maxiter: int | None, tol: float, generator,
                 fn: str) -> tuple[torch.Tensor, torch.Tensor, bool, float, float]:
    n = op.shape[-1]
    dtype, device = op.dtype, op.device
    top, bot = _split(k, which)
    p = min(n, max(2, min(k, _MAX_BLOCK)))
    mmax = min(n, max(2 * k + 4 * p, _MIN_BASIS))
    if maxiter is None:
        maxiter = max(200, 20 * math.ceil(n / p))
    eps = torch.finfo(dtype).eps
    V = torch.zeros(n, mmax + p, dtype=dtype, device=device)
    H = torch.zeros(mmax + p, mmax + p, dtype=dtype, device=device)
    V0, _ = torch.linalg.qr(_randn((n, p), generator, device, dtype))
    V[:, :p] = V0
    pend, m = 0, p  # columns [pend, m) are the block not yet multiplied by A
    anorm = 0.0
    converged = False
    theta = S = want = None
    for it in range(maxiter):
        W = op.matmul(V[:, pend:m]).detach()
        W, C = _project_out(V[:, :m], W)
        H[:m, pend:m] = C
        width = min(p, n - m)
        restart = m + width > mmax
        # Rayleigh-Ritz every third step (eigh of the m x m projection), at restarts, at the end
        if m == n or restart or it % _RR_EVERY == _RR_EVERY - 1 or it == maxiter - 1:
            Hm = H[:m, :m]
            theta, S = torch.linalg.eigh((Hm + Hm.mT) / 2)
            anorm = max(anorm, float(theta.abs().max()))
            want = _pick(theta, top, bot)
        if m == n:  # the basis spans the whole space: Rayleigh-Ritz is exact
            converged = True
            break
        Qn, R = _orth_block(W, V[:, :m], width, generator, thresh=10 * math.sqrt(m) * eps)
        width = Qn.shape[1]
        V[:, m:m + width] = Qn
        H[m:m + width, :] = 0
        H[m:m + width, pend:m] = R
        if S is not None and S.shape[0] == m:
            # residual of Ritz pair i: ||A y_i - theta_i y_i|| = ||H[m:m+w, :m] s_i||
            res = torch.linalg.vector_norm(H[m:m + width, :m] @ S[:, want], dim=0)
            if bool((res <= tol * anorm).all()):
                converged = True
                break
        if restart:  # thick restart: keep the best Ritz vectors and the new block
            nk = min(max(k + p, mmax // 2), mmax - p, m)
            keep = _pick(theta, *_split_keep(nk, top, bot))
            nk = keep.numel()
            Y = V[:, :m] @ S[:, keep]
            cpl = H[m:m + width, :m] @ S[:, keep]
            V[:, nk:nk + width] = V[:, m:m + width].clone()
            V[:, :nk] = Y
            H.zero_()
            H[:nk, :nk] = torch.diag(theta[keep])
            H[nk:nk + width, :nk] = cpl
            pend, m = nk, nk + width
            S = None
        else:
            pend, m = m, m + width
    X = V[:, :S.shape[0]] @ S[:, want]
    lam = theta[want]
    order = torch.argsort(lam)
    lam, X = lam[order], X[:, order]
    true_res = torch.linalg.vector_norm(op.matmul(X).detach() - X * lam, dim=0)
    return lam, X, converged, float(true_res.max()) if true_res.numel() else 0.0, anorm


_NATIVE_BASIS = 80      # the native driver's basis: max(2k + 4p, this) vectors before a restart
_NATIVE_RR_STEPS = 6    # block steps between two Rayleigh-Ritz checks


def _native_operator(op):
    """(dense, crow, col, val) for the operators the native expansion applies itself (one
    dense (n, n) matrix or a CSR matrix, contiguous), else None."""
    from .operators import CSROperator

    if isinstance(op, DenseOperator) and op.A.dim() == 2:
        return (op.A.detach().contiguous(), None, None, None)
    if isinstance(op, CSROperator):
        return (None, op._crow, op._col, op._val.detach())
    return None


def _lanczos_native(mats, n: int, k: int, which: str, budget: int, tol: float, generator, dtype, device, fn: str):
    """The block Lanczos of :func:`_lanczos_one` (block p, full reorthogonalization, thick
    restarts) with the basis grown by the native expansion ``subspace_linalg::lanczos_expand_``
    (products, classical Gram-Schmidt twice, the block's orthonormalization, Philox
    directions after a breakdown) ``_NATIVE_RR_STEPS`` block steps at a time between
    Rayleigh-Ritz checks; a smaller basis (max(2k + 4p, 80)) than the Python loop's, whose
    per-step overhead had favoured a long one. Measured on an AMD EPYC (2 threads), k = 6
    of a 2-D Poisson matrix, against the Python loop after its GEMM-layout fix: 32^2
    float32 30 -> 10-11 ms, 48^2 float64 220 -> 54-78 ms (ARPACK in the same runs: 8 and
    38-40 ms); bases of 56-96 and checks every 3-6 steps or at restarts only were within
    the noise of this one, 36-48 up to 2x slower (more restarts).
    ``budget`` bounds the products with A. Returns (lam, X, converged, anorm)."""
    from ._ops import lanczos as lops
    from .reference.lanczos import LANCZOS_NONFINITE
    from .sketching import draw_seed

    dense, crow, col, val = mats
    top, bot = _split(k, which)
    p = min(n, max(2, min(k, _MAX_BLOCK)))
    mmax = min(n - p, max(2 * k + 4 * p, _NATIVE_BASIS))
    rows = mmax + p
    eps = torch.finfo(dtype).eps
    thresh = 10 * math.sqrt(rows) * eps
    V = torch.zeros(rows, n, dtype=dtype, device=device)
    H = torch.zeros(rows, rows, dtype=dtype, device=device)
    V[:p] = torch.linalg.qr(_randn((n, p), generator, device, dtype)).Q.mT
    seed = draw_seed(generator)
    native = device.type == "cpu" and not torch.compiler.is_compiling()
    expand = lops.expand_cpu if native else torch.ops.subspace_linalg.lanczos_expand_.default
    j, used, draws, anorm, converged = 0, 0, 0, 0.0, False
    while True:
        stop = min(mmax, j + _NATIVE_RR_STEPS * p)
        jn, status, draws = expand(V, H, dense, crow, col, val, p, j, stop, thresh, seed, draws).tolist()
        used += jn - j
        if status == LANCZOS_NONFINITE:
            raise ValueError(f"{fn}: A @ v has non-finite (NaN or Inf) entries: A must be finite")
        m = j = jn
        Hm = H[:m, :m]
        theta, S = torch.linalg.eigh((Hm + Hm.mT) / 2)
        anorm = max(anorm, float(theta.abs().max()))
        want = _pick(theta, top, bot)
        # residual of Ritz pair i: ||H[m:m+p, m-p:m] s_i[m-p:m]|| (only the last block couples)
        res = torch.linalg.vector_norm(H[m:m + p, m - p:m] @ S[m - p:m, want], dim=0)
        if bool((res <= tol * anorm).all()):
            converged = True
            break
        if used >= budget:
            break
        if m + p > mmax:  # the basis is full: thick restart
            nk = min(max(k + p, mmax // 2), mmax - p, m)
            keep = _pick(theta, *_split_keep(nk, top, bot))
            nk = keep.numel()
            Y = S[:, keep].mT @ V[:m]
            cpl = H[m:m + p, :m] @ S[:, keep]
            last = V[m:m + p].clone()
            V[:nk] = Y
            V[nk:nk + p] = last
            H.zero_()
            H[:nk, :nk] = torch.diag(theta[keep])
            H[nk:nk + p, :nk] = cpl
            j = nk
    X = (S[:, want].mT @ V[:m]).mT
    lam = theta[want]
    order = torch.argsort(lam)
    return lam[order], X[:, order], converged, anorm


def _native_ok(n: int, k: int) -> bool:
    """The native driver needs room for its basis and a block beyond it: n >= 2k + 6p."""
    p = min(n, max(2, min(k, _MAX_BLOCK)))
    return n >= 2 * k + 6 * p


def _split_keep(keep_n: int, top: int, bot: int) -> tuple[int, int]:
    if bot == 0:
        return keep_n, 0
    if top == 0:
        return 0, keep_n
    t = max(top, round(keep_n * top / (top + bot)))
    return t, max(bot, keep_n - t)


def lanczos(A, k: int, *, which: str = "largest", maxiter: int | None = None, tol: float | None = None,
            generator: torch.Generator | None = None) -> EighResult:
    """k extreme eigenpairs of a symmetric operator by block Lanczos with full
    reorthogonalization (classical Gram-Schmidt twice against the whole basis), a
    breakdown guard (an invariant subspace found: the block continues from fresh random
    vectors orthogonal to the basis, so degenerate spectra give neither ghosts nor NaN),
    and thick restarts that keep the best Ritz vectors when the basis is full. One dense
    matrix or a CSR matrix (n >= 2k + 6p) grows its basis in the native kernel
    ``subspace_linalg::lanczos_expand_`` (a fresh direction after a breakdown comes from
    Philox under a seed drawn from ``generator``); other operators run the same method
    block step by block step in torch.

    Args:
        A: symmetric dense ``(..., n, n)`` tensor (a batch: one solve per matrix), 2-D sparse
            CSR tensor, :class:`LinearOperator` or duck-typed operator; float32 or float64.
        k: number of eigenpairs, ``1 <= k <= n``.
        which: ``"largest"`` / ``"smallest"`` (algebraic) or ``"both"``: ``ceil(k/2)`` from
            the top and ``floor(k/2)`` from the bottom (scipy's ``"BE"``).
        maxiter: limit on block iterations (block matvecs); default ``max(200, 20 n / p)``
            with block size ``p = min(max(2, k), 16)``.
        tol: stop when every wanted Ritz pair has ``||A v - theta v|| <= tol * ||A||``
            (``||A||`` estimated by the largest |Ritz value|); default 1e-10 (float64) or
            1e-5 (float32).
        generator: for the random starting block (reproducible).

    Returns:
        EighResult(eigenvalues ``(..., k)`` ascending, eigenvectors ``(..., n, k)``
        orthonormal columns), in A's dtype. Not converged within maxiter: the best Ritz
        pairs and a :class:`NotConvergedWarning` with the residual and the tolerance.
    """
    fn = "lanczos"
    op = as_operator(A, fn=fn, name="A")
    n = op.shape[-1]
    k = _validate.check_int(fn, "k", k, minimum=1, maximum=n)
    _validate.check_choice(fn, "which", which, ("largest", "smallest", "both"))
    if maxiter is not None:
        maxiter = _validate.check_int(fn, "maxiter", maxiter, minimum=1)
    tol = _DEFAULT_TOL[op.dtype] if tol is None else _validate.check_float(fn, "tol", tol, positive=True)
    _validate.check_generator(fn, generator)
    batch = op.batch_shape
    if len(batch):
        if not isinstance(op, DenseOperator):
            raise ValueError(f"{fn}: a batch of operators must be a dense (..., n, n) tensor, got "
                             f"{type(op).__name__} of shape {tuple(op.shape)}")
        if math.prod(batch) == 0:  # an empty batch: empty results
            return EighResult(op.A.new_empty(batch + (k,)), op.A.new_empty(batch + (n, k)))
        As = op.A.reshape(-1, n, n)
        outs = [lanczos(As[i], k, which=which, maxiter=maxiter, tol=tol, generator=generator) for i in range(As.shape[0])]
        return EighResult(torch.stack([o.eigenvalues for o in outs]).reshape(batch + (k,)),
                          torch.stack([o.eigenvectors for o in outs]).reshape(batch + (n, k)))
    if isinstance(op, DenseOperator):
        _validate.check_finite(fn, "A", op.A)
    mats = _native_operator(op) if _native_ok(n, k) else None
    if mats is not None:  # one dense or CSR matrix: the driver on the native expansion
        p = min(n, max(2, min(k, _MAX_BLOCK)))
        iters = maxiter if maxiter is not None else max(200, 20 * math.ceil(n / p))
        lam, X, converged, anorm = _lanczos_native(mats, n, k, which, iters * p, tol, generator, op.dtype,
                                                   torch.device(op.device), fn)
        res = torch.linalg.vector_norm(op.matmul(X).detach() - X * lam, dim=0)
        worst = float(res.max()) if res.numel() else 0.0
    else:
        lam, X, converged, worst, anorm = _lanczos_one(op, k, which, maxiter, tol, generator, fn)
    if not converged:
        warnings.warn(f"{fn}: {k} {which} eigenpairs did not converge within maxiter={maxiter}: worst residual "
                      f"||A v - theta v|| = {worst:.3e} vs tolerance tol*||A|| = {tol * anorm:.3e}",
                      NotConvergedWarning, stacklevel=2)
    return EighResult(lam, X)


def hutchinson_trace(A, num_samples: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Hutchinson's unbiased estimate of ``trace(A)``: the mean of ``z^T A z`` over
    ``num_samples`` Rademacher probes ``z`` (entries +-1; variance
    ``2 (||A||_F^2 - sum_i A_ii^2) / num_samples`` for symmetric A).

    A: dense ``(..., n, n)``, sparse CSR, :class:`LinearOperator` or duck-typed operator.
    Returns a tensor of shape A's batch shape (``()`` for one operator), A's dtype.
    Probes are applied in blocks of at most 64 columns."""
    fn = "hutchinson_trace"
    op = as_operator(A, fn=fn, name="A")
    num_samples = _validate.check_int(fn, "num_samples", num_samples, minimum=1)
    _validate.check_generator(fn, generator)
    n = op.shape[-1]
    batch = op.batch_shape
    total = torch.zeros(batch, dtype=op.dtype, device=op.device)
    done = 0
    while done < num_samples:
        s = min(64, num_samples - done)
        Z = _rademacher(batch + (n, s), generator, op.device, op.dtype)
        total = total + (Z * op.matmul(Z).detach()).sum(dim=(-2, -1))
        done += s
    return total / num_samples


def slq_spectrum(A, num_probes: int, steps: int, *, generator: torch.Generator | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Stochastic Lanczos quadrature of the spectral density of a symmetric operator (as
    PyHessian's ``density``): for each of ``num_probes`` normalized Rademacher probes v,
    ``steps`` Lanczos steps (full reorthogonalization, twice; breakdown guard) give the
    tridiagonal T = S diag(theta) S^T, and the Gauss quadrature
    ``v^T f(A) v ~= sum_j w_j f(theta_j)`` with ``w_j = S[0, j]^2``.
    ``mean over probes of sum_j w_j f(theta_j)`` estimates ``trace(f(A)) / n``, exact in
    expectation for polynomials f of degree < 2 * steps.

    A: a single operator (n, n): dense, CSR, :class:`LinearOperator` or duck-typed.
    Returns (nodes, weights), each ``(num_probes, min(steps, n))`` in A's dtype; each
    probe's weights sum to 1 (normalise by ``num_probes`` for a density)."""
    fn = "slq_spectrum"
    op = as_operator(A, fn=fn, name="A")
    if len(op.batch_shape):
        raise ValueError(f"{fn}: A must be a single (n, n) operator, got shape {tuple(op.shape)}")
    P = _validate.check_int(fn, "num_probes", num_probes, minimum=1)
    steps = _validate.check_int(fn, "steps", steps, minimum=1)
    _validate.check_generator(fn, generator)
    n = op.shape[-1]
    if n == 0:
        raise ValueError(f"{fn}: A must have at least one row and column (no spectrum to estimate), got shape "
                         f"{tuple(op.shape)}")
    m = min(steps, n)
    dtype, device = op.dtype, op.device
    eps = torch.finfo(dtype).eps
    Q = torch.zeros(P, m, n, dtype=dtype, device=device)  # basis of each probe, rows
    alpha = torch.zeros(P, m, dtype=dtype, device=device)
    beta = torch.zeros(P, m, dtype=dtype, device=device)  # beta[:, j] couples j-1 and j
    v = _rademacher((P, n), generator, device, dtype) / math.sqrt(n)
    Q[:, 0] = v
    for j in range(m):
        w = op.matvec(Q[:, j]).detach()
        a = (w * Q[:, j]).sum(-1)
        alpha[:, j] = a
        if j + 1 == m:
            break
        Qj = Q[:, :j + 1]
        for _ in range(2):  # full reorthogonalization, twice
            c = torch.einsum("pin,pn->pi", Qj, w)
            w = w - torch.einsum("pin,pi->pn", Qj, c)
        b = torch.linalg.vector_norm(w, dim=-1)
        scale = torch.clamp_min(alpha[:, :j + 1].abs().amax(-1), 1.0)
        broke = b <= 10 * math.sqrt(n) * eps * scale
        if bool(broke.any()):  # invariant subspace: continue with a fresh orthogonal direction
            z = _randn((P, n), generator, device, dtype)
            for _ in range(2):
                c = torch.einsum("pin,pn->pi", Qj, z)
                z = z - torch.einsum("pin,pi->pn", Qj, c)
            z = z / torch.linalg.vector_norm(z, dim=-1, keepdim=True)
            b = torch.where(broke, torch.zeros_like(b), b)
            w = torch.where(broke.unsqueeze(-1), z, w / torch.where(broke, 1, b).unsqueeze(-1))
        else:
            w = w / b.unsqueeze(-1)
        beta[:, j + 1] = b
        Q[:, j + 1] = w
    T = torch.diag_embed(alpha) + torch.diag_embed(beta[:, 1:], 1) + torch.diag_embed(beta[:, 1:], -1)
    nodes, S = torch.linalg.eigh(T)
    weights = S[:, 0, :] ** 2
    return nodes, weights
