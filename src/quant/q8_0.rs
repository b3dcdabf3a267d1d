//! Q8_0: blocks of 32 weights, `d: f16` then 32 × `i8`; x = d·q. Also the activation format for
//! Q4_0, Q5_0 and Q8_0 weights (ggml's `vec_dot_type`).
//! Facts from ggml-common.h (`block_q8_0`), ggml-quants.c (`quantize_row_q8_0_ref`,
//! `dequantize_row_q8_0`) and ggml-cpu/quants.c (`ggml_vec_dot_q8_0_q8_0_generic`).

use super::f16::{f32_to_le_fp16, le_fp16_to_f32};
use super::{as_blocks_mut, expect_blocks, Block, GgmlType, TypeKernels};

pub const QK: usize = 32;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockQ8_0 {
    pub d: [u8; 2],
    pub qs: [i8; QK],
}
const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == 34);

// SAFETY: repr(C) of byte arrays: alignment 1, no padding, any bits valid.
unsafe impl Block for BlockQ8_0 {}

pub const KERNELS: TypeKernels = TypeKernels {
    ty: GgmlType::Q8_0,
    vec_dot_type: GgmlType::Q8_0,
    to_f32: dequantize_row,
    from_f32: quantize_row,
    vec_dot,
};

pub fn dequantize_row(src: &[u8], dst: &mut [f32]) {
    let blocks = expect_blocks::<BlockQ8_0>(dst.len(), QK, src, "Q8_0 dequantize");
    for (b, y) in blocks.iter().zip(dst.chunks_exact_mut(QK)) {
        let d = le_fp16_to_f32(b.d);
        for (y, &q) in y.iter_mut().zip(&b.qs) {
            *y = q as f32 * d;
        }
    }
}

/// The scale and its inverse for one block, as ggml's reference computes them; shared with the
/// SIMD quantizer so both produce the same bytes.
#[inline]
pub(crate) fn scale_of(x: &[f32]) -> (f32, f32) {
    let mut amax = 0.0f32;
    for &v in x {
        // Written as C's MAX(amax, fabsf(v)) so NaN inputs behave as in ggml.
        amax = if amax > v.abs() { amax } else { v.abs() };
    }
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    (d, id)
}

pub fn quantize_row(src: &[f32], dst: &mut [u8]) {
    assert!(
        src.len().is_multiple_of(QK),
        "Q8_0 quantize: {} elements",
        src.len()
    );
    let blocks = as_blocks_mut::<BlockQ8_0>(dst);
    assert_eq!(blocks.len(), src.len() / QK, "Q8_0 quantize blocks");
    for (b, x) in blocks.iter_mut().zip(src.chunks_exact(QK)) {
        let (d, id) = scale_of(x);
        b.d = f32_to_le_fp16(d);
        for (q, &v) in b.qs.iter_mut().zip(x) {
            // f32::round is C's roundf (half away from zero); `as` saturates where C is undefined.
            *q = (v * id).round() as i8;
        }
    }
}

pub fn vec_dot(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let x = expect_blocks::<BlockQ8_0>(n, QK, w, "Q8_0 vec_dot weights");
    let y = expect_blocks::<BlockQ8_0>(n, QK, a, "Q8_0 vec_dot activations");
    let mut sumf = 0.0f32;
    for (x, y) in x.iter().zip(y) {
        let sumi: i32 =
            x.qs.iter()
                .zip(&y.qs)
                .map(|(&p, &q)| p as i32 * q as i32)
                .sum();
        sumf += sumi as f32 * (le_fp16_to_f32(x.d) * le_fp16_to_f32(y.d));
    }
    sumf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantize_known_block() {
        let x: Vec<f32> = (0..32).map(|i| i as f32 - 15.5).collect();
        let mut b = [0u8; 34];
        quantize_row(&x, &mut b);
        let blk = as_blocks::<BlockQ8_0>(&b)[0];
        // amax = 15.5, d = 15.5/127: the ends map to ∓127, 0.5/d = 4.097 → 4.
        assert_eq!(blk.d, f32_to_le_fp16(15.5 / 127.0));
        assert_eq!(blk.qs[0], -127);
        assert_eq!(blk.qs[16], 4);
        assert_eq!(blk.qs[31], 127);
        let mut y = [0.0f32; 32];
        dequantize_row(&b, &mut y);
        for (p, q) in x.iter().zip(&y) {
            assert!((p - q).abs() <= 15.5 / 127.0 / 2.0 * 1.01, "{p} vs {q}");
        }
    }

    use super::super::as_blocks;
}
