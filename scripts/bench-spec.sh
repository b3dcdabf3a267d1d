#!/usr/bin/env bash
# Speculative decoding benchmark (issue 7): target Gemma 3 270M in F16 (made from the Q4_K_M file
# by llama.cpp's llama-quantize --allow-requantize), draft the Q4_K_M file, greedy decoding of a
# few prompts with and without --draft. Checks that the text is identical and prints the speed-up
# (generated tokens / generation time, prompt excluded). Not a test: timings depend on the machine
# and its load; runs alternate plain and speculative per prompt so that load drifts hit both.
#
# Usage: scripts/bench-spec.sh [N_TOKENS (64)] [THREADS (all cores)]
# Env: EXTRA="--draft-max 8" adds flags to the speculative runs. CPU=1 also measures CPU time
# (perf stat task-clock) of each run minus that of the same run with -n 1, i.e. the generation's
# CPU time, and prints the speed-up by it: with 1 thread that figure barely depends on what else
# runs (with more, idle workers spin, so CPU time follows wall time).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
n=${1:-64}
threads=${2:-$(nproc)}
q4=models/gemma-3-270m-q4_k_m.gguf
out=target/spec-bench
f16=$out/gemma-3-270m-f16.gguf
mkdir -p "$out"
[ -f "$q4" ] || { echo "missing $q4 (scripts/fetch-model.sh fetches it)" >&2; exit 1; }

quantize=target/llama-tools/bin/llama-quantize
if [ ! -x "$quantize" ]; then
  if [ -x scripts/build-llama-tools.sh ]; then
    scripts/build-llama-tools.sh >&2
  else
    # Only llama-quantize, from the llama.cpp tree of the llama-cpp-sys-2 crate our reference links.
    src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/llama-cpp-sys-2-0.1.161/llama.cpp | head -n1)
    cmake -S "$src" -B target/llama-tools/build -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF >&2
    cmake --build target/llama-tools/build --target llama-quantize -j2 >&2
    mkdir -p target/llama-tools/bin
    ln -sf "$root/target/llama-tools/build/bin/llama-quantize" "$quantize"
  fi
fi
if [ ! -f "$f16" ]; then
  "$quantize" --allow-requantize "$q4" "$f16" F16 > "$out/quantize.log" 2>&1 ||
    { cat "$out/quantize.log" >&2; exit 1; }
fi
cargo build --release --quiet
infer=target/release/infer
# Timings depend on what else runs: say so next to them.
load() { cut -d' ' -f1-3 /proc/loadavg; }
echo "load average before: $(load) ($(nproc) cores, $threads threads)"

prompts=(
  "The capital of France is"
  "Write a short story about a robot who learns to paint."
  "Explain how a refrigerator works, step by step:"
)
# generated: N tokens in X ms  ->  "N X"
gen_of() { sed -n 's/^generated: \([0-9]*\) tokens in \([0-9.]*\) ms.*/\1 \2/p' "$1"; }

tot_plain_n=0 tot_plain_ms=0 tot_spec_n=0 tot_spec_ms=0 same=yes
for i in "${!prompts[@]}"; do
  p=${prompts[$i]}
  base=(-p "$p" --temp 0 -t "$threads")
  spec=(--draft "$q4" ${EXTRA:-})
  if (( i % 2 == 0 )); then order=(plain spec); else order=(spec plain); fi
  for mode in "${order[@]}"; do
    if [ "$mode" = plain ]; then extra=(); else extra=("${spec[@]}"); fi
    cpu=()
    if [ -n "${CPU:-}" ]; then
      cpu=(perf stat -x, -e task-clock -o "$out/$mode-$i.cpu")
      perf stat -x, -e task-clock -o "$out/$mode-$i.cpu1" \
        "$infer" run "$f16" "${base[@]}" -n 1 "${extra[@]}" > /dev/null 2>&1
    fi
    "${cpu[@]}" "$infer" run "$f16" "${base[@]}" -n "$n" "${extra[@]}" > "$out/$mode-$i.txt" \
      2> "$out/$mode-$i.err"
  done
  read -r pn pms < <(gen_of "$out/plain-$i.err")
  read -r sn sms < <(gen_of "$out/spec-$i.err")
  if cmp -s "$out/plain-$i.txt" "$out/spec-$i.txt"; then ok=identical; else ok=DIFFERENT; same=no; fi
  printf 'prompt %d: plain %5.2f t/s, speculative %5.2f t/s, x%.2f, output %s\n' "$i" \
    "$(echo "$pn * 1000 / $pms" | bc -l)" "$(echo "$sn * 1000 / $sms" | bc -l)" \
    "$(echo "($sn / $sms) / ($pn / $pms)" | bc -l)" "$ok"
  grep '^speculative:' "$out/spec-$i.err" | sed 's/^/  /'
  if [ -n "${CPU:-}" ]; then
    ms() { sed -n 's/^\([0-9.]*\),msec,task-clock.*/\1/p' "$1"; }
    pc=$(echo "$(ms "$out/plain-$i.cpu") - $(ms "$out/plain-$i.cpu1")" | bc -l)
    sc=$(echo "$(ms "$out/spec-$i.cpu") - $(ms "$out/spec-$i.cpu1")" | bc -l)
    printf '  CPU time of generation: plain %.0f ms, speculative %.0f ms, x%.2f\n' "$pc" "$sc" \
      "$(echo "$pc / $sc" | bc -l)"
    tot_plain_cpu=$(echo "${tot_plain_cpu:-0} + $pc" | bc -l); tot_spec_cpu=$(echo "${tot_spec_cpu:-0} + $sc" | bc -l)
  fi
  tot_plain_n=$((tot_plain_n + pn)); tot_spec_n=$((tot_spec_n + sn))
  tot_plain_ms=$(echo "$tot_plain_ms + $pms" | bc -l); tot_spec_ms=$(echo "$tot_spec_ms + $sms" | bc -l)
done
printf 'all prompts: plain %.2f t/s, speculative %.2f t/s, speed-up x%.2f (issue bar: x1.50), outputs identical: %s\n' \
  "$(echo "$tot_plain_n * 1000 / $tot_plain_ms" | bc -l)" "$(echo "$tot_spec_n * 1000 / $tot_spec_ms" | bc -l)" \
  "$(echo "($tot_spec_n / $tot_spec_ms) / ($tot_plain_n / $tot_plain_ms)" | bc -l)" "$same"
if [ -n "${CPU:-}" ]; then
  printf 'all prompts by CPU time of generation: speed-up x%.2f\n' "$(echo "$tot_plain_cpu / $tot_spec_cpu" | bc -l)"
fi
echo "load average after: $(load)"
[ "$same" = yes ]
