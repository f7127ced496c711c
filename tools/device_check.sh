#!/usr/bin/env bash
# The one prepared GPU check (issues 10 and 13): the benchmark and a quick run-book on a randomly initialised
# LLaMA-7B-shaped model in bfloat16 (no download), results under $OUT (the device tool's output folder).
# Usage on the GPU machine:  OUT=/some/folder bash tools/device_check.sh
# Dry run here first (CPU, LLaMA-7B sizes divided by 32):  DRY=1 OUT=/tmp/devcheck bash tools/device_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:?set OUT to a folder for the results}
mkdir -p "$out"
if [[ -n "${DRY:-}" ]]; then shape=llama-7b/32; device=cpu; dtype=float32; quick=(--quick); else
  shape=llama-7b; device=cuda; dtype=bfloat16; quick=(); fi
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"; } \
  > "$out/device.txt"
python -m tvlib bench --random-config "$shape" --device "$device" --dtype "$dtype" --json "${quick[@]}" \
  2>"$out/bench.stderr" | tee "$out/bench.txt"
/usr/bin/time -v python -m tvlib run-book --random-config "$shape" --device "$device" --dtype "$dtype" \
  --profile quick --out "$out/run-quick" 2>"$out/run-book.stderr"
cp "$out/run-quick/chapters.csv" "$out/chapters.csv"
grep -E "Maximum resident|Elapsed" "$out/run-book.stderr" || true
