#!/usr/bin/env bash
# The GPU checks in one go, for a machine with a real GPU (or lavapipe): list the adapters, run
# the op-parity suite (every kernel and weight type against the CPU ops) and the whole-model
# forward tests (logits and greedy text against the CPU) on the adapter that `--device gpu`
# picks, then `infer bench --device gpu` next to `--device cpu` on the default model. Exits
# non-zero when a check fails; prints why when no adapter exists.
# Usage: scripts/gpu-check.sh [MODEL]   (default: models/gemma-3-270m-q4_k_m.gguf)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
model=${1:-models/gemma-3-270m-q4_k_m.gguf}
# Mesa's drivers complain on stderr when no session directory exists; give them one.
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$(mktemp -d)}
cargo build --release --bin infer
./target/release/infer devices
cargo test --release --lib gpu::
cargo test --release --test gpu_ops_parity -- --nocapture
cargo test --release --test gpu_ring -- --nocapture
cargo test --release --test gpu_forward -- --nocapture --test-threads 1
if [ -f "$model" ]; then
    ./target/release/infer bench "$model" --device gpu -p 512 -n 128 -r 3
    ./target/release/infer bench "$model" --device cpu -p 512 -n 128 -r 3
else
    echo "bench skipped: $model is absent (scripts/fetch-model.sh fetches it)"
fi
