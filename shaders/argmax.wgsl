// Index of the largest of n values, ties to the lowest index (the greedy sampler's rule), written
// to out[0]: one workgroup, so greedy decoding reads back one u32 instead of the logits. NaN never
// wins (comparisons with NaN are false).

const WG: u32 = 256u;

struct Params {
    n: u32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;

var<workgroup> bv: array<f32, 256>;
var<workgroup> bi: array<u32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32) {
    var best = bitcast<f32>(0xff800000u);
    var idx = 0xffffffffu;
    for (var i = lid; i < p.n; i = i + WG) {
        let v = x[i];
        if (v > best || (idx == 0xffffffffu && v == best)) {
            best = v;
            idx = i;
        }
    }
    bv[lid] = best;
    bi[lid] = idx;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lid < s) {
            let ov = bv[lid + s];
            let oi = bi[lid + s];
            if (oi != 0xffffffffu &&
                (bi[lid] == 0xffffffffu || ov > bv[lid] || (ov == bv[lid] && oi < bi[lid]))) {
                bv[lid] = ov;
                bi[lid] = oi;
            }
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        out[0] = bi[0];
    }
}
