// Causal attention of n_tok query rows (positions pos0..pos0+n_tok) over the cached keys and values
// ([cell][kv_head][dim], f16-rounded as the cache stores them; cell positions in `kv_pos`, -1: empty), with GQA and an optional sliding
// window, in the arithmetic and float order of crate::cpu::attention (llama.cpp's unfused path):
//   q rounded to f16; scores: for one query row (`single`), ggml_vec_dot_f16's 32 FMA lanes over
//   the dims (lane i % 32) and its reduction; for a batch, 8 FMA lanes and hsum8; times `scale`.
//   softmax: ggml's expf of (score - max), summed per group of 8 cells (cell / 8) with hsum8 and
//   the group sums added in f64 (here a double-f32 sum), weights = e * f32(1 / sum).
//   values: weights rounded to f16, then per output dim FMA lanes over the cells (lane cell % 32
//   for one row, cell % 8 for a batch), reduced as the scores are.
// Cells are visited in cell order, the CPU cache's layout (crate::model::kv_cache), ring included.
// The CPU's FMA steps over scores and values multiply two f16 values (q and k, or a value and an
// f16-rounded weight), whose product is exact in f32: a multiply and an add round the same, fused
// or not. ggml's expf takes fma_x (common/fma.wgsl).
//
// One workgroup of 64 per (token, head) row, rows row0.. of this dispatch (the host splits the
// rows so that their scores fit the scratch `scores`, kv_stride per row): pass 1 computes the
// scores into the scratch and finds their maximum, pass 2 the softmax sum (tiles of 64 cells,
// so that groups of 8 cells are whole), pass 3 the weighted values. Each invocation owns
// up to 4 output dims (head_dim_v <= 256) and q is shared in workgroup memory (head_dim <= 512),
// both checked by the host.
#include "common/reduce.wgsl"
#include "common/round_f16.wgsl"
#include "common/exact.wgsl"
#include "common/lanes.wgsl"
#include "common/fma.wgsl"
#include "common/expf.wgsl"

struct Params {
    n_head: u32,
    n_head_kv: u32,
    head_dim: u32,
    head_dim_v: u32,
    n_tok: u32,
    pos0: u32,
    window: u32,     // 0: none; else a query at p sees keys j with p - j < window
    scale: f32,
    single: u32,     // 1: one query row (the CPU's decode order)
    _p0: u32,        // always 0 (opaque_zero)
    row0: u32,       // the first (token, head) row of this dispatch
    kv_stride: u32,  // scratch floats per row
    n_cells: u32,    // cells with an entry in kv_pos
    _p1: u32,
    _p2: u32,
    _p3: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// A zero the compiler cannot see (common/exact.wgsl, common/fma_soft.wgsl).
fn opaque_zero() -> u32 {
    return p._p0;
}
@group(0) @binding(1) var<storage, read_write> q: array<f32>;
@group(0) @binding(2) var<storage, read_write> k: array<f32>;
@group(0) @binding(3) var<storage, read_write> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read_write> scores: array<f32>;
@group(0) @binding(6) var<storage, read_write> kv_pos: array<i32>;

var<workgroup> qh: array<f32, 512>;
var<workgroup> wts: array<f32, 64>;
var<workgroup> total: vec2<f32>;

fn visible(c: u32, qpos: i32) -> bool {
    if (c >= p.n_cells) {
        return false;
    }
    let cp = kv_pos[c];
    return cp >= 0 && cp <= qpos && (p.window == 0u || u32(qpos - cp) < p.window);
}

fn score(ko: u32) -> f32 {
    let hd = p.head_dim;
    if (p.single != 0u) {
        // crate::cpu::ggml_order::vec_dot_f16_order(k, q): 32 lanes, the tail summed in f64.
        var l: array<f32, 32>;
        let np = hd & ~31u;
        for (var i = 0u; i < np; i = i + 1u) {
            l[i & 31u] = k[ko + i] * qh[i] + l[i & 31u];
        }
        var s = vec2<f32>(reduce32(l), 0.0);
        for (var i = np; i < hd; i = i + 1u) {
            s = dd_add(s, vec2<f32>(k[ko + i] * qh[i], 0.0));
        }
        return (s.x + s.y) * p.scale;
    }
    // crate::cpu::attention::dot_lanes(q, k): 8 lanes, a sequential FMA tail.
    var a: array<f32, 8>;
    let np = hd & ~7u;
    for (var i = 0u; i < np; i = i + 1u) {
        a[i & 7u] = qh[i] * k[ko + i] + a[i & 7u];
    }
    var tail = 0.0;
    for (var i = np; i < hd; i = i + 1u) {
        tail = qh[i] * k[ko + i] + tail;
    }
    return (hsum8(a) + tail) * p.scale;
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let lrow = wid.x + wid.y * nwg.x;
    let row = p.row0 + lrow;
    // Uniform per workgroup: every invocation returns or none does (barriers follow).
    if (row >= p.n_tok * p.n_head) {
        return;
    }
    let sb = lrow * p.kv_stride;
    let t = row / p.n_head;
    let h = row % p.n_head;
    let kvh = h / (p.n_head / p.n_head_kv);
    let qpos = i32(p.pos0 + t);
    let ks = p.n_head_kv * p.head_dim;
    let vs = p.n_head_kv * p.head_dim_v;
    let k0 = kvh * p.head_dim;
    let v0 = kvh * p.head_dim_v;
    let qo = row * p.head_dim;
    for (var i = lid; i < p.head_dim; i = i + WG) {
        qh[i] = round_f16(q[qo + i]);
    }
    workgroupBarrier();

    // Pass 1: the largest score.
    var m = -3.4028235e38;
    for (var c = lid; c < p.n_cells; c = c + WG) {
        if (visible(c, qpos)) {
            let sc = score(c * ks + k0);
            scores[sb + c] = sc;
            m = max(m, sc);
        }
    }
    storageBarrier();
    let mx = wg_max(lid, m);

    // Pass 2: the sum of exponentials, group by group of 8 cells, in cell order.
    var sum = vec2<f32>(0.0, 0.0);
    for (var c0 = 0u; c0 < p.n_cells; c0 = c0 + WG) {
        let c = c0 + lid;
        var e = 0.0;
        if (visible(c, qpos)) {
            e = ggml_expf(scores[sb + c] - mx);
        }
        wts[lid] = e;
        workgroupBarrier();
        if (lid == 0u) {
            for (var g = 0u; g < 8u; g = g + 1u) {
                var l: array<f32, 8>;
                for (var i = 0u; i < 8u; i = i + 1u) {
                    l[i] = wts[8u * g + i];
                }
                sum = dd_add(sum, vec2<f32>(hsum8(l), 0.0));
            }
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        total = sum;
    }
    workgroupBarrier();
    // f32(1 / (hi + lo)): the correctly rounded 1 / hi, corrected by its exact residual and lo.
    let hi = total.x;
    let lo = total.y;
    let q0 = div_exact(1.0, hi);
    let xs = split(q0);
    let ys = split(hi);
    let res = (((1.0 - xs.x * ys.x) - xs.x * ys.y) - xs.y * ys.x) - xs.y * ys.y;
    let inv = q0 + (res - q0 * lo) * q0;

    // Pass 3: weighted values.
    var nl = 8u;
    if (p.single != 0u) {
        nl = 32u;
    }
    var acc: array<f32, 128>;
    for (var c0 = 0u; c0 < p.n_cells; c0 = c0 + WG) {
        let c = c0 + lid;
        var w = 0.0;
        if (visible(c, qpos)) {
            w = round_f16(ggml_expf(scores[sb + c] - mx) * inv);
        }
        wts[lid] = w;
        workgroupBarrier();
        let j1 = min(c0 + WG, p.n_cells);
        for (var dm = 0u; dm < 4u; dm = dm + 1u) {
            let d = lid + dm * WG;
            if (d < p.head_dim_v) {
                // Cells of weight 0 (masked, or softmax underflow) would add exact zeros.
                for (var j = c0; j < j1; j = j + 1u) {
                    let w = wts[j - c0];
                    if (w != 0.0) {
                        let li = dm * 32u + (j % nl);
                        acc[li] = v[j * vs + v0 + d] * w + acc[li];
                    }
                }
            }
        }
        workgroupBarrier();
    }
    let oo = row * p.head_dim_v;
    for (var dm = 0u; dm < 4u; dm = dm + 1u) {
        let d = lid + dm * WG;
        if (d < p.head_dim_v) {
            if (p.single != 0u) {
                var l: array<f32, 32>;
                for (var i = 0u; i < 32u; i = i + 1u) {
                    l[i] = acc[dm * 32u + i];
                }
                out[oo + d] = reduce32(l);
            } else {
                var l: array<f32, 8>;
                for (var i = 0u; i < 8u; i = i + 1u) {
                    l[i] = acc[dm * 32u + i];
                }
                out[oo + d] = hsum8(l);
            }
        }
    }
}
