//! Q8_1: blocks of 32, `d: f16`, `s: f16` (= d·Σq), then 32 × `i8`; x = d·q. The activation format
//! for Q4_1 and Q5_1, whose offset term needs Σq. ggml gives Q8_1 no dequantizer and no vec_dot
//! (it only ever holds activations); ours are exact by construction (x = d·q) and the vec_dot is
//! Q8_1·Q8_1, so the table entry is complete.
//! Facts from ggml-common.h (`block_q8_1`) and ggml-quants.c (`quantize_row_q8_1_ref`).

use super::f16::{f32_to_le_fp16, le_fp16_to_f32};
use super::q8_0;
use super::{as_blocks_mut, expect_blocks, Block, GgmlType, TypeKernels};

pub const QK: usize = 32;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockQ8_1 {
    pub d: [u8; 2],
    pub s: [u8; 2],
    pub qs: [i8; QK],
}
const _: () = assert!(std::mem::size_of::<BlockQ8_1>() == 36);

// SAFETY: repr(C) of byte arrays: alignment 1, no padding, any bits valid.
unsafe impl Block for BlockQ8_1 {}

pub const KERNELS: TypeKernels = TypeKernels {
    ty: GgmlType::Q8_1,
    vec_dot_type: GgmlType::Q8_1,
    to_f32: dequantize_row,
    from_f32: quantize_row,
    vec_dot,
};

pub fn dequantize_row(src: &[u8], dst: &mut [f32]) {
    let blocks = expect_blocks::<BlockQ8_1>(dst.len(), QK, src, "Q8_1 dequantize");
    for (b, y) in blocks.iter().zip(dst.chunks_exact_mut(QK)) {
        let d = le_fp16_to_f32(b.d);
        for (y, &q) in y.iter_mut().zip(&b.qs) {
            *y = q as f32 * d;
        }
    }
}

pub fn quantize_row(src: &[f32], dst: &mut [u8]) {
    assert!(
        src.len().is_multiple_of(QK),
        "Q8_1 quantize: {} elements",
        src.len()
    );
    let blocks = as_blocks_mut::<BlockQ8_1>(dst);
    assert_eq!(blocks.len(), src.len() / QK, "Q8_1 quantize blocks");
    for (b, x) in blocks.iter_mut().zip(src.chunks_exact(QK)) {
        let (d, id) = q8_0::scale_of(x);
        b.d = f32_to_le_fp16(d);
        let mut sum = 0i32;
        for (q, &v) in b.qs.iter_mut().zip(x) {
            *q = (v * id).round() as i8;
            sum += *q as i32;
        }
        b.s = f32_to_le_fp16(sum as f32 * d);
    }
}

pub fn vec_dot(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let x = expect_blocks::<BlockQ8_1>(n, QK, w, "Q8_1 vec_dot weights");
    let y = expect_blocks::<BlockQ8_1>(n, QK, a, "Q8_1 vec_dot activations");
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
    use crate::quant::as_blocks;

    #[test]
    fn sum_field_is_d_times_sum_of_quants() {
        let x: Vec<f32> = (0..64).map(|i| (i as f32 * 0.37).sin()).collect();
        let mut b = vec![0u8; 72];
        quantize_row(&x, &mut b);
        for (blk, x) in as_blocks::<BlockQ8_1>(&b).iter().zip(x.chunks_exact(QK)) {
            let s: i32 = blk.qs.iter().map(|&q| q as i32).sum();
            // ggml multiplies by the f32 scale, before it is rounded to f16 for `d`.
            let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            assert_eq!(blk.s, f32_to_le_fp16(s as f32 * (amax / 127.0)));
        }
        let mut y = vec![0.0f32; 64];
        dequantize_row(&b, &mut y);
        let exact: f32 = y.iter().map(|v| v * v).sum();
        assert!((vec_dot(64, &b, &b) - exact).abs() <= 1e-5 * exact);
    }
}
