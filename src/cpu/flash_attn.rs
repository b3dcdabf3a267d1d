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

#[cfg(target_arch = "x86_64")]
mod heads;

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
    let keys_t = match form {
        Form::Tiled => KeysT::new(kv, p, n_kv),
        _ => None,
    };
    #[cfg(target_arch = "x86_64")]
    if let (Some(kt), true) = (&keys_t, heads::available(hdv)) {
        // A token's heads of one kv head at a time, which share every key and value read.
        pool.for_each_chunk(out, group * hdv, &|i, o| {
            let (t, kvh) = (i / p.n_head_kv, i % p.n_head_kv);
            let rows: Vec<Row> = (kvh * group..(kvh + 1) * group)
                .map(|h| Row {
                    q: &q[(t * p.n_head + h) * hd..(t * p.n_head + h + 1) * hd],
                    kv,
                    p,
                    kvh,
                    pos: (pos0 + t) as i64,
                    n_kv,
                })
                .collect();
            for (rows, o) in rows
                .chunks(heads::HEADS)
                .zip(o.chunks_mut(heads::HEADS * hdv))
            {
                heads::tiled_heads(rows, kt, o);
            }
        });
        return;
    }
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
            Form::Tiled => match &keys_t {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `KeysT::new` returns a table only where avx2, fma and f16c exist.
                Some(kt) => unsafe { row.tiled_avx2(kt, o) },
                _ => row.tiled(o),
            },
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

/// The keys of one call widened to f32 and transposed, `[kv_head][dim][cell]` with the cells
/// padded to whole tiles: what lets the tiled form score eight cells per vector while each score
/// stays one FMA chain over the dimensions, in order. Built once per call, read by every row.
struct KeysT {
    data: Vec<f32>,
    /// Cells per dimension row (`n_kv` rounded up to a whole tile).
    ld: usize,
}

impl KeysT {
    /// `None` where the vector form does not apply (no avx2/fma/f16c, value rows not whole lanes).
    fn new(kv: &KvView<'_>, p: &AttnParams, n_kv: usize) -> Option<KeysT> {
        #[cfg(target_arch = "x86_64")]
        {
            let RowsRef::F16(keys) = kv.keys else {
                return None;
            };
            if !crate::quant::x86::avx2_available() || !p.head_dim_v.is_multiple_of(8) {
                return None;
            }
            let (hd, nh) = (p.head_dim, p.n_head_kv);
            // Padded to pairs of tiles, which the AVX-512 scores read at once.
            let ld = n_kv.next_multiple_of(2 * TILE_KV);
            let mut data = vec![0.0f32; nh * hd * ld];
            for c in 0..kv.pos.len().min(n_kv) {
                for h in 0..nh {
                    let row = &keys[(c * nh + h) * hd..(c * nh + h + 1) * hd];
                    for (d, &k) in row.iter().enumerate() {
                        data[(h * hd + d) * ld + c] = k.to_f32();
                    }
                }
            }
            Some(KeysT { data, ld })
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (kv, p, n_kv);
            None
        }
    }
}

/// The tiled form's softmax step for one tile of scores `kq` (masked cells at -inf): rescale the
/// running sum `s` and values `acc` to the new maximum `m`, turn `kq` into `ggml_expf` weights and
/// add their f64 sum of eight-lane sums. False when the whole tile is masked (nothing changes).
/// Inlined so the vector form's FMA target feature reaches `ggml_expf`'s multiply-adds.
#[inline(always)]
fn tile_softmax(kq: &mut [f32; TILE_KV], m: &mut f32, s: &mut f32, acc: &mut [f32]) -> bool {
    let tile_max = kq.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if tile_max == f32::NEG_INFINITY {
        return false;
    }
    rescale(tile_max, m, s, acc);
    let mut sum = 0.0f64;
    for g in kq.chunks_exact_mut(8) {
        for e in g.iter_mut() {
            *e = ggml_expf(*e - *m);
        }
        let lanes: &[f32; 8] = (&*g).try_into().expect("eight lanes");
        sum += f64::from(hsum8(lanes));
    }
    *s = (f64::from(*s) + sum) as f32;
    true
}

/// The online softmax's step to a tile whose max is `tile_max`: the running max `m` becomes
/// the larger, and the sum `s` and values `acc` are scaled by libm's `expf` of the change.
#[inline(always)]
fn rescale(tile_max: f32, m: &mut f32, s: &mut f32, acc: &mut [f32]) {
    let m_new = m.max(tile_max);
    if m_new > *m {
        let ms = (*m - m_new).exp();
        for a in acc.iter_mut() {
            *a *= ms;
        }
        *s *= ms;
    }
    *m = m_new;
}

/// The dot products of `q` with one tile of transposed keys (cells `ic..ic + TILE_KV` of the
/// `[dim][cell]` rows `kt_h`, `ld` cells apart), eight cells per vector and eight chains at once,
/// each lane one FMA chain over the dimensions in order.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
fn scores_avx2(q: &[f32], kt_h: &[f32], ld: usize, ic: usize, dots: &mut [f32; TILE_KV]) {
    use std::arch::x86_64::*;
    let mut a = [_mm256_setzero_ps(); TILE_KV / 8];
    for (d, &q) in q.iter().enumerate() {
        let kd = &kt_h[d * ld + ic..d * ld + ic + TILE_KV];
        let qv = _mm256_set1_ps(q);
        for (g, a) in a.iter_mut().enumerate() {
            // SAFETY: `kd` holds a whole tile of f32 (the cells are padded to tiles).
            let k8 = unsafe { _mm256_loadu_ps(kd.as_ptr().add(8 * g)) };
            *a = _mm256_fmadd_ps(k8, qv, *a);
        }
    }
    for (g, a) in a.iter().enumerate() {
        // SAFETY: each group is eight f32 of `dots`.
        unsafe { _mm256_storeu_ps(dots.as_mut_ptr().add(8 * g), *a) };
    }
}

/// [`scores_avx2`] for two tiles (cells `ic..ic + 2 * TILE_KV`), sixteen cells per vector.
///
/// # Safety
/// Needs `quant::x86::avx512::available()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
unsafe fn scores_avx512(
    q: &[f32],
    kt_h: &[f32],
    ld: usize,
    ic: usize,
    dots: &mut [f32; 2 * TILE_KV],
) {
    use std::arch::x86_64::*;
    let mut a = [_mm512_setzero_ps(); 2 * TILE_KV / 16];
    for (d, &q) in q.iter().enumerate() {
        let kd = &kt_h[d * ld + ic..d * ld + ic + 2 * TILE_KV];
        let qv = _mm512_set1_ps(q);
        for (g, a) in a.iter_mut().enumerate() {
            // SAFETY: `kd` holds two tiles of f32 (the cells are padded to pairs of tiles).
            let k16 = unsafe { _mm512_loadu_ps(kd.as_ptr().add(16 * g)) };
            *a = _mm512_fmadd_ps(k16, qv, *a);
        }
    }
    for (g, a) in a.iter().enumerate() {
        // SAFETY: each group is sixteen f32 of `dots`.
        unsafe { _mm512_storeu_ps(dots.as_mut_ptr().add(16 * g), *a) };
    }
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
        self.cell_row(self.kv.keys, self.p.head_dim, c, dst);
    }

    fn v_row(&self, c: usize, dst: &mut [f32]) {
        self.cell_row(self.kv.values, self.p.head_dim_v, c, dst);
    }

    /// This row's kv head of cell `c` in `rows` (`width` values per head), widened into `dst`.
    fn cell_row(&self, rows: RowsRef<'_>, width: usize, c: usize, dst: &mut [f32]) {
        let RowsRef::F16(r) = rows else {
            unreachable!("an f16 cache (checked by `supports`)")
        };
        let off = (c * self.p.n_head_kv + self.kvh) * width;
        r[off..off + width].convert_to_f32_slice(dst);
    }

    /// ggml's `flash_attn_ext_f16_one_chunk` over cells `c0..c1`: the query rounded to f16,
    /// `ggml_vec_dot_f16` scores, libm `expf`, the value sum rounded to f16 after every update
    /// (`ggml_vec_scale_f16`, `ggml_vec_mad_f16`), and `S = fma(S, ms, vs)` (GCC contracts it).
    fn one_chunk(&self, c0: usize, c1: usize) -> Partial {
        #[cfg(target_arch = "x86_64")]
        if crate::quant::x86::avx2_available() && self.p.head_dim_v.is_multiple_of(8) {
            // SAFETY: the CPU has avx2, fma and f16c (checked just above).
            return unsafe { self.one_chunk_avx2(c0, c1) };
        }
        self.one_chunk_portable(c0, c1)
    }

    /// [`Row::one_chunk`] with ggml's f16 vector helpers (`quant::x86::avx2::f16_rows`), reading
    /// the cache rows in place.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn one_chunk_avx2(&self, c0: usize, c1: usize) -> Partial {
        use crate::quant::x86::avx2::{f16_rows, fma1};
        let (hd, hdv) = (self.p.head_dim, self.p.head_dim_v);
        let (RowsRef::F16(keys), RowsRef::F16(values)) = (self.kv.keys, self.kv.values) else {
            unreachable!("f16 keys and values (checked by `supports`)")
        };
        let qh: Vec<f32> = self.q.iter().map(|&x| round_f16(x)).collect();
        let mut acc = vec![0.0f32; hdv];
        let (mut m, mut s) = (f32::NEG_INFINITY, 0.0f32);
        for c in c0..c1 {
            if !self.visible(c) {
                continue;
            }
            let ko = (c * self.p.n_head_kv + self.kvh) * hd;
            // SAFETY (this and the calls below): avx2, fma and f16c are enabled for this fn.
            let score = unsafe { f16_rows::dot(&keys[ko..ko + hd], &qh) } * self.p.scale + 0.0;
            let (mut ms, mut vs) = (1.0f32, 1.0f32);
            if score > m {
                let old = m;
                m = score;
                ms = (old - m).exp();
                // SAFETY: as above.
                unsafe { f16_rows::scale_round(&mut acc, ms) };
            } else {
                vs = (score - m).exp();
            }
            let vo = (c * self.p.n_head_kv + self.kvh) * hdv;
            // SAFETY: as above.
            unsafe { f16_rows::mad_round(&mut acc, &values[vo..vo + hdv], vs) };
            s = fma1(s, ms, vs);
        }
        Partial { m, s, v: acc }
    }

    fn one_chunk_portable(&self, c0: usize, c1: usize) -> Partial {
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
            if !tile_softmax(&mut kq, &mut m, &mut s, &mut acc) {
                continue;
            }
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

    /// [`Row::tiled`] eight lanes at a time, the same float steps in the same order: scores eight
    /// cells per vector from the transposed keys (each lane one FMA chain over the dimensions),
    /// values eight dimensions per vector (each lane one FMA chain over the tile's cells).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn tiled_avx2(&self, kt: &KeysT, out: &mut [f32]) {
        let (hd, hdv) = (self.p.head_dim, self.p.head_dim_v);
        let RowsRef::F16(values) = self.kv.values else {
            unreachable!("f16 values (checked by `supports`)")
        };
        let kt_h = &kt.data[self.kvh * hd * kt.ld..(self.kvh + 1) * hd * kt.ld];
        let mut kq = [0.0f32; TILE_KV];
        let mut acc = vec![0.0f32; hdv];
        let (mut m, mut s) = (f32::NEG_INFINITY, 0.0f32);
        let wide = crate::quant::x86::avx512::available();
        // Scores do not depend on the softmax, so two tiles' can be formed in one pass: with
        // AVX-512 that is eight 16-cell chains, enough to hide the FMA latency.
        let mut dots = [0.0f32; 2 * TILE_KV];
        for ic2 in (0..self.n_kv).step_by(2 * TILE_KV) {
            let tiles = [ic2, ic2 + TILE_KV].map(|ic| {
                let n = TILE_KV.min(self.n_kv.saturating_sub(ic));
                (ic, n, (ic..ic + n).any(|c| self.visible(c)))
            });
            if wide && tiles[0].2 && tiles[1].2 {
                // SAFETY: just checked; `ld` is a multiple of two tiles.
                unsafe { scores_avx512(self.q, kt_h, kt.ld, ic2, &mut dots) };
            } else {
                for (i, &(ic, _, visible)) in tiles.iter().enumerate() {
                    if visible {
                        let dots = (&mut dots[i * TILE_KV..(i + 1) * TILE_KV]).try_into();
                        scores_avx2(self.q, kt_h, kt.ld, ic, dots.expect("one tile"));
                    }
                }
            }
            for (i, &(ic, n, visible)) in tiles.iter().enumerate() {
                if !visible {
                    continue;
                }
                let dots = &dots[i * TILE_KV..(i + 1) * TILE_KV];
                for (tk, (e, &dot)) in kq.iter_mut().zip(dots).enumerate() {
                    *e = if tk < n && self.visible(ic + tk) {
                        dot * self.p.scale + 0.0
                    } else {
                        f32::NEG_INFINITY
                    };
                }
                if !tile_softmax(&mut kq, &mut m, &mut s, &mut acc) {
                    continue;
                }
                self.add_values(values, &kq, ic, n, &mut acc);
            }
        }
        let inv = if s == 0.0 { 0.0 } else { 1.0 / s };
        for (o, &v) in out.iter_mut().zip(&acc) {
            *o = v * inv;
        }
    }

    /// `acc[d] = fma(w_tk, v_tk[d], acc[d])` over the tile's cells `tk` in order (weights `kq`,
    /// `n` cells from `ic`): each dimension one chain, as in the scalar form. With AVX-512 and a
    /// value width of a multiple of 128, eight 16-dimension chains at once; else AVX2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn add_values(
        &self,
        values: &[f16],
        kq: &[f32; TILE_KV],
        ic: usize,
        n: usize,
        acc: &mut [f32],
    ) {
        if self.p.head_dim_v.is_multiple_of(128) && crate::quant::x86::avx512::available() {
            // SAFETY: just checked.
            unsafe { self.add_values_avx512(values, kq, ic, n, acc) }
        } else {
            self.add_values_avx2(values, kq, ic, n, acc)
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn add_values_avx2(
        &self,
        values: &[f16],
        kq: &[f32; TILE_KV],
        ic: usize,
        n: usize,
        acc: &mut [f32],
    ) {
        use std::arch::x86_64::*;
        let hdv = self.p.head_dim_v;
        // Four eight-dimension groups at once (independent chains, as for the scores), each
        // lane one chain over the tile's cells in order.
        const GROUPS: usize = 4;
        let zero = _mm256_setzero_ps();
        for d0 in (0..hdv).step_by(8 * GROUPS) {
            let ng = GROUPS.min((hdv - d0) / 8);
            let mut a = [zero; GROUPS];
            for (j, a) in a.iter_mut().enumerate().take(ng) {
                // SAFETY: group j is eight f32 of `acc` (hdv is a multiple of 8).
                *a = unsafe { _mm256_loadu_ps(acc.as_ptr().add(d0 + 8 * j)) };
            }
            for (tk, &w) in kq.iter().enumerate() {
                let wv = _mm256_set1_ps(w);
                // A cell left out contributes `w * 0`, as the zeroed row of the scalar form.
                if tk < n && w != 0.0 {
                    let vo = ((ic + tk) * self.p.n_head_kv + self.kvh) * hdv + d0;
                    let v8 = &values[vo..vo + 8 * ng];
                    for (j, a) in a.iter_mut().enumerate().take(ng) {
                        // SAFETY: `v8` holds eight f16 (16 bytes) at 8 * j.
                        let v = _mm256_cvtph_ps(unsafe {
                            _mm_loadu_si128(v8.as_ptr().add(8 * j) as *const __m128i)
                        });
                        *a = _mm256_fmadd_ps(wv, v, *a);
                    }
                } else {
                    for a in a.iter_mut().take(ng) {
                        *a = _mm256_fmadd_ps(wv, zero, *a);
                    }
                }
            }
            for (j, a) in a.iter().enumerate().take(ng) {
                // SAFETY: as above.
                unsafe { _mm256_storeu_ps(acc.as_mut_ptr().add(d0 + 8 * j), *a) };
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma,f16c,avx512f")]
    fn add_values_avx512(
        &self,
        values: &[f16],
        kq: &[f32; TILE_KV],
        ic: usize,
        n: usize,
        acc: &mut [f32],
    ) {
        use std::arch::x86_64::*;
        const GROUPS: usize = 8;
        let hdv = self.p.head_dim_v;
        let zero = _mm512_setzero_ps();
        for d0 in (0..hdv).step_by(16 * GROUPS) {
            let mut a = [zero; GROUPS];
            for (j, a) in a.iter_mut().enumerate() {
                // SAFETY: group j is sixteen f32 of `acc` (hdv is a multiple of 128).
                *a = unsafe { _mm512_loadu_ps(acc.as_ptr().add(d0 + 16 * j)) };
            }
            for (tk, &w) in kq.iter().enumerate() {
                let wv = _mm512_set1_ps(w);
                // A cell left out contributes `w * 0`, as the zeroed row of the scalar form.
                if tk < n && w != 0.0 {
                    let vo = ((ic + tk) * self.p.n_head_kv + self.kvh) * hdv + d0;
                    let v16 = &values[vo..vo + 16 * GROUPS];
                    for (j, a) in a.iter_mut().enumerate() {
                        // SAFETY: `v16` holds sixteen f16 (32 bytes) at 16 * j.
                        let v = _mm512_cvtph_ps(unsafe {
                            _mm256_loadu_si256(v16.as_ptr().add(16 * j) as *const __m256i)
                        });
                        *a = _mm512_fmadd_ps(wv, v, *a);
                    }
                } else {
                    for a in a.iter_mut() {
                        *a = _mm512_fmadd_ps(wv, zero, *a);
                    }
                }
            }
            for (j, a) in a.iter().enumerate() {
                // SAFETY: as above.
                unsafe { _mm512_storeu_ps(acc.as_mut_ptr().add(d0 + 16 * j), *a) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f16s(n: usize, seed: u64) -> Vec<f16> {
        crate::cpu::test_values(n, seed)
            .iter()
            .map(|&v| f16::from_f32(v * 2.0))
            .collect()
    }

    /// The vector forms of the one-pass and tiled loops give the bits of the scalar ones (which the greedy
    /// comparisons with llama.cpp cover), for a head size with a tail past 32 lanes and one without.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn vector_forms_match_scalar_bits() {
        if !crate::quant::x86::avx2_available() {
            eprintln!("skipped: no avx2/fma/f16c on this CPU");
            return;
        }
        for (hd, n_kv) in [(256, 300), (72, 97)] {
            let p = AttnParams {
                n_head: 4,
                n_head_kv: 2,
                head_dim: hd,
                head_dim_v: hd,
                scale: 0.125,
                window: Some(64),
            };
            let keys = f16s(n_kv * 2 * hd, 1);
            let values = f16s(n_kv * 2 * hd, 2);
            let q: Vec<f32> = f16s(hd, 3).iter().map(|x| x.to_f32() * 3.0).collect();
            let pos: Vec<i32> = (0..n_kv as i32)
                .map(|c| if c % 17 == 5 { -1 } else { c })
                .collect();
            let kv = KvView {
                pos: &pos,
                keys: RowsRef::F16(&keys),
                values: RowsRef::F16(&values),
            };
            for (kvh, at) in [(0, n_kv - 1), (1, n_kv / 2)] {
                let row = Row {
                    q: &q,
                    kv: &kv,
                    p: &p,
                    kvh,
                    pos: at as i64,
                    n_kv,
                };
                let kt = KeysT::new(&kv, &p, n_kv).expect("avx2 table");
                let (mut tiled, mut tiled_fast) = (vec![0.0f32; hd], vec![0.0f32; hd]);
                row.tiled(&mut tiled);
                // SAFETY: avx2, fma and f16c were checked at the top.
                unsafe { row.tiled_avx2(&kt, &mut tiled_fast) };
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&tiled_fast), bits(&tiled), "tiled, hd {hd}");
                if heads::available(hd) {
                    // Up to four heads at once, each its own query, against one at a time.
                    let qs: Vec<Vec<f32>> = (0..4u64)
                        .map(|h| f16s(hd, 10 + h).iter().map(|x| x.to_f32() * 3.0).collect())
                        .collect();
                    for n_rows in 1..=4 {
                        let rows: Vec<Row> =
                            qs[..n_rows].iter().map(|q| Row { q, ..row }).collect();
                        let mut together = vec![f32::NAN; n_rows * hd];
                        heads::tiled_heads(&rows, &kt, &mut together);
                        for (r, got) in rows.iter().zip(together.chunks(hd)) {
                            let mut alone = vec![0.0f32; hd];
                            // SAFETY: as above.
                            unsafe { r.tiled_avx2(&kt, &mut alone) };
                            assert_eq!(bits(got), bits(&alone), "{n_rows} heads, hd {hd}");
                        }
                    }
                }
                let fast = row.one_chunk(0, n_kv);
                let slow = row.one_chunk_portable(0, n_kv);
                assert_eq!(fast.m.to_bits(), slow.m.to_bits(), "hd {hd}");
                assert_eq!(fast.s.to_bits(), slow.s.to_bits(), "hd {hd}");
                assert_eq!(bits(&fast.v), bits(&slow.v), "hd {hd}");
            }
        }
    }
}
