//! Q6_K: 6-bit symmetric weights, 16 sub-blocks of 16 with signed 8-bit scales, `x = d·sc·(q-32)`.
//! Layout: ggml-common.h `block_q6_K` — per half (128 elements): 64 bytes of low nibbles
//! (`ql[l]` holds elements `l` and `l+64`, `ql[l+32]` elements `l+32` and `l+96`) and 32 bytes of
//! high bit pairs (`qh[l]` bits 0-1, 2-3, 4-5, 6-7 for elements `l`, `l+32`, `l+64`, `l+96`).
//! Also holds ggml's `make_qx_quants` scale search.
//!
//! Scalar code only; the AVX2 twins (`vec_dot`, `dequantize_row`) live in `x86/avx2/kquants.rs`.

use std::mem::{align_of, size_of};

use super::f16::{f32_to_le_fp16, le_fp16_to_f32};
use super::q8_k::{check_row, nearest_int, BlockQ8K, QK_K};
use super::{as_blocks, as_blocks_mut, Block, GgmlType, TypeKernels};

/// ggml's GROUP_MAX_EPS: a group whose largest magnitude is below this is stored as zeros.
pub(crate) const GROUP_MAX_EPS: f32 = 1e-15;

/// `block_q6_K`: 128 bytes `ql`, 64 bytes `qh`, 16 signed scales, f16 `d`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockQ6K {
    pub ql: [u8; QK_K / 2],
    pub qh: [u8; QK_K / 4],
    pub scales: [i8; QK_K / 16],
    pub d: [u8; 2],
}

const _: () = assert!(size_of::<BlockQ6K>() == 210 && align_of::<BlockQ6K>() == 1);

// SAFETY: repr(C), only byte arrays: alignment 1, no padding, every bit pattern is valid.
unsafe impl Block for BlockQ6K {}

pub const KERNELS: TypeKernels = TypeKernels {
    ty: GgmlType::Q6_K,
    vec_dot_type: GgmlType::Q8_K,
    to_f32: dequantize_row,
    from_f32: quantize_row,
    vec_dot,
};

/// ggml's `make_qx_quants` with `rmse_type = 1` and no importance weights (the only use in the
/// reference quantizers): symmetric quants `L` in `0..2·nmax` (stored with `+nmax`), weights
/// `x²`, and 18 trial scales around `nmax/max` keeping the best weighted least-squares fit.
pub(crate) fn make_qx_quants_rmse1(nmax: i32, x: &[f32], l_out: &mut [i8]) -> f32 {
    let n = x.len();
    let mut max = 0.0f32;
    let mut amax = 0.0f32;
    for &v in x {
        let av = v.abs();
        if av > amax {
            amax = av;
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        l_out[..n].fill(0);
        return 0.0;
    }
    let nmaxf = nmax as f32;
    let mut iscale = -nmaxf / max;
    let mut sumlx = 0.0f32;
    let mut suml2 = 0.0f32;
    for i in 0..n {
        let l = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1);
        l_out[i] = (l + nmax) as i8;
        let w = x[i] * x[i];
        let lf = l as f32;
        sumlx += w * x[i] * lf;
        suml2 += w * lf * lf;
    }
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in -9..=9 {
        if is == 0 {
            continue;
        }
        iscale = -(nmaxf + 0.1 * is as f32) / max;
        sumlx = 0.0;
        suml2 = 0.0;
        for &v in x {
            let l = nearest_int(iscale * v).clamp(-nmax, nmax - 1);
            let w = v * v;
            let lf = l as f32;
            sumlx += w * v * lf;
            suml2 += w * lf * lf;
        }
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for i in 0..n {
                let l = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1);
                l_out[i] = (l + nmax) as i8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// Dequantizes whole Q6_K blocks (ggml `dequantize_row_q6_K`).
pub fn dequantize_row(bytes: &[u8], y: &mut [f32]) {
    check_row(y.len(), bytes.len(), size_of::<BlockQ6K>(), "Q6_K");
    for (b, y) in as_blocks::<BlockQ6K>(bytes)
        .iter()
        .zip(y.chunks_exact_mut(QK_K))
    {
        let d = le_fp16_to_f32(b.d);
        for h in 0..2 {
            let (ql, qh) = (&b.ql[64 * h..64 * h + 64], &b.qh[32 * h..32 * h + 32]);
            let sc = &b.scales[8 * h..8 * h + 8];
            let y = &mut y[128 * h..128 * h + 128];
            for l in 0..32 {
                let is = l / 16;
                let q1 = i32::from((ql[l] & 0xF) | ((qh[l] & 3) << 4)) - 32;
                let q2 = i32::from((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                let q3 = i32::from((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                let q4 = i32::from((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l] = d * f32::from(sc[is]) * q1 as f32;
                y[l + 32] = d * f32::from(sc[is + 2]) * q2 as f32;
                y[l + 64] = d * f32::from(sc[is + 4]) * q3 as f32;
                y[l + 96] = d * f32::from(sc[is + 6]) * q4 as f32;
            }
        }
    }
}

/// Reference quantizer (ggml `quantize_row_q6_K_ref`), byte-identical to ggml's.
pub fn quantize_row(x: &[f32], bytes: &mut [u8]) {
    check_row(x.len(), bytes.len(), size_of::<BlockQ6K>(), "Q6_K");
    let mut l = [0i8; QK_K];
    let mut scales = [0.0f32; QK_K / 16];
    for (b, x) in as_blocks_mut::<BlockQ6K>(bytes)
        .iter_mut()
        .zip(x.chunks_exact(QK_K))
    {
        let mut max_scale = 0.0f32;
        let mut max_abs_scale = 0.0f32;
        for ib in 0..QK_K / 16 {
            let s = make_qx_quants_rmse1(32, &x[16 * ib..16 * ib + 16], &mut l[16 * ib..]);
            scales[ib] = s;
            if s.abs() > max_abs_scale {
                max_abs_scale = s.abs();
                max_scale = s;
            }
        }
        if max_abs_scale < GROUP_MAX_EPS {
            *b = BlockQ6K {
                ql: [0; 128],
                qh: [0; 64],
                scales: [0; 16],
                d: [0; 2],
            };
            continue;
        }
        let iscale = -128.0 / max_scale;
        b.d = f32_to_le_fp16(1.0 / iscale);
        for (s, &v) in b.scales.iter_mut().zip(&scales) {
            *s = nearest_int(iscale * v).min(127) as i8;
        }
        let d = le_fp16_to_f32(b.d);
        for j in 0..QK_K / 16 {
            let dj = d * f32::from(b.scales[j]);
            if dj == 0.0 {
                continue;
            }
            for ii in 0..16 {
                let q = nearest_int(x[16 * j + ii] / dj).clamp(-32, 31);
                l[16 * j + ii] = (q + 32) as i8;
            }
        }
        for h in 0..2 {
            let l = &l[128 * h..128 * h + 128];
            for i in 0..32 {
                let q = |k: usize| l[i + 32 * k] as u8;
                b.ql[64 * h + i] = (q(0) & 0xF) | ((q(2) & 0xF) << 4);
                b.ql[64 * h + i + 32] = (q(1) & 0xF) | ((q(3) & 0xF) << 4);
                b.qh[32 * h + i] =
                    (q(0) >> 4) | ((q(1) >> 4) << 2) | ((q(2) >> 4) << 4) | ((q(3) >> 4) << 6);
            }
        }
    }
}

/// The integer part of one Q6_K·Q8_K block, exact in i32: `Σ sc_j Σ (q-32)·q8`.
#[inline(always)]
fn block_sum(x: &BlockQ6K, y: &BlockQ8K) -> i32 {
    let mut isum = 0i32;
    for h in 0..2 {
        let (ql, qh) = (&x.ql[64 * h..64 * h + 64], &x.qh[32 * h..32 * h + 32]);
        let q8 = &y.qs[128 * h..128 * h + 128];
        let sc = &x.scales[8 * h..8 * h + 8];
        // Sixteen elements at a time share one scale per quarter: fixed-size inner loops that
        // the compiler vectorizes.
        for t in 0..2 {
            let mut sub = [0i32; 4];
            for l in 16 * t..16 * t + 16 {
                let q1 = i32::from((ql[l] & 0xF) | ((qh[l] & 3) << 4)) - 32;
                let q2 = i32::from((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                let q3 = i32::from((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                let q4 = i32::from((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                sub[0] += q1 * i32::from(q8[l]);
                sub[1] += q2 * i32::from(q8[l + 32]);
                sub[2] += q3 * i32::from(q8[l + 64]);
                sub[3] += q4 * i32::from(q8[l + 96]);
            }
            for (k, s) in sub.iter().enumerate() {
                isum += s * i32::from(sc[t + 2 * k]);
            }
        }
    }
    isum
}

/// Per-block float step shared with the AVX2 twin, so both round identically.
#[inline(always)]
pub(crate) fn accumulate(sumf: f32, x: &BlockQ6K, y: &BlockQ8K, isum: i32) -> f32 {
    sumf + le_fp16_to_f32(x.d) * y.d() * isum as f32
}

/// Q6_K · Q8_K over `n` elements (scalar; ggml `ggml_vec_dot_q6_K_q8_K_generic`).
pub fn vec_dot(n: usize, w: &[u8], a: &[u8]) -> f32 {
    check_row(n, w.len(), size_of::<BlockQ6K>(), "Q6_K");
    check_row(n, a.len(), size_of::<BlockQ8K>(), "Q8_K");
    let mut sumf = 0.0f32;
    for (x, y) in as_blocks::<BlockQ6K>(w)
        .iter()
        .zip(as_blocks::<BlockQ8K>(a))
    {
        sumf = accumulate(sumf, x, y, block_sum(x, y));
    }
    sumf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantize_dequantize_is_close() {
        let x: Vec<f32> = (0..QK_K)
            .map(|i| (i as f32 * 0.23).cos() * 1.5 - 0.2)
            .collect();
        let mut q = vec![0u8; 210];
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
        assert!(rmse < 0.02, "rmse {rmse}");
    }

    #[test]
    fn zero_block_is_all_zero() {
        let mut q = vec![0xFFu8; 210];
        quantize_row(&[0.0; QK_K], &mut q);
        assert!(q.iter().all(|&b| b == 0));
    }
}
