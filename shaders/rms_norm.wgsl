// y[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w for each row r of n elements: one workgroup per row.
// x and y may be the same buffer (the per-head Q/K norms run in place).
#include "common/reduce.wgsl"

struct Params {
    n: u32,
    rows: u32,
    eps: f32,
    _p0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let r = wid.x + wid.y * nwg.x;
    if (r >= p.rows) {
        return;
    }
    let o = r * p.n;
    var ss = 0.0;
    for (var i = lid; i < p.n; i = i + WG) {
        ss = ss + x[o + i] * x[o + i];
    }
    let total = wg_sum(lid, ss);
    let scale = 1.0 / sqrt(total / f32(p.n) + p.eps);
    for (var i = lid; i < p.n; i = i + WG) {
        y[o + i] = (x[o + i] * scale) * w[i];
    }
}
