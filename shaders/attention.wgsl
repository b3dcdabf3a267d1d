// Causal attention of n_tok query rows (positions pos0..pos0+n_tok) over the cached keys and values
// ([position][kv_head][dim], f16-rounded as the cache stores them), with GQA and an optional sliding
// window, in crate::cpu::attention's arithmetic: q rounded to f16, scores scaled, softmax, weights
// rounded to f16 before the weighted sum of values. One workgroup per (token, head); the scores of
// its row live in the scratch buffer `sc` (n_tok * n_head rows of pos0 + n_tok), so the context
// length is not bounded by workgroup memory.
#include "common/reduce.wgsl"

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
@group(0) @binding(4) var<storage, read_write> sc: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

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
    let sbase = row * (p.pos0 + p.n_tok);
    let qo = row * p.head_dim;
    let ks = p.n_head_kv * p.head_dim;
    let vs = p.n_head_kv * p.head_dim_v;

    var m = -3.4028235e38;
    for (var j = lid; j < n; j = j + WG) {
        let ko = (start + j) * ks + kvh * p.head_dim;
        var d = 0.0;
        for (var i = 0u; i < p.head_dim; i = i + 1u) {
            d = d + quantizeToF16(q[qo + i]) * k[ko + i];
        }
        let s = d * p.scale;
        sc[sbase + j] = s;
        m = max(m, s);
    }
    let mx = wg_max(lid, m);
    var sum = 0.0;
    for (var j = lid; j < n; j = j + WG) {
        let e = exp(sc[sbase + j] - mx);
        sc[sbase + j] = e;
        sum = sum + e;
    }
    let inv = 1.0 / wg_sum(lid, sum);
    storageBarrier();
    workgroupBarrier();
    let oo = row * p.head_dim_v;
    for (var i = lid; i < p.head_dim_v; i = i + WG) {
        var acc = 0.0;
        for (var j = 0u; j < n; j = j + 1u) {
            acc = acc + quantizeToF16(sc[sbase + j] * inv) * v[(start + j) * vs + kvh * p.head_dim_v + i];
        }
        out[oo + i] = acc;
    }
}
