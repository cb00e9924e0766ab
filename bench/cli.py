"""``subspace-linalg bench [SUITE...]``: every row checked, then timed beside its peers."""
from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import platform
import pkgutil
import socket
import subprocess
import sys
import time
import traceback

import torch

from . import suites as _suites_pkg
from ._timing import copy_bandwidth, gemm_rates, time_interleaved

_DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16, "float16": torch.float16}


def available_suites() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(_suites_pkg.__path__) if not m.name.startswith("_"))


def _load(name: str):
    return importlib.import_module(f"{_suites_pkg.__name__}.{name}")


def _git_sha() -> str | None:
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(["git", "-C", here, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except Exception:
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_facts(device: str) -> dict:
    import subspace_linalg as sl

    facts = {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": device,
        "subspace_linalg": sl.info(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
    }
    try:
        import numpy, scipy  # noqa: E401

        facts["numpy"], facts["scipy"] = numpy.__version__, scipy.__version__
    except ImportError:
        pass
    if device.startswith("cuda") and torch.cuda.is_available():
        p = torch.cuda.get_device_properties(torch.device(device))
        facts["gpu"] = {"name": p.name, "memory_gb": round(p.total_memory / 2**30, 1),
                        "sm_count": p.multi_processor_count, "capability": f"{p.major}.{p.minor}"}
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=10)
            facts["gpu"]["driver"] = out.stdout.strip().splitlines()[0] if out.returncode == 0 else None
        except Exception:
            facts["gpu"]["driver"] = None
    return facts


def _fmt_t(t: float | None) -> str:
    if t is None:
        return "-"
    if t >= 1:
        return f"{t:.2f} s"
    if t >= 1e-3:
        return f"{t * 1e3:.2f} ms"
    return f"{t * 1e6:.1f} us"


_SETTLE_S = 0.2  # seconds of pause before each timing block


def run_case(case, device: str, budget: float, copy_gbps: float | None) -> dict:
    row = {"suite": case.suite, "name": case.name, "params": case.params, "note": case.note}
    try:
        inputs = case.setup()
        result = case.ours(inputs)
        err = float(case.check(inputs, result))
    except Exception as exc:  # an error in our op is a result to report, not a crash
        row.update(status="ERROR", error_msg=f"{type(exc).__name__}: {exc}",
                   traceback=traceback.format_exc(limit=3))
        return row
    row["error"] = err
    row["tol"] = case.tol
    if not (err <= case.tol):
        row["status"] = "WRONG"
        return row
    peers, timed = [], []  # peers checked first, then ours and every peer that ran timed round-robin
    for peer in case.peers:
        pr = {"name": peer.name}
        miss = peer.missing()
        if miss:
            pr["status"] = f"not installed ({miss})"
            peers.append(pr)
            continue
        try:
            pres = peer.fn(inputs)
            if peer.check:
                pr["error"] = float(case.check(inputs, pres))
            timed.append((pr, peer.fn, peer.timed_apart))
        except Exception as exc:
            pr["status"] = f"failed: {type(exc).__name__}: {str(exc)[:120]}"
        peers.append(pr)
    # ours and the torch peers round-robin; the peers on another BLAS runtime after, each in
    # its own block, with a pause before every timing block for spinning workers to settle
    rr = [(pr, f) for pr, f, apart in timed if not apart]
    fns = [lambda: case.ours(inputs)] + [lambda f=f: f(inputs) for _, f in rr]
    time.sleep(_SETTLE_S)
    try:
        res = time_interleaved(fns, device, budget_s=budget)
    except Exception as exc:  # a peer failing only under repetition: time ours alone
        for pr, _ in rr:
            pr["status"] = f"failed: {type(exc).__name__}: {str(exc)[:120]}"
        rr = []
        res = time_interleaved(fns[:1], device, budget_s=budget)
    for pr, f, apart in timed:
        if not apart:
            continue
        time.sleep(_SETTLE_S)
        try:
            rr.append((pr, f))
            res += time_interleaved([lambda f=f: f(inputs)], device, budget_s=budget)
        except Exception as exc:
            rr.pop()
            pr["status"] = f"failed: {type(exc).__name__}: {str(exc)[:120]}"
    t = res[0]
    row.update(status="ok", ours_s=t["median_s"], ours_min_s=t["min_s"], repeats=t["repeats"])
    if case.bytes_moved:
        row["ours_gbps"] = case.bytes_moved / t["median_s"] / 1e9
        if copy_gbps:
            row["frac_of_copy_bw"] = row["ours_gbps"] / copy_gbps
    if case.flops:
        row["ours_gflops"] = case.flops / t["median_s"] / 1e9
    for (pr, _), tp in zip(rr, res[1:]):
        pr.update(status="ok", time_s=tp["median_s"], min_s=tp["min_s"], repeats=tp["repeats"],
                  ratio=tp["median_s"] / t["median_s"])
    row["peers"] = peers
    return row


def _table(rows: list[dict]) -> str:
    header = ["suite", "case", "ours", "peer", "peer time", "speedup", "error (ours / peer)", "GB/s"]
    lines = []
    for r in rows:
        if r.get("status") != "ok":
            msg = r.get("error_msg") or f"error {r.get('error', float('nan')):.2e} > tol {r.get('tol', 0):.1e}"
            lines.append([r["suite"], r["name"], r.get("status"), msg[:60], "", "", "", ""])
            continue
        gb = f"{r['ours_gbps']:.1f}" if "ours_gbps" in r else ""
        if "frac_of_copy_bw" in r:
            gb += f" ({100 * r['frac_of_copy_bw']:.0f}% copy)"
        peers = r.get("peers") or [{"name": "-", "status": "none"}]
        for i, p in enumerate(peers):
            ok = p.get("status") == "ok"
            perr = f"{p['error']:.1e}" if "error" in p else "-"
            lines.append([
                r["suite"] if i == 0 else "", r["name"] if i == 0 else "",
                _fmt_t(r["ours_s"]) if i == 0 else "",
                p["name"] if ok else f"{p['name']}: {p.get('status')}",
                _fmt_t(p.get("time_s")) if ok else "-",
                f"{p['ratio']:.2f}x" if ok else "-",
                (f"{r['error']:.1e} / {perr}") if ok or i == 0 else "",
                gb if i == 0 else "",
            ])
    try:
        from tabulate import tabulate

        return tabulate(lines, headers=header)
    except ImportError:
        widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)] if lines else [len(h) for h in header]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)
        return "\n".join([fmt.format(*header), fmt.format(*["-" * w for w in widths])] +
                         [fmt.format(*map(str, ln)) for ln in lines])


def _plot(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, ratios = [], []
    for r in rows:
        for p in r.get("peers", []) or []:
            if p.get("status") == "ok":
                labels.append(f"{r['name']} vs {p['name']}")
                ratios.append(p["ratio"])
    fig, ax = plt.subplots(figsize=(9, 0.35 * max(len(labels), 4) + 1))
    ax.barh(range(len(labels)), ratios, color=["tab:green" if x >= 1 else "tab:red" for x in ratios])
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_xscale("log")
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_xlabel("speedup of subspace_linalg over the peer (peer time / our time, median)")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    suites = available_suites()
    ap = argparse.ArgumentParser(prog="subspace-linalg bench",
                                 description="Check, then time subspace_linalg beside its peers on the same inputs.")
    ap.add_argument("suites", nargs="*", metavar="SUITE", help=f"suites to run (default: all): {', '.join(suites)}")
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    ap.add_argument("--dtype", default="float32", choices=sorted(_DTYPES), help="input dtype (default float32)")
    ap.add_argument("--quick", action="store_true", help="small sizes (the default when no suite is named)")
    ap.add_argument("--full", action="store_true", help="full sizes even when no suite is named")
    ap.add_argument("--json", metavar="PATH", help="write the results as JSON")
    ap.add_argument("--plot", metavar="PATH", help="write a speedup bar chart (PNG)")
    ap.add_argument("--budget", type=float, default=None, help="seconds of timing per measurement (default 0.5, quick 0.2)")
    ap.add_argument("--filter", default=None, help="only cases whose name contains this text")
    ap.add_argument("--list", action="store_true", help="list the suites and exit")
    args = ap.parse_args(argv)
    if args.list:
        print("\n".join(suites))
        return 0
    unknown = [s for s in args.suites if s not in suites]
    if unknown:
        ap.error(f"unknown suite(s) {unknown}; available: {suites}")
    quick = args.quick or (not args.suites and not args.full)
    device = args.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        ap.error("--device cuda: torch sees no CUDA device here")
    dtype = _DTYPES[args.dtype]
    budget = args.budget if args.budget is not None else (0.2 if quick else 0.5)
    chosen = args.suites or suites

    cases = []
    for name in chosen:
        mod = _load(name)
        cases.extend(mod.cases(device=device, dtype=dtype, quick=quick))
    if args.filter:
        cases = [c for c in cases if args.filter in c.name]
    copy_gbps = copy_bandwidth(device)
    print(f"{device} copy bandwidth (dst.copy_(src), read + write): {copy_gbps:.1f} GB/s", file=sys.stderr)
    rates = gemm_rates(device)
    print(f"{device} float32 GEMM {rates['n']}^3: " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in rates.items() if k != "n"),
          file=sys.stderr)

    try:
        from tqdm import tqdm

        it = tqdm(cases, desc="bench", unit="case", file=sys.stderr, disable=None)
    except ImportError:
        it = cases
    rows = []
    for case in it:
        if hasattr(it, "set_postfix_str"):
            it.set_postfix_str(case.name[:40])
        rows.append(run_case(case, device, budget, copy_gbps))
        torch.manual_seed(0)
    print(_table(rows))
    bad = [r for r in rows if r.get("status") != "ok"]
    if bad:
        print(f"\n{len(bad)} row(s) failed their correctness check or raised: "
              + ", ".join(f"{r['suite']}/{r['name']}" for r in bad))
    if args.json:
        doc = {"created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "command": "subspace-linalg bench " + " ".join(argv if argv is not None else sys.argv[1:]),
               "git_sha": _git_sha(), "machine": machine_facts(device), "dtype": args.dtype, "quick": quick,
               "copy_gbps": copy_gbps, "gemm_gflops": rates,
               "timing": "median of repeats; ours and the torch peers of a case round-robin, peers on other runtimes "
                         "(NumPy/SciPy BLAS) in blocks of their own after a pause (bench/cli.py, bench/_timing.py)",
               "rows": rows}
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1, default=str)
        print(f"wrote {args.json}", file=sys.stderr)
    if args.plot:
        _plot(rows, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    return 1 if bad else 0
