"""What a benchmark row is."""
from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable


@dataclasses.dataclass
class Peer:
    """A competitor: ``fn(inputs) -> result``. ``requires`` names modules that must import
    (a missing one shows in the row as 'not installed', never a crash)."""

    name: str
    fn: Callable[[dict], Any]
    requires: tuple[str, ...] = ()
    check: bool = True  # check the peer's result with the case's check too
    # timed in a block of its own after a pause, not round-robin with ours: default for
    # peers that need extra packages (NumPy/SciPy/TensorLy/scikit-learn run on their own
    # BLAS, whose worker threads keep spinning for a while after each call and would slow
    # whatever runs next on a 2-core machine)
    apart: bool | None = None

    @property
    def timed_apart(self) -> bool:
        return bool(self.requires) if self.apart is None else self.apart

    def missing(self) -> str | None:
        for mod in self.requires:
            try:
                importlib.import_module(mod)
            except Exception:  # ImportError, or a broken install
                return mod
        return None


@dataclasses.dataclass
class Case:
    """One row: inputs from ``setup()``, our ``ours(inputs)``, peers, and ``check(inputs,
    result) -> error`` (a float; the row is correct when error <= tol)."""

    suite: str
    name: str
    setup: Callable[[], dict]
    ours: Callable[[dict], Any]
    check: Callable[[dict, Any], float]
    tol: float
    peers: list[Peer] = dataclasses.field(default_factory=list)
    bytes_moved: int | None = None  # for achieved GB/s (minimum traffic of the op)
    flops: int | None = None
    params: dict = dataclasses.field(default_factory=dict)
    note: str = ""
