//! AVX2 twins of the k-quant kernels (`quant::{q2_k, q3_k, q4_k, q5_k, q6_k, q8_k}`), same block layouts,
//! same names with the format as suffix.
//!
//! Each dot product computes a block's exact integer sums with 256-bit integer arithmetic and then
//! takes the scalar kernel's per-block float step (`q*_k::accumulate`), so the result is
//! bit-identical to the scalar reference, not just close. The Q8_K quantizer rounds with ggml's
//! `nearest_int` trick lane by lane and is byte-identical to the reference on finite input.
//! The dequantizers do the scalar code's multiply and subtract (no FMA), so their floats are
//! bit-identical too.
//!
//! # Safety
//! Every `pub unsafe fn` here requires a CPU with avx2, fma and f16c
//! (`quant::x86::avx2_available()`); slice lengths are checked inside (panic on mismatch).

use std::arch::x86_64::*;

use super::load_i8x32;
use crate::quant::f16::le_fp16_to_f32;
use crate::quant::q2_k::{self, BlockQ2K};
use crate::quant::q3_k::{self, BlockQ3K};
use crate::quant::q4_k::{self, BlockQ4K};
use crate::quant::q5_k::{self, BlockQ5K};
use crate::quant::q6_k::{self, BlockQ6K};
use crate::quant::q8_k::{check_row, BlockQ8K, QK_K};
use crate::quant::{as_blocks, as_blocks_mut};

/// 32 unsigned bytes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn load_u8x32(p: &[u8]) -> __m256i {
    assert!(p.len() >= 32);
    // SAFETY: at least 32 readable bytes (checked above); loadu has no alignment requirement.
    unsafe { _mm256_loadu_si256(p.as_ptr().cast()) }
}

/// The 32 activations of `y` starting at element `at` (a multiple of 32).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q8_at(y: &BlockQ8K, at: usize) -> __m256i {
    let chunk: &[i8; 32] = y.qs[at..at + 32].try_into().expect("32 activations");
    load_i8x32(chunk)
}

/// Sum of the 8 i32 lanes (exact: callers keep it within i32).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum_i32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
    _mm_cvtsi128_si32(s)
}

/// The 16 bsums of `y` as i16 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn load_bsums(y: &BlockQ8K) -> __m256i {
    // SAFETY: `bsums` is 16 × 2 = 32 contiguous bytes; loadu has no alignment requirement.
    unsafe { _mm256_loadu_si256(y.bsums.as_ptr().cast()) }
}

/// Q4_K/Q5_K's 12 packed bytes → (8 scales, 8 mins), 6 bits each, with four 32-bit moves instead
/// of per-sub-block branches (same packing as `q4_k::scale_min_k4`).
#[inline(always)]
pub(crate) fn scales_mins_k4(s: &[u8; 12]) -> ([u8; 8], [u8; 8]) {
    const KMASK1: u32 = 0x3f3f_3f3f;
    const KMASK2: u32 = 0x0f0f_0f0f;
    const KMASK3: u32 = 0x0303_0303;
    let u = |i: usize| u32::from_le_bytes([s[4 * i], s[4 * i + 1], s[4 * i + 2], s[4 * i + 3]]);
    let (u0, u1, u2) = (u(0), u(1), u(2));
    let sc_lo = u0 & KMASK1;
    let sc_hi = (u2 & KMASK2) | (((u0 >> 6) & KMASK3) << 4);
    let m_lo = u1 & KMASK1;
    let m_hi = ((u2 >> 4) & KMASK2) | (((u1 >> 6) & KMASK3) << 4);
    let join = |a: u32, b: u32| {
        let (a, b) = (a.to_le_bytes(), b.to_le_bytes());
        [a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3]]
    };
    (join(sc_lo, sc_hi), join(m_lo, m_hi))
}

/// Σ_j m[j/2]·bsums[j] for the eight 32-element sub-blocks' mins, exact in i32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn mins_dot_bsums(mins: &[u8; 8], y: &BlockQ8K) -> i32 {
    let b = load_bsums(y);
    // Adjacent bsums pair up into one sub-block's sum: |sum| ≤ 32·128, fits i16.
    let pairs = _mm_hadd_epi16(_mm256_castsi256_si128(b), _mm256_extracti128_si256(b, 1));
    // SAFETY: `mins` is 8 readable bytes.
    let m = _mm_cvtepu8_epi16(unsafe { _mm_loadl_epi64(mins.as_ptr().cast()) });
    let p = _mm_madd_epi16(m, pairs);
    let p = _mm_add_epi32(p, _mm_unpackhi_epi64(p, p));
    let p = _mm_add_epi32(p, _mm_shuffle_epi32(p, 0b10_11_00_01));
    _mm_cvtsi128_si32(p)
}

/// Sub-block scales `2c` and `2c+1` of 16 i8 `scales`, as i16: the first in the low 8 lanes, the
/// second in the high 8 (one 32-activation chunk spans those two 16-element sub-blocks).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn scale_pair(scales: __m128i, c: usize) -> __m256i {
    let c = c as u8;
    let pick = _mm_set_epi64x(
        i64::from_ne_bytes([2 * c + 1; 8]),
        i64::from_ne_bytes([2 * c; 8]),
    );
    _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, pick))
}

/// Q2_K · Q8_K (layout: `quant::q2_k`). Per 32 activations: 2-bit quants × activations with
/// maddubs (≤ 2·3·128 per i16 pair), times the 4-bit sub-block scale with madd; the mins go
/// through Q8_K's bsums.
///
/// # Safety
/// See the module header.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q2_k(n: usize, w: &[u8], a: &[u8]) -> f32 {
    check_row(n, w.len(), std::mem::size_of::<BlockQ2K>(), "Q2_K");
    check_row(n, a.len(), std::mem::size_of::<BlockQ8K>(), "Q8_K");
    let m3 = _mm256_set1_epi8(3);
    let mut sumf = 0.0f32;
    for (x, y) in as_blocks::<BlockQ2K>(w)
        .iter()
        .zip(as_blocks::<BlockQ8K>(a))
    {
        // SAFETY: `scales` is 16 readable bytes.
        let sc_min = unsafe { _mm_loadu_si128(x.scales.as_ptr().cast()) };
        let sc = _mm_and_si128(sc_min, _mm_set1_epi8(0x0F));
        let mins = _mm256_cvtepu8_epi16(_mm_and_si128(
            _mm_srli_epi16(sc_min, 4),
            _mm_set1_epi8(0x0F),
        ));
        let summs = hsum_i32(_mm256_madd_epi16(load_bsums(y), mins));
        let mut acc = _mm256_setzero_si256();
        for h in 0..2 {
            let bits = load_u8x32(&x.qs[32 * h..]);
            for s in 0..4 {
                let q =
                    _mm256_and_si256(_mm256_srl_epi16(bits, _mm_cvtsi32_si128(2 * s as i32)), m3);
                let p = _mm256_maddubs_epi16(q, q8_at(y, 128 * h + 32 * s));
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(scale_pair(sc, 4 * h + s), p));
            }
        }
        sumf = q2_k::accumulate(sumf, x, y, hsum_i32(acc), summs);
    }
    sumf
}

/// Q3_K · Q8_K (layout: `quant::q3_k`). The 3-bit quants are used as `q + 4` (0..7, unsigned
/// for maddubs) and the offset is taken out once per block as `4·Σ (sc_j-32)·bsums_j`, which
/// equals the per-element form because Q8_K's bsums are its quants' sums.
///
/// # Safety
/// See the module header.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q3_k(n: usize, w: &[u8], a: &[u8]) -> f32 {
    check_row(n, w.len(), std::mem::size_of::<BlockQ3K>(), "Q3_K");
    check_row(n, a.len(), std::mem::size_of::<BlockQ8K>(), "Q8_K");
    let m3 = _mm256_set1_epi8(3);
    let four = _mm256_set1_epi8(4);
    let mut sumf = 0.0f32;
    for (x, y) in as_blocks::<BlockQ3K>(w)
        .iter()
        .zip(as_blocks::<BlockQ8K>(a))
    {
        let sc6 = q3_k::unpack_scales(&x.scales);
        // SAFETY: `sc6` is 16 readable bytes.
        let sc = _mm_sub_epi8(
            unsafe { _mm_loadu_si128(sc6.as_ptr().cast()) },
            _mm_set1_epi8(32),
        );
        let offset = _mm256_slli_epi32(
            _mm256_madd_epi16(load_bsums(y), _mm256_cvtepi8_epi16(sc)),
            2,
        );
        let hbits = load_u8x32(&x.hmask);
        let mut acc = _mm256_setzero_si256();
        for h in 0..2 {
            let bits = load_u8x32(&x.qs[32 * h..]);
            for s in 0..4 {
                let bit = _mm256_set1_epi8(1 << (4 * h + s));
                let high =
                    _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hbits, bit), bit), four);
                let low =
                    _mm256_and_si256(_mm256_srl_epi16(bits, _mm_cvtsi32_si128(2 * s as i32)), m3);
                let p =
                    _mm256_maddubs_epi16(_mm256_or_si256(low, high), q8_at(y, 128 * h + 32 * s));
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(scale_pair(sc, 4 * h + s), p));
            }
        }
        sumf = q3_k::accumulate(sumf, x, y, hsum_i32(_mm256_sub_epi32(acc, offset)));
    }
    sumf
}

/// Q4_K · Q8_K (layout: `quant::q4_k`). Per 64 elements: nibbles × activations with maddubs
/// (≤ 2·15·128 per i16 pair), times the sub-block scale with madd into i32 lanes.
///
/// # Safety
/// See the module header.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q4_k(n: usize, w: &[u8], a: &[u8]) -> f32 {
    check_row(n, w.len(), std::mem::size_of::<BlockQ4K>(), "Q4_K");
    check_row(n, a.len(), std::mem::size_of::<BlockQ8K>(), "Q8_K");
    let mut sumf = 0.0f32;
    for (x, y) in as_blocks::<BlockQ4K>(w)
        .iter()
        .zip(as_blocks::<BlockQ8K>(a))
    {
        let (isum, summ) = q4_k_block_sums(x, y);
        sumf = q4_k::accumulate(sumf, x, y, isum, summ);
    }
    sumf
}

/// One Q4_K super-block against its Q8_K activations: (Σ scale·q·a, Σ min·bsum), both exact.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn q4_k_block_sums(x: &BlockQ4K, y: &BlockQ8K) -> (i32, i32) {
    let (isum, imin) = q4_k_chunk_sums(x, y);
    (isum.iter().sum(), imin.iter().sum())
}

/// The lane sums of four vectors at once (integer sums: any order gives the same value), in
/// about the instructions one horizontal sum takes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum4_i32(v: [__m256i; 4]) -> [i32; 4] {
    let h = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
    let s = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
    let mut out = [0i32; 4];
    // SAFETY: `out` holds four i32 (16 bytes).
    unsafe { _mm_storeu_si128(out.as_mut_ptr() as *mut __m128i, s) };
    out
}

/// One Q4_K super-block against its Q8_K activations, per 64-element chunk `k` (sub-blocks `2k`
/// and `2k+1`): (Σ scale·q·a, Σ min·bsum) of that chunk, both exact. ggml's repacked Q4_K gemm
/// converts and accumulates at this granularity.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn q4_k_chunk_sums(x: &BlockQ4K, y: &BlockQ8K) -> ([i32; 4], [i32; 4]) {
    let m4 = _mm256_set1_epi8(0x0F);
    let (sc, m) = scales_mins_k4(&x.scales);
    let bsum = |g: usize| i32::from(i16::from_le_bytes(y.bsums[g]));
    let mut v = [_mm256_setzero_si256(); 4];
    let mut imin = [0i32; 4];
    for k in 0..4 {
        let bits = load_u8x32(&x.qs[32 * k..]);
        let lo = _mm256_and_si256(bits, m4);
        let hi = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4);
        let plo = _mm256_maddubs_epi16(lo, q8_at(y, 64 * k));
        let phi = _mm256_maddubs_epi16(hi, q8_at(y, 64 * k + 32));
        let plo = _mm256_madd_epi16(_mm256_set1_epi16(i16::from(sc[2 * k])), plo);
        let phi = _mm256_madd_epi16(_mm256_set1_epi16(i16::from(sc[2 * k + 1])), phi);
        v[k] = _mm256_add_epi32(plo, phi);
        imin[k] = i32::from(m[2 * k]) * (bsum(4 * k) + bsum(4 * k + 1))
            + i32::from(m[2 * k + 1]) * (bsum(4 * k + 2) + bsum(4 * k + 3));
    }
    (hsum4_i32(v), imin)
}

/// Q5_K · Q8_K (layout: `quant::q5_k`): Q4_K's kernel with bit `2k`/`2k+1` of `qh` adding 16 to
/// the low/high nibbles of chunk `k` (≤ 2·31·128 per i16 pair).
///
/// # Safety
/// See the module header.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q5_k(n: usize, w: &[u8], a: &[u8]) -> f32 {
    check_row(n, w.len(), std::mem::size_of::<BlockQ5K>(), "Q5_K");
    check_row(n, a.len(), std::mem::size_of::<BlockQ8K>(), "Q8_K");
    let m4 = _mm256_set1_epi8(0x0F);
    let sixteen = _mm256_set1_epi8(16);
    let mut sumf = 0.0f32;
    for (x, y) in as_blocks::<BlockQ5K>(w)
        .iter()
        .zip(as_blocks::<BlockQ8K>(a))
    {
        let (sc, m) = scales_mins_k4(&x.scales);
        let summ = mins_dot_bsums(&m, y);
        let hbits = load_u8x32(&x.qh);
        let mut acc = _mm256_setzero_si256();
        for k in 0..4 {
            let bits = load_u8x32(&x.qs[32 * k..]);
            let bl = _mm256_set1_epi8(1 << (2 * k));
            let bh = _mm256_set1_epi8(2 << (2 * k));
            let high = |b: __m256i| {
                _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hbits, b), b), sixteen)
            };
            let lo = _mm256_or_si256(_mm256_and_si256(bits, m4), high(bl));
            let hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(bits, 4), m4), high(bh));
            let plo = _mm256_maddubs_epi16(lo, q8_at(y, 64 * k));
            let phi = _mm256_maddubs_epi16(hi, q8_at(y, 64 * k + 32));
            let plo = _mm256_madd_epi16(_mm256_set1_epi16(i16::from(sc[2 * k])), plo);
            let phi = _mm256_madd_epi16(_mm256_set1_epi16(i16::from(sc[2 * k + 1])), phi);
            acc = _mm256_add_epi32(acc, _mm256_add_epi32(plo, phi));
        }
        sumf = q5_k::accumulate(sumf, x, y, hsum_i32(acc), summ);
    }
    sumf
}

/// Q6_K · Q8_K (layout: `quant::q6_k`). The 6-bit quants are used unsigned (0..63, ≤ 2·63·128 per
/// i16 pair in maddubs) and the offset of 32 is taken out once per block as
/// `32·Σ sc_j·bsums_j`, which equals Σ sc_j·32·Σq8 because Q8_K's bsums are its quants' sums.
///
/// # Safety
/// See the module header.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q6_k(n: usize, w: &[u8], a: &[u8]) -> f32 {
    check_row(n, w.len(), std::mem::size_of::<BlockQ6K>(), "Q6_K");
    check_row(n, a.len(), std::mem::size_of::<BlockQ8K>(), "Q8_K");
    let mut sumf = 0.0f32;
    for (x, y) in as_blocks::<BlockQ6K>(w)
        .iter()
        .zip(as_blocks::<BlockQ8K>(a))
    {
        sumf = q6_k::accumulate(sumf, x, y, hsum_i32(q6_k_lanes(x, y)));
    }
    sumf
}

/// One Q6_K super-block against its Q8_K activations as eight exact i32 lanes, split as ggml-cpu's
/// AVX2 `ggml_vec_dot_q6_K_q8_K` splits them: lane `l` holds bytes `4l..4l+4` of every 32-element
/// chunk times their sub-block scale, minus `32·(bsums[2l]·sc[2l] + bsums[2l+1]·sc[2l+1])`.
/// Their sum is the block's integer dot product; `cpu::ggml_order` needs the lanes themselves.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn q6_k_lanes(x: &BlockQ6K, y: &BlockQ8K) -> __m256i {
    let m15 = _mm256_set1_epi8(15);
    // SAFETY: `scales` is 16 readable bytes.
    let sc8 = unsafe { _mm_loadu_si128(x.scales.as_ptr().cast()) };
    let sc16 = _mm256_cvtepi8_epi16(sc8);
    let offset = _mm256_slli_epi32(_mm256_madd_epi16(load_bsums(y), sc16), 5);
    let mut acc = _mm256_setzero_si256();
    for h in 0..2 {
        let ql1 = load_u8x32(&x.ql[64 * h..]);
        let ql2 = load_u8x32(&x.ql[64 * h + 32..]);
        let qh = load_u8x32(&x.qh[32 * h..]);
        let q = [
            _mm256_or_si256(
                _mm256_and_si256(ql1, m15),
                _mm256_slli_epi16(_mm256_and_si256(qh, _mm256_set1_epi8(3)), 4),
            ),
            _mm256_or_si256(
                _mm256_and_si256(ql2, m15),
                _mm256_slli_epi16(_mm256_and_si256(qh, _mm256_set1_epi8(12)), 2),
            ),
            _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi16(ql1, 4), m15),
                _mm256_and_si256(qh, _mm256_set1_epi8(48)),
            ),
            _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi16(ql2, 4), m15),
                _mm256_srli_epi16(_mm256_and_si256(qh, _mm256_set1_epi8(-64)), 2),
            ),
        ];
        for (k, &q) in q.iter().enumerate() {
            // Elements 128h + 32k + (0..16 | 16..32): sub-blocks 8h + 2k and 8h + 2k + 1.
            let p = _mm256_maddubs_epi16(q, q8_at(y, 128 * h + 32 * k));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(scale_pair(sc8, 4 * h + k), p));
        }
    }
    _mm256_sub_epi32(acc, offset)
}

/// Quantizes whole blocks into Q8_K, byte-identical to `q8_k::quantize_row` for finite input:
/// the same first value of largest magnitude sets the scale, and rounding is ggml's
/// `nearest_int` (add 1.5·2^23, keep the mantissa) in every lane.
///
/// # Safety
/// See the module header.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn quantize_row_q8_k(x: &[f32], bytes: &mut [u8]) {
    check_row(
        x.len(),
        bytes.len(),
        std::mem::size_of::<BlockQ8K>(),
        "Q8_K",
    );
    let sign = _mm256_set1_ps(-0.0);
    for (b, x) in as_blocks_mut::<BlockQ8K>(bytes)
        .iter_mut()
        .zip(x.chunks_exact(QK_K))
    {
        let load = |i: usize| -> __m256 {
            let c: &[f32; 8] = x[8 * i..8 * i + 8].try_into().expect("8 floats");
            // SAFETY: `c` is 8 readable floats; loadu has no alignment requirement.
            unsafe { _mm256_loadu_ps(c.as_ptr()) }
        };
        // max_ps returns its second operand when either is NaN, so NaN never wins, as in the
        // scalar `>` comparison.
        let mut vmax = _mm256_setzero_ps();
        for i in 0..QK_K / 8 {
            vmax = _mm256_max_ps(_mm256_andnot_ps(sign, load(i)), vmax);
        }
        let m = _mm_max_ps(_mm256_castps256_ps128(vmax), _mm256_extractf128_ps(vmax, 1));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        let amax = _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
        if amax == 0.0 {
            *b = BlockQ8K {
                d: [0; 4],
                qs: [0; QK_K],
                bsums: [[0; 2]; QK_K / 16],
            };
            continue;
        }
        let va = _mm256_set1_ps(amax);
        let first = (0..QK_K / 8)
            .find_map(|i| {
                let eq = _mm256_cmp_ps(_mm256_andnot_ps(sign, load(i)), va, _CMP_EQ_OQ);
                let mask = _mm256_movemask_ps(eq);
                (mask != 0).then(|| 8 * i + mask.trailing_zeros() as usize)
            })
            .expect("amax is one of the lanes");
        let iscale = -127.0 / x[first];
        let vs = _mm256_set1_ps(iscale);
        let magic = _mm256_set1_ps(12_582_912.0);
        let round = |v: __m256| -> __m256i {
            let bits = _mm256_castps_si256(_mm256_add_ps(_mm256_mul_ps(vs, v), magic));
            let q = _mm256_sub_epi32(
                _mm256_and_si256(bits, _mm256_set1_epi32(0x007f_ffff)),
                _mm256_set1_epi32(0x0040_0000),
            );
            _mm256_min_epi32(q, _mm256_set1_epi32(127))
        };
        let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        for c in 0..QK_K / 32 {
            let (q0, q1) = (round(load(4 * c)), round(load(4 * c + 1)));
            let (q2, q3) = (round(load(4 * c + 2)), round(load(4 * c + 3)));
            // packs works within 128-bit halves; the permute restores element order.
            let p = _mm256_packs_epi16(_mm256_packs_epi32(q0, q1), _mm256_packs_epi32(q2, q3));
            let p = _mm256_permutevar8x32_epi32(p, order);
            // SAFETY: qs[32c..32c+32] is 32 writable bytes inside the block; storeu has no
            // alignment requirement.
            unsafe { _mm256_storeu_si256(b.qs.as_mut_ptr().add(32 * c).cast(), p) };
        }
        for (s, q) in b.bsums.iter_mut().zip(b.qs.chunks_exact(16)) {
            let sum: i32 = q.iter().map(|&v| i32::from(v)).sum();
            *s = (sum as i16).to_le_bytes();
        }
        b.d = (1.0 / iscale).to_le_bytes();
    }
}

/// Writes `d·q - m` for the 16 bytes `q` (unsigned, or signed when `signed`) to `y[..16]`, a
/// multiply then a subtract per lane exactly as the scalar dequantizers round.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn store16(y: &mut [f32], q: __m128i, signed: bool, d: f32, m: f32) {
    assert!(y.len() >= 16);
    let (dv, mv) = (_mm256_set1_ps(d), _mm256_set1_ps(m));
    for (half, bytes) in [q, _mm_srli_si128(q, 8)].into_iter().enumerate() {
        let wide = if signed {
            _mm256_cvtepi8_epi32(bytes)
        } else {
            _mm256_cvtepu8_epi32(bytes)
        };
        let v = _mm256_sub_ps(_mm256_mul_ps(dv, _mm256_cvtepi32_ps(wide)), mv);
        // SAFETY: y[8·half..8·half + 8] is inside y (len ≥ 16, checked above); storeu has no
        // alignment requirement.
        unsafe { _mm256_storeu_ps(y.as_mut_ptr().add(8 * half), v) };
    }
}

/// Low and high 128-bit halves of `v`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn halves(v: __m256i) -> [__m128i; 2] {
    [_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1)]
}

/// Dequantizes whole Q4_K blocks; bit-identical to `q4_k::dequantize_row`.
///
/// # Safety
/// See the module header.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dequantize_row_q4_k(bytes: &[u8], y: &mut [f32]) {
    check_row(
        y.len(),
        bytes.len(),
        std::mem::size_of::<BlockQ4K>(),
        "Q4_K",
    );
    let m4 = _mm256_set1_epi8(0x0F);
    for (b, y) in as_blocks::<BlockQ4K>(bytes)
        .iter()
        .zip(y.chunks_exact_mut(QK_K))
    {
        let (d, min) = (le_fp16_to_f32(b.d), le_fp16_to_f32(b.dmin));
        let (sc, m) = scales_mins_k4(&b.scales);
        for (k, y) in y.chunks_exact_mut(64).enumerate() {
            let bits = load_u8x32(&b.qs[32 * k..]);
            let lo = _mm256_and_si256(bits, m4);
            let hi = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4);
            for (j, q) in [lo, hi].into_iter().enumerate() {
                let (dj, mj) = (d * f32::from(sc[2 * k + j]), min * f32::from(m[2 * k + j]));
                for (i, part) in halves(q).into_iter().enumerate() {
                    store16(&mut y[32 * j + 16 * i..], part, false, dj, mj);
                }
            }
        }
    }
}

/// Dequantizes whole Q5_K blocks; bit-identical to `q5_k::dequantize_row`.
///
/// # Safety
/// See the module header.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dequantize_row_q5_k(bytes: &[u8], y: &mut [f32]) {
    check_row(
        y.len(),
        bytes.len(),
        std::mem::size_of::<BlockQ5K>(),
        "Q5_K",
    );
    let m4 = _mm256_set1_epi8(0x0F);
    let sixteen = _mm256_set1_epi8(16);
    for (b, y) in as_blocks::<BlockQ5K>(bytes)
        .iter()
        .zip(y.chunks_exact_mut(QK_K))
    {
        let (d, min) = (le_fp16_to_f32(b.d), le_fp16_to_f32(b.dmin));
        let (sc, m) = scales_mins_k4(&b.scales);
        let hbits = load_u8x32(&b.qh);
        for (k, y) in y.chunks_exact_mut(64).enumerate() {
            let bits = load_u8x32(&b.qs[32 * k..]);
            let high = |bit: i8| {
                let b = _mm256_set1_epi8(bit);
                _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hbits, b), b), sixteen)
            };
            let lo = _mm256_or_si256(_mm256_and_si256(bits, m4), high(1 << (2 * k)));
            let hi = _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4),
                high(2 << (2 * k)),
            );
            for (j, q) in [lo, hi].into_iter().enumerate() {
                let (dj, mj) = (d * f32::from(sc[2 * k + j]), min * f32::from(m[2 * k + j]));
                for (i, part) in halves(q).into_iter().enumerate() {
                    store16(&mut y[32 * j + 16 * i..], part, false, dj, mj);
                }
            }
        }
    }
}

/// Dequantizes whole Q6_K blocks; bit-identical to `q6_k::dequantize_row` (`(d·sc)·q`, and
/// subtracting 0.0 changes no value).
///
/// # Safety
/// See the module header.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dequantize_row_q6_k(bytes: &[u8], y: &mut [f32]) {
    check_row(
        y.len(),
        bytes.len(),
        std::mem::size_of::<BlockQ6K>(),
        "Q6_K",
    );
    let m15 = _mm256_set1_epi8(15);
    let m32 = _mm256_set1_epi8(32);
    for (b, y) in as_blocks::<BlockQ6K>(bytes)
        .iter()
        .zip(y.chunks_exact_mut(QK_K))
    {
        let d = le_fp16_to_f32(b.d);
        for (h, y) in y.chunks_exact_mut(128).enumerate() {
            let ql1 = load_u8x32(&b.ql[64 * h..]);
            let ql2 = load_u8x32(&b.ql[64 * h + 32..]);
            let qh = load_u8x32(&b.qh[32 * h..]);
            let q = [
                _mm256_or_si256(
                    _mm256_and_si256(ql1, m15),
                    _mm256_slli_epi16(_mm256_and_si256(qh, _mm256_set1_epi8(3)), 4),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(ql2, m15),
                    _mm256_slli_epi16(_mm256_and_si256(qh, _mm256_set1_epi8(12)), 2),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16(ql1, 4), m15),
                    _mm256_and_si256(qh, _mm256_set1_epi8(48)),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16(ql2, 4), m15),
                    _mm256_srli_epi16(_mm256_and_si256(qh, _mm256_set1_epi8(-64)), 2),
                ),
            ];
            for (k, &q) in q.iter().enumerate() {
                let q = _mm256_sub_epi8(q, m32);
                for (i, part) in halves(q).into_iter().enumerate() {
                    let ds = d * f32::from(b.scales[8 * h + 2 * k + i]);
                    store16(&mut y[32 * k + 16 * i..], part, true, ds, 0.0);
                }
            }
        }
    }
}
