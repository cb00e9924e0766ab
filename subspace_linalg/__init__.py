"""subspace_linalg: native CPU/CUDA linear algebra for subspace methods in ML.

Data arguments are positional, options keyword-only; leading dims are batch dims;
results are NamedTuples. See README.md and DESIGN.md for the API.
"""
from __future__ import annotations

import torch  # noqa: F401  (first: one libgomp, torch's)

from . import _native
from ._info import info
from ._results import CGResult, CPResult, EighResult, SVDResult
from .errors import BreakdownError, NanError, NotConvergedWarning, NumericalWarning
from . import _ops  # noqa: F401  (registers the torch.library ops)

# --- structured transforms (foundation) ---
from .hadamard import fwht

# --- randomized low-rank family ---
from .orth import orthonormalize
from .small_dense import cholesky_small, eigh_small, solve_cholesky_right, svd_small, tril_inverse_small
from .polar import polar, principal_angles
from .rsvd import range_finder, rsvd, rsvd_error

# --- structured projection family ---
from .selection import RowSelection, gather_rows, scatter_rows, select_rows
from .sketching import SketchOperator, sketch
from .cosine import dct, dct_matrix, select_columns_by_alignment
from .fastfood_map import FastfoodMap, fastfood, fastfood_adjoint

# --- Krylov family ---
from .operators import LinearOperator, as_operator
from .krylov import cg
from .spectral import hutchinson_trace, lanczos, slq_spectrum

# --- subspace power family ---
from .power import subspace_iteration
from .spm import spm

__version__ = "0.1.0"

# Every public name imported above, and no submodule.
__all__ = sorted(
    name
    for name, value in list(globals().items())
    if not name.startswith("_") and name != "annotations" and not isinstance(value, type(torch))
)
