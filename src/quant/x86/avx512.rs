//! AVX-512 (F, BW, VL, VNNI) forms of the prefill and batched-decode tiles for the legacy
//! formats that dominate Gemma's layers (Q5_0, and Q8_0 for the output head and some V
//! projections). They give the bits of the AVX2 kernels, which are ggml's: every (row, token)
//! keeps its own eight float lanes, `acc = fma(dx·dy, f32(lane integers), acc)` per block, then
//! the same horizontal sum. What 512 bits buy is two such chains per instruction: a register
//! holds row `2p` in its low half and row `2p + 1` in its high half, against one token's
//! activations broadcast to both halves, and 32 registers hold a 4x8 tile's sixteen accumulators
//! without spilling (the AVX2 2x4 tile spills on its 16 registers).
//!
//! The lane integers come from one `vpdpbusd` (unsigned x signed bytes, four per lane, no
//! saturation): weights go in offset to unsigned (Q5_0's 0..31 as stored; Q8_0 flipped by 128)
//! and each lane starts from `-offset·Σy` over its four bytes, which is exactly ggml's signed lane
//! sum.
//!
//! # Safety
//! Every `pub unsafe fn` here requires `available()`; slice lengths are checked inside.

use std::arch::x86_64::*;

use super::avx2::hsum_ps;
use super::avx2::legacy::unpack5;
use crate::quant::q5_0::BlockQ5_0;
use crate::quant::q8_0::BlockQ8_0;
use crate::quant::{as_blocks, Block};

/// Whether this CPU runs the kernels here (besides AVX2, FMA and F16C).
pub fn available() -> bool {
    super::avx2_available()
        && is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512vnni")
}

/// Weight rows per tile.
pub const ROWS: usize = 4;
/// Activation rows (tokens) per tile.
pub const TOKS: usize = 8;

/// A weight block as the tile needs it: its scale and where its 32 values are.
trait TileBlock: Block {
    fn d(&self) -> [u8; 2];
    fn quants(&self) -> Quants<'_>;
}

/// The stored values of one block.
enum Quants<'a> {
    /// Q5_0: high bits and nibbles of 0..31 (the value plus 16).
    Five(u32, &'a [u8; 16]),
    /// Q8_0: signed bytes.
    Eight(&'a [i8; 32]),
}

impl TileBlock for BlockQ5_0 {
    fn d(&self) -> [u8; 2] {
        self.d
    }
    fn quants(&self) -> Quants<'_> {
        Quants::Five(u32::from_le_bytes(self.qh), &self.qs)
    }
}

impl TileBlock for BlockQ8_0 {
    fn d(&self) -> [u8; 2] {
        self.d
    }
    fn quants(&self) -> Quants<'_> {
        Quants::Eight(&self.qs)
    }
}

/// A block's 32 values plus their offset (16 for Q5_0, 128 for Q8_0) as unsigned bytes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn unsigned<W: TileBlock>(x: &W) -> __m256i {
    match x.quants() {
        Quants::Five(qh, qs) => unpack5(qh.to_le_bytes(), qs),
        Quants::Eight(qs) => {
            // SAFETY: `qs` is 32 readable bytes; loadu has no alignment requirement.
            let q = unsafe { _mm256_loadu_si256(qs.as_ptr().cast()) };
            _mm256_xor_si256(q, _mm256_set1_epi8(-128))
        }
    }
}

/// Q5_0 · Q8_0, four weight rows (back to back in `w`) against eight activation rows:
/// `out[r * 8 + t]`, each the bits of `legacy::vec_dot_q5_0` for that pair.
///
/// # Safety
/// See the module header.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub unsafe fn tile4x8_q5_0(w: &[u8], a: &[&[u8]], out: &mut [f32]) {
    tile4x8::<BlockQ5_0, 4>(w, a, out)
}

/// Q8_0 · Q8_0, as [`tile4x8_q5_0`] (the bits of `legacy::vec_dot_q8_0`).
///
/// # Safety
/// See the module header.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub unsafe fn tile4x8_q8_0(w: &[u8], a: &[&[u8]], out: &mut [f32]) {
    tile4x8::<BlockQ8_0, 7>(w, a, out)
}

#[inline(always)]
fn f16_bits(h: [u8; 2]) -> u16 {
    u16::from_le_bytes(h)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn tile4x8<W: TileBlock, const SHIFT: u32>(w: &[u8], a: &[&[u8]], out: &mut [f32]) {
    assert_eq!(a.len(), TOKS, "eight activation rows per tile");
    assert_eq!(out.len(), ROWS * TOKS, "a 4x8 tile's outputs");
    let ys: [&[BlockQ8_0]; TOKS] = std::array::from_fn(|t| as_blocks::<BlockQ8_0>(a[t]));
    let nb = ys[0].len();
    assert!(
        ys.iter().all(|y| y.len() == nb),
        "activation rows of one length"
    );
    let xs = as_blocks::<W>(w);
    assert_eq!(xs.len(), ROWS * nb, "four weight rows per tile");
    let ones = _mm512_set1_epi8(1);
    let zero = _mm512_setzero_si512();
    // Lane i of the scale vector takes element 0 (low half) or 1 (high half) of a pair.
    let halves = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    let mut acc = [[_mm512_setzero_ps(); TOKS]; 2];
    for b in 0..nb {
        let dy_bits: [u16; TOKS] = std::array::from_fn(|t| f16_bits(ys[t][b].d));
        let mut dy = [0.0f32; TOKS];
        // SAFETY: `dy_bits` is 16 readable bytes and `dy` 8 writable f32.
        unsafe {
            let h = _mm_loadu_si128(dy_bits.as_ptr().cast());
            _mm256_storeu_ps(dy.as_mut_ptr(), _mm256_cvtph_ps(h));
        }
        let wx: [__m512i; 2] = std::array::from_fn(|p| {
            let (lo, hi) = (&xs[2 * p * nb + b], &xs[(2 * p + 1) * nb + b]);
            let (lo, hi) = (unsigned(lo), unsigned(hi));
            _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1)
        });
        let dx: [__m512; 2] = std::array::from_fn(|p| {
            let pair = u32::from(f16_bits(xs[2 * p * nb + b].d()))
                | u32::from(f16_bits(xs[(2 * p + 1) * nb + b].d())) << 16;
            let v = _mm_cvtph_ps(_mm_cvtsi32_si128(pair as i32));
            _mm512_permutexvar_ps(halves, _mm512_castps128_ps512(v))
        });
        for t in 0..TOKS {
            // SAFETY: a block's 32 quants are readable; loadu has no alignment requirement.
            let qy =
                unsafe { _mm512_broadcast_i64x4(_mm256_loadu_si256(ys[t][b].qs.as_ptr().cast())) };
            let neg = _mm512_sub_epi32(
                zero,
                _mm512_slli_epi32::<SHIFT>(_mm512_dpbusd_epi32(zero, ones, qy)),
            );
            let dyt = _mm512_set1_ps(dy[t]);
            for p in 0..2 {
                let lanes = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(neg, wx[p], qy));
                acc[p][t] = _mm512_fmadd_ps(_mm512_mul_ps(dx[p], dyt), lanes, acc[p][t]);
            }
        }
    }
    for p in 0..2 {
        for t in 0..TOKS {
            let v = acc[p][t];
            let lo = _mm512_castps512_ps256(v);
            let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
            out[2 * p * TOKS + t] = hsum_ps(lo);
            out[(2 * p + 1) * TOKS + t] = hsum_ps(hi);
        }
    }
}
