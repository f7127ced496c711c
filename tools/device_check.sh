#!/usr/bin/env bash
# The one prepared GPU check (issues 10, 13 and 26): the benchmark, then `compute` (every chapter's results in one
# process, one load of the weights; seconds and peak GPU memory per unit) and `run-book --stored` (the chapters from
# those results, no model) on a randomly initialised LLaMA-7B-shaped model in bfloat16 (no download), under $OUT
# (the device tool's output folder).
# Usage on the GPU machine:  OUT=/some/folder bash tools/device_check.sh
# Dry run here first (CPU, LLaMA-7B sizes divided by 32):  DRY=1 OUT=/tmp/devcheck bash tools/device_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:?set OUT to a folder for the results}
mkdir -p "$out"
# the dry shape has one block of one head, so chapter 9 reads its top head only (-p k 1)
if [[ -n "${DRY:-}" ]]; then shape=llama-7b/32; device=cpu; dtype=float32; quick=(--quick); extra=(-p k 1); else
  shape=llama-7b; device=cuda; dtype=bfloat16; quick=(); extra=(); fi
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"; } \
  > "$out/device.txt"
python -m tvlib bench --random-config "$shape" --device "$device" --dtype "$dtype" --json "${quick[@]}" \
  2>"$out/bench.stderr" | tee "$out/bench.txt"
run=(--random-config "$shape" --device "$device" --dtype "$dtype" --profile quick --out "$out/run-quick" "${extra[@]}")
python -m tvlib compute "${run[@]}" --dry-run > "$out/compute-dry-run.txt"
/usr/bin/time -v python -m tvlib compute "${run[@]}" 2>"$out/compute.stderr" | tee "$out/compute.txt"
cp "$out/run-quick/compute_0of1.csv" "$out/compute_units.csv"  # seconds and peak GPU memory per unit
/usr/bin/time -v python -m tvlib run-book --stored "${run[@]}" 2>"$out/run-book.stderr"
cp "$out/run-quick/chapters.csv" "$out/chapters.csv"
grep -E "Maximum resident|Elapsed" "$out/compute.stderr" "$out/run-book.stderr" || true
