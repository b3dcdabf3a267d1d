//! AVX-512 (F, BW, VL, VNNI) forms of the prefill and batched-decode tiles for the legacy
//! formats that dominate Gemma's layers (Q5_0, and Q8_0 for the output head and some V
//! projections). They give the bits of the AVX2 kernels, which are ggml's: every (row, token)
//! keeps its own eight float lanes, `acc = fma(dx·dy, f32(lane integers), acc)` per block, then
//! the same horizontal sum. What 512 bits buy is two such chains per instruction: a register
//! holds row `2p` in its low half and row `2p + 1` in its high half, against one token's
//! activations broadcast to both halves, and 32 registers hold a 4x8 tile's sixteen accumulators
//! without spilling.
//!
//! The lane integers come from one `vpdpbusd` (unsigned x signed bytes, four per lane, no
//! saturation): weights go in offset to unsigned (Q5_0's 0..31 as stored; Q8_0 flipped by 128)
//! and each lane starts from `-offset·Σy` over its four bytes, which is exactly ggml's signed lane
//! sum.
//!
//! # Safety
//! Every `pub unsafe fn` here requires `super::available()`; slice lengths are checked inside.

use std::arch::x86_64::*;

use super::super::avx2::rows4::{prefetch_ahead, AUX_PER_BLOCK};
use super::{halves_f32, hsum_halves};
use crate::quant::q5_0::BlockQ5_0;
use crate::quant::q8_0::BlockQ8_0;
use crate::quant::{as_blocks, Block};

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

/// Q5_0 · Q8_0, four weight rows (back to back in `w`) against eight activation rows `a` (with
/// their `avx2::rows4::prep_q5_0` in `aux`): `out[t * 4 + r]`, each the bits of
/// `legacy::vec_dot_q5_0` for that pair.
///
/// # Safety
/// See the module header.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub unsafe fn tile4x8_q5_0(w: &[u8], a: &[&[u8]], aux: &[&[u8]], out: &mut [f32]) {
    tile4x8::<BlockQ5_0>(w, a, aux, out)
}

/// Q8_0 · Q8_0, as [`tile4x8_q5_0`] (the bits of `legacy::vec_dot_q8_0`; `aux` from
/// `avx2::rows4::prep_q8_0`).
///
/// # Safety
/// See the module header.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub unsafe fn tile4x8_q8_0(w: &[u8], a: &[&[u8]], aux: &[&[u8]], out: &mut [f32]) {
    tile4x8::<BlockQ8_0>(w, a, aux, out)
}

/// Two rows' blocks `b` as unsigned bytes, row `lo` in the low half of the register.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn unsigned_pair<W: TileBlock>(lo: &W, hi: &W) -> __m512i {
    match (lo.quants(), hi.quants()) {
        (Quants::Five(hl, ql), Quants::Five(hh, qh)) => {
            // SAFETY: `ql` and `qh` are 16 readable bytes each; loadu has no alignment need.
            let q = unsafe { _mm256_loadu2_m128i(qh.as_ptr().cast(), ql.as_ptr().cast()) };
            // 128-bit lanes [ql, qh, ql >> 4, qh >> 4], reordered to [ql, ql >> 4, qh, qh >> 4]:
            // each row's 32 nibbles in element order.
            let both = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(q), _mm256_srli_epi16(q, 4));
            let nib = _mm512_and_si512(
                _mm512_shuffle_i64x2::<0b11_01_10_00>(both, both),
                _mm512_set1_epi8(0x0F),
            );
            // Bit j of the high bits adds 16 to element j.
            let high = u64::from(hl) | u64::from(hh) << 32;
            _mm512_mask_add_epi8(nib, high, nib, _mm512_set1_epi8(16))
        }
        (Quants::Eight(ql), Quants::Eight(qh)) => {
            // SAFETY: `ql` and `qh` are 32 readable bytes each.
            let (l, h) = unsafe {
                (
                    _mm256_loadu_si256(ql.as_ptr().cast()),
                    _mm256_loadu_si256(qh.as_ptr().cast()),
                )
            };
            let q = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(l), h);
            _mm512_xor_si512(q, _mm512_set1_epi8(-128))
        }
        _ => unreachable!("one block type per tile"),
    }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn tile4x8<W: TileBlock>(w: &[u8], a: &[&[u8]], aux: &[&[u8]], out: &mut [f32]) {
    assert!(
        a.len() == TOKS && aux.len() == TOKS,
        "eight activation rows per tile"
    );
    assert_eq!(out.len(), ROWS * TOKS, "a 4x8 tile's outputs");
    let nb = as_blocks::<BlockQ8_0>(a[0]).len();
    let mut ys = [&[][..]; TOKS];
    for t in 0..TOKS {
        ys[t] = as_blocks::<BlockQ8_0>(a[t]);
        assert!(
            ys[t].len() == nb && aux[t].len() == AUX_PER_BLOCK * nb,
            "activation rows of one length"
        );
    }
    let xs = as_blocks::<W>(w);
    assert_eq!(xs.len(), ROWS * nb, "four weight rows per tile");
    let mut acc = [[_mm512_setzero_ps(); TOKS]; 2];
    for b in 0..nb {
        // The output head streams its 178 MB from memory once per step: keep its misses in
        // flight as the four-row decode kernels do.
        for r in 0..ROWS {
            prefetch_ahead(&xs[r * nb + b]);
        }
        let wx = [
            unsigned_pair(&xs[b], &xs[nb + b]),
            unsigned_pair(&xs[2 * nb + b], &xs[3 * nb + b]),
        ];
        let dx = [
            halves_f32(xs[b].d(), xs[nb + b].d()),
            halves_f32(xs[2 * nb + b].d(), xs[3 * nb + b].d()),
        ];
        for t in 0..TOKS {
            let pre = &aux[t][AUX_PER_BLOCK * b..][..AUX_PER_BLOCK];
            // SAFETY: a block's 32 quants and `pre`'s 36 bytes are readable; loadu has no
            // alignment requirement.
            let (qy, neg) = unsafe {
                (
                    _mm512_broadcast_i64x4(_mm256_loadu_si256(ys[t][b].qs.as_ptr().cast())),
                    _mm512_broadcast_i64x4(_mm256_loadu_si256(pre.as_ptr().cast())),
                )
            };
            let dy = _mm512_set1_ps(f32::from_le_bytes([pre[32], pre[33], pre[34], pre[35]]));
            for p in 0..2 {
                let lanes = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(neg, wx[p], qy));
                acc[p][t] = _mm512_fmadd_ps(_mm512_mul_ps(dx[p], dy), lanes, acc[p][t]);
            }
        }
    }
    for p in 0..2 {
        for t in 0..TOKS {
            let (lo, hi) = hsum_halves(acc[p][t]);
            out[t * ROWS + 2 * p] = lo;
            out[t * ROWS + 2 * p + 1] = hi;
        }
    }
}
