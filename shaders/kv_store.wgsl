// Append rows to a cache buffer at position `pos`: cache[pos * width + i] = f16-rounded src[i], the
// precision of llama.cpp's default f16 cache (and of crate::model::kv_cache).

#include "common/round_f16.wgsl"

struct Params {
    n: u32,          // elements to store (n_tok * width)
    dst_off: u32,    // pos * width
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if (i >= p.n) {
        return;
    }
    dst[p.dst_off + i] = round_f16(src[i]);
}
