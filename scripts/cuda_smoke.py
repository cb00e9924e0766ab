#!/usr/bin/env python
"""Smoke test of every native op of subspace_linalg on one device, fast enough to run
under compute-sanitizer.

    python scripts/cuda_smoke.py [--device cuda|cpu] [--only NAME[,NAME...]] [--list] [-v]

Every ``subspace_linalg::<name>`` custom op (the list is read from
subspace_linalg/_ops/*.py, so a new op without a smoke case fails here) is called a few
times on small, awkward sizes (odd sizes, sizes off the multiples of 32/16/8/4, batches
of 1 and more, size-1 dims, float32 and float64, 16-bit formats where the op moves bits)
and compared with the ground truth of its tests:

  --device cuda   the same op run on the CPU native kernel (same inputs, same dtype)
  --device cpu    the pure-torch reference (subspace_linalg/reference/), so the script
                  itself can be checked on a machine without a GPU

with the tolerance table of the tests (tests/_tolerances.py; bitwise for the ops that
move bits: transpose_copy, gather/scatter, sparse_sign_table_). Mutating ops (names
ending in _) get fresh buffers on each device. One line per op:

  PASS op (N cases, T s) | FAIL op: [case] what differed (error, bound, shape) | ERROR op: [case] exception

then a SUMMARY line; the exit code is 0 only if every selected op passed (2: bad usage or
no such device). Under the sanitizers (kernel errors are reported per case: the script
synchronizes after each):

  compute-sanitizer --tool memcheck --error-exitcode 1 python scripts/cuda_smoke.py --device cuda
  compute-sanitizer --tool racecheck --error-exitcode 1 python scripts/cuda_smoke.py --device cuda
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import math
import re
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent

try:
    import subspace_linalg  # noqa: F401
except ImportError:  # run from a checkout without an installed package: the source tree
    sys.path.insert(0, str(ROOT))
    import subspace_linalg  # noqa: F401

from subspace_linalg import _native  # noqa: E402
from subspace_linalg._dtypes import compute_dtype  # noqa: E402
from subspace_linalg.reference import cholqr_panel as ref_cholqr  # noqa: E402
from subspace_linalg.reference import fwht as ref_fwht  # noqa: E402
from subspace_linalg.reference import krylov as ref_krylov  # noqa: E402
from subspace_linalg.reference import lanczos as ref_lanczos  # noqa: E402
from subspace_linalg.reference import select as ref_select  # noqa: E402
from subspace_linalg.reference import sketch as ref_sketch  # noqa: E402
from subspace_linalg.reference import small_dense as ref_small  # noqa: E402
from subspace_linalg.reference import spm as ref_spm  # noqa: E402
from subspace_linalg.reference import transpose as ref_transpose  # noqa: E402

OPS = torch.ops.subspace_linalg
F16, BF16, F32, F64 = torch.float16, torch.bfloat16, torch.float32, torch.float64
I32, I64 = torch.int32, torch.int64


# ----------------------------------------------------------------------------- tolerances
def _tests_module(name: str):
    """A helper module of the tests folder (tests/<name>.py), or None without it."""
    try:
        spec = importlib.util.spec_from_file_location(f"_cuda_smoke_{name}", ROOT / "tests" / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    except Exception:  # noqa: BLE001 - run without the tests folder
        return None


def _load_rtol():
    """rtol(op_class, dtype, n) of tests/_tolerances.py, or the same formula locally."""
    mod = _tests_module("_tolerances")
    if mod is not None:
        return mod.rtol, "tests/_tolerances.py"
    c_op = {"transform": 4.0, "gather": 0.0, "orth": 10.0, "small_dense": 50.0, "eig": 100.0,
            "solve": 10.0, "tensor": 100.0}

    def rtol(op, dtype, n=1):
        return c_op[op] * math.sqrt(max(n, 1)) * torch.finfo(dtype).eps

    return rtol, "a local copy of the tests' table"


rtol, RTOL_SOURCE = _load_rtol()


# ----------------------------------------------------------------------------- checks
class Mismatch(AssertionError):
    """A result that differs from the ground truth (a FAIL, not an ERROR)."""


def _shape(t) -> tuple:
    return tuple(t.shape)


def _same_shape(what, got, want, dtype=True):
    if _shape(got) != _shape(want) or (dtype and got.dtype != want.dtype):
        raise Mismatch(f"{what}: got {_shape(got)} {got.dtype}, expected {_shape(want)} {want.dtype}")


def _bits(t: torch.Tensor) -> torch.Tensor:
    t = t.detach().cpu().contiguous()
    if t.is_floating_point():
        return t.view({2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])
    return t


def _diff(got, want):
    g, w = got.detach().cpu().double(), want.detach().cpu().double()
    d = (g - w).abs()
    both = (g == w) | (torch.isnan(g) & torch.isnan(w))  # equal infinities / both NaN
    return torch.where(both, torch.zeros_like(d), torch.nan_to_num(d, nan=math.inf)), g, w


def eq(what, got, want):
    """Bitwise equal (NaN payloads and signed zeros included), shape and dtype."""
    _same_shape(what, got, want)
    gb, wb = _bits(got), _bits(want)
    if not torch.equal(gb, wb):
        bad = int((gb != wb).sum())
        d, _, _ = _diff(got, want)
        raise Mismatch(f"{what}: not bitwise equal, {bad} of {gb.numel()} entries differ, max abs err "
                       f"{float(d.max()):.3g} (shape {_shape(got)})")


def rel(what, got, want, tol, per_matrix=False, dtype=True):
    """||got - want||_F / ||want||_F <= tol, over the whole tensor or per matrix (the last
    two dims); a zero expected block must come back zero."""
    _same_shape(what, got, want, dtype)
    d, g, w = _diff(got, want)
    if not bool(torch.isfinite(w).all()):
        raise Mismatch(f"{what}: the ground truth has non-finite entries (shape {_shape(want)})")
    if per_matrix and got.dim() >= 2:
        d, w = d.reshape(-1, got.shape[-2] * got.shape[-1]), w.reshape(-1, got.shape[-2] * got.shape[-1])
    else:
        d, w = d.reshape(1, -1), w.reshape(1, -1)
    num, den = torch.linalg.vector_norm(d, dim=-1), torch.linalg.vector_norm(w, dim=-1)
    err = torch.where(den > 0, num / torch.where(den > 0, den, 1.0),
                      torch.where(num > 0, torch.full_like(num, math.inf), torch.zeros_like(num)))
    worst = float(err.max()) if err.numel() else 0.0
    if not worst <= tol:
        raise Mismatch(f"{what}: relative error {worst:.3g} > {tol:.3g} (max abs err {float(d.max()):.3g}, "
                       f"shape {_shape(got)})")


def close(what, got, want, rtol_, atol, dtype=True):
    """|got - want| <= atol + rtol |want| entrywise (torch.testing.assert_close's rule)."""
    _same_shape(what, got, want, dtype)
    d, _, w = _diff(got, want)
    bound = atol + rtol_ * w.abs()
    if d.numel() and not bool((d <= bound).all()):
        i = int(torch.argmax(d - bound))
        raise Mismatch(f"{what}: |err| {float(d.flatten()[i]):.3g} > bound {float(bound.flatten()[i]):.3g} at flat "
                       f"index {i} (max abs err {float(d.max()):.3g}, rtol {rtol_:.3g}, atol {atol:.3g}, "
                       f"shape {_shape(got)})")


def maxrel(what, got, want, tol, dtype=True):
    """max |got - want| <= tol * max |want| (summation orders differ entrywise)."""
    _same_shape(what, got, want, dtype)
    d, _, w = _diff(got, want)
    scale = float(w.abs().max()) if w.numel() else 0.0
    err = float(d.max()) if d.numel() else 0.0
    if not err <= tol * scale:
        raise Mismatch(f"{what}: max abs err {err:.3g} > {tol:.3g} * max|expected| {scale:.3g} (shape {_shape(got)})")


def ints_near(what, got, want, slack):
    _same_shape(what, got, want, dtype=False)
    d = (got.detach().cpu().long() - want.detach().cpu().long()).abs()
    if d.numel() and int(d.max()) > slack:
        raise Mismatch(f"{what}: {got.cpu().tolist()} vs {want.cpu().tolist()} (allowed difference {slack})")


def require(cond, msg):
    if not cond:
        raise Mismatch(msg)


# ----------------------------------------------------------------------------- runner
def _oneline(exc: BaseException, limit: int = 400) -> str:
    s = " ".join(str(exc).split())
    return s if len(s) <= limit else s[:limit] + " ..."


class Ctx:
    """One op's run: the device, its cases, their failures."""

    def __init__(self, device: torch.device, verbose: bool):
        self.device = device
        self.on_cpu = device.type == "cpu"
        self.verbose = verbose
        self.cases = 0
        self.fails: list[str] = []
        self.errors: list[str] = []

    @contextlib.contextmanager
    def case(self, label: str):
        self.cases += 1
        try:
            yield
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)  # an asynchronous kernel error lands on its case
        except Mismatch as exc:
            self.fails.append(f"[{label}] {_oneline(exc)}")
        except Exception as exc:  # noqa: BLE001 - reported as ERROR
            self.errors.append(f"[{label}] {type(exc).__name__}: {_oneline(exc)}")
        else:
            if self.verbose:
                print(f"    ok [{label}]", flush=True)

    def both(self, build, run, reference):
        """(run(build(device)), ground truth): reference(build(cpu)) on the cpu, else
        run(build(cpu)) (the CPU native kernel). build makes fresh tensors each call."""
        got = run(build(self.device))
        cpu_args = build(torch.device("cpu"))
        want = reference(cpu_args) if self.on_cpu else run(cpu_args)
        return got, want

    def in_place(self, base, op, reference, outputs):
        """``both`` for an op that writes into its arguments: fresh arguments on each device
        (copies of the list ``base``, or ``base(device)``), ``op(*args)`` /
        ``reference(*args)`` called, and the arguments at the indices ``outputs`` compared."""
        def build(dev):
            return base(dev) if callable(base) else [_dev(t, dev) for t in base]

        def pick(fn):
            def call(a):
                fn(*a)
                return [a[i] for i in outputs]
            return call

        return self.both(build, pick(op), pick(reference))


SMOKES: dict = {}


def smoke(name):
    def deco(fn):
        SMOKES[name] = fn
        return fn

    return deco


def registered_ops() -> list[str]:
    """Every subspace_linalg::<name> custom op, read from subspace_linalg/_ops/*.py."""
    import subspace_linalg._ops as pkg

    names: set[str] = set()
    for d in pkg.__path__:
        for f in sorted(Path(d).glob("*.py")):
            names |= set(re.findall(r'custom_op\(\s*"subspace_linalg::(\w+)"', f.read_text()))
    return sorted(names)


# ----------------------------------------------------------------------------- inputs
def _g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(g, *shape, dtype=F64):
    return torch.randn(*shape, generator=g, dtype=F64).to(dtype)


def _dev(t, device):
    """A fresh copy of t on device (None stays None)."""
    return None if t is None else t.to(device, copy=True)


def _dt(dtype) -> str:
    return {F16: "f16", BF16: "bf16", F32: "f32", F64: "f64", I32: "i32", I64: "i64"}.get(dtype, str(dtype))


def _eps(dtype) -> float:
    return float(torch.finfo(dtype).eps)


def _orthonormal(g, *shape):
    return torch.linalg.qr(torch.randn(*shape, generator=g, dtype=F64)).Q


def _spd(g, batch, n, kappa):
    """Q diag(lambda) Q^T, eigenvalues from 1 to kappa geometrically (float64)."""
    Q = _orthonormal(g, *batch, n, n)
    k = torch.as_tensor(kappa, dtype=F64)
    t = torch.linspace(0, 1, n, dtype=F64)
    ev = torch.exp(torch.log(k.unsqueeze(-1) if k.dim() else k) * t)
    A = (Q * ev.unsqueeze(-2)) @ Q.mT
    return (A + A.mT) / 2


def _spectrum_matrix(g, evals):
    n = evals.numel()
    Q = _orthonormal(g, n, n)
    A = (Q * evals.to(F64)) @ Q.T
    return (A + A.T) / 2


def _dense_to_csr(D):
    """(crow, col, val) int64 / int64 / D's dtype of D (m, n); exact zeros are not stored."""
    nz = D != 0
    crow = torch.zeros(D.shape[0] + 1, dtype=I64)
    crow[1:] = torch.cumsum(nz.sum(1), 0)
    rows, cols = nz.nonzero(as_tuple=True)
    return crow, cols.to(I64).contiguous(), D[rows, cols].contiguous()


def _poisson2d(mg):
    T = 2 * torch.eye(mg, dtype=F64) - torch.diag(torch.ones(mg - 1, dtype=F64), 1) \
        - torch.diag(torch.ones(mg - 1, dtype=F64), -1)
    eye = torch.eye(mg, dtype=F64)
    return torch.kron(T, eye) + torch.kron(eye, T)


# ----------------------------------------------------------------------------- bit-moving ops
@smoke("transpose_copy")
def _transpose_copy(ctx):
    cases = [(F32, (1, 1), None), (F64, (3, 5), None), (F32, (2, 17, 33), None), (BF16, (1, 70, 1), None),
             (F16, (2, 3, 31, 65), None), (I64, (4, 9, 7), None), (I32, (1, 33, 65), None),
             (F32, (3, 40, 50), "strided+nan")]
    for i, (dtype, shape, layout) in enumerate(cases):
        with ctx.case(f"{_dt(dtype)} {shape}{' ' + layout if layout else ''}"):
            base = (_randn(_g(100 + i), *shape) * 1000).to(dtype)
            if layout:
                base[0, 2, 5] = float("nan")

            def build(dev, base=base, layout=layout):
                A = _dev(base, dev)
                return (A[:, ::2, 1:] if layout else A,)

            got, want = ctx.both(build, lambda a: OPS.transpose_copy.default(*a),
                                 lambda a: ref_transpose.transpose_copy(*a))
            require(got.is_contiguous(), f"At not contiguous (strides {got.stride()})")
            eq("At", got, want)


def _index(g, kind, ib, m, k):
    if kind == "sorted":
        return torch.stack([torch.sort(torch.randperm(m, generator=g)[:k]).values for _ in range(ib)])
    if kind == "unsorted":
        return torch.stack([torch.randperm(m, generator=g)[:k] for _ in range(ib)])
    if kind == "repeated":
        return torch.randint(0, min(6, m), (ib, k), generator=g)
    return torch.zeros(ib, 0, dtype=I64)


@smoke("gather_rows")
def _gather_rows(ctx):
    # dtype, B, m, n, k, index batch (B or 1: shared), scale, layout of G
    cases = [(F32, 1, 5, 1, 3, 1, False, "row"), (F64, 3, 40, 33, 7, 3, True, "row"),
             (F32, 2, 17, 8, 9, 2, False, "row"),   # 32-byte rows: the vectorized CUDA kernel
             (BF16, 3, 10, 12, 4, 1, True, "row"), (F32, 3, 40, 33, 5, 1, False, "transposed"),
             (F16, 2, 6, 16, 1, 2, True, "row"), (F64, 2, 9, 5, 4, 2, True, "nograd")]
    for i, (dtype, B, m, n, k, ib, scaled, layout) in enumerate(cases):
        label = f"{_dt(dtype)} G({B},{m},{n}) idx({ib},{k}){' scale' if scaled else ''} {layout}"
        with ctx.case(label):
            g = _g(200 + i)
            Gb = _randn(g, B, n, m, dtype=dtype) if layout == "transposed" else _randn(g, B, m, n, dtype=dtype)
            idx = torch.randint(0, m, (ib, k), generator=g)
            sc = _randn(g, ib, k, dtype=dtype) if scaled else None

            def build(dev, Gb=Gb, idx=idx, sc=sc, layout=layout):
                G = _dev(Gb, dev)
                return (G.transpose(-1, -2) if layout == "transposed" else G, _dev(idx, dev), _dev(sc, dev))

            op = OPS.gather_rows_nograd.default if layout == "nograd" else OPS.gather_rows.default
            got, want = ctx.both(build, lambda a: op(*a), lambda a: ref_select.gather_rows(*a))
            eq("out", got, want)


@smoke("scatter_rows")
def _scatter_rows(ctx):
    # dtype, B, m (rows out), k, n, index kind, shared index, scale, layout of X
    cases = [(F32, 1, 1, 1, 1, "sorted", False, False, "row"), (F64, 3, 50, 20, 37, "sorted", False, True, "row"),
             (F32, 3, 50, 20, 37, "unsorted", False, False, "row"),
             (F64, 2, 12, 9, 17, "repeated", False, True, "row"),
             (BF16, 3, 13, 5, 8, "repeated", True, False, "row"), (F32, 2, 9, 0, 4, "empty", False, False, "row"),
             (F32, 3, 30, 11, 21, "unsorted", True, True, "transposed")]
    for i, (dtype, B, m, k, n, kind, shared, scaled, layout) in enumerate(cases):
        ib = 1 if shared else B
        with ctx.case(f"{_dt(dtype)} X({B},{k},{n}) -> {m} rows, {kind}{' shared' if shared else ''}"
                      f"{' scale' if scaled else ''} {layout}"):
            g = _g(300 + i)
            Xb = _randn(g, B, n, k, dtype=dtype) if layout == "transposed" else _randn(g, B, k, n, dtype=dtype)
            idx = _index(g, kind, ib, m, k)
            sc = _randn(g, ib, k, dtype=dtype) if scaled else None

            def build(dev, Xb=Xb, idx=idx, sc=sc, layout=layout, m=m):
                X = _dev(Xb, dev)
                X = X.transpose(-1, -2) if layout == "transposed" else X
                X[:, ::3, ::2] = -0.0  # signed zeros: -0 rows become +0 as in zeros + index_add_
                return X, _dev(idx, dev), _dev(sc, dev), m

            def reference(a):
                X, idx, sc, m = a
                out = torch.zeros(X.shape[0], m, X.shape[2], dtype=X.dtype)
                ref_select.scatter_rows_into(X, idx, sc, out)
                return out

            got, want = ctx.both(build, lambda a: OPS.scatter_rows.default(*a), reference)
            eq("out", got, want)


@smoke("scatter_rows_")
def _scatter_rows_(ctx):
    # dtype, B, m, k, n, index kind, shared, scale, layout of out
    cases = [(F64, 2, 12, 9, 17, "repeated", False, True, "row"),
             (F32, 3, 50, 20, 37, "sorted", False, False, "transposed"),
             (BF16, 1, 7, 7, 3, "unsorted", False, True, "row"), (F32, 2, 5, 3, 1, "repeated", True, False, "row"),
             (F64, 1, 1, 2, 1, "repeated", False, False, "row")]
    for i, (dtype, B, m, k, n, kind, shared, scaled, layout) in enumerate(cases):
        ib = 1 if shared else B
        with ctx.case(f"{_dt(dtype)} X({B},{k},{n}) += into ({B},{m},{n}) {kind}{' shared' if shared else ''}"
                      f"{' scale' if scaled else ''} out {layout}"):
            g = _g(400 + i)
            Xb = _randn(g, B, k, n, dtype=dtype)
            idx = _index(g, kind, ib, m, k)
            sc = _randn(g, ib, k, dtype=dtype) if scaled else None
            Ob = _randn(g, B, n, m, dtype=dtype) if layout == "transposed" else _randn(g, B, m, n, dtype=dtype)

            def build(dev, Xb=Xb, idx=idx, sc=sc, Ob=Ob, layout=layout):
                out = _dev(Ob, dev)
                out = out.transpose(-1, -2) if layout == "transposed" else out
                return _dev(Xb, dev), _dev(idx, dev), _dev(sc, dev), out

            (got,), (want,) = ctx.in_place(build, OPS.scatter_rows_.default, ref_select.scatter_rows_into, (3,))
            eq("out", got, want)


# ----------------------------------------------------------------------------- transforms
@smoke("fwht")
def _fwht(ctx):
    # dtype, shape, scale, layout (the two-pass CUDA kernel above 8192 (f32) / 4096 (f64))
    cases = [(F32, (1, 1), 1.0, None), (F64, (3, 2), 0.5 ** 0.5, None), (F32, (5, 4), -0.5, None),
             (F64, (2, 3, 64), 0.125, None), (F32, (3, 1024), 1 / 32, None), (F32, (7, 256), 1 / 16, "strided"),
             (F64, (6, 2, 32), 1.0, "permuted"), (F64, (1, 8192), 2 ** -6.5, None), (F32, (2, 16384), 2 ** -7, None)]
    for i, (dtype, shape, scale, layout) in enumerate(cases):
        with ctx.case(f"{_dt(dtype)} {shape} scale {scale:.4g}{' ' + layout if layout else ''}"):
            g = _g(500 + i)
            if layout == "strided":
                base = _randn(g, shape[0], 2 * shape[1], dtype=dtype)
            elif layout == "permuted":
                base = _randn(g, 2 * shape[1], shape[0], shape[2], dtype=dtype)
            else:
                base = _randn(g, *shape, dtype=dtype)

            def build(dev, base=base, layout=layout, scale=scale):
                x = _dev(base, dev)
                if layout == "strided":
                    x = x[:, ::2]
                elif layout == "permuted":  # batch dims that do not coalesce
                    x = x.permute(1, 0, 2)[:, ::2]
                return x, scale

            got, want = ctx.both(build, lambda a: OPS.fwht.default(*a), lambda a: ref_fwht.fwht_last(*a))
            require(_shape(got) == shape, f"y shape {_shape(got)} != {shape}")
            rel("y", got, want, rtol("transform", dtype, shape[-1]))


@smoke("random_fill_")
def _random_fill_(ctx):
    # dtype, kind (0 Gaussian, 1 Rademacher, 2 uniform), rows, cols, layout, scale, seed, tag
    cases = [(F64, 0, 1, 1, "row", 1.0, 2 ** 61 + 12345, 9), (F32, 0, 5, 33, "row", 0.5, 2 ** 61 + 12345, 9),
             (F64, 0, 4, 99, "col", -0.5, 7, 0), (F64, 1, 3, 130, "row", 2.0, 2 ** 62 - 977, 41),
             (F32, 1, 9, 7, "col", 1.0, 5, 2 ** 32 - 1), (F32, 2, 7, 31, "col", 1.0, 123456789, 5),
             (F64, 2, 2, 65, "row", 3.0, 0, 1)]
    for dtype, kind, R, C, layout, scale, seed, tag in cases:
        with ctx.case(f"{_dt(dtype)} kind {kind} ({R},{C}) {layout} scale {scale} seed {seed} tag {tag}"):
            def build(dev, R=R, C=C, layout=layout, dtype=dtype, kind=kind, seed=seed, tag=tag, scale=scale):
                shape = (R, C) if layout == "row" else (C, R)
                out = torch.full(shape, float("nan"), dtype=dtype, device=dev)  # unwritten entries show
                return (out if layout == "row" else out.mT), kind, seed, tag, scale

            (got,), (want,) = ctx.in_place(build, OPS.random_fill_.default, ref_sketch.random_fill, (0,))
            if kind == 1:  # +-scale: exact
                eq("out", got, want)
            else:  # the reference's libm formula; two kernels each within rtol of it
                tol = rtol("transform", dtype) * (1 if ctx.on_cpu else 2)
                close("out", got, want, tol, 0.0)
            (again,), _ = ctx.in_place(build, OPS.random_fill_.default, ref_sketch.random_fill, (0,))
            eq("out (same seed twice)", again, got)


@smoke("sparse_sign_table_")
def _sparse_sign_table_(ctx):
    # n, zeta, size, seed, tag
    cases = [(30, 8, 20, 77, 3), (1, 1, 1, 5, 0), (7, 3, 3, 2 ** 62 + 1, 11), (33, 4, 1000, 123456789, 2 ** 32 - 1)]
    for n, zeta, size, seed, tag in cases:
        with ctx.case(f"codes ({n},{zeta}) size {size} seed {seed} tag {tag}"):
            def build(dev, n=n, zeta=zeta, size=size, seed=seed, tag=tag):
                return torch.full((n, zeta), -1, dtype=I32, device=dev), size, seed, tag

            def run(a):
                OPS.sparse_sign_table_.default(*a)
                return a[0]

            def reference(a):
                codes, size, seed, tag = a
                codes.copy_(ref_sketch.sparse_sign_table(codes.shape[0], size, codes.shape[1], seed, tag))
                return codes

            got, want = ctx.both(build, run, reference)
            eq("codes", got, want)
            pos = torch.sort(got.cpu().long() >> 1, dim=1).values
            require(bool(((pos >= 0) & (pos < size)).all()) and bool((pos[:, 1:] > pos[:, :-1]).all()),
                    "codes: positions out of [0, size) or repeated within a row")
            eq("codes (same seed twice)", run(build(ctx.device)), got)


def _csr_by_columns(g, n, J, vdtype):
    """(ptr, cols, vals) of an n x J operator by columns: 0-4 distinct rows per column (one
    column empty)."""
    counts = torch.randint(0, min(4, n) + 1, (J,), generator=g)
    counts[0] = min(2, n)
    if J > 2:
        counts[1] = 0
    cols = torch.cat([torch.randperm(n, generator=g)[:int(c)] for c in counts]).to(I64)
    ptr = torch.zeros(J + 1, dtype=I64)
    ptr[1:] = torch.cumsum(counts, 0)
    return ptr, cols, _randn(g, cols.shape[0], dtype=vdtype)


@smoke("sparse_apply")
def _sparse_apply(ctx):
    # dtype, B, R, n, out_len, transpose_out, layout of X ("col": column-major rows, the CUDA col mode)
    cases = [(F32, 1, 1, 1, 1, False, "row"), (F64, 2, 5, 37, 13, False, "row"), (F32, 2, 5, 37, 13, True, "col"),
             (BF16, 1, 3, 16, 7, True, "row"), (F64, 3, 4, 9, 20, False, "col")]
    for i, (dtype, B, R, n, J, t, layout) in enumerate(cases):
        with ctx.case(f"{_dt(dtype)} X({B},{R},{n}) -> {J} cols{' transposed' if t else ''} X {layout}"):
            g = _g(700 + i)
            Xb = _randn(g, B, R, n, dtype=dtype)
            ptr, cols, vals = _csr_by_columns(g, n, J, compute_dtype(dtype))

            def build(dev, Xb=Xb, ptr=ptr, cols=cols, vals=vals, J=J, t=t, layout=layout):
                X = _dev(Xb, dev)
                if layout == "col":
                    X = X.mT.contiguous().mT
                return X, _dev(ptr, dev), _dev(cols, dev), _dev(vals, dev), J, t

            got, want = ctx.both(build, lambda a: OPS.sparse_apply.default(*a), lambda a: ref_sketch.sparse_apply(*a))
            rel("Y", got, want, rtol("transform", dtype, n))


@smoke("srht")
def _srht(ctx):
    # dtype, B, R, n, N, s, transpose_out, layout of X
    cases = [(F32, 1, 1, 1, 1, 1, False, "row"), (F64, 2, 3, 37, 64, 13, False, "row"),
             (F32, 2, 3, 37, 64, 13, True, "col"), (F64, 1, 2, 100, 128, 128, True, "row"),
             (F32, 1, 3, 1000, 1024, 24, False, "row"), (BF16, 1, 2, 20, 32, 5, False, "row")]
    for i, (dtype, B, R, n, N, s, t, layout) in enumerate(cases):
        with ctx.case(f"{_dt(dtype)} X({B},{R},{n}) N {N} s {s}{' transposed' if t else ''} X {layout}"):
            g = _g(800 + i)
            Xb = _randn(g, B, R, n, dtype=dtype)
            signs = ((torch.randint(0, 2, (n,), generator=g) * 2 - 1) * s ** -0.5).to(compute_dtype(dtype))
            rows = torch.sort(torch.randperm(N, generator=g)[:s]).values

            def build(dev, Xb=Xb, signs=signs, rows=rows, N=N, t=t, layout=layout):
                X = _dev(Xb, dev)
                if layout == "col":
                    X = X.mT.contiguous().mT
                return X, _dev(signs, dev), _dev(rows, dev), N, t

            got, want = ctx.both(build, lambda a: OPS.srht.default(*a), lambda a: ref_sketch.srht(*a))
            rel("Y", got, want, rtol("transform", dtype, N))


# ----------------------------------------------------------------------------- Krylov kernels
@smoke("cg_update_")
def _cg_update_(ctx):
    cases = [(F64, 1, 1), (F32, 7, 33), (F64, 7, 33), (F32, 3, 4099), (F64, 2, 4099)]  # > 4096: chunked CUDA path
    for i, (dtype, S, n) in enumerate(cases):
        with ctx.case(f"{_dt(dtype)} S {S} n {n}"):
            g = _g(900 + i)
            base = [_randn(g, S, n, dtype=dtype), _randn(g, S, n, dtype=dtype), _randn(g, S, dtype=dtype).abs(),
                    _randn(g, S, n, dtype=dtype), _randn(g, S, n, dtype=dtype), _randn(g, S, dtype=dtype),
                    torch.arange(S) % 3 != 1]

            got, want = ctx.in_place(base, OPS.cg_update_.default, ref_krylov.cg_update_, range(3))
            tol = rtol("transform", dtype, n)
            for name, a, b in zip(("x", "r", "rr"), got, want):
                rel(name, a, b, tol)
            inactive = ~base[-1]
            eq("x (inactive rows)", got[0].cpu()[inactive], base[0][inactive])
            eq("rr (inactive rows)", got[2].cpu()[inactive], base[2][inactive])


@smoke("cg_step_")
def _cg_step_(ctx):
    cases = [(F64, 9, 33), (F32, 9, 33), (F32, 5, 4099), (F64, 3, 4099), (F64, 1, 1), (F32, 2, 7)]
    for i, (dtype, S, n) in enumerate(cases):
        with ctx.case(f"{_dt(dtype)} S {S} n {n}"):
            g = _g(1000 + i)
            p = _randn(g, S, n, dtype=dtype)
            Ap = p * _randn(g, S, n, dtype=dtype).abs()  # p.Ap > 0 ...
            if S > 1:
                Ap[1] = -Ap[1]  # ... except system 1: breakdown
            status = (torch.arange(S) % 5 == 4).to(I32)  # some converged already
            tol2 = torch.full((S,), 1e-3, dtype=dtype)
            if S > 2:
                tol2[2] = 1e9  # converges at this step
            base = [_randn(g, S, n, dtype=dtype), _randn(g, S, n, dtype=dtype), _randn(g, S, dtype=dtype).abs(),
                    status, torch.full((S,), 3, dtype=I32), p, Ap, _randn(g, S, dtype=dtype).abs() * 0.1, tol2]

            got, want = ctx.in_place(base, OPS.cg_step_.default, ref_krylov.cg_step_, range(5))
            tol = rtol("transform", dtype, n)
            for name, a, b in zip(("x", "r", "rr"), got, want):
                rel(name, a, b, tol)
            eq("status", got[3], want[3])
            eq("iters", got[4], want[4])


@smoke("cg_direction_")
def _cg_direction_(ctx):
    cases = [(F64, 4, 9), (F32, 4, 9), (F32, 6, 4099), (F64, 1, 1), (F64, 3, 300)]
    for i, (dtype, S, n) in enumerate(cases):
        with ctx.case(f"{_dt(dtype)} S {S} n {n}"):
            g = _g(1100 + i)
            rz_new = torch.rand(S, generator=g, dtype=F64).to(dtype) + 0.1
            status = torch.zeros(S, dtype=I32)
            if S > 1:
                rz_new[0] = -1.0  # breakdown
                status[-1] = ref_krylov.CG_CONVERGED
            base = [_randn(g, S, n, dtype=dtype), _randn(g, S, n, dtype=dtype), rz_new,
                    torch.rand(S, generator=g, dtype=F64).to(dtype) + 0.1, status]

            got, want = ctx.in_place(base, OPS.cg_direction_.default, ref_krylov.cg_direction_, (0, 3, 4))
            rel("p", got[0], want[0], rtol("transform", dtype, n))
            eq("rz", got[1], want[1])
            eq("status", got[2], want[2])


@smoke("csr_matvec")
def _csr_matvec(ctx):
    # dtype, m, n, S, density (nnz > 8 m: the CUDA warp kernel), layout of x
    cases = [(F64, 50, 40, 1, 0.15, "rows"), (F32, 50, 40, 3, 0.15, "interleaved"), (F64, 13, 40, 29, 0.6, "rows"),
             (F32, 13, 40, 4, 0.6, "interleaved"), (F32, 1, 1, 1, 1.0, "rows"), (F64, 7, 3, 8, 0.5, "interleaved")]
    for i, (dtype, m, n, S, density, layout) in enumerate(cases):
        with ctx.case(f"{_dt(dtype)} A({m},{n}) density {density} S {S} x {layout}"):
            g = _g(1200 + i)
            D = _randn(g, m, n)
            D[torch.rand(m, n, generator=g, dtype=F64) >= density] = 0.0
            if m > 1:
                D[min(2, m - 1)] = 0.0  # an empty row
            crow, col, val = _dense_to_csr(D)
            val = val.to(dtype)
            xb = _randn(g, n, S, dtype=dtype) if layout == "interleaved" else _randn(g, S, n, dtype=dtype)

            def build(dev, crow=crow, col=col, val=val, xb=xb, layout=layout, m=m):
                x = _dev(xb, dev)
                return _dev(crow, dev), _dev(col, dev), _dev(val, dev), x.mT if layout == "interleaved" else x, m

            got, want = ctx.both(build, lambda a: OPS.csr_matvec.default(*a), lambda a: ref_krylov.csr_matvec(*a))
            maxrel("y", got, want, rtol("transform", dtype, n))


def _cg_x_tol(dtype):
    return 1e-2 if dtype == F32 else 1e-6  # tests/test_cg.py: native against the reference loop


@smoke("cg_dense")
def _cg_dense(ctx):
    # dtype, S, n, G matrices, Jacobi, x0, maxiter, system with b = 0
    cases = [(F64, 1, 1, 1, False, "zero", 50, None), (F32, 5, 7, 5, False, "zero", 200, None),
             (F64, 6, 33, 2, True, "zero", 200, None),
             (F32, 4, 12, 1, True, "random", 200, None),  # n % 4 == 0: the 16-byte CUDA loads
             (F64, 3, 10, 3, False, "zero", 200, 1), (F64, 4, 13, 1, False, "random", 0, None)]
    for i, (dtype, S, n, G, precond, x0k, maxiter, zero_b) in enumerate(cases):
        with ctx.case(f"{_dt(dtype)} S {S} n {n} G {G}{' jacobi' if precond else ''} x0 {x0k} maxiter {maxiter}"
                      f"{' b[%d]=0' % zero_b if zero_b is not None else ''}"):
            g = _g(1300 + i)
            A = _spd(g, (G,), n, torch.logspace(0, 2, G, dtype=F64)).to(dtype)
            b = _randn(g, S, n, dtype=dtype)
            if zero_b is not None:
                b[zero_b] = 0.0
            x0 = torch.zeros_like(b) if x0k == "zero" else 0.1 * _randn(g, S, n, dtype=dtype)
            minv = (1.0 / torch.diagonal(A, dim1=-2, dim2=-1)).repeat_interleave(S // G, 0) if precond else None
            tol = 1e-4 * torch.linalg.vector_norm(b, dim=-1)

            def build(dev, A=A, b=b, x0=x0, minv=minv, tol=tol, maxiter=maxiter):
                return _dev(A, dev), _dev(b, dev), _dev(x0, dev), _dev(minv, dev), _dev(tol, dev), maxiter

            got, want = ctx.both(build, lambda a: OPS.cg_dense.default(*a), lambda a: ref_krylov.cg_dense(*a))
            x, it, res, st = got
            eq("status", st, want[3])
            ints_near("iterations", it, want[1], 1)
            rel("x", x, want[0], _cg_x_tol(dtype))
            conv = st.cpu() == ref_krylov.CG_CONVERGED
            require(bool((res.cpu()[conv] <= tol[conv] * (1 + 1e-6)).all()),
                    f"residual norm above tol for a converged system: {res.cpu().tolist()} vs {tol.tolist()}")
            if maxiter == 0:
                eq("x (maxiter 0)", x, x0)
                require(bool((it.cpu() == 0).all()) and bool((st.cpu() == ref_krylov.CG_RUNNING).all()),
                        f"maxiter 0: iterations {it.cpu().tolist()}, status {st.cpu().tolist()}")


@smoke("cg_csr")
def _cg_csr(ctx):
    # dtype, 2-D Poisson grid side (n = side^2), S, Jacobi, x0, maxiter, system with b = 0
    cases = [(F64, 5, 3, False, "zero", 300, 1), (F32, 5, 3, True, "zero", 300, None),
             (F64, 1, 1, False, "zero", 10, None), (F32, 7, 2, False, "random", 300, None),
             (F64, 4, 2, True, "zero", 3, None)]  # stops at maxiter
    for i, (dtype, mg, S, precond, x0k, maxiter, zero_b) in enumerate(cases):
        n = mg * mg
        with ctx.case(f"{_dt(dtype)} poisson2d n {n} S {S}{' jacobi' if precond else ''} x0 {x0k} maxiter {maxiter}"
                      f"{' b[%d]=0' % zero_b if zero_b is not None else ''}"):
            g = _g(1400 + i)
            P = _poisson2d(mg)
            crow, col, val = _dense_to_csr(P)
            val = val.to(dtype)
            b = _randn(g, S, n, dtype=dtype)
            if zero_b is not None:
                b[zero_b] = 0.0
            x0 = torch.zeros_like(b) if x0k == "zero" else 0.1 * _randn(g, S, n, dtype=dtype)
            minv = (1.0 / torch.diagonal(P)).to(dtype).expand(S, n).contiguous() if precond else None
            tol = (1e-4 if dtype == F32 else 1e-10) * torch.linalg.vector_norm(b, dim=-1)

            def build(dev, crow=crow, col=col, val=val, b=b, x0=x0, minv=minv, tol=tol, maxiter=maxiter):
                return (_dev(crow, dev), _dev(col, dev), _dev(val, dev), _dev(b, dev), _dev(x0, dev), _dev(minv, dev),
                        _dev(tol, dev), maxiter)

            got, want = ctx.both(build, lambda a: OPS.cg_csr.default(*a), lambda a: ref_krylov.cg_csr(*a))
            eq("status", got[3], want[3])
            ints_near("iterations", got[1], want[1], 0 if maxiter < 10 else 1)
            rel("x", got[0], want[0], _cg_x_tol(dtype))


@smoke("lanczos_expand_")
def _lanczos_expand_(ctx):
    # dtype, operator, n, p, rows, spectrum, split (two calls: j0 > 0 in the second)
    cases = [(F64, "dense", 37, 1, 12, "cubic", False), (F32, "csr", 37, 2, 12, "cubic", False),
             (F64, "csr", 45, 3, 15, "cubic", True),
             (F32, "dense", 21, 2, 12, "three", False),  # three eigenvalues: breakdowns, Philox directions
             (F64, "csr", 21, 2, 12, "three", False)]
    for i, (dtype, layout, n, p, rows, spec, split) in enumerate(cases):
        with ctx.case(f"{_dt(dtype)} {layout} n {n} p {p} rows {rows} {spec}{' split' if split else ''}"):
            g = _g(1500 + i)
            if spec == "cubic":
                evals = torch.linspace(-2.0, 5.0, n, dtype=F64) ** 3
                thresh, seed, draws = 1e-6, 7, 0
            else:
                evals = torch.tensor([3.0, 2.0, 1.0], dtype=F64).repeat_interleave(n // 3)
                thresh, seed, draws = 10 * 4 * _eps(dtype), 5, 3
            A = _spectrum_matrix(g, evals).to(dtype)
            mats = (A.contiguous(), None, None, None) if layout == "dense" else (None, *_dense_to_csr(A))
            V0 = torch.zeros(rows, n, dtype=dtype)
            V0[:p] = _orthonormal(g, n, p).mT.to(dtype)
            stop = rows - p

            def build(dev, V0=V0, mats=mats, rows=rows):
                H = torch.zeros(rows, rows, dtype=V0.dtype, device=dev)
                return [_dev(V0, dev), H] + [_dev(t, dev) for t in mats]

            def runner(op):
                def run(a, p=p, stop=stop, thresh=thresh, seed=seed, draws=draws, split=split):
                    V, H = a[0], a[1]
                    j, d = 0, draws
                    if split:
                        j, _, d = op(V, H, *a[2:], p, 0, 2 * p, thresh, seed, d).tolist()
                    out = op(V, H, *a[2:], p, j, stop, thresh, seed, d)
                    return out, V, H
                return run

            got, want = ctx.both(build, runner(OPS.lanczos_expand_.default), runner(ref_lanczos.lanczos_expand_))
            out, V, H = got
            eq("[j, status, draws]", out.cpu(), want[0].cpu())
            m, status, d_out = out.tolist()
            require(status == 0 and stop - p < m <= stop, f"[j, status, draws] = {out.tolist()}")
            if spec == "three":
                require(d_out > draws, f"no breakdown direction drawn: [j, status, draws] = {out.tolist()}")
            k = 2 * p  # the first block steps agree to rounding (Lanczos amplifies differences later)
            close("V[:2p]", V[:k], want[1][:k], 0.0, rtol("eig", dtype, n) * 1e2)
            normA = float(torch.linalg.matrix_norm(A.double(), 2))
            close("H[:2p, :p]", H[:k, :p], want[2][:k, :p], 0.0, rtol("eig", dtype, n) * 1e2 * normA)
            # the Lanczos relation A V[:m]^T = V[:m+p]^T H[:m+p, :m] and orthonormality
            A64, V64, H64 = A.double(), V[:m + p].double().cpu(), H[:m + p, :m].double().cpu()
            err = float((A64 @ V64[:m].mT - V64.mT @ H64).abs().max()) / normA
            orth = float((V64 @ V64.mT - torch.eye(m + p, dtype=F64)).abs().max())
            e_tol, o_tol = rtol("eig", dtype, n) * 10, rtol("orth", dtype, n) * 10
            require(err <= e_tol, f"Lanczos relation error {err:.3g} > {e_tol:.3g}")
            require(orth <= o_tol, f"orthonormality error {orth:.3g} > {o_tol:.3g}")


# ----------------------------------------------------------------------------- SPM
def _spm_inputs(g, d, R, B, dtype):
    D = d * (d + 1) // 2
    V = _orthonormal(g, D, R) if D >= R else _randn(g, D, R)
    X = torch.nn.functional.normalize(_randn(g, B, d), dim=-1)
    return V.to(dtype), X.to(dtype)


def _to(ts, dtype):
    return tuple(t.to(dtype) if t.is_floating_point() else t for t in ts)


@smoke("spm_contract")
def _spm_contract(ctx):
    cases = [(F64, 9, 7, 5), (F32, 9, 7, 5), (F64, 1, 1, 1), (F32, 4, 10, 3), (F64, 6, 2, 1), (F32, 17, 3, 2)]
    for i, (dtype, d, R, B) in enumerate(cases):
        with ctx.case(f"{_dt(dtype)} d {d} R {R} B {B}"):
            V, X = _spm_inputs(_g(1600 + i), d, R, B, dtype)

            def build(dev, V=V, X=X):
                return _dev(V, dev), _dev(X, dev)

            got, want = ctx.both(build, lambda a: OPS.spm_contract.default(*a),
                                 lambda a: _to(ref_spm.contract(a[0].double(), a[1].double()), dtype))
            tol = rtol("small_dense", dtype, d * R)
            close("alpha", got[0], want[0], tol, tol)
            close("grad", got[1], want[1], tol, tol)


@smoke("spm_power")
def _spm_power(ctx):
    cases = [(F64, 9, 7, 5), (F32, 9, 7, 5), (F64, 3, 2, 1), (F32, 5, 11, 2)]
    for i, (dtype, d, R, B) in enumerate(cases):
        with ctx.case(f"{_dt(dtype)} d {d} R {R} B {B} 6 steps"):
            V, X = _spm_inputs(_g(1700 + i), d, R, B, dtype)
            cn = math.sqrt(0.5)

            def build(dev, V=V, X=X):
                return _dev(V, dev), _dev(X, dev), 6, 0.0, cn

            got, want = ctx.both(build, lambda a: OPS.spm_power.default(*a),
                                 lambda a: _to(ref_spm.power(a[0].double(), a[1].double(), *a[2:]), dtype))
            tol = 10 * rtol("small_dense", dtype, d * R)
            eq("iterations", got[2], want[2])
            close("X", got[0], want[0], tol, tol)
            close("F", got[1], want[1], tol, tol)


SPM_CASES = _tests_module("_spm_cases")  # planted CP tensors, spm_extract's inputs (shared with tests/test_spm.py)


@smoke("spm_extract")
def _spm_extract(ctx):
    # dtype, order, d, r, seed. float32: planted instances whose weights are well conditioned
    # in float32 (some seeds give instances where the float32 reference and the native kernel
    # both sit ~1e-3 from the float64 answer: the problem's sensitivity, not a kernel's error)
    cases = [(F64, 4, 5, 6, 1800), (F64, 3, 6, 4, 1801), (F64, 3, 1, 1, 1802), (F32, 4, 4, 3, 3000),
             (F32, 3, 5, 3, 1804)]
    for dtype, order, d, r, seed in cases:
        with ctx.case(f"{_dt(dtype)} order {order} d {d} r {r} seed {seed}"):
            args, _ = SPM_CASES.extract_inputs(order, d, r, dtype, "cpu", _g(seed))
            tens, rest = args[:5], args[5:]

            def build(dev, tens=tens, rest=rest):
                return [_dev(t, dev) for t in tens] + rest

            got, want = ctx.both(build, lambda a: OPS.spm_extract.default(*a), lambda a: ref_spm.extract(*a))
            tol = rtol("tensor", dtype, d * r)
            for name, a, b in zip(("weights", "factors", "best F"), got, want):
                close(name, a, b, tol, tol)


@smoke("spm_cp3")
def _spm_cp3(ctx):
    cases = [(F64, 6, 4, 0), (F32, 5, 5, 5), (F64, 1, 1, 0), (F32, 7, 3, 0)]
    for i, (dtype, d, r, rank) in enumerate(cases):
        with ctx.case(f"{_dt(dtype)} d {d} planted rank {r} rank arg {rank}"):
            T = SPM_CASES.planted(d, r, 3, _g(1900 + i), dtype)[0]

            def args(T, rank):
                return (T, rank, 3, 5000, 64 * _eps(T.dtype), math.sqrt(0.5), 1e-2, 1234)

            def build(dev, T=T):
                return _dev(T, dev)

            def reference(T, r=r):  # the pure-torch steps in float64 at the rank found (tests/test_spm.py)
                w, F, sig, info = ref_spm.cp3(*args(T.double(), r))
                return w.to(dtype), F.to(dtype), sig.to(dtype), info

            got, want = ctx.both(build, lambda T, rank=rank: OPS.spm_cp3.default(*args(T, rank)), reference)
            w, F, sig, info = got
            require(info.dtype == F64 and _shape(info) == (8,), f"info {info.dtype} {_shape(info)}")
            require(info[7].item() == 0 and info[4].item() == r, f"info (status {info[7].item()}, R {info[4].item()}) "
                                                                 f"expected status 0, R {r}: {info.tolist()}")
            if not ctx.on_cpu:
                eq("info[4:6] (R, numerical rank)", info[4:6].cpu(), want[3][4:6].cpu())
            tol = 100 * rtol("tensor", dtype, d * r)
            close("singular values", sig, want[2], tol, tol * float(want[2][0]))
            close("weights[:R]", w[:r], want[0][:r], tol, tol)
            close("factors[:, :R]", F[:, :r], want[1][:, :r], tol, tol)
            require(bool((w[r:] == 0).all()) and bool((F[:, r:] == 0).all()), "entries beyond R not zero")


# ----------------------------------------------------------------------------- small dense
@smoke("cholesky_small")
def _cholesky_small(ctx):
    # dtype, batch, n, special
    cases = [(F64, (), 1, None), (F32, (3,), 5, "upper garbage"), (F64, (2, 2), 7, None), (F32, (1,), 32, None),
             (F64, (64,), 37, None),  # batch >= 64 keeps the native CUDA kernel for n > 32
             (F32, (17,), 6, None), (F64, (4,), 6, "breakdown"), (F32, (5,), 4, "nan")]
    for i, (dtype, batch, n, special) in enumerate(cases):
        with ctx.case(f"{_dt(dtype)} batch {batch} n {n}{' ' + special if special else ''}"):
            A = _spd(_g(2000 + i), batch, n, 10.0).to(dtype)
            if special == "upper garbage":  # the lower triangle is read
                A = A.tril() + 100.0 * torch.triu(torch.ones(n, n, dtype=dtype), 1)
            elif special == "breakdown":
                A[1, 3, 3] = -1.0
                A[2] = 0.0
            elif special == "nan":
                A[3, 2, 2] = float("nan")

            def build(dev, A=A):
                return (_dev(A, dev),)

            got, want = ctx.both(build, lambda a: OPS.cholesky_small.default(*a),
                                 lambda a: ref_small.cholesky_small(*a))
            L, info = got
            keep = ...  # every matrix
            if special == "nan":  # the contract: flagged at the pivot, zero rows from it, nothing non-finite
                require(int(info[3]) == 3 and bool(torch.isfinite(L).all()) and bool((L[3, 2:] == 0).all()),
                        f"NaN pivot: info {info.cpu().tolist()}, L[3] finite {bool(torch.isfinite(L[3]).all())}")
                if ctx.on_cpu:  # LAPACK's flag for a NaN pivot is not the contract's
                    keep = [0, 1, 2, 4]
            eq("info", info.cpu()[keep], want[1][keep])
            rel("L", L.cpu()[keep], want[0][keep], rtol("small_dense", dtype, n) * 10, per_matrix=True)


@smoke("tril_inverse_small")
def _tril_inverse_small(ctx):
    cases = [(F64, (), 1, None), (F32, (3,), 9, None), (F64, (2, 2), 5, None), (F32, (1,), 32, None),
             (F64, (64,), 37, None), (F32, (9,), 4, "upper garbage"), (F64, (3,), 4, "zero diagonal")]
    for i, (dtype, batch, n, special) in enumerate(cases):
        with ctx.case(f"{_dt(dtype)} batch {batch} n {n}{' ' + special if special else ''}"):
            if special == "zero diagonal":
                L = torch.eye(4, dtype=dtype).repeat(3, 1, 1)
                L[:, 3, 0] = 2.0
                L[1, 2, 2] = 0.0
                L[-1, 1, 1] = float("inf")
            else:
                L = torch.linalg.cholesky(_spd(_g(2100 + i), batch, n, 10.0)).to(dtype)
                if special == "upper garbage":  # the lower triangle is read
                    L = L + 100.0 * torch.triu(torch.ones(n, n, dtype=dtype), 1)

            def build(dev, L=L):
                return (_dev(L, dev),)

            got, want = ctx.both(build, lambda a: OPS.tril_inverse_small.default(*a),
                                 lambda a: ref_small.tril_inverse_small(*a))
            eq("info", got[1], want[1])
            if special == "zero diagonal":
                require(got[1].cpu().tolist() == [0, 3, 2], f"info {got[1].cpu().tolist()} != [0, 3, 2]")
            rel("X", got[0], want[0], rtol("small_dense", dtype, n) * 10, per_matrix=True)


def _align_columns(V, Vref):
    """V with each column's sign flipped towards Vref's (eigen/singular vectors are up to sign)."""
    s = torch.sign((V * Vref).sum(-2, keepdim=True))
    return V * torch.where(s == 0, torch.ones_like(s), s), s


@smoke("eigh_jacobi")
def _eigh_jacobi(ctx):
    cases = [(F64, (), 1), (F32, (5,), 2), (F64, (3,), 7), (F32, (2, 2), 13), (F64, (17,), 6), (F32, (1,), 33)]
    for i, (dtype, batch, n) in enumerate(cases):
        with ctx.case(f"{_dt(dtype)} batch {batch} n {n}"):
            g = _g(2200 + i)
            w0 = 3.0 * (torch.linspace(-1, 1, n, dtype=F64) if n > 1 else torch.tensor([0.7], dtype=F64))
            Q = _orthonormal(g, *batch, n, n)
            A = ((Q * w0) @ Q.mT)
            A = ((A + A.mT) / 2).to(dtype)

            def build(dev, A=A):
                return _dev(A, dev), 30

            got, want = ctx.both(build, lambda a: OPS.eigh_jacobi.default(*a), lambda a: ref_small.eigh_jacobi(*a))
            w, V, info = got
            eq("info", info, want[2])
            tol = rtol("small_dense", dtype, n)
            close("eigenvalues", w, want[0], 0.0, tol * 3.0)
            gap = 6.0 / (n - 1) if n > 1 else 3.0  # |A| = 3
            Va, _ = _align_columns(V.cpu(), want[1])
            close("eigenvectors (up to sign)", Va, want[1], 0.0, tol * 3.0 / gap)


@smoke("svd_jacobi")
def _svd_jacobi(ctx):
    cases = [(F64, (), 1, 1), (F32, (4,), 8, 8), (F64, (3,), 21, 5), (F32, (2,), 9, 7), (F64, (17,), 10, 6),
             (F32, (1,), 40, 33)]
    for i, (dtype, batch, m, n) in enumerate(cases):
        with ctx.case(f"{_dt(dtype)} batch {batch} ({m},{n})"):
            g = _g(2300 + i)
            s0 = torch.linspace(2, 1, n, dtype=F64) if n > 1 else torch.tensor([1.5], dtype=F64)
            A = ((_orthonormal(g, *batch, m, n) * s0) @ _orthonormal(g, *batch, n, n).mT).to(dtype)

            def build(dev, A=A):
                return _dev(A, dev), 30

            got, want = ctx.both(build, lambda a: OPS.svd_jacobi.default(*a), lambda a: ref_small.svd_jacobi(*a))
            U, S, Vh, info = got
            eq("info", info, want[3])
            tol = rtol("small_dense", dtype, max(m, n))
            close("singular values", S, want[1], 0.0, tol * 2.0)
            gap = 1.0 / (n - 1) if n > 1 else 1.5
            Va, s = _align_columns(Vh.cpu().mT, want[2].mT)
            close("Vh (up to sign)", Va.mT, want[2], 0.0, tol * 2.0 / gap)
            close("U (up to sign)", U.cpu() * torch.where(s == 0, torch.ones_like(s), s), want[0], 0.0, tol * 2.0 / gap)


COND = 10.0  # condition number of the cholqr_panel test panels


def _panels(g, B, m, k, dtype, layout):
    """(B, m, k) with singular values logspaced in [1/COND, 1] (tests/test_cholqr_panel.py)."""
    U = _orthonormal(g, B, m + 5, k)
    V = _orthonormal(g, B, k, k)
    s = torch.logspace(0, -math.log10(COND), k, dtype=F64)
    Y = ((U * s) @ V.mT).to(dtype)  # (B, m + 5, k)
    return Y, layout


def _panel_view(Y, m, layout):
    if layout == "slice":  # column-major rows of a taller block (column stride > m)
        return Y.mT.contiguous().mT[:, 2:m + 2, :]
    Y = Y[:, :m, :]
    return Y.contiguous() if layout == "row" else Y.mT.contiguous().mT


@smoke("cholqr_panel")
def _cholqr_panel(ctx):
    # dtype, B, m, k, layout, special ("failures": a zero panel and a NaN; "gate 0": every second pass fails)
    shapes = [(F64, 1, 7, 3, "col", None), (F32, 3, 41, 7, "row", None), (F64, 5, 33, 1, "col", None),
              (F32, 2, 50, 13, "slice", None), (F64, 4, 9, 9, "row", None), (F32, 5, 40, 5, "col", "failures"),
              (F64, 3, 30, 4, "col", "gate 0")]
    for i, (dtype, B, m, k, layout, special) in enumerate(shapes):
        Yb, _ = _panels(_g(2400 + i), B, m, k, dtype, layout)
        if special == "failures":
            Yb[1] = 0.0
            Yb[2, 7, 3] = float("nan")
        gate = 0.0 if special == "gate 0" else 0.5
        for mode in ((1, 2) if special == "gate 0" else (0, 1, 2)):
            with ctx.case(f"{_dt(dtype)} ({B},{m},{k}) {layout} mode {mode}{' ' + special if special else ''}"):
                cond_max = 1.0 / math.sqrt(_eps(dtype) / 2)

                def build(dev, Yb=Yb, m=m, layout=layout, mode=mode, cond_max=cond_max, gate=gate):
                    return _panel_view(_dev(Yb, dev), m, layout), mode, cond_max, gate

                got, want = ctx.both(build, lambda a: OPS.cholqr_panel.default(*a),
                                     lambda a: ref_cholqr.cholqr_panel(*a))
                eq("info", got[3], want[3])
                if special == "failures":
                    info = got[3].cpu().tolist()
                    require(info == [0, 1, 1, 0, 0], f"info {info} != [0, 1, 1, 0, 0]")
                if special == "gate 0":
                    require(got[3].cpu().tolist() == [2] * B, f"info {got[3].cpu().tolist()} != {[2] * B}")
                tol = rtol("orth", dtype, k) * COND ** 2
                for name, a, b in zip("QLX", got[:3], want[:3]):
                    rel(name, a, b, tol, per_matrix=True)


# ----------------------------------------------------------------------------- main
def _parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="cuda (compared with the CPU kernels) or cpu (compared with the pure-torch references)")
    p.add_argument("--only", default=None, help="comma-separated op names")
    p.add_argument("--list", action="store_true", help="list the ops and exit")
    p.add_argument("-v", "--verbose", action="store_true", help="one line per passing case too")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = _parse(argv)
    ops = registered_ops()
    known = sorted(set(ops) | set(SMOKES))
    if args.list:
        for name in known:
            notes = ("" if name in SMOKES else "  (no smoke case)") + ("" if name in ops else "  (not a registered op)")
            print(name + notes)
        return 0
    selected = known
    if args.only:
        selected = [s.strip() for s in args.only.split(",") if s.strip()]
        unknown = [s for s in selected if s not in known]
        if unknown:
            print(f"unknown op(s): {', '.join(unknown)} (see --list)", file=sys.stderr)
            return 2
    if not _native.available():
        print(f"ERROR: the native extension did not import: {_native.import_error()}", file=sys.stderr)
        return 2
    try:
        device = torch.device(args.device)
    except RuntimeError as exc:
        print(f"bad --device {args.device!r}: {exc}", file=sys.stderr)
        return 2
    if device.type not in ("cpu", "cuda"):
        print(f"--device must be cuda or cpu, got {args.device!r}", file=sys.stderr)
        return 2
    if device.type == "cuda":
        if not torch.cuda.is_available():
            print("ERROR: --device cuda but torch.cuda.is_available() is False", file=sys.stderr)
            return 2
        if not _native.has_cuda():
            print("ERROR: --device cuda but this build of subspace_linalg has no CUDA kernels", file=sys.stderr)
            return 2
        name = torch.cuda.get_device_name(device)
    else:
        name = f"{torch.get_num_threads()} threads"
    truth = "the pure-torch references" if device.type == "cpu" else "the CPU native kernels"
    print(f"# cuda_smoke: {len(selected)} ops on {device} ({name}), torch {torch.__version__}, "
          f"against {truth}; tolerances from {RTOL_SOURCE}", flush=True)
    t_all = time.perf_counter()
    try:  # the dispatcher's first call costs ~1 s: not charged to the first op's time
        OPS.transpose_copy.default(torch.zeros(2, 3, device=device)).cpu()
    except Exception:  # noqa: BLE001 - transpose_copy reports it in its own line
        pass
    n_pass = n_cases = 0
    bad = []
    for op in selected:
        if op not in SMOKES:
            print(f"FAIL {op}: no smoke case in scripts/cuda_smoke.py", flush=True)
            bad.append(op)
            continue
        ctx = Ctx(device, args.verbose)
        t0 = time.perf_counter()
        try:
            SMOKES[op](ctx)
        except Exception as exc:  # noqa: BLE001 - outside a case: the op's own setup
            ctx.errors.append(f"[setup] {type(exc).__name__}: {_oneline(exc)}")
        dt = time.perf_counter() - t0
        n_cases += ctx.cases
        if ctx.fails:
            more = len(ctx.fails) - 1 + len(ctx.errors)
            print(f"FAIL {op}: {ctx.fails[0]}" + (f" (+{more} more failing cases)" if more else ""), flush=True)
            bad.append(op)
        elif ctx.errors:
            more = len(ctx.errors) - 1
            print(f"ERROR {op}: {ctx.errors[0]}" + (f" (+{more} more failing cases)" if more else ""), flush=True)
            bad.append(op)
        else:
            print(f"PASS {op} ({ctx.cases} cases, {dt:.2f} s)", flush=True)
            n_pass += 1
        if args.verbose:
            for line in ctx.fails[1:] + ctx.errors[(0 if ctx.fails else 1):]:
                print(f"    {line}", flush=True)
    print(f"SUMMARY {device}: {n_pass} of {len(selected)} ops passed ({n_cases} cases, "
          f"{time.perf_counter() - t_all:.1f} s)" + (f"; failed: {', '.join(bad)}" if bad else ""), flush=True)
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
