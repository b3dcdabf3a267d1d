// Store n_tok rows of `width` into the cache cells the host chose (crate::model::kv_cache's
// placement, ring included): cache[cells[t] * width + i] = f16-rounded src[t * width + i], the
// precision of llama.cpp's default f16 cache.

#include "common/round_f16.wgsl"

struct Params {
    n: u32,          // elements to store (n_tok * width)
    width: u32,
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(0) @binding(3) var<storage, read_write> cells: array<u32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if (i >= p.n) {
        return;
    }
    let t = i / p.width;
    dst[cells[t] * p.width + i % p.width] = round_f16(src[i]);
}
