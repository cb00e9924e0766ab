"""float32 products on the CPU through oneDNN, the matmul library bundled in torch
(``torch.ops.mkldnn._linear_pointwise``), where it measures faster than torch.matmul's
BLAS.

On the AMD EPYC of CI (2 threads) torch's MKL runs float32 GEMMs at 130-200 GFLOP/s and
oneDNN's AVX-512 kernels the same products at 310-430 GFLOP/s, with float32 rounding
(relative error against float64 4e-7 to 6e-7; MKL's 2.5e-7): A @ X at 2048^2 x 74:
4.43 against 1.69 ms; A^T Y at 2048 x 5461 x 256: 30.0 against 14.1 ms; 512^2 x 42: 0.166
against 0.076 ms. Below about 2^21 multiply-adds oneDNN's per-call cost (~15 us) loses
(128^2 x 18: 0.012 against 0.024 ms), hence :data:`_MIN_WORK`. A batch of products is a
loop of oneDNN calls, from 2^22 multiply-adds per element: 16 x 512^2 x 42 1.46 against
2.40 ms (MKL's best form); 64 x 256^2 x 26: 2.09 against 1.75 (not taken). The loop
also loses where M is narrow (a batched Gram Y^T Y or a tall-times-small Y S of column-
major Y): 8 x 1024 x 74 Gram 1.20 against 0.82 ms, Y S 1.47 against 0.65 (MKL's batched
GEMM as the wide product), level or 1.1-1.2x faster from 128 columns (4 x 2048 x 128,
2 x 8192 x 138, 4 x 4096 x 256), hence :data:`_BATCH_MIN_DIM`.

A batched A^T X with A row-major (the transposed view of a contiguous batch) is one call
instead: a grouped 1 x 1 convolution (:func:`_conv_t`), computing (A^T X)^T = X^T A with
A as the input signal (read in place) and X^T as the small per-group weight. Measured on
the EPYC against the loop or MKL's batched GEMM (whichever the route took), column-major
X: 16 x 512^2 x 42 1.96x faster, 32 x 512^2 x 42 1.88x, 16 x 384 x 1024 x 42 1.40x,
4 x 1024^2 x 74 1.28x, 64 x 256^2 x 26 1.35x; below 2^20 multiply-adds an element it
loses (8 x 128^2 x 18: 0.68x, 256 x 64^2 x 16: 0.70x), hence :data:`_CONV_MIN_WORK`; and
it loses for a narrow A^T (a short convolution signal, a long contraction), e.g. the
Gram Y^T Y of row-major blocks: 16 x 1024 x 42 0.67x, 8 x 4096 x 64 0.40x, 2 x 8192 x 256
0.65x (4 x 2048 x 128: 1.86x), and for a short contraction (Y S of a column-major Y,
8 x 1024 x 74: 0.34x), hence :data:`_CONV_MIN_SIGNAL` on both dims of A. For
one matrix the inner product stays faster (2048^2 x 74: 0.83x as a convolution). With A
as the weight instead (A X) oneDNN reorders the whole of A on every call: 0.3-1.0x.
The gain is the split of the groups over threads: at one thread the convolution loses
(16 x 512^2 x 42 0.94x, 64 x 256^2 x 26 0.84x, 4 x 1024^2 x 74 0.77x), so it needs two or
more (not measured beyond two).

:func:`mm` falls back to ``M @ X`` wherever the route does not apply: other dtypes and
devices, autograd, torch.compile tracing (inductor cannot lower the op with a dynamic
weight), an M that is not a dense row- or column-major block (:func:`_dense`), an X
whose transposing copy would cost more than the product saves, broadcasting batches, a
torch build without oneDNN (probed once), or ``SUBSPACE_LINALG_ONEDNN=0`` in the
environment. Measured on the AMD EPYC.

On an Intel CPU torch's MKL runs its own best kernels, and the route is narrower
(:func:`policy` "blas", chosen from the CPU vendor): only a single product whose M is
row-major (A X, a Gram Y^T Y of a column-major Y) takes oneDNN, with a row-major X (which
must be copied) only where MKL's tail is slow (:data:`_BLAS_COPY_ROWS`); batches (and so the
grouped convolution) and an M that is a transposed view (A^T X, a tall-times-small Y S
of a column-major Y) stay with MKL. Measured on an Intel Xeon (family 6 model 167, AMX,
2 threads), oneDNN against the MKL path of the callers, ms: A^T X 2048^2 x 74 2.18 / 1.99,
2048 x 5461 x 266 20.5 / 15.6, x 256 18.0 / 14.8; 16 x 512^2 x 42 1.22 / 0.99 (the
convolution), A X 1.94 / 1.34 (the loop); Y S 5461 x 256 x 256 2.13 / 1.77, 2048 x 256
x 256 0.78 / 0.63; but A X 2048^2 x 74 1.92 / 2.19 and 2048 x 5461 x 266 15.7 / 16.9, and
the Gram of a column-major 5461 x 256 block (without it the factored CholeskyQR of the
warm rsvd took 25.8 against 9.4 ms). Whole rsvd under each policy, two runs each (same
Xeon, a slower day), ms: 16 x 512^2 r32 17.9 / 18.1 (onednn) against 15.3 / 16.6 (blas);
2048^2 r64, 2048 x 5461 r256 and its warm refresh within the host's noise.
"""
from __future__ import annotations

import os
import warnings

import torch

_MIN_WORK = 1 << 21        # multiply-adds of one product from which oneDNN is faster
_MIN_BATCH_WORK = 1 << 22  # ... per element of a batch (a loop of calls)
_MAX_BATCH = 256           # longest loop of calls
_BATCH_MIN_DIM = 128       # ... of elements whose M has at least this many rows and columns
_CONV_MIN_WORK = 1 << 20   # multiply-adds per element from which a batched A^T X is one grouped convolution ...
_CONV_MIN_SIGNAL = 256     # ... with A at least this many rows and columns, twice as many as X has columns

# X must reach oneDNN as a row-major X^T: a column-major X is read in place, any other X
# is copied first, and torch's transposing copy is slow (0.5-3 ns an entry: 2048 x 256
# 0.25 ms, 32768 x 256 25 ms). Measured, Gram Y^T Y of a row-major Y (r = k), MKL against
# the copy and oneDNN, in ms: 2048 x 64 0.104 / 0.137, 2048 x 128 0.40 / 0.34, 8192 x 256
# 6.2 / 4.7, 32768 x 128 6.9 / 7.4, 32768 x 256 25 / 38 (column-major Y: oneDNN 1.3-2.5x
# faster throughout). Hence: such an X goes through oneDNN only when M has at least 512
# rows (the copy is then small against the product), or 128 rows and X at most 2^21 entries.
_COPY_ROWS = 512
_COPY_MIN_ROWS = 128
_COPY_MAX_NUMEL = 1 << 21
# Under the "blas" policy the margin is MKL's slower tail at a width l that is not a multiple
# of 16, and only there does a row-major X pay for its copy: on the Intel Xeon (family 6
# model 167, 2 threads), A @ X with A (r x c) row-major, MKL against oneDNN (median of 9
# round-robin), c = 1024 and 4096, r = 512..4096: l = 74 with X copied 0.81-0.96x at r =
# 512 and 1.07-1.30x from r = 1024 (column-major X 1.09-1.40x); l = 32 and 256 with X
# copied 0.68-1.02x (1024 x 4096 x 256: 7.5 against 9.2 ms), column-major 0.90-1.07x.
_BLAS_COPY_ROWS = 1024
_BLAS_TILE = 16

_state: dict = {}


def _probe() -> bool:
    """Whether the oneDNN op exists and agrees with torch.matmul on a small product (and
    the grouped convolution of :func:`_conv_t` on a small batch)."""
    if os.environ.get("SUBSPACE_LINALG_ONEDNN", "1") == "0":
        return False
    try:
        if not torch.backends.mkldnn.is_available():
            return False
        g = torch.Generator().manual_seed(0)
        a = torch.randn(9, 13, generator=g)
        w = torch.randn(5, 13, generator=g)
        r = _lin(a, w)
        A = torch.randn(2, 13, 9, generator=g)
        X = torch.randn(2, 13, 5, generator=g)
        c = _conv_t(A.mT, X)
        return (r.shape == (9, 5) and bool(torch.allclose(r, a @ w.mT, rtol=1e-5, atol=1e-5))
                and c.shape == (2, 9, 5) and bool(torch.allclose(c, A.mT @ X, rtol=1e-5, atol=1e-5)))
    except Exception:  # a build without the op, or one whose signature differs
        return False


_POLICIES = ("onednn", "blas", "torch")


def _cpuinfo() -> tuple[str, frozenset]:
    """(vendor_id, flags) of the first CPU in /proc/cpuinfo (("", {}) where that cannot be
    read)."""
    if "cpuinfo" not in _state:
        vendor, flags = "", frozenset()
        try:
            with open("/proc/cpuinfo") as f:
                for line in f:
                    if line.startswith("vendor_id") and not vendor:
                        vendor = line.split(":", 1)[1].strip()
                    elif line.startswith("flags"):
                        flags = frozenset(line.split(":", 1)[1].split())
                        break
        except OSError:
            pass
        _state["cpuinfo"] = (vendor, flags)
    return _state["cpuinfo"]


def _intel_mkl() -> bool:
    """Whether torch's BLAS is MKL on an Intel CPU (read from /proc/cpuinfo; False where
    that cannot be read)."""
    return torch.backends.mkl.is_available() and _cpuinfo()[0] == "GenuineIntel"


def _auto_policy() -> str:
    """"torch" on a CPU without AVX-512 (or where /proc/cpuinfo cannot be read), whatever
    its vendor (the "blas" rule was measured on an AVX-512 Xeon only); else "blas" on an
    Intel CPU with MKL and "onednn" on another (oneDNN's AVX-512 kernels, 2-2.6x torch's
    MKL on the AMD EPYC of the module notes). Measured on an AMD EPYC
    without AVX-512 (AVX2, 2 threads), float32 GEMM 1024^3: torch.matmul 157 GFLOP/s,
    oneDNN 116; A^T X 2048 x 5461 x 256 43.6 (onednn) / 36.0 (blas) / 35.4 ms (torch);
    whole rsvd, median of 9 round-robin, ms: 16 x 512^2 r32 41.6 / 36.7 / 37.0, 2048 x
    5461 r256 363 / 365 / 320, its warm refresh 117 / 119 / 114, 2048^2 r64 42.4 / 43.9
    / 43.6."""
    if "avx512f" not in _cpuinfo()[1]:
        return "torch"
    return "blas" if _intel_mkl() else "onednn"


def policy() -> str:
    """Which products take the route: "onednn" (every product the sizes admit), "blas"
    (MKL on its own Intel CPU: only single products of a row-major M, see the module
    notes) or "torch" (none: a CPU without AVX-512, see :func:`_auto_policy`). From
    ``SUBSPACE_LINALG_GEMM_POLICY`` (onednn, blas, torch or auto) when set, else from the
    CPU vendor and flags; chosen once per process."""
    if "policy" not in _state:
        env = os.environ.get("SUBSPACE_LINALG_GEMM_POLICY", "auto")
        if env not in _POLICIES + ("auto",):
            warnings.warn(f"SUBSPACE_LINALG_GEMM_POLICY={env!r} is not one of onednn, blas, torch, auto; using auto",
                          RuntimeWarning, stacklevel=2)
        _state["policy"] = env if env in _POLICIES else _auto_policy()
    return _state["policy"]


_FAST_FLAGS = {torch.bfloat16: ("avx512_bf16", "amx_bf16"), torch.float16: ("avx512_fp16", "amx_fp16")}


def fast_dtype(dtype: torch.dtype, device) -> bool:
    """Whether GEMMs in ``dtype`` on ``device`` run at least at float32 speed: always on a
    GPU and for float32; on the CPU, bfloat16 / float16 only with their instructions
    (AVX-512 BF16 or AMX, AVX-512 FP16 or AMX-FP16, from /proc/cpuinfo). Where they are
    missing torch emulates them, and layout-dependently slowly: on an AMD EPYC without
    AVX-512 (2 threads), bfloat16 2048^2 @ 2048 x 74 27-54 ms in the fast layouts and
    284-2100 ms in the others, against 6.3 ms in float32. ``set_fast_dtypes`` overrides it
    (the tests exercise the mixed-precision path everywhere)."""
    if "fast" in _state:
        return _state["fast"]
    if torch.device(device).type != "cpu" or dtype not in _FAST_FLAGS:
        return True
    flags = _cpuinfo()[1]
    return any(f in flags for f in _FAST_FLAGS[dtype])


def set_fast_dtypes(flag: bool | None) -> bool | None:
    """Force :func:`fast_dtype` to ``flag`` (None: detect again); returns the previous override."""
    prev = _state.get("fast")
    if flag is None:
        _state.pop("fast", None)
    else:
        _state["fast"] = bool(flag)
    return prev


def set_policy(name: str) -> str:
    """Set :func:`policy` ("onednn", "blas" or "torch"); returns the previous one."""
    if name not in _POLICIES:
        raise ValueError(f"set_policy: name must be one of {list(_POLICIES)}, got {name!r}")
    prev = policy()
    _state["policy"] = name
    return prev


def enabled() -> bool:
    """Whether products may take the oneDNN route (probed once per process)."""
    if "on" not in _state:
        _state["on"] = _probe()
    return _state["on"]


def set_enabled(flag: bool) -> bool:
    """Turn the oneDNN route on (if the probe passes) or off; returns the previous state."""
    prev = enabled()
    _state["on"] = bool(flag) and _probe()
    return prev


def _lin(inp: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """inp @ w^T (oneDNN inner product with no bias or post-op)."""
    return torch.ops.mkldnn._linear_pointwise.default(inp, w, None, "none", [], "")


def _dense(T: torch.Tensor) -> bool:
    """Whether the last two dims of T are a dense row-major or column-major block. oneDNN
    reads a weight of any other layout (a column slice, leading dimension above the
    width) with its reference kernel: 289 ms against 0.34 for a 2000 x 128 block."""
    T2 = T[(0,) * (T.dim() - 2)] if T.dim() > 2 else T
    return T2.is_contiguous() or T2.mT.is_contiguous()


def _col_major(T: torch.Tensor) -> bool:
    T2 = T[(0,) * (T.dim() - 2)] if T.dim() > 2 else T
    return T2.mT.is_contiguous()


def wide_f64_better(M: torch.Tensor, X: torch.Tensor) -> bool:
    """Whether a float64 CPU product M @ X (M (..., r, c), X (..., c, l), l the narrow side)
    is faster made as the wide product (X^T M^T)^T: MKL's float64 GEMM writes an l x r
    row-major output faster than the tall narrow r x l one, whatever the operands' layouts.
    Measured on the AMD EPYC (2 threads, MKL), M @ X against the wide form, ms: A^T X with
    A row-major and X column-major 2048^2 l=74 26.2 / 14.0, 2048 x 5461 l=266 110 / 94, 5461
    x 2048 l=266 120 / 87, 8192 x 1024 l=64 70.6 / 19.1, 3000^2 l=200 77.9 / 51.5, 768^2
    l=25 1.15 / 1.06; a batch 16 x 512^2 l=42 57.0 / 11.4, 4 x 1024 x 2048 l=74 63.4 / 27.0;
    A X 2048^2 l=74 17.6 / 13.1, 8192 x 1024 l=64 41.8 / 16.9, 2048 x 5461 l=266 105 / 94
    (row-major X: 20.2 / 13.2, 39.4 / 17.6, 1024 x 4096 l=300 36.4 / 39.1); tall-times-small
    Y S, Y column-major: 5461 x 266 x 256 18.7 / 12.6, 2048 x 74 x 64 0.87 / 0.32, 16384 x
    64 x 64 8.9 / 3.1, batches of 16 1.4-2.6x. Not measured on a GPU (CPU only)."""
    return (M.dtype == torch.float64 and X.dtype == torch.float64 and M.device.type == "cpu"
            and X.device.type == "cpu" and M.dim() >= 2 and X.dim() >= 2)


def routed(M: torch.Tensor, X: torch.Tensor) -> bool:
    """Whether :func:`mm` takes the oneDNN route for M (..., r, c) @ X (..., c, l)."""
    if M.dtype != torch.float32 or X.dtype != torch.float32 or M.device.type != "cpu" or X.device.type != "cpu":
        return False
    if M.dim() < 2 or M.dim() != X.dim() or M.shape[:-2] != X.shape[:-2] or M.shape[-1] != X.shape[-2]:
        return False
    r, c, l = M.shape[-2], M.shape[-1], X.shape[-1]
    nb = M.numel() // max(r * c, 1)
    work = r * c * l
    if min(r, c, l) == 0:
        return False
    if policy() == "torch" or policy() == "blas" and (nb > 1 or not M.is_contiguous()):
        return False
    if not _conv_case(M, work):  # (the grouped convolution copies X^T whatever X's layout: a small block)
        if nb == 1 and work < _MIN_WORK or nb > 1 and (work < _MIN_BATCH_WORK or nb > _MAX_BATCH
                                                       or min(r, c) < _BATCH_MIN_DIM):
            return False
        if not _dense(M):
            return False
        if not _col_major(X) and not (r >= _COPY_ROWS or (r >= _COPY_MIN_ROWS and X.numel() // nb <= _COPY_MAX_NUMEL)):
            return False  # X's transposing copy would cost more than the faster product saves
        if not _col_major(X) and policy() == "blas" and (l % _BLAS_TILE == 0 or r < _BLAS_COPY_ROWS):
            return False  # ... and under "blas" wherever MKL is as fast (see _BLAS_COPY_ROWS)
    if torch.is_grad_enabled() and (M.requires_grad or X.requires_grad):
        return False
    if torch.compiler.is_compiling():
        return False
    return enabled()


def _conv_case(M: torch.Tensor, work: int) -> bool:
    """Whether M @ X is a batched A^T X that :func:`_conv_t` makes: M (..., r, c) with two
    or more elements, the transposed view of a contiguous A (..., c, r), and the sizes of
    :func:`conv_sizes`."""
    r, c = M.shape[-2], M.shape[-1]
    return M.dim() > 2 and M.numel() > r * c and M.mT.is_contiguous() and conv_sizes(r, c, work // (r * c))


def conv_sizes(r: int, c: int, l: int) -> bool:
    """Whether a batched (r x c) @ (c x l) product, made from the transposed view of a
    contiguous (c x r) block, is a grouped convolution (:func:`_conv_t`): at least
    :data:`_CONV_MIN_WORK` multiply-adds an element, r and c >= :data:`_CONV_MIN_SIGNAL`,
    r >= 2 l, two or more torch threads, torch's oneDNN convolutions in float32 and the
    "onednn" :func:`policy`."""
    work = r * c * l
    return (policy() == "onednn" and work >= _CONV_MIN_WORK and min(r, c) >= _CONV_MIN_SIGNAL and r >= 2 * l
            and torch.get_num_threads() >= 2 and _ieee_conv())


def _ieee_conv() -> bool:
    """Whether torch's convolutions go to oneDNN (not switched off by the user) and keep
    float32 arithmetic there (no user-set bf16/tf32 rounding)."""
    conv = getattr(torch.backends.mkldnn, "conv", None)
    return bool(torch.backends.mkldnn.enabled) and getattr(conv, "fp32_precision", "none") in ("none", "ieee")


def _conv_t(M: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """A^T X for M = A^T, A (B, c, r) contiguous, X (B, c, l), as one grouped 1 x 1
    convolution (one group per element): output channel j of group b is
    sum_i X[b, i, j] A[b, i, :], i.e. row j of (A^T X)^T. Returns (B, r, l), column-major."""
    A = M.mT
    nb, c, r = A.shape
    l = X.shape[-1]
    W = X.mT.contiguous().reshape(nb * l, c, 1)
    out = torch.nn.functional.conv1d(A.reshape(1, nb * c, r), W, groups=nb)
    return out.reshape(nb, l, r).mT


def _one(M: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """One 2-D product as its transpose (l, r), row-major: (M X)^T = X^T M^T, with X^T as
    oneDNN's input and M as its weight (read in either layout, never copied). X^T is read
    in place when X is column-major (every result of this module is), else copied (a
    narrow block)."""
    try:
        return _lin(X.mT.contiguous(), M)
    except RuntimeError:  # a layout or size oneDNN has no primitive for
        return (M @ X).mT


def mm(M: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """M @ X, through oneDNN where :func:`routed` says so (:func:`dnn`), else torch.matmul.
    A contiguous M (..., r, c) against a 2-D X (c, l) is one product of its rows."""
    if M.dim() > 2 and X.dim() == 2 and M.is_contiguous():
        M2 = M.reshape(-1, M.shape[-1])
        if routed(M2, X):
            return dnn(M2, X).reshape(M.shape[:-1] + (X.shape[-1],))
    return dnn(M, X) if routed(M, X) else M @ X


def dnn(M: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """M @ X through oneDNN, for operands :func:`routed` accepts. The result is column-major
    (the transposed view of a row-major block), the layout the next product reads in
    place: oneDNN copies an input that is not row-major, and the transposed view of a
    column-major block is (2048 x 74: 0.4 ms a copy; Gram X^T X of a column-major 5461 x
    256 block 1.68 against 3.94 ms with MKL)."""
    r, l = M.shape[-2], X.shape[-1]
    batch = M.shape[:-2]
    if M.dim() == 2 or M.numel() == r * M.shape[-1]:
        P = _one(M.reshape(M.shape[-2:]), X.reshape(X.shape[-2:])).mT
        return P.reshape(batch + (r, l)) if batch else P
    Mb = M.reshape((-1,) + M.shape[-2:])
    Xb = X.reshape((-1,) + X.shape[-2:])
    if _conv_case(Mb, r * M.shape[-1] * l):
        return _conv_t(Mb, Xb).reshape(batch + (r, l))
    out = torch.stack([_one(Mi, Xi) for Mi, Xi in zip(Mb.unbind(0), Xb.unbind(0))])
    return out.mT.reshape(batch + (r, l))
