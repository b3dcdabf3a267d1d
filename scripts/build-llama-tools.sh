#!/usr/bin/env bash
# Build llama.cpp's command-line tools (llama-bench, llama-completion, llama-perplexity,
# llama-tokenize, llama-quantize, llama-batched-bench, llama-speculative-simple), Release, into
# target/llama-tools/bin, so scripts/bench-vs-llama.sh and scripts/make-test-models.sh can
# compare infer with llama.cpp built for this machine.
#
# ISA: by default the x86 feature set infer's kernels use and the reference machine of issue #4
# has (AVX2, FMA, F16C, BMI2; GGML_NATIVE=OFF). A GGML_NATIVE=ON build on a host whose CPU
# reports AMX compiles ggml's AMX matmul, which dies with SIGILL where the kernel does not grant
# AMX state (as on this project's sandboxed machines). LLAMA_NATIVE=1 builds with -march=native
# instead (into target/llama-tools/build-native), for hosts where that runs.
#
# Source: the llama.cpp tree inside the llama-cpp-sys-2 crate our reference links (fetched by
# `cargo fetch`). That crate ships the libraries but not the tools' sources, so when they are
# missing the llama.cpp tree vendored in the llama-cpp-python source distribution (PyPI) is used
# instead; the script says which it built from. Idempotent: configure and build are incremental,
# and the sdist is downloaded once.
#
# Usage: scripts/build-llama-tools.sh            (env JOBS=N to change the default -j2)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/target/llama-tools"
jobs=${JOBS:-2}
sdist_version=0.3.36
tools=(llama-bench llama-completion llama-perplexity llama-tokenize llama-quantize
  llama-batched-bench llama-speculative-simple)

has_tools() { [ -f "$1/tools/llama-bench/llama-bench.cpp" ] && [ -f "$1/tools/tokenize/tokenize.cpp" ] &&
  [ -f "$1/examples/speculative-simple/speculative-simple.cpp" ]; }

crate_src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/llama-cpp-sys-2-0.1.161/llama.cpp 2>/dev/null | head -n1 || true)
if [ -z "$crate_src" ]; then
  (cd "$root" && cargo fetch >&2)
  crate_src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/llama-cpp-sys-2-0.1.161/llama.cpp | head -n1)
fi

mkdir -p "$out/bin"
if has_tools "$crate_src"; then
  src="$crate_src"
  echo "building llama.cpp tools from $src" >&2
else
  src="$out/src/llama_cpp_python-$sdist_version/vendor/llama.cpp"
  if ! has_tools "$src"; then
    echo "llama-cpp-sys-2 ships no tool sources; fetching llama-cpp-python $sdist_version (sdist) for its llama.cpp tree" >&2
    mkdir -p "$out/src"
    python3 -m pip download --quiet --no-deps --no-binary :all: --disable-pip-version-check \
      "llama-cpp-python==$sdist_version" -d "$out/src" >&2
    tar -xzf "$out/src/llama_cpp_python-$sdist_version.tar.gz" -C "$out/src" \
      "llama_cpp_python-$sdist_version/vendor/llama.cpp"
  fi
  echo "building llama.cpp tools from $src (llama-cpp-python $sdist_version's vendored tree)" >&2
fi

if [ "${LLAMA_NATIVE:-0}" = 1 ]; then
  build="$out/build-native"
  isa=(-DGGML_NATIVE=ON)
else
  build="$out/build"
  isa=(-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
    -DGGML_AVX512=OFF -DGGML_AVX_VNNI=OFF)
fi
want="$src ${isa[*]}"
if [ -f "$build/CMakeCache.txt" ] && ! grep -qx "CMAKE_HOME_DIRECTORY:INTERNAL=$src" "$build/CMakeCache.txt"; then
  rm -rf "$build"
fi
# Configure in place when the options change, so only what they affect (ggml-cpu) rebuilds.
if [ "$(cat "$build/.configured" 2>/dev/null)" != "$want" ]; then
  cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release "${isa[@]}" \
    -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=ON \
    -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
    -DGGML_OPENMP=ON >&2
  echo "$want" > "$build/.configured"
fi
cmake --build "$build" --config Release -j "$jobs" --target "${tools[@]}" >&2
for t in "${tools[@]}"; do
  ln -sf "$build/bin/$t" "$out/bin/$t"
done
echo "$out/bin"
