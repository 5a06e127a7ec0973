#!/usr/bin/env bash
# The standing order's script for a lent GPU machine, as one call of the device tool:
#   bash scripts/gpu_check.sh            (writes into $OUT, the device tool's return folder, or bench/gpu-DATE)
# 1. set up (builds the CUDA engine); 2. the self-check of every backend against the float64 oracle;
# 3. the GPU tests; 4. the default benchmark set on the GPU, and its RESULTS.md table. Each step has
# its own time limit so that one hang cannot eat the device budget; a failed step does not stop the
# later ones, and the exit code says whether all passed.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/gpu-$(date +%Y%m%d)}
mkdir -p "$OUT"
status=0
step() {  # step NAME SECONDS COMMAND...
  local name=$1 secs=$2
  shift 2
  echo "=== $name (limit ${secs} s)"
  local t0=$SECONDS
  timeout "$secs" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  tail -n 15 "$OUT/$name.log"
  echo "=== $name: exit $rc in $((SECONDS - t0)) s"
  [[ $rc -eq 0 ]] || status=1
}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >"$OUT/gpu.txt" 2>&1 || true
step setup 240 bash scripts/setup.sh
step check 120 python -m infomorph_kernels check --device cuda
step gpu-tests 180 python -m pytest -q -p no:cacheprovider tests/test_backend_cuda.py tests/test_backend_triton.py \
  tests/test_backends_api.py tests/test_selfcheck.py
step bench 240 python -m pytest bench/test_kernels.py --benchmark-only -q -p no:cacheprovider --bench-device cuda \
  --benchmark-json="$OUT/bench.json"
[[ -f "$OUT/bench.json" ]] && python bench/report.py "$OUT/bench.json" --title "GPU default set" >"$OUT/report.md" 2>&1
exit $status
