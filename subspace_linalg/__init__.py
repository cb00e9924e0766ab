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

# --- structured projection family ---

# --- Krylov family ---

# --- subspace power family ---
from .power import subspace_iteration
from .spm import spm

__version__ = "0.1.0"

__all__ = [name for name in dir() if not name.startswith("_") and name not in {"torch", "annotations", "errors", "hadamard"}]
