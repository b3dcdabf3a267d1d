// out[t] = dequantized row ids[t] of a (possibly split) weight table: the embedding lookup. One
// workgroup per token; a table split across buffers is dispatched once per chunk, and each
// dispatch writes only the tokens whose row falls in its chunk [row0, row0 + m).
#include "common/bytes.wgsl"
#include "weight"

const WG: u32 = 64u;

struct Params {
    k: u32,
    m: u32,
    row_bytes: u32,
    n_tok: u32,
    row0: u32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> weights: array<u32>;
@group(0) @binding(2) var<storage, read_write> ids: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let t = wid.x + wid.y * nwg.x;
    if (t >= p.n_tok) {
        return;
    }
    let id = ids[t];
    if (id < p.row0 || id - p.row0 >= p.m) {
        return;
    }
    let subs = BLOCK_ELEMS / 16u;
    let base = (id - p.row0) * p.row_bytes;
    for (var s = lid; s < p.k / 16u; s = s + WG) {
        let w = dequant16(base + (s / subs) * BLOCK_BYTES, s % subs);
        for (var i = 0u; i < 16u; i = i + 1u) {
            out[t * p.k + 16u * s + i] = w[i];
        }
    }
}
