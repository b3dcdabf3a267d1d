//! F16 (IEEE binary16) rows, and the f16 conversions every block format uses for its scales.
//!
//! ggml's reference conversion (`ggml_compute_fp32_to_fp16`) rounds to nearest even and turns every
//! NaN into the quiet NaN 0x7E00 (sign kept); `half` rounds the same way but keeps NaN payloads, so
//! NaN is handled here. f16 → f32 is exact, with signalling NaNs quieted as on x86 hardware.
//! The dot product matches ggml's portable `ggml_vec_dot_f16`: f32 products summed in f64.

use super::{GgmlType, TypeKernels};

pub const KERNELS: TypeKernels = TypeKernels {
    ty: GgmlType::F16,
    vec_dot_type: GgmlType::F16,
    to_f32: dequantize_row,
    from_f32: quantize_row,
    vec_dot,
};

/// f16 bits → f32, exactly (ggml's `GGML_FP16_TO_FP32`).
#[inline]
pub fn fp16_to_f32(bits: u16) -> f32 {
    half::f16::from_bits(bits).to_f32()
}

/// f32 → f16 bits with ggml's rounding and NaN rule (`GGML_FP32_TO_FP16`).
#[inline]
pub fn f32_to_fp16(x: f32) -> u16 {
    if x.is_nan() {
        ((x.to_bits() >> 16) as u16 & 0x8000) | 0x7E00
    } else {
        half::f16::from_f32(x).to_bits()
    }
}

/// An f16 stored little-endian in a block, as GGUF writes it.
#[inline]
pub fn le_fp16_to_f32(b: [u8; 2]) -> f32 {
    fp16_to_f32(u16::from_le_bytes(b))
}

#[inline]
pub fn f32_to_le_fp16(x: f32) -> [u8; 2] {
    f32_to_fp16(x).to_le_bytes()
}

/// `src` holds `dst.len()` little-endian f16 values.
pub fn dequantize_row(src: &[u8], dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len() * 2, "F16 row bytes");
    for (y, b) in dst.iter_mut().zip(src.chunks_exact(2)) {
        *y = le_fp16_to_f32([b[0], b[1]]);
    }
}

pub fn quantize_row(src: &[f32], dst: &mut [u8]) {
    assert_eq!(dst.len(), src.len() * 2, "F16 row bytes");
    for (x, b) in src.iter().zip(dst.chunks_exact_mut(2)) {
        b.copy_from_slice(&f32_to_le_fp16(*x));
    }
}

pub fn vec_dot(n: usize, w: &[u8], a: &[u8]) -> f32 {
    assert!(
        w.len() == n * 2 && a.len() == n * 2,
        "F16 vec_dot row bytes"
    );
    let mut sum = 0.0f64;
    for (x, y) in w.chunks_exact(2).zip(a.chunks_exact(2)) {
        sum += (le_fp16_to_f32([x[0], x[1]]) * le_fp16_to_f32([y[0], y[1]])) as f64;
    }
    sum as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_and_specials() {
        // 1 + 2^-11 is halfway between 1 and the next f16: ties go to even (1.0).
        assert_eq!(f32_to_fp16(1.0 + 2f32.powi(-11)), 0x3C00);
        // 1 + 3*2^-11 is halfway between two odd/even neighbours: rounds up to even 0x3C02.
        assert_eq!(f32_to_fp16(1.0 + 3.0 * 2f32.powi(-11)), 0x3C02);
        assert_eq!(f32_to_fp16(65520.0), 0x7C00, "overflow rounds to inf");
        assert_eq!(f32_to_fp16(f32::from_bits(0x7FC1_2345)), 0x7E00);
        assert_eq!(f32_to_fp16(f32::from_bits(0xFF80_0001)), 0xFE00);
        assert_eq!(f32_to_fp16(2f32.powi(-24)), 0x0001, "smallest subnormal");
        assert_eq!(fp16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(fp16_to_f32(0xFBFF), -65504.0);
    }

    #[test]
    fn dot_sums_products() {
        let w: Vec<f32> = (0..5).map(|i| i as f32 * 0.5).collect();
        let a = [1.0f32, -2.0, 3.0, 0.25, 8.0];
        let (mut wb, mut ab) = (vec![0u8; 10], vec![0u8; 10]);
        quantize_row(&w, &mut wb);
        quantize_row(&a, &mut ab);
        assert_eq!(vec_dot(5, &wb, &ab), 0.0 - 1.0 + 3.0 + 0.375 + 16.0);
        let mut back = [0.0f32; 5];
        dequantize_row(&wb, &mut back);
        assert_eq!(back.as_slice(), w.as_slice());
    }
}
