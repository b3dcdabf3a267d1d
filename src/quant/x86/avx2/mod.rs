//! AVX2+FMA+F16C kernels, split by family: `legacy` (float and 32-element block formats) and
//! `kquants` (256-element super-blocks). Shared lane helpers live here. Every function is an
//! `unsafe` `#[target_feature(enable = "avx2,fma,f16c")]` fn: callers must have checked
//! `super::avx2_available()`; slices are length-checked inside, so no other precondition exists.

pub mod f16_rows;
pub mod ggml_order;
pub mod kquants;
pub mod legacy;
pub mod rows4;

use std::arch::x86_64::*;

/// f32(a)·f32(b) for two little-endian f16 (a block's scale times the activation's), with one F16C
/// conversion; the same bits as the scalar `le_fp16_to_f32(a) * le_fp16_to_f32(b)`. Both halves go
/// into one 32-bit integer first: LLVM turns a lone 16-bit load into `vpinsrw` into whatever
/// register is free (often the accumulator), a false dependency that serialized the block loop.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn fp16_product(a: [u8; 2], b: [u8; 2]) -> f32 {
    let pair = u32::from(u16::from_le_bytes(a)) | (u32::from(u16::from_le_bytes(b)) << 16);
    let v = _mm_cvtph_ps(_mm_cvtsi32_si128(pair as i32));
    _mm_cvtss_f32(_mm_mul_ss(v, _mm_movehdup_ps(v)))
}

/// `a * b + c` rounded once (one lane of `_mm256_fmadd_ps`), for the scalar float steps that
/// mirror ggml's vector ones.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn fma1(a: f32, b: f32, c: f32) -> f32 {
    _mm_cvtss_f32(_mm_fmadd_ss(_mm_set_ss(a), _mm_set_ss(b), _mm_set_ss(c)))
}

/// Sum of the 8 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn hsum_ps(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// Products of unsigned bytes `ux` with signed bytes `sy`, summed in fours into 8 f32 lanes.
/// `maddubs` saturates a pair sum at ±32767: fine while |ux·sy| ≤ 128·127 per element.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn mul_sum_us8_ps(ux: __m256i, sy: __m256i) -> __m256 {
    let pairs = _mm256_maddubs_epi16(ux, sy);
    _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
}

/// Products of signed bytes `x` and `y`, summed in fours into 8 f32 lanes. `y` must not hold -128
/// (its sign flip would wrap); activations from our quantizers are within ±127.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn mul_sum_i8_ps(x: __m256i, y: __m256i) -> __m256 {
    // maddubs needs one unsigned operand: move x's sign onto y.
    mul_sum_us8_ps(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x))
}

/// 16 bytes of nibbles → 32 bytes: low nibbles in bytes 0..16, high nibbles in bytes 16..32 (the
/// element order of the legacy 4- and 5-bit blocks).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn unpack_nibbles(qs: &[u8; 16]) -> __m256i {
    // SAFETY: `qs` is 16 readable bytes; loadu has no alignment requirement.
    let lo = unsafe { _mm_loadu_si128(qs.as_ptr().cast()) };
    let both = _mm256_set_m128i(_mm_srli_epi16(lo, 4), lo);
    _mm256_and_si256(both, _mm256_set1_epi8(0x0F))
}

/// 32 bits → 32 bytes, byte j = 0xFF where bit j of `bits` is set, else 0.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn bytes_from_bits(bits: u32) -> __m256i {
    // Byte j takes byte j/8 of `bits`, then tests its own bit j%8.
    let spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32(bits as i32),
        _mm256_set_epi64x(
            0x0303_0303_0303_0303,
            0x0202_0202_0202_0202,
            0x0101_0101_0101_0101,
            0,
        ),
    );
    let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit)
}

/// 32 signed bytes at `p`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn load_i8x32(p: &[i8; 32]) -> __m256i {
    // SAFETY: `p` is 32 readable bytes; loadu has no alignment requirement.
    unsafe { _mm256_loadu_si256(p.as_ptr().cast()) }
}
