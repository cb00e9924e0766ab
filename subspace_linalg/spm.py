"""The Subspace Power Method (Kileel & Pereira, "Subspace power method for symmetric
tensor decomposition", Numer. Algorithms 2025, arXiv:1912.04007) for the CP decomposition
of symmetric tensors of order 3 and 4.

Steps: flatten T to a matrix over symmetric (i <= j) index pairs; its eigendecomposition
(order 4) or SVD (order 3) gives the subspace V = span{a_i (x) a_i} and the rank; each
component is a maximiser of F(x) = |P_V(x (x) x)|^2 on the sphere, found by the shifted
power iteration (SS-HOPM with an adaptive shift) from random starts, finished by
safeguarded Riemannian Newton steps once the power step is small (quadratic instead of
linear convergence: 2-3x fewer passes over V for order 4); its weight comes from
the projection, and a Householder reflection deflates V (and the pseudo-inverse of the
flattening) after every component but the last. The whole extraction loop runs in one
native call (``subspace_linalg::spm_extract``, CPU and CUDA; the per-step kernels
``spm_contract`` and ``spm_power`` are its building blocks, batched over starts). Finally
the weights are re-solved by least squares for the recovered factors (an r x r system):
the projection weights lose digits to the conditioning of the deflated pseudo-inverse, the
polished ones reach the accuracy of the factors.

Order 3 is one native call end to end (``subspace_linalg::spm_cp3``, csrc/include/sl/spm.h:
the checks, a pivoted QR and Jacobi SVD of the flattening, the search, the weights; the
CUDA path composes the same steps from torch.linalg and ``spm_extract``). Its search runs
in the span of the flattening's first r right singular vectors, x = Ub y (the Tucker core
T x1 Ub^T x2 Ub^T x3 Ub^T, r x r x r): the factors of a noiseless tensor lie in that span, so
the restricted problem has the same maximisers; for a noisy tensor the factors are those
of its best rank-r subspace. At d = 20 the chain of torch calls it replaces cost more than
the search itself.
"""
from __future__ import annotations

import functools
import math
import warnings

import torch

from . import _validate
from ._dtypes import FLOATING, eps
from ._results import CPResult
from .errors import NotConvergedWarning
from ._ops import spm as _spm_ops
from .sketching import draw_seed

_NTRIES = 3          # starts per component, tried in turn until one reaches 1 - F < _FRESTOL
_FRESTOL = 1e-2      # a start is accepted when 1 - F(x) < _FRESTOL
_MAXITER = 5000      # default iterations of one power iteration
_CN = math.sqrt(0.5)  # C_n of Kileel & Pereira's Lemma 4.4 for ceil(order / 2) = 2


def _check_finite_symmetric(fn: str, T: torch.Tensor) -> None:
    """ValueError for a non-finite or non-symmetric T, in one pass and one sync: the range of
    T and the largest change under each swap of adjacent indices (those generate the
    symmetric group: invariance under them is symmetry). The location of the largest
    asymmetry is only searched for on failure."""
    order = T.dim()
    swaps = [a for a in range(order - 1)]
    lo, hi = torch.aminmax(T)
    # one difference at a time (stacking the transposed copies cost 3x the reductions)
    dev = [torch.sub(T, T.transpose(a, a + 1)).abs_().amax() for a in swaps]
    vals = torch.stack([lo, hi] + dev).tolist()
    if not all(math.isfinite(v) for v in vals):
        _validate.check_finite(fn, "T", T)  # raises, naming the count
    scale = max(abs(vals[0]), abs(vals[1]))
    tol = 100.0 * order * eps(T.dtype) * scale
    worst = max(vals[2:])
    if worst > tol:
        a = swaps[max(range(len(swaps)), key=lambda i: vals[2 + i])]
        perm = list(range(order))
        perm[a], perm[a + 1] = perm[a + 1], perm[a]
        diff = (T - T.permute(perm)).abs()
        where = tuple(int(i) for i in torch.unravel_index(diff.argmax(), diff.shape))
        swapped = tuple(where[i] for i in perm)
        raise ValueError(f"{fn}: T must be symmetric; its largest asymmetry is |T{list(where)} - T{list(swapped)}| "
                         f"= {worst:.3e} (largest over swaps of adjacent indices, which generate all "
                         f"permutations), above the tolerance {tol:.3e}")


@functools.lru_cache(maxsize=32)
def _packing(d: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(rows, cols, s) of the packed symmetric layout (torch.triu_indices order) with the
    weights s = 1 on the diagonal and sqrt(2) off it (in dtype itself: a float32 sqrt(2)
    would cap float64 accuracy at 1e-8). Cached per (d, dtype, device); never mutated."""
    iu = torch.triu_indices(d, d, device=device)
    s = torch.where(iu[0] == iu[1], torch.ones((), dtype=dtype, device=device),
                    torch.full((), 2.0, dtype=dtype, device=device).sqrt())
    return iu[0], iu[1], s


def _polish_weights(T: torch.Tensor, F: torch.Tensor, w0: torch.Tensor) -> torch.Tensor:
    """Order 4: the least-squares weights for fixed unit factors F (d, r): G w = b with
    G = (F^T F)^(.4) and b_i = <T, f_i^(x)4>. Keeps w0 where G is singular (a repeated
    factor). The projection weights of SPM lose digits to the conditioning of the deflated
    pseudo-inverse; this r x r solve restores them (order 3: inside spm_cp3)."""
    d = T.shape[0]
    KR = (F[:, None, :] * F[None, :, :]).reshape(d * d, -1)      # columns f (x) f
    b = (KR * (T.reshape(d * d, d * d) @ KR)).sum(0)
    G = (F.T @ F) ** 4
    w, info = torch.linalg.solve_ex(G, b)
    if not bool((info == 0) & torch.isfinite(w).all()):
        return w0
    return w


def _warn_unconverged(fn: str, worst: float, stacklevel: int) -> None:
    if worst >= _FRESTOL:
        warnings.warn(f"{fn}: a component's power iteration reached only 1 - F = {worst:.3e}, tolerance "
                      f"{_FRESTOL:.0e} (is the rank too large or T far from low rank?)", NotConvergedWarning,
                      stacklevel=stacklevel + 1)


def _rank_above(fn: str, R: int, num_rank: int) -> ValueError:
    return ValueError(f"{fn}: rank={R} exceeds the numerical rank {num_rank} of T's flattening "
                      f"(at most {num_rank} components can be recovered)")


def _spm3(fn, T, rank, tol, maxiter, generator) -> CPResult:
    """Order 3: one call of subspace_linalg::spm_cp3 (the checks, the flattening's SVD, the
    search in the span of its right singular vectors, the weights), see sl/spm.h."""
    args = (T, 0 if rank is None else rank, _NTRIES, maxiter, tol, _CN, _FRESTOL, draw_seed(generator))
    if T.device.type == "cpu" and not torch.compiler.is_compiling():
        w, F, _, info = _spm_ops.cp3_cpu(*args)  # the op's CPU kernel, past the dispatcher (checked above)
    else:
        w, F, _, info = torch.ops.subspace_linalg.spm_cp3.default(*args)
    _, _, _, _, R, num_rank, worst, status = info.tolist()
    R, status = int(R), int(status)
    if status == 1:
        _check_finite_symmetric(fn, T)  # raises, naming the count or the largest asymmetry
        raise ValueError(f"{fn}: T must be finite and symmetric")
    if status == 2:
        raise _rank_above(fn, R, int(num_rank))
    if status == 3:
        return CPResult(T.new_zeros(0), T.new_zeros(T.shape[0], 0))
    if status == 4:
        warnings.warn(f"{fn}: the Jacobi SVD of T's flattening did not converge in its sweeps; the result "
                      f"may be inaccurate", NotConvergedWarning, stacklevel=3)
    _warn_unconverged(fn, worst, stacklevel=3)
    return CPResult(w[:R], F[:, :R].contiguous())


def spm(T: torch.Tensor, *, rank: int | None = None, tol: float | None = None, maxiter: int | None = None,
        generator: torch.Generator | None = None) -> CPResult:
    """Symmetric CP decomposition ``T = sum_i w_i f_i^(x)order`` by the Subspace Power Method.

    ``T``: a symmetric tensor of shape ``(d,) * order`` with ``order`` 3 or 4, float32 or
    float64 (computed in its own dtype, on its own device). ``rank``: the number of
    components; ``None`` estimates it from the flattening's spectrum (the eigenvalues or
    singular values above ``sqrt(eps) * typical`` with ``typical = mean(s^2) / mean(s)``, the
    rule of the reference with a dtype-aware cutoff). At most ``d (d + 1) / 2`` for order 4
    and ``d`` for order 3, and at most the numerical rank of the flattening (ValueError
    otherwise: its pseudo-inverse would be infinite). ``tol``: the search from each start
    (power iteration, then Newton steps) stops when a step ``|x_new - x| < tol``; default
    ``64 eps`` (1.4e-14 in float64). ``maxiter``: steps per start, of either kind (default
    5000). ``generator``: the random starts.

    Returns ``CPResult(weights (r,), factors (d, r))`` in T's dtype and device: unit-norm
    factor columns (TensorLy's convention), ordered by decreasing ``|weight|``. Odd orders
    fix the sign of each factor so that its weight is positive; for order 4 the weights
    carry their sign. A component whose best start stays below ``F = 1 - 1e-2`` (no
    planted rank-one term near it) is returned anyway with a NotConvergedWarning giving
    ``1 - F`` and the tolerance.
    """
    fn = "spm"
    _validate.check_tensor(fn, "T", T, dtypes=FLOATING)
    order = T.dim()
    if order < 3 or order > 4:
        raise ValueError(f"{fn}: T must have order 3 or 4 (shape (d,) * order), got shape {tuple(T.shape)}")
    if len(set(T.shape)) != 1:
        raise ValueError(f"{fn}: T must have equal dims (d,) * {order}, got the ragged shape {tuple(T.shape)}")
    d = T.shape[0]
    if d < 1:
        raise ValueError(f"{fn}: T must not be empty, got shape {tuple(T.shape)}")
    D = d * (d + 1) // 2
    max_rank = D if order == 4 else d
    if rank is not None:
        rank = _validate.check_int(fn, "rank", rank, minimum=1, maximum=max_rank)
    tol = 64.0 * eps(T.dtype) if tol is None else _validate.check_float(fn, "tol", tol, positive=True)
    maxiter = _MAXITER if maxiter is None else _validate.check_int(fn, "maxiter", maxiter, minimum=1)
    _validate.check_generator(fn, generator)
    if order == 3:
        return _spm3(fn, T, rank, tol, maxiter, generator)
    _check_finite_symmetric(fn, T)

    dt, dev = T.dtype, T.device
    i0, i1, s = _packing(d, dt, dev)
    M = T[i0, i1][:, i0, i1]
    lam, vecs = torch.linalg.eigh(s[:, None] * M * s[None, :])
    perm = lam.abs().argsort(descending=True)
    lam, vecs = lam[perm], vecs[:, perm]
    spec = lam.abs()
    sv = spec.tolist()  # one sync; the rank rules below are a few scalar comparisons
    tiny = torch.finfo(dt).tiny
    if rank is None:
        typical = (sum(v * v for v in sv) / len(sv)) / max(sum(sv) / len(sv), tiny)
        rank = sum(1 for v in sv if v > math.sqrt(eps(dt)) * typical)
    R = rank
    num_rank = sum(1 for v in sv if v > len(sv) * eps(dt) * max(sv[0], tiny))
    if R > num_rank:
        raise _rank_above(fn, R, num_rank)
    if R == 0:
        return CPResult(torch.zeros(0, dtype=dt, device=dev), torch.zeros(d, 0, dtype=dt, device=dev))
    V = vecs[:, :R] / s[:, None]           # packed full-layout values of an orthonormal basis
    D1 = torch.diag(1.0 / lam[:R])         # pseudo-inverse of the flattening in that basis
    U = V.new_empty(0)
    # the random starts of every component and restart, drawn up front (reproducible)
    gdev = generator.device if generator is not None else dev
    GC = torch.randn(R, _NTRIES, d + R, generator=generator, dtype=dt, device=gdev).to(dev)
    G, C = GC[..., :d].contiguous(), GC[..., d:].contiguous()
    weights, F, fbest = torch.ops.subspace_linalg.spm_extract.default(
        V.contiguous(), D1, U, G, C, False, maxiter, tol, _CN, _FRESTOL)
    factors = F.T
    _warn_unconverged(fn, float(1.0 - fbest.min()), stacklevel=2)
    weights = _polish_weights(T, factors, weights)
    order_idx = weights.abs().argsort(descending=True)
    return CPResult(weights[order_idx].contiguous(), factors[:, order_idx].contiguous())
