// Y[t][y_off + r] = dot(W[r], X[t]) with X already quantized by quantize_act.wgsl (quants `aq`,
// one scale per block in `ad`), as ggml-cpu multiplies quantized weights: integer dots within a
// block are exact (i32), and the format's `row_dot` (from its qdot include) converts and
// accumulates them in the float order of the kernel the CPU forward runs for that row
// (crate::cpu::ggml_order), so each output is bit-identical to the CPU's. Some formats round a
// row of a batch differently from a row decoded alone: token rows t < p.batch_end take the batch
// order (the host applies the CPU's rule for the format and batch size). `row_dot_tile` takes a
// tile of up to TT tokens at once, decoding each weight block once for all of them.
//
// One invocation per (weight row, tile of TT tokens), summing the row's blocks in order: rows
// have few blocks (Gemma's 640-wide rows have 20 of 32 or 2.5 of 256), too few to share among a
// workgroup without idle lanes and barriers. Workgroup g covers rows 64 * (g % row_groups) ..
// of token tile g / row_groups.
#include "common/bytes.wgsl"
#include "weight"
#include "qdot"
#include "common/lanes.wgsl"
#include "common/fma.wgsl"

const WG: u32 = 64u;
const TT: u32 = 8u;

struct Params {
    k: u32,
    m: u32,          // rows in this weight chunk
    row_bytes: u32,
    n_tok: u32,
    y_stride: u32,   // elements between token rows of Y (all rows of the whole matrix)
    y_off: u32,      // index of this chunk's first row in a Y row
    batch_end: u32,  // token rows before this one take the format's batch order
    flags: u32,      // bit 0: Q4_K in the repacked kernels' order (see qdot_q4_k.wgsl)
}

@group(0) @binding(0) var<uniform> p: Params;

// A zero the compiler cannot see (common/fma_soft.wgsl): flags use bit 0 only.
fn opaque_zero() -> u32 {
    return p.flags >> 31u;
}
@group(0) @binding(1) var<storage, read> weights: array<u32>;
// The activation quants, read four at a time (quantize_act.wgsl writes one i32 each; blocks are
// 32 or 256 long, so a block's quants start on a vec4).
@group(0) @binding(2) var<storage, read_write> aq: array<vec4<i32>>;
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
    let out = row_dot_tile(row * p.row_bytes, t0, nt, p.k / BLOCK_ELEMS);
    for (var t = 0u; t < nt; t = t + 1u) {
        y[(t0 + t) * p.y_stride + p.y_off + row] = out[t];
    }
}
