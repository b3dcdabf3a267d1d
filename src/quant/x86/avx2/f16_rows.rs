//! f16 cache rows against f32 vectors, in the lane order of ggml's AVX2 f16 helpers: the pieces
//! of flash attention's inner loop (`ggml_vec_dot_f16`, `ggml_vec_mad_f16`, `ggml_vec_scale_f16`).
//! The portable forms in `cpu::ggml_order::vec_dot_f16_order` and `cpu::flash_attn` give the same
//! bits; these exist because one decode step runs them for every cached cell of every head.
//!
//! # Safety
//! Every `pub unsafe fn` here requires a CPU with avx2, fma and f16c
//! (`quant::x86::avx2_available()`); slice lengths are checked inside (panic on mismatch).

use std::arch::x86_64::*;

use half::f16;

/// Eight f16 from `x[i..i + 8]` widened to f32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn load8(x: &[f16], i: usize) -> __m256 {
    let s = &x[i..i + 8];
    // SAFETY: `s` holds eight f16 (16 bytes), the width of an unaligned 128-bit load.
    _mm256_cvtph_ps(unsafe { _mm_loadu_si128(s.as_ptr() as *const __m128i) })
}

/// `ggml_vec_dot_f16(k, q)` where `q` holds f16 values widened to f32 (the query rounded once
/// per row): four eight-lane FMA chains over 32-element steps, reduced as
/// `(x0 + x2) + (x1 + x3)`, halves, then pairs; a tail past a multiple of 32 in f64.
///
/// # Safety
/// See the module header.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot(k: &[f16], q: &[f32]) -> f32 {
    assert_eq!(k.len(), q.len(), "f16 dot lengths");
    let np = k.len() & !31;
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i < np {
        for (j, a) in acc.iter_mut().enumerate() {
            let o = i + 8 * j;
            // SAFETY: o + 8 <= np <= q.len().
            let qv = unsafe { _mm256_loadu_ps(q.as_ptr().add(o)) };
            *a = _mm256_fmadd_ps(load8(k, o), qv, *a);
        }
        i += 32;
    }
    let v = _mm256_add_ps(_mm256_add_ps(acc[0], acc[2]), _mm256_add_ps(acc[1], acc[3]));
    let t = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    // (t0 + t1) + (t2 + t3), as GGML_F32x8_REDUCE's two horizontal adds leave it.
    let h = _mm_hadd_ps(t, t);
    let h = _mm_hadd_ps(h, h);
    let mut sum = f64::from(_mm_cvtss_f32(h));
    for (x, y) in k[np..].iter().zip(&q[np..]) {
        sum += f64::from(x.to_f32() * y);
    }
    sum as f32
}

/// `acc[i] = f16(fma(v[i], s, acc[i]))` (`ggml_vec_mad_f16` with its f16 accumulator kept widened
/// in `acc`). The length must be a multiple of 8.
///
/// # Safety
/// See the module header.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn mad_round(acc: &mut [f32], v: &[f16], s: f32) {
    assert_eq!(acc.len(), v.len(), "f16 mad lengths");
    assert!(acc.len().is_multiple_of(8), "f16 mad: whole lanes only");
    let sv = _mm256_set1_ps(s);
    for i in (0..acc.len()).step_by(8) {
        let a = &mut acc[i..i + 8];
        // SAFETY: `a` holds eight f32, the width of the unaligned loads and stores.
        unsafe {
            let r = _mm256_fmadd_ps(load8(v, i), sv, _mm256_loadu_ps(a.as_ptr()));
            _mm256_storeu_ps(a.as_mut_ptr(), round8(r));
        }
    }
}

/// `acc[i] = f16(acc[i] * s)` (`ggml_vec_scale_f16` on the widened accumulator). The length must
/// be a multiple of 8.
///
/// # Safety
/// See the module header.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn scale_round(acc: &mut [f32], s: f32) {
    assert!(acc.len().is_multiple_of(8), "f16 scale: whole lanes only");
    let sv = _mm256_set1_ps(s);
    for a in acc.chunks_exact_mut(8) {
        // SAFETY: `a` holds eight f32, the width of the unaligned load and store.
        unsafe {
            let r = _mm256_mul_ps(_mm256_loadu_ps(a.as_ptr()), sv);
            _mm256_storeu_ps(a.as_mut_ptr(), round8(r));
        }
    }
}

/// Eight lanes rounded to f16 (to nearest, ties to even) and widened back.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn round8(x: __m256) -> __m256 {
    _mm256_cvtph_ps(_mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(x))
}

/// Each value rounded to f16 and widened back (ggml's `GGML_FP32_TO_FP16` then
/// `GGML_FP16_TO_FP32`), eight at a time by F16C, whose round-to-nearest-even is the scalar
/// conversion's; a group holding a NaN goes through `round_one`, which keeps ggml's NaN rule.
///
/// # Safety
/// See the module header.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn round_through_f16(xs: &mut [f32], round_one: fn(f32) -> f32) {
    let mut groups = xs.chunks_exact_mut(8);
    for g in &mut groups {
        // SAFETY: `g` holds eight f32.
        let v = unsafe { _mm256_loadu_ps(g.as_ptr()) };
        if _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_UNORD_Q>(v, v)) != 0 {
            for x in g.iter_mut() {
                *x = round_one(*x);
            }
            continue;
        }
        let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v);
        // SAFETY: as above.
        unsafe { _mm256_storeu_ps(g.as_mut_ptr(), _mm256_cvtph_ps(h)) };
    }
    for x in groups.into_remainder() {
        *x = round_one(*x);
    }
}
