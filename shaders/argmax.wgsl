// Index of the largest of n values, ties to the lowest index (the greedy sampler's rule), written
// to out[0]: one workgroup, so greedy decoding reads back one u32 instead of the logits. NaN never
// wins (comparisons with NaN are false). The workgroup step (`reduce_best`) uses subgroups where
// the adapter has them (common/argmax_subgroup.wgsl), else a tree (common/argmax_wg.wgsl).

const WG: u32 = 256u;
const NONE: u32 = 0xffffffffu;

#include "common/argmax_reduce.wgsl"

struct Params {
    n: u32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32) {
    var best = bitcast<f32>(0xff800000u);
    var idx = NONE;
    for (var i = lid; i < p.n; i = i + WG) {
        let v = x[i];
        if (v > best || (idx == NONE && v == best)) {
            best = v;
            idx = i;
        }
    }
    let r = reduce_best(lid, best, idx);
    if (lid == 0u) {
        out[0] = r;
    }
}
