//! x86-64 SIMD kernels and the one place that decides whether they run. `specialise` is called once
//! per table entry when the kernel table is first built; everything after that is plain function
//! pointers. The kernels themselves live in `avx2/` (`legacy.rs`: float and legacy block formats,
//! `kquants.rs`: k-quants), as `unsafe` `#[target_feature]` functions named like their scalar twins.
//!
//! Adding a SIMD kernel: one line in `specialise`, e.g.
//! `GgmlType::Q4_K => k.vec_dot = vec_dot!(avx2::kquants::vec_dot_q4_k),`.
//! A replacement `from_f32` must produce the same bytes as the scalar reference quantizer
//! (activations are quantized with whichever table the caller did not pick; see
//! `quant::quantize_activation`).

pub mod avx2;
pub mod avx512;

use super::{FromF32Fn, GgmlType, ToF32Fn, TypeKernels, VecDotFn};

/// Whether this CPU runs the `avx2` kernels: AVX2, FMA and F16C, detected at run time.
pub fn avx2_available() -> bool {
    is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
}

/// Safe `VecDotFn` around an AVX2 kernel.
macro_rules! vec_dot {
    ($f:path) => {{
        fn safe(n: usize, w: &[u8], a: &[u8]) -> f32 {
            // SAFETY: installed only by `specialise`, after `avx2_available()` confirmed that this
            // CPU has avx2, fma and f16c; the kernel checks its slice lengths itself.
            unsafe { $f(n, w, a) }
        }
        safe as VecDotFn
    }};
}

/// Safe `ToF32Fn` around an AVX2 kernel.
macro_rules! to_f32 {
    ($f:path) => {{
        fn safe(src: &[u8], dst: &mut [f32]) {
            // SAFETY: as in `vec_dot!`.
            unsafe { $f(src, dst) }
        }
        safe as ToF32Fn
    }};
}

/// Safe `FromF32Fn` around an AVX2 kernel.
macro_rules! from_f32 {
    ($f:path) => {{
        fn safe(src: &[f32], dst: &mut [u8]) {
            // SAFETY: as in `vec_dot!`.
            unsafe { $f(src, dst) }
        }
        safe as FromF32Fn
    }};
}

/// Swap SIMD kernels into `k` where this CPU has the features; leave the rest scalar.
pub(in crate::quant) fn specialise(k: &mut TypeKernels) {
    if !avx2_available() {
        return;
    }
    use avx2::legacy as l;
    match k.ty {
        GgmlType::F32 => k.vec_dot = vec_dot!(l::vec_dot_f32),
        GgmlType::F16 => {
            k.vec_dot = vec_dot!(l::vec_dot_f16);
            k.to_f32 = to_f32!(l::dequantize_row_f16);
        }
        GgmlType::BF16 => k.vec_dot = vec_dot!(l::vec_dot_bf16),
        GgmlType::Q4_0 => k.vec_dot = vec_dot!(l::vec_dot_q4_0),
        GgmlType::Q4_1 => k.vec_dot = vec_dot!(l::vec_dot_q4_1),
        GgmlType::Q5_0 => k.vec_dot = vec_dot!(l::vec_dot_q5_0),
        GgmlType::Q5_1 => k.vec_dot = vec_dot!(l::vec_dot_q5_1),
        GgmlType::Q8_0 => {
            k.vec_dot = vec_dot!(l::vec_dot_q8_0);
            k.from_f32 = from_f32!(l::quantize_row_q8_0);
        }
        GgmlType::Q8_1 => k.from_f32 = from_f32!(l::quantize_row_q8_1),
        // k-quants: add their lines here.
        GgmlType::Q2_K => k.vec_dot = vec_dot!(avx2::kquants::vec_dot_q2_k),
        GgmlType::Q3_K => k.vec_dot = vec_dot!(avx2::kquants::vec_dot_q3_k),
        GgmlType::Q4_K => {
            k.vec_dot = vec_dot!(avx2::kquants::vec_dot_q4_k);
            k.to_f32 = to_f32!(avx2::kquants::dequantize_row_q4_k);
        }
        GgmlType::Q5_K => {
            k.vec_dot = vec_dot!(avx2::kquants::vec_dot_q5_k);
            k.to_f32 = to_f32!(avx2::kquants::dequantize_row_q5_k);
        }
        GgmlType::Q6_K => {
            k.vec_dot = vec_dot!(avx2::kquants::vec_dot_q6_k);
            k.to_f32 = to_f32!(avx2::kquants::dequantize_row_q6_k);
        }
        GgmlType::Q8_K => k.from_f32 = from_f32!(avx2::kquants::quantize_row_q8_k),
        _ => {}
    }
}
