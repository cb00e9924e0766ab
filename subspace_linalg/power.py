"""Block subspace (orthogonal) iteration with Rayleigh-Ritz for the top-k eigenpairs (by
magnitude) of a symmetric matrix or operator; warm-startable for subspace tracking."""
from __future__ import annotations

import math
import warnings

import torch

from . import _gemm, _validate
from ._dtypes import FLOATING, eps
from ._results import EighResult
from .errors import NotConvergedWarning
from .orth import orthonormalize as _orth  # CholeskyQR2 with checked fallbacks
from .orth import tall_inner as _inner

_MAXITER = 1000  # iterations when tol decides (iters=None)


class SubspaceIterationResult(EighResult):
    """An EighResult (unpacks to ``eigenvalues, eigenvectors``) that also carries
    ``iterations`` (int: products with A), ``converged`` (bool, (..., k): per column) and
    ``residual_norm`` ((..., k): ``|A v - lambda v| / |lambda_max|`` per column)."""

    iterations: int
    converged: torch.Tensor
    residual_norm: torch.Tensor


def _kind(A) -> str:
    if isinstance(A, torch.Tensor):
        return "csr" if A.layout == torch.sparse_csr else ("dense" if A.layout == torch.strided else "sparse")
    if hasattr(A, "shape") and (hasattr(A, "matmul") or hasattr(A, "__matmul__")):
        return "operator"
    raise TypeError(f"subspace_iteration: A must be a torch.Tensor (dense or sparse CSR) or an operator with "
                    f".shape and matmul, got {type(A).__name__}")


def _apply(A, X: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "operator" and hasattr(A, "matmul"):
        return A.matmul(X)
    return _gemm.mm(A, X) if kind == "dense" else A @ X


def subspace_iteration(A, k: int, *, iters: int | None = None, tol: float | None = None,
                       init: torch.Tensor | None = None,
                       generator: torch.Generator | None = None) -> SubspaceIterationResult:
    """Top-``k`` eigenpairs by magnitude of a symmetric ``A`` by block power iteration with
    Rayleigh-Ritz after every product.

    ``A``: a dense tensor ``(..., n, n)`` (leading dims are a batch), a 2-D sparse CSR
    tensor, or an operator with ``.shape == (n, n)``, ``.dtype``, ``.device`` and ``@`` /
    ``matmul`` on ``(n, p)`` blocks (e.g. ``sl.LinearOperator``; without ``dtype`` /
    ``device`` attributes it takes ``init``'s, else the default dtype on the CPU); float32
    or float64.
    The block has ``p = min(n, k + max(8, k // 2))`` columns; it starts from ``init``
    (``(..., n, l)``, e.g. the eigenvectors of the previous call: warm start for subspace
    tracking; padded with random columns up to ``p``) or from a Gaussian block drawn with
    ``generator``.

    Stopping: column ``i`` has converged when ``|A v_i - lambda_i v_i| <= tol *
    |lambda_max|`` (the residual of the returned pair itself). Default ``tol =
    max(1e-10, 10 sqrt(n) eps)`` (1e-10 in float64, ~1e-5 in float32); the loop stops when
    all k columns of every batch element have converged, after at most ``iters`` products
    (default 1000), and warns with NotConvergedWarning (residual, tolerance) otherwise.
    With ``iters`` given and ``tol=None`` it runs exactly ``iters`` products with no check
    and no warning (a fixed budget, e.g. one refresh step per training step).

    Returns ``SubspaceIterationResult(eigenvalues (..., k), eigenvectors (..., n, k))``, an
    EighResult whose eigenvalues are ordered by decreasing magnitude (power iteration finds
    the top-k by |lambda|; for a PSD A these are the largest), orthonormal eigenvectors, in
    A's dtype and device; attributes ``iterations``, ``converged``, ``residual_norm``.
    """
    fn = "subspace_iteration"
    kind = _kind(A)
    if kind == "sparse":
        raise ValueError(f"{fn}: sparse A must use the CSR layout (A.to_sparse_csr()), got {A.layout}")
    shape = tuple(A.shape)
    # an operator without dtype / device attributes takes init's, else the defaults
    dtype = getattr(A, "dtype", None) or (init.dtype if isinstance(init, torch.Tensor) else torch.get_default_dtype())
    device = torch.device(getattr(A, "device", None) or (init.device if isinstance(init, torch.Tensor) else "cpu"))
    if dtype not in FLOATING:
        raise TypeError(f"{fn}: A must have dtype float32 or float64, got {dtype}")
    if len(shape) < 2 or shape[-1] != shape[-2]:
        raise ValueError(f"{fn}: A must be square (..., n, n), got shape {shape}")
    if kind != "dense" and len(shape) != 2:
        raise ValueError(f"{fn}: sparse and operator A must be 2-D (n, n), got shape {shape}")
    n = shape[-1]
    batch = shape[:-2]
    k = _validate.check_int(fn, "k", k, minimum=1, maximum=n)
    fixed = iters is not None and tol is None
    maxiter = _MAXITER if iters is None else _validate.check_int(fn, "iters", iters, minimum=1)
    if tol is None:
        tol = max(1e-10, 10.0 * math.sqrt(n) * eps(dtype))
    else:
        tol = _validate.check_float(fn, "tol", tol, positive=True)
    _validate.check_generator(fn, generator)
    if kind == "dense":
        if A.numel():
            # symmetry probe without an n x n temporary: |(A - A^T) v| vs |A v| for a fixed
            # sign vector v (two matrix-vector products)
            v = torch.ones(n, 1, dtype=dtype, device=device)
            v[1::2] = -1.0
            v[2::3] *= 0.5
            Av, ATv = A @ v, A.mT @ v
            # v has no zero entry, so a NaN or Inf anywhere in A reaches A v: this doubles as
            # the finiteness check (an isfinite pass over A would cost ten products)
            if not bool(torch.isfinite(Av).all() & torch.isfinite(ATv).all()):
                raise ValueError(f"{fn}: A has non-finite (NaN or Inf) entries (shape {shape})")
            asym = float((Av - ATv).norm())
            scale = float(torch.maximum(Av.norm(), ATv.norm()))
            if asym > math.sqrt(eps(dtype)) * scale:
                raise ValueError(f"{fn}: A must be symmetric, got |(A - A^T) v| = {asym:.3e} for a probe v with "
                                 f"|A v| = {scale:.3e}")
    p = min(n, k + max(8, k // 2))
    if kind == "csr":  # the products through the CSR operator: the native kernel on the CPU
        from .operators import CSROperator  # (9x faster than torch's SpMM in float64 at n = 1e5, p = 16)

        A, kind = CSROperator(A), "operator"
    cols = []
    if init is not None:
        _validate.check_tensor(fn, "init", init, dtypes=FLOATING, min_ndim=2)
        if init.shape[-2] != n or init.shape[-1] < 1 or (init.dim() > 2 and tuple(init.shape[:-2]) != batch):
            raise ValueError(f"{fn}: init must have shape {batch + (n, 'l')} with l >= 1, got {tuple(init.shape)}")
        if init.device != device:
            raise ValueError(f"{fn}: init must be on A's device {device}, got {init.device}")
        init = init.to(dtype).expand(batch + tuple(init.shape[-2:]))
        _validate.check_finite(fn, "init", init)
        p = min(n, max(p, init.shape[-1]))
        cols.append(init[..., : p])
    have = sum(c.shape[-1] for c in cols)
    if have < p:
        gdev = generator.device if generator is not None else device
        cols.append(torch.randn(batch + (n, p - have), generator=generator, dtype=dtype, device=gdev).to(device))
    Q = _orth(torch.cat(cols, dim=-1))

    it = 0
    while True:
        Z = _apply(A, Q, kind)
        it += 1
        if it == 1 and kind != "dense" and not bool(torch.isfinite(Z).all()):
            raise ValueError(f"{fn}: A @ Q has non-finite (NaN or Inf) entries: A must be finite")
        H = _inner(Q, Z)  # blocked over rows (see orth.tall_inner)
        theta, S = torch.linalg.eigh((H + H.mT) / 2)
        order = theta.abs().argsort(dim=-1, descending=True)
        theta = theta.gather(-1, order)
        S = S.gather(-1, order.unsqueeze(-2).expand(S.shape))
        if it >= maxiter or not fixed:
            # the top-k Ritz pairs of span(Q) and their exact residuals (n p k flops each)
            Sk = S[..., :k]
            Qk, Zk = _gemm.mm(Q, Sk), _gemm.mm(Z, Sk)
            lam_max = theta[..., :1].abs().clamp_min(torch.finfo(dtype).tiny)
            res = (Zk - Qk * theta[..., None, :k]).norm(dim=-2) / lam_max
            conv = res <= tol
            if it >= maxiter or (not fixed and bool(conv.all())):
                break
        Q = _orth(Z)  # span(A Q): the next block (Rayleigh-Ritz rotates it anyway)
    if not fixed and not bool(conv.all()):
        warnings.warn(f"{fn}: {int((~conv).sum())} of {conv.numel()} eigenpairs not converged after {it} "
                      f"iterations: max residual |Av - lambda v| / |lambda_max| = {float(res.max()):.3e}, "
                      f"tolerance {tol:.3e}", NotConvergedWarning, stacklevel=2)
    out = SubspaceIterationResult(theta[..., :k].contiguous(), Qk.contiguous())
    out.iterations = it
    out.converged = conv
    out.residual_norm = res
    return out
