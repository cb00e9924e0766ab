"""The native transposed copy (subspace_linalg::transpose_copy): bitwise against torch's
A.mT.contiguous(), its contracts, and its use in the batched rsvd."""
from __future__ import annotations

import pytest
import torch

import subspace_linalg as sl
from subspace_linalg import _rsvd_core as core

from _tolerances import rtol
from conftest import devices

OP = torch.ops.subspace_linalg.transpose_copy.default


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16, torch.int32, torch.int64])
@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (2, 17, 33), (1, 130, 70), (2, 3, 64, 72), (4, 8, 8), (2, 200, 1)])
def test_bitwise_against_torch(device, dtype, shape, gen):
    A = (torch.randn(shape, generator=gen(sum(shape))) * 1000).to(dtype).to(device)
    At = OP(A)
    assert At.is_contiguous() and At.shape == A.mT.shape and At.dtype == A.dtype
    assert torch.equal(At, A.mT.contiguous())


@pytest.mark.parametrize("dtype,shape", [(torch.float32, (2, 1024, 1040)), (torch.float64, (1, 1032, 1100)),
                                         (torch.float32, (1, 1500, 1500)), (torch.int32, (3, 720, 1000)),
                                         (torch.float64, (1, 1100, 1030))])
def test_bitwise_large_outputs(dtype, shape, gen):
    """From 8 MiB the CPU kernel writes whole output lines by streaming stores where they
    line up (rows a multiple of 64 bytes): those, the row counts where they do not
    (1500 x 4 bytes, 1100 x 8) and the tails, bit for bit."""
    A = (torch.randn(shape, generator=gen(sum(shape)), dtype=torch.float64) * 1000).to(dtype)
    At = OP(A)
    assert At.numel() * At.element_size() >= 8 << 20
    assert torch.equal(At, A.mT.contiguous())


@pytest.mark.parametrize("device", devices())
def test_non_contiguous_input_and_nan_bits(device, gen):
    A = torch.randn(3, 40, 50, generator=gen(1)).to(device)[:, ::2, 1:]  # strided view
    A[0, 1, 2] = float("nan")
    At = OP(A)
    assert torch.equal(At.view(torch.int32), A.mT.contiguous().view(torch.int32))  # NaN payloads moved as bits


def test_empty_and_bad_input():
    assert OP(torch.empty(2, 0, 3)).shape == (2, 3, 0)
    with pytest.raises(RuntimeError, match="at least 2 dims"):
        OP(torch.randn(4))
    with pytest.raises(RuntimeError, match="2, 4 or 8 bytes"):
        OP(torch.zeros(3, 3, dtype=torch.uint8))
    with pytest.raises(RuntimeError, match="2, 4 or 8 bytes"):
        OP(torch.zeros(3, 3, dtype=torch.complex64))


@pytest.mark.parametrize("device", devices())
def test_opcheck(device, gen):
    A = torch.randn(2, 9, 13, dtype=torch.float64, generator=gen(2)).to(device)
    torch.library.opcheck(OP, (A,))
    torch.library.opcheck(OP, (A.float()[0],))


def test_compile_fullgraph(gen):
    A = torch.randn(3, 20, 24, generator=gen(3))
    f = lambda A: OP(A * 2.0) + 1.0  # noqa: E731
    assert torch.equal(torch.compile(f, fullgraph=True, backend="aot_eager")(A), f(A))


def test_batched_rsvd_right_products_from_the_copy(gen, monkeypatch):
    """A float32 batch on the CPU makes its right products from the transposed copy (as
    convolutions); the result equals the one made without it up to float32 rounding."""
    if torch.get_num_threads() < 2:
        pytest.skip("the convolution route needs two threads")
    A = torch.randn(3, 300, 280, generator=gen(4))
    A = A * torch.logspace(0, -3, 280)  # decaying spectrum
    copies = []
    orig = core.columns_copy
    monkeypatch.setattr(core, "columns_copy", lambda *a: copies.append(orig(*a)) or copies[-1])
    res = sl.rsvd(A, 20, generator=torch.Generator().manual_seed(0))
    assert copies and copies[0] is not None and torch.equal(copies[0], A.mT.contiguous())
    monkeypatch.setattr(core, "columns_copy", lambda *a: None)
    ref = sl.rsvd(A, 20, generator=torch.Generator().manual_seed(0))
    tol = rtol("lowrank", torch.float32, 300)
    assert float((res.S - ref.S).abs().max() / ref.S.max()) <= tol
    back = lambda r: (r.U * r.S.unsqueeze(-2)) @ r.Vh  # noqa: E731
    assert float(torch.linalg.matrix_norm(back(res) - back(ref)).max() / torch.linalg.matrix_norm(A).max()) <= tol


def test_columns_copy_rules(gen):
    A = torch.randn(4, 512, 512, generator=gen(5))
    assert (core.columns_copy(A, 42, 3) is not None) == (torch.get_num_threads() >= 2)
    assert core.columns_copy(A, 42, 1) is None                 # one right product: not worth a copy
    assert core.columns_copy(A[0], 42, 3) is None              # one matrix
    assert core.columns_copy(A.double(), 42, 3) is None        # float32 only (the oneDNN route)
    assert core.columns_copy(A.mT, 42, 3) is None              # not contiguous
    assert core.columns_copy(torch.randn(4, 100, 100), 10, 3) is None  # below the convolution's sizes
    monkey = core._COLUMNS_COPY_MAX_BYTES
    try:
        core._COLUMNS_COPY_MAX_BYTES = A.numel() * 4 - 1  # just below this batch's size
        assert core.columns_copy(A, 42, 3) is None
    finally:
        core._COLUMNS_COPY_MAX_BYTES = monkey


@pytest.mark.cuda
def test_cuda_large_and_odd(gen):
    for shape in [(3, 1000, 777), (1, 70000, 3), (2, 33, 65)]:
        A = torch.randn(shape, generator=gen(shape[1])).cuda()
        assert torch.equal(OP(A).cpu(), A.cpu().mT.contiguous())
