//! Q4_1: blocks of 32, `d: f16`, `m: f16`, then 16 bytes of nibbles; x = d·q + m. Byte j holds
//! element j (low nibble) and j+16 (high nibble). Activations are Q8_1, whose `s` carries the
//! offset term: Σ(d·q + m)·(d8·q8) = d·d8·Σq·q8 + m·s.
//! Facts from ggml-common.h (`block_q4_1`), ggml-quants.c (`quantize_row_q4_1_ref`,
//! `dequantize_row_q4_1`) and ggml-cpu/quants.c (`ggml_vec_dot_q4_1_q8_1_generic`).

use super::f16::{f32_to_le_fp16, le_fp16_to_f32};
use super::q8_1::BlockQ8_1;
use super::{as_blocks_mut, expect_blocks, Block, GgmlType, TypeKernels};

pub const QK: usize = 32;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockQ4_1 {
    pub d: [u8; 2],
    pub m: [u8; 2],
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4_1>() == 20);

// SAFETY: repr(C) of byte arrays: alignment 1, no padding, any bits valid.
unsafe impl Block for BlockQ4_1 {}

pub const KERNELS: TypeKernels = TypeKernels {
    ty: GgmlType::Q4_1,
    vec_dot_type: GgmlType::Q8_1,
    to_f32: dequantize_row,
    from_f32: quantize_row,
    vec_dot,
};

pub fn dequantize_row(src: &[u8], dst: &mut [f32]) {
    let blocks = expect_blocks::<BlockQ4_1>(dst.len(), QK, src, "Q4_1 dequantize");
    for (b, y) in blocks.iter().zip(dst.chunks_exact_mut(QK)) {
        let d = le_fp16_to_f32(b.d);
        let m = le_fp16_to_f32(b.m);
        let (lo, hi) = y.split_at_mut(QK / 2);
        for ((l, h), &q) in lo.iter_mut().zip(hi).zip(&b.qs) {
            *l = (q & 0x0F) as f32 * d + m;
            *h = (q >> 4) as f32 * d + m;
        }
    }
}

/// Min and max of a block, compared as ggml's reference does (so NaNs are skipped the same way).
#[inline]
pub(crate) fn min_max(x: &[f32]) -> (f32, f32) {
    let (mut min, mut max) = (f32::MAX, -f32::MAX);
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    (min, max)
}

pub fn quantize_row(src: &[f32], dst: &mut [u8]) {
    assert!(
        src.len().is_multiple_of(QK),
        "Q4_1 quantize: {} elements",
        src.len()
    );
    let blocks = as_blocks_mut::<BlockQ4_1>(dst);
    assert_eq!(blocks.len(), src.len() / QK, "Q4_1 quantize blocks");
    for (b, x) in blocks.iter_mut().zip(src.chunks_exact(QK)) {
        let (min, max) = min_max(x);
        let d = (max - min) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b.d = f32_to_le_fp16(d);
        b.m = f32_to_le_fp16(min);
        let (lo, hi) = x.split_at(QK / 2);
        for ((q, &x0), &x1) in b.qs.iter_mut().zip(lo).zip(hi) {
            let q0 = (((x0 - min) * id + 0.5) as i8).min(15) as u8;
            let q1 = (((x1 - min) * id + 0.5) as i8).min(15) as u8;
            *q = q0 | (q1 << 4);
        }
    }
}

pub fn vec_dot(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let x = expect_blocks::<BlockQ4_1>(n, QK, w, "Q4_1 vec_dot weights");
    let y = expect_blocks::<BlockQ8_1>(n, QK, a, "Q4_1 vec_dot activations");
    let mut sumf = 0.0f32;
    for (x, y) in x.iter().zip(y) {
        let (ylo, yhi) = y.qs.split_at(QK / 2);
        let mut sumi = 0i32;
        for ((&q, &a0), &a1) in x.qs.iter().zip(ylo).zip(yhi) {
            sumi += (q & 0x0F) as i32 * a0 as i32 + (q >> 4) as i32 * a1 as i32;
        }
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
        // min 1.0, max 8.5: d = 0.5, so every multiple of 0.5 in range is exact.
        let x: Vec<f32> = (0..32).map(|i| 1.0 + 0.5 * (i % 16) as f32).collect();
        let mut b = [0u8; 20];
        quantize_row(&x, &mut b);
        let blk = as_blocks::<BlockQ4_1>(&b)[0];
        assert_eq!(le_fp16_to_f32(blk.d), 0.5);
        assert_eq!(le_fp16_to_f32(blk.m), 1.0);
        let mut y = [0.0f32; 32];
        dequantize_row(&b, &mut y);
        assert_eq!(y.as_slice(), x.as_slice());
    }
}
