"""Property tests: drawn shapes (zero and one sizes included), dtypes and layouts; each case
matches the float64 reference or raises the documented error."""
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import subspace_linalg as sl
from subspace_linalg.reference.fwht import fwht_last
from _tolerances import rtol

_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(
    batch=st.lists(st.integers(0, 4), min_size=0, max_size=3),
    log_n=st.integers(0, 9),
    extra=st.sampled_from([0, 3, 5]),  # 0: power of two; else a non power of two length
    dtype=st.sampled_from([torch.float32, torch.float64]),
    layout=st.sampled_from(["contiguous", "transposed", "strided"]),
    seed=st.integers(0, 2**31 - 1),
)
def test_fwht_matches_reference_or_raises(batch, log_n, extra, dtype, layout, seed):
    n = (1 << log_n) + extra if extra and (1 << log_n) + extra > 0 else (1 << log_n)
    g = torch.Generator().manual_seed(seed)
    shape = tuple(batch) + (n,)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    dim = -1
    if layout == "transposed" and x.dim() >= 2:
        x = x.transpose(-1, -2).contiguous().transpose(-1, -2)
    elif layout == "strided":
        x = torch.randn(shape[:-1] + (2 * n,), generator=g, dtype=torch.float64)[..., ::2]
    xin = x.to(dtype)
    if n & (n - 1):
        with pytest.raises(ValueError, match="power of two"):
            sl.fwht(xin, dim=dim)
        return
    y = sl.fwht(xin, dim=dim)
    assert y.shape == x.shape and y.dtype == dtype
    if x.numel() == 0:
        return
    ref = fwht_last(xin.double(), 1 / math.sqrt(n))
    err = float((y.double() - ref).norm() / max(float(ref.norm()), 1e-300))
    assert err <= rtol("transform", dtype, n), err
