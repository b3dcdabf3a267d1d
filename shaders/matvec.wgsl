// y[y_off + r] = dot(W[r], x) for one activation row x: one workgroup per weight row, each
// invocation decoding 16-element sub-blocks of the row with the weight format's `dequant16`.
#include "common/bytes.wgsl"
#include "common/reduce.wgsl"
#include "weight"

struct Params {
    k: u32,          // elements per row
    m: u32,          // rows in this weight chunk
    row_bytes: u32,
    x_off: u32,
    y_off: u32,      // index of this chunk's first row in y
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> weights: array<u32>;
@group(0) @binding(2) var<storage, read_write> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let row = wid.x + wid.y * nwg.x;
    if (row >= p.m) {
        return;
    }
    let subs = BLOCK_ELEMS / 16u;
    let n_sub = p.k / 16u;
    let base = row * p.row_bytes;
    var acc = 0.0;
    for (var s = lid; s < n_sub; s = s + WG) {
        let w = dequant16(base + (s / subs) * BLOCK_BYTES, s % subs);
        let xo = p.x_off + 16u * s;
        for (var i = 0u; i < 16u; i = i + 1u) {
            acc = acc + w[i] * x[xo + i];
        }
    }
    let total = wg_sum(lid, acc);
    if (lid == 0u) {
        y[p.y_off + row] = total;
    }
}
