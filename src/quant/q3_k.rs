//! Q3_K: 3-bit symmetric weights, 16 sub-blocks of 16 with 6-bit signed scales,
//! `x = d·(sc-32)·(q-4)`. Layout: ggml-common.h `block_q3_K` — `hmask` holds the third bit
//! (bit `k` of byte `i` for element `32k+i`), `qs` the low two bits (as Q2_K), and the 16 scales
//! are 4 low bits in bytes 0..8 plus 2 high bits in bytes 8..12. Also holds ggml's
//! `make_q3_quants`.
//!
//! Scalar code only; the AVX2 twin of `vec_dot` lives in `x86/avx2/kquants.rs`.

use std::mem::{align_of, size_of};

use super::f16::{f32_to_le_fp16, le_fp16_to_f32};
use super::q6_k::GROUP_MAX_EPS;
use super::q8_k::{check_row, nearest_int, BlockQ8K, QK_K};
use super::{as_blocks, as_blocks_mut, Block, GgmlType, TypeKernels};

/// `block_q3_K`: 32 bytes `hmask`, 64 bytes `qs`, 12 bytes packed scales, f16 `d`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockQ3K {
    pub hmask: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 4],
    pub scales: [u8; 12],
    pub d: [u8; 2],
}

const _: () = assert!(size_of::<BlockQ3K>() == 110 && align_of::<BlockQ3K>() == 1);

// SAFETY: repr(C), only byte arrays: alignment 1, no padding, every bit pattern is valid.
unsafe impl Block for BlockQ3K {}

pub const KERNELS: TypeKernels = TypeKernels {
    ty: GgmlType::Q3_K,
    vec_dot_type: GgmlType::Q8_K,
    to_f32: dequantize_row,
    from_f32: quantize_row,
    vec_dot,
};

/// The 16 scales, 6-bit unsigned (subtract 32 for the signed value).
#[inline(always)]
pub(crate) fn unpack_scales(s: &[u8; 12]) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (j, o) in out.iter_mut().enumerate() {
        let low = if j < 8 { s[j] & 0xF } else { s[j - 8] >> 4 };
        *o = low | (((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4);
    }
    out
}

/// ggml's `make_q3_quants` with `do_rmse = true`: symmetric quants in `-nmax..nmax` weighted by
/// `x²`, refined by up to 5 passes of coordinate descent. Returns the scale; `l_out` gets
/// `L + nmax`.
fn make_q3_quants(nmax: i32, x: &[f32], l_out: &mut [i8]) -> f32 {
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
    let iscale = -(nmax as f32) / max;
    let mut l = [0i32; 16];
    let mut sumlx = 0.0f32;
    let mut suml2 = 0.0f32;
    for i in 0..n {
        l[i] = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1);
        let w = x[i] * x[i];
        let lf = l[i] as f32;
        sumlx += w * x[i] * lf;
        suml2 += w * lf * lf;
    }
    for _ in 0..5 {
        let mut n_changed = 0;
        for i in 0..n {
            let w = x[i] * x[i];
            let li = l[i] as f32;
            let mut slx = sumlx - w * x[i] * li;
            if slx > 0.0 {
                let mut sl2 = suml2 - w * li * li;
                let new_l = nearest_int(x[i] * sl2 / slx).clamp(-nmax, nmax - 1);
                if new_l != l[i] {
                    let nl = new_l as f32;
                    slx += w * x[i] * nl;
                    sl2 += w * nl * nl;
                    if sl2 > 0.0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                        l[i] = new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        n_changed += 1;
                    }
                }
            }
        }
        if n_changed == 0 {
            break;
        }
    }
    for i in 0..n {
        l_out[i] = (l[i] + nmax) as i8;
    }
    if suml2 > 0.0 {
        sumlx / suml2
    } else {
        0.0
    }
}

/// Dequantizes whole Q3_K blocks (ggml `dequantize_row_q3_K`).
pub fn dequantize_row(bytes: &[u8], y: &mut [f32]) {
    check_row(y.len(), bytes.len(), size_of::<BlockQ3K>(), "Q3_K");
    for (b, y) in as_blocks::<BlockQ3K>(bytes)
        .iter()
        .zip(y.chunks_exact_mut(QK_K))
    {
        let d_all = le_fp16_to_f32(b.d);
        let sc = unpack_scales(&b.scales);
        // Element e = 128h + 32s + 16t + l: bits 2s of qs[32h + 16t + l], hmask bit 4h+s.
        for (e, y) in y.iter_mut().enumerate() {
            let (h, s, i) = (e / 128, (e / 32) % 4, e % 32);
            let q = i32::from((b.qs[32 * h + i] >> (2 * s)) & 3);
            let hi = if b.hmask[i] & (1 << (4 * h + s)) != 0 {
                0
            } else {
                4
            };
            let dl = d_all * (i32::from(sc[e / 16]) - 32) as f32;
            *y = dl * (q - hi) as f32;
        }
    }
}

/// Reference quantizer (ggml `quantize_row_q3_K_ref`), byte-identical to ggml's.
pub fn quantize_row(x: &[f32], bytes: &mut [u8]) {
    check_row(x.len(), bytes.len(), size_of::<BlockQ3K>(), "Q3_K");
    let mut l = [0i8; QK_K];
    let mut scales = [0.0f32; 16];
    for (b, x) in as_blocks_mut::<BlockQ3K>(bytes)
        .iter_mut()
        .zip(x.chunks_exact(QK_K))
    {
        let mut max_scale = 0.0f32;
        let mut amax = 0.0f32;
        for j in 0..16 {
            scales[j] = make_q3_quants(4, &x[16 * j..16 * j + 16], &mut l[16 * j..16 * j + 16]);
            if scales[j].abs() > amax {
                amax = scales[j].abs();
                max_scale = scales[j];
            }
        }
        b.scales = [0; 12];
        if max_scale != 0.0 {
            let iscale = -32.0 / max_scale;
            for (j, &s) in scales.iter().enumerate() {
                // ggml stores the int into an int8_t before clamping: keep the wrap.
                let v = ((nearest_int(iscale * s) as i8).clamp(-32, 31) + 32) as u8;
                if j < 8 {
                    b.scales[j] = v & 0xF;
                } else {
                    b.scales[j - 8] |= (v & 0xF) << 4;
                }
                b.scales[8 + j % 4] |= (v >> 4) << (2 * (j / 4));
            }
            b.d = f32_to_le_fp16(1.0 / iscale);
        } else {
            b.d = f32_to_le_fp16(0.0);
        }
        let d_all = le_fp16_to_f32(b.d);
        let sc = unpack_scales(&b.scales);
        for j in 0..16 {
            let d = d_all * (i32::from(sc[j]) - 32) as f32;
            if d == 0.0 {
                continue;
            }
            for ii in 0..16 {
                let q = nearest_int(x[16 * j + ii] / d).clamp(-4, 3);
                l[16 * j + ii] = (q + 4) as i8;
            }
        }
        b.hmask = [0; 32];
        for (j, lj) in l.iter_mut().enumerate() {
            if *lj > 3 {
                b.hmask[j % 32] |= 1 << (j / 32);
                *lj -= 4;
            }
        }
        for h in 0..2 {
            for i in 0..32 {
                let q = |k: usize| l[128 * h + 32 * k + i] as u8;
                b.qs[32 * h + i] = q(0) | (q(1) << 2) | (q(2) << 4) | (q(3) << 6);
            }
        }
    }
}

/// The integer part of one Q3_K·Q8_K block, exact in i32: `Σ (sc_j-32) Σ q·q8`.
#[inline(always)]
fn block_sum(x: &BlockQ3K, y: &BlockQ8K) -> i32 {
    let sc = unpack_scales(&x.scales);
    let mut isum = 0i32;
    for h in 0..2 {
        let q3 = &x.qs[32 * h..32 * h + 32];
        for s in 0..4 {
            let q8 = &y.qs[128 * h + 32 * s..128 * h + 32 * s + 32];
            let bit = 1u8 << (4 * h + s);
            for t in 0..2 {
                let mut sub = 0i32;
                for l in 16 * t..16 * t + 16 {
                    let low = i32::from((q3[l] >> (2 * s)) & 3);
                    let q = if x.hmask[l] & bit != 0 { low } else { low - 4 };
                    sub += q * i32::from(q8[l]);
                }
                isum += (i32::from(sc[8 * h + 2 * s + t]) - 32) * sub;
            }
        }
    }
    isum
}

/// Per-block float step shared with the AVX2 twin, so both round identically.
#[inline(always)]
pub(crate) fn accumulate(sumf: f32, x: &BlockQ3K, y: &BlockQ8K, isum: i32) -> f32 {
    sumf + le_fp16_to_f32(x.d) * y.d() * isum as f32
}

/// Q3_K · Q8_K over `n` elements (scalar; ggml `ggml_vec_dot_q3_K_q8_K_generic`).
pub fn vec_dot(n: usize, w: &[u8], a: &[u8]) -> f32 {
    check_row(n, w.len(), size_of::<BlockQ3K>(), "Q3_K");
    check_row(n, a.len(), size_of::<BlockQ8K>(), "Q8_K");
    let mut sumf = 0.0f32;
    for (x, y) in as_blocks::<BlockQ3K>(w)
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
            .map(|i| (i as f32 * 0.41).sin() * 2.0 + 0.1)
            .collect();
        let mut q = vec![0u8; 110];
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
        assert!(rmse < 0.25, "rmse {rmse}");
    }
}
