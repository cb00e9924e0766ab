"""Stages of the randomized low-rank drivers, composed RandLAPACK style:
sketch -> range finder (normalized after every pass) -> QB -> small SVD.

Every stage takes the orthonormalizer and the small SVD as injectable callables (the
defaults come from ``_lowrank_stages``). All products with A are torch GEMMs on the
current stream; nothing here reads a value back to the host except the adaptive QB loop,
once per block (its stopping test), never inside the power iterations.

Conventions: A is (..., m, n) in its compute dtype; a *left* basis is (..., m, l), a
*right* basis (..., n, l); one *pass* is one product of A or A^T with a block.
"""
from __future__ import annotations

import math

import torch

from . import _gemm
from ._lowrank_stages import (orthonormalize, orthonormalize_flagged, orthonormalize_flagged_factored,
                              orthonormalize_flagged_span, orthonormalize_householder, svd_small)
from ._results import SVDResult
from .orth import tall_times_small
from .sketching import draw_seed, random_matrix


_TAG = 6  # the counter-based generator's stream for these blocks (sketching's are 1-5)
_NATIVE_MIN = 1 << 16  # entries from which the native generator is faster (see gaussian)


def gaussian(shape, dtype, device, generator) -> torch.Tensor:
    """Standard normal block (..., rows, cols).

    A CPU block (a CPU generator or None) is drawn as its transpose: it is column-major, the
    layout the oneDNN products read in place (a row-major one is copied first: 16 x 512 x
    42, 16 copies, 1.4 ms). From 2^16 entries (float32/float64, outside torch.compile) it
    comes from the native counter-based generator (``sketching.random_matrix``: Philox
    keyed by a seed drawn from ``generator``, so the same seed gives the same block).
    Measured on an AMD EPYC (2 threads) against torch.randn: 16 x 512 x 42 0.80 against
    1.19 ms, 2048 x 74 0.38 / 0.73, 5461 x 266 3.2 / 7.0; 512 x 26 0.17 / 0.07 (the
    native call's fixed cost), hence the floor.

    Elsewhere torch.randn; with a generator it is drawn on the generator's device (same
    seed -> same numbers wherever A lives) and moved to ``device``."""
    if torch.device(device).type == "cpu" and (generator is None or generator.device.type == "cpu"):
        *batch, rows, cols = shape
        tshape = tuple(batch) + (cols, rows)
        if (dtype in (torch.float32, torch.float64) and math.prod(shape) >= _NATIVE_MIN
                and not torch.compiler.is_compiling()):
            block = random_matrix(math.prod(batch) * cols, rows, kind="gaussian", seed=draw_seed(generator), tag=_TAG,
                                  dtype=dtype)
            return block.reshape(tshape).mT
        return torch.randn(tshape, dtype=dtype, generator=generator).mT
    if generator is None:
        return torch.randn(shape, dtype=dtype, device=device)
    g = torch.randn(shape, dtype=dtype, device=generator.device, generator=generator)
    return g if g.device == torch.device(device) else g.to(device)


_ROW_MAJOR_MAX_BYTES = 16 << 20  # A up to this size: the row-major form of A^T X (see _mm)


def _mm(M, X):
    """M @ X. float32 on the CPU: through oneDNN where :func:`_gemm.routed` takes it. Else,
    when M is a transposed view S^T of a row-major S (e.g. A^T of a row-major A),
    the block is narrow (l < 192) and S takes at most 16 MiB, the product is made as the
    row-major GEMM (X^T S)^T; otherwise as torch's transposed GEMM. Measured with MKL:
    on an Intel Xeon the row-major form was 1.1-1.5x faster at 2048^2 l=74 and 16x512^2
    l=42; on an AMD EPYC (32 MiB L3) it is 1.3-1.4x faster at 384x1024 l=58, 768x2048
    l=42 and 16x512^2 l=42, level at 2048^2 and 1024x2816, and 1.2-1.7x slower for larger
    A (2048x5461 at l = 32..256, 2048x8192) and at l = 256 (1.1-1.2x, square S). Under the
    "blas" :func:`_gemm.policy` (MKL on an Intel CPU) it is taken at every size and width:
    on an Intel Xeon (family 6 model 167, 2 threads) against the transposed GEMM plus the
    transposing copy its column-major result saves the orthonormalization (median of 7,
    two runs), ms: 2048x5461 l=74 7.1-9.3 / 8.8-12.0, l=256 20.3-21.0 / 22.1-23.1, l=266
    23.0-24.4 / 24.4-25.4; 2048^2 l=74 2.5-2.6 / 3.0, l=256 7.3-7.8 / 8.9-9.3; 4096^2
    l=74 10.7-11.3 / 18.3-19.0, l=266 31.5-31.9 / 38.0-39.4 (X row- or column-major). X^T
    stays a view (the GEMM reads it transposed): 0.2-0.9 ms faster than copying it.
    Batched (bmm) with a narrow block, the product with a row-major M is made the same
    way, as the wide output (X^T M^T)^T: 1.27-1.37x faster than M @ X at 16x512^2 l=42 and
    8x128^2 l=18 on the EPYC (MKL's batched GEMM is slow for a tall narrow output). Those
    rules are float32's (MKL) where oneDNN does not take it; float64 always takes the wide
    form (:func:`_gemm.wide_f64_better`: 1.1-5x)."""
    if _gemm.routed(M, X):  # float32 on the CPU: oneDNN, 2-2.6x faster than MKL (see _gemm)
        return _gemm.dnn(M, X)
    if _gemm.wide_f64_better(M, X):  # float64 on the CPU: the wide product (see _gemm)
        return (X.mT @ M.mT).mT
    if M.device.type != "cpu":  # (not measured on a GPU: the row-major form, as before)
        return (X.mT @ M.mT).mT if M.stride(-2) == 1 and M.stride(-1) != 1 else M @ X
    narrow = X.shape[-1] < 192
    if M.stride(-2) == 1 and M.stride(-1) != 1 and (
            _gemm.policy() == "blas" or narrow and M.numel() * M.element_size() <= _ROW_MAJOR_MAX_BYTES):
        return (X.mT @ M.mT).mT  # (the "blas" policy, MKL on an Intel CPU: at every size, see above)
    if M.dim() > 2 and narrow and M.stride(-1) == 1:
        return (X.mT @ M.mT).mT  # batched: the wide output (l x rows) is faster, see above
    if _pad_better(M, X):
        return _padded_mm(M, X)
    return M @ X


_PAD_COLS = 16             # float32 blocks are padded to a multiple of this many columns ...
_PAD_MIN_NUMEL = 1 << 21   # ... when M has at least this many entries (see _pad_better)


def _pad_better(M, X) -> bool:
    """Whether the plain product M @ X of one large float32 matrix is faster with X padded
    by zero columns to a multiple of 16 (:func:`_padded_mm`): MKL's float32 GEMM is fastest
    at widths that fill its 16-column kernels. Measured on an AMD EPYC (2 threads, min of 2
    medians of 7),
    padded against plain, 2048 x 5461 at l = 26..266: 1.03-1.32x (A) and 1.04-1.51x (A^T;
    l = 266 -> 272: 36 against 54 ms), 4096^2: 1.10-1.31x but for one 0.95x, 1024 x 2816
    (A): 1.03-1.20x; 512^2 and 384 x 1024: 0.97-1.05x (hence the size floor). Not for the
    row-major form of A^T X (0.84-1.0x), nor float64 (0.82-2.4x: no rule), nor bfloat16
    (0.8-1.05x)."""
    l = X.shape[-1]
    return (M.dim() == 2 and M.dtype == torch.float32 and l % _PAD_COLS != 0 and l > _PAD_COLS
            and M.numel() >= _PAD_MIN_NUMEL)


def _padded_mm(M, X):
    """M @ X with X padded by zero columns to a multiple of 16; returns the first l columns,
    a view (row stride l rounded up), which BLAS reads in place. The zero columns change
    no value of the others (each output column is its own dot products)."""
    l = X.shape[-1]
    Xp = X.new_empty(X.shape[:-1] + (-(-l // _PAD_COLS) * _PAD_COLS,))
    Xp[..., :l] = X
    Xp[..., l:] = 0
    return (M @ Xp)[..., :l]


def product(A, X, left, Alow=None, Acols=None):
    """One pass: A^T @ X (``left``) or A @ X, in A's dtype; with ``Alow`` (A in a lower
    precision, e.g. bfloat16) the product is made from Alow and X rounded to its dtype
    (float32 accumulation), and returned in A's dtype. ``Acols``: None or a contiguous copy
    of A^T (:func:`columns_copy`), from whose transposed view A @ X is then made."""
    if Alow is None:
        if Acols is not None and not left:
            return _mm(Acols.mT, X)
        return _mm(A.mT if left else A, X)
    P = _mm(Alow.mT if left else Alow, X.to(Alow.dtype))
    return P.to(A.dtype)


_COLUMNS_COPY_MAX_BYTES = 1 << 30  # the largest batch columns_copy duplicates (1 GiB)


def columns_copy(A, l, right_passes):
    """A contiguous copy of A^T (the native transposed copy) when the float32 right products
    A @ X of a batch then become grouped oneDNN convolutions (as the left ones A^T X are,
    see _gemm.conv_sizes) and there are two or more of them to pay for the copy; else None.
    Measured on an AMD EPYC (2 threads), 16 x 512^2, l = 42: the copy 1.8-2.5 ms, a right
    product 2.6 ms as a convolution against 4.3-4.8 ms as a loop of oneDNN calls. The copy
    doubles A's memory for the call, so it is made for batches of at most
    :data:`_COLUMNS_COPY_MAX_BYTES` only. Under the "blas" :func:`_gemm.policy` (MKL on an
    Intel CPU) there is no convolution and so no copy."""
    m, n = A.shape[-2:]
    if (right_passes < 2 or A.dim() < 3 or A.numel() <= m * n or A.dtype != torch.float32 or A.device.type != "cpu"
            or A.numel() * A.element_size() > _COLUMNS_COPY_MAX_BYTES
            or not A.is_contiguous() or not _gemm.enabled() or not _gemm.conv_sizes(m, n, l)
            or (torch.is_grad_enabled() and A.requires_grad) or torch.compiler.is_compiling()):
        return None
    return torch.ops.subspace_linalg.transpose_copy.default(A)


def sketch_block(batch, n, l, dtype, device, generator) -> torch.Tensor:
    """A Gaussian sketch (*batch, n, l): one (n, l) block broadcast over a batch of two or
    more elements (see :func:`start_block`)."""
    if math.prod(batch) > 1:
        return gaussian((n, l), dtype, device, generator).expand(tuple(batch) + (n, l))
    return gaussian(tuple(batch) + (n, l), dtype, device, generator)


def start_block(A, l, init, generator, Alow=None, Acols=None) -> torch.Tensor:
    """The block (..., m, l) the iteration starts from, before orthonormalization: A @ Omega
    with a Gaussian Omega (one pass; from ``Alow`` when given), or [init, G] padding init
    with Gaussian columns G up to l (no pass).

    A batch shares one Omega (n, l), broadcast: each element's sketch is still a Gaussian
    matrix (its error bound unchanged); the elements' failures are no longer independent.
    The products take the broadcast block at the speed of a full one, and the fill is one
    element's: measured on an AMD EPYC (AVX2, 2 threads), 16 x 512^2, l = 42: fill 0.20
    against 2.04 ms, the product 3.97 against 4.03 ms."""
    m, n = A.shape[-2:]
    batch = A.shape[:-2]
    if init is None:
        return product(A, sketch_block(batch, n, l, A.dtype, A.device, generator), False, Alow, Acols)
    extra = l - init.shape[-1]
    if extra <= 0:
        return init
    G = gaussian(batch + (m, extra), A.dtype, A.device, generator) / m ** 0.5  # ~unit columns, like init's
    return torch.cat([init, G], dim=-1)


class FlaggedOrth:
    """The orthonormalization stage of the passes: sync-free (``orthonormalize_flagged``;
    ``span`` for the intermediate bases, ``orthonormalize_flagged_span``), AND-ing the
    per-element success flags into ``ok`` for one check after the passes.

    On the CPU (outside torch.compile) the flags are read at once instead, a host read
    costing nothing there: the failed elements of a block are replaced by Householder QR
    on the spot (:func:`orthonormalize_householder`: what the robust orthonormalize's CPU
    rescue would make of them), and once every element of a block has failed the later
    blocks of the call go to Householder directly. No pass is then made twice. Before,
    a float32 rsvd whose blocks fail the condition test (sigma_i = i^-2 at 2048^2 r64,
    l = 74: kappa 5476 > u^-1/2, all of them) made its passes again with the robust
    orthonormalization: 92.9-94.1 ms, now 43.1-45.8 (separate processes, two runs, AMD
    EPYC AVX2); sigma_i = 1/i and 16 x 512^2 (which pass) within the host's noise."""

    def __init__(self):
        self.ok = None
        self.direct = False  # (CPU) every element of a block failed: Householder from here on

    def _keep(self, Q, ok):
        if ok is not None:
            self.ok = ok if self.ok is None else self.ok & ok
        return Q

    @staticmethod
    def _now(Y) -> bool:
        return Y.device.type == "cpu" and not torch.compiler.is_compiling()

    def _bad(self, ok):
        """None where nothing failed, else the failed elements' index (an empty tuple: all)."""
        if ok is None or bool(ok.all()):
            return None
        if ok.dim() == 0 or not bool(ok.any()):
            self.direct = True
            return ()
        return torch.nonzero(~ok, as_tuple=True)

    def _basis(self, flagged, Y):
        if self.direct:
            return orthonormalize_householder(Y)
        Q, ok = flagged(Y)
        if not self._now(Y):
            return self._keep(Q, ok)
        bad = self._bad(ok)
        if bad is None:
            return Q
        if bad == ():
            return orthonormalize_householder(Y)
        Q = Q.clone()
        Q[bad] = orthonormalize_householder(Y[bad])
        return Q

    def __call__(self, Y):
        return self._basis(orthonormalize_flagged, Y)

    def span(self, Y):
        return self._basis(orthonormalize_flagged_span, Y)

    def factored(self, Y):
        if self.direct:
            return orthonormalize_householder(Y), None, None
        Q1, T, R, ok = orthonormalize_flagged_factored(Y)
        if not self._now(Y):
            return self._keep((Q1, T, R), ok)
        bad = self._bad(ok)
        if bad is None:
            return Q1, T, R
        if bad == ():
            return orthonormalize_householder(Y), None, None
        Qh = orthonormalize_householder(Y[bad])  # (a failed element: Q = Qh, T = I, R = Qh^T Y)
        Q1, T, R = Q1.clone(), T.clone(), R.clone()
        Q1[bad] = Qh
        T[bad] = torch.eye(T.shape[-1], dtype=T.dtype, device=T.device)
        R[bad] = Qh.mT @ Y[bad]
        return Q1, T, R


def span_orth(orth):
    """The intermediate-basis form of an orthonormalization stage (itself when it has none)."""
    return getattr(orth, "span", orth)


def factored_orth(orth):
    """The factored form of an orthonormalization stage: Y -> (Q1, T, R) with the
    orthonormal basis Q = Q1 @ T and Y = Q @ R (T, R small upper triangular; None when the
    stage has no factored form: T = I, R to be formed as Q^T Y)."""
    f = getattr(orth, "factored", None)
    return f if f is not None else (lambda Y: (orth(Y), None, None))


def qmul(Q1, T, W):
    """(Q1 T) W as Q1 (T W): T applied to the small matrix W, never to Q1."""
    return tall_times_small(Q1, W if T is None else T @ W)


def qmul_t(Q1, T, W):
    """((Q1 T) W)^T as the transposed view of Q1 (T W): the GEMM reads Q1 row-major, 1.4x
    faster than (T W)^T Q1^T at 5461 x 256 (AMD EPYC, MKL); a caller wanting Vh's rows
    contiguous (V = Vh^T is) copies it."""
    return qmul(Q1, T, W).mT


def robust(run, A, *starts):
    """``run(A, *starts, orth=...)`` (a tuple of tensors with A's batch dims in front) with
    the sync-free flagged orthonormalization; then one host read of the flags, and the
    batch elements whose flags failed (an ill-conditioned block: a Cholesky breakdown or a
    condition estimate beyond what the dtype allows) are recomputed from the same start with
    the robust :func:`orthonormalize`."""
    fo = FlaggedOrth()
    out = run(A, *starts, orth=fo)
    if fo.ok is None or bool(fo.ok.all()):
        return out
    if A.dim() == 2:
        return run(A, *starts, orth=orthonormalize)
    bad = torch.nonzero(~fo.ok, as_tuple=True)
    redo = run(A[bad], *(None if s is None else s[bad] for s in starts), orth=orthonormalize)
    out = tuple(o.clone() for o in out)
    for o, r in zip(out, redo):
        o[bad] = r
    return out


def alternate(A, Q, passes, orth=orthonormalize, Alow=None, nlow=0, Acols=None):
    """``passes`` (>= 1) products alternately A^T @ X and A @ X starting from the left
    basis Q, orthonormalizing every product but the last (normalization after every pass:
    no loss of the trailing directions to rounding, HMT 2011 Alg. 4.4). The basis of the
    last product is fully orthonormal (``orth``); the earlier ones only need to span the
    product well conditioned (``span_orth(orth)``: one CholeskyQR pass). The first ``nlow``
    products are made from ``Alow`` (mixed precision, see :func:`product`); ``Acols``: see
    :func:`product`.

    The basis of the last product is kept factored, X = Q1 T (``factored_orth``), and so is
    the last product, P = P1 T with P1 = A Q1 (or A^T Q1): T only ever multiplies small
    matrices (see :func:`factor`).

    Returns ``(P1, (Q1, T), left)``: the last product and the basis it was made from; when
    ``left`` P = A^T X (X a left basis, A ~= X P^T), otherwise P = A X (A ~= P X^T)."""
    X, T, left = Q, None, True
    mid = span_orth(orth)
    for i in range(passes):
        P = product(A, X, left, Alow if i < nlow else None, Acols)
        if i == passes - 1:
            return P, (X, T), left
        if i == passes - 2:
            X, T, _ = factored_orth(orth)(P)
        else:
            X = mid(P)
        left = not left
    raise ValueError("alternate: passes must be >= 1")


def iterate_left(A, X0, iters, orth=orthonormalize):
    """Q = orth(X0), then ``iters`` subspace iterations Q <- orth(A orth(A^T Q)) (two passes
    each). Returns ``(Q,)``."""
    Q = orth(X0)
    for _ in range(iters):
        Q = orth(product(A, orth(product(A, Q, True)), False))
    return (Q,)


def lowrank_svd(A, X0, k, passes, krylov_iters=None, orth=orthonormalize, svd=svd_small,
                orth_start=True, Alow=None, nlow=0, signs=None, Acols=None) -> SVDResult:
    """The fixed-rank pipeline from a start block X0 (..., m, l): Q = orth(X0), then either
    ``passes`` alternating passes (subspace iteration) or ``krylov_iters`` block Krylov
    steps, then the rank-k factorization (no sign convention applied).

    ``orth_start=False`` skips orth(X0): valid for subspace iteration with passes >= 2 from
    a well-conditioned X0 (a warm start), since the first product is orthonormalized and
    only its span matters. ``Alow``/``nlow``: the first nlow passes from a lower-precision
    copy of A (subspace iteration only, see :func:`alternate`). ``signs``: see :func:`factor`.
    ``Acols``: see :func:`product` (subspace iteration only)."""
    if krylov_iters is not None:
        Qk, Z = block_krylov(A, orth(X0), krylov_iters, orth)
        return factor(Z, Qk, True, k, svd, orth, signs)
    Q = X0 if not orth_start and passes >= 2 else (orth if passes < 2 else span_orth(orth))(X0)
    P, X, left = alternate(A, Q, passes, orth, Alow, nlow, Acols)
    return factor(P, X, left, k, svd, orth, signs)


def svd_tall(P, svd=svd_small, orth=orthonormalize, Tright=None):
    """Thin SVD of the tall block P Tright (..., p, l), p >= l (Tright: an invertible l x l
    factor or None), as ``(Q1, T, Ur, S, Vrh)`` with P Tright = (Q1 T) Ur diag(S) Vrh:
    Q1 T = orth(P) factored (the same span as P Tright), P = (Q1 T) R, and
    R Tright = Ur S Vrh (small SVD). The caller forms qmul(Q1, T, Ur) after truncating Ur."""
    Q1, T, R = factored_orth(orth)(P)
    if R is None:
        R = Q1.mT @ P
    if Tright is not None:
        R = R @ Tright
    Ur, S, Vrh = svd(R)
    return Q1, T, Ur, S, Vrh


def factor(P, X, left, k, svd=svd_small, orth=orthonormalize, signs=None) -> SVDResult:
    """Rank-k SVD of A ~= X P^T (left) or A ~= P X^T from the last product of a pass
    sequence. X is a basis, or a factored one (Q1, T) with X = Q1 T, and then P is
    factored with the same T (the product is P T, see :func:`alternate`). The small SVD is
    of an l x l matrix.

    ``signs``: None, or the factor that carries the sign convention of :func:`fix_signs`:
    "U" (the largest-magnitude entry of every column of U positive) or "Vh" (of every row
    of Vh: the U of a transposed problem). The flips are applied to the other factor's
    small matrix before its product, never to a second big one."""
    Qx, Tx = X if isinstance(X, tuple) else (X, None)
    Qp, Tp, Ur, S, Vrh = svd_tall(P, svd, orth, Tx)
    Ur, S, Vrh = Ur[..., :, :k], S[..., :k], Vrh[..., :k, :]
    # A ~= (X Vrh^T) S (Qp Ur)^T (left) or (Qp Ur) S (X Vrh^T)^T
    u_side, v_side = ((Qx, Tx, Vrh.mT), (Qp, Tp, Ur)) if left else ((Qp, Tp, Ur), (Qx, Tx, Vrh.mT))
    if signs == "Vh":
        Vh = qmul_t(*v_side)
        s = column_signs(Vh.mT)
        return SVDResult(qmul(u_side[0], u_side[1], u_side[2] * s), S, Vh * s.mT)
    U = qmul(*u_side)
    if signs == "U":
        s = column_signs(U)
        return SVDResult(U * s, S, qmul_t(v_side[0], v_side[1], v_side[2] * s))
    return SVDResult(U, S, qmul_t(*v_side))


def column_signs(U) -> torch.Tensor:
    """(..., 1, k) of +-1: +1 where the entry of largest magnitude of U's column is positive
    (a tie between +x and -x, or a zero column: +1). Two column reductions (max, min): a
    tenth of the time of argmax(|U|) and a gather at (2048, 256)."""
    keep = U.amax(dim=-2, keepdim=True) >= -U.amin(dim=-2, keepdim=True)
    one = torch.ones((), dtype=U.dtype, device=U.device)
    return torch.where(keep, one, -one)


def fix_signs(res: SVDResult) -> SVDResult:
    """Deterministic sign convention: the entry of largest magnitude of every column of U
    is positive (see :func:`column_signs`); the rows of Vh flip with it, U S Vh is
    unchanged."""
    U, S, Vh = res
    s = column_signs(U)
    return SVDResult(U * s, S, Vh * s.mT)


def _project_out(P, Y):
    return Y - P @ (P.mT @ Y)


def block_krylov(A, Q0, iters, orth=orthonormalize):
    """Block Krylov basis [Q0, Q1, ..., Qq] of span{X, (AA^T)X, ..., (AA^T)^q X} with X = Q0,
    normalized after every pass, each new block orthogonalized against all earlier ones
    (project, orthonormalize, project, orthonormalize: twice is enough). Every pass is
    reused: the rows of B = Q^T A are the blocks Z_j^T = (A^T Q_j)^T computed on the way, so
    2q + 1 passes give a basis of (q + 1) l columns (capped at min(m, n)).

    Returns ``(Q, Z)`` with Q (..., m, L) orthonormal and Z = A^T Q (..., n, L)."""
    d = min(A.shape[-2], A.shape[-1])
    blocks, Zs = [Q0], []
    Q, width = Q0, Q0.shape[-1]
    for _ in range(iters):
        room = d - width
        if room <= 0:
            break
        Z = product(A, Q, True)
        Zs.append(Z)
        Y = product(A, orth(Z), False)
        if Y.shape[-1] > room:
            Y = Y[..., :room]
        P = torch.cat(blocks, dim=-1)
        Qn = orth(_project_out(P, Y))
        Qn = orth(_project_out(P, Qn))
        blocks.append(Qn)
        Q, width = Qn, width + Qn.shape[-1]
    Zs.append(product(A, Q, True))
    return torch.cat(blocks, dim=-1), torch.cat(Zs, dim=-1)


def _qb_block(A, Q, B, Omega, power_iters, orth):
    """The next orthonormal block of the adaptive QB, orthogonal to Q: range of the residual
    (A - QB) Omega refined by power iterations on the residual."""
    Y = product(A, Omega, False)
    Y = Y - Q @ (Q.mT @ Y)
    for _ in range(power_iters):
        Y = orth(Y)
        Z = orth(product(A, Y, True) - B.mT @ (Q.mT @ Y))
        Y = product(A, Z, False) - Q @ (B @ Z)
    Qi = orth(Y)
    if Q.shape[-1]:
        Qi = orth(_project_out(Q, Qi))
    return Qi


def adaptive_qb(A, tol, max_rank, block, power_iters, generator, *, cancel_tol2):
    """Blocked adaptive QB (Yu, Gu & Li 2018, Alg. 2 with power iterations on the residual):
    grow Q (..., m, K) and B = Q^T A (..., K, n) by blocks of ``block`` columns until
    ||A - QB||_F <= tol ||A||_F for every batch element, or K = max_rank.

    The residual is tracked exactly as ||A||_F^2 - ||B||_F^2 (Q orthonormal); when tol^2 is
    below ``cancel_tol2`` (where that difference loses its digits to cancellation) the
    stopping test is confirmed with an explicit ||A - QB||_F (one extra pass).

    Each block runs with the sync-free flagged orthonormalization; the stopping test and the
    flags are read back together, once per block (a failed block is recomputed with the
    robust orthonormalization).

    Returns ``(Q, B, E2, target2)``: E2 (...,) the squared residual, target2 = tol^2 ||A||_F^2."""
    m, n = A.shape[-2:]
    batch = A.shape[:-2]
    norm2 = A.square().sum(dim=(-2, -1))
    target = (tol * tol) * norm2
    Q = A.new_zeros(batch + (m, 0))
    B = A.new_zeros(batch + (0, n))
    E = norm2.clone()
    explicit = tol * tol < cancel_tol2
    while Q.shape[-1] < max_rank:
        b = min(block, max_rank - Q.shape[-1])
        Omega = sketch_block(batch, n, b, A.dtype, A.device, generator)  # (shared by a batch, as start_block's)
        fo = FlaggedOrth()
        Qi = _qb_block(A, Q, B, Omega, power_iters, fo)
        Bi = Qi.mT @ A
        En = (E - Bi.square().sum(dim=(-2, -1))).clamp_min(0)
        ok = torch.ones((), dtype=torch.bool, device=A.device) if fo.ok is None else fo.ok.all()
        conv, ok = torch.stack([(En <= target).all(), ok]).tolist()  # the one host read per block
        if not ok:
            Qi = _qb_block(A, Q, B, Omega, power_iters, orthonormalize)
            Bi = Qi.mT @ A
            En = (E - Bi.square().sum(dim=(-2, -1))).clamp_min(0)
            conv = bool((En <= target).all())
        Q = torch.cat([Q, Qi], dim=-1)
        B = torch.cat([B, Bi], dim=-2)
        E = En
        if conv:
            if not explicit:
                break
            E = (A - Q @ B).square().sum(dim=(-2, -1))
            if bool((E <= target).all()):
                break
    return Q, B, E, target


def choose_rank(S, E2, target2) -> int:
    """Smallest k with E2 + sum_{i>k} S_i^2 <= target2 for every batch element (>= 1)."""
    tail = S.square().flip(-1).cumsum(-1).flip(-1)  # tail[..., i] = sum_{j>=i} S_j^2
    tail = torch.cat([tail, torch.zeros_like(tail[..., :1])], dim=-1)  # tail[..., k] for k = 0..K
    ok = (E2.unsqueeze(-1) + tail) <= target2.unsqueeze(-1)
    # first k that is ok (ok is monotone in k; k = K may still fail when max_rank was hit)
    K = S.shape[-1]
    ks = torch.where(ok.any(-1), ok.float().argmax(-1), torch.full_like(E2, K, dtype=torch.long))
    return max(1, int(ks.max())) if ks.numel() else 1
