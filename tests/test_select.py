"""Row selection, gather and scatter (the Grass structured sparse projection)."""
from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

import subspace_linalg as sl
from _tolerances import rtol
from conftest import devices

DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]


def _rand(shape, dtype, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64).to(dtype=dtype, device=device)


# ---- gather / scatter: bitwise against torch indexing --------------------------------

@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype", DTYPES)
def test_gather_bitwise(device, dtype):
    G = _rand((3, 40, 33), dtype, device, 1)
    g = torch.Generator().manual_seed(2)
    idx = torch.randint(0, 40, (3, 7), generator=g).to(device)
    out = sl.gather_rows(G, idx)
    ref = torch.gather(G, 1, idx[..., None].expand(3, 7, 33))
    assert torch.equal(out, ref)
    s = _rand((3, 7), dtype, device, 3)
    out = sl.gather_rows(G, idx, scale=s)
    assert torch.equal(out, ref * s[..., None])
    # shared indices, non-contiguous input
    Gt = _rand((3, 33, 40), dtype, device, 4).transpose(-1, -2)
    i1 = idx[0]
    assert torch.equal(sl.gather_rows(Gt, i1), Gt[:, i1, :])


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype", DTYPES)
def test_scatter_bitwise_index_add(device, dtype):
    X = _rand((2, 9, 17), dtype, device, 5)
    g = torch.Generator().manual_seed(6)
    idx = torch.randint(0, 12, (2, 9), generator=g).to(device)  # duplicates likely
    s = _rand((2, 9), dtype, device, 7)
    base = _rand((2, 12, 17), dtype, device, 8)
    ref = base.clone()
    for b in range(2):
        ref[b].index_add_(0, idx[b], X[b] * s[b][:, None])
    out = base.clone()
    ret = sl.scatter_rows(X, idx, 12, scale=s, out=out)
    assert ret is out and torch.equal(out, ref)
    ref0 = torch.zeros_like(base)
    for b in range(2):
        ref0[b].index_add_(0, idx[b], X[b])
    assert torch.equal(sl.scatter_rows(X, idx, 12), ref0)
    # unique sorted indices take the parallel path
    u = torch.sort(torch.randperm(12, generator=g)[:9]).values.to(device)
    refu = torch.zeros_like(base)
    refu[:, u] += X
    assert torch.equal(sl.scatter_rows(X, u, 12), refu)


def _index_add_ref(X, idx, m, scale=None):
    """zeros + index_add_ per batch element (X (B, k, n), idx (B or 1, k))."""
    B, k, n = X.shape
    ix = idx.expand(B, k)
    src = X if scale is None else X * scale.expand(B, k)[..., None]
    out = torch.zeros(B, m, n, dtype=X.dtype, device=X.device)
    for b in range(B):
        out[b].index_add_(0, ix[b], src[b])
    return out


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["sorted", "unsorted", "repeated", "none"])
def test_scatter_fresh_output_bitwise(device, dtype, kind):
    # the fused zero fill + scatter of a new output: every row written once (zero or the
    # sum of its run); -0 rows become +0 as in zeros + index_add_
    B, m, k, n = 3, 50, 20, 37
    g = torch.Generator().manual_seed(21)
    if kind == "sorted":
        idx = torch.stack([torch.sort(torch.randperm(m, generator=g)[:k]).values for _ in range(B)])
    elif kind == "unsorted":
        idx = torch.stack([torch.randperm(m, generator=g)[:k] for _ in range(B)])
    elif kind == "repeated":
        idx = torch.randint(0, 6, (B, k), generator=g)
    else:
        idx, k = torch.zeros(B, 0, dtype=torch.int64), 0
    idx = idx.to(device)
    X = _rand((B, k, n), dtype, device, 22)
    X[:, ::3, ::2] = -0.0
    s = _rand((B, k), dtype, device, 23)
    for scale in (None, s):
        out = sl.scatter_rows(X, idx, m, scale=scale)
        ref = _index_add_ref(X, idx, m, scale)
        assert torch.equal(out, ref) and torch.equal(torch.signbit(out), torch.signbit(ref))
    # shared indices, non-contiguous X
    Xt = _rand((B, n, k), dtype, device, 24).transpose(-1, -2)
    assert torch.equal(sl.scatter_rows(Xt, idx[0], m), _index_add_ref(Xt, idx[:1], m))


def test_scatter_gather_large_parallel():
    # past the OpenMP threshold, with rows split across threads, and outputs large enough
    # (>= 32 MiB) for the huge-page hint
    m, k, n = 2100, 700, 4096
    g = torch.Generator().manual_seed(25)
    idx = torch.randint(0, m, (k,), generator=g)
    X = torch.randn(k, n, generator=g)
    s = torch.randn(k, generator=g)
    assert torch.equal(sl.scatter_rows(X, idx, m, scale=s), _index_add_ref(X[None], idx[None], m, s[None])[0])
    u = torch.sort(torch.randperm(m, generator=g)[:k]).values
    assert torch.equal(sl.scatter_rows(X, u, m), _index_add_ref(X[None], u[None], m)[0])
    G = torch.randn(m, n, generator=g)
    big = torch.randint(0, m, (2 * m,), generator=g)
    assert torch.equal(sl.gather_rows(G, big), G.index_select(0, big))
    assert torch.equal(sl.gather_rows(G, idx, scale=s), G.index_select(0, idx) * s[:, None])


def test_out_of_range_index_empty_rows():
    # zero columns: nothing to move, the indices are still checked
    with pytest.raises(ValueError, match="idx"):
        sl.gather_rows(torch.zeros(40, 0), torch.tensor([0, 40]))
    with pytest.raises(ValueError, match="idx"):
        sl.scatter_rows(torch.zeros(2, 0), torch.tensor([0, -1]), 40)


@pytest.mark.parametrize("bad", [-1, 40, 1000])
def test_out_of_range_index(bad):
    G = torch.zeros(40, 5)
    idx = torch.tensor([0, 3, bad])
    with pytest.raises(ValueError, match="idx"):
        sl.gather_rows(G, idx)
    X = torch.ones(3, 5)
    out = torch.zeros(40, 5)
    with pytest.raises(ValueError, match="idx"):
        sl.scatter_rows(X, idx, 40, out=out)
    assert out.abs().sum() == 0  # nothing written
    with pytest.raises(ValueError, match="idx"):
        torch.ops.subspace_linalg.gather_rows.default(G[None], idx[None], None)


def test_bad_arguments():
    G = torch.zeros(4, 5)
    with pytest.raises(TypeError, match="idx must be int64"):
        sl.gather_rows(G, torch.tensor([0.0]))
    with pytest.raises(TypeError, match="G must be"):
        sl.gather_rows([1.0], torch.tensor([0]))
    with pytest.raises(ValueError, match="scale"):
        sl.gather_rows(G, torch.tensor([0, 1]), scale=torch.ones(3))
    with pytest.raises(ValueError, match="rows"):
        sl.scatter_rows(torch.ones(2, 5), torch.tensor([0, 1, 2]), 4)
    with pytest.raises(ValueError, match="out"):
        sl.scatter_rows(torch.ones(2, 5), torch.tensor([0, 1]), 4, out=torch.zeros(3, 5))


def test_adjoint_and_autograd():
    G = _rand((2, 10, 6), torch.float64, "cpu", 9).requires_grad_()
    idx = torch.tensor([[1, 4, 4, 7], [0, 2, 9, 3]])
    s = _rand((2, 4), torch.float64, "cpu", 10).requires_grad_()
    Y = _rand((2, 4, 6), torch.float64, "cpu", 11)
    # <P G, Y> = <G, P^T Y>
    with torch.no_grad():
        lhs = (sl.gather_rows(G, idx, scale=s) * Y).sum()
        rhs = (G * sl.scatter_rows(Y, idx, 10, scale=s)).sum()
    assert abs(float(lhs - rhs)) <= rtol("transform", torch.float64, 60) * float(lhs.abs() + 1)
    assert torch.autograd.gradcheck(lambda a, b: sl.gather_rows(a, idx, scale=b), (G, s))
    Xr = _rand((2, 4, 6), torch.float64, "cpu", 12).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: sl.scatter_rows(a, idx, 10, scale=b), (Xr, s))


@pytest.mark.parametrize("device", devices())
def test_opcheck_gather_scatter(device):
    G = _rand((2, 8, 5), torch.float32, device, 13).requires_grad_()
    idx = torch.tensor([[1, 3, 6], [0, 0, 7]], device=device)
    s = _rand((2, 3), torch.float32, device, 14)
    torch.library.opcheck(torch.ops.subspace_linalg.gather_rows.default, (G, idx, s))
    torch.library.opcheck(torch.ops.subspace_linalg.gather_rows_nograd.default, (G.detach(), idx, s))
    X = _rand((2, 3, 5), torch.float32, device, 15).requires_grad_()
    torch.library.opcheck(torch.ops.subspace_linalg.scatter_rows.default, (X, idx, s, 8))
    out = torch.zeros(2, 8, 5, device=device)
    torch.library.opcheck(torch.ops.subspace_linalg.scatter_rows_.default, (X.detach(), idx, None, out))


def test_compile_fullgraph_gather_scatter():
    G = _rand((16, 8), torch.float32, "cpu", 16)
    idx = torch.tensor([2, 5, 7])

    def f(G, idx):
        return sl.scatter_rows(sl.gather_rows(G, idx) * 2.0, idx, 16)

    cf = torch.compile(f, fullgraph=True, backend="aot_eager")
    assert torch.equal(cf(G, idx), f(G, idx))
    # with a gradient: the autograd op, traced through as well
    Gr = G.clone().requires_grad_()
    cg = torch.compile(lambda G, idx: sl.gather_rows(G, idx).square().sum(), fullgraph=True, backend="aot_eager")
    cg(Gr, idx).backward()
    expect = torch.zeros_like(G)
    expect[idx] = 2 * G[idx]
    assert torch.equal(Gr.grad, expect)


def test_gather_picks_the_nograd_op_only_without_gradient():
    G = _rand((6, 4), torch.float32, "cpu", 17)
    idx = torch.tensor([0, 4])
    assert torch.equal(sl.gather_rows(G, idx), G[idx])
    Gr = G.clone().requires_grad_()
    out = sl.gather_rows(Gr, idx)
    assert out.requires_grad and out.grad_fn is not None
    with torch.no_grad():
        assert not sl.gather_rows(Gr, idx).requires_grad
    s = torch.ones(2, requires_grad=True)
    assert sl.gather_rows(G, idx, scale=s).requires_grad  # a scale that needs its gradient


# ---- select_rows ---------------------------------------------------------------------

def test_topk_equals_torch_topk():
    G = _rand((3, 50, 20), torch.float32, "cpu", 17)
    idx = sl.select_rows(G, 8)
    ref = torch.topk(torch.linalg.vector_norm(G, dim=-1), 8, dim=-1).indices.sort(-1).values
    assert torch.equal(idx, ref)
    idx_c = sl.select_rows(G, 5, dim=-1)
    ref_c = torch.topk(torch.linalg.vector_norm(G, dim=-2), 5, dim=-1).indices.sort(-1).values
    assert torch.equal(idx_c, ref_c)


@pytest.mark.parametrize("method", ["norm", "norm2", "uniform"])
def test_sampling_frequencies_chi_square(method):
    scipy_stats = pytest.importorskip("scipy.stats")
    m, trials = 12, 40000
    w = torch.linspace(0.2, 3.0, m, dtype=torch.float64)
    G = torch.diag(w)  # row norms = w
    g = torch.Generator().manual_seed(1234)
    idx = sl.select_rows(G.expand(trials, m, m), 1, method=method, generator=g)
    counts = torch.bincount(idx.flatten(), minlength=m).double()
    p = {"norm": w, "norm2": w * w, "uniform": torch.ones(m, dtype=torch.float64)}[method]
    expected = trials * p / p.sum()
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < scipy_stats.chi2.ppf(0.999, m - 1), chi2
    # a wrong distribution must fail the same test
    wrong = trials * torch.ones(m, dtype=torch.float64) / m if method != "uniform" else trials * w / w.sum()
    assert float(((counts - wrong) ** 2 / wrong).sum()) > scipy_stats.chi2.ppf(0.999, m - 1)


@pytest.mark.parametrize("method", ["norm", "norm2", "uniform"])
def test_no_duplicates_sorted_and_unbiased_scale(method):
    m, k, trials = 10, 4, 20000
    w = torch.linspace(0.1, 2.0, m, dtype=torch.float64)
    G = torch.diag(w).expand(trials, m, m)
    g = torch.Generator().manual_seed(99)
    idx, s = sl.select_rows(G, k, method=method, generator=g, return_scale=True)
    assert idx.shape == (trials, k)
    assert bool((idx[:, 1:] > idx[:, :-1]).all())  # ascending, so no duplicates
    # E[sum_j s_j^2 e_{i_j} e_{i_j}^T] = I: the mean of the diagonal is 1 for every row
    est = torch.zeros(trials, m, dtype=torch.float64).scatter_add_(1, idx, s.double() ** 2).mean(0)
    se = torch.zeros(trials, m, dtype=torch.float64).scatter_add_(1, idx, s.double() ** 2).std(0) / math.sqrt(trials)
    assert bool(((est - 1).abs() < 5 * se + 1e-12).all()), (est, se)


def test_zero_weight_rows():
    G = torch.zeros(8, 3)
    G[[1, 4, 6]] = torch.tensor([1.0, 2.0, 3.0])[:, None]
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        idx = sl.select_rows(G, 3, method="norm2", generator=g)
        assert idx.tolist() == [1, 4, 6]
    idx, s = sl.select_rows(G, 5, method="norm", generator=g, return_scale=True)
    assert {1, 4, 6} <= set(idx.tolist()) and bool(torch.isfinite(s).all()) and bool((s == 1).all())


def test_select_rows_errors():
    G = torch.randn(5, 4)
    with pytest.raises(ValueError, match="k must be <= 5"):
        sl.select_rows(G, 6)
    with pytest.raises(ValueError, match="method"):
        sl.select_rows(G, 2, method="bogus")
    with pytest.raises(TypeError, match="generator"):
        sl.select_rows(G, 2, method="norm", generator=3)
    with pytest.raises(ValueError, match="G must have at least 2"):
        sl.select_rows(torch.randn(5), 2)


def test_select_reproducible():
    G = torch.randn(30, 7)
    a = sl.select_rows(G, 5, method="norm2", generator=torch.Generator().manual_seed(3))
    b = sl.select_rows(G, 5, method="norm2", generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_empty_and_batched_shapes():
    G = torch.randn(5, 4)
    assert sl.gather_rows(G, torch.zeros(0, dtype=torch.long)).shape == (0, 4)
    assert torch.equal(sl.scatter_rows(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), 5), torch.zeros(5, 4))
    assert sl.gather_rows(torch.randn(0, 5, 4), torch.tensor([1])).shape == (0, 1, 4)
    G4 = torch.randn(2, 3, 5, 4)
    idx = torch.tensor([[0, 4], [1, 1]])[:, None, :]
    ref = torch.gather(G4, 2, idx.expand(2, 3, 2)[..., None].expand(2, 3, 2, 4))
    assert torch.equal(sl.gather_rows(G4, idx), ref)
    out = torch.zeros(4, 5).T  # non-contiguous out
    X = torch.randn(2, 4)
    sl.scatter_rows(X, torch.tensor([1, 3]), 5, out=out)
    assert torch.equal(out[[1, 3]], X) and out[[0, 2, 4]].abs().sum() == 0


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_gather_keeps_nan_payloads(device, dtype):
    """An unscaled gather copies the bits: NaNs with their payloads (a round trip through
    float32 would canonicalize them), also on the strided path (every other column: no
    16-byte row copies on CUDA)."""
    bits = torch.arange(0, 3 * 12 * 10, dtype=torch.int32).reshape(3, 12, 10) % 7 - 3
    bits = bits.to(torch.int16)
    payload = torch.tensor(0x7C01 if dtype == torch.float16 else 0x7F81, dtype=torch.int32).to(torch.int16)
    bits[:, ::3, ::2] = payload  # signalling-style NaNs with a payload
    G = bits.view(dtype).to(device)
    idx = torch.tensor([[0, 3, 3, 11, 6], [9, 1, 0, 2, 3], [11, 11, 0, 5, 4]], device=device)
    for src in (G, G[:, :, ::2]):
        out = sl.gather_rows(src, idx)
        ref = torch.stack([src[b, idx[b]] for b in range(3)])
        assert torch.equal(out.contiguous().view(torch.int16), ref.contiguous().view(torch.int16))


def test_raw_ops_check_devices():
    """The raw ops refuse an index or scale on another device than the data (the dispatcher
    would hand a CUDA kernel a host pointer); meta tensors stand in for the other device."""
    from subspace_linalg._ops import select as ops

    X = torch.zeros(2, 5, 3)
    idx = torch.zeros(2, 4, dtype=torch.int64)
    ops._check_eager("gather_rows", X, idx, None)  # same device: accepted
    with pytest.raises(RuntimeError, match="idx must be on the data's device"):
        ops._check_eager("gather_rows", X, idx.to("meta"), None)
    with pytest.raises(RuntimeError, match="scale must be on the data's device"):
        ops._check_eager("gather_rows", X, idx, torch.ones(2, 4, device="meta"))
