"""Linear operators for the Krylov and power methods.

Every routine that takes an operator (``cg``, ``lanczos``, ``hutchinson_trace``,
``slq_spectrum``, ``subspace_iteration``) accepts, through :func:`as_operator`:

* a dense tensor ``(..., n, n)`` (leading dims are a batch of operators),
* a 2-D torch sparse CSR tensor ``(n, n)``,
* a :class:`LinearOperator` (matrix-free: only a matvec),
* any object with ``.shape``, ``.dtype``, ``.device`` and ``matmul(X)`` / ``__matmul__``
  (duck typing: wrapped as is).

The duck type the drivers use is: ``.shape`` (``(..., m, n)``), ``.dtype``, ``.device``,
``A @ X`` / ``A.matmul(X)`` with torch.matmul's semantics (``X`` 1-D: a vector ``(n,)`` ->
``(m,)``; ``X`` ``(..., n, r)``: a block of ``r`` columns -> ``(..., m, r)``), and
``A.matvec(x)`` on a batch of vectors stored as rows ``(..., n) -> (..., m)``.
"""
from __future__ import annotations

from typing import Callable

import torch

from . import _gemm
from ._dtypes import FLOATING

__all__ = ["LinearOperator", "DenseOperator", "CSROperator", "as_operator"]


class LinearOperator:
    """A matrix-free linear operator of shape ``(..., m, n)``.

    Args:
        shape: ``(m, n)`` or ``(*batch, m, n)``.
        matvec: ``matvec(x) -> y`` applies the operator to vectors stored along the LAST
            dim: ``x`` has shape ``(..., n)`` and the result ``(..., m)``; any leading dims
            of ``x`` are a batch of vectors and the function must broadcast over them
            (as torch functions do). It receives tensors of ``dtype`` on ``device``.
        dtype: the operator's dtype (float32 or float64).
        device: where ``matvec`` runs.
        rmatvec: optional ``rmatvec(y) -> x``, the adjoint on ``(..., m) -> (..., n)``;
            for symmetric operators it defaults to ``matvec`` when ``m == n`` only if
            ``symmetric=True`` is set on the instance (``A.symmetric = True``).

    ``A @ X`` / ``A.matmul(X)`` follow torch.matmul: 1-D ``X`` is one vector, ``(..., n, r)``
    a block of columns (applied as ``matvec`` on the rows of ``X^T``).
    """

    symmetric: bool = False

    def __init__(self, shape, matvec: Callable[[torch.Tensor], torch.Tensor], *, dtype: torch.dtype,
                 device=None, rmatvec: Callable[[torch.Tensor], torch.Tensor] | None = None):
        fn = "LinearOperator"
        try:
            shape = tuple(int(s) for s in shape)
        except TypeError:
            raise TypeError(f"{fn}: shape must be a tuple of ints, got {type(shape).__name__}") from None
        if len(shape) < 2 or any(s < 0 for s in shape):
            raise ValueError(f"{fn}: shape must be (..., m, n) with non-negative sizes, got {shape}")
        if not callable(matvec):
            raise TypeError(f"{fn}: matvec must be callable, got {type(matvec).__name__}")
        if rmatvec is not None and not callable(rmatvec):
            raise TypeError(f"{fn}: rmatvec must be callable or None, got {type(rmatvec).__name__}")
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"{fn}: dtype must be a floating torch.dtype, got {dtype!r}")
        self._shape = torch.Size(shape)
        self._matvec = matvec
        self._rmatvec = rmatvec
        self._dtype = dtype
        self._device = torch.device(device) if device is not None else torch.device("cpu")

    # -- the duck type ---------------------------------------------------------------
    @property
    def shape(self) -> torch.Size:
        return self._shape

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def batch_shape(self) -> torch.Size:
        return self._shape[:-2]

    def dim(self) -> int:
        return len(self._shape)

    def matvec(self, x: torch.Tensor) -> torch.Tensor:
        """A applied to the rows of ``x`` (``(..., n) -> (..., m)``)."""
        return self._matvec(x)

    def rmatvec(self, y: torch.Tensor) -> torch.Tensor:
        """A^T applied to the rows of ``y`` (``(..., m) -> (..., n)``)."""
        if self._rmatvec is not None:
            return self._rmatvec(y)
        if self.symmetric:
            return self.matvec(y)
        raise NotImplementedError("LinearOperator: no rmatvec was given")

    def matmul(self, X: torch.Tensor) -> torch.Tensor:
        """torch.matmul semantics: ``(n,) -> (m,)``, ``(..., n, r) -> (..., m, r)``."""
        if X.dim() == 1:
            return self.matvec(X)
        return self.matvec(X.mT).mT

    def rmatmul(self, Y: torch.Tensor) -> torch.Tensor:
        """A^T @ Y with torch.matmul semantics."""
        if Y.dim() == 1:
            return self.rmatvec(Y)
        return self.rmatvec(Y.mT).mT

    def __matmul__(self, X: torch.Tensor) -> torch.Tensor:
        return self.matmul(X)

    def diagonal(self) -> torch.Tensor:
        """The diagonal ``(..., n)`` (needed by the Jacobi preconditioner); matrix-free
        operators do not know it."""
        raise NotImplementedError(f"{type(self).__name__} does not know its diagonal")

    def to_dense(self) -> torch.Tensor:
        """The dense matrix (n matvecs): for tests and small problems."""
        n = self._shape[-1]
        eye = torch.eye(n, dtype=self._dtype, device=self._device)
        return self.matmul(eye.expand(self.batch_shape + (n, n)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shape={tuple(self._shape)}, dtype={self._dtype}, device={self._device})"


class DenseOperator(LinearOperator):
    """A dense (batched) matrix ``(..., m, n)`` as an operator."""

    def __init__(self, A: torch.Tensor):
        self.A = A
        super().__init__(A.shape, self._apply, dtype=A.dtype, device=A.device)

    def _apply(self, x: torch.Tensor) -> torch.Tensor:
        A = self.A
        if A.dim() == 2 and x.dim() == 2:  # one matrix, many vectors: one GEMM (oneDNN for float32 CPU)
            return _gemm.mm(A, x.mT).mT
        if A.dim() == 2:
            return x @ A.mT
        return (A @ x.unsqueeze(-1)).squeeze(-1)

    def rmatvec(self, y: torch.Tensor) -> torch.Tensor:
        A = self.A
        if A.dim() == 2 and y.dim() == 2:
            return _gemm.mm(A.mT, y.mT).mT
        if A.dim() == 2:
            return y @ A
        return (A.mT @ y.unsqueeze(-1)).squeeze(-1)

    def matmul(self, X: torch.Tensor) -> torch.Tensor:
        return _gemm.mm(self.A, X)

    def diagonal(self) -> torch.Tensor:
        return torch.diagonal(self.A, dim1=-2, dim2=-1)

    def to_dense(self) -> torch.Tensor:
        return self.A


class CSROperator(LinearOperator):
    """A 2-D torch sparse CSR matrix ``(m, n)`` as an operator: on the CPU through the
    native CSR kernel (``subspace_linalg::csr_matvec``; several vectors interleaved), on a
    GPU one vector through it and several through cuSPARSE's SpMM."""

    def __init__(self, A: torch.Tensor):
        self.A = A
        super().__init__(A.shape, self._apply, dtype=A.dtype, device=A.device)
        self._crow = A.crow_indices().to(torch.int64).contiguous()
        self._col = A.col_indices().to(torch.int64).contiguous()
        self._val = A.values().contiguous()

    def _apply(self, x: torch.Tensor) -> torch.Tensor:
        from ._ops import krylov as kops

        n = x.shape[-1]
        lead = x.shape[:-1]
        X = x.reshape(-1, n)
        if X.shape[0] > 1 and X.device.type != "cpu":  # several vectors on a GPU: cuSPARSE's SpMM
            Y = (self.A @ X.mT.contiguous()).mT
        elif X.shape[0] > 1:  # several on the CPU: the native kernel on interleaved vectors (bench krylov)
            Xi = X if X.stride(0) == 1 else X.mT.contiguous().mT
            Y = kops.csr_matvec_fast(self._crow, self._col, self._val, Xi, self._shape[-2])
        else:  # one vector: the native kernel (torch's CSR SpMV is slow on the CPU, bench krylov)
            Y = kops.csr_matvec_fast(self._crow, self._col, self._val, X.contiguous(), self._shape[-2])
        return Y.reshape(lead + (self._shape[-2],))

    def matmul(self, X: torch.Tensor) -> torch.Tensor:
        if X.dim() == 1:
            return self.matvec(X)
        return self.matvec(X.mT).mT

    def diagonal(self) -> torch.Tensor:
        A = self.A
        crow, col, val = A.crow_indices(), A.col_indices(), A.values()
        rows = torch.repeat_interleave(torch.arange(A.shape[0], device=A.device), crow[1:] - crow[:-1])
        d = torch.zeros(min(A.shape), dtype=A.dtype, device=A.device)
        on = rows == col
        return d.index_add_(0, rows[on], val[on])

    def to_dense(self) -> torch.Tensor:
        return self.A.to_dense()


class _DuckOperator(LinearOperator):
    """Any object with shape, dtype, device and matmul (e.g. another library's operator)."""

    def __init__(self, obj):
        self.obj = obj
        mm = getattr(obj, "matmul", None) or (lambda X: obj @ X)
        self._mm = mm
        super().__init__(tuple(obj.shape), lambda x: self._mm(x.mT).mT if x.dim() > 1 else self._mm(x),
                         dtype=obj.dtype, device=obj.device)

    def matmul(self, X: torch.Tensor) -> torch.Tensor:
        return self._mm(X)

    def diagonal(self) -> torch.Tensor:
        d = getattr(self.obj, "diagonal", None)
        if d is None:
            raise NotImplementedError(f"{type(self.obj).__name__} does not know its diagonal")
        return d()


def as_operator(A, *, fn: str = "as_operator", name: str = "A", square: bool = True) -> LinearOperator:
    """Normalise ``A`` (dense ``(..., n, n)`` tensor, 2-D sparse CSR tensor,
    :class:`LinearOperator`, or a duck-typed operator) to a :class:`LinearOperator`.

    Raises TypeError for an unsupported type or dtype (float32/float64 only) and
    ValueError for a shape that is not ``(..., n, n)`` (when ``square``)."""
    if isinstance(A, LinearOperator):
        op = A
    elif isinstance(A, torch.Tensor):
        if A.dtype not in FLOATING:
            raise TypeError(f"{fn}: {name} must have dtype float32 or float64, got {A.dtype}")
        if A.layout == torch.sparse_csr:
            if A.dim() != 2:
                raise ValueError(f"{fn}: a sparse CSR {name} must be 2-D, got shape {tuple(A.shape)}")
            op = CSROperator(A)
        elif A.layout == torch.strided:
            if A.dim() < 2:
                raise ValueError(f"{fn}: {name} must be (..., n, n), got shape {tuple(A.shape)}")
            op = DenseOperator(A)
        else:
            raise TypeError(f"{fn}: {name} must be a dense or sparse CSR tensor, got layout {A.layout}")
    elif all(hasattr(A, a) for a in ("shape", "dtype", "device")) and (hasattr(A, "matmul") or hasattr(A, "__matmul__")):
        op = _DuckOperator(A)
    else:
        raise TypeError(f"{fn}: {name} must be a torch.Tensor, a sparse CSR tensor or a LinearOperator, "
                        f"got {type(A).__name__}")
    if op.dtype not in FLOATING:
        raise TypeError(f"{fn}: {name} must have dtype float32 or float64, got {op.dtype}")
    if len(op.shape) < 2:
        raise ValueError(f"{fn}: {name} must be (..., n, n), got shape {tuple(op.shape)}")
    if square and op.shape[-1] != op.shape[-2]:
        raise ValueError(f"{fn}: {name} must be square (..., n, n), got shape {tuple(op.shape)}")
    return op
