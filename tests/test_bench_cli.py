"""The benchmark CLI: checks before timing, reports missing peers, writes JSON and a plot."""
import json

import torch

from subspace_linalg.bench import cli
from subspace_linalg.bench.spec import Case, Peer


def _case(check_error: float, peers=()):
    return Case("t", "toy", lambda: {"x": torch.ones(4)}, lambda inp: inp["x"] * 2,
                lambda inp, out: check_error, 1e-6, list(peers))


def test_wrong_result_is_reported_not_timed():
    row = cli.run_case(_case(1.0), "cpu", 0.01, None)
    assert row["status"] == "WRONG" and "ours_s" not in row and row["error"] == 1.0


def test_missing_peer_is_shown_not_raised():
    peers = [Peer("ghost", lambda inp: inp["x"], requires=("no_such_module_xyz",)),
             Peer("torch", lambda inp: inp["x"] * 2)]
    row = cli.run_case(_case(0.0, peers), "cpu", 0.01, None)
    assert row["status"] == "ok"
    assert row["peers"][0]["status"].startswith("not installed")
    assert row["peers"][1]["status"] == "ok" and row["peers"][1]["ratio"] > 0


def test_an_exception_in_our_op_is_a_row():
    case = Case("t", "boom", lambda: {}, lambda inp: 1 / 0, lambda inp, out: 0.0, 1.0)
    row = cli.run_case(case, "cpu", 0.01, None)
    assert row["status"] == "ERROR" and "ZeroDivisionError" in row["error_msg"]


def test_cli_json_and_plot(tmp_path, capsys):
    import importlib.util

    out = tmp_path / "r.json"
    png = tmp_path / "r.png"
    plot = importlib.util.find_spec("matplotlib") is not None
    rc = cli.main(["fwht", "--quick", "--filter", "16384x256", "--budget", "0.01", "--json", str(out)]
                  + (["--plot", str(png)] if plot else []))
    assert rc == 0
    doc = json.loads(out.read_text())
    assert doc["machine"]["subspace_linalg"]["native"] is True
    assert doc["copy_gbps"] > 0 and doc["rows"][0]["status"] == "ok"
    assert doc["gemm_gflops"]["torch.matmul"] > 0 and doc["gemm_gflops"]["n"] == 1024
    row = doc["rows"][0]
    assert row["peers"][0]["name"] == "torch dense H matmul" and row["peers"][0]["ratio"] > 0
    assert not plot or (png.exists() and png.stat().st_size > 1000)
    assert "fwht 16384x256" in capsys.readouterr().out


def test_rsvd_suite_has_the_gpu_rows():
    """The issue's GPU rows (4096 x 11008 rank 256, fp32 and bf16) are in the full CUDA
    suite beside torch.svd_lowrank and the GEMM floor; a 16-bit input also gets
    svd_lowrank on A.float(), since svd_lowrank raises on it. Built, not run (no GPU here)."""
    from subspace_linalg.bench.suites import rsvd

    for dtype, peers in ((torch.float32, 1), (torch.bfloat16, 2)):
        rows = [c for c in rsvd.cases("cuda", dtype, quick=False) if "4096x11008 r256" in c.name]
        assert len(rows) == 1, [c.name for c in rsvd.cases("cuda", dtype, quick=False)]
        names = [p.name for p in rows[0].peers]
        assert sum(n.startswith("torch.svd_lowrank") for n in names) == peers
        assert any(n.startswith("its own GEMMs") for n in names)
    assert not any("4096x11008" in c.name for c in rsvd.cases("cpu", torch.float32, quick=False))


def test_rsvd_matrix_on_a_device_is_the_cpu_one():
    """A large case's test matrix is made on the device from the same CPU-drawn Gaussians:
    here (CPU) both paths are one; the spectrum is i^-1 and the bases orthonormal."""
    from subspace_linalg.bench.suites import rsvd

    U, s, V = rsvd._matrix((), 40, 24, 7, "cpu")
    U2, s2, V2 = rsvd._matrix((), 40, 24, 7)
    assert torch.equal(U, U2) and torch.equal(V, V2) and torch.equal(s, s2)
    eye = torch.eye(24, dtype=torch.float64)
    assert (U.mT @ U - eye).abs().max() < 1e-12 and (V.mT @ V - eye).abs().max() < 1e-12
    assert torch.allclose(s, 1.0 / torch.arange(1, 25, dtype=torch.float64))
