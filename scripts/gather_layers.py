"""Where the time of sl.gather_rows goes, layer by layer, beside torch.index_select.

    python scripts/gather_layers.py [m n k] [--rounds R]

Each layer is timed right after an index_select call (the same cache state for all),
round-robin over the layers, median of R rounds:
  index_select        torch's C++ op (the peer)
  native kernel       our CPU kernel through pybind11, output from torch.empty (no dispatch)
  kernel function     the registered CPU kernel (Python: checks, allocation, native call)
  nograd op           subspace_linalg::gather_rows_nograd (Library.impl, no autograd formula)
  custom op           subspace_linalg::gather_rows (torch.library.custom_op, with autograd)
  sl.gather_rows      the public function (picks the nograd op when no gradient is needed)
The ratio column is index_select's median over the layer's."""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import subspace_linalg as sl
from subspace_linalg import _native
from subspace_linalg._ops import select as S


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("shape", nargs="*", type=int, default=[4096, 4096, 512], help="m n k")
    ap.add_argument("--rounds", type=int, default=200)
    a = ap.parse_args()
    m, n, k = a.shape
    g = torch.Generator().manual_seed(0)
    G = torch.randn(m, n, generator=g)
    idx = torch.sort(torch.randperm(m, generator=g)[:k]).values
    G3, idx2 = G[None], idx[None]
    ia = S._index_args(idx2, None)[2]
    lib, ex, code = _native.lib(), S._exec(G3), S._dtype_code(G.dtype)
    kernel = S._gather_native

    def native():
        out = torch.empty(1, k, n)
        lib.gather_rows(code, G3.data_ptr(), S._spec3(G3), *ia, out.data_ptr(), S._spec3(out), ex)
        return out

    layers = {
        "index_select": lambda: torch.index_select(G, 0, idx),
        "native kernel": native,
        "kernel function": lambda: kernel(G3, idx2, None),
        "nograd op": lambda: torch.ops.subspace_linalg.gather_rows_nograd.default(G3, idx2, None),
        "custom op": lambda: torch.ops.subspace_linalg.gather_rows.default(G3, idx2, None),
        "sl.gather_rows": lambda: sl.gather_rows(G, idx),
    }
    ref = torch.index_select(G, 0, idx)
    for name, fn in layers.items():
        assert torch.equal(fn().reshape(k, n), ref), name
    times = {name: [] for name in layers}
    for _ in range(a.rounds):
        for name, fn in layers.items():
            torch.index_select(G, 0, idx)
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    base = statistics.median(times["index_select"])
    print(f"gather {k} rows of {m}x{n} float32, {torch.get_num_threads()} threads, median of {a.rounds}")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"  {name:16s} {med * 1e6:8.1f} us   index_select / this = {base / med:.2f}")


if __name__ == "__main__":
    main()
