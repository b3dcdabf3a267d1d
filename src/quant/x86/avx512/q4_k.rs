//! Q4_K · Q8_K in the orders of ggml-cpu's repacked Q4_K kernels
//! (`ggml_order::q4_k_repacked_step`). The gemm's: per (row, token), one scalar chain
//! `acc = fma(f32(isum_k), dx·dy, acc)` and one `accm = fma(f32(imin_k), dminx·dy, accm)` per
//! 64-element chunk `k`, the result `acc - accm`; the gemv's (single-token decoding) the same
//! with one step per super-block over the chunks' summed integers. ggml runs those chains one per vector lane; so does this tile, with its sixteen
//! lanes the pairs of two weight rows and eight tokens (lane `8r + t`), so the float steps are
//! one instruction per chunk for all sixteen. The exact chunk integers come from
//! `maddubs`/`madd` (nibbles times bytes, then the sub-block scales), sixteen partial lanes per
//! pair, and a transposing sum that leaves pair `i`'s total in lane `i`.
//!
//! # Safety
//! Every `pub unsafe fn` here requires `super::available()`; slice lengths are checked inside.

use std::arch::x86_64::*;

use super::super::avx2::rows4::prefetch_ahead;
use super::{halves_f32, k_tile_blocks, sum_lanes16, token_major};
use crate::quant::q4_k::BlockQ4K;

/// Weight rows per tile.
pub const ROWS: usize = 2;
/// Activation rows (tokens) per tile.
pub const TOKS: usize = 8;

/// Two weight rows (back to back in `w`) against eight Q8_K activation rows: `out[t * 2 + r]`,
/// each the bits of `ggml_order::vec_dot_q4_k_repacked_gemm` for that pair.
///
/// # Safety
/// See the module header.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub unsafe fn tile2x8_q4_k_gemm(w: &[u8], a: &[&[u8]], _aux: &[&[u8]], out: &mut [f32]) {
    tile2x8::<true>(w, a, out)
}

/// [`tile2x8_q4_k_gemm`] in the gemv's order (`ggml_order::vec_dot_q4_k_repacked`: one step
/// per super-block over its whole integers), which single-token decoding rounds by.
///
/// # Safety
/// See the module header.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub unsafe fn tile2x8_q4_k(w: &[u8], a: &[&[u8]], _aux: &[&[u8]], out: &mut [f32]) {
    tile2x8::<false>(w, a, out)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn tile2x8<const GEMM: bool>(w: &[u8], a: &[&[u8]], out: &mut [f32]) {
    let (xs, ys, nb) = k_tile_blocks::<BlockQ4K>(w, a, ROWS, out);
    let mut acc = _mm512_setzero_ps();
    let mut accm = _mm512_setzero_ps();
    // Lane i = 8r + t reads element 4t + k of the tokens' (or 4r + k of the rows') packed
    // pairs for chunk k.
    let tok_idx = _mm512_set_epi32(28, 24, 20, 16, 12, 8, 4, 0, 28, 24, 20, 16, 12, 8, 4, 0);
    let row_idx = _mm512_set_epi32(4, 4, 4, 4, 4, 4, 4, 4, 0, 0, 0, 0, 0, 0, 0, 0);
    for b in 0..nb {
        let x = [&xs[b], &xs[nb + b]];
        prefetch_ahead(x[0]);
        prefetch_ahead(x[1]);
        let mut dy = [0.0f32; 16];
        for t in 0..TOKS {
            dy[t] = ys[t][b].d();
            dy[t + TOKS] = dy[t];
        }
        // SAFETY: `dy` holds 16 f32.
        let dy = unsafe { _mm512_loadu_ps(dy.as_ptr()) };
        // f32(d)·dy and f32(dmin)·dy per lane: the products the scalar chain forms.
        let d = _mm512_mul_ps(halves_f32(x[0].d, x[1].d), dy);
        let dmin = _mm512_mul_ps(halves_f32(x[0].dmin, x[1].dmin), dy);
        let (sc0, m0) = scales_mins(&x[0].scales);
        let (sc1, m1) = scales_mins(&x[1].scales);
        // Each token's eight sub-block sums (pairs of bsums) as i16, chunk k's two in u32
        // element k; rows' mins the same way.
        let mut s = [0u32; 32];
        for (y, s) in ys.iter().zip(s.chunks_exact_mut(4)) {
            // SAFETY: `bsums` is 32 readable bytes; `s` 16 writable ones.
            unsafe {
                let bs = _mm256_loadu_si256(y[b].bsums.as_ptr().cast());
                let pairs =
                    _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
                _mm_storeu_si128(s.as_mut_ptr().cast(), pairs);
            }
        }
        // SAFETY: `s` holds 32 u32.
        let (s_lo, s_hi) = unsafe {
            (
                _mm512_loadu_si512(s.as_ptr().cast()),
                _mm512_loadu_si512(s.as_ptr().add(16).cast()),
            )
        };
        let mins = _mm512_inserti32x4::<1>(_mm512_castsi128_si512(m0), m1);
        // The gemv sums the chunks' integers before its one float step per super-block.
        let mut v = [_mm512_setzero_si512(); 16];
        let mut imin_sb = _mm512_setzero_si512();
        for k in 0..4 {
            let kk = _mm512_set1_epi32(k as i32);
            let sv = _mm512_permutex2var_epi32(s_lo, _mm512_add_epi32(tok_idx, kk), s_hi);
            let mv = _mm512_permutexvar_epi32(_mm512_add_epi32(row_idx, kk), mins);
            let imin = _mm512_madd_epi16(mv, sv);
            let (q0, s0) = chunk(x[0], &sc0, k);
            let (q1, s1) = chunk(x[1], &sc1, k);
            for t in 0..TOKS {
                // SAFETY: chunk k's 64 activation bytes are readable.
                let y = unsafe { _mm512_loadu_si512(ys[t][b].qs.as_ptr().add(64 * k).cast()) };
                let p0 = _mm512_madd_epi16(_mm512_maddubs_epi16(q0, y), s0);
                let p1 = _mm512_madd_epi16(_mm512_maddubs_epi16(q1, y), s1);
                if GEMM {
                    (v[t], v[TOKS + t]) = (p0, p1);
                } else {
                    v[t] = _mm512_add_epi32(v[t], p0);
                    v[TOKS + t] = _mm512_add_epi32(v[TOKS + t], p1);
                }
            }
            if GEMM {
                let isum = sum_lanes16(&v);
                acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), d, acc);
                accm = _mm512_fmadd_ps(_mm512_cvtepi32_ps(imin), dmin, accm);
            } else {
                imin_sb = _mm512_add_epi32(imin_sb, imin);
            }
        }
        if !GEMM {
            let isum = sum_lanes16(&v);
            acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), d, acc);
            accm = _mm512_fmadd_ps(_mm512_cvtepi32_ps(imin_sb), dmin, accm);
        }
    }
    // SAFETY: `out` holds 16 f32 (checked above).
    unsafe { _mm512_storeu_ps(out.as_mut_ptr(), token_major(_mm512_sub_ps(acc, accm))) };
}

/// Chunk `k` of a row: its 64 nibbles as bytes (low nibbles, then high), and the matching
/// sub-block scales as i16 (`sc[2k]` for the low half, `sc[2k + 1]` for the high).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn chunk(x: &BlockQ4K, sc: &[u8; 8], k: usize) -> (__m512i, __m512i) {
    let m4 = _mm256_set1_epi8(0x0F);
    // SAFETY: chunk k's 32 bytes of nibbles are readable.
    let bits = unsafe { _mm256_loadu_si256(x.qs[32 * k..][..32].as_ptr().cast()) };
    let lo = _mm256_and_si256(bits, m4);
    let hi = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4);
    let q = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi);
    let s = _mm512_inserti64x4::<1>(
        _mm512_set1_epi16(i16::from(sc[2 * k])),
        _mm256_set1_epi16(i16::from(sc[2 * k + 1])),
    );
    (q, s)
}

/// The eight 6-bit sub-block scales and mins of a super-block, each as eight i16 in an xmm
/// (scales also as bytes for broadcasting).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn scales_mins(s: &[u8; 12]) -> ([u8; 8], __m128i) {
    let (sc, m) = super::super::avx2::kquants::scales_mins_k4(s);
    let m = _mm_cvtepu8_epi16(_mm_set_epi64x(0, i64::from_le_bytes(m)));
    (sc, m)
}
