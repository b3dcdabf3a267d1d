//! Q6_K · Q8_K tiles in ggml-cpu's two orders. The tiled K-quant matmul's
//! (`ggml_order::vec_dot_q6_k_tiled`, prompt batches of 8 or more rows): per (row, token) one
//! scalar chain, `acc = fma(dx·f32(isum), dy, acc)` per super-block over its exact integer sum;
//! as in the Q4_K tile, the sixteen chains of two rows and eight tokens are the lanes of one
//! register (lane `8r + t`), and each pair's integer comes from byte products summed across
//! lanes. The vec_dot's (`ggml_order::vec_dot_q6_k`, single-token decoding): per (row, token)
//! eight lanes `acc = fma(dy·dx, f32(lane integers), acc)` and ggml's horizontal sum; two rows
//! share a register (one per 256-bit half) against a token broadcast to both.
//!
//! # Safety
//! Every `pub unsafe fn` here requires `super::available()`; slice lengths are checked inside.

use std::arch::x86_64::*;

use super::super::avx2::rows4::prefetch_ahead;
use super::{halves_f32, hsum_halves, k_tile_blocks, sum_lanes16, token_major};
use crate::quant::q6_k::BlockQ6K;
use crate::quant::q8_k::BlockQ8K;

/// Weight rows per tile.
pub const ROWS: usize = 2;
/// Activation rows (tokens) per tile.
pub const TOKS: usize = 8;

/// Two weight rows (back to back in `w`) against eight Q8_K activation rows: `out[t * 2 + r]`,
/// each the bits of `ggml_order::vec_dot_q6_k_tiled` for that pair.
///
/// # Safety
/// See the module header.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub unsafe fn tile2x8_q6_k_tiled(w: &[u8], a: &[&[u8]], _aux: &[&[u8]], out: &mut [f32]) {
    let (xs, ys, nb) = k_tile_blocks::<BlockQ6K>(w, a, ROWS, out);
    let mut acc = _mm512_setzero_ps();
    for b in 0..nb {
        let x = [&xs[b], &xs[nb + b]];
        for x in x {
            prefetch_ahead(x);
        }
        let mut dy = [0.0f32; 16];
        for (t, y) in ys.iter().enumerate() {
            dy[t] = y[b].d();
            dy[t + TOKS] = dy[t];
        }
        // SAFETY: `dy` holds 16 f32.
        let dy = unsafe { _mm512_loadu_ps(dy.as_ptr()) };
        let dx = halves_f32(x[0].d, x[1].d);
        let rows = [Row::new(x[0]), Row::new(x[1])];
        let mut v = [_mm512_setzero_si512(); 16];
        for (t, y) in ys.iter().enumerate() {
            let y = &y[b];
            let mut q = [_mm512_setzero_si512(); 4];
            for (j, q) in q.iter_mut().enumerate() {
                // SAFETY: 64 quants from here are readable.
                *q = unsafe { _mm512_loadu_si512(y.qs[64 * j..].as_ptr().cast()) };
            }
            // SAFETY: the 16 bsums are 32 readable bytes.
            let bsums = unsafe { _mm256_loadu_si256(y.bsums.as_ptr().cast()) };
            for (r, row) in rows.iter().enumerate() {
                v[TOKS * r + t] = row.lanes(&q, bsums);
            }
        }
        let isum = _mm512_cvtepi32_ps(sum_lanes16(&v));
        acc = _mm512_fmadd_ps(_mm512_mul_ps(dx, isum), dy, acc);
    }
    // SAFETY: `out` holds 16 f32 (checked above).
    unsafe { _mm512_storeu_ps(out.as_mut_ptr(), token_major(acc)) };
}

/// One weight row's super-block as the tile uses it for every token.
struct Row {
    /// The 256 unsigned 6-bit values (0..63), 64 per register, in element order.
    q: [__m512i; 4],
    /// Register `j`'s sub-block scales as i16, one per 16-bit lane pair group (`sc[4j + l/8]`).
    sc: [__m512i; 4],
    /// The sixteen scales as i16, for the `-32·Σ sc·bsum` offset.
    sc16: __m256i,
}

impl Row {
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    fn new(x: &BlockQ6K) -> Row {
        let m15 = _mm512_set1_epi8(15);
        let mut q = [_mm512_setzero_si512(); 4];
        for h in 0..2 {
            // SAFETY: 64 bytes of `ql` and 32 of `qh` from these offsets are readable.
            let (ql, qh) = unsafe {
                (
                    _mm512_loadu_si512(x.ql[64 * h..].as_ptr().cast()),
                    _mm512_broadcast_i64x4(_mm256_loadu_si256(x.qh[32 * h..].as_ptr().cast())),
                )
            };
            // Elements 128h + 0..32 and + 32..64 take the low nibbles of the two halves of
            // `ql` and bits 0-1 / 2-3 of `qh` as their top bits; + 64..96 and + 96..128 the
            // high nibbles and bits 4-5 / 6-7.
            let mask_lo = _mm512_inserti64x4::<1>(_mm512_set1_epi8(3), _mm256_set1_epi8(12));
            let mask_hi = _mm512_inserti64x4::<1>(_mm512_set1_epi8(48), _mm256_set1_epi8(-64));
            let shl = _mm512_inserti64x4::<1>(_mm512_set1_epi16(4), _mm256_set1_epi16(2));
            let shr = _mm512_inserti64x4::<1>(_mm512_setzero_si512(), _mm256_set1_epi16(2));
            q[2 * h] = _mm512_or_si512(
                _mm512_and_si512(ql, m15),
                _mm512_sllv_epi16(_mm512_and_si512(qh, mask_lo), shl),
            );
            q[2 * h + 1] = _mm512_or_si512(
                _mm512_and_si512(_mm512_srli_epi16::<4>(ql), m15),
                _mm512_srlv_epi16(_mm512_and_si512(qh, mask_hi), shr),
            );
        }
        // SAFETY: `scales` is 16 readable bytes.
        let sc16 = _mm256_cvtepi8_epi16(unsafe { _mm_loadu_si128(x.scales.as_ptr().cast()) });
        let scz = _mm512_castsi256_si512(sc16);
        // Lane l of register j: scale 4j + l / 8.
        let base = _mm512_set_epi16(
            3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0,
            0, 0, 0,
        );
        let mut sc = [_mm512_setzero_si512(); 4];
        for (j, sc) in sc.iter_mut().enumerate() {
            let idx = _mm512_add_epi16(base, _mm512_set1_epi16(4 * j as i16));
            *sc = _mm512_permutexvar_epi16(idx, scz);
        }
        Row { q, sc, sc16 }
    }

    /// Sixteen i32 lanes whose sum is this row's exact super-block integer against `y`
    /// (`Σ sc·q·y - 32·Σ sc·bsum`).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    fn lanes(&self, y: &[__m512i; 4], bsums: __m256i) -> __m512i {
        let mut v = _mm512_setzero_si512();
        for ((q, y), sc) in self.q.iter().zip(y).zip(&self.sc) {
            let p = _mm512_maddubs_epi16(*q, *y);
            v = _mm512_add_epi32(v, _mm512_madd_epi16(p, *sc));
        }
        let offset = _mm256_slli_epi32::<5>(_mm256_madd_epi16(bsums, self.sc16));
        _mm512_sub_epi32(v, _mm512_zextsi256_si512(offset))
    }
}

/// [`tile2x8_q6_k_tiled`]'s shape in the vec_dot's order: `out[t * 2 + r]`, each the bits of
/// `ggml_order::vec_dot_q6_k` (and the AVX2 `vec_dot4_q6_k`) for that pair.
///
/// # Safety
/// See the module header.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub unsafe fn tile2x8_q6_k(w: &[u8], a: &[&[u8]], _aux: &[&[u8]], out: &mut [f32]) {
    let (xs, ys, nb) = k_tile_blocks::<BlockQ6K>(w, a, ROWS, out);
    let mut acc = [_mm512_setzero_ps(); TOKS];
    for b in 0..nb {
        let x = [&xs[b], &xs[nb + b]];
        for x in x {
            prefetch_ahead(x);
        }
        let pair = Pair::new(x);
        let dx = halves_f32(x[0].d, x[1].d);
        for (t, y) in ys.iter().enumerate() {
            let y = &y[b];
            let lanes = _mm512_cvtepi32_ps(pair.lanes(y));
            let d = _mm512_mul_ps(_mm512_set1_ps(y.d()), dx);
            acc[t] = _mm512_fmadd_ps(d, lanes, acc[t]);
        }
    }
    for (t, acc) in acc.iter().enumerate() {
        let (lo, hi) = hsum_halves(*acc);
        out[t * ROWS] = lo;
        out[t * ROWS + 1] = hi;
    }
}

/// Two rows' super-blocks side by side (row 0 in each register's low half): the AVX2 kernel's
/// 32-element chunks and their scale pairs.
struct Pair {
    q: [__m512i; 8],
    sc: [__m512i; 8],
    sc16: __m512i,
}

impl Pair {
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    fn new(x: [&BlockQ6K; 2]) -> Pair {
        let both = |a: &[u8], b: &[u8]| {
            // SAFETY: 32 bytes from each start are readable.
            unsafe {
                _mm512_inserti64x4::<1>(
                    _mm512_castsi256_si512(_mm256_loadu_si256(a.as_ptr().cast())),
                    _mm256_loadu_si256(b.as_ptr().cast()),
                )
            }
        };
        let m15 = _mm512_set1_epi8(15);
        let mut q = [_mm512_setzero_si512(); 8];
        for h in 0..2 {
            let ql1 = both(&x[0].ql[64 * h..], &x[1].ql[64 * h..]);
            let ql2 = both(&x[0].ql[64 * h + 32..], &x[1].ql[64 * h + 32..]);
            let qh = both(&x[0].qh[32 * h..], &x[1].qh[32 * h..]);
            let bits = |mask: i8| _mm512_and_si512(qh, _mm512_set1_epi8(mask));
            q[4 * h] = _mm512_or_si512(_mm512_and_si512(ql1, m15), _mm512_slli_epi16::<4>(bits(3)));
            q[4 * h + 1] =
                _mm512_or_si512(_mm512_and_si512(ql2, m15), _mm512_slli_epi16::<2>(bits(12)));
            q[4 * h + 2] =
                _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16::<4>(ql1), m15), bits(48));
            q[4 * h + 3] = _mm512_or_si512(
                _mm512_and_si512(_mm512_srli_epi16::<4>(ql2), m15),
                _mm512_srli_epi16::<2>(bits(-64)),
            );
        }
        // SAFETY: `scales` is 16 readable bytes.
        let sc8 = x.map(|x| unsafe { _mm_loadu_si128(x.scales.as_ptr().cast()) });
        let sc16 = _mm512_inserti64x4::<1>(
            _mm512_castsi256_si512(_mm256_cvtepi8_epi16(sc8[0])),
            _mm256_cvtepi8_epi16(sc8[1]),
        );
        let mut sc = [_mm512_setzero_si512(); 8];
        for (c, sc) in sc.iter_mut().enumerate() {
            // Chunk c's sixteen i16: eight of scale 2c, eight of scale 2c + 1.
            let c = c as u8;
            let pick = _mm_set_epi64x(
                i64::from_ne_bytes([2 * c + 1; 8]),
                i64::from_ne_bytes([2 * c; 8]),
            );
            *sc = _mm512_inserti64x4::<1>(
                _mm512_castsi256_si512(_mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc8[0], pick))),
                _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc8[1], pick)),
            );
        }
        Pair { q, sc, sc16 }
    }

    /// Both rows' eight lane integers against `y` (`q6_k_lanes`), one row per half.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    fn lanes(&self, y: &BlockQ8K) -> __m512i {
        let mut v = _mm512_setzero_si512();
        for (c, (q, sc)) in self.q.iter().zip(&self.sc).enumerate() {
            // SAFETY: chunk c's 32 activations are readable.
            let yc = unsafe {
                _mm512_broadcast_i64x4(_mm256_loadu_si256(y.qs[32 * c..].as_ptr().cast()))
            };
            v = _mm512_add_epi32(v, _mm512_madd_epi16(_mm512_maddubs_epi16(*q, yc), *sc));
        }
        // SAFETY: the 16 bsums are 32 readable bytes.
        let bs = unsafe { _mm512_broadcast_i64x4(_mm256_loadu_si256(y.bsums.as_ptr().cast())) };
        let offset = _mm512_slli_epi32::<5>(_mm512_madd_epi16(bs, self.sc16));
        _mm512_sub_epi32(v, offset)
    }
}
