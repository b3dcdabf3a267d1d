// Causal attention of n_tok query rows (positions pos0..pos0+n_tok) over the cached keys and values
// ([position][kv_head][dim], f16-rounded as the cache stores them), with GQA and an optional sliding
// window, in crate::cpu::attention's arithmetic: q rounded to f16, scores scaled, softmax, weights
// rounded to f16 before the weighted sum of values.
//
// One workgroup per (token, head), in two passes over the visible keys so that no buffer grows
// with the context: pass 1 finds the softmax maximum and denominator (an online sum per
// invocation, combined across the workgroup); pass 2 walks the keys in tiles of WG, each
// invocation turning one score into its f16-rounded weight in workgroup memory, then every
// invocation adds the tile's weighted values into the output dims it owns (up to 8 per invocation:
// head_dim_v <= 512, checked by the host).
#include "common/reduce.wgsl"
#include "common/round_f16.wgsl"

struct Params {
    n_head: u32,
    n_head_kv: u32,
    head_dim: u32,
    head_dim_v: u32,
    n_tok: u32,
    pos0: u32,
    window: u32,     // 0: none; else a query at p sees keys j with p - j < window
    scale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> q: array<f32>;
@group(0) @binding(2) var<storage, read_write> k: array<f32>;
@group(0) @binding(3) var<storage, read_write> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

var<workgroup> wts: array<f32, 64>;

fn score(qo: u32, ko: u32) -> f32 {
    var d = 0.0;
    for (var i = 0u; i < p.head_dim; i = i + 1u) {
        d = d + round_f16(q[qo + i]) * k[ko + i];
    }
    return d * p.scale;
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let row = wid.x + wid.y * nwg.x;
    if (row >= p.n_tok * p.n_head) {
        return;
    }
    let t = row / p.n_head;
    let h = row % p.n_head;
    let kvh = h / (p.n_head / p.n_head_kv);
    let pos = p.pos0 + t;
    var start = 0u;
    if (p.window != 0u && pos + 1u > p.window) {
        start = pos + 1u - p.window;
    }
    let n = pos + 1u - start;
    let qo = row * p.head_dim;
    let ks = p.n_head_kv * p.head_dim;
    let vs = p.n_head_kv * p.head_dim_v;
    let k0 = kvh * p.head_dim;
    let v0 = kvh * p.head_dim_v;

    // Pass 1: running max and sum of exp(s - max) per invocation.
    var m = -3.4028235e38;
    var sum = 0.0;
    for (var j = lid; j < n; j = j + WG) {
        let s = score(qo, (start + j) * ks + k0);
        if (s > m) {
            sum = sum * exp(m - s) + 1.0;
            m = s;
        } else {
            sum = sum + exp(s - m);
        }
    }
    let mx = wg_max(lid, m);
    let inv = 1.0 / wg_sum(lid, sum * exp(m - mx));

    // Pass 2: tiles of WG keys.
    var acc: array<f32, 8>;
    for (var j0 = 0u; j0 < n; j0 = j0 + WG) {
        let j = j0 + lid;
        var w = 0.0;
        if (j < n) {
            w = round_f16(exp(score(qo, (start + j) * ks + k0) - mx) * inv);
        }
        wts[lid] = w;
        workgroupBarrier();
        let nt = min(WG, n - j0);
        for (var c = 0u; c < 8u; c = c + 1u) {
            let d = lid + c * WG;
            if (d < p.head_dim_v) {
                var a = acc[c];
                for (var jj = 0u; jj < nt; jj = jj + 1u) {
                    a = a + wts[jj] * v[(start + j0 + jj) * vs + v0 + d];
                }
                acc[c] = a;
            }
        }
        workgroupBarrier();
    }
    let oo = row * p.head_dim_v;
    for (var c = 0u; c < 8u; c = c + 1u) {
        let d = lid + c * WG;
        if (d < p.head_dim_v) {
            out[oo + d] = acc[c];
        }
    }
}
