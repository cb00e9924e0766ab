"""fwht: ours vs the dense Hadamard matmul through torch (and Dao-AILab's
fast-hadamard-transform on CUDA when importable)."""
from __future__ import annotations

import math

import torch

import subspace_linalg as sl

from subspace_linalg.reference.fwht import fwht_last

from ..spec import Case, Peer

SUITE = "fwht"
_DENSE_MAX = 8192  # the dense peer needs an n x n matrix


def _hadamard(n: int, dtype, device) -> torch.Tensor:
    H = torch.ones(1, 1, dtype=torch.float64)
    while H.shape[0] < n:
        H = torch.cat([torch.cat([H, H], 1), torch.cat([H, -H], 1)], 0)
    return (H / math.sqrt(n)).to(dtype=dtype, device=device)


def _case(rows: int, n: int, dtype, device) -> Case:
    def setup():
        g = torch.Generator().manual_seed(rows * 131 + n)
        x = torch.randn(rows, n, generator=g, dtype=torch.float64)
        inp = {"x": x.to(dtype=dtype, device=device), "x64": x}
        if n <= _DENSE_MAX:
            inp["H"] = _hadamard(n, dtype, device)
        return inp

    def check(inp, y):
        x64 = inp["x64"]
        if n <= _DENSE_MAX:
            ref = x64 @ _hadamard(n, torch.float64, "cpu")
        else:  # the float64 pure-torch reference (no n x n matrix)
            ref = fwht_last(x64, 1.0 / math.sqrt(n))
        return float((y.double().cpu() - ref).norm() / ref.norm())

    tol = {torch.float64: 1e-12, torch.float32: 1e-5}.get(dtype, 2e-2)
    peers = [Peer("torch dense H matmul", lambda inp: inp["x"] @ inp["H"])] if n <= _DENSE_MAX else []
    if str(device).startswith("cuda") and dtype in (torch.float16, torch.bfloat16, torch.float32):
        def fht(inp):
            from fast_hadamard_transform import hadamard_transform

            return hadamard_transform(inp["x"], scale=1.0 / math.sqrt(n))

        peers.append(Peer("fast-hadamard-transform", fht, requires=("fast_hadamard_transform",)))
    esize = torch.empty((), dtype=dtype).element_size()
    return Case(SUITE, f"fwht {rows}x{n} {str(dtype).replace('torch.', '')}", setup,
                lambda inp: sl.fwht(inp["x"]), check, tol, peers,
                bytes_moved=2 * rows * n * esize, flops=rows * n * int(math.log2(n)),
                params={"rows": rows, "n": n, "dtype": str(dtype)})


def cases(device: str, dtype: torch.dtype, quick: bool) -> list[Case]:
    if quick:
        shapes = [(4096, 4096), (16384, 256)]
    else:
        shapes = [(4096, 4096), (16384, 256), (64, 32768)] + ([(64, 1 << 20)] if str(device).startswith("cuda") else [])
    out = [_case(r, n, dtype, device) for r, n in shapes]
    return out
