//! AVX-512 (F, BW, VL, VNNI) tiles for prefill and batched decode, one file per weight format.
//! Each gives the bits of the AVX2 kernel it stands beside (and so of ggml's): the lane
//! integers are exact in any order, and every (row, token) keeps its own float chain. Chosen
//! at run time (`available()`) by `cpu::ggml_order`.

pub mod legacy;
pub mod q4_k;

use std::arch::x86_64::*;

use super::avx2::hsum_ps;

/// Whether this CPU runs the kernels here (besides AVX2, FMA and F16C).
pub fn available() -> bool {
    super::avx2_available()
        && is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512vnni")
}

/// ggml's eight-lane horizontal sum of each 256-bit half: two (row, token) chains that shared a
/// register.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn hsum_halves(v: __m512) -> (f32, f32) {
    let lo = _mm512_castps512_ps256(v);
    let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
    (hsum_ps(lo), hsum_ps(hi))
}
