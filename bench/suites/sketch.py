"""Structured projections: fused gather/scatter vs torch indexing, sparse-sign and SRHT
sketches vs a dense Gaussian sketch GEMM of the same size, Fastfood vs a dense random
projection (time and memory), DCT column selection vs the SVD it replaces."""
from __future__ import annotations

import torch

import subspace_linalg as sl

from ..spec import Case, Peer

SUITE = "sketch"


def _dt(dtype) -> str:
    return str(dtype).replace("torch.", "")


def _esize(dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def _randn(shape, seed, dtype, device):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float32).to(dtype=dtype, device=device)


def _exact(inp, y) -> float:
    """0 when bitwise equal to the torch reference, else the relative error."""
    ref = inp["ref"]
    if torch.equal(y, ref):
        return 0.0
    return float((y.double() - ref.double()).norm() / max(float(ref.double().norm()), 1e-300))


def _gather_case(m, n, k, dtype, device, scaled: bool = False) -> Case:
    def setup():
        G = _randn((m, n), 1, dtype, device)
        idx = torch.sort(torch.randperm(m, generator=torch.Generator().manual_seed(2))[:k]).values.to(device)
        s = _randn((k,), 5, dtype, device) if scaled else None
        ref = G.index_select(0, idx)
        return {"G": G, "idx": idx, "s": s, "ref": ref * s[:, None] if scaled else ref}

    def peer(i):
        R = i["G"].index_select(0, i["idx"])
        return R * i["s"][:, None] if scaled else R

    name = f"gather_rows{' scaled' if scaled else ''} {k} of {m}x{n} {_dt(dtype)}"
    return Case(SUITE, name, setup, lambda i: sl.gather_rows(i["G"], i["idx"], scale=i["s"]), _exact, 0.0,
                [Peer("torch index_select" + (" * s (Grass's P G)" if scaled else ""), peer),
                 Peer("torch indexing G[idx]" + (" * s" if scaled else ""),
                      lambda i: i["G"][i["idx"]] * i["s"][:, None] if scaled else i["G"][i["idx"]])],
                bytes_moved=2 * k * n * _esize(dtype), params={"m": m, "n": n, "k": k, "dtype": _dt(dtype)})


def _scatter_case(m, n, k, dtype, device, scaled: bool) -> Case:
    def setup():
        X = _randn((k, n), 3, dtype, device)
        idx = torch.sort(torch.randperm(m, generator=torch.Generator().manual_seed(4))[:k]).values.to(device)
        s = _randn((k,), 5, dtype, device) if scaled else None
        src = X * s[:, None] if scaled else X
        ref = torch.zeros(m, n, dtype=dtype, device=device).index_add_(0, idx, src)
        return {"X": X, "idx": idx, "s": s, "ref": ref}

    def peer(i):
        src = i["X"] * i["s"][:, None] if scaled else i["X"]
        return torch.zeros(m, n, dtype=dtype, device=device).index_add_(0, i["idx"], src)

    name = f"scatter_rows{' scaled' if scaled else ''} {k}x{n} -> {m} rows {_dt(dtype)}"
    return Case(SUITE, name, setup, lambda i: sl.scatter_rows(i["X"], i["idx"], m, scale=i["s"]), _exact, 0.0,
                [Peer("torch zeros + index_add_" + (" (X * s)" if scaled else ""), peer)],
                bytes_moved=(m * n + 2 * k * n) * _esize(dtype), params={"m": m, "n": n, "k": k, "dtype": _dt(dtype)})


def _sketch_case(kind, m, n, size, dtype, device) -> Case:
    def setup():
        A = _randn((m, n), 6, dtype, device)
        op = sl.SketchOperator(n, size, kind=kind, seed=1234)
        op(A)  # build the cached codes / signs once (the reusable operator)
        Om_gauss = sl.SketchOperator(n, size, kind="gaussian", seed=99)._dense(dtype, A.device)
        return {"A": A, "op": op, "Om": Om_gauss}

    def check(inp, y):
        # against the explicit Omega of the same seed, in float64
        Om = inp["op"].matrix(dtype=torch.float64, device=inp["A"].device)
        ref = inp["A"].double() @ Om
        return float((y.double() - ref).norm() / ref.norm())

    tol = 1e-5 if dtype == torch.float32 else (1e-12 if dtype == torch.float64 else 2e-2)
    return Case(SUITE, f"sketch {kind} {m}x{n} -> {size} {_dt(dtype)}", setup, lambda i: i["op"](i["A"]), check,
                tol, [Peer("dense Gaussian sketch A @ Omega (torch GEMM)", lambda i: i["A"] @ i["Om"], check=False)],
                bytes_moved=(m * n + m * size) * _esize(dtype),
                params={"m": m, "n": n, "size": size, "kind": kind, "dtype": _dt(dtype)})


def _fresh_sketch_case(m, n, size, dtype, device) -> Case:
    """A fresh Gaussian sketch per call (GaLore-style: a new projection each refresh): the
    embedding generated (counter-based, native) and applied, against torch drawing
    torch.randn and multiplying."""
    from subspace_linalg.sketching import draw_seed

    def setup():
        return {"A": _randn((m, n), 6, dtype, device)}

    def ours(inp):
        return sl.sketch(inp["A"], size, kind="gaussian", generator=torch.Generator(device=device).manual_seed(5))

    def check(inp, y):
        seed = draw_seed(torch.Generator(device=device).manual_seed(5))
        Om = sl.SketchOperator(n, size, kind="gaussian", seed=seed).matrix(dtype=torch.float64, device=inp["A"].device)
        ref = inp["A"].double() @ Om
        return float((y.double() - ref).norm() / ref.norm())

    def peer(inp):
        g = torch.Generator(device=device).manual_seed(5)
        return inp["A"] @ (torch.randn(n, size, generator=g, dtype=inp["A"].dtype, device=device) / size ** 0.5)

    tol = 1e-5 if dtype == torch.float32 else (1e-12 if dtype == torch.float64 else 2e-2)
    return Case(SUITE, f"sketch gaussian fresh {m}x{n} -> {size} {_dt(dtype)}", setup, ours, check, tol,
                [Peer("torch.randn + A @ Omega (torch GEMM)", peer, check=False)],
                params={"m": m, "n": n, "size": size, "kind": "gaussian", "fresh": True, "dtype": _dt(dtype)},
                note="the embedding drawn in every call (sl.sketch with a generator), generation included")


def _fastfood_case(batch, d, D, dtype, device) -> Case:
    def setup():
        x = _randn((batch, d), 7, dtype, device)
        V = sl.FastfoodMap(d, D, seed=5)
        V(x)
        R = _randn((d, D), 8, dtype, device) / D ** 0.5
        return {"x": x, "V": V, "R": R}

    def check(inp, y):
        # isometry on average: | mean ||y||^2 / ||x||^2 - 1 |
        r = y.double().pow(2).sum(-1) / inp["x"].double().pow(2).sum(-1)
        return abs(float(r.mean()) - 1.0)

    ours_mem = 5 * D * 8  # signs, perm, inverse perm, g, coef per output (O(D))
    dense_mem = d * D * _esize(dtype)
    return Case(SUITE, f"fastfood {batch}x{d} -> {D} {_dt(dtype)}", setup, lambda i: i["V"](i["x"]), check, 0.1,
                [Peer("dense random projection x @ R (d x D)", lambda i: i["x"] @ i["R"])],
                params={"batch": batch, "d": d, "D": D, "dtype": _dt(dtype), "param_bytes_ours": ours_mem,
                        "param_bytes_dense": dense_mem},
                note=f"memory: ours {ours_mem / 2**20:.2f} MiB of parameters vs dense {dense_mem / 2**20:.1f} MiB")


def _dct_select_case(m, n, r, dtype, device) -> Case:
    def setup():
        G = _randn((m, n), 9, dtype, device)
        M = sl.dct_matrix(n, dtype=dtype, device=device)
        S = (G.double() @ M.double()).abs().sum(0)
        return {"G": G, "M": M, "ref_scores": S}

    def check(inp, idx):
        # the selected columns capture the top-r alignment (score mass vs the exact top r)
        S = inp["ref_scores"]
        best = torch.topk(S, r).values.sum()
        return float((best - S[idx.cpu()].sum()) / best)

    def dense(i):
        return torch.sort(torch.topk((i["G"] @ i["M"]).abs().sum(0), r).indices).values

    def svd(i):
        U, S, Vh = torch.linalg.svd(i["G"].float(), full_matrices=False)
        return Vh[:r]

    tol = 1e-6 if dtype == torch.float32 else 1e-12
    return Case(SUITE, f"dct column selection r={r} of {m}x{n} {_dt(dtype)}", setup,
                lambda i: sl.select_columns_by_alignment(i["G"], None, r), check, tol,
                [Peer("torch dense G @ DCT + l1 topk", dense),
                 Peer("torch.linalg.svd top-r (the SVD it replaces)", svd, check=False)],
                params={"m": m, "n": n, "r": r, "dtype": _dt(dtype)})


def cases(device: str, dtype: torch.dtype, quick: bool) -> list[Case]:
    if quick:
        return [
            _gather_case(4096, 2048, 512, dtype, device),
            _scatter_case(4096, 2048, 512, dtype, device, False),
            _scatter_case(4096, 2048, 512, dtype, device, True),
            _sketch_case("sparse_sign", 1024, 4096, 256, dtype, device),
            _sketch_case("srht", 1024, 4096, 256, dtype, device),
            _fresh_sketch_case(1024, 4096, 256, dtype, device),
            _fastfood_case(64, 1024, 8192, dtype, device),
            _dct_select_case(512, 512, 32, dtype, device),
        ]
    return [
        _gather_case(4096, 4096, 512, dtype, device),
        _gather_case(11008, 4096, 1024, dtype, device),
        _gather_case(11008, 4096, 1024, dtype, device, scaled=True),
        _scatter_case(4096, 4096, 512, dtype, device, False),
        _scatter_case(4096, 4096, 512, dtype, device, True),
        _scatter_case(11008, 4096, 1024, dtype, device, True),
        _sketch_case("sparse_sign", 4096, 4096, 256, dtype, device),
        _sketch_case("srht", 4096, 4096, 256, dtype, device),
        _sketch_case("sparse_sign", 2048, 16384, 512, dtype, device),
        _sketch_case("srht", 2048, 16384, 512, dtype, device),
        _fresh_sketch_case(4096, 4096, 256, dtype, device),
        _fastfood_case(64, 4096, 16384, dtype, device),
        _fastfood_case(16, 16384, 65536, dtype, device) if str(device).startswith("cuda") else
        _fastfood_case(64, 1024, 32768, dtype, device),
        _dct_select_case(2048, 2048, 128, dtype, device),
        _dct_select_case(4096, 1024, 128, dtype, device),
    ]
