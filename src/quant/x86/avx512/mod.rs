//! AVX-512 (F, BW, VL, VNNI) tiles for prefill and batched decode, one file per weight format.
//! Each gives the bits of the AVX2 kernel it stands beside (and so of ggml's): the lane
//! integers are exact in any order, and every (row, token) keeps its own float chain. Chosen
//! at run time (`available()`) by `cpu::ggml_order`.

pub mod legacy;
pub mod q4_k;
pub mod q6_k;

use std::arch::x86_64::*;

use crate::quant::q8_k::BlockQ8K;
use crate::quant::{as_blocks, Block};

/// Whether this CPU runs the kernels here (besides AVX2, FMA and F16C), and they are allowed.
pub fn available() -> bool {
    super::avx2_available()
        && allowed()
        && is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512vnni")
}

/// False when the environment sets `INFER_AVX512=0`: every product then takes the AVX2
/// kernels (the same numbers), as on a CPU without AVX-512, so that this machine can measure
/// that path against an AVX2 build of llama.cpp.
pub fn allowed() -> bool {
    static ALLOWED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ALLOWED.get_or_init(|| std::env::var_os("INFER_AVX512").is_none_or(|v| v != "0"))
}

/// Two f16 values as f32, `lo` in lanes 0..8 and `hi` in lanes 8..16: two rows' scales for the
/// two halves of a register (or the two rows of a 2x8 tile's lanes).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn halves_f32(lo: [u8; 2], hi: [u8; 2]) -> __m512 {
    let pair = u32::from(u16::from_le_bytes(lo)) | u32::from(u16::from_le_bytes(hi)) << 16;
    let v = _mm_cvtph_ps(_mm_cvtsi32_si128(pair as i32));
    let halves = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    _mm512_permutexvar_ps(halves, _mm512_castps128_ps512(v))
}

/// A k-quant tile's operands: `rows` weight rows of `W` back to back in `w`, and the eight Q8_K
/// activation rows `a` as blocks, all of one length `nb` (checked), for `out` of `rows * 8`.
fn k_tile_blocks<'a, W: Block>(
    w: &'a [u8],
    a: &[&'a [u8]],
    rows: usize,
    out: &[f32],
) -> (&'a [W], [&'a [BlockQ8K]; 8], usize) {
    assert_eq!(a.len(), 8, "eight activation rows per tile");
    assert_eq!(out.len(), rows * 8, "the tile's outputs");
    let mut ys = [&[][..]; 8];
    for (y, a) in ys.iter_mut().zip(a) {
        *y = as_blocks::<BlockQ8K>(a);
    }
    let nb = ys[0].len();
    assert!(
        ys.iter().all(|y| y.len() == nb),
        "activation rows of one length"
    );
    let xs = as_blocks::<W>(w);
    assert_eq!(xs.len(), rows * nb, "the tile's weight rows");
    (xs, ys, nb)
}

/// A 2x8 tile's lanes (`8r + t`) in the tiles' output order (`2t + r`): each token's rows
/// side by side, as the product's output rows lie.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn token_major(v: __m512) -> __m512 {
    let idx = _mm512_set_epi32(15, 7, 14, 6, 13, 5, 12, 4, 11, 3, 10, 2, 9, 1, 8, 0);
    _mm512_permutexvar_ps(idx, v)
}

/// ggml's eight-lane horizontal sum of each 256-bit half: two (row, token) chains that shared a
/// register.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn hsum_halves(v: __m512) -> (f32, f32) {
    let s = hsum8_halves(v);
    (
        _mm512_cvtss_f32(s),
        _mm_cvtss_f32(_mm512_extractf32x4_ps::<2>(s)),
    )
}

/// ggml's `hsum_float_8` of each eight-lane half of `a`, in lanes 0 and 8, in registers: the
/// same additions in the same order (lanes `i + 4` onto lanes `i`, then lane 2 onto 0 and 3
/// onto 1, then lane 1 onto 0; an addition's swapped operands give the same bits). Kernels end
/// with it: a lane sum through the stack had cost the float gemm a third of its time.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
pub(crate) fn hsum8_halves(a: __m512) -> __m512 {
    let r = _mm512_add_ps(a, _mm512_shuffle_f32x4::<0b10_11_00_01>(a, a));
    let r = _mm512_add_ps(r, _mm512_permute_ps::<0b01_00_11_10>(r));
    _mm512_add_ps(r, _mm512_permute_ps::<0b10_11_00_01>(r))
}

/// `out[i]` = the sum of `v[i]`'s sixteen lanes, exact (wrapping) in i32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) fn sum_lanes16(v: &[__m512i; 16]) -> __m512i {
    // Within each 128-bit lane: pairs (2j, 2j+1) → [a, b, a, b] partials, then groups of four
    // → [v4m, v4m+1, v4m+2, v4m+3] partials; then the four 128-bit lanes are summed across
    // registers so that group m ends in 128-bit lane m.
    let mut c = [_mm512_setzero_si512(); 8];
    for j in 0..8 {
        let (a, b) = (v[2 * j], v[2 * j + 1]);
        c[j] = _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
    }
    let mut e = [_mm512_setzero_si512(); 4];
    for m in 0..4 {
        let (a, b) = (c[2 * m], c[2 * m + 1]);
        e[m] = _mm512_add_epi32(_mm512_unpacklo_epi64(a, b), _mm512_unpackhi_epi64(a, b));
    }
    fold(fold(e[0], e[1]), fold(e[2], e[3]))
}

/// `[a0 + a1, a2 + a3, b0 + b1, b2 + b3]` over 128-bit lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn fold(a: __m512i, b: __m512i) -> __m512i {
    _mm512_add_epi32(
        _mm512_shuffle_i64x2::<0b10_00_10_00>(a, b),
        _mm512_shuffle_i64x2::<0b11_01_11_01>(a, b),
    )
}
