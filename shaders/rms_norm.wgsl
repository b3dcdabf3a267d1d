// y[r] = x[r] * scale * w for each row r of n elements, scale = 1 / sqrt(mean(x[r]^2) + eps), as
// crate::cpu::ops::rms_norm rounds it (ggml's): squares in f32 summed in f64 (here a double-f32
// sum, common/exact.wgsl), the mean rounded to f32, sqrt and division correctly rounded. A scale
// one ulp off moves every output by an ulp and flips the 8-bit quantization of a few of them.
// One workgroup per row; x and y may be the same buffer (the per-head Q/K norms run in place).
#include "common/exact.wgsl"

const WG: u32 = 64u;

struct Params {
    n: u32,
    rows: u32,
    eps: f32,
    _p0: u32,   // always 0 (see the squares below)
}

@group(0) @binding(0) var<uniform> p: Params;

// A zero the compiler cannot see (common/exact.wgsl, common/fma_soft.wgsl).
fn opaque_zero() -> u32 {
    return p._p0;
}
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

var<workgroup> part: array<vec2<f32>, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let r = wid.x + wid.y * nwg.x;
    if (r >= p.rows) {
        return;
    }
    let o = r * p.n;
    var ss = vec2<f32>(0.0, 0.0);
    for (var i = lid; i < p.n; i = i + WG) {
        let v = x[o + i];
        // The CPU adds fl(v * v) to its f64 sum. OR-ing in a runtime zero (`_p0`, always 0)
        // makes the rounded product observable, so the compiler cannot fuse the multiply into
        // the sum (lavapipe's LLVM does), which would add the exact square instead.
        let sq = bitcast<f32>(bitcast<u32>(v * v) | p._p0);
        ss = dd_add(ss, vec2<f32>(sq, 0.0));
    }
    part[lid] = ss;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lid < s) {
            part[lid] = dd_add(part[lid], part[lid + s]);
        }
        workgroupBarrier();
    }
    let total = part[0];
    let n = f32(p.n);
    // (hi + lo) / n rounded once to f32: the quotient of hi, corrected by its remainder (from
    // exact partial products, see common/exact.wgsl) plus lo.
    let q = div_exact(total.x, n);
    let qs = split(q);
    let ns = split(n);
    let rem = ((((total.x - qs.x * ns.x) - qs.x * ns.y) - qs.y * ns.x) - qs.y * ns.y) + total.y;
    let mean = q + rem / n;
    let scale = div_exact(1.0, sqrt_exact(mean + p.eps));
    for (var i = lid; i < p.n; i = i + WG) {
        y[o + i] = (x[o + i] * scale) * w[i];
    }
}
