//! F32 rows (little-endian), the trivial "format": conversion is a copy, the dot product matches
//! ggml's portable `ggml_vec_dot_f32` (f32 products summed in f64).

use super::{GgmlType, TypeKernels};

pub const KERNELS: TypeKernels = TypeKernels {
    ty: GgmlType::F32,
    vec_dot_type: GgmlType::F32,
    to_f32: dequantize_row,
    from_f32: quantize_row,
    vec_dot,
};

#[inline]
fn load(b: &[u8]) -> f32 {
    f32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

pub fn dequantize_row(src: &[u8], dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len() * 4, "F32 row bytes");
    for (y, b) in dst.iter_mut().zip(src.chunks_exact(4)) {
        *y = load(b);
    }
}

pub fn quantize_row(src: &[f32], dst: &mut [u8]) {
    assert_eq!(dst.len(), src.len() * 4, "F32 row bytes");
    for (x, b) in src.iter().zip(dst.chunks_exact_mut(4)) {
        b.copy_from_slice(&x.to_le_bytes());
    }
}

pub fn vec_dot(n: usize, w: &[u8], a: &[u8]) -> f32 {
    assert!(
        w.len() == n * 4 && a.len() == n * 4,
        "F32 vec_dot row bytes"
    );
    let mut sum = 0.0f64;
    for (x, y) in w.chunks_exact(4).zip(a.chunks_exact(4)) {
        sum += (load(x) * load(y)) as f64;
    }
    sum as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_bits() {
        let x = [
            1.5f32,
            -0.0,
            f32::from_bits(0x7FC0_1234),
            f32::INFINITY,
            1e-40,
        ];
        let mut b = [0u8; 20];
        quantize_row(&x, &mut b);
        let mut y = [0.0f32; 5];
        dequantize_row(&b, &mut y);
        for (p, q) in x.iter().zip(&y) {
            assert_eq!(p.to_bits(), q.to_bits());
        }
        // 2^24 + 1 is lost in an f32 running sum but kept by the f64 accumulator.
        quantize_row(&[16777216.0, 1.0, 1.0, 0.0, 0.0], &mut b);
        let mut ones = [0u8; 20];
        quantize_row(&[1.0; 5], &mut ones);
        assert_eq!(vec_dot(5, &b, &ones), 16777218.0);
    }
}
