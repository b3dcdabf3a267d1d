// In-place softmax of each row of n elements: one workgroup per row.
#include "common/reduce.wgsl"

struct Params {
    n: u32,
    rows: u32,
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let r = wid.x + wid.y * nwg.x;
    if (r >= p.rows) {
        return;
    }
    let o = r * p.n;
    var m = -3.4028235e38;
    for (var i = lid; i < p.n; i = i + WG) {
        m = max(m, x[o + i]);
    }
    let mx = wg_max(lid, m);
    var s = 0.0;
    for (var i = lid; i < p.n; i = i + WG) {
        let e = exp(x[o + i] - mx);
        x[o + i] = e;
        s = s + e;
    }
    let inv = 1.0 / wg_sum(lid, s);
    for (var i = lid; i < p.n; i = i + WG) {
        x[o + i] = x[o + i] * inv;
    }
}
