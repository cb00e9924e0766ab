"""Warnings and errors of subspace_linalg."""
from __future__ import annotations


class NotConvergedWarning(UserWarning):
    """An iterative method stopped before meeting its tolerance; the message gives the
    residual reached and the tolerance asked for."""


class NumericalWarning(UserWarning):
    """A result is valid but a numerical fallback was needed (ill-conditioning, breakdown)."""


class NanError(ValueError):
    """Non-finite values where finite ones are required."""


class BreakdownError(RuntimeError):
    """An iterative method broke down (e.g. CG on an indefinite operator) and cannot continue."""
