//! BF16 (bfloat16) rows. Conversion follows ggml's `ggml_compute_fp32_to_bf16`: round to nearest
//! even on the top 16 bits of the f32, NaN kept with the quiet bit forced, subnormals kept. The dot
//! product matches ggml's portable `ggml_vec_dot_bf16`: f32 products summed in f64.

use super::{GgmlType, TypeKernels};

pub const KERNELS: TypeKernels = TypeKernels {
    ty: GgmlType::BF16,
    vec_dot_type: GgmlType::BF16,
    to_f32: dequantize_row,
    from_f32: quantize_row,
    vec_dot,
};

#[inline]
pub fn bf16_to_f32(bits: u16) -> f32 {
    f32::from_bits((bits as u32) << 16)
}

#[inline]
pub fn f32_to_bf16(x: f32) -> u16 {
    let u = x.to_bits();
    if u & 0x7FFF_FFFF > 0x7F80_0000 {
        return ((u >> 16) | 0x40) as u16;
    }
    // Wrapping: ggml's C adds in uint32 arithmetic; only values near ±max overflow into inf.
    (u.wrapping_add(0x7FFF + ((u >> 16) & 1)) >> 16) as u16
}

#[inline]
fn load(b: &[u8]) -> f32 {
    bf16_to_f32(u16::from_le_bytes([b[0], b[1]]))
}

pub fn dequantize_row(src: &[u8], dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len() * 2, "BF16 row bytes");
    for (y, b) in dst.iter_mut().zip(src.chunks_exact(2)) {
        *y = load(b);
    }
}

pub fn quantize_row(src: &[f32], dst: &mut [u8]) {
    assert_eq!(dst.len(), src.len() * 2, "BF16 row bytes");
    for (x, b) in src.iter().zip(dst.chunks_exact_mut(2)) {
        b.copy_from_slice(&f32_to_bf16(*x).to_le_bytes());
    }
}

pub fn vec_dot(n: usize, w: &[u8], a: &[u8]) -> f32 {
    assert!(
        w.len() == n * 2 && a.len() == n * 2,
        "BF16 vec_dot row bytes"
    );
    let mut sum = 0.0f64;
    for (x, y) in w.chunks_exact(2).zip(a.chunks_exact(2)) {
        sum += (load(x) * load(y)) as f64;
    }
    sum as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_and_specials() {
        assert_eq!(f32_to_bf16(1.0), 0x3F80);
        // Halfway cases go to even: 0x3F80_8000 → 0x3F80, 0x3F81_8000 → 0x3F82.
        assert_eq!(f32_to_bf16(f32::from_bits(0x3F80_8000)), 0x3F80);
        assert_eq!(f32_to_bf16(f32::from_bits(0x3F81_8000)), 0x3F82);
        assert_eq!(f32_to_bf16(f32::from_bits(0x3F80_8001)), 0x3F81);
        // A signalling NaN keeps its sign and top payload and becomes quiet.
        assert_eq!(f32_to_bf16(f32::from_bits(0xFF81_0000)), 0xFFC1);
        assert_eq!(f32_to_bf16(f32::MAX), 0x7F80, "rounds up to inf");
        assert_eq!(bf16_to_f32(0xC040), -3.0);
    }

    #[test]
    fn dot_sums_products() {
        let (mut w, mut a) = ([0u8; 6], [0u8; 6]);
        quantize_row(&[1.0, 2.0, -0.5], &mut w);
        quantize_row(&[3.0, 0.25, 4.0], &mut a);
        assert_eq!(vec_dot(3, &w, &a), 3.0 + 0.5 - 2.0);
    }
}
