//! Q5_K: 5-bit weights, the Q4_K layout plus one high bit per weight (`qh`, bit `2k`/`2k+1` of
//! byte `i` is the high bit of element `i` of sub-block `2k`/`2k+1`). `x = d·sc·q - dmin·m`.
//! Layout: ggml-common.h `block_q5_K`.
//!
//! Scalar code only; the AVX2 twins (`vec_dot`, `dequantize_row`) live in `x86/avx2/kquants.rs`.

use std::mem::{align_of, size_of};

use super::f16::le_fp16_to_f32;
use super::q4_k::{quantize_scales_mins_k4, scale_min_k4, unpack_scales_mins};
use super::q8_k::{check_row, BlockQ8K, QK_K};
use super::{as_blocks, as_blocks_mut, Block, GgmlType, TypeKernels};

/// `block_q5_K`: f16 `d`/`dmin`, 12 bytes of 6-bit scales and mins (packed as Q4_K), 32 bytes of
/// high bits, 128 bytes of low nibbles.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockQ5K {
    pub d: [u8; 2],
    pub dmin: [u8; 2],
    pub scales: [u8; 12],
    pub qh: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 2],
}

const _: () = assert!(size_of::<BlockQ5K>() == 176 && align_of::<BlockQ5K>() == 1);

// SAFETY: repr(C), only byte arrays: alignment 1, no padding, every bit pattern is valid.
unsafe impl Block for BlockQ5K {}

pub const KERNELS: TypeKernels = TypeKernels {
    ty: GgmlType::Q5_K,
    vec_dot_type: GgmlType::Q8_K,
    to_f32: dequantize_row,
    from_f32: quantize_row,
    vec_dot,
};

/// Dequantizes whole Q5_K blocks (ggml `dequantize_row_q5_K`).
pub fn dequantize_row(bytes: &[u8], y: &mut [f32]) {
    check_row(y.len(), bytes.len(), size_of::<BlockQ5K>(), "Q5_K");
    for (b, y) in as_blocks::<BlockQ5K>(bytes)
        .iter()
        .zip(y.chunks_exact_mut(QK_K))
    {
        let d = le_fp16_to_f32(b.d);
        let min = le_fp16_to_f32(b.dmin);
        for (k, (ql, y)) in
            b.qs.chunks_exact(32)
                .zip(y.chunks_exact_mut(64))
                .enumerate()
        {
            let (sc1, m1) = scale_min_k4(2 * k, &b.scales);
            let (sc2, m2) = scale_min_k4(2 * k + 1, &b.scales);
            let (d1, m1) = (d * f32::from(sc1), min * f32::from(m1));
            let (d2, m2) = (d * f32::from(sc2), min * f32::from(m2));
            let (u1, u2) = (1u8 << (2 * k), 2u8 << (2 * k));
            let (lo, hi) = y.split_at_mut(32);
            for i in 0..32 {
                let h1 = if b.qh[i] & u1 != 0 { 16 } else { 0 };
                let h2 = if b.qh[i] & u2 != 0 { 16 } else { 0 };
                lo[i] = d1 * f32::from((ql[i] & 0xF) + h1) - m1;
                hi[i] = d2 * f32::from((ql[i] >> 4) + h2) - m2;
            }
        }
    }
}

/// Reference quantizer (ggml `quantize_row_q5_K_ref`), byte-identical to ggml's.
pub fn quantize_row(x: &[f32], bytes: &mut [u8]) {
    check_row(x.len(), bytes.len(), size_of::<BlockQ5K>(), "Q5_K");
    let mut l = [0u8; QK_K];
    for (b, x) in as_blocks_mut::<BlockQ5K>(bytes)
        .iter_mut()
        .zip(x.chunks_exact(QK_K))
    {
        let (d, dmin, scales) = quantize_scales_mins_k4(x, 31, -0.5, 15, &mut l);
        b.d = d;
        b.dmin = dmin;
        b.scales = scales;
        b.qh = [0; QK_K / 8];
        for (k, (ql, l)) in
            b.qs.chunks_exact_mut(32)
                .zip(l.chunks_exact(64))
                .enumerate()
        {
            let (m1, m2) = (1u8 << (2 * k), 2u8 << (2 * k));
            for j in 0..32 {
                let mut l1 = l[j];
                if l1 > 15 {
                    l1 -= 16;
                    b.qh[j] |= m1;
                }
                let mut l2 = l[j + 32];
                if l2 > 15 {
                    l2 -= 16;
                    b.qh[j] |= m2;
                }
                ql[j] = l1 | (l2 << 4);
            }
        }
    }
}

/// The integer part of one Q5_K·Q8_K block, exact in i32 (see `q4_k`).
#[inline(always)]
fn block_sums(x: &BlockQ5K, y: &BlockQ8K) -> (i32, i32) {
    let (sc, m) = unpack_scales_mins(&x.scales);
    let mut summ = 0i32;
    for j in 0..16 {
        summ += y.bsum(j) * i32::from(m[j / 2]);
    }
    let mut isum = 0i32;
    for (k, (q4, q8)) in x.qs.chunks_exact(32).zip(y.qs.chunks_exact(64)).enumerate() {
        let (mut lo, mut hi) = (0i32, 0i32);
        for i in 0..32 {
            let h1 = i32::from((x.qh[i] >> (2 * k)) & 1) << 4;
            let h2 = i32::from((x.qh[i] >> (2 * k + 1)) & 1) << 4;
            lo += (i32::from(q4[i] & 0xF) + h1) * i32::from(q8[i]);
            hi += (i32::from(q4[i] >> 4) + h2) * i32::from(q8[i + 32]);
        }
        isum += i32::from(sc[2 * k]) * lo + i32::from(sc[2 * k + 1]) * hi;
    }
    (isum, summ)
}

/// Per-block float step shared with the AVX2 twin, so both round identically.
#[inline(always)]
pub(crate) fn accumulate(sumf: f32, x: &BlockQ5K, y: &BlockQ8K, isum: i32, summ: i32) -> f32 {
    let d = y.d() * le_fp16_to_f32(x.d);
    let dmin = y.d() * le_fp16_to_f32(x.dmin);
    sumf + (d * isum as f32 - dmin * summ as f32)
}

/// Q5_K · Q8_K over `n` elements (scalar; ggml `ggml_vec_dot_q5_K_q8_K_generic`).
pub fn vec_dot(n: usize, w: &[u8], a: &[u8]) -> f32 {
    check_row(n, w.len(), size_of::<BlockQ5K>(), "Q5_K");
    check_row(n, a.len(), size_of::<BlockQ8K>(), "Q8_K");
    let mut sumf = 0.0f32;
    for (x, y) in as_blocks::<BlockQ5K>(w)
        .iter()
        .zip(as_blocks::<BlockQ8K>(a))
    {
        let (isum, summ) = block_sums(x, y);
        sumf = accumulate(sumf, x, y, isum, summ);
    }
    sumf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantize_dequantize_is_close() {
        let x: Vec<f32> = (0..QK_K)
            .map(|i| (i as f32 * 0.29).sin() * 2.0 + 0.3)
            .collect();
        let mut q = vec![0u8; 176];
        quantize_row(&x, &mut q);
        let mut y = vec![0.0; QK_K];
        dequantize_row(&q, &mut y);
        let rmse = (x
            .iter()
            .zip(&y)
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f32>()
            / 256.0)
            .sqrt();
        assert!(rmse < 0.04, "rmse {rmse}");
        // The top bit must be in use: a 4-bit fit of this data would be twice as coarse.
        assert!(as_blocks::<BlockQ5K>(&q)[0].qh.iter().any(|&h| h != 0));
    }
}
