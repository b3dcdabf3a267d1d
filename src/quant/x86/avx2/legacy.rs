//! AVX2 twins of the float and legacy block kernels (`quant::{f32, f16, bf16, q4_0, q4_1, q5_0,
//! q5_1, q8_0, q8_1}`), same block layouts, same names with the format as suffix.
//!
//! Dot products follow ggml's AVX2 order (per-block integer sums, scaled and accumulated in 8 f32
//! lanes with FMA, one horizontal sum at the end), so they differ from the scalar running sum by
//! rounding only. Dequantizers and quantizers are bit-identical to the scalar reference.
//!
//! # Safety
//! Every `pub unsafe fn` here requires a CPU with avx2, fma and f16c
//! (`quant::x86::avx2_available()`); slice lengths are checked inside (panic on mismatch).

use std::arch::x86_64::*;

use super::{
    bytes_from_bits, fp16_product, hsum_ps, load_i8x32, mul_sum_i8_ps, mul_sum_us8_ps,
    unpack_nibbles,
};
use crate::quant::f16::f32_to_le_fp16;
use crate::quant::q4_0::BlockQ4_0;
use crate::quant::q4_1::BlockQ4_1;
use crate::quant::q5_0::BlockQ5_0;
use crate::quant::q5_1::BlockQ5_1;
use crate::quant::q8_0::{self, BlockQ8_0};
use crate::quant::q8_1::BlockQ8_1;
use crate::quant::{as_blocks_mut, expect_blocks};
use crate::quant::{bf16 as bf16_scalar, f16 as f16_scalar, f32 as f32_scalar};

const QK: usize = 32;

/// F32 · F32, 4 × 8 lanes of FMA (ggml's AVX2 `ggml_vec_dot_f32` shape), scalar tail.
///
/// # Safety
/// See the module header.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_f32(n: usize, w: &[u8], a: &[u8]) -> f32 {
    assert!(
        w.len() == n * 4 && a.len() == n * 4,
        "F32 vec_dot row bytes"
    );
    let (pw, pa) = (w.as_ptr(), a.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (j, acc) in acc.iter_mut().enumerate() {
            // SAFETY: i + 8j + 8 ≤ n elements, both rows hold 4n bytes.
            let (x, y) = unsafe {
                (
                    _mm256_loadu_ps(pw.add((i + 8 * j) * 4).cast()),
                    _mm256_loadu_ps(pa.add((i + 8 * j) * 4).cast()),
                )
            };
            *acc = _mm256_fmadd_ps(x, y, *acc);
        }
        i += 32;
    }
    let acc = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let tail = f32_scalar::vec_dot(n - i, &w[i * 4..], &a[i * 4..]);
    hsum_ps(acc) + tail
}

/// 8 f16 (little-endian) at byte offset `off` of `row`, widened to f32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn load_f16x8(row: &[u8], off: usize) -> __m256 {
    assert!(off + 16 <= row.len());
    // SAFETY: bounds checked just above; loadu has no alignment requirement.
    _mm256_cvtph_ps(unsafe { _mm_loadu_si128(row.as_ptr().add(off).cast()) })
}

/// F16 · F16: widen to f32, 4 × 8 lanes of FMA as ggml's AVX2 `ggml_vec_dot_f16`, scalar tail.
///
/// # Safety
/// See the module header.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_f16(n: usize, w: &[u8], a: &[u8]) -> f32 {
    assert!(
        w.len() == n * 2 && a.len() == n * 2,
        "F16 vec_dot row bytes"
    );
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (j, acc) in acc.iter_mut().enumerate() {
            let off = (i + 8 * j) * 2;
            *acc = _mm256_fmadd_ps(load_f16x8(w, off), load_f16x8(a, off), *acc);
        }
        i += 32;
    }
    let acc = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let tail = f16_scalar::vec_dot(n - i, &w[i * 2..], &a[i * 2..]);
    hsum_ps(acc) + tail
}

/// F16 → f32 with F16C; exact, like the scalar path (NaNs are quieted the same way).
///
/// # Safety
/// See the module header.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dequantize_row_f16(src: &[u8], dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len() * 2, "F16 row bytes");
    let n = dst.len();
    let mut i = 0;
    while i + 8 <= n {
        let v = load_f16x8(src, i * 2);
        // SAFETY: i + 8 ≤ dst.len().
        unsafe { _mm256_storeu_ps(dst.as_mut_ptr().add(i), v) };
        i += 8;
    }
    f16_scalar::dequantize_row(&src[i * 2..], &mut dst[i..]);
}

/// BF16 · BF16: widen by shifting into the top half of f32; mul then add (no FMA) in 4 × 8
/// lanes, as ggml's AVX2 `ggml_vec_dot_bf16`; scalar tail.
///
/// # Safety
/// See the module header.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_bf16(n: usize, w: &[u8], a: &[u8]) -> f32 {
    assert!(
        w.len() == n * 2 && a.len() == n * 2,
        "BF16 vec_dot row bytes"
    );
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn load(row: &[u8], off: usize) -> __m256 {
        assert!(off + 16 <= row.len());
        // SAFETY: bounds checked just above; loadu has no alignment requirement.
        let h = unsafe { _mm_loadu_si128(row.as_ptr().add(off).cast()) };
        _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16))
    }
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (j, acc) in acc.iter_mut().enumerate() {
            let off = (i + 8 * j) * 2;
            *acc = _mm256_add_ps(_mm256_mul_ps(load(w, off), load(a, off)), *acc);
        }
        i += 32;
    }
    let acc = _mm256_add_ps(_mm256_add_ps(acc[0], acc[2]), _mm256_add_ps(acc[1], acc[3]));
    let tail = bf16_scalar::vec_dot(n - i, &w[i * 2..], &a[i * 2..]);
    hsum_ps(acc) + tail
}

/// Q4_0 · Q8_0.
///
/// # Safety
/// See the module header.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q4_0(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let x = expect_blocks::<BlockQ4_0>(n, QK, w, "Q4_0 vec_dot weights");
    let y = expect_blocks::<BlockQ8_0>(n, QK, a, "Q4_0 vec_dot activations");
    let mut acc = _mm256_setzero_ps();
    for (x, y) in x.iter().zip(y) {
        let d = _mm256_set1_ps(fp16_product(x.d, y.d));
        let qx = _mm256_sub_epi8(unpack_nibbles(&x.qs), _mm256_set1_epi8(8));
        acc = _mm256_fmadd_ps(d, mul_sum_i8_ps(qx, load_i8x32(&y.qs)), acc);
    }
    hsum_ps(acc)
}

/// Q4_1 · Q8_1: the unsigned nibbles feed `maddubs` directly; the offset term m·s is summed in a
/// scalar, as in ggml.
///
/// # Safety
/// See the module header.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q4_1(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let x = expect_blocks::<BlockQ4_1>(n, QK, w, "Q4_1 vec_dot weights");
    let y = expect_blocks::<BlockQ8_1>(n, QK, a, "Q4_1 vec_dot activations");
    let mut acc = _mm256_setzero_ps();
    let mut summs = 0.0f32;
    for (x, y) in x.iter().zip(y) {
        summs += fp16_product(x.m, y.s);
        let d = _mm256_set1_ps(fp16_product(x.d, y.d));
        let xy = mul_sum_us8_ps(unpack_nibbles(&x.qs), load_i8x32(&y.qs));
        acc = _mm256_fmadd_ps(d, xy, acc);
    }
    hsum_ps(acc) + summs
}

/// The 32 five-bit values of a Q5 block as bytes 0..=31 (element order).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn unpack5(qh: [u8; 4], qs: &[u8; 16]) -> __m256i {
    let high = _mm256_and_si256(
        bytes_from_bits(u32::from_le_bytes(qh)),
        _mm256_set1_epi8(0x10),
    );
    _mm256_or_si256(unpack_nibbles(qs), high)
}

/// Q5_0 · Q8_0.
///
/// # Safety
/// See the module header.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q5_0(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let x = expect_blocks::<BlockQ5_0>(n, QK, w, "Q5_0 vec_dot weights");
    let y = expect_blocks::<BlockQ8_0>(n, QK, a, "Q5_0 vec_dot activations");
    let mut acc = _mm256_setzero_ps();
    for (x, y) in x.iter().zip(y) {
        let d = _mm256_set1_ps(fp16_product(x.d, y.d));
        let qx = _mm256_sub_epi8(unpack5(x.qh, &x.qs), _mm256_set1_epi8(16));
        acc = _mm256_fmadd_ps(d, mul_sum_i8_ps(qx, load_i8x32(&y.qs)), acc);
    }
    hsum_ps(acc)
}

/// Q5_1 · Q8_1 (unsigned 5-bit values straight into `maddubs`, offset term as in Q4_1).
///
/// # Safety
/// See the module header.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q5_1(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let x = expect_blocks::<BlockQ5_1>(n, QK, w, "Q5_1 vec_dot weights");
    let y = expect_blocks::<BlockQ8_1>(n, QK, a, "Q5_1 vec_dot activations");
    let mut acc = _mm256_setzero_ps();
    let mut summs = 0.0f32;
    for (x, y) in x.iter().zip(y) {
        summs += fp16_product(x.m, y.s);
        let d = _mm256_set1_ps(fp16_product(x.d, y.d));
        let xy = mul_sum_us8_ps(unpack5(x.qh, &x.qs), load_i8x32(&y.qs));
        acc = _mm256_fmadd_ps(d, xy, acc);
    }
    hsum_ps(acc) + summs
}

/// Q8_0 · Q8_0. Weights may hold -128 (any file byte); the activations, from our quantizer,
/// never do, so they go second (see `mul_sum_i8_ps`).
///
/// # Safety
/// See the module header.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q8_0(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let x = expect_blocks::<BlockQ8_0>(n, QK, w, "Q8_0 vec_dot weights");
    let y = expect_blocks::<BlockQ8_0>(n, QK, a, "Q8_0 vec_dot activations");
    let mut acc = _mm256_setzero_ps();
    for (x, y) in x.iter().zip(y) {
        let d = _mm256_set1_ps(fp16_product(x.d, y.d));
        acc = _mm256_fmadd_ps(d, mul_sum_i8_ps(load_i8x32(&x.qs), load_i8x32(&y.qs)), acc);
    }
    hsum_ps(acc)
}

/// Quantize one block of 32 to i8 exactly as the scalar reference: the same scale and inverse
/// (`q8_0::scale_of`), the same product `v·id`, and C's `roundf` (half away from zero). Returns
/// the 32 bytes and, in 8 i32 lanes, partial sums of the quantized values (for Q8_1's `s`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn quantize_block_i8(x: &[f32], id: f32) -> (__m256i, __m256i) {
    assert_eq!(x.len(), QK);
    let vid = _mm256_set1_ps(id);
    let sign = _mm256_set1_ps(-0.0);
    let half = _mm256_set1_ps(0.5);
    let one = _mm256_set1_ps(1.0);
    let mut q = [_mm256_setzero_si256(); 4];
    for (j, q) in q.iter_mut().enumerate() {
        // SAFETY: x holds 32 floats and 8j + 8 ≤ 32.
        let v = _mm256_mul_ps(unsafe { _mm256_loadu_ps(x.as_ptr().add(8 * j)) }, vid);
        // roundf: truncate, then step one away from zero when the dropped fraction is ≥ 0.5
        // (v − trunc(v) is exact for every float).
        let t = _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(v);
        let frac = _mm256_andnot_ps(sign, _mm256_sub_ps(v, t));
        let step = _mm256_and_ps(_mm256_cmp_ps::<_CMP_GE_OQ>(frac, half), one);
        let r = _mm256_add_ps(t, _mm256_or_ps(step, _mm256_and_ps(v, sign)));
        *q = _mm256_cvtps_epi32(r);
    }
    let sums = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
    // Saturating packs (as the scalar `as i8`) leave the bytes in lane-interleaved order; the
    // permute puts them back in element order.
    let q01 = _mm256_packs_epi32(q[0], q[1]);
    let q23 = _mm256_packs_epi32(q[2], q[3]);
    let bytes = _mm256_permutevar8x32_epi32(
        _mm256_packs_epi16(q01, q23),
        _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7),
    );
    (bytes, sums)
}

/// Largest |x| of a block, equal to the scalar reference's for NaN-free input.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn block_amax(x: &[f32]) -> f32 {
    assert_eq!(x.len(), QK);
    let sign = _mm256_set1_ps(-0.0);
    let mut m = _mm256_setzero_ps();
    for j in 0..4 {
        // SAFETY: x holds 32 floats and 8j + 8 ≤ 32.
        let v = unsafe { _mm256_loadu_ps(x.as_ptr().add(8 * j)) };
        m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v));
    }
    let m4 = _mm_max_ps(_mm256_extractf128_ps(m, 1), _mm256_castps256_ps128(m));
    let m2 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    _mm_cvtss_f32(_mm_max_ss(m2, _mm_movehdup_ps(m2)))
}

/// The reference's scale and inverse from a block's |x| maximum (`scale_of` over the single value
/// amax yields the same amax, hence the same d and 1/d).
fn scale_from_amax(amax: f32) -> (f32, f32) {
    q8_0::scale_of(&[amax])
}

/// f32 → Q8_0, bit-identical to `q8_0::quantize_row` for NaN-free input.
///
/// # Safety
/// See the module header.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn quantize_row_q8_0(src: &[f32], dst: &mut [u8]) {
    assert!(
        src.len().is_multiple_of(QK),
        "Q8_0 quantize: {} elements",
        src.len()
    );
    let blocks = as_blocks_mut::<BlockQ8_0>(dst);
    assert_eq!(blocks.len(), src.len() / QK, "Q8_0 quantize blocks");
    for (b, x) in blocks.iter_mut().zip(src.chunks_exact(QK)) {
        let (d, id) = scale_from_amax(block_amax(x));
        b.d = f32_to_le_fp16(d);
        let (bytes, _) = quantize_block_i8(x, id);
        // SAFETY: qs is 32 writable bytes; storeu has no alignment requirement.
        unsafe { _mm256_storeu_si256(b.qs.as_mut_ptr().cast(), bytes) };
    }
}

/// f32 → Q8_1, bit-identical to `q8_1::quantize_row` for NaN-free input.
///
/// # Safety
/// See the module header.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn quantize_row_q8_1(src: &[f32], dst: &mut [u8]) {
    assert!(
        src.len().is_multiple_of(QK),
        "Q8_1 quantize: {} elements",
        src.len()
    );
    let blocks = as_blocks_mut::<BlockQ8_1>(dst);
    assert_eq!(blocks.len(), src.len() / QK, "Q8_1 quantize blocks");
    for (b, x) in blocks.iter_mut().zip(src.chunks_exact(QK)) {
        let (d, id) = scale_from_amax(block_amax(x));
        b.d = f32_to_le_fp16(d);
        let (bytes, sums) = quantize_block_i8(x, id);
        // SAFETY: qs is 32 writable bytes; storeu has no alignment requirement.
        unsafe { _mm256_storeu_si256(b.qs.as_mut_ptr().cast(), bytes) };
        let s4 = _mm_add_epi32(
            _mm256_extracti128_si256::<1>(sums),
            _mm256_castsi256_si128(sums),
        );
        let s2 = _mm_add_epi32(s4, _mm_unpackhi_epi64(s4, s4));
        let sum = _mm_cvtsi128_si32(_mm_add_epi32(s2, _mm_shuffle_epi32::<1>(s2)));
        b.s = f32_to_le_fp16(sum as f32 * d);
    }
}
