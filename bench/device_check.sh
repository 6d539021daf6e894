#!/usr/bin/env bash
# The smoke profile on an accelerator and on the CPU, then their metrics compared.
#   bash bench/device_check.sh [DEVICE] [RTOL]      (DEVICE: cuda (default), mps or auto; RTOL default 0.05)
# Both runs use the same cached base and amplitude checkpoints (trained once, on the CPU); the sections that train
# (SFT, recipe) run on DEVICE in bf16 autocast there and in the CPU's precision here, so their numbers agree to a
# tolerance, not to the bit: a relative 5% by default (bf16 keeps 8 bits of mantissa, about 0.4% a rounding, and 50
# optimiser steps compound it). The comparison also lists any verdict that differs.
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE=${1:-cuda}; RTOL=${2:-0.05}
BIN=${BIN:-.venv/bin}
OUT=${OUT:-/tmp/amplitude-nb-device-check}
mkdir -p "$OUT"
start=$(date +%s)
$BIN/amplitude-nb reproduce --profile smoke --device "$DEVICE" --workers 1 --quiet --out "$OUT/$DEVICE"
mid=$(date +%s)
$BIN/amplitude-nb reproduce --profile smoke --device cpu --workers 1 --quiet --out "$OUT/cpu"
end=$(date +%s)
echo "smoke on $DEVICE: $((mid - start)) s; on cpu: $((end - mid)) s"
$BIN/python bench/compare_metrics.py "$OUT/$DEVICE" "$OUT/cpu" --rtol "$RTOL"
