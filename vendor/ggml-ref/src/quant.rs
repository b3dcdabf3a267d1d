//! ggml's float and legacy block kernels (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1) as
//! the oracle for infer's quant layer: ggml-base's type table (`to_float`, `from_float_ref` — the
//! deterministic `quantize_row_*_ref`), its scalar f16/bf16 conversions, and ggml-cpu's
//! `from_float`/`vec_dot` (the SIMD build this machine runs, AVX2 on x86-64).
//!
//! Types are ggml type ids (the same numbers as GGUF's). Every function checks slice lengths
//! before handing pointers to C.

use std::sync::Once;

use crate::sys;

pub use crate::sys::ggml_type;

fn cpu_traits(ty: ggml_type) -> &'static sys::ggml_type_traits_cpu {
    static INIT: Once = Once::new();
    // SAFETY: ggml_cpu_init takes no arguments and fills ggml-cpu's static tables (f16 lookup,
    // feature flags); `Once` runs it a single time.
    INIT.call_once(|| unsafe { sys::ggml_cpu_init() });
    assert!(ty < sys::GGML_TYPE_COUNT, "ggml type {ty}");
    // SAFETY: ggml-cpu returns a pointer into its static per-type table (index checked above),
    // valid for the life of the program.
    unsafe { &*sys::ggml_get_type_traits_cpu(ty) }
}

fn traits(ty: ggml_type) -> &'static sys::ggml_type_traits {
    assert!(ty < sys::GGML_TYPE_COUNT, "ggml type {ty}");
    // SAFETY: a pointer into ggml-base's static type table (index checked above).
    unsafe { &*sys::ggml_get_type_traits(ty) }
}

/// Bytes ggml uses for a row of `n` elements of `ty`.
pub fn row_size(ty: ggml_type, n: usize) -> usize {
    assert_eq!(n as i64 % traits(ty).blck_size, 0, "whole blocks");
    // SAFETY: a pure function of its arguments.
    unsafe { sys::ggml_row_size(ty, n as i64) }
}

/// `ggml_get_type_traits(ty)->to_float` over `n` elements, or `None` where ggml has none
/// (F32, Q8_1).
pub fn dequantize(ty: ggml_type, src: &[u8], n: usize) -> Option<Vec<f32>> {
    let f = traits(ty).to_float?;
    assert_eq!(src.len(), row_size(ty, n), "dequantize: byte length");
    let mut out = vec![0.0f32; n];
    // SAFETY: `src` holds exactly the bytes of `n` elements and `out` has room for `n` floats,
    // which is all to_float reads and writes.
    unsafe { f(src.as_ptr().cast(), out.as_mut_ptr(), n as i64) };
    Some(out)
}

/// `ggml_get_type_traits(ty)->from_float_ref` (`quantize_row_*_ref`, or the f16/bf16 row
/// converters) over `x`, or `None` where ggml has none (F32). The output starts zeroed.
pub fn quantize_ref(ty: ggml_type, x: &[f32]) -> Option<Vec<u8>> {
    let f = traits(ty).from_float_ref?;
    let mut out = vec![0u8; row_size(ty, x.len())];
    // SAFETY: `x` holds x.len() floats (whole blocks, checked by row_size) and `out` exactly that
    // row's bytes.
    unsafe { f(x.as_ptr(), out.as_mut_ptr().cast(), x.len() as i64) };
    Some(out)
}

/// ggml-cpu's activation type for weights of `ty` (`type_traits_cpu[ty].vec_dot_type`).
pub fn vec_dot_type(ty: ggml_type) -> ggml_type {
    cpu_traits(ty).vec_dot_type
}

/// ggml-cpu's `from_float` for `ty` (the quantizer a ggml matmul uses for activations).
pub fn cpu_from_float(ty: ggml_type, x: &[f32]) -> Vec<u8> {
    let f = cpu_traits(ty)
        .from_float
        .expect("type has a cpu from_float");
    let mut out = vec![0u8; row_size(ty, x.len())];
    // SAFETY: `x` has x.len() floats and `out` the bytes of that many elements of `ty`.
    unsafe { f(x.as_ptr(), out.as_mut_ptr().cast(), x.len() as i64) };
    out
}

/// ggml-cpu's `vec_dot` for weights of `ty`: `w` is a row of `ty`, `a` a row of
/// `vec_dot_type(ty)`, both `n` elements. Panics where ggml has none (Q8_1).
pub fn cpu_vec_dot(ty: ggml_type, n: usize, w: &[u8], a: &[u8]) -> f32 {
    let tr = cpu_traits(ty);
    let f = tr.vec_dot.expect("type has a cpu vec_dot");
    assert_eq!(w.len(), row_size(ty, n), "vec_dot: weight bytes");
    assert_eq!(
        a.len(),
        row_size(tr.vec_dot_type, n),
        "vec_dot: activation bytes"
    );
    let mut s = 0.0f32;
    // SAFETY: both rows hold exactly `n` elements of their types; nrc = 1 means one output, so
    // the strides are unused; `s` is one writable float.
    unsafe {
        f(
            n as i32,
            &mut s,
            0,
            w.as_ptr().cast(),
            0,
            a.as_ptr().cast(),
            0,
            1,
        )
    };
    s
}

/// ggml's scalar `ggml_fp32_to_fp16`.
pub fn fp32_to_fp16(x: f32) -> u16 {
    // SAFETY: a pure function of its argument.
    unsafe { sys::ggml_fp32_to_fp16(x) }
}

/// ggml's scalar `ggml_fp16_to_fp32`.
pub fn fp16_to_fp32(h: u16) -> f32 {
    // SAFETY: a pure function of its argument.
    unsafe { sys::ggml_fp16_to_fp32(h) }
}

/// ggml's scalar `ggml_fp32_to_bf16`.
pub fn fp32_to_bf16(x: f32) -> u16 {
    // SAFETY: a pure function of its argument.
    unsafe { sys::ggml_fp32_to_bf16(x).bits }
}
