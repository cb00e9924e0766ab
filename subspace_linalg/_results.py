"""NamedTuple results of the public API."""
from __future__ import annotations

from typing import NamedTuple

import torch


class SVDResult(NamedTuple):
    U: torch.Tensor
    S: torch.Tensor
    Vh: torch.Tensor


class EighResult(NamedTuple):
    eigenvalues: torch.Tensor
    eigenvectors: torch.Tensor


class CPResult(NamedTuple):
    weights: torch.Tensor
    factors: torch.Tensor


class CGResult(NamedTuple):
    x: torch.Tensor
    converged: torch.Tensor
    iterations: torch.Tensor
    residual_norm: torch.Tensor
