"""The build: what _C links, what importing does, and what info() reports."""
import json
import os
import re
import subprocess

import pytest
import torch

import subspace_linalg as sl
from subspace_linalg import _native
from _subproc import run_python


def _so_path() -> str:
    return _native.lib().__file__


def _readelf(args):
    try:
        return subprocess.run(["readelf", *args, _so_path()], capture_output=True, text=True, check=True).stdout
    except FileNotFoundError:
        pytest.skip("readelf not available")


def test_native_does_not_link_torch_or_cublas():
    dyn = _readelf(["-d"])
    needed = re.findall(r"\(NEEDED\).*\[(.+?)\]", dyn)
    assert needed, dyn
    for lib in needed:
        assert not re.match(r"lib(torch|c10|cublas|cublasLt|cudart)", lib), f"_C must not link {lib}: {needed}"


def test_openmp_symbols_at_most_5_0():
    syms = _readelf(["--dyn-syms", "-W"])
    assert not re.search(r"(G?OMP)_5\.(0\.[12]|1)", syms), "OpenMP > 5.0 symbols break with torch's libgomp"


def test_import_is_lean_and_does_not_initialise_cuda():
    code = (
        "import sys, torch, subspace_linalg\n"
        "assert not torch.cuda.is_initialized(), 'import initialised CUDA'\n"
        "heavy = [m for m in ('scipy', 'sklearn', 'tensorly', 'matplotlib', 'tabulate') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "print('ok')\n"
    )
    out = run_python(["-c", code])
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr


def test_info_agrees_with_the_build():
    facts = sl.info()
    C = _native.lib()
    assert facts["native"] is True and facts["native_error"] is None
    assert facts["version"] == sl.__version__
    assert facts["cuda_built"] == bool(C.WITH_CUDA)
    assert facts["torch_version"] == torch.__version__
    assert facts["openmp"] == bool(C.WITH_OPENMP)
    assert "fwht" in facts["native_families"]
    if facts["cuda_built"]:
        assert facts["cuda_architectures"], facts
        assert re.fullmatch(r"\d+\.\d+", facts["cuda_runtime_version"]), facts
    else:
        assert facts["cuda_architectures"] == [] and facts["cuda_runtime_version"] is None
    if facts["openmp"]:
        assert facts["openmp_threads"] >= 1
    assert facts["gpus"] == ([torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
                             if torch.cuda.is_available() else [])


def test_cuda_build_expected_when_nvcc_present():
    # CI builds with CUDA AUTO on a machine with nvcc: the kernels must have been compiled
    if os.environ.get("SUBSPACE_LINALG_CUDA", "AUTO").upper() == "OFF":
        pytest.skip("CPU-only build requested")
    nvcc = any(os.path.exists(os.path.join(p, "nvcc")) for p in os.environ.get("PATH", "").split(os.pathsep))
    if not nvcc and not os.path.exists("/usr/local/cuda/bin/nvcc"):
        pytest.skip("no nvcc on this machine")
    assert sl.info()["cuda_built"], "nvcc is here but the CUDA kernels were not built"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error path")
def test_cuda_tensor_without_gpu_is_a_clear_error():
    # torch's CPU build cannot make CUDA tensors; a CUDA launch request still fails cleanly:
    # "no CUDA kernels, rebuild" on a CPU-only build, the runtime's error (no driver) else
    x = torch.randn(8)
    C = _native.lib()
    spec = [1, 1, 8, 0, 8, 1]
    match = "CUDA|cuda" if _native.has_cuda() else "rebuild"
    with pytest.raises(RuntimeError, match=match):
        C.fwht(C.DTYPE_F32, x.data_ptr(), spec, x.data_ptr(), spec, 1.0, [C.DEVICE_CUDA, 0, 0])


def test_cli_info_and_module_entry():
    out = run_python(["-m", "subspace_linalg", "info", "--json"])
    assert out.returncode == 0, out.stderr
    assert '"cuda_built"' in out.stdout
    assert json.loads(out.stdout)["native"] is True, out.stdout  # the installed package, with _C
    out = run_python(["-m", "subspace_linalg", "bench", "--list"])
    assert out.returncode == 0 and "fwht" in out.stdout.split(), out.stderr
