#!/usr/bin/env bash
# The 100-prompt benchmark of issue #8: one `infer batch` (model loaded once, cached prefixes
# reused) against one `infer run` per prompt, same prompts, greedy, same -n. Prints both wall
# times and their ratio; checks that both produced the same completions.
#
#   scripts/batch-vs-run.sh [N_PROMPTS=100] [N_PREDICT=16]
#   MODEL=path/to/model.gguf INFER=target/release/infer scripts/batch-vs-run.sh
#
# Uses hyperfine (one run of each, no warm-up: the point is what a user waits for) when it is
# installed, else bash's clock.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
n=${1:-100}
n_predict=${2:-16}
model=${MODEL:-$root/models/gemma-3-270m-q4_k_m.gguf}
infer=${INFER:-$root/target/release/infer}
[ -f "$model" ] || { echo "no model at $model: run scripts/fetch-model.sh" >&2; exit 1; }
[ -x "$infer" ] || (cd "$root" && cargo build --release --quiet)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
subjects=(France Japan Brazil Kenya Canada Norway Egypt India Chile Spain)
things=("The capital of" "The largest city in" "A famous dish from" "The main language of" "A river in"
        "The currency of" "A mountain in" "The flag of" "A holiday in" "The history of")
for ((i = 0; i < n; i++)); do
  echo "${things[i % 10]} ${subjects[(i / 10) % 10]} (question $i) is"
done > "$tmp/prompts.txt"

cat > "$tmp/runs.sh" <<SH
#!/usr/bin/env bash
set -euo pipefail
while IFS= read -r p; do
  "$infer" run "$model" -q -p "\$p" --temp 0 -n $n_predict 2>/dev/null
  printf '\n'
done < "$tmp/prompts.txt" > "$tmp/run.out"
SH
cat > "$tmp/batch.sh" <<SH
#!/usr/bin/env bash
set -euo pipefail
"$infer" batch "$model" -q --plain --temp 0 -n $n_predict < "$tmp/prompts.txt" > "$tmp/batch.jsonl"
SH
chmod +x "$tmp/runs.sh" "$tmp/batch.sh"

now() { echo "${EPOCHREALTIME/,/.}"; }
time_it() { # prints seconds
  local t0 t1
  t0=$(now); "$1"; t1=$(now)
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }'
}
if command -v hyperfine >/dev/null; then
  hyperfine --runs 1 --style basic --export-json "$tmp/h.json" \
    -n "infer batch ($n prompts)" "$tmp/batch.sh" \
    -n "$n x infer run" "$tmp/runs.sh" >&2
  read -r t_batch t_runs < <(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))["results"]
print(r[0]["mean"], r[1]["mean"])' "$tmp/h.json")
else
  t_batch=$(time_it "$tmp/batch.sh")
  t_runs=$(time_it "$tmp/runs.sh")
fi

# Same completions either way (greedy): compare run's outputs with batch's JSON.
python3 - "$tmp/batch.jsonl" "$tmp/run.out" "$n" <<'PY'
import json, sys
batch = [json.loads(l) for l in open(sys.argv[1])]
assert len(batch) == int(sys.argv[3]), f"{len(batch)} records"
runs = open(sys.argv[2]).read()
same = sum(1 for r in batch if r.get("completion", "\0") + "\n" in runs)
print(f"completions found in the separate runs' output: {same}/{len(batch)}")
PY
awk -v b="$t_batch" -v r="$t_runs" -v n="$n" -v k="$n_predict" 'BEGIN {
  printf "%d prompts, -n %d, greedy\n", n, k
  printf "infer batch (one load):   %8.2f s\n", b
  printf "%d x infer run:          %8.2f s\n", n, r
  printf "ratio run/batch:          %8.2fx\n", r / b
}'
