//! Q5_1: blocks of 32, `d: f16`, `m: f16`, `qh: u32` (fifth bits), 16 bytes of low nibbles;
//! x = d·q + m. Same bit layout as Q5_0. Activations are Q8_1 (see q4_1.rs for the `s` term).
//! Facts from ggml-common.h (`block_q5_1`), ggml-quants.c (`quantize_row_q5_1_ref`,
//! `dequantize_row_q5_1`) and ggml-cpu/quants.c (`ggml_vec_dot_q5_1_q8_1_generic`).

use super::f16::{f32_to_le_fp16, le_fp16_to_f32};
use super::q4_1::min_max;
use super::q5_0::{pack5, unpack5};
use super::q8_1::BlockQ8_1;
use super::{as_blocks_mut, expect_blocks, Block, GgmlType, TypeKernels};

pub const QK: usize = 32;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockQ5_1 {
    pub d: [u8; 2],
    pub m: [u8; 2],
    pub qh: [u8; 4],
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ5_1>() == 24);

// SAFETY: repr(C) of byte arrays: alignment 1, no padding, any bits valid.
unsafe impl Block for BlockQ5_1 {}

pub const KERNELS: TypeKernels = TypeKernels {
    ty: GgmlType::Q5_1,
    vec_dot_type: GgmlType::Q8_1,
    to_f32: dequantize_row,
    from_f32: quantize_row,
    vec_dot,
};

pub fn dequantize_row(src: &[u8], dst: &mut [f32]) {
    let blocks = expect_blocks::<BlockQ5_1>(dst.len(), QK, src, "Q5_1 dequantize");
    for (b, y) in blocks.iter().zip(dst.chunks_exact_mut(QK)) {
        let d = le_fp16_to_f32(b.d);
        let m = le_fp16_to_f32(b.m);
        for (y, &q) in y.iter_mut().zip(&unpack5(b.qh, &b.qs)) {
            *y = q as f32 * d + m;
        }
    }
}

pub fn quantize_row(src: &[f32], dst: &mut [u8]) {
    assert!(
        src.len().is_multiple_of(QK),
        "Q5_1 quantize: {} elements",
        src.len()
    );
    let blocks = as_blocks_mut::<BlockQ5_1>(dst);
    assert_eq!(blocks.len(), src.len() / QK, "Q5_1 quantize blocks");
    for (b, x) in blocks.iter_mut().zip(src.chunks_exact(QK)) {
        let (min, max) = min_max(x);
        let d = (max - min) / 31.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b.d = f32_to_le_fp16(d);
        b.m = f32_to_le_fp16(min);
        let mut q = [0u8; 32];
        for (q, &v) in q.iter_mut().zip(x) {
            // No clamp to 31, as in ggml: (max - min)·id rounds to at most 31.
            *q = ((v - min) * id + 0.5) as u8;
        }
        pack5(&q, &mut b.qh, &mut b.qs);
    }
}

pub fn vec_dot(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let x = expect_blocks::<BlockQ5_1>(n, QK, w, "Q5_1 vec_dot weights");
    let y = expect_blocks::<BlockQ8_1>(n, QK, a, "Q5_1 vec_dot activations");
    let mut sumf = 0.0f32;
    for (x, y) in x.iter().zip(y) {
        let q = unpack5(x.qh, &x.qs);
        let sumi: i32 = q
            .iter()
            .zip(&y.qs)
            .map(|(&q, &a)| q as i32 * a as i32)
            .sum();
        let dd = le_fp16_to_f32(x.d) * le_fp16_to_f32(y.d);
        sumf += dd * sumi as f32 + le_fp16_to_f32(x.m) * le_fp16_to_f32(y.s);
    }
    sumf
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::as_blocks;

    #[test]
    fn quantize_known_block() {
        // min -2.0, max 13.5: d = 0.5, so the 32 steps of 0.5 are exact.
        let x: Vec<f32> = (0..32).map(|i| -2.0 + 0.5 * i as f32).collect();
        let mut b = [0u8; 24];
        quantize_row(&x, &mut b);
        let blk = as_blocks::<BlockQ5_1>(&b)[0];
        assert_eq!(le_fp16_to_f32(blk.d), 0.5);
        assert_eq!(le_fp16_to_f32(blk.m), -2.0);
        let mut y = [0.0f32; 32];
        dequantize_row(&b, &mut y);
        assert_eq!(y.as_slice(), x.as_slice());
    }
}
