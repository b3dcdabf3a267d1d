//! Q2_K: 2-bit weights, 16 sub-blocks of 16 with 4-bit scales and 4-bit mins,
//! `x = d·sc·q - dmin·m`. Layout: ggml-common.h `block_q2_K` — `scales[j]` holds the scale of
//! sub-block `j` in its low and the min in its high nibble; per half (128 elements) 32 bytes of
//! quants where bits `2s..2s+2` of byte `i` hold element `32s + i`.
//!
//! Scalar code only; the AVX2 twin of `vec_dot` lives in `x86/avx2/kquants.rs`.

use std::mem::{align_of, size_of};

use super::f16::{f32_to_le_fp16, le_fp16_to_f32};
use super::q4_k::make_qkx2_quants;
use super::q8_k::{check_row, nearest_int, BlockQ8K, QK_K};
use super::{as_blocks, as_blocks_mut, Block, GgmlType, TypeKernels};

/// `block_q2_K`: 16 bytes of scale/min nibbles, 64 bytes of quants, f16 `d` and `dmin`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockQ2K {
    pub scales: [u8; QK_K / 16],
    pub qs: [u8; QK_K / 4],
    pub d: [u8; 2],
    pub dmin: [u8; 2],
}

const _: () = assert!(size_of::<BlockQ2K>() == 84 && align_of::<BlockQ2K>() == 1);

// SAFETY: repr(C), only byte arrays: alignment 1, no padding, every bit pattern is valid.
unsafe impl Block for BlockQ2K {}

pub const KERNELS: TypeKernels = TypeKernels {
    ty: GgmlType::Q2_K,
    vec_dot_type: GgmlType::Q8_K,
    to_f32: dequantize_row,
    from_f32: quantize_row,
    vec_dot,
};

/// The 2-bit quant of element `e` (0..256).
#[inline(always)]
fn quant(b: &BlockQ2K, e: usize) -> u8 {
    let (h, s, i) = (e / 128, (e / 32) % 4, e % 32);
    (b.qs[32 * h + i] >> (2 * s)) & 3
}

/// Dequantizes whole Q2_K blocks (ggml `dequantize_row_q2_K`).
pub fn dequantize_row(bytes: &[u8], y: &mut [f32]) {
    check_row(y.len(), bytes.len(), size_of::<BlockQ2K>(), "Q2_K");
    for (b, y) in as_blocks::<BlockQ2K>(bytes)
        .iter()
        .zip(y.chunks_exact_mut(QK_K))
    {
        let d = le_fp16_to_f32(b.d);
        let min = le_fp16_to_f32(b.dmin);
        for (j, y) in y.chunks_exact_mut(16).enumerate() {
            let sc = b.scales[j];
            let dl = d * f32::from(sc & 0xF);
            let ml = min * f32::from(sc >> 4);
            for (l, y) in y.iter_mut().enumerate() {
                *y = dl * f32::from(quant(b, 16 * j + l)) - ml;
            }
        }
    }
}

/// Reference quantizer (ggml `quantize_row_q2_K_ref`), byte-identical to ggml's.
pub fn quantize_row(x: &[f32], bytes: &mut [u8]) {
    check_row(x.len(), bytes.len(), size_of::<BlockQ2K>(), "Q2_K");
    const Q4SCALE: f32 = 15.0;
    let mut l = [0u8; QK_K];
    let mut weights = [0.0f32; 16];
    let mut scales = [0.0f32; 16];
    let mut mins = [0.0f32; 16];
    for (b, x) in as_blocks_mut::<BlockQ2K>(bytes)
        .iter_mut()
        .zip(x.chunks_exact(QK_K))
    {
        let mut max_scale = 0.0f32;
        let mut max_min = 0.0f32;
        for j in 0..16 {
            let xs = &x[16 * j..16 * j + 16];
            for (w, &v) in weights.iter_mut().zip(xs) {
                *w = v.abs();
            }
            let (s, m) = make_qkx2_quants(3, xs, &weights, &mut l[16 * j..], -0.5, 0.1, 15, true);
            scales[j] = s;
            mins[j] = m;
            if s > max_scale {
                max_scale = s;
            }
            if m > max_min {
                max_min = m;
            }
        }
        if max_scale > 0.0 {
            let iscale = Q4SCALE / max_scale;
            for (o, &s) in b.scales.iter_mut().zip(&scales) {
                *o = nearest_int(iscale * s) as u8;
            }
            b.d = f32_to_le_fp16(max_scale / Q4SCALE);
        } else {
            b.scales = [0; 16];
            b.d = f32_to_le_fp16(0.0);
        }
        if max_min > 0.0 {
            let iscale = Q4SCALE / max_min;
            for (o, &m) in b.scales.iter_mut().zip(&mins) {
                *o |= (nearest_int(iscale * m) << 4) as u8;
            }
            b.dmin = f32_to_le_fp16(max_min / Q4SCALE);
        } else {
            b.dmin = f32_to_le_fp16(0.0);
        }
        let (df, dminf) = (le_fp16_to_f32(b.d), le_fp16_to_f32(b.dmin));
        for j in 0..16 {
            let d = df * f32::from(b.scales[j] & 0xF);
            if d == 0.0 {
                continue;
            }
            let dm = dminf * f32::from(b.scales[j] >> 4);
            for ii in 0..16 {
                let q = nearest_int((x[16 * j + ii] + dm) / d).clamp(0, 3);
                l[16 * j + ii] = q as u8;
            }
        }
        for h in 0..2 {
            for i in 0..32 {
                let q = |k: usize| l[128 * h + 32 * k + i];
                b.qs[32 * h + i] = q(0) | (q(1) << 2) | (q(2) << 4) | (q(3) << 6);
            }
        }
    }
}

/// The integer part of one Q2_K·Q8_K block: `(Σ sc_j Σ q·q8, Σ m_j · bsums_j)`, exact in i32.
#[inline(always)]
fn block_sums(x: &BlockQ2K, y: &BlockQ8K) -> (i32, i32) {
    let mut summs = 0i32;
    for j in 0..16 {
        summs += y.bsum(j) * i32::from(x.scales[j] >> 4);
    }
    let mut isum = 0i32;
    for h in 0..2 {
        let q2 = &x.qs[32 * h..32 * h + 32];
        for s in 0..4 {
            let q8 = &y.qs[128 * h + 32 * s..128 * h + 32 * s + 32];
            for t in 0..2 {
                let mut sub = 0i32;
                for l in 16 * t..16 * t + 16 {
                    sub += i32::from((q2[l] >> (2 * s)) & 3) * i32::from(q8[l]);
                }
                isum += i32::from(x.scales[8 * h + 2 * s + t] & 0xF) * sub;
            }
        }
    }
    (isum, summs)
}

/// Per-block float step shared with the AVX2 twin, so both round identically.
#[inline(always)]
pub(crate) fn accumulate(sumf: f32, x: &BlockQ2K, y: &BlockQ8K, isum: i32, summs: i32) -> f32 {
    let dall = y.d() * le_fp16_to_f32(x.d);
    let dmin = y.d() * le_fp16_to_f32(x.dmin);
    sumf + (dall * isum as f32 - dmin * summs as f32)
}

/// Q2_K · Q8_K over `n` elements (scalar; ggml `ggml_vec_dot_q2_K_q8_K_generic`).
pub fn vec_dot(n: usize, w: &[u8], a: &[u8]) -> f32 {
    check_row(n, w.len(), size_of::<BlockQ2K>(), "Q2_K");
    check_row(n, a.len(), size_of::<BlockQ8K>(), "Q8_K");
    let mut sumf = 0.0f32;
    for (x, y) in as_blocks::<BlockQ2K>(w)
        .iter()
        .zip(as_blocks::<BlockQ8K>(a))
    {
        let (isum, summs) = block_sums(x, y);
        sumf = accumulate(sumf, x, y, isum, summs);
    }
    sumf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantize_dequantize_is_close() {
        let x: Vec<f32> = (0..QK_K)
            .map(|i| (i as f32 * 0.41).sin() * 2.0 + 0.1)
            .collect();
        let mut q = vec![0u8; 84];
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
        assert!(rmse < 0.45, "rmse {rmse}");
    }
}
