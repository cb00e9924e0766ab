"""Structured sparse projection (Grass): choose k rows (or columns) of a matrix by norm
or at random, gather them with a per-row scale, and scatter back (the adjoint).

    idx = sl.select_rows(G, k, method="norm2", generator=g)      # (..., k), ascending
    idx, s = sl.select_rows(G, k, method="norm2", return_scale=True)
    PG = sl.gather_rows(G, idx, scale=s)                         # (..., k, n) = P G
    G_hat = sl.scatter_rows(PG, idx, G.shape[-2], scale=s)        # P^T P G, E[P^T P] = I
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch

from . import _validate
from ._dtypes import ALL_FLOATING, compute_dtype

METHODS = ("topk", "norm", "norm2", "uniform")


class RowSelection(NamedTuple):
    """``indices`` (..., k) int64, ascending; ``scale`` (..., k) in the compute dtype of
    the input (float32 for float16/bfloat16)."""

    indices: torch.Tensor
    scale: torch.Tensor


def _ops():
    if not _OPS:
        from . import _ops  # noqa: F401  (registers the ops)

        _OPS.append(torch.ops.subspace_linalg)
    return _OPS[0]


_OPS: list = []


def _uniform(shape, generator, device, dtype) -> torch.Tensor:
    gdev = generator.device if generator is not None else device
    u = torch.rand(shape, generator=generator, device=gdev, dtype=dtype)
    return u.to(device)


def select_rows(G: torch.Tensor, k: int, *, method: str = "topk", dim: int = -2,
                generator: torch.Generator | None = None, return_scale: bool = False):
    """Indices of ``k`` rows (``dim=-2``) or columns (``dim=-1``) of ``G`` (..., m, n),
    per batch element, sorted ascending, without duplicates.

    ``method``:
      - ``"topk"``: the k largest Euclidean norms (ties broken as ``torch.topk`` does);
      - ``"norm"`` / ``"norm2"``: sampling without replacement with probability proportional
        to the norm / squared norm (successive sampling: exponential keys E_i / w_i with
        E_i ~ Exp(1), the k smallest kept; Efraimidis-Spirakis, the Gumbel top-k trick).
        The first draw picks row i with probability exactly w_i / sum(w). Rows of zero
        weight are never chosen while rows of positive weight remain;
      - ``"uniform"``: a uniformly random k-subset.

    ``return_scale=True`` returns ``RowSelection(indices, scale)`` with the unbiased
    rescaling: with P the k x m selection matrix with rows ``scale_j e_{idx_j}^T``,
    E[P^T P] = I, so ``scatter_rows(gather_rows(G, idx, scale=s), idx, m, scale=s)`` is an
    unbiased estimate of G. The formula (Horvitz-Thompson weights 1 / pi_i):
      - ``"uniform"``: pi_i = k / m exactly, scale = sqrt(m / k);
      - ``"norm"``/``"norm2"``: rank-conditioning (Cohen & Kaplan, bottom-k sketches):
        with tau the (k+1)-th smallest key, pi_i = 1 - exp(-w_i tau) is the inclusion
        probability of row i given the other keys, and scale_i = pi_i^(-1/2) (1 when k = m);
      - ``"topk"``: a deterministic choice, scale = 1.

    Returns int64 indices (..., k) on G's device (and the scale in G's compute dtype).
    ``generator`` (a torch.Generator on any device) makes the sampling reproducible.
    """
    fn = "select_rows"
    _validate.check_tensor(fn, "G", G, dtypes=ALL_FLOATING, min_ndim=2)
    d = _validate.check_dim(fn, G, dim)
    if d < G.dim() - 2:
        raise ValueError(f"{fn}: dim must pick one of the last two dims (rows -2 or columns -1) of G "
                         f"{tuple(G.shape)}, got {dim}")
    _validate.check_choice(fn, "method", method, METHODS)
    _validate.check_generator(fn, generator)
    m = G.shape[d]
    k = _validate.check_int(fn, "k", k, minimum=0)
    if k > m:
        raise ValueError(f"{fn}: k must be <= {m} (the size of G along dim {dim}, shape {tuple(G.shape)}), got {k}")
    other = G.dim() - 1 if d == G.dim() - 2 else G.dim() - 2
    cdt = compute_dtype(G.dtype)
    batch = G.shape[:-2]
    if method == "uniform":
        keys = _uniform(batch + (m,), generator, G.device, torch.float64)
        _, pos = torch.topk(keys, k, dim=-1, largest=False)
        idx, _ = torch.sort(pos, dim=-1)
        if not return_scale:
            return idx
        s = torch.full(idx.shape, (m / k) ** 0.5 if k else 1.0, dtype=cdt, device=G.device)
        return RowSelection(idx, s)
    w = torch.linalg.vector_norm(G.to(cdt), dim=other)
    if method == "topk":
        _, pos = torch.topk(w, k, dim=-1)
        idx, _ = torch.sort(pos, dim=-1)
        return RowSelection(idx, torch.ones(idx.shape, dtype=cdt, device=G.device)) if return_scale else idx
    w = w.to(torch.float64)
    if method == "norm2":
        w = w * w
    u = _uniform(batch + (m,), generator, G.device, torch.float64)
    keys = -torch.log(u) / w  # Exp(1) / w; w = 0 -> +inf (never before a finite key)
    kk = min(k + 1, m)
    kv, pos = torch.topk(keys, kk, dim=-1, largest=False, sorted=True)
    sel = pos[..., :k]
    idx, order = torch.sort(sel, dim=-1)
    if not return_scale:
        return idx
    if k == m or k == 0:
        s = torch.ones(idx.shape, dtype=cdt, device=G.device)
    else:
        tau = kv[..., k:k + 1]
        wi = torch.gather(w, -1, idx)
        pi = -torch.expm1(-wi * tau)
        # tau = inf: fewer than k + 1 rows of positive weight, every one of them is taken
        # (pi = 1); zero-weight rows filling up the count get scale 1 as well
        pi = torch.where(torch.isinf(tau) | (wi == 0), torch.ones_like(pi), pi)
        s = torch.rsqrt(pi).to(cdt)
    return RowSelection(idx, s)


def _flat_batch(fn: str, X: torch.Tensor, idx: torch.Tensor, scale, name: str):
    """X (..., r, n) -> (B, r, n); idx, scale -> (B or 1, k)."""
    batch = X.shape[:-2]
    Xb = X.reshape((math.prod(batch),) + X.shape[-2:])
    k = idx.shape[-1]
    if idx.dim() == 1:
        ib = idx.reshape(1, k)
    else:
        try:
            torch.broadcast_shapes(idx.shape[:-1], batch)
        except RuntimeError:
            raise ValueError(f"{fn}: idx batch shape {tuple(idx.shape[:-1])} does not broadcast to {name}'s "
                             f"batch shape {tuple(batch)}") from None
        if len(idx.shape[:-1]) > len(batch) or torch.broadcast_shapes(idx.shape[:-1], batch) != batch:
            raise ValueError(f"{fn}: idx batch shape {tuple(idx.shape[:-1])} must broadcast to {name}'s batch "
                             f"shape {tuple(batch)}")
        ib = idx.reshape(1, k) if idx.numel() == k else idx.expand(batch + (k,)).reshape(math.prod(batch), k)
    sb = None
    if scale is not None:
        _validate.check_tensor(fn, "scale", scale, dtypes=ALL_FLOATING, min_ndim=1)
        if scale.shape != idx.shape:
            raise ValueError(f"{fn}: scale must have idx's shape {tuple(idx.shape)}, got {tuple(scale.shape)}")
        sb = scale.to(X.dtype).reshape(ib.shape) if ib.shape[0] == 1 else \
            scale.to(X.dtype).expand(batch + (k,)).reshape(math.prod(batch), k)
    return Xb, ib, sb


def _check_devices(fn: str, X: torch.Tensor, idx: torch.Tensor, scale, name: str) -> None:
    dev = X.device
    if idx.device != dev or (scale is not None and isinstance(scale, torch.Tensor) and scale.device != dev):
        _validate.check_same_device(fn, **{name: X}, idx=idx, scale=scale)


def _check_index(fn: str, idx) -> None:
    if not isinstance(idx, torch.Tensor):
        raise TypeError(f"{fn}: idx must be a torch.Tensor, got {type(idx).__name__}")
    if idx.dtype != torch.int64:
        raise TypeError(f"{fn}: idx must be int64, got {idx.dtype}")
    if idx.dim() < 1:
        raise ValueError(f"{fn}: idx must have at least one dim (..., k), got shape {tuple(idx.shape)}")


def gather_rows(G: torch.Tensor, idx: torch.Tensor, *, scale: torch.Tensor | None = None) -> torch.Tensor:
    """Rows ``idx`` of ``G`` (..., m, n), each times ``scale``: out[..., j, :] =
    G[..., idx[..., j], :] * scale[..., j]. ``idx`` (int64) is (k,) (shared by the batch)
    or (..., k) broadcasting to G's batch; ``scale`` has idx's shape and is cast to G's
    dtype. Bitwise equal to ``torch.gather`` (times the scale). An index outside [0, m)
    raises ValueError before any native call. Differentiable in G and scale (the
    adjoint is ``scatter_rows``). Returns a new (..., k, n) tensor of G's dtype."""
    if (scale is None and isinstance(G, torch.Tensor) and isinstance(idx, torch.Tensor) and G.dim() == 2
            and idx.dim() == 1 and idx.dtype == torch.int64 and G.dtype in ALL_FLOATING and idx.device == G.device):
        # the common call (one matrix, one index vector): the checks below all pass, fewer
        # Python steps (the call often follows a pass that evicted the interpreter's caches)
        op = _ops().gather_rows if G.requires_grad and torch.is_grad_enabled() else _ops().gather_rows_nograd
        return op.default(G.unsqueeze(0), idx.unsqueeze(0), None).squeeze(0)
    fn = "gather_rows"
    _validate.check_tensor(fn, "G", G, dtypes=ALL_FLOATING, min_ndim=2)
    _check_index(fn, idx)
    _check_devices(fn, G, idx, scale, "G")
    Gb, ib, sb = _flat_batch(fn, G, idx, scale, "G")
    grad = torch.is_grad_enabled() and (G.requires_grad or (sb is not None and sb.requires_grad))
    out = (_ops().gather_rows if grad else _ops().gather_rows_nograd).default(Gb, ib, sb)
    return out.reshape(G.shape[:-2] + (idx.shape[-1], G.shape[-1]))


def scatter_rows(X: torch.Tensor, idx: torch.Tensor, num_rows: int, *, scale: torch.Tensor | None = None,
                 out: torch.Tensor | None = None) -> torch.Tensor:
    """The adjoint of ``gather_rows``: a (..., num_rows, n) tensor, zero except
    ``out[..., idx[..., j], :] += X[..., j, :] * scale[..., j]``; duplicate indices
    accumulate in increasing j (bitwise ``index_add_`` of ``X * scale``). With ``out``
    (..., num_rows, n) given, accumulates into it in place and returns it. Indices outside
    [0, num_rows) raise ValueError before any native call. Differentiable in X and scale
    (without ``out``; with ``out`` under autograd the sum is formed then added)."""
    fn = "scatter_rows"
    _validate.check_tensor(fn, "X", X, dtypes=ALL_FLOATING, min_ndim=2)
    _check_index(fn, idx)
    num_rows = _validate.check_int(fn, "num_rows", num_rows, minimum=0)
    if X.shape[-2] != idx.shape[-1]:
        raise ValueError(f"{fn}: X must have idx.shape[-1] = {idx.shape[-1]} rows, got shape {tuple(X.shape)}")
    if out is None:
        _check_devices(fn, X, idx, scale, "X")
    else:
        _validate.check_same_device(fn, X=X, idx=idx, scale=scale, out=out)
    Xb, ib, sb = _flat_batch(fn, X, idx, scale, "X")
    shape = X.shape[:-2] + (num_rows, X.shape[-1])
    if out is None:
        return _ops().scatter_rows.default(Xb, ib, sb, num_rows).reshape(shape)
    _validate.check_tensor(fn, "out", out, dtypes=(X.dtype,))
    if tuple(out.shape) != tuple(shape):
        raise ValueError(f"{fn}: out must have shape {tuple(shape)}, got {tuple(out.shape)}")
    needs_grad = torch.is_grad_enabled() and (X.requires_grad or (sb is not None and sb.requires_grad)
                                              or out.requires_grad)
    ob = None
    if not needs_grad:
        try:
            ob = out.view((math.prod(shape[:-2]),) + shape[-2:])
        except RuntimeError:
            ob = None
    if ob is None:
        out.add_(_ops().scatter_rows.default(Xb, ib, sb, num_rows).reshape(shape))
    else:
        _ops().scatter_rows_.default(Xb, ib, sb, ob)
    return out
