"""scripts/cuda_smoke.py, the quick check of every native op on one device (what the GPU
sessions run, also under compute-sanitizer): clean on the CPU against the pure-torch
references, and on CUDA against the CPU kernels."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "cuda_smoke.py"


@pytest.fixture(scope="module")
def smoke():
    spec = importlib.util.spec_from_file_location("cuda_smoke", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _op_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith(("PASS ", "FAIL ", "ERROR "))]


def test_cpu_kernels_match_the_references(smoke, capsys):
    rc = smoke.main(["--device", "cpu"])
    out = capsys.readouterr().out
    assert rc == 0, out
    ops = smoke.registered_ops()
    assert len(ops) >= 25 and set(ops) <= set(smoke.SMOKES)  # every custom op has its cases
    lines = _op_lines(out)
    assert len(lines) == len(ops) and all(line.startswith("PASS ") for line in lines), out


@pytest.mark.cuda
def test_cuda_kernels_match_the_cpu_kernels(smoke, capsys):
    rc = smoke.main(["--device", "cuda"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert len(_op_lines(out)) == len(smoke.registered_ops()), out
