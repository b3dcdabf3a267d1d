// Attention as crate::cpu::flash_attn computes it (ggml-cpu's flash_attn_ext, AVX2 build), over
// the cache cells 0..n_kv (positions in `kv_pos`, -1: empty; values f16-rounded as the cache
// stores them), with GQA and an optional sliding window. Two forms, as the host picks them:
//
// chunked (one query row, or fewer than 64): the cells in `n_chunks` chunks of `chunk` (one chunk,
//   or for a single row over 512 cells or more, one per CPU thread). Per chunk an online softmax in
//   cell order: q rounded to f16, ggml_vec_dot_f16 scores times `scale`, libm expf, the value sum
//   rounded to f16 after every update (acc = f16(acc * ms), acc = f16(fma(v, vs, acc))) and
//   S = fma(S, ms, vs); then the chunks merged in order (out = fma(out, so, acc * sn),
//   S = fma(S, so, s * sn)) and out * (1 / S). Each cell's factors depend only on its score and the
//   running maximum before it, so they are computed in parallel once that maximum is known.
// tiled (64 query rows or more): tiles of 64 cells; scores one FMA chain over the dims with the
//   unrounded q; the tile's maximum; ms = libm expf(m - m_new) scaling S and the f32 accumulators;
//   ggml_expf weights summed as eight hsum8 groups in f64 (a double-f32 here); each value dim
//   one FMA chain over the tile's cells; out = acc * (1 / S).
//
// One workgroup of 64 per (token, head) row, rows row0.. of this dispatch; chunked rows use
// 3 * n_kv floats of `scratch` each (scores, then ms and vs per cell), kv_stride apart. Each
// invocation owns up to 4 output dims (head_dim_v <= 256), q sits in workgroup memory
// (head_dim <= 512) and n_chunks <= 256, all checked by the host.
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
    window: u32,     // 0: none; else a query at p sees cells at q with p - q < window
    scale: f32,
    tiled: u32,      // 1: the tiled form
    _p0: u32,        // always 0 (opaque_zero)
    row0: u32,       // the first (token, head) row of this dispatch
    kv_stride: u32,  // scratch floats per row
    n_kv: u32,       // cells attended over (llama.cpp's padded count)
    n_cells: u32,    // cells with an entry in kv_pos
    chunk: u32,      // cells per chunk (chunked form)
    n_chunks: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

fn opaque_zero() -> u32 {
    return p._p0;
}
@group(0) @binding(1) var<storage, read_write> q: array<f32>;
@group(0) @binding(2) var<storage, read_write> k: array<f32>;
@group(0) @binding(3) var<storage, read_write> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read_write> scratch: array<f32>;
@group(0) @binding(6) var<storage, read_write> kv_pos: array<i32>;

var<workgroup> qs: array<f32, 512>;
// The tiled form's q and weights split for fma_x_short (their partners are f16 values).
var<workgroup> q_split: array<vec2<f32>, 512>;
var<workgroup> wts: array<f32, 64>;
var<workgroup> w_split: array<vec2<f32>, 64>;
var<workgroup> chunk_m: array<f32, 256>;
var<workgroup> chunk_s: array<f32, 256>;
var<workgroup> chunk_so: array<f32, 256>;
var<workgroup> chunk_sn: array<f32, 256>;
var<workgroup> total_s: f32;

fn neg_inf() -> f32 {
    return bitcast<f32>(0xff800000u | opaque_zero());
}

fn visible(c: u32, qpos: i32) -> bool {
    if (c >= p.n_cells || c >= p.n_kv) {
        return false;
    }
    let cp = kv_pos[c];
    return cp >= 0 && cp <= qpos && (p.window == 0u || u32(qpos - cp) < p.window);
}

// crate::cpu::ggml_order::vec_dot_f16_order(k, q) over the f16-rounded query: 32 lanes, the tail
// summed in f64 (double-f32 here).
fn score_f16(ko: u32) -> f32 {
    let hd = p.head_dim;
    var l: array<f32, 32>;
    let np = hd & ~31u;
    for (var i = 0u; i < np; i = i + 1u) {
        l[i & 31u] = k[ko + i] * qs[i] + l[i & 31u];
    }
    var s = vec2<f32>(reduce32(l), 0.0);
    for (var i = np; i < hd; i = i + 1u) {
        s = dd_add(s, vec2<f32>(k[ko + i] * qs[i], 0.0));
    }
    return (s.x + s.y) * p.scale + 0.0;
}

// Cells past the last used one are empty: every form leaves its state unchanged there (a cell
// that is not visible has ms 1 and vs 0; a tile of them is skipped), so loops stop at n_used
// while chunks and tiles keep the boundaries n_kv gives them.
fn n_used() -> u32 {
    return min(p.n_kv, p.n_cells);
}

fn chunk_end(i: u32) -> u32 {
    return min((i + 1u) * p.chunk, n_used());
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
    let t = row / p.n_head;
    let h = row % p.n_head;
    let kvh = h / (p.n_head / p.n_head_kv);
    let qpos = i32(p.pos0 + t);
    let ks = p.n_head_kv * p.head_dim;
    let vst = p.n_head_kv * p.head_dim_v;
    let k0 = kvh * p.head_dim;
    let v0 = kvh * p.head_dim_v;
    let qo = row * p.head_dim;
    let tiled = p.tiled != 0u;
    for (var i = lid; i < p.head_dim; i = i + WG) {
        if (tiled) {
            qs[i] = q[qo + i];
            q_split[i] = fma_split(q[qo + i]);
        } else {
            qs[i] = round_f16(q[qo + i]);
        }
    }
    workgroupBarrier();
    var acc: array<f32, 4>;
    var inv = 0.0;

    if (!tiled) {
        let sb = lrow * p.kv_stride;
        let ms_at = sb + p.n_kv;
        let vs_at = sb + 2u * p.n_kv;
        for (var c = lid; c < n_used(); c = c + WG) {
            if (visible(c, qpos)) {
                scratch[sb + c] = score_f16(c * ks + k0);
            }
        }
        storageBarrier();
        // The running maximum before each visible cell, per chunk (into the ms slots).
        if (lid == 0u) {
            for (var i = 0u; i < p.n_chunks; i = i + 1u) {
                var m = neg_inf();
                for (var c = i * p.chunk; c < chunk_end(i); c = c + 1u) {
                    if (visible(c, qpos)) {
                        scratch[ms_at + c] = m;
                        m = max(m, scratch[sb + c]);
                    }
                }
                chunk_m[i] = m;
            }
        }
        storageBarrier();
        // Each cell's factors: a new maximum rescales what came before (ms), any other cell
        // enters with weight vs. Cells not visible leave everything as it is (ms 1, vs 0).
        for (var c = lid; c < n_used(); c = c + WG) {
            var ms = 1.0;
            var vs = 0.0;
            if (visible(c, qpos)) {
                let mp = scratch[ms_at + c];
                let sc = scratch[sb + c];
                if (sc > mp) {
                    ms = libm_expf(mp - sc);
                    vs = 1.0;
                } else {
                    vs = libm_expf(sc - mp);
                }
            }
            scratch[ms_at + c] = ms;
            scratch[vs_at + c] = vs;
        }
        storageBarrier();
        // Each chunk's sum, then the merge factors in chunk order.
        if (lid == 0u) {
            var mt = neg_inf();
            var st = 0.0;
            for (var i = 0u; i < p.n_chunks; i = i + 1u) {
                var s = 0.0;
                for (var c = i * p.chunk; c < chunk_end(i); c = c + 1u) {
                    s = fma_x(s, scratch[ms_at + c], scratch[vs_at + c]);
                }
                chunk_s[i] = s;
                if (s != 0.0) {
                    let m_new = max(mt, chunk_m[i]);
                    let so = libm_expf(mt - m_new);
                    let sn = libm_expf(chunk_m[i] - m_new);
                    chunk_so[i] = so;
                    chunk_sn[i] = sn;
                    st = fma_x(st, so, s * sn);
                    mt = m_new;
                }
            }
            total_s = st;
        }
        workgroupBarrier();
        for (var dm = 0u; dm < 4u; dm = dm + 1u) {
            let d = lid + dm * WG;
            if (d < p.head_dim_v) {
                var o = 0.0;
                for (var i = 0u; i < p.n_chunks; i = i + 1u) {
                    var a = 0.0;
                    for (var c = i * p.chunk; c < chunk_end(i); c = c + 1u) {
                        let ms = scratch[ms_at + c];
                        let vs = scratch[vs_at + c];
                        // a is f16 already: a scale by 1 would round it to itself.
                        if (ms != 1.0) {
                            a = round_f16(a * ms);
                        }
                        if (vs != 0.0) {
                            a = round_f16(fma_x_short(v[c * vst + v0 + d], vs, fma_split(vs), a));
                        }
                    }
                    if (chunk_s[i] != 0.0) {
                        o = fma_x(o, chunk_so[i], a * chunk_sn[i]);
                    }
                }
                acc[dm] = o;
            }
        }
        if (total_s != 0.0) {
            inv = div_exact(1.0, total_s);
        } else {
            inv = 1.0;
        }
    } else {
        var m = neg_inf();
        if (lid == 0u) {
            total_s = 0.0;
        }
        for (var ic = 0u; ic < n_used(); ic = ic + WG) {
            let c = ic + lid;
            let vis = visible(c, qpos);
            var sc = neg_inf();
            if (vis) {
                let ko = c * ks + k0;
                var dot = 0.0;
                for (var d = 0u; d < p.head_dim; d = d + 1u) {
                    dot = fma_x_short(k[ko + d], qs[d], q_split[d], dot);
                }
                sc = dot * p.scale + 0.0;
            }
            let tmax = wg_max(lid, sc);
            if (tmax == neg_inf()) {
                continue;
            }
            let m_new = max(m, tmax);
            if (m_new > m) {
                let ms = libm_expf(m - m_new);
                for (var dm = 0u; dm < 4u; dm = dm + 1u) {
                    acc[dm] = acc[dm] * ms;
                }
                if (lid == 0u) {
                    total_s = total_s * ms;
                }
            }
            m = m_new;
            var w = 0.0;
            if (vis) {
                w = ggml_expf(sc - m);
            }
            wts[lid] = w;
            w_split[lid] = fma_split(w);
            workgroupBarrier();
            if (lid == 0u) {
                var sum = vec2<f32>(0.0, 0.0);
                for (var g = 0u; g < 8u; g = g + 1u) {
                    var l: array<f32, 8>;
                    for (var i = 0u; i < 8u; i = i + 1u) {
                        l[i] = wts[8u * g + i];
                    }
                    sum = dd_add(sum, vec2<f32>(hsum8(l), 0.0));
                }
                let tot = dd_add(vec2<f32>(total_s, 0.0), sum);
                total_s = tot.x;
            }
            for (var dm = 0u; dm < 4u; dm = dm + 1u) {
                let d = lid + dm * WG;
                if (d < p.head_dim_v) {
                    var a = acc[dm];
                    for (var tk = 0u; tk < WG; tk = tk + 1u) {
                        let wt = wts[tk];
                        if (wt != 0.0) {
                            // fma(w, v, a) with the f16 value as the short operand.
                            a = fma_x_short(v[(ic + tk) * vst + v0 + d], wt, w_split[tk], a);
                        }
                    }
                    acc[dm] = a;
                }
            }
            workgroupBarrier();
        }
        workgroupBarrier();
        if (total_s != 0.0) {
            inv = div_exact(1.0, total_s);
        }
    }
    let oo = row * p.head_dim_v;
    for (var dm = 0u; dm < 4u; dm = dm + 1u) {
        let d = lid + dm * WG;
        if (d < p.head_dim_v) {
            out[oo + d] = acc[dm] * inv;
        }
    }
}
