import pytest
import torch

CUDA = torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    skip_cuda = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords and not CUDA:
            item.add_marker(skip_cuda)


@pytest.fixture
def gen():
    """A fresh seeded CPU generator per test (seed from the test's name: reproducible)."""
    import zlib

    def make(salt: int = 0) -> torch.Generator:
        return torch.Generator().manual_seed(zlib.crc32(str(salt).encode()) & 0x7FFFFFFF)

    return make


@pytest.fixture(autouse=True)
def _gemm_policy_onednn():
    """Every test runs under the "onednn" product policy, whatever this CPU's vendor picks,
    so route assertions mean the same on every machine; the "blas" policy has its own
    tests (test_gemm.py) that set it inside the test."""
    from subspace_linalg import _gemm

    prev = _gemm.set_policy("onednn")
    yield
    _gemm.set_policy(prev)


@pytest.fixture(autouse=True)
def _fast_low_precision_gemms():
    """Every test takes the mixed-precision (pass_dtype) path, whether or not this CPU has
    fast bfloat16 GEMMs; test_rsvd.py tests the detection itself."""
    from subspace_linalg import _gemm

    prev = _gemm.set_fast_dtypes(True)
    yield
    _gemm.set_fast_dtypes(prev)


def devices():
    """cpu always, cuda as a marked parameter (skipped without a GPU)."""
    return ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


def pytest_configure(config):
    import subspace_linalg
    from subspace_linalg import _native

    if not _native.available():
        raise pytest.UsageError(
            f"subspace_linalg was imported from {subspace_linalg.__file__} without its native module "
            f"({_native.import_error()}). Install it (pip install '.[test]') and run `pytest tests` "
            "(not `python -m pytest`, which puts the source tree first on sys.path)."
        )
