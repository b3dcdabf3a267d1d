//! Q5_0: blocks of 32, `d: f16`, `qh: u32` (little-endian; bit j is the fifth bit of element j),
//! then 16 bytes of low nibbles (element j low, j+16 high); x = d·(q − 16). Activations are Q8_0.
//! Facts from ggml-common.h (`block_q5_0`), ggml-quants.c (`quantize_row_q5_0_ref`,
//! `dequantize_row_q5_0`) and ggml-cpu/quants.c (`ggml_vec_dot_q5_0_q8_0_generic`).

use super::f16::{f32_to_le_fp16, le_fp16_to_f32};
use super::q8_0::BlockQ8_0;
use super::{as_blocks_mut, expect_blocks, Block, GgmlType, TypeKernels};

pub const QK: usize = 32;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockQ5_0 {
    pub d: [u8; 2],
    pub qh: [u8; 4],
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ5_0>() == 22);

// SAFETY: repr(C) of byte arrays: alignment 1, no padding, any bits valid.
unsafe impl Block for BlockQ5_0 {}

pub const KERNELS: TypeKernels = TypeKernels {
    ty: GgmlType::Q5_0,
    vec_dot_type: GgmlType::Q8_0,
    to_f32: dequantize_row,
    from_f32: quantize_row,
    vec_dot,
};

/// The 32 unsigned 5-bit values of a block (0..=31), in element order. Shared with Q5_1.
#[inline]
pub(crate) fn unpack5(qh: [u8; 4], qs: &[u8; 16]) -> [u8; 32] {
    let qh = u32::from_le_bytes(qh);
    let mut q = [0u8; 32];
    for (j, &b) in qs.iter().enumerate() {
        q[j] = (b & 0x0F) | (((qh >> j) as u8 & 1) << 4);
        q[j + 16] = (b >> 4) | (((qh >> (j + 16)) as u8 & 1) << 4);
    }
    q
}

/// Pack 32 unsigned 5-bit values (only the low 5 bits are kept) into `qh` and `qs`.
#[inline]
pub(crate) fn pack5(q: &[u8; 32], qh: &mut [u8; 4], qs: &mut [u8; 16]) {
    let mut h = 0u32;
    for j in 0..16 {
        qs[j] = (q[j] & 0x0F) | ((q[j + 16] & 0x0F) << 4);
        h |= ((q[j] as u32 & 0x10) >> 4) << j;
        h |= ((q[j + 16] as u32 & 0x10) >> 4) << (j + 16);
    }
    *qh = h.to_le_bytes();
}

pub fn dequantize_row(src: &[u8], dst: &mut [f32]) {
    let blocks = expect_blocks::<BlockQ5_0>(dst.len(), QK, src, "Q5_0 dequantize");
    for (b, y) in blocks.iter().zip(dst.chunks_exact_mut(QK)) {
        let d = le_fp16_to_f32(b.d);
        for (y, &q) in y.iter_mut().zip(&unpack5(b.qh, &b.qs)) {
            *y = (q as i32 - 16) as f32 * d;
        }
    }
}

pub fn quantize_row(src: &[f32], dst: &mut [u8]) {
    assert!(
        src.len().is_multiple_of(QK),
        "Q5_0 quantize: {} elements",
        src.len()
    );
    let blocks = as_blocks_mut::<BlockQ5_0>(dst);
    assert_eq!(blocks.len(), src.len() / QK, "Q5_0 quantize blocks");
    for (b, x) in blocks.iter_mut().zip(src.chunks_exact(QK)) {
        let (mut amax, mut max) = (0.0f32, 0.0f32);
        for &v in x {
            if amax < v.abs() {
                amax = v.abs();
                max = v;
            }
        }
        let d = max / -16.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b.d = f32_to_le_fp16(d);
        let mut q = [0u8; 32];
        for (q, &v) in q.iter_mut().zip(x) {
            *q = ((v * id + 16.5) as i8).min(31) as u8;
        }
        pack5(&q, &mut b.qh, &mut b.qs);
    }
}

pub fn vec_dot(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let x = expect_blocks::<BlockQ5_0>(n, QK, w, "Q5_0 vec_dot weights");
    let y = expect_blocks::<BlockQ8_0>(n, QK, a, "Q5_0 vec_dot activations");
    let mut sumf = 0.0f32;
    for (x, y) in x.iter().zip(y) {
        let q = unpack5(x.qh, &x.qs);
        let sumi: i32 = q
            .iter()
            .zip(&y.qs)
            .map(|(&q, &a)| (q as i32 - 16) * a as i32)
            .sum();
        sumf += (le_fp16_to_f32(x.d) * le_fp16_to_f32(y.d)) * sumi as f32;
    }
    sumf
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::as_blocks;

    #[test]
    fn quantize_known_block() {
        // Largest magnitude -8.0 → d = 0.5; every multiple of 0.5 in [-8, 7.5] is exact.
        let x: Vec<f32> = (0..32).map(|i| (-8.0 + 0.5 * i as f32).min(7.5)).collect();
        let mut b = [0u8; 22];
        quantize_row(&x, &mut b);
        let blk = as_blocks::<BlockQ5_0>(&b)[0];
        assert_eq!(le_fp16_to_f32(blk.d), 0.5);
        let mut y = [0.0f32; 32];
        dequantize_row(&b, &mut y);
        assert_eq!(y.as_slice(), x.as_slice());
    }

    #[test]
    fn pack_unpack_round_trip() {
        let q: [u8; 32] = std::array::from_fn(|i| (i as u8 * 7) % 32);
        let (mut qh, mut qs) = ([0u8; 4], [0u8; 16]);
        pack5(&q, &mut qh, &mut qs);
        assert_eq!(unpack5(qh, &qs), q);
    }
}
