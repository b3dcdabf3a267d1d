//! ggml's own block kernels as an oracle for infer's k-quants (Q2_K..Q6_K, Q8_K): dequantize
//! (`ggml_get_type_traits(ty)->to_float`, ggml-base), the reference quantizer
//! (`ggml_quantize_chunk` without an importance matrix, i.e. `quantize_row_*_ref`), and ggml-cpu's
//! `from_float` and `vec_dot` (the SIMD build this machine runs, AVX2 on x86-64).
//!
//! Wraps the C API only; every function checks slice lengths before handing pointers to C.

use std::ffi::c_void;
use std::sync::Once;

use crate::sys;

pub use crate::sys::ggml_type;

/// ggml-cpu's per-type table, declared here because bindgen only covers ggml.h
/// (layout from ggml/include/ggml-cpu.h).
#[repr(C)]
struct TypeTraitsCpu {
    from_float: Option<unsafe extern "C" fn(x: *const f32, y: *mut c_void, k: i64)>,
    vec_dot: Option<
        unsafe extern "C" fn(
            n: i32,
            s: *mut f32,
            bs: usize,
            x: *const c_void,
            bx: usize,
            y: *const c_void,
            by: usize,
            nrc: i32,
        ),
    >,
    vec_dot_type: sys::ggml_type,
    nrows: i64,
}

extern "C" {
    fn ggml_get_type_traits_cpu(ty: sys::ggml_type) -> *const TypeTraitsCpu;
    fn ggml_cpu_init();
    // ggml-quants.h (GGML_API): Q8_K has no to_float/from_float_ref in ggml's type table.
    fn dequantize_row_q8_K(x: *const c_void, y: *mut f32, k: i64);
    fn quantize_row_q8_K_ref(x: *const f32, y: *mut c_void, k: i64);
}

fn cpu_traits(ty: ggml_type) -> &'static TypeTraitsCpu {
    static INIT: Once = Once::new();
    // SAFETY: ggml_cpu_init takes no arguments and only fills ggml-cpu's static tables; Once
    // keeps it to one call.
    INIT.call_once(|| unsafe { ggml_cpu_init() });
    // SAFETY: ggml-cpu returns a pointer into a static table indexed by type, valid for the
    // program's life; `ty` is one of the ggml_type constants below GGML_TYPE_COUNT.
    unsafe { &*ggml_get_type_traits_cpu(ty) }
}

/// Bytes ggml uses for a row of `n` elements of `ty`.
pub fn row_size(ty: ggml_type, n: usize) -> usize {
    // SAFETY: a pure function of its arguments.
    unsafe { sys::ggml_row_size(ty, n as i64) }
}

/// `ggml_get_type_traits(ty)->to_float` (for Q8_K, `dequantize_row_q8_K`) over `src` (whole
/// blocks), `n` elements.
pub fn dequantize(ty: ggml_type, src: &[u8], n: usize) -> Vec<f32> {
    assert_eq!(src.len(), row_size(ty, n), "dequantize: byte length");
    let mut out = vec![0.0f32; n];
    if ty == sys::GGML_TYPE_Q8_K {
        // SAFETY: `src` holds exactly n/256 Q8_K blocks and `out` has room for `n` floats.
        unsafe { dequantize_row_q8_K(src.as_ptr().cast(), out.as_mut_ptr(), n as i64) };
        return out;
    }
    // SAFETY: the traits table is static; `src` holds exactly the bytes of `n` elements and `out`
    // has room for `n` floats, which is all to_float reads and writes.
    unsafe {
        let tr = &*sys::ggml_get_type_traits(ty);
        let f = tr.to_float.expect("type has no to_float");
        f(src.as_ptr().cast(), out.as_mut_ptr(), n as i64);
    }
    out
}

/// ggml's reference quantizer for `ty` over one row `x` (`ggml_quantize_chunk` with no
/// importance matrix, which calls `quantize_row_*_ref`). Q8_K has no chunk quantizer;
/// `quantize_row_q8_K_ref` is called directly. The output starts zeroed, as ggml leaves some fields (Q8_K's
/// bsums for an all-zero block) untouched.
pub fn quantize_ref(ty: ggml_type, x: &[f32]) -> Vec<u8> {
    let mut out = vec![0u8; row_size(ty, x.len())];
    if ty == sys::GGML_TYPE_Q8_K {
        // SAFETY: `x` has x.len() floats (whole blocks, checked by row_size) and `out` the row's
        // bytes.
        unsafe { quantize_row_q8_K_ref(x.as_ptr(), out.as_mut_ptr().cast(), x.len() as i64) };
        return out;
    }
    // SAFETY: one row of x.len() elements; `out` is exactly that row's bytes; null imatrix is
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
    let mut out = vec![0u8; row_size(ty, x.len())];
    let f = cpu_traits(ty)
        .from_float
        .expect("type has a cpu from_float");
    // SAFETY: `x` has x.len() floats and `out` the bytes of that many elements of `ty`.
    unsafe { f(x.as_ptr(), out.as_mut_ptr().cast(), x.len() as i64) };
    out
}

/// ggml-cpu's `vec_dot` for weight type `ty` against its `vec_dot_type`, one row of `n`.
pub fn vec_dot(ty: ggml_type, n: usize, w: &[u8], a: &[u8]) -> f32 {
    let tr = cpu_traits(ty);
    assert_eq!(w.len(), row_size(ty, n), "vec_dot: weight bytes");
    assert_eq!(
        a.len(),
        row_size(tr.vec_dot_type, n),
        "vec_dot: activation bytes"
    );
    let f = tr.vec_dot.expect("type has a cpu vec_dot");
    let mut s = f32::NAN;
    // SAFETY: both rows hold exactly `n` elements of their types; nrc = 1 reads one row of each
    // and writes one float to `s` (strides are unused then).
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
