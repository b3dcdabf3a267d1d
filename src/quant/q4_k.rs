//! Q4_K: 4-bit weights in super-blocks of 256 = 8 sub-blocks of 32, `x = d·sc·q - dmin·m` with
//! 6-bit sub-block scales `sc` and mins `m` packed into 12 bytes (layout: ggml-common.h
//! `block_q4_K`). Also holds what Q5_K and Q2_K share with it: the 12-byte scale packing and
//! ggml's `make_qkx2_quants` search for a scale and min.
//!
//! Scalar code only; the AVX2 twins (`vec_dot`, `dequantize_row`) live in `x86/avx2/kquants.rs`.

use std::mem::{align_of, size_of};

use super::f16::{f32_to_le_fp16, le_fp16_to_f32};
use super::q8_k::{check_row, nearest_int, BlockQ8K, QK_K};
use super::{as_blocks, as_blocks_mut, Block, GgmlType, TypeKernels};

/// `block_q4_K`: f16 `d` and `dmin`, 12 bytes of packed 6-bit scales and mins, 128 bytes of
/// nibbles (bytes `32k..32k+32` hold sub-block `2k` in the low and `2k+1` in the high nibbles).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockQ4K {
    pub d: [u8; 2],
    pub dmin: [u8; 2],
    pub scales: [u8; 12],
    pub qs: [u8; QK_K / 2],
}

const _: () = assert!(size_of::<BlockQ4K>() == 144 && align_of::<BlockQ4K>() == 1);

// SAFETY: repr(C), only byte arrays: alignment 1, no padding, every bit pattern is valid.
unsafe impl Block for BlockQ4K {}

pub const KERNELS: TypeKernels = TypeKernels {
    ty: GgmlType::Q4_K,
    vec_dot_type: GgmlType::Q8_K,
    to_f32: dequantize_row,
    from_f32: quantize_row,
    vec_dot,
};

/// Scale and min of sub-block `j` (0..8) from the 12-byte packing of Q4_K/Q5_K (ggml
/// `get_scale_min_k4`): bytes 0..4 hold scales 0..4 and bytes 4..8 mins 0..4 in their low 6 bits;
/// sub-blocks 4..8 keep their low nibbles in bytes 8..12 and their top 2 bits in the spare top
/// bits of bytes 0..8.
#[inline(always)]
pub(crate) fn scale_min_k4(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// All 8 scales and all 8 mins, unpacked.
#[inline(always)]
pub(crate) fn unpack_scales_mins(q: &[u8; 12]) -> ([u8; 8], [u8; 8]) {
    let mut sc = [0u8; 8];
    let mut m = [0u8; 8];
    for j in 0..8 {
        (sc[j], m[j]) = scale_min_k4(j, q);
    }
    (sc, m)
}

/// The inverse of [`scale_min_k4`]; `ls` and `lm` are at most 63.
pub(crate) fn pack_scales_mins(ls: &[u8; 8], lm: &[u8; 8]) -> [u8; 12] {
    let mut s = [0u8; 12];
    for j in 0..8 {
        if j < 4 {
            s[j] = ls[j];
            s[j + 4] = lm[j];
        } else {
            s[j + 4] = (ls[j] & 0xF) | ((lm[j] & 0xF) << 4);
            s[j - 4] |= (ls[j] >> 4) << 6;
            s[j] |= (lm[j] >> 4) << 6;
        }
    }
    s
}

/// ggml's `make_qkx2_quants`: fits `x ≈ scale·L - min` with `L` in `0..=nmax`, trying
/// `nstep + 1` candidate inverse scales `(rmin + rdelta·is + nmax)/(max - min)` and keeping the
/// least weighted squared (or absolute, `use_mad`) error. Returns `(scale, min)` with `min >= 0`
/// subtracted. Every float operation is in ggml's order, so the chosen quants match bit for bit.
#[allow(clippy::too_many_arguments)]
pub(crate) fn make_qkx2_quants(
    nmax: i32,
    x: &[f32],
    weights: &[f32],
    l_out: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    use_mad: bool,
) -> (f32, f32) {
    let n = x.len();
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        let w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l_out[..n].fill(0);
        return (0.0, -min);
    }
    let err = |d: f32| if use_mad { d.abs() } else { d * d };
    let mut iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0.0f32;
    for i in 0..n {
        let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
        l_out[i] = l as u8;
        let diff = scale * l as f32 + min - x[i];
        best_error += weights[i] * err(diff);
    }
    if nstep < 1 {
        return (scale, -min);
    }
    let mut laux = [0u8; 32];
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmax as f32) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0.0f32, 0.0f32, 0.0f32);
        for i in 0..n {
            let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            laux[i] = l as u8;
            let w = weights[i];
            let lf = l as f32;
            sum_l += w * lf;
            sum_l2 += w * lf * lf;
            sum_xl += w * lf * x[i];
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0.0f32;
            for i in 0..n {
                let diff = this_scale * laux[i] as f32 + this_min - x[i];
                cur_error += weights[i] * err(diff);
            }
            if cur_error < best_error {
                l_out[..n].copy_from_slice(&laux[..n]);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// Shared by Q4_K and Q5_K: per sub-block (scale, min) search, 6-bit quantization of both against
/// the block maxima, and the final quants `L` (0..=nmax) re-derived from the stored scales.
/// `rmin`/`nstep` are the per-format `make_qkx2_quants` settings.
pub(crate) fn quantize_scales_mins_k4(
    x: &[f32],
    nmax: i32,
    rmin: f32,
    nstep: i32,
    l: &mut [u8; QK_K],
) -> ([u8; 2], [u8; 2], [u8; 12]) {
    let mut scales = [0.0f32; 8];
    let mut mins = [0.0f32; 8];
    let mut weights = [0.0f32; 32];
    let mut max_scale = 0.0f32;
    let mut max_min = 0.0f32;
    for j in 0..8 {
        let xs = &x[32 * j..32 * j + 32];
        let mut sum_x2 = 0.0f32;
        for &v in xs {
            sum_x2 += v * v;
        }
        let av_x = (sum_x2 / 32.0).sqrt();
        for (w, &v) in weights.iter_mut().zip(xs) {
            *w = av_x + v.abs();
        }
        let (s, m) = make_qkx2_quants(
            nmax,
            xs,
            &weights,
            &mut l[32 * j..32 * j + 32],
            rmin,
            0.1,
            nstep,
            false,
        );
        scales[j] = s;
        mins[j] = m;
        if s > max_scale {
            max_scale = s;
        }
        if m > max_min {
            max_min = m;
        }
    }
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let mut ls = [0u8; 8];
    let mut lm = [0u8; 8];
    for j in 0..8 {
        // ggml stores the int into a uint8_t before clamping: keep the wrap.
        ls[j] = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        lm[j] = (nearest_int(inv_min * mins[j]) as u8).min(63);
    }
    let packed = pack_scales_mins(&ls, &lm);
    let d = f32_to_le_fp16(max_scale / 63.0);
    let dmin = f32_to_le_fp16(max_min / 63.0);
    let (df, dminf) = (le_fp16_to_f32(d), le_fp16_to_f32(dmin));
    for j in 0..8 {
        let (sc, m) = scale_min_k4(j, &packed);
        let dj = df * f32::from(sc);
        if dj == 0.0 {
            continue;
        }
        let dm = dminf * f32::from(m);
        for ii in 0..32 {
            let q = nearest_int((x[32 * j + ii] + dm) / dj).clamp(0, nmax);
            l[32 * j + ii] = q as u8;
        }
    }
    (d, dmin, packed)
}

/// Dequantizes whole Q4_K blocks (ggml `dequantize_row_q4_K`).
pub fn dequantize_row(bytes: &[u8], y: &mut [f32]) {
    check_row(y.len(), bytes.len(), size_of::<BlockQ4K>(), "Q4_K");
    for (b, y) in as_blocks::<BlockQ4K>(bytes)
        .iter()
        .zip(y.chunks_exact_mut(QK_K))
    {
        let d = le_fp16_to_f32(b.d);
        let min = le_fp16_to_f32(b.dmin);
        for (k, (q, y)) in
            b.qs.chunks_exact(32)
                .zip(y.chunks_exact_mut(64))
                .enumerate()
        {
            let (sc1, m1) = scale_min_k4(2 * k, &b.scales);
            let (sc2, m2) = scale_min_k4(2 * k + 1, &b.scales);
            let (d1, m1) = (d * f32::from(sc1), min * f32::from(m1));
            let (d2, m2) = (d * f32::from(sc2), min * f32::from(m2));
            let (lo, hi) = y.split_at_mut(32);
            for ((lo, hi), &q) in lo.iter_mut().zip(hi).zip(q) {
                *lo = d1 * f32::from(q & 0xF) - m1;
                *hi = d2 * f32::from(q >> 4) - m2;
            }
        }
    }
}

/// Reference quantizer (ggml `quantize_row_q4_K_ref`), byte-identical to ggml's.
pub fn quantize_row(x: &[f32], bytes: &mut [u8]) {
    check_row(x.len(), bytes.len(), size_of::<BlockQ4K>(), "Q4_K");
    let mut l = [0u8; QK_K];
    for (b, x) in as_blocks_mut::<BlockQ4K>(bytes)
        .iter_mut()
        .zip(x.chunks_exact(QK_K))
    {
        let (d, dmin, scales) = quantize_scales_mins_k4(x, 15, -1.0, 20, &mut l);
        b.d = d;
        b.dmin = dmin;
        b.scales = scales;
        for (q, l) in b.qs.chunks_exact_mut(32).zip(l.chunks_exact(64)) {
            for i in 0..32 {
                q[i] = l[i] | (l[i + 32] << 4);
            }
        }
    }
}

/// The integer part of one Q4_K·Q8_K block: `(Σ sc_j · Σ q·q8, Σ m_j · bsums)`, exact in i32.
/// The min term uses Q8_K's `bsums` so the nibbles are read once (ggml's generic kernel does the
/// same sums in eight lanes; one exact sum per block lets the SIMD twin match bit for bit).
#[inline(always)]
pub(crate) fn block_sums(x: &BlockQ4K, y: &BlockQ8K) -> (i32, i32) {
    let (sc, m) = unpack_scales_mins(&x.scales);
    let mut summ = 0i32;
    for j in 0..16 {
        summ += y.bsum(j) * i32::from(m[j / 2]);
    }
    let mut isum = 0i32;
    for (k, (q4, q8)) in x.qs.chunks_exact(32).zip(y.qs.chunks_exact(64)).enumerate() {
        let (mut lo, mut hi) = (0i32, 0i32);
        for i in 0..32 {
            lo += i32::from(q4[i] & 0xF) * i32::from(q8[i]);
            hi += i32::from(q4[i] >> 4) * i32::from(q8[i + 32]);
        }
        isum += i32::from(sc[2 * k]) * lo + i32::from(sc[2 * k + 1]) * hi;
    }
    (isum, summ)
}

/// [`block_sums`] split by 64-element chunk `k` (sub-blocks `2k`, `2k+1`): the granularity at
/// which ggml's repacked Q4_K gemm converts its integer sums to float.
pub(crate) fn chunk_sums(x: &BlockQ4K, y: &BlockQ8K) -> ([i32; 4], [i32; 4]) {
    let (sc, m) = unpack_scales_mins(&x.scales);
    let mut isum = [0i32; 4];
    let mut imin = [0i32; 4];
    for (k, (q4, q8)) in x.qs.chunks_exact(32).zip(y.qs.chunks_exact(64)).enumerate() {
        let (mut lo, mut hi) = (0i32, 0i32);
        for i in 0..32 {
            lo += i32::from(q4[i] & 0xF) * i32::from(q8[i]);
            hi += i32::from(q4[i] >> 4) * i32::from(q8[i + 32]);
        }
        isum[k] = i32::from(sc[2 * k]) * lo + i32::from(sc[2 * k + 1]) * hi;
        imin[k] = i32::from(m[2 * k]) * (y.bsum(4 * k) + y.bsum(4 * k + 1))
            + i32::from(m[2 * k + 1]) * (y.bsum(4 * k + 2) + y.bsum(4 * k + 3));
    }
    (isum, imin)
}

/// Per-block float step shared with the AVX2 twin, so both round identically.
#[inline(always)]
pub(crate) fn accumulate(sumf: f32, x: &BlockQ4K, y: &BlockQ8K, isum: i32, summ: i32) -> f32 {
    let d = y.d() * le_fp16_to_f32(x.d);
    let dmin = y.d() * le_fp16_to_f32(x.dmin);
    sumf + (d * isum as f32 - dmin * summ as f32)
}

/// Q4_K · Q8_K over `n` elements (scalar; ggml `ggml_vec_dot_q4_K_q8_K_generic`).
pub fn vec_dot(n: usize, w: &[u8], a: &[u8]) -> f32 {
    check_row(n, w.len(), size_of::<BlockQ4K>(), "Q4_K");
    check_row(n, a.len(), size_of::<BlockQ8K>(), "Q8_K");
    let mut sumf = 0.0f32;
    for (x, y) in as_blocks::<BlockQ4K>(w)
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
    fn scale_packing_round_trips() {
        let ls = [0, 1, 17, 63, 32, 63, 5, 48];
        let lm = [63, 0, 33, 2, 63, 16, 47, 1];
        let p = pack_scales_mins(&ls, &lm);
        assert_eq!(unpack_scales_mins(&p), (ls, lm));
    }

    #[test]
    fn quantize_dequantize_is_close_and_dot_matches_f32() {
        let x: Vec<f32> = (0..2 * QK_K)
            .map(|i| (i as f32 * 0.37).sin() * 3.0 - 0.4)
            .collect();
        let mut q = vec![0u8; 2 * 144];
        quantize_row(&x, &mut q);
        let mut y = vec![0.0; x.len()];
        dequantize_row(&q, &mut y);
        let rmse = (x
            .iter()
            .zip(&y)
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f32>()
            / 512.0)
            .sqrt();
        assert!(rmse < 0.12, "rmse {rmse}");

        let act: Vec<f32> = (0..2 * QK_K).map(|i| (i as f32 * 0.11).cos()).collect();
        let mut qa = vec![0u8; 2 * 292];
        super::super::q8_k::quantize_row(&act, &mut qa);
        let mut ad = vec![0.0; act.len()];
        super::super::q8_k::dequantize_row(&qa, &mut ad);
        let exact: f64 = y
            .iter()
            .zip(&ad)
            .map(|(&a, &b)| f64::from(a) * f64::from(b))
            .sum();
        let got = vec_dot(512, &q, &qa);
        assert!(
            (f64::from(got) - exact).abs() < 1e-3 * exact.abs().max(1.0),
            "{got} vs {exact}"
        );
    }
}
