//! Block formats: one module per ggml type, each with its `#[repr(C)]` block struct (alignment 1, so
//! that a `&[u8]` straight from the mmap views as `&[Block]`), a scalar reference dequantizer,
//! reference quantizer and dot product against its activation format. SIMD twins live under
//! `x86/` (and `arm/`) with the same names and are chosen once at run time by CPU feature detection.
//!
//! Callers get a `TypeKernels` table for a type and keep the function pointers for a whole matmul, so
//! dispatch costs nothing per row.

pub mod types;

pub use types::GgmlType;

/// Errors from the quant layer. They name the type; callers add the tensor and file.
#[derive(Debug, thiserror::Error)]
pub enum QuantError {
    #[error("tensor type {0} is not supported for computation")]
    Unsupported(GgmlType),
    #[error("{ty}: {n} elements is not a multiple of the block size {block}")]
    RaggedRow { ty: GgmlType, n: usize, block: usize },
}

/// The kernels of one weight type. All slices hold whole blocks; `n` (elements) is implied by
/// the `f32` slice length for `to_f32`/`from_f32`, and callers guarantee that the byte slices match
/// it (`GgmlType::row_bytes`). Kernels check lengths and panic (never read out of bounds) on a
/// mismatch, which is a bug in the caller, not bad input.
#[derive(Clone, Copy)]
pub struct TypeKernels {
    pub ty: GgmlType,
    /// The format activations are quantized to for `vec_dot` (Q8_K for k-quants, Q8_0/Q8_1 for
    /// legacy quants, the type itself for float types), as in ggml.
    pub vec_dot_type: GgmlType,
    /// Dequantize whole blocks of `ty` into f32.
    pub to_f32: fn(&[u8], &mut [f32]),
    /// Reference quantizer (ggml's `quantize_row_*_ref`).
    pub from_f32: fn(&[f32], &mut [u8]),
    /// Dot product of a row of `ty` with a row of `vec_dot_type`, both `n` elements.
    pub vec_dot: fn(n: usize, w: &[u8], a: &[u8]) -> f32,
}
