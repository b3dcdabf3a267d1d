#!/usr/bin/env bash
# Run the whole test suite on a fresh Debian machine: install what the llama.cpp reference build
# needs (cmake, clang for bindgen), fetch the default model, then `cargo test --release`.
# Tests run in release because they evaluate real models and the reference is an optimised build.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
need=()
command -v cmake >/dev/null || need+=(cmake)
command -v clang >/dev/null || need+=(clang)
# The chat tests drive the REPL in a real terminal through tmux.
command -v tmux >/dev/null || need+=(tmux)
[ -n "$(ls /usr/lib/llvm-*/lib/libclang*.so* 2>/dev/null)" ] || need+=(libclang-dev)
# Mesa's lavapipe gives wgpu a Vulkan adapter on machines without a GPU.
[ -n "$(ls /usr/share/vulkan/icd.d/lvp_icd*.json 2>/dev/null)" ] || need+=(mesa-vulkan-drivers libvulkan1)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
./scripts/fetch-model.sh
cargo test --release --no-fail-fast "$@"
