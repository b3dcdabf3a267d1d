#!/usr/bin/env bash
# The GPU checks in one go, for a machine with a real GPU (or lavapipe): list the adapters, then
# run the op-parity suite (every kernel and weight type against the CPU ops) on the adapter that
# `--device gpu` picks. Exits non-zero when a check fails; prints why when no adapter exists.
# The `infer bench --device gpu` step joins this script once the GPU forward exists.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# Mesa's drivers complain on stderr when no session directory exists; give them one.
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$(mktemp -d)}
cargo build --release --bin infer
./target/release/infer devices
cargo test --release --lib gpu::
cargo test --release --test gpu_ops_parity -- --nocapture
