#!/usr/bin/env bash
# Batched decoding, infer vs llama.cpp (issue #9): aggregate decode tokens/s of B sequences that
# each have a NPP-token prompt in their cache and generate NTG tokens, at B = 1 and B = 8.
#
#   infer bench MODEL -t THREADS -p 0 -d NPP -n NTG --parallel B --json     (tg of B sequences)
#   llama-batched-bench -m MODEL -t THREADS -npp NPP -ntg NTG -npl 1,8      (its S_TG column)
#
# Run alternately (infer, llama.cpp, infer, ...) ROUNDS times so that load from other processes
# falls on both; the table gives each side's mean t/s over its rounds and the ratios the issue
# sets as the bar: infer B=8 / llama.cpp B=8 >= 1.3, infer B=8 / infer B=1 >= 2.
# Both sides use their default attention (flash attention on CPUs) and a 512-token ubatch.
#
# Env: MODEL (models/gemma-3-270m-q4_k_m.gguf), THREADS (2), NPP (64), NTG (64), ROUNDS (2),
#      REPS (2, infer's timed repetitions per round).
# Needs: scripts/build-llama-tools.sh (run here when its binaries are missing), python3.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
MODEL=${MODEL:-models/gemma-3-270m-q4_k_m.gguf}
THREADS=${THREADS:-2}
NPP=${NPP:-64}
NTG=${NTG:-64}
ROUNDS=${ROUNDS:-2}
REPS=${REPS:-2}
bin="$root/target/llama-tools/bin"
infer="$root/target/release/infer"

[ -f "$MODEL" ] || { echo "error: $MODEL missing (scripts/fetch-model.sh)" >&2; exit 1; }
[ -x "$bin/llama-batched-bench" ] || scripts/build-llama-tools.sh > /dev/null
cargo build --release --quiet --bin infer

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
# Room for 8 sequences of NPP + NTG tokens in llama.cpp's unified cache.
ctx=$(( 8 * (NPP + NTG) + 256 ))

for r in $(seq 1 "$ROUNDS"); do
  for b in 1 8; do
    echo "round $r/$ROUNDS: infer --parallel $b" >&2
    "$infer" bench "$MODEL" -t "$THREADS" -p 0 -d "$NPP" -n "$NTG" -r "$REPS" \
      --parallel "$b" --json > "$work/infer.$r.$b.json"
  done
  echo "round $r/$ROUNDS: llama-batched-bench" >&2
  "$bin/llama-batched-bench" -m "$MODEL" -t "$THREADS" -c "$ctx" -npp "$NPP" -ntg "$NTG" \
    -npl 1,8 --output-format jsonl > "$work/llama.$r.jsonl" 2> "$work/llama.$r.err" ||
    { cat "$work/llama.$r.err" >&2; exit 1; }
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

python3 - "$work" "$ROUNDS" "$MODEL" "$THREADS" "$NPP" "$NTG" <<'EOF'
import json, statistics, sys
work, rounds, model, threads, npp, ntg = sys.argv[1], int(sys.argv[2]), *sys.argv[3:]
ours = {1: [], 8: []}
theirs = {1: [], 8: []}
for r in range(1, rounds + 1):
    for b in (1, 8):
        with open(f"{work}/infer.{r}.{b}.json") as f:
            for t in json.load(f):
                if t["n_gen"] > 0:
                    ours[b].extend(t["samples_ts"])
    with open(f"{work}/llama.{r}.jsonl") as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                o = json.loads(line)
                if o.get("pl") in theirs:
                    theirs[o["pl"]].append(o["speed_tg"])
mean = lambda v: statistics.mean(v) if v else float("nan")
print(f"{model}, {threads} threads, {npp}-token prompts, {ntg} generated tokens each, {rounds} rounds")
print(f"| {'B':>2} | {'infer t/s':>10} | {'llama.cpp S_TG':>14} | {'infer / llama.cpp':>17} |")
print(f"| {'-'*2} | {'-'*10} | {'-'*14} | {'-'*17} |")
for b in (1, 8):
    o, t = mean(ours[b]), mean(theirs[b])
    print(f"| {b:>2} | {o:>10.2f} | {t:>14.2f} | {o / t:>16.2f}x |")
vs_llama = mean(ours[8]) / mean(theirs[8])
vs_one = mean(ours[8]) / mean(ours[1])
print(f"infer B=8 / llama.cpp B=8: {vs_llama:.2f}x (bar >= 1.3x: {'met' if vs_llama >= 1.3 else 'not met'})")
print(f"infer B=8 / infer B=1:     {vs_one:.2f}x (bar >= 2x: {'met' if vs_one >= 2 else 'not met'})")
EOF
