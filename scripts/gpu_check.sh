#!/usr/bin/env bash
# GPU validation on a machine with an NVIDIA GPU and no internet (torch, nvcc, cmake,
# pybind11 and scikit-build-core already installed), sized for a short device lease:
#   bash scripts/gpu_check.sh [OUTDIR] [ARCH] [DEADLINE_S] [ARCHIVE]
#   (defaults: bench/results/gpu, 90-real, 540, none)
# ARCHIVE: also pack OUTDIR into this .tar.gz (the device tool brings back at most 8 files
# from $OUT: run it as `bash scripts/gpu_check.sh /tmp/gpu 90-real 540 $OUT/gpu-check.tgz`).
# Steps, most important first: build in place for ARCH; every native op once on the GPU
# against the CPU (scripts/cuda_smoke.py); compute-sanitizer memcheck and racecheck over
# that smoke run (each kernel once: a full test run under the sanitizers takes far too
# long); the CUDA-marked tests; the issue's GPU rsvd rows (4096 x 11008 rank 256, fp32 and
# bf16); the full rsvd and orth suites on the GPU. Each step gets a timeout, the smaller
# of its own cap and what is left of DEADLINE_S (counted from the start); a step with
# under 20 s left is skipped. Every step runs even when an earlier one fails (but nothing
# runs after a failed build); the exit code says whether all ran and passed. The logs and
# JSON land in OUTDIR (steps.log lists every step with its exit code and seconds).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench/results/gpu}
ARCH=${2:-90-real}
DEADLINE=${3:-540}
ARCHIVE=${4:-}
mkdir -p "$OUT"
START=$(date +%s)
status=0
step() {  # step NAME CAP_S COMMAND...
  local name=$1 cap=$2; shift 2
  local left=$((DEADLINE - ($(date +%s) - START)))
  local t=$((cap < left ? cap : left))
  if [ "$t" -lt 20 ]; then
    echo "== $name: skipped ($left s left)" | tee -a "$OUT/steps.log"; status=1; return 1
  fi
  echo "== $name (timeout $t s): $*" | tee -a "$OUT/steps.log"
  local t0=$(date +%s)
  timeout --kill-after=10 "$t" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "   rc=$rc in $(($(date +%s) - t0)) s" | tee -a "$OUT/steps.log"
  [ $rc -eq 0 ] || status=1
  return $rc
}
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true
if ! step build 300 pip install --no-build-isolation --no-deps -e . -Ccmake.define.SUBSPACE_LINALG_CUDA=ON \
    -Ccmake.define.CMAKE_CUDA_ARCHITECTURES="$ARCH"; then
  tail -40 "$OUT/build.log"
  [ -z "$ARCHIVE" ] || tar czf "$ARCHIVE" -C "$OUT" .
  exit 1
fi
python -m subspace_linalg info --json > "$OUT/info.json" 2>&1
SAN=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
step smoke 90 python scripts/cuda_smoke.py --device cuda
step memcheck 150 "$SAN" --tool memcheck --error-exitcode 1 python scripts/cuda_smoke.py --device cuda
step racecheck 150 "$SAN" --tool racecheck --error-exitcode 1 python scripts/cuda_smoke.py --device cuda
step pytest-cuda 240 python -m pytest -q -m cuda tests
step bench-gpu-rows-fp32 120 python -m subspace_linalg bench rsvd --device cuda --full --dtype float32 \
  --filter 4096x11008 --json "$OUT/bench-cuda-rsvd-4096x11008-float32.json"
step bench-gpu-rows-bf16 120 python -m subspace_linalg bench rsvd --device cuda --full --dtype bfloat16 \
  --filter 4096x11008 --json "$OUT/bench-cuda-rsvd-4096x11008-bfloat16.json"
step bench-rsvd 180 python -m subspace_linalg bench rsvd --device cuda --full --dtype float32 \
  --json "$OUT/bench-cuda-rsvd-float32.json"
step bench-orth 120 python -m subspace_linalg bench orth --device cuda --full --dtype float32 \
  --json "$OUT/bench-cuda-orth-float32.json"
cat "$OUT/steps.log"
[ -z "$ARCHIVE" ] || tar czf "$ARCHIVE" -C "$OUT" .
exit $status
