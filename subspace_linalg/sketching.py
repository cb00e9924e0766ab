"""Random sketches: Gaussian, Rademacher, sparse sign and SRHT embeddings.

An embedding Omega (n x size) is applied as ``A @ Omega`` (side="right", A (..., m, n))
or ``Omega^T @ A`` (side="left", A (..., n, m)); it is scaled so that
E||Omega^T x||^2 = ||x||^2 (JL scaling: a subspace embedding for size >= C * rank).
Omega is defined by a 63-bit seed and generated inside the native kernels from a
counter-based RNG (Philox4x32-10 keyed by the seed, counters = matrix coordinates), so
the same seed gives the same Omega on the CPU and on CUDA and for any thread count.
The sparse sign and SRHT embeddings never materialize Omega:

- gaussian: entries N(0, 1/size), materialized, applied by a torch GEMM;
- rademacher: entries +-1/sqrt(size), materialized, applied by a torch GEMM;
- sparse_sign: each input coordinate (row of Omega) has zeta (default 8, at most size)
  nonzeros +-1/sqrt(zeta) at distinct random positions (the columns of the size x n
  embedding S = Omega^T have zeta nonzeros); applied by a native CSR kernel, O(nnz(A) zeta);
- srht: Omega^T = sqrt(N/size) R H_N D / sqrt(N): random signs D, zero padding to
  N = 2^ceil(log2 n), the Walsh-Hadamard transform (sl.fwht), then size of the N
  coordinates sampled without replacement (R); O(m N log N). Needs size <= N.
"""
from __future__ import annotations

import math

import torch

from . import _gemm, _validate
from ._dtypes import ALL_FLOATING, compute_dtype

KINDS = ("gaussian", "rademacher", "sparse_sign", "srht")
SIDES = ("right", "left")
_TAG = {"gaussian": 1, "rademacher": 2, "sparse_sign": 3, "srht_signs": 4, "srht_rows": 5}
_GAUSSIAN, _RADEMACHER, _UNIFORM = 0, 1, 2


def _ops():
    from . import _ops  # noqa: F401  (registers the ops)

    return torch.ops.subspace_linalg


def draw_seed(generator: torch.Generator | None) -> int:
    """A 62-bit seed drawn from ``generator`` (torch's default CPU generator when None)."""
    dev = generator.device if generator is not None else "cpu"
    return int(torch.randint(0, 2 ** 62, (1,), generator=generator, device=dev).item())


def random_matrix(rows: int, cols: int, *, kind: str, seed: int, tag: int, scale: float = 1.0,
                  dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """The counter-based random matrix (rows, cols): kind "gaussian" (N(0,1)),
    "rademacher" (+-1) or "uniform" ((0, 1]), times ``scale``, generated natively; the
    same (seed, tag) gives the same matrix on every device and thread count."""
    code = {"gaussian": _GAUSSIAN, "rademacher": _RADEMACHER, "uniform": _UNIFORM}[kind]
    out = torch.empty(rows, cols, dtype=dtype, device=device)
    if out.numel():
        _ops().random_fill_.default(out, code, seed, tag, float(scale))
    return out


def _next_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


class SketchOperator:
    """A reusable sketching embedding Omega (n x size) of one ``kind``: applies the same
    Omega to many matrices (``op(A, side=...)``), on any device and dtype; the random
    data it needs (Omega itself for the dense kinds, the sparse codes, the SRHT signs and
    rows) is generated once per device/dtype and cached.

    ``seed`` fixes Omega; without it a seed is drawn from ``generator``."""

    def __init__(self, n: int, size: int, *, kind: str = "gaussian", zeta: int = 8, seed: int | None = None,
                 generator: torch.Generator | None = None):
        fn = "SketchOperator"
        self.n = _validate.check_int(fn, "n", n, minimum=1)
        self.size = _validate.check_int(fn, "size", size, minimum=1)
        self.kind = _validate.check_choice(fn, "kind", kind, KINDS)
        _validate.check_generator(fn, generator)
        self.zeta = min(_validate.check_int(fn, "zeta", zeta, minimum=1, maximum=64), self.size)
        if kind == "srht" and self.size > _next_pow2(self.n):
            raise ValueError(f"{fn}: an srht sketch of n = {self.n} takes size <= {_next_pow2(self.n)} "
                             f"(the padded length), got {self.size}")
        if seed is None:
            seed = draw_seed(generator)
        self.seed = _validate.check_int(fn, "seed", seed, minimum=0, maximum=2 ** 63 - 1)
        self._cache: dict = {}

    def __repr__(self) -> str:
        return f"SketchOperator(n={self.n}, size={self.size}, kind={self.kind!r}, seed={self.seed})"

    # -- the random data, per (device, dtype) ------------------------------------------
    def _dense(self, dtype, device) -> torch.Tensor:
        key = ("dense", dtype, str(device))
        if key not in self._cache:
            kind = "gaussian" if self.kind == "gaussian" else "rademacher"
            self._cache[key] = random_matrix(self.n, self.size, kind=kind, seed=self.seed, tag=_TAG[self.kind],
                                             scale=1.0 / math.sqrt(self.size), dtype=dtype, device=device)
        return self._cache[key]

    def _csr(self, cdt, device):
        key = ("csr", cdt, str(device))
        if key not in self._cache:
            codes = torch.empty(self.n, self.zeta, dtype=torch.int32, device=device)
            _ops().sparse_sign_table_.default(codes, self.size, self.seed, _TAG["sparse_sign"])
            codes = codes.to(torch.int64).flatten()
            pos = codes >> 1
            val = (1.0 - 2.0 * (codes & 1).to(cdt)) / math.sqrt(self.zeta)
            order = torch.sort(pos, stable=True).indices
            ptr = torch.zeros(self.size + 1, dtype=torch.int64, device=device)
            ptr[1:] = torch.cumsum(torch.bincount(pos, minlength=self.size), 0)
            self._cache[key] = (ptr, order // self.zeta, val[order].contiguous())
        return self._cache[key]

    def _srht(self, dtype, device):
        key = ("srht", dtype, str(device))
        if key not in self._cache:
            N = _next_pow2(self.n)
            d = random_matrix(1, self.n, kind="rademacher", seed=self.seed, tag=_TAG["srht_signs"],
                              scale=1.0 / math.sqrt(self.size), dtype=dtype, device=device)[0]
            keys = random_matrix(1, N, kind="uniform", seed=self.seed, tag=_TAG["srht_rows"],
                                 dtype=torch.float64, device=device)[0]
            rows = torch.sort(torch.topk(keys, self.size, largest=False).indices).values
            self._cache[key] = (d, rows, N)
        return self._cache[key]

    def matrix(self, *, dtype: torch.dtype = torch.float64, device=None) -> torch.Tensor:
        """Omega (n, size) as a dense tensor (for tests and small problems)."""
        eye = torch.eye(self.n, dtype=dtype, device=device)
        return self(eye, side="right")

    # -- application -------------------------------------------------------------------
    def __call__(self, A: torch.Tensor, *, side: str = "right") -> torch.Tensor:
        """``A @ Omega`` (side="right", A (..., m, n) -> (..., m, size)) or ``Omega^T @ A``
        (side="left", A (..., n, m) -> (..., size, m)), in A's dtype (float16/bfloat16
        accumulate in float32). Differentiable in A."""
        fn = "sketch"
        _validate.check_tensor(fn, "A", A, dtypes=ALL_FLOATING, min_ndim=2)
        _validate.check_choice(fn, "side", side, SIDES)
        d = -1 if side == "right" else -2
        if A.shape[d] != self.n:
            raise ValueError(f"{fn}: A must have {self.n} {'columns' if side == 'right' else 'rows'} "
                             f"(the sketch's n) for side={side!r}, got shape {tuple(A.shape)}")
        if self.kind in ("gaussian", "rademacher"):
            cdt = compute_dtype(A.dtype)
            Om = self._dense(cdt, A.device)
            Y = _gemm.mm(A.to(cdt), Om) if side == "right" else _gemm.mm(Om.mT, A.to(cdt))
            return Y.to(A.dtype)
        if self.kind == "sparse_sign":
            ptr, cols, vals = self._csr(compute_dtype(A.dtype), A.device)
            if side == "right":
                X = A.reshape((math.prod(A.shape[:-2]),) + A.shape[-2:])
                Y = _ops().sparse_apply.default(X, ptr, cols, vals, self.size, False)
                return Y.reshape(A.shape[:-1] + (self.size,))
            X = A.reshape((math.prod(A.shape[:-2]),) + A.shape[-2:]).transpose(-1, -2)
            Y = _ops().sparse_apply.default(X, ptr, cols, vals, self.size, True)
            return Y.reshape(A.shape[:-2] + (self.size, A.shape[-1]))
        # srht: signs, padding, transform and row sampling in one native pass per row tile
        signs, rows, N = self._srht(compute_dtype(A.dtype), A.device)
        X = A.reshape((math.prod(A.shape[:-2]),) + A.shape[-2:])
        if side == "right":
            Y = _ops().srht.default(X, signs, rows, N, False)
            return Y.reshape(A.shape[:-1] + (self.size,))
        Y = _ops().srht.default(X.transpose(-1, -2), signs, rows, N, True)
        return Y.reshape(A.shape[:-2] + (self.size, A.shape[-1]))

    apply = __call__


def sketch(A: torch.Tensor, size: int, *, kind: str = "gaussian", side: str = "right",
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Sketch ``A`` with a fresh random embedding Omega (n x size): ``A @ Omega``
    (side="right", A (..., m, n) -> (..., m, size)) or ``Omega^T @ A`` (side="left",
    A (..., n, m) -> (..., size, m)). ``kind``: "gaussian" | "rademacher" | "sparse_sign"
    (8 nonzeros per input coordinate) | "srht" (size <= next power of two of n). Omega
    is scaled so that E||Omega^T x||^2 = ||x||^2 and is the same for the same generator
    state on every device and thread count (it is drawn from one seed taken from
    ``generator``). The batch shares one Omega. Returns A's dtype (float16/bfloat16
    accumulate in float32); differentiable in A. To apply one Omega to many matrices
    use ``SketchOperator``."""
    fn = "sketch"
    _validate.check_tensor(fn, "A", A, dtypes=ALL_FLOATING, min_ndim=2)
    _validate.check_choice(fn, "side", side, SIDES)
    _validate.check_choice(fn, "kind", kind, KINDS)
    _validate.check_generator(fn, generator)
    n = A.shape[-1] if side == "right" else A.shape[-2]
    if n < 1:
        raise ValueError(f"{fn}: A has an empty {'last' if side == 'right' else 'second-to-last'} dim, "
                         f"shape {tuple(A.shape)}")
    size = _validate.check_int(fn, "size", size, minimum=1)
    return SketchOperator(n, size, kind=kind, generator=generator)(A, side=side)
