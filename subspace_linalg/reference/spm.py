"""Pure-torch references of the Subspace Power Method kernels (order 3 and 4, where
ceil(order / 2) = 2). Layout as in csrc/include/sl/spm.h: V (D, R) holds the basis of the
d x d symmetric matrices in the packed upper-triangle order of ``torch.triu_indices``,
X (B, d) the points."""
from __future__ import annotations

import math

import torch


def packed_size(d: int) -> int:
    return d * (d + 1) // 2


def d_of_packed(D: int) -> int:
    """The d with d (d + 1) / 2 = D (ValueError when there is none)."""
    d = (math.isqrt(8 * D + 1) - 1) // 2
    if d * (d + 1) // 2 != D:
        raise ValueError(f"spm: {D} is not a packed symmetric size d (d + 1) / 2")
    return d


def unpack_index(d: int, device=None) -> torch.Tensor:
    """(d, d) long tensor: the packed position of entry (i, j) (symmetric)."""
    iu = torch.triu_indices(d, d, device=device)
    idx = torch.empty(d, d, dtype=torch.long, device=device)
    pos = torch.arange(iu.shape[1], device=device)
    idx[iu[0], iu[1]] = pos
    idx[iu[1], iu[0]] = pos
    return idx


def contract(V: torch.Tensor, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """alpha (B, R) = V^T (x (x) x) in the full layout and grad (B, d) = sum_r alpha_r V_r x."""
    d = X.shape[-1]
    idx = unpack_index(d, X.device)
    Vf = V[idx.reshape(-1)].reshape(d, d, V.shape[-1])          # (d, d, R) full matrices
    W = torch.einsum("bi,ijr->bjr", X, Vf)                       # (B, d, R)
    alpha = torch.einsum("bjr,bj->br", W, X)
    grad = torch.einsum("bjr,br->bj", W, alpha)
    return alpha.contiguous(), grad.contiguous()


def power(V: torch.Tensor, X0: torch.Tensor, maxiter: int, tol: float, cn: float):
    """Shifted power iteration (adaptive shift) for every row of X0 (unit norm); returns
    (X, f, iters) with f = F(x) = |V^T (x (x) x)|^2 at the final points and the int64
    iteration counts. Same stopping rule as the native kernels: |x_new - x| < tol."""
    X = X0.clone()
    B = X.shape[0]
    f = torch.zeros(B, dtype=X.dtype, device=X.device)
    iters = torch.zeros(B, dtype=torch.int64, device=X.device)
    active = torch.ones(B, dtype=torch.bool, device=X.device)
    for _ in range(maxiter):
        if not bool(active.any()):
            break
        Xa = X[active]
        _, g = contract(V, Xa)
        fa = (g * Xa).sum(-1)
        c = torch.where(fa > 2.0 / 3.0, torch.sqrt(2 * fa * (1 - fa).clamp_min(0)), 1 - fa / 2)
        g = g + (cn * c).unsqueeze(-1) * Xa
        nrm = g.norm(dim=-1, keepdim=True)
        ok = nrm.squeeze(-1) > 0
        Xn = torch.where(ok.unsqueeze(-1), g / torch.where(ok, nrm.squeeze(-1), 1).unsqueeze(-1), Xa)
        diff = (Xn - Xa).norm(dim=-1)
        X[active] = Xn
        iters[active] += 1
        done = (diff < tol) | ~ok
        act_idx = active.nonzero().squeeze(-1)
        active[act_idx[done]] = False
    alpha, _ = contract(V, X)
    f = (alpha * alpha).sum(-1)
    return X, f, iters


# the Newton stage of the search (csrc/include/sl/spm.h: kSpmNewton*)
NEWTON_SWITCH = 1e-3   # first power step size below which Newton is tried
NEWTON_STEPS = 8       # Newton steps per attempt
NEWTON_SHRINK = 0.1    # the switch threshold after a failed attempt
NEWTON_SLACK = 64.0    # F may drop by this many eps (relative) in a Newton step
NEWTON_QUADRATIC = 100.0  # a Newton step s with this s^2 < tol ends the search (sl/spm.h)


def _newton_system(V: torch.Tensor, x: torch.Tensor, idx: torch.Tensor):
    """(f, g, L or None) at the unit point x: f = F(x), g = grad, L the Cholesky factor of
    B = P (f I - (2 W^T W + sum_r alpha_r M_r)) P + x x^T (None when B is not positive
    definite), W[r] = M_r x."""
    d = x.shape[0]
    Vf = V[idx.reshape(-1)].reshape(d, d, V.shape[-1])            # (d, d, k)
    W = torch.einsum("ijr,j->ri", Vf, x)                           # (k, d)
    alpha = W @ x
    f = alpha @ alpha
    g = W.T @ alpha
    A = f * torch.eye(d, dtype=x.dtype, device=x.device) - (2 * W.T @ W + torch.einsum("ijr,r->ij", Vf, alpha))
    a = A @ x
    B = A - torch.outer(x, a) - torch.outer(a, x) + (x @ a + 1) * torch.outer(x, x)
    L, info = torch.linalg.cholesky_ex(B)
    ok = int(info) == 0 and bool(torch.isfinite(L).all())
    return float(f), g, (L if ok else None)


def search(V: torch.Tensor, x0: torch.Tensor, maxiter: int, tol: float, cn: float) -> tuple[torch.Tensor, float]:
    """The search of one component from the unit start x0 (d,) with the basis V (D, k): the
    shifted power iteration, and up to NEWTON_STEPS Riemannian Newton steps each time its
    step falls below the switch threshold (see csrc/include/sl/spm.h). Returns (x, F(x))."""
    d = x0.shape[0]
    idx = unpack_index(d, x0.device)
    fslack = NEWTON_SLACK * torch.finfo(x0.dtype).eps
    x = x0.clone()
    sw, it, done = NEWTON_SWITCH, 0, False
    while not done and it < maxiter:
        while it < maxiter:  # power iteration
            _, g = contract(V, x[None])
            g = g[0]
            f = float(g @ x)
            c = math.sqrt(2 * f * max(1 - f, 0.0)) if f > 2.0 / 3.0 else 1 - f / 2
            g = g + cn * c * x
            nrm = g.norm()
            it += 1
            if not bool(nrm > 0):
                done = True
                break
            xn = g / nrm
            diff = float((xn - x).norm())
            x = xn
            if diff < tol:
                done = True
                break
            if diff < sw:
                break
        if done or it >= maxiter:
            break
        fprev, xp = 0.0, x
        for s in range(NEWTON_STEPS):
            if it >= maxiter:
                break
            f, g, L = _newton_system(V, x, idx)
            if s > 0 and f < fprev - fslack * max(fprev, 1.0):  # the last step lowered F: undo it
                x = xp
                break
            if L is None:
                break
            it += 1
            xp, fprev = x, f
            z = torch.cholesky_solve((g - f * x)[:, None], L)[:, 0]
            xn = x + z
            xn = xn / xn.norm()
            step = float((xn - x).norm())
            if not step < 2:  # not finite: undo
                break
            x = xn
            if step < tol or NEWTON_QUADRATIC * step * step < tol:
                done = True
                break
        sw *= NEWTON_SHRINK
    alpha, _ = contract(V, x[None])
    return x, float((alpha * alpha).sum())


def _householder(z: torch.Tensor) -> torch.Tensor:
    """h with (I - h h^T) z = -+|z| e_last, |h|^2 = 2 (the native kernels' convention)."""
    k = z.shape[0]
    v = z.clone()
    v[-1] = v[-1] + torch.where(z[-1] >= 0, 1.0, -1.0).to(z.dtype) * z.norm()
    nv = v.norm()
    if not bool(nv > 0):
        h = torch.zeros(k, dtype=z.dtype, device=z.device)
        h[-1] = math.sqrt(2.0)
        return h
    return v * (math.sqrt(2.0) / nv)


def _start(V: torch.Tensor, k: int, c: torch.Tensor, g: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    d = g.shape[0]
    M = (V[:, :k] @ c[:k])[idx.reshape(-1)].reshape(d, d)
    x = M @ g
    if not bool(x.norm() > 0):
        x = g.clone()
    n = x.norm()
    if not bool(n > 0):
        x = torch.zeros_like(g)
        x[0] = 1
        return x
    return x / n


def extract(V: torch.Tensor, D1: torch.Tensor, U: torch.Tensor, G: torch.Tensor, C: torch.Tensor, odd: bool,
            maxiter: int, tol: float, cn: float, frestol: float):
    """All R components of SPM (each the best of the searches from its starts, see
    ``search``) with Householder deflation after each but the last (the contract of
    ``spm_extract_cpu`` in csrc/include/sl/spm.h): returns weights (R,),
    factors (R, d) (row k-1 = component k) and the best F per component (R,)."""
    d = G.shape[-1]
    R = V.shape[1]
    nt = G.shape[1]
    idx = unpack_index(d, V.device)
    iu = torch.triu_indices(d, d, device=V.device)
    cpair = torch.where(iu[0] == iu[1], 1.0, 2.0).to(V.dtype)
    V, D1 = V.clone(), D1.clone()
    U = U.clone() if odd else U
    weights = V.new_zeros(R)
    factors = V.new_zeros(R, d)
    fbest = V.new_zeros(R)
    for k in range(R, 0, -1):
        j = R - k
        best, xb = None, None
        Vk = V[:, :k].contiguous()
        for t in range(nt):
            x0 = _start(V, k, C[j, t], G[j, t], idx)
            x, f = search(Vk, x0, maxiter, tol, cn)
            if best is None or f > best:
                best, xb = f, x
            if 1.0 - f < frestol:
                break
        alpha = Vk.T @ (cpair * xb[iu[0]] * xb[iu[1]])
        Dk = D1[:k, :k]
        if not odd:
            z = Dk @ alpha
            w = (alpha @ alpha) / (alpha @ z)
            if k > 1:
                h = _householder(z)
                Hm = torch.eye(k, dtype=V.dtype, device=V.device) - torch.outer(h, h)
                D1[:k, :k] = Hm @ Dk @ Hm
                V[:, :k] = V[:, :k] @ Hm
        else:
            au = U[:, :k].T @ xb
            zu = Dk @ au
            zv = Dk.T @ alpha
            w = au.norm() * alpha.norm() / (alpha @ zu)
            if k > 1:
                h1, h2 = _householder(zu), _householder(zv)
                I = torch.eye(k, dtype=V.dtype, device=V.device)
                H1, H2 = I - torch.outer(h1, h1), I - torch.outer(h2, h2)
                D1[:k, :k] = H1 @ Dk @ H2
                V[:, :k] = V[:, :k] @ H1
                U[:, :k] = U[:, :k] @ H2
        weights[k - 1] = w
        factors[k - 1] = xb
        fbest[k - 1] = best
    return weights, factors, fbest


_extract_ref = extract  # cp3's default stage (its parameter of the same name shadows it)


# ---- spm_cp3: the whole order-3 SPM (contract: spm_cp3_cpu in csrc/include/sl/spm.h) ----
STARTS_TAG = 16      # kSpmStartsTag: the sl/philox.h tag of the random starts
_REJECTED, _RANK_ABOVE, _RANK_ZERO = 1, 2, 3


def _triu(d: int, device):
    iu = torch.triu_indices(d, d, device=device)
    return iu[0], iu[1]


def core3(T: torch.Tensor, Ub: torch.Tensor) -> torch.Tensor:
    """T x1 Ub^T x2 Ub^T x3 Ub^T (R, R, R) for T (d, d, d), Ub (d, R)."""
    return torch.einsum("ijk,ia,jb,kc->abc", T, Ub, Ub, Ub)


def cp3(T: torch.Tensor, rank: int, ntries: int, maxiter: int, tol: float, cn: float, frestol: float, seed: int,
        *, extract=None, fill=None):
    """The steps of spm_cp3_cpu from torch ops: returns (weights (d,), factors (d, d), sig (d,),
    info (8,) float64), see csrc/include/sl/spm.h. ``extract`` (default: :func:`extract`)
    and ``fill`` (default: the reference Philox fill) are the stages the CUDA path replaces
    by the native ops."""
    from . import sketch as _sketch

    extract = extract if extract is not None else _extract_ref
    fill = fill if fill is not None else _sketch.random_fill
    d, dt, dev = T.shape[0], T.dtype, T.device
    w_out, f_out, s_out = T.new_zeros(d), T.new_zeros(d, d), T.new_zeros(d)
    info = [0.0] * 8
    lo, hi = torch.aminmax(T)
    d01 = (T - T.transpose(0, 1)).abs().amax()
    d12 = (T - T.transpose(1, 2)).abs().amax()
    info[:4] = torch.stack([lo, hi, d01, d12]).tolist()

    def out(status):
        info[7] = float(status)
        return w_out, f_out, s_out, torch.tensor(info, dtype=torch.float64, device=dev)

    eps, tiny = torch.finfo(dt).eps, torch.finfo(dt).tiny
    if not all(math.isfinite(v) for v in info[:4]) or max(info[2], info[3]) > 300 * eps * max(abs(info[0]), abs(info[1])):
        return out(_REJECTED)
    i0, i1 = _triu(d, dev)
    s = torch.where(i0 == i1, torch.ones((), dtype=dt, device=dev), torch.full((), 2.0, dtype=dt, device=dev).sqrt())
    _, sig, Vh = torch.linalg.svd(s[:, None] * T[i0, i1], full_matrices=False)
    s_out.copy_(sig)
    sv = sig.tolist()
    R = rank
    if R <= 0:
        typical = (sum(v * v for v in sv) / d) / max(sum(sv) / d, tiny)
        R = sum(1 for v in sv if v > math.sqrt(eps) * typical)
    num = sum(1 for v in sv if v > d * eps * max(sv[0], tiny))
    info[4], info[5] = float(R), float(num)
    if R > num:
        return out(_RANK_ABOVE)
    if R == 0:
        return out(_RANK_ZERO)
    Ub = Vh[:R].T
    big = Ub.abs().argmax(dim=0)  # the sign: each column's entry of largest magnitude positive
    Ub = Ub * torch.where(Ub[big, torch.arange(R, device=dev)] < 0, -1.0, 1.0).to(dt)
    core = core3(T, Ub)
    r0, r1 = _triu(R, dev)
    Vc = (core[r0, r1] / sig[:R]).contiguous()
    D1 = torch.diag(1.0 / sig[:R])
    Ui = torch.eye(R, dtype=dt, device=dev)
    GC = torch.empty(R * ntries, 2 * R, dtype=dt, device=dev)
    fill(GC, 0, seed, STARTS_TAG, 1.0)
    G = GC[:, :R].reshape(R, ntries, R).contiguous()
    C = GC[:, R:].reshape(R, ntries, R).contiguous()
    w, Y, fb = extract(Vc, D1, Ui, G, C, True, maxiter, tol, cn, frestol)
    info[6] = 1.0 - float(fb.min())
    b = torch.einsum("abc,ra,rb,rc->r", core, Y, Y, Y)
    L, ok = torch.linalg.cholesky_ex((Y @ Y.T) ** 3)
    if int(ok) == 0:
        sol = torch.cholesky_solve(b[:, None], L)[:, 0]
        if bool(torch.isfinite(sol).all()):
            w = sol
    order = torch.sort(w.abs(), descending=True, stable=True).indices
    w, Y = w[order], Y[order]
    sgn = torch.where(w < 0, -1.0, 1.0).to(dt)
    w_out[:R] = w.abs()
    f_out[:, :R] = (Ub @ Y.T) * sgn
    return out(0)
