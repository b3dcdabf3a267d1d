#!/usr/bin/env bash
# Make Q8_0 and F16 versions of the Gemma 3 270M file (models/gemma-3-270m-q4_k_m.gguf) with
# llama.cpp's llama-quantize, for benchmarks and tests on those weight types:
#   models/gemma-3-270m-q8_0.gguf, models/gemma-3-270m-f16.gguf
# They come from the Q4_K_M weights (--allow-requantize), so they are not the original model's
# Q8_0/F16 numbers, but they have the shapes, types and byte counts of such files.
# Idempotent: an existing output is kept. Needs scripts/build-llama-tools.sh (run if missing).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
src="$root/models/gemma-3-270m-q4_k_m.gguf"
quantize="$root/target/llama-tools/bin/llama-quantize"
[ -f "$src" ] || "$root/scripts/fetch-model.sh"
[ -x "$quantize" ] || "$root/scripts/build-llama-tools.sh" > /dev/null
for pair in "Q8_0 q8_0" "F16 f16"; do
  set -- $pair
  out="$root/models/gemma-3-270m-$2.gguf"
  if [ -s "$out" ]; then
    echo "present: $out" >&2
    continue
  fi
  "$quantize" --allow-requantize "$src" "$out.tmp" "$1" > "$out.log" 2>&1 ||
    { echo "error: llama-quantize $1 failed; see $out.log" >&2; exit 1; }
  mv "$out.tmp" "$out"
  rm -f "$out.log"
  echo "made: $out" >&2
done
