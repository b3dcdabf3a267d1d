// Y[t][y_off + r] = dot(W[r], X[t]) with X already quantized by quantize_act.wgsl (quants `aq`,
// one scale per block in `ad`), as ggml-cpu multiplies quantized weights: each weight block's
// integer dot with the activation block is exact (i32), then the format's per-block float step
// (`qdot`, from the weight's qdot include) turns it into a float, as crate::quant's vec_dot does.
// Only the order in which block results are summed differs from the CPU (a few ulp of the row's
// dot, where unquantized f32 activations differ by the quantization error itself).
//
// One invocation per (weight row, tile of TT tokens), summing the row's blocks in order: rows
// have few blocks (Gemma's 640-wide rows have 20 of 32 or 2.5 of 256), too few to share among a
// workgroup without idle lanes and barriers. Workgroup g covers rows 64 * (g % row_groups) ..
// of token tile g / row_groups.
#include "common/bytes.wgsl"
#include "weight"
#include "qdot"

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
@group(0) @binding(2) var<storage, read_write> aq: array<i32>;
@group(0) @binding(3) var<storage, read_write> ad: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let g = wid.x + wid.y * nwg.x;
    let row_groups = (p.m + WG - 1u) / WG;
    let row = (g % row_groups) * WG + lid;
    let t0 = (g / row_groups) * TT;
    if (row >= p.m || t0 >= p.n_tok) {
        return;
    }
    let nt = min(TT, p.n_tok - t0);
    let n_blk = p.k / BLOCK_ELEMS;
    let base = row * p.row_bytes;
    for (var t = 0u; t < nt; t = t + 1u) {
        var acc = 0.0;
        let a0 = (t0 + t) * n_blk;
        for (var bi = 0u; bi < n_blk; bi = bi + 1u) {
            acc = acc + qdot(base + bi * BLOCK_BYTES, (a0 + bi) * BLOCK_ELEMS, a0 + bi);
        }
        y[(t0 + t) * p.y_stride + p.y_off + row] = acc;
    }
}
