#!/usr/bin/env bash
# KV cache memory and speed over long generations (issue #5), on Gemma 3 270M Q4_K_M:
#
# 1. Long generation with context shift: `infer run -c 1024 --context-shift --ignore-eos` for
#    1024 and for N_LONG (8192) generated tokens. Peak RSS of both runs (/usr/bin/time) must be
#    within a few MiB: the cache is preallocated and the window ring does not grow. Decode speed
#    of the first 1024 tokens and of the rest (from the difference of the two runs' timing
#    lines) must not fall with length.
# 2. Peak RSS at -c 32768 for a short prompt, infer vs llama.cpp's llama-completion with the
#    same settings (f16 cache, 16 tokens, 2 threads), each the max over RUNS runs.
#
# Measured 2026-11-27 on the 2-core dev box while other builds ran (load ~7, so t/s are noisy):
#   peak RSS 297.7 MiB after 1024 tokens, 297.8 MiB after 8192; decode 5.0 t/s (first 1024),
#   6.1 t/s (1024..8192); -c 32768: infer 278 MiB, llama-completion 424 MiB.
#
# Usage: scripts/kv-memory.sh [MODEL]   (env: N_LONG=8192 RUNS=2 THREADS=2)
# Needs: target/release/infer (cargo build --release), target/llama-tools/bin/llama-completion
#        (scripts/build-llama-tools.sh), /usr/bin/time (Debian package `time`).
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-models/gemma-3-270m-q4_k_m.gguf}
n_long=${N_LONG:-8192}
runs=${RUNS:-2}
threads=${THREADS:-2}
infer=target/release/infer
llama=target/llama-tools/bin/llama-completion
[ -x /usr/bin/time ] || { echo "error: /usr/bin/time missing (apt-get install time)" >&2; exit 1; }
[ -x "$infer" ] || { echo "error: $infer missing (cargo build --release)" >&2; exit 1; }
[ -f "$model" ] || { echo "error: $model missing (scripts/fetch-model.sh)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
prompt="Write a long story about a lighthouse keeper and the sea."

gen() { # n_predict -> "rss_kib ms tokens"
  /usr/bin/time -f "%M" -o "$work/rss" "$infer" run "$model" -p "$prompt" -c 1024 \
    --context-shift --ignore-eos -n "$1" -s 1 -t "$threads" > /dev/null 2> "$work/err"
  local line
  line=$(grep '^generated:' "$work/err")
  # generated: N tokens in X ms (Y tokens/s)
  echo "$(cat "$work/rss") $(echo "$line" | awk '{print $5}') $(echo "$line" | awk '{print $2}')"
}

echo "== infer run -c 1024 --context-shift: 1024 vs $n_long generated tokens"
read -r rss1 ms1 n1 < <(gen 1024)
read -r rss2 ms2 n2 < <(gen "$n_long")
python3 - "$rss1" "$ms1" "$n1" "$rss2" "$ms2" "$n2" <<'PY'
import sys
rss1, ms1, n1, rss2, ms2, n2 = (float(x) for x in sys.argv[1:])
first = n1 / (ms1 / 1e3)
rest = (n2 - n1) / ((ms2 - ms1) / 1e3)
print(f"peak RSS after {n1:.0f} tokens: {rss1/1024:.1f} MiB; after {n2:.0f} tokens: {rss2/1024:.1f} MiB "
      f"(+{(rss2-rss1)/1024:.1f} MiB)")
print(f"decode: first {n1:.0f} tokens {first:.1f} tokens/s; tokens {n1:.0f}..{n2:.0f} {rest:.1f} tokens/s")
PY

echo "== peak RSS at -c 32768, short prompt, 16 tokens (max of $runs runs)"
max_rss() { local m=0 r; for f in "$@"; do r=$(cat "$f"); [ "$r" -gt "$m" ] && m=$r; done; echo "$m"; }
for i in $(seq 1 "$runs"); do
  /usr/bin/time -f "%M" -o "$work/i.$i" "$infer" run "$model" -p "$prompt" -c 32768 -n 16 \
    -t "$threads" > /dev/null 2>&1
  if [ -x "$llama" ]; then
    /usr/bin/time -f "%M" -o "$work/l.$i" "$llama" -m "$model" -p "$prompt" -c 32768 -n 16 \
      -t "$threads" -no-cnv < /dev/null > /dev/null 2>&1
  fi
done
echo "infer            : $(( $(max_rss "$work"/i.*) / 1024 )) MiB"
if [ -x "$llama" ]; then
  echo "llama-completion : $(( $(max_rss "$work"/l.*) / 1024 )) MiB"
else
  echo "llama-completion : not built (scripts/build-llama-tools.sh)"
fi
