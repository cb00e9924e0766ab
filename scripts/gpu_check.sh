#!/usr/bin/env bash
# GPU validation on a machine with an NVIDIA GPU and no internet (torch, nvcc, cmake,
# pybind11 and scikit-build-core already installed):
#   bash scripts/gpu_check.sh [OUTDIR] [ARCH]      (defaults: bench/results/gpu, 90-real)
# builds in place for ARCH, runs the CUDA-marked tests, compute-sanitizer memcheck and
# racecheck over them, and the GPU benchmark (fp32 and bf16) writing JSON into OUTDIR.
# Every step runs even when an earlier one fails; the exit code says whether all passed.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench/results/gpu}
ARCH=${2:-90-real}
mkdir -p "$OUT"
status=0
step() { local name=$1; shift; echo "== $name: $*" | tee -a "$OUT/steps.log"; "$@" > "$OUT/$name.log" 2>&1; local rc=$?; echo "   rc=$rc" | tee -a "$OUT/steps.log"; [ $rc -eq 0 ] || status=1; }
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true
step build pip install --no-build-isolation --no-deps -e . -Ccmake.define.SUBSPACE_LINALG_CUDA=ON \
  -Ccmake.define.CMAKE_CUDA_ARCHITECTURES="$ARCH"
python -m subspace_linalg info --json > "$OUT/info.json" 2>&1
step pytest-cuda python -m pytest -q -m cuda tests
SAN=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
# the sanitizers run the CUDA tests without torch.compile (inductor's own kernels are not ours)
step memcheck "$SAN" --tool memcheck --error-exitcode 1 --target-processes all \
  python -m pytest -q -x -m cuda -k "not compile" tests
step racecheck "$SAN" --tool racecheck --error-exitcode 1 --target-processes all \
  python -m pytest -q -x -m cuda -k "not compile and not opcheck" tests
step bench-fp32 python -m subspace_linalg bench --device cuda --full --dtype float32 --json "$OUT/bench-cuda-float32.json"
step bench-bf16 python -m subspace_linalg bench --device cuda --full --dtype bfloat16 --json "$OUT/bench-cuda-bfloat16.json"
cat "$OUT/steps.log"
exit $status
