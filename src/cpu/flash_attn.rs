//! Attention as ggml-cpu's flash-attention kernel computes it (`ggml_compute_forward_flash_attn_ext`
//! on an AVX2 build), for an f16 KV cache. llama-completion and llama-server run this by default
//! on CPUs (`-fa auto` resolves to on), and its rounding differs from the unfused path in
//! `attention` (an online softmax, f16 accumulators), so a user comparing with them needs this one.
//!
//! ggml picks one of three forms per call, each mirrored here for every query row:
//! - a single query row over at least 512 cells: the cells split into one chunk per thread
//!   (`ceil(n_kv / n_threads)` each), an online softmax per chunk, then the chunks merged in order;
//! - 64 query rows or more: tiles of 64 cells, scores in f32 from an f32 query
//!   (`simd_gemm`: one fused multiply-add chain per output), a tile softmax with ggml's `expf`;
//! - otherwise one pass over the cells with the query rounded to f16, `ggml_vec_dot_f16` scores,
//!   libm `expf`, and the value sum kept in f16.
//!
//! `n_kv` is the cell count llama.cpp's graph sees (its cache pads the used cells to 256), which
//! sets the tiles and the chunks. Nothing here owns or writes the cache.

use half::f16;
use half::slice::HalfFloatSliceExt;

use super::attention::{AttnParams, KvView};
use super::ggml_order::vec_dot_f16_order;
use super::ops::{ggml_expf, hsum8};
use super::Pool;
use crate::model::kv_cache::RowsRef;

/// Query rows from which ggml tiles the queries (`GGML_FA_TILE_Q`), and cells per tile
/// (`GGML_FA_TILE_KV`).
const TILE_Q: usize = 64;
const TILE_KV: usize = 64;
/// Fewest cells for which a single query row is split over the threads.
const SPLIT_MIN_CELLS: usize = 512;

/// Whether [`flash_attention`] can run on these cache rows (f16 keys and values).
pub fn supports(kv: &KvView<'_>) -> bool {
    matches!((kv.keys, kv.values), (RowsRef::F16(_), RowsRef::F16(_)))
}

/// `out[t][h]` for the query rows `q` of `n_tok` tokens at positions `pos0..`, as ggml's flash
/// attention computes it with `n_threads` threads over `n_kv` cells. With `as_decode` every row
/// is computed as a one-token call would compute it (speculative verification).
#[allow(clippy::too_many_arguments)]
pub fn flash_attention(
    pool: &Pool,
    p: &AttnParams,
    q: &[f32],
    kv: &KvView<'_>,
    n_kv: usize,
    pos0: usize,
    out: &mut [f32],
    as_decode: bool,
) {
    let (hd, hdv) = (p.head_dim, p.head_dim_v);
    assert!(supports(kv), "flash attention reads an f16 cache");
    assert!(p.n_head_kv > 0 && p.n_head.is_multiple_of(p.n_head_kv));
    let n_tok = q.len() / (p.n_head * hd);
    assert_eq!(out.len(), n_tok * p.n_head * hdv);
    let n_kv = n_kv.max(kv.pos.len());
    let single = n_tok == 1 || as_decode;
    let form = if single && n_kv >= SPLIT_MIN_CELLS {
        Form::Split(pool.n_threads())
    } else if !single && n_tok >= TILE_Q {
        Form::Tiled
    } else {
        Form::OneChunk
    };
    let group = p.n_head / p.n_head_kv;
    pool.for_each_chunk(out, hdv, &|i, o| {
        let (t, h) = (i / p.n_head, i % p.n_head);
        let row = Row {
            q: &q[i * hd..(i + 1) * hd],
            kv,
            p,
            kvh: h / group,
            pos: (pos0 + t) as i64,
            n_kv,
        };
        match form {
            Form::OneChunk => row.one_chunk_final(o),
            Form::Split(nth) => row.split(nth, o),
            Form::Tiled => row.tiled(o),
        }
    });
}

#[derive(Clone, Copy)]
enum Form {
    OneChunk,
    Split(usize),
    Tiled,
}

/// One query row of one head.
struct Row<'a> {
    q: &'a [f32],
    kv: &'a KvView<'a>,
    p: &'a AttnParams,
    kvh: usize,
    pos: i64,
    n_kv: usize,
}

fn round_f16(x: f32) -> f32 {
    f16::from_f32(x).to_f32()
}

/// The running state of an online softmax over some cells: max, sum, and the weighted values.
struct Partial {
    m: f32,
    s: f32,
    v: Vec<f32>,
}

impl Row<'_> {
    /// Whether cell `c` is visible to this row (ggml's mask: 0 if so, -inf if not).
    fn visible(&self, c: usize) -> bool {
        let Some(&cp) = self.kv.pos.get(c) else {
            return false;
        };
        let cp = i64::from(cp);
        cp >= 0 && cp <= self.pos && self.p.window.is_none_or(|w| self.pos - cp < w as i64)
    }

    fn k_row(&self, c: usize, dst: &mut [f32]) {
        let hd = self.p.head_dim;
        let RowsRef::F16(k) = self.kv.keys else {
            unreachable!("f16 keys (checked by `supports`)")
        };
        let off = c * self.p.n_head_kv * hd + self.kvh * hd;
        k[off..off + hd].convert_to_f32_slice(dst);
    }

    fn v_row(&self, c: usize, dst: &mut [f32]) {
        let hdv = self.p.head_dim_v;
        let RowsRef::F16(v) = self.kv.values else {
            unreachable!("f16 values (checked by `supports`)")
        };
        let off = c * self.p.n_head_kv * hdv + self.kvh * hdv;
        v[off..off + hdv].convert_to_f32_slice(dst);
    }

    /// ggml's `flash_attn_ext_f16_one_chunk` over cells `c0..c1`: the query rounded to f16,
    /// `ggml_vec_dot_f16` scores, libm `expf`, the value sum rounded to f16 after every update
    /// (`ggml_vec_scale_f16`, `ggml_vec_mad_f16`), and `S = fma(S, ms, vs)` (GCC contracts it).
    fn one_chunk(&self, c0: usize, c1: usize) -> Partial {
        let (hd, hdv) = (self.p.head_dim, self.p.head_dim_v);
        let qh: Vec<f32> = self.q.iter().map(|&x| round_f16(x)).collect();
        let mut krow = vec![0.0f32; hd];
        let mut vrow = vec![0.0f32; hdv];
        let mut acc = vec![0.0f32; hdv];
        let (mut m, mut s) = (f32::NEG_INFINITY, 0.0f32);
        for c in c0..c1 {
            if !self.visible(c) {
                continue;
            }
            self.k_row(c, &mut krow);
            let score = vec_dot_f16_order(&krow, &qh) * self.p.scale + 0.0;
            let (mut ms, mut vs) = (1.0f32, 1.0f32);
            if score > m {
                let old = m;
                m = score;
                ms = (old - m).exp();
                for a in acc.iter_mut() {
                    *a = round_f16(*a * ms);
                }
            } else {
                vs = (score - m).exp();
            }
            self.v_row(c, &mut vrow);
            for (a, &x) in acc.iter_mut().zip(&vrow) {
                *a = round_f16(x.mul_add(vs, *a));
            }
            s = s.mul_add(ms, vs);
        }
        Partial { m, s, v: acc }
    }

    fn one_chunk_final(&self, out: &mut [f32]) {
        let part = self.one_chunk(0, self.n_kv);
        let inv = if part.s == 0.0 { 0.0 } else { 1.0 / part.s };
        for (o, &v) in out.iter_mut().zip(&part.v) {
            *o = v * inv;
        }
    }

    /// ggml's split-KV decode: `nth` chunks of `ceil(n_kv / nth)` cells, each an unnormalised
    /// [`Row::one_chunk`], merged in chunk order (`ggml_flash_attn_ext_reduce_partials`).
    fn split(&self, nth: usize, out: &mut [f32]) {
        let chunk = self.n_kv.div_ceil(nth.max(1));
        let (mut m, mut s) = (f32::NEG_INFINITY, 0.0f32);
        out.fill(0.0);
        for i in 0..nth.max(1) {
            let c0 = i * chunk;
            if c0 >= self.n_kv {
                continue;
            }
            let part = self.one_chunk(c0, (c0 + chunk).min(self.n_kv));
            if part.s == 0.0 {
                continue;
            }
            let m_new = m.max(part.m);
            let (so, sn) = ((m - m_new).exp(), (part.m - m_new).exp());
            // `a*so + b*sn` with the first product fused (GCC's contraction).
            for (o, &v) in out.iter_mut().zip(&part.v) {
                *o = o.mul_add(so, v * sn);
            }
            s = s.mul_add(so, part.s * sn);
            m = m_new;
        }
        if s != 0.0 {
            let inv = 1.0 / s;
            for o in out.iter_mut() {
                *o *= inv;
            }
        }
    }

    /// ggml's tiled form: per tile of 64 cells, f32 scores as one FMA chain each over the
    /// (unrounded) query, the tile's max, `ggml_vec_soft_max_f32` (ggml's `expf`, an f64 sum of
    /// eight-lane sums), then every value dimension as one FMA chain over the tile's cells.
    fn tiled(&self, out: &mut [f32]) {
        let (hd, hdv) = (self.p.head_dim, self.p.head_dim_v);
        let mut krow = vec![0.0f32; hd];
        let mut vtile = vec![0.0f32; TILE_KV * hdv];
        let mut kq = [0.0f32; TILE_KV];
        let mut acc = vec![0.0f32; hdv];
        let (mut m, mut s) = (f32::NEG_INFINITY, 0.0f32);
        for ic in (0..self.n_kv).step_by(TILE_KV) {
            let n = TILE_KV.min(self.n_kv - ic);
            if !(ic..ic + n).any(|c| self.visible(c)) {
                continue;
            }
            for (tk, e) in kq.iter_mut().enumerate() {
                let c = ic + tk;
                *e = if tk < n && self.visible(c) {
                    self.k_row(c, &mut krow);
                    let dot = krow
                        .iter()
                        .zip(self.q)
                        .fold(0.0f32, |a, (&k, &q)| k.mul_add(q, a));
                    dot * self.p.scale + 0.0
                } else {
                    f32::NEG_INFINITY
                };
            }
            let tile_max = kq.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            if tile_max == f32::NEG_INFINITY {
                continue;
            }
            let m_new = m.max(tile_max);
            if m_new > m {
                let ms = (m - m_new).exp();
                for a in acc.iter_mut() {
                    *a *= ms;
                }
                s *= ms;
            }
            m = m_new;
            let mut sum = 0.0f64;
            for g in kq.chunks_exact_mut(8) {
                for e in g.iter_mut() {
                    *e = ggml_expf(*e - m);
                }
                let lanes: &[f32; 8] = (&*g).try_into().expect("eight lanes");
                sum += f64::from(hsum8(lanes));
            }
            s = (f64::from(s) + sum) as f32;
            for tk in 0..TILE_KV {
                let dst = &mut vtile[tk * hdv..(tk + 1) * hdv];
                if tk < n && kq[tk] != 0.0 {
                    self.v_row(ic + tk, dst);
                } else {
                    dst.fill(0.0);
                }
            }
            for (d, a) in acc.iter_mut().enumerate() {
                for (tk, &w) in kq.iter().enumerate() {
                    *a = w.mul_add(vtile[tk * hdv + d], *a);
                }
            }
        }
        let inv = if s == 0.0 { 0.0 } else { 1.0 / s };
        for (o, &v) in out.iter_mut().zip(&acc) {
            *o = v * inv;
        }
    }
}
