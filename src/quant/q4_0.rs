//! Q4_0: blocks of 32 weights, `d: f16` then 16 bytes of nibbles; x = d·(q − 8). Byte j holds
//! element j in its low nibble and element j+16 in its high nibble. Activations are Q8_0.
//! Facts from ggml-common.h (`block_q4_0`), ggml-quants.c (`quantize_row_q4_0_ref`,
//! `dequantize_row_q4_0`) and ggml-cpu/quants.c (`ggml_vec_dot_q4_0_q8_0_generic`).

use super::f16::{f32_to_le_fp16, le_fp16_to_f32};
use super::q8_0::BlockQ8_0;
use super::{as_blocks_mut, expect_blocks, Block, GgmlType, TypeKernels};

pub const QK: usize = 32;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockQ4_0 {
    pub d: [u8; 2],
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4_0>() == 18);

// SAFETY: repr(C) of byte arrays: alignment 1, no padding, any bits valid.
unsafe impl Block for BlockQ4_0 {}

pub const KERNELS: TypeKernels = TypeKernels {
    ty: GgmlType::Q4_0,
    vec_dot_type: GgmlType::Q8_0,
    to_f32: dequantize_row,
    from_f32: quantize_row,
    vec_dot,
};

pub fn dequantize_row(src: &[u8], dst: &mut [f32]) {
    let blocks = expect_blocks::<BlockQ4_0>(dst.len(), QK, src, "Q4_0 dequantize");
    for (b, y) in blocks.iter().zip(dst.chunks_exact_mut(QK)) {
        let d = le_fp16_to_f32(b.d);
        let (lo, hi) = y.split_at_mut(QK / 2);
        for ((l, h), &q) in lo.iter_mut().zip(hi).zip(&b.qs) {
            *l = ((q & 0x0F) as i32 - 8) as f32 * d;
            *h = ((q >> 4) as i32 - 8) as f32 * d;
        }
    }
}

pub fn quantize_row(src: &[f32], dst: &mut [u8]) {
    assert!(
        src.len().is_multiple_of(QK),
        "Q4_0 quantize: {} elements",
        src.len()
    );
    let blocks = as_blocks_mut::<BlockQ4_0>(dst);
    assert_eq!(blocks.len(), src.len() / QK, "Q4_0 quantize blocks");
    for (b, x) in blocks.iter_mut().zip(src.chunks_exact(QK)) {
        // The signed value of largest magnitude maps to -8, so the scale keeps its sign.
        let (mut amax, mut max) = (0.0f32, 0.0f32);
        for &v in x {
            if amax < v.abs() {
                amax = v.abs();
                max = v;
            }
        }
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b.d = f32_to_le_fp16(d);
        let (lo, hi) = x.split_at(QK / 2);
        for ((q, &x0), &x1) in b.qs.iter_mut().zip(lo).zip(hi) {
            // C truncates toward zero via (int8_t); `as` does the same for in-range values.
            let q0 = ((x0 * id + 8.5) as i8).min(15) as u8;
            let q1 = ((x1 * id + 8.5) as i8).min(15) as u8;
            *q = q0 | (q1 << 4);
        }
    }
}

pub fn vec_dot(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let x = expect_blocks::<BlockQ4_0>(n, QK, w, "Q4_0 vec_dot weights");
    let y = expect_blocks::<BlockQ8_0>(n, QK, a, "Q4_0 vec_dot activations");
    let mut sumf = 0.0f32;
    for (x, y) in x.iter().zip(y) {
        let (ylo, yhi) = y.qs.split_at(QK / 2);
        let mut sumi = 0i32;
        for ((&q, &a0), &a1) in x.qs.iter().zip(ylo).zip(yhi) {
            sumi += ((q & 0x0F) as i32 - 8) * a0 as i32 + ((q >> 4) as i32 - 8) * a1 as i32;
        }
        // Same association as ggml: (sumi·dx)·dy.
        sumf += sumi as f32 * le_fp16_to_f32(x.d) * le_fp16_to_f32(y.d);
    }
    sumf
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::as_blocks;

    #[test]
    fn quantize_known_block() {
        // The largest magnitude is -4.0, so d = 0.5 and -4 → q 0, 3.5 → q 15.
        let mut x = [0.0f32; 32];
        x[0] = -4.0;
        x[1] = 3.5;
        x[17] = 1.0;
        let mut b = [0u8; 18];
        quantize_row(&x, &mut b);
        let blk = as_blocks::<BlockQ4_0>(&b)[0];
        assert_eq!(le_fp16_to_f32(blk.d), 0.5);
        assert_eq!(blk.qs[0] & 0x0F, 0);
        assert_eq!(blk.qs[1], 15 | (10 << 4));
        let mut y = [0.0f32; 32];
        dequantize_row(&b, &mut y);
        assert_eq!(y, x);
    }
}
