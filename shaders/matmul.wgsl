// Y[t][y_off + r] = dot(W[r], X[t]) for a batch of activation rows (prefill). One workgroup per
// (weight row, tile of TT tokens): every decoded 16-element piece of the row is used TT times
// while in registers, so the batch reads and decodes each weight row n_tok / TT times, not n_tok.
#include "common/bytes.wgsl"
#include "weight"

const WG: u32 = 64u;
const TT: u32 = 8u;

struct Params {
    k: u32,
    m: u32,          // rows in this weight chunk
    row_bytes: u32,
    n_tok: u32,
    y_stride: u32,   // elements between token rows of Y (all rows of the whole matrix)
    y_off: u32,      // index of this chunk's first row in a Y row
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> weights: array<u32>;
@group(0) @binding(2) var<storage, read_write> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

var<workgroup> part: array<f32, 512>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let g = wid.x + wid.y * nwg.x;
    let row = g % p.m;
    let t0 = (g / p.m) * TT;
    if (t0 >= p.n_tok) {
        return;
    }
    let nt = min(TT, p.n_tok - t0);
    let subs = BLOCK_ELEMS / 16u;
    let n_sub = p.k / 16u;
    let base = row * p.row_bytes;
    var acc: array<f32, 8>;
    for (var s = lid; s < n_sub; s = s + WG) {
        let w = dequant16(base + (s / subs) * BLOCK_BYTES, s % subs);
        for (var t = 0u; t < nt; t = t + 1u) {
            let xo = (t0 + t) * p.k + 16u * s;
            var a = 0.0;
            for (var i = 0u; i < 16u; i = i + 1u) {
                a = a + w[i] * x[xo + i];
            }
            acc[t] = acc[t] + a;
        }
    }
    for (var t = 0u; t < TT; t = t + 1u) {
        part[t * WG + lid] = acc[t];
    }
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lid < s) {
            for (var t = 0u; t < TT; t = t + 1u) {
                part[t * WG + lid] = part[t * WG + lid] + part[t * WG + lid + s];
            }
        }
        workgroupBarrier();
    }
    if (lid < nt) {
        y[(t0 + lid) * p.y_stride + p.y_off + row] = part[lid * WG];
    }
}
