"""Timing: warm-up, then the median of repeats (CUDA events on GPU, perf_counter on CPU)."""
from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import torch


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_fn(fn: Callable[[], Any], device: str, *, budget_s: float = 1.0, min_repeats: int = 3,
            max_repeats: int = 50, warmup: int = 1) -> dict:
    """Median, min and count of ``fn()`` timings in seconds within about ``budget_s``."""
    for _ in range(warmup):
        fn()
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    first = time.perf_counter() - t0
    reps = int(min(max_repeats, max(min_repeats, budget_s / max(first, 1e-6))))
    times = []
    if device.startswith("cuda"):
        for _ in range(reps):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
    else:
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times), "repeats": reps}


def copy_bandwidth(device: str, nbytes: int | None = None) -> float:
    """Copy bandwidth in GB/s (read + write counted) of a preallocated ``dst.copy_(src)``
    on the device, measured now: device-to-device on CUDA (256 MiB), memcpy on CPU (64 MiB)."""
    if nbytes is None:
        nbytes = (256 << 20) if device.startswith("cuda") else (64 << 20)
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).fill_(1.0)
    dst = torch.empty_like(src)
    t = time_fn(lambda: dst.copy_(src), device, budget_s=0.5, min_repeats=10)
    return 2 * nbytes / t["median_s"] / 1e9
