//! Dot products of quantized weight rows with quantized activation rows in the float order of the
//! kernel llama.cpp's CPU backend runs for them (AVX2 builds), where that order differs from our
//! quant module's one-accumulator reference. Integer parts are exact in any order; what has to
//! match is which partial sums are converted to f32, how they are accumulated (FMA lanes) and how
//! the lanes are added at the end. Without this, a row's result differs in the last bit now and
//! then, the next Q8 activation quantization occasionally rounds the other way, and Gemma 3
//! amplifies that into logit differences of ~1e-3 NMSE. Nothing here is faster than the quant
//! module's kernels; it is exact.

use crate::quant::f16::le_fp16_to_f32;
use crate::quant::q6_k::BlockQ6K;
use crate::quant::q8_k::BlockQ8K;
use crate::quant::{as_blocks, GgmlType, VecDotFn};

use super::ops::hsum8;

/// The eight int32 lanes of ggml-cpu's AVX2 `ggml_vec_dot_q6_K_q8_K` for one super-block: lane `l`
/// holds, for each 32-element chunk, the products of bytes `4l..4l+4` of the chunk times their
/// sub-block scale (with the unsigned 6-bit quants), minus `32 * (bsums[2l] * sc[2l] +
/// bsums[2l+1] * sc[2l+1])` (the -32 offset, taken from the Q8_K group sums). Their sum is the
/// super-block's exact integer dot product.
fn q6_k_lanes(x: &BlockQ6K, y: &BlockQ8K) -> [i32; 8] {
    let sc = &x.scales;
    let bsum = |g: usize| i32::from(i16::from_le_bytes(y.bsums[g]));
    let mut lanes = [0i32; 8];
    for (l, lane) in lanes.iter_mut().enumerate() {
        *lane =
            -32 * (bsum(2 * l) * i32::from(sc[2 * l]) + bsum(2 * l + 1) * i32::from(sc[2 * l + 1]));
    }
    for j in 0..2 {
        let ql = &x.ql[64 * j..64 * j + 64];
        let qh = &x.qh[32 * j..32 * j + 32];
        for c in 0..4 {
            let q8 = &y.qs[128 * j + 32 * c..][..32];
            for (l, lane) in lanes.iter_mut().enumerate() {
                let mut s = 0i32;
                for b in 4 * l..4 * l + 4 {
                    let low = match c {
                        0 => ql[b] & 0xF,
                        1 => ql[32 + b] & 0xF,
                        2 => ql[b] >> 4,
                        _ => ql[32 + b] >> 4,
                    };
                    let high = (qh[b] >> (2 * c)) & 3;
                    s += i32::from(low | (high << 4)) * i32::from(q8[b]);
                }
                *lane += s * i32::from(sc[8 * j + 2 * c + l / 4]);
            }
        }
    }
    lanes
}

fn q6_k_blocks<'a>(n: usize, w: &'a [u8], a: &'a [u8]) -> (&'a [BlockQ6K], &'a [BlockQ8K]) {
    let xs = as_blocks::<BlockQ6K>(w);
    let ys = as_blocks::<BlockQ8K>(a);
    assert!(
        xs.len() == ys.len() && xs.len() * 256 == n,
        "Q6_K/Q8_K row lengths"
    );
    (xs, ys)
}

/// Q6_K · Q8_K as ggml-cpu's AVX2 `ggml_vec_dot_q6_K_q8_K` rounds it (llama.cpp's path for fewer
/// than 8 activation rows, i.e. decoding): each of the eight lanes of [`q6_k_lanes`] is converted
/// to f32 and accumulated over the super-blocks with `fma(d_w * d_a, lane, acc)`; the lanes end
/// in `hsum8`. Layouts: `block_q6_K` (see `quant::q6_k`), `block_q8_K` (f32 d, 256 i8, 16 i16
/// group sums).
pub fn vec_dot_q6_k(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let (xs, ys) = q6_k_blocks(n, w, a);
    let mut acc = [0.0f32; 8];
    for (x, y) in xs.iter().zip(ys) {
        let d = y.d() * le_fp16_to_f32(x.d);
        for (a, &v) in acc.iter_mut().zip(&q6_k_lanes(x, y)) {
            *a = d.mul_add(v as f32, *a);
        }
    }
    hsum8(&acc)
}

/// Q6_K · Q8_K as ggml-cpu's tiled K-quant matmul (`tiled/tiled-kernel.cpp`, AVX2, on by default,
/// taken for 8 or more activation rows, i.e. prompt batches) rounds it: per super-block the exact
/// integer sum, `res = d_w * f32(isum)`, then `acc = fma(res, d_a, acc)` in one accumulator.
pub fn vec_dot_q6_k_tiled(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let (xs, ys) = q6_k_blocks(n, w, a);
    let mut acc = 0.0f32;
    for (x, y) in xs.iter().zip(ys) {
        let isum: i32 = q6_k_lanes(x, y).iter().sum();
        let res = le_fp16_to_f32(x.d) * isum as f32;
        acc = res.mul_add(y.d(), acc);
    }
    acc
}

/// Fewest activation rows for which llama.cpp's CPU backend takes its batched kernels (the tiled
/// K-quant matmul's `ggml_tiled_min_batch`).
pub const BATCH_MIN_ROWS: usize = 8;

/// The exact-order replacements for a weight type's `vec_dot`, where needed: for fewer than
/// [`BATCH_MIN_ROWS`] activation rows and for more.
pub fn vec_dot_for(ty: GgmlType) -> Option<(VecDotFn, VecDotFn)> {
    match ty {
        GgmlType::Q6_K => Some((vec_dot_q6_k, vec_dot_q6_k_tiled)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant;

    /// Same value as the reference dot up to float rounding (the integer lane split is exact).
    #[test]
    fn q6_k_lanes_equal_the_reference_up_to_rounding() {
        let n = 512;
        let w: Vec<f32> = (0..n)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013)
            .collect();
        let x: Vec<f32> = (0..n)
            .map(|i| ((i * 53 % 97) as f32 - 48.0) * 0.021)
            .collect();
        let kw = quant::kernels(GgmlType::Q6_K).expect("q6_k");
        let ka = quant::kernels(GgmlType::Q8_K).expect("q8_k");
        let mut wq = vec![0u8; quant::row_bytes(GgmlType::Q6_K, n).expect("row")];
        let mut aq = vec![0u8; quant::row_bytes(GgmlType::Q8_K, n).expect("row")];
        (kw.from_f32)(&w, &mut wq);
        (ka.from_f32)(&x, &mut aq);
        let want = crate::quant::q6_k::vec_dot(n, &wq, &aq);
        let got = vec_dot_q6_k(n, &wq, &aq);
        assert!(
            (got - want).abs() <= 1e-5 * want.abs().max(1.0),
            "{got} vs {want}"
        );
    }
}
