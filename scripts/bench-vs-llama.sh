#!/usr/bin/env bash
# infer vs llama.cpp on the same machine, models, threads and sizes.
#
# Speed: `infer bench` and llama.cpp's `llama-bench`, pp512 and tg128 at 2 threads, on Gemma 3
# 270M Q4_K_M, Q8_0 and F16, run alternately (infer, llama.cpp, infer, ...) ROUNDS times with
# REPS repetitions each, so that load from other processes falls on both; the table gives each
# program's mean t/s over all its samples, the sample sd, and the ratio infer / llama.cpp.
#
# Start-up: whole-process wall time and peak RSS of a one-token run,
#   infer run MODEL -p "The capital of France is" -n 1
#   llama-completion -m MODEL -p "The capital of France is" -n 1 -c 2048 -no-cnv
# over STARTUP_RUNS alternating runs each (/usr/bin/time), median wall and max RSS.
#
# Env: ROUNDS (2), REPS (3), THREADS (2), PP (512), TG (128), STARTUP_RUNS (5),
#      MODELS (space-separated paths; default the three Gemma files), SKIP_STARTUP=1.
# Needs: scripts/build-llama-tools.sh, scripts/make-test-models.sh (run here when missing),
#        python3, /usr/bin/time (Debian package `time`).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
ROUNDS=${ROUNDS:-2}
REPS=${REPS:-3}
THREADS=${THREADS:-2}
PP=${PP:-512}
TG=${TG:-128}
STARTUP_RUNS=${STARTUP_RUNS:-5}
bin="$root/target/llama-tools/bin"
infer="$root/target/release/infer"

[ -x "$bin/llama-bench" ] && [ -x "$bin/llama-completion" ] || scripts/build-llama-tools.sh > /dev/null
if [ -z "${MODELS:-}" ]; then
  scripts/make-test-models.sh
  MODELS="models/gemma-3-270m-q4_k_m.gguf models/gemma-3-270m-q8_0.gguf models/gemma-3-270m-f16.gguf"
fi
cargo build --release --quiet --bin infer
[ -x /usr/bin/time ] || { echo "error: /usr/bin/time missing (apt-get install time)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

for m in $MODELS; do
  tag=$(basename "$m" .gguf)
  for r in $(seq 1 "$ROUNDS"); do
    echo "[$tag] round $r/$ROUNDS: infer" >&2
    "$infer" bench "$m" -p "$PP" -n "$TG" -t "$THREADS" -r "$REPS" --json > "$work/$tag.infer.$r.json"
    echo "[$tag] round $r/$ROUNDS: llama-bench" >&2
    "$bin/llama-bench" -m "$m" -p "$PP" -n "$TG" -t "$THREADS" -r "$REPS" -o json \
      > "$work/$tag.llama.$r.json" 2> "$work/$tag.llama.$r.err" ||
      { cat "$work/$tag.llama.$r.err" >&2; exit 1; }
  done
done

python3 - "$work" $MODELS <<'PY'
import glob, json, os, statistics, sys
work, models = sys.argv[1], sys.argv[2:]
def samples(tag, prog, key):
    out = []
    for f in sorted(glob.glob(os.path.join(work, f"{tag}.{prog}.*.json"))):
        for t in json.load(open(f)):
            if (t["n_prompt"] > 0) == (key == "pp") and (t["n_gen"] > 0) == (key == "tg"):
                out += t["samples_ts"]
    return out
def fmt(v):
    if not v:
        return "n/a"
    sd = statistics.stdev(v) if len(v) > 1 else 0.0
    return f"{statistics.mean(v):8.2f} ± {sd:6.2f}"
print(f"| {'model':<24} | {'test':<6} | {'infer t/s':>17} | {'llama.cpp t/s':>17} | {'ratio':>6} |")
print(f"| {'-'*24} | {'-'*6} | {'-'*17} | {'-'*17} | {'-'*6} |")
for m in models:
    tag = os.path.basename(m)[:-5]
    for key in ("pp", "tg"):
        a, b = samples(tag, "infer", key), samples(tag, "llama", key)
        ratio = f"{statistics.mean(a) / statistics.mean(b):6.2f}" if a and b else "n/a"
        n = {"pp": os.environ.get("PP", "512"), "tg": os.environ.get("TG", "128")}[key]
        print(f"| {tag:<24} | {key + n:<6} | {fmt(a):>17} | {fmt(b):>17} | {ratio:>6} |")
PY

if [ "${SKIP_STARTUP:-0}" != 1 ]; then
  m=$(echo "$MODELS" | cut -d' ' -f1)
  prompt="The capital of France is"
  for i in $(seq 1 "$STARTUP_RUNS"); do
    /usr/bin/time -f "%e %M" -o "$work/startup.infer.$i" "$infer" run "$m" -p "$prompt" -n 1 > /dev/null 2>&1
    /usr/bin/time -f "%e %M" -o "$work/startup.llama.$i" "$bin/llama-completion" -m "$m" -p "$prompt" \
      -n 1 -c 2048 -no-cnv < /dev/null > /dev/null 2>&1
  done
  python3 - "$work" "$m" <<'PY'
import glob, os, statistics, sys
work, m = sys.argv[1], sys.argv[2]
print(f"\nstart-up, {os.path.basename(m)}, one token after 'The capital of France is':")
print(f"| {'program':<16} | {'runs':>4} | {'median wall s':>13} | {'min wall s':>10} | {'max peak RSS MiB':>16} |")
print(f"| {'-'*16} | {'-'*4} | {'-'*13} | {'-'*10} | {'-'*16} |")
for prog, name in (("infer", "infer run"), ("llama", "llama-completion")):
    rows = [open(f).read().split()[-2:] for f in glob.glob(os.path.join(work, f"startup.{prog}.*"))]
    wall = [float(w) for w, _ in rows]
    rss = [int(r) / 1024 for _, r in rows]
    print(f"| {name:<16} | {len(rows):>4} | {statistics.median(wall):>13.2f} | {min(wall):>10.2f} | {max(rss):>16.1f} |")
PY
fi
