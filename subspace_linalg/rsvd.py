"""Randomized range finder and SVD (Halko, Martinsson & Tropp 2011), block Krylov and
adaptive-rank variants, warm start, and an a-posteriori error estimate.

The drivers validate, cast, and compose the stages of ``_rsvd_core`` (sketch -> range
finder -> QB -> small SVD). Products with A are torch GEMMs on the current stream; the
orthonormalization and the small SVD are the injectable stages of ``_lowrank_stages``.
"""
from __future__ import annotations

import torch

from . import _gemm, _validate
from . import _rsvd_core as core
from ._dtypes import ALL_FLOATING, compute_dtype, eps
from ._results import SVDResult

_METHODS = ("subspace", "block_krylov")
_ADAPTIVE_BLOCK = 32      # columns added per step of the adaptive QB
_CANCEL = 1e3             # tol^2 below _CANCEL * eps: confirm ||A - QB||_F explicitly


def _check_A(fn: str, A) -> tuple[int, int]:
    _validate.check_tensor(fn, "A", A, dtypes=ALL_FLOATING, min_ndim=2, allow_empty=False)
    return A.shape[-2], A.shape[-1]


def _check_bool(fn: str, name: str, v) -> bool:
    if not isinstance(v, bool):
        raise TypeError(f"{fn}: {name} must be a bool, got {type(v).__name__}")
    return v


def _check_init(fn: str, A, init, lo: int, hi: int):
    """init must be a left basis (..., m, l) of A's batch shape, lo <= l <= hi."""
    if init is None:
        return None
    _validate.check_tensor(fn, "init", init, dtypes=ALL_FLOATING, min_ndim=2)
    if init.shape[:-1] != A.shape[:-1]:
        raise ValueError(f"{fn}: init must have shape {tuple(A.shape[:-1])} + (l,) (A's batch dims and rows), "
                         f"got {tuple(init.shape)}")
    l0 = init.shape[-1]
    if not lo <= l0 <= hi:
        raise ValueError(f"{fn}: init must have between {lo} and {hi} columns, got {l0}")
    _validate.check_same_device(fn, A=A, init=init)
    return init


def _prepare(fn, A, generator, check_finite, init=None):
    _validate.check_generator(fn, generator)
    _check_bool(fn, "check_finite", check_finite)
    cdt = compute_dtype(A.dtype)
    if check_finite:
        _validate.check_finite(fn, "A", A)
        if init is not None:
            _validate.check_finite(fn, "init", init)
    A = A.to(cdt)
    init = None if init is None else init.to(cdt)
    return A, init


def range_finder(A: torch.Tensor, size: int, *, power_iters: int = 2, init: torch.Tensor | None = None,
                 generator: torch.Generator | None = None, check_finite: bool = True) -> torch.Tensor:
    """Orthonormal basis Q (..., m, size) approximating the range of A (..., m, n).

    Cold start: Q = orth((A A^T)^q A Omega) with a Gaussian Omega (n, size) (one for the
    whole batch), computed with
    an orthonormalization after every pass (2q + 1 passes over A). Warm start: ``init``
    (..., m, l0), l0 <= size, e.g. the previous basis, padded with Gaussian columns to
    ``size``; then q iterations Q <- orth(A orth(A^T Q)) (2q passes; q = 0 returns
    orth(init)). ``size`` must be in [1, min(m, n)].

    Returns Q in the compute dtype: float32/float64 as A, float32 for float16/bfloat16 A.
    Reproducible with ``generator`` (the sketch is drawn on the generator's device).
    Raises TypeError/ValueError for bad arguments, ValueError for non-finite A.
    """
    fn = "range_finder"
    m, n = _check_A(fn, A)
    size = _validate.check_int(fn, "size", size, minimum=1, maximum=min(m, n))
    q = _validate.check_int(fn, "power_iters", power_iters, minimum=0)
    init = _check_init(fn, A, init, 1, size)
    A, init = _prepare(fn, A, generator, check_finite, init)
    X0 = core.start_block(A, size, init, generator)
    return core.robust(lambda A_, X0_, orth: core.iterate_left(A_, X0_, q, orth), A, X0)[0]


def _check_pass_dtype(fn: str, pass_dtype, cdt: torch.dtype):
    """None, or a floating dtype no wider than the compute dtype (None when equal to it)."""
    if pass_dtype is None:
        return None
    if not isinstance(pass_dtype, torch.dtype) or pass_dtype not in ALL_FLOATING:
        raise TypeError(f"{fn}: pass_dtype must be None or one of torch.bfloat16, torch.float16, torch.float32, "
                        f"got {pass_dtype!r}")
    if eps(pass_dtype) < eps(cdt):
        raise ValueError(f"{fn}: pass_dtype must not be more precise than the compute dtype "
                         f"{str(cdt).replace('torch.', '')}, got {str(pass_dtype).replace('torch.', '')}")
    return None if pass_dtype == cdt else pass_dtype


def rsvd(A: torch.Tensor, rank: int | None, *, oversample: int = 10, power_iters: int = 2,
         method: str = "subspace", init: torch.Tensor | None = None, generator: torch.Generator | None = None,
         tol: float | None = None, check_finite: bool = True, pass_dtype: torch.dtype | None = None) -> SVDResult:
    """Randomized truncated SVD of A (..., m, n): ``SVDResult(U, S, Vh)`` with U (..., m, k),
    S (..., k) descending, Vh (..., k, n), A ~= U diag(S) Vh. Batched over leading dims;
    tall and wide A.

    Fixed rank (``rank`` = k in [1, min(m, n)]): a basis of l = min(k + oversample, min(m, n))
    columns is built from a Gaussian sketch with ``power_iters`` = q subspace iterations,
    normalized after every pass (2q + 2 passes over A, the last one forming B = Q^T A), then
    B's SVD through a thin QR of B^T and an l x l SVD.

    - ``method="block_krylov"``: keeps every block of the iteration, a basis of
      (q + 1) l columns (capped at min(m, n)) from the same 2q + 2 passes; more accurate at
      the same number of passes, with a larger final factorization.
    - ``init`` (..., m, l0), k <= l0 <= min(m, n): warm start from a previous left basis
      (e.g. the U of the last call: a GaLore projector refresh). It replaces the sketch,
      padded with Gaussian columns up to k + oversample (pass ``oversample=0`` to use init
      alone); q iterations then cost 2q passes (q = 0: one pass, a projection on init).
      init should have (nearly) orthonormal columns: with q >= 1 (method "subspace") it is
      not orthonormalized again, only the span of A^T init matters.
    - ``rank=None`` with ``tol``: adaptive rank. The basis grows in blocks of 32 (each with
      q power iterations on the residual) until ||A - QB||_F <= tol ||A||_F for every batch
      element, then k is the smallest rank whose truncated SVD still meets tol (one k for
      the batch). With both ``rank`` and ``tol`` the rank is a cap. ``method`` and ``init``
      must keep their defaults in this mode. Reads the stopping test back to the host once
      per block.

    - ``pass_dtype`` (e.g. ``torch.bfloat16``; method "subspace", fixed rank): mixed
      precision. A is cast once to pass_dtype and every product with A but the last two is
      made in it (the block rounded to pass_dtype, float32 accumulation); the last two (the
      final power step and B) use A in the compute dtype, a refinement that restores the
      accuracy of the full-precision iteration on slowly and fast-decaying spectra alike
      (tested: the same error bound as the default). Faster where reduced-precision GEMMs
      are (tensor cores; CPUs with AMX or AVX-512 BF16). Where they are not (a CPU without
      those instructions, :func:`subspace_linalg._gemm.fast_dtype`), torch emulates them
      4-300x slower than float32, so pass_dtype is ignored there: every product in the
      compute dtype (the default's result, bit for bit).
      The intermediate bases are orthonormalized with one CholeskyQR pass (they only have to
      span the product well conditioned), the last one with CholeskyQR2.

    Synchronization: none inside the passes on a GPU. Their orthonormalizations are
    sync-free CholeskyQR2 with per-element success flags, read back once after the passes;
    an element whose flags failed (ill-conditioned block) is recomputed from the same start
    with the robust orthonormalization (shifted CholeskyQR3 / Householder). On the CPU
    (where a host read costs nothing) each block's flags are read at once and its failed
    elements replaced by Householder QR there, so no pass is made twice.

    Sign convention: the entry of largest magnitude in each column of U is positive.
    Layout: U is contiguous; Vh is the transposed view of a contiguous V (n x k), as
    ``torch.svd_lowrank`` returns V (``Vh.mT`` costs nothing; ``Vh.contiguous()`` copies).
    dtypes: float32 and float64 compute and return in their own precision; float16 and
    bfloat16 inputs are computed in float32 and the result is float32.
    ``generator``: same seed -> identical results on the CPU (the Gaussian sketch is drawn
    on the generator's device). A batch shares one sketch (each element's is Gaussian, with
    the usual bound; equal elements get equal results). ``check_finite=False`` skips the NaN/Inf check (one
    reduction and a host read). Raises TypeError/ValueError naming the bad argument.
    """
    fn = "rsvd"
    m, n = _check_A(fn, A)
    d = min(m, n)
    if rank is None:
        if tol is None:
            raise ValueError(f"{fn}: rank=None needs tol (adaptive rank), got tol=None")
    else:
        rank = _validate.check_int(fn, "rank", rank, minimum=1, maximum=d)
    p = _validate.check_int(fn, "oversample", oversample, minimum=0)
    q = _validate.check_int(fn, "power_iters", power_iters, minimum=0)
    _validate.check_choice(fn, "method", method, _METHODS)
    if tol is not None:
        tol = _validate.check_float(fn, "tol", tol, positive=True)
        if not tol < 1:
            raise ValueError(f"{fn}: tol must be in (0, 1), got {tol}")
        if method != "subspace":
            raise ValueError(f"{fn}: the adaptive mode (tol=...) supports method='subspace' only, got {method!r}")
        if init is not None:
            raise ValueError(f"{fn}: the adaptive mode (tol=...) does not take init")
    init = _check_init(fn, A, init, rank if rank is not None else 1, d)
    pass_dtype = _check_pass_dtype(fn, pass_dtype, compute_dtype(A.dtype))
    if pass_dtype is not None and (tol is not None or method != "subspace"):
        raise ValueError(f"{fn}: pass_dtype (mixed precision) supports method='subspace' with a fixed rank only, "
                         f"got method={method!r}, tol={tol!r}")
    if pass_dtype is not None and not _gemm.fast_dtype(pass_dtype, A.device):
        pass_dtype = None  # no fast GEMM in it here (a CPU without AVX-512 BF16 / AMX): full precision
    Ain = A
    A, init = _prepare(fn, A, generator, check_finite, init)

    if tol is not None:
        return _rsvd_adaptive(A, rank if rank is not None else d, tol, q, generator)
    l = min(rank + p, d)
    if init is not None:
        l = max(l, init.shape[-1])
    # a wide A without init is factored as A^T (a view): the last product and its thin QR
    # are then on the short side (as torch.svd_lowrank does)
    flip = init is None and m < n
    At = A.mT if flip else A
    passes = 2 * q + 1 if init is None else max(2 * q, 1)
    # mixed precision: every product but the last two from A in pass_dtype (the sketch counts)
    low_products = 0 if pass_dtype is None else passes + (init is None) - 2
    Alow = (Ain.mT if flip else Ain).to(pass_dtype) if low_products > 0 else None  # no copy if A is in it
    sketch_low = init is None and Alow is not None
    kiters = q if method == "block_krylov" else None
    # float32 batches: the right products from a contiguous copy of A^T (as convolutions)
    Acols = core.columns_copy(At, l, (init is None) + passes // 2) if Alow is None and kiters is None else None
    X0 = core.start_block(At, l, init, generator, Alow if sketch_low else None, Acols)
    nlow = low_products - sketch_low  # of the passes after the sketch

    def run(A_, X0_, Alow_, Acols_, orth):
        return tuple(core.lowrank_svd(A_, X0_, rank, passes, kiters, orth=orth, orth_start=init is None,
                                      Alow=Alow_, nlow=nlow, signs="Vh" if flip else "U", Acols=Acols_))

    U, S, Vh = core.robust(run, At, X0, Alow, Acols)
    if flip:
        U, Vh = Vh.mT.contiguous(), U.mT
    return SVDResult(U, S, Vh)


def _rsvd_adaptive(A, max_rank, tol, q, generator) -> SVDResult:
    d = min(A.shape[-2:])
    Q, B, E2, target2 = core.adaptive_qb(A, tol, max_rank, min(_ADAPTIVE_BLOCK, d), q, generator,
                                         cancel_tol2=_CANCEL * eps(A.dtype))
    # (the final factorization uses the robust orthonormalization: one call, outside any loop)
    Qp, Tp, Ur, S, Vrh = core.svd_tall(B.mT)  # B^T = (Qp Tp) Ur S Vrh  ->  A ~= (Q Vrh^T) S (Qp Tp Ur)^T
    k = core.choose_rank(S, E2, target2)
    U = _gemm.mm(Q, Vrh[..., :k, :].mT)
    Vh = core.qmul_t(Qp, Tp, Ur[..., :, :k])
    return core.fix_signs(SVDResult(U, S[..., :k], Vh))


def rsvd_error(A: torch.Tensor, U: torch.Tensor, S: torch.Tensor, Vh: torch.Tensor, *, iters: int = 20,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """A-posteriori estimate of the spectral norm ||A - U diag(S) Vh||_2 per batch element,
    shape A.shape[:-2], in the compute dtype (fbpca's ``diffsnorm``: ``iters`` power
    iterations with the residual and its transpose applied implicitly, two GEMVs with A each;
    no host read). The estimate converges from below to the true norm; 20 iterations
    usually give 2-3 correct digits. Reproducible with ``generator``.
    """
    fn = "rsvd_error"
    m, n = _check_A(fn, A)
    _validate.check_tensor(fn, "U", U, dtypes=ALL_FLOATING, min_ndim=2)
    k = U.shape[-1]
    if U.shape[:-1] != A.shape[:-1]:
        raise ValueError(f"{fn}: U must have shape {tuple(A.shape[:-1])} + (k,), got {tuple(U.shape)}")
    _validate.check_tensor(fn, "S", S, dtypes=ALL_FLOATING, min_ndim=1)
    if S.shape != A.shape[:-2] + (k,):
        raise ValueError(f"{fn}: S must have shape {tuple(A.shape[:-2]) + (k,)}, got {tuple(S.shape)}")
    _validate.check_tensor(fn, "Vh", Vh, dtypes=ALL_FLOATING, min_ndim=2)
    if Vh.shape != A.shape[:-2] + (k, n):
        raise ValueError(f"{fn}: Vh must have shape {tuple(A.shape[:-2]) + (k, n)}, got {tuple(Vh.shape)}")
    iters = _validate.check_int(fn, "iters", iters, minimum=1)
    _validate.check_generator(fn, generator)
    _validate.check_same_device(fn, A=A, U=U, S=S, Vh=Vh)
    cdt = compute_dtype(A.dtype)
    A, U, S, Vh = (t.to(cdt) for t in (A, U, S, Vh))
    Sc = S.unsqueeze(-1)
    x = core.gaussian(A.shape[:-2] + (n, 1), cdt, A.device, generator)
    tiny = torch.finfo(cdt).tiny
    x = x / torch.linalg.vector_norm(x, dim=(-2, -1), keepdim=True).clamp_min(tiny)
    for _ in range(iters):
        y = _gemm.mm(A, x) - U @ (Sc * (Vh @ x))
        x = _gemm.mm(A.mT, y) - Vh.mT @ (Sc * (U.mT @ y))
        x = x / torch.linalg.vector_norm(x, dim=(-2, -1), keepdim=True).clamp_min(tiny)
    y = _gemm.mm(A, x) - U @ (Sc * (Vh @ x))
    return torch.linalg.vector_norm(y, dim=(-2, -1))
