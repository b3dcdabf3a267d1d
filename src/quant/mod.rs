//! Block formats: one module per ggml type, each with its `#[repr(C)]` block struct (alignment 1, so
//! that a `&[u8]` straight from the mmap views as `&[Block]`), a scalar reference dequantizer,
//! reference quantizer and dot product against its activation format. SIMD twins live under
//! `x86/` (and `arm/`) with the same names and are chosen once at run time by CPU feature detection.
//!
//! Callers get a `TypeKernels` table for a type and keep the function pointers for a whole matmul, so
//! dispatch costs nothing per row.
//!
//! Adding a format: write its module (with a `pub const KERNELS: TypeKernels`), add one line to
//! `SCALAR` below, and, if it has SIMD kernels, one line per kernel in `x86::specialise`.
//!
//! This module holds the dispatch and byte-view helpers only; no kernel arithmetic lives here.

pub mod types;

pub mod bf16;
pub mod f16;
pub mod f32;
pub mod q2_k;
pub mod q3_k;
pub mod q4_0;
pub mod q4_1;
pub mod q4_k;
pub mod q5_0;
pub mod q5_1;
pub mod q5_k;
pub mod q6_k;
pub mod q8_0;
pub mod q8_1;
pub mod q8_k;

#[cfg(target_arch = "x86_64")]
pub mod x86;

use std::mem::{align_of, size_of};
use std::sync::OnceLock;

pub use types::GgmlType;

/// Errors from the quant layer. They name the type; callers add the tensor and file.
#[derive(Debug, thiserror::Error)]
pub enum QuantError {
    #[error("tensor type {0} is not supported for computation")]
    Unsupported(GgmlType),
    #[error("{ty}: {n} elements is not a multiple of the block size {block}")]
    RaggedRow {
        ty: GgmlType,
        n: usize,
        block: usize,
    },
    #[error("{ty}: {n} elements take {expected} bytes, but the buffer holds {got}")]
    ByteLength {
        ty: GgmlType,
        n: usize,
        expected: usize,
        got: usize,
    },
}

/// Dequantize whole blocks into f32; the element count is the `f32` slice's length.
pub type ToF32Fn = fn(&[u8], &mut [f32]);
/// Quantize f32 into whole blocks; the element count is the `f32` slice's length.
pub type FromF32Fn = fn(&[f32], &mut [u8]);
/// Dot product of `n` elements: a row of the weight type with a row of its `vec_dot_type`.
pub type VecDotFn = fn(n: usize, w: &[u8], a: &[u8]) -> f32;

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
    pub to_f32: ToF32Fn,
    /// Reference quantizer (ggml's `quantize_row_*_ref`). SIMD replacements must stay
    /// bit-identical to it, so quantized activations never depend on the CPU.
    pub from_f32: FromF32Fn,
    /// Dot product of a row of `ty` with a row of `vec_dot_type`, both `n` elements. The
    /// activation row must come from `vec_dot_type`'s `from_f32` (`quantize_activation`): SIMD
    /// kernels rely on its range (Q8 quants never -128), which arbitrary bytes need not respect.
    pub vec_dot: VecDotFn,
}

/// The portable kernels, one line per supported type.
static SCALAR: &[TypeKernels] = &[
    f32::KERNELS,
    f16::KERNELS,
    bf16::KERNELS,
    q4_0::KERNELS,
    q4_1::KERNELS,
    q5_0::KERNELS,
    q5_1::KERNELS,
    q8_0::KERNELS,
    q8_1::KERNELS,
    q2_k::KERNELS,
    q3_k::KERNELS,
    q4_k::KERNELS,
    q5_k::KERNELS,
    q6_k::KERNELS,
    q8_k::KERNELS,
];

/// The scalar table with SIMD kernels swapped in where this CPU has the features.
fn best_table() -> &'static [TypeKernels] {
    static BEST: OnceLock<Vec<TypeKernels>> = OnceLock::new();
    BEST.get_or_init(|| {
        #[allow(unused_mut)]
        let mut table = SCALAR.to_vec();
        #[cfg(target_arch = "x86_64")]
        for k in &mut table {
            x86::specialise(k);
        }
        table
    })
}

fn find(table: &'static [TypeKernels], ty: GgmlType) -> Result<&'static TypeKernels, QuantError> {
    table
        .iter()
        .find(|k| k.ty == ty)
        .ok_or(QuantError::Unsupported(ty))
}

/// The fastest kernels this CPU runs for `ty` (AVX2+FMA+F16C when detected at run time).
pub fn kernels(ty: GgmlType) -> Result<&'static TypeKernels, QuantError> {
    find(best_table(), ty)
}

/// The portable reference kernels for `ty`, the same on every CPU.
pub fn scalar_kernels(ty: GgmlType) -> Result<&'static TypeKernels, QuantError> {
    find(SCALAR, ty)
}

/// Whether `ty` has kernels (dequantize, quantize, dot product).
pub fn is_supported(ty: GgmlType) -> bool {
    SCALAR.iter().any(|k| k.ty == ty)
}

/// Bytes for `n` elements of `ty`, or the error saying why the row is not whole blocks.
pub fn row_bytes(ty: GgmlType, n: usize) -> Result<usize, QuantError> {
    let block = ty.block_size();
    if !n.is_multiple_of(block) {
        return Err(QuantError::RaggedRow { ty, n, block });
    }
    // A slice of `n` f32 exists, so n/block*type_size (≤ 9 bytes per element) cannot overflow.
    Ok(n / block * ty.type_size())
}

fn check_bytes(ty: GgmlType, n: usize, got: usize) -> Result<(), QuantError> {
    let expected = row_bytes(ty, n)?;
    if expected != got {
        return Err(QuantError::ByteLength {
            ty,
            n,
            expected,
            got,
        });
    }
    Ok(())
}

/// Dequantize `dst.len()` elements of `ty` from `src`, checking that the lengths agree.
pub fn dequantize_row(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<(), QuantError> {
    let k = kernels(ty)?;
    check_bytes(ty, dst.len(), src.len())?;
    (k.to_f32)(src, dst);
    Ok(())
}

/// Quantize `src` into `dst` as `ty` with the reference quantizer, checking that the lengths agree.
pub fn quantize_row(ty: GgmlType, src: &[f32], dst: &mut [u8]) -> Result<(), QuantError> {
    let k = kernels(ty)?;
    check_bytes(ty, src.len(), dst.len())?;
    (k.from_f32)(src, dst);
    Ok(())
}

/// Quantize an activation row `x` into `k.vec_dot_type`, ready for `k.vec_dot`. `scratch` is
/// resized to the row's bytes and reused across calls. The quantizer comes from the best table;
/// SIMD quantizers are bit-identical to the reference, so this is the same for scalar `k` too.
pub fn quantize_activation(
    k: &TypeKernels,
    x: &[f32],
    scratch: &mut Vec<u8>,
) -> Result<(), QuantError> {
    let a = kernels(k.vec_dot_type)?;
    let bytes = row_bytes(k.vec_dot_type, x.len())?;
    scratch.clear();
    scratch.resize(bytes, 0);
    (a.from_f32)(x, scratch);
    Ok(())
}

/// A block type that may be viewed straight from bytes.
///
/// # Safety
/// Implementors are `#[repr(C)]` structs of byte arrays (or byte arrays): alignment 1, no padding,
/// and every bit pattern is a valid value.
pub unsafe trait Block: Copy + 'static {}

// SAFETY: byte arrays have alignment 1, no padding, and accept every bit pattern.
unsafe impl<const N: usize> Block for [u8; N] {}

/// View whole blocks in `bytes` as `&[B]`. Panics if `bytes` is not a whole number of blocks, which
/// kernels treat as a caller bug (rows are length-checked when tensors are loaded).
pub fn as_blocks<B: Block>(bytes: &[u8]) -> &[B] {
    const { assert!(align_of::<B>() == 1 && size_of::<B>() > 0) };
    assert!(
        bytes.len().is_multiple_of(size_of::<B>()),
        "{} bytes is not a whole number of {}-byte blocks",
        bytes.len(),
        size_of::<B>()
    );
    // SAFETY: `B: Block` has alignment 1 and accepts any bits, and len/size_of::<B>() blocks span
    // exactly `bytes`, which the returned slice borrows.
    unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<B>(), bytes.len() / size_of::<B>()) }
}

/// Mutable twin of [`as_blocks`], for quantizers writing blocks in place.
pub fn as_blocks_mut<B: Block>(bytes: &mut [u8]) -> &mut [B] {
    const { assert!(align_of::<B>() == 1 && size_of::<B>() > 0) };
    assert!(
        bytes.len().is_multiple_of(size_of::<B>()),
        "{} bytes is not a whole number of {}-byte blocks",
        bytes.len(),
        size_of::<B>()
    );
    // SAFETY: as in `as_blocks`; the exclusive borrow of `bytes` moves to the returned slice, and
    // any value written through it is a valid byte pattern.
    unsafe {
        std::slice::from_raw_parts_mut(bytes.as_mut_ptr().cast::<B>(), bytes.len() / size_of::<B>())
    }
}

/// Checks shared by the block kernels: `n` is whole blocks of `qk` and the row holds exactly
/// `n / qk` blocks. Panics on a mismatch (a caller bug, see `TypeKernels`).
#[inline]
pub(crate) fn expect_blocks<'a, B: Block>(
    n: usize,
    qk: usize,
    row: &'a [u8],
    what: &'static str,
) -> &'a [B] {
    assert!(
        n.is_multiple_of(qk),
        "{what}: {n} elements is not whole blocks of {qk}"
    );
    let blocks = as_blocks::<B>(row);
    assert!(
        blocks.len() == n / qk,
        "{what}: {} blocks for {n} elements",
        blocks.len()
    );
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_is_found_and_consistent() {
        for k in SCALAR {
            let best = kernels(k.ty).expect("supported");
            assert_eq!(best.ty, k.ty);
            assert_eq!(best.vec_dot_type, k.vec_dot_type);
            assert!(is_supported(k.vec_dot_type), "{} activations", k.ty);
            assert_eq!(SCALAR.iter().filter(|o| o.ty == k.ty).count(), 1);
        }
        assert!(matches!(
            kernels(GgmlType::IQ1_M),
            Err(QuantError::Unsupported(GgmlType::IQ1_M))
        ));
    }

    #[test]
    fn convenience_functions_check_lengths() {
        let mut out = vec![0.0f32; 32];
        assert!(matches!(
            dequantize_row(GgmlType::Q4_0, &[0u8; 17], &mut out),
            Err(QuantError::ByteLength {
                expected: 18,
                got: 17,
                ..
            })
        ));
        assert!(matches!(
            quantize_row(GgmlType::Q8_0, &[0.0; 31], &mut [0u8; 34]),
            Err(QuantError::RaggedRow { n: 31, .. })
        ));
        dequantize_row(GgmlType::Q4_0, &[0u8; 18], &mut out).expect("whole block");
    }

    #[test]
    fn as_blocks_views_whole_blocks() {
        let bytes = [1u8, 2, 3, 4, 5, 6];
        let b: &[[u8; 3]] = as_blocks(&bytes);
        assert_eq!(b, &[[1, 2, 3], [4, 5, 6]]);
        assert!(std::panic::catch_unwind(|| as_blocks::<[u8; 4]>(&bytes).len()).is_err());
    }
}
