//! ggml's own block kernels as an oracle for infer's k-quants (Q2_K..Q6_K, Q8_K). The shared
//! type-table and ggml-cpu wrappers live in `quant`; this module adds what Q8_K needs beyond them
//! (ggml's type table has no Q8_K `to_float`/`from_float_ref`, so its row functions are called
//! directly) and keeps the panicking signatures the k-quant tests use.

use std::ffi::c_void;

use crate::quant;
use crate::sys;

pub use crate::sys::ggml_type;

extern "C" {
    // ggml-quants.h (GGML_API): Q8_K has no to_float/from_float_ref in ggml's type table.
    fn dequantize_row_q8_K(x: *const c_void, y: *mut f32, k: i64);
    fn quantize_row_q8_K_ref(x: *const f32, y: *mut c_void, k: i64);
}

/// Bytes ggml uses for a row of `n` elements of `ty`.
pub fn row_size(ty: ggml_type, n: usize) -> usize {
    quant::row_size(ty, n)
}

/// `ggml_get_type_traits(ty)->to_float` (for Q8_K, `dequantize_row_q8_K`) over `src` (whole
/// blocks), `n` elements.
pub fn dequantize(ty: ggml_type, src: &[u8], n: usize) -> Vec<f32> {
    if ty != sys::GGML_TYPE_Q8_K {
        return quant::dequantize(ty, src, n).expect("type has a to_float");
    }
    assert_eq!(src.len(), row_size(ty, n), "dequantize: byte length");
    let mut out = vec![0.0f32; n];
    // SAFETY: `src` holds exactly n/256 Q8_K blocks and `out` has room for `n` floats.
    unsafe { dequantize_row_q8_K(src.as_ptr().cast(), out.as_mut_ptr(), n as i64) };
    out
}

/// ggml's reference quantizer for `ty` over one row `x` (`ggml_quantize_chunk` with no
/// importance matrix, which calls `quantize_row_*_ref`). Q8_K has no chunk quantizer;
/// `quantize_row_q8_K_ref` is called directly. The output starts zeroed, as ggml leaves some
/// fields (Q8_K's bsums for an all-zero block) untouched.
pub fn quantize_ref(ty: ggml_type, x: &[f32]) -> Vec<u8> {
    let mut out = vec![0u8; row_size(ty, x.len())];
    if ty == sys::GGML_TYPE_Q8_K {
        // SAFETY: `x` has x.len() floats (whole blocks, checked by row_size) and `out` the row's
        // bytes.
        unsafe { quantize_row_q8_K_ref(x.as_ptr(), out.as_mut_ptr().cast(), x.len() as i64) };
        return out;
    }
    // SAFETY: one row of x.len() elements; `out` is exactly that row's bytes; a null imatrix is
    // allowed for the k-quants (they do not require one).
    let written = unsafe {
        sys::ggml_quantize_chunk(
            ty,
            x.as_ptr(),
            out.as_mut_ptr().cast(),
            0,
            1,
            x.len() as i64,
            std::ptr::null(),
        )
    };
    assert_eq!(
        written,
        out.len(),
        "ggml_quantize_chunk wrote a different size"
    );
    out
}

/// ggml-cpu's `from_float` for `ty` (the quantizer ggml uses for activations).
pub fn cpu_from_float(ty: ggml_type, x: &[f32]) -> Vec<u8> {
    quant::cpu_from_float(ty, x)
}

/// ggml-cpu's `vec_dot` for weight type `ty` against its `vec_dot_type`, one row of `n`.
pub fn vec_dot(ty: ggml_type, n: usize, w: &[u8], a: &[u8]) -> f32 {
    quant::cpu_vec_dot(ty, n, w, a)
}
