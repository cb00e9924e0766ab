"""Timing: warm-up, then the median of repeats (CUDA events on GPU, perf_counter on CPU).

``time_interleaved`` times ours and the peers of one case round-robin (one run of each per
round), so that drift on a shared machine (a neighbour's load, the memory bandwidth and
last-level cache it takes) lands on every function alike and the ratios stay comparable;
each function still gets its own repeat count from its first run, and short ones (< 5 ms)
are timed warm: an untimed run of their own just before each timed one."""
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


def _once(fn: Callable[[], Any], device: str) -> float:
    if device.startswith("cuda"):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


_SHORT_S = 5e-3  # time_interleaved: calls below this get an untimed run of their own before each timed one


def time_interleaved(fns: list[Callable[[], Any]], device: str, *, budget_s: float = 1.0, min_repeats: int = 3,
                     max_repeats: int = 50, warmup: int = 1) -> list[dict]:
    """``time_fn`` for several functions at once, round-robin: after a warm-up and one
    timed run of each (which sets its repeat count from ``budget_s``), every round runs
    each function that still needs repeats once, the order rotated by one each round (what
    ran just before a function, its caches and thread wake-ups, is spread over all of them);
    a function whose first run took under 5 ms runs once untimed before each timed run, so
    that it is timed warm and not right after another function's long call.
    One dict per function, as ``time_fn``."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    _sync(device)
    reps = []
    firsts = []
    times: list[list[float]] = []
    for fn in fns:
        first = _once(fn, device)
        firsts.append(first)
        reps.append(int(min(max_repeats, max(min_repeats, budget_s / max(first, 1e-6)))))
        times.append([])
    nf = len(fns)
    # a short call timed right after another function's long one measures the refill of the
    # caches that one evicted (a 0.3 ms decomposition ran at 2.3x its time right after a
    # 30 ms CP-ALS): short functions get an untimed run of their own first
    short = [ts_first < _SHORT_S for ts_first in firsts]
    for r in range(max(reps)):
        for j in range(nf):  # the order rotates every round: each function follows each other one alike
            i = (j + r) % nf
            if r < reps[i]:
                if short[i] and nf > 1:
                    fns[i]()
                    _sync(device)
                times[i].append(_once(fns[i], device))
    return [{"median_s": statistics.median(ts), "min_s": min(ts), "repeats": n} for ts, n in zip(times, reps)]


def gemm_rates(device: str, n: int | None = None) -> dict:
    """float32 GEMM rate in GFLOP/s of an n x n x n product measured now (n = 1024 on the
    CPU, 4096 on CUDA): ``torch.matmul`` (its BLAS), and on the CPU also the oneDNN route
    of ``subspace_linalg._gemm`` when it is on. A machine-speed reading beside the copy
    bandwidth: on shared hosts the vector units' speed moves from day to day, and the two
    libraries' rates do not move together."""
    from subspace_linalg import _gemm

    if n is None:
        n = 4096 if device.startswith("cuda") else 1024
    g = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, generator=g)
    b = torch.randn(n, n, device=device, generator=g)
    flops = 2.0 * n ** 3
    out = {"n": n, "torch.matmul": flops / time_fn(lambda: a @ b, device, budget_s=0.3, min_repeats=3)["median_s"] / 1e9}
    if device == "cpu" and _gemm.enabled():
        out["onednn"] = flops / time_fn(lambda: _gemm.dnn(a, b), device, budget_s=0.3, min_repeats=3)["median_s"] / 1e9
    return out


def copy_bandwidth(device: str, nbytes: int | None = None) -> float:
    """Copy bandwidth in GB/s (read + write counted) of a preallocated ``dst.copy_(src)``
    on the device, measured now: device-to-device on CUDA (256 MiB), memcpy on CPU (64 MiB)."""
    if nbytes is None:
        nbytes = (256 << 20) if device.startswith("cuda") else (64 << 20)
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).fill_(1.0)
    dst = torch.empty_like(src)
    t = time_fn(lambda: dst.copy_(src), device, budget_s=0.5, min_repeats=10)
    return 2 * nbytes / t["median_s"] / 1e9
