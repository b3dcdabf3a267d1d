//! Dot products of quantized weight rows with quantized activation rows in the float order of the
//! kernel llama.cpp's CPU backend runs for them (AVX2 builds), where that order differs from our
//! quant module's one-accumulator reference. Integer parts are exact in any order; what has to
//! match is which partial sums are converted to f32, how they are accumulated (FMA lanes) and how
//! the lanes are added at the end. Without this, a row's result differs in the last bit now and
//! then, the next Q8 activation quantization occasionally rounds the other way, and Gemma 3
//! amplifies that into logit differences of ~1e-3 NMSE. The functions here are the portable
//! statement of each order; `quant::x86::avx2::ggml_order` has their AVX2 twins (bit-identical,
//! checked below), which `vec_dot_for` hands out where the CPU has AVX2.

use crate::quant::f16::le_fp16_to_f32;
use crate::quant::q4_k::{self, BlockQ4K};
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

/// Q4_K · Q8_K in the order of ggml-cpu's repacked `q4_K_8x8` kernels (AVX2 machines, matrices
/// whose row count is a multiple of 8, any number of activation rows): per super-block
/// `acc = fma(f32(isum), d_w·d_a, acc)` and `accm = fma(f32(Σ min·bsum), dmin_w·d_a, accm)`, and
/// `acc - accm` at the end.
pub fn vec_dot_q4_k_repacked(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let xs = as_blocks::<BlockQ4K>(w);
    let ys = as_blocks::<BlockQ8K>(a);
    assert!(
        xs.len() == ys.len() && xs.len() * 256 == n,
        "Q4_K/Q8_K row lengths"
    );
    let (mut acc, mut accm) = (0.0f32, 0.0f32);
    for (x, y) in xs.iter().zip(ys) {
        let (isum, summ) = q4_k::block_sums(x, y);
        acc = (isum as f32).mul_add(le_fp16_to_f32(x.d) * y.d(), acc);
        accm = (summ as f32).mul_add(le_fp16_to_f32(x.dmin) * y.d(), accm);
    }
    acc - accm
}

/// Fewest activation rows for which llama.cpp's CPU backend takes its batched kernels (the tiled
/// K-quant matmul's `ggml_tiled_min_batch`).
pub const BATCH_MIN_ROWS: usize = 8;

/// The exact-order replacements for the `vec_dot` of a weight matrix of type `ty` with `n_rows`
/// rows, where needed: for fewer than [`BATCH_MIN_ROWS`] activation rows and for more.
pub fn vec_dot_for(ty: GgmlType, n_rows: usize) -> Option<(VecDotFn, VecDotFn)> {
    #[cfg(target_arch = "x86_64")]
    if crate::quant::x86::avx2_available() {
        return avx2::vec_dot_for(ty, n_rows);
    }
    match ty {
        GgmlType::Q6_K => Some((vec_dot_q6_k, vec_dot_q6_k_tiled)),
        // ggml repacks Q4_K only on AVX2 machines; elsewhere its plain kernels run, whose order
        // the quant module's reference already has.
        _ => None,
    }
}

/// Four weight rows (back to back in `w`) against one activation row, each row bit-identical to
/// the matching single-row kernel: the decode-time form that shares activation loads.
pub type Dot4Fn = fn(w: &[u8], a: &[u8]) -> [f32; 4];

/// Four-row kernels for a weight matrix of type `ty` with `n_rows` rows, in the same orders as
/// [`vec_dot_for`] (or the type's own `vec_dot` where that gives none): for fewer than
/// [`BATCH_MIN_ROWS`] activation rows and for more. `None` where no such kernel exists.
pub fn dot4_for(ty: GgmlType, n_rows: usize) -> (Option<Dot4Fn>, Option<Dot4Fn>) {
    #[cfg(target_arch = "x86_64")]
    if crate::quant::x86::avx2_available() {
        return avx2::dot4_for(ty, n_rows);
    }
    let _ = (ty, n_rows);
    (None, None)
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::Dot4Fn;
    use crate::quant::x86::avx2::ggml_order as k;
    use crate::quant::x86::avx2::rows4 as r4;
    use crate::quant::{GgmlType, VecDotFn};

    macro_rules! safe4 {
        ($f:path) => {{
            fn safe(w: &[u8], a: &[u8]) -> [f32; 4] {
                // SAFETY: handed out only after `avx2_available()` confirmed avx2, fma and f16c;
                // the kernel checks its slice lengths itself.
                unsafe { $f(w, a) }
            }
            safe as Dot4Fn
        }};
    }

    pub(super) fn dot4_for(ty: GgmlType, n_rows: usize) -> (Option<Dot4Fn>, Option<Dot4Fn>) {
        // Q8_0 and Q5_0 run in ggml's vec_dot order for any batch (llamafile's tinyBLAS has the
        // same lanes and the same final sum); Q6_K's batched order is a different chain.
        match ty {
            GgmlType::Q8_0 => {
                let f = safe4!(r4::vec_dot4_q8_0);
                (Some(f), Some(f))
            }
            GgmlType::Q5_0 => {
                let f = safe4!(r4::vec_dot4_q5_0);
                (Some(f), Some(f))
            }
            GgmlType::Q6_K => (Some(safe4!(r4::vec_dot4_q6_k)), None),
            GgmlType::Q4_K if n_rows.is_multiple_of(8) => {
                let f = safe4!(r4::vec_dot4_q4_k_repacked);
                (Some(f), Some(f))
            }
            _ => (None, None),
        }
    }

    macro_rules! safe {
        ($f:path) => {{
            fn safe(n: usize, w: &[u8], a: &[u8]) -> f32 {
                // SAFETY: handed out only after `avx2_available()` confirmed avx2, fma and f16c;
                // the kernel checks its slice lengths itself.
                unsafe { $f(n, w, a) }
            }
            safe as VecDotFn
        }};
    }

    pub(super) fn vec_dot_for(ty: GgmlType, n_rows: usize) -> Option<(VecDotFn, VecDotFn)> {
        match ty {
            GgmlType::Q6_K => Some((safe!(k::vec_dot_q6_k), safe!(k::vec_dot_q6_k_tiled))),
            GgmlType::Q4_K if n_rows.is_multiple_of(8) => {
                let f = safe!(k::vec_dot_q4_k_repacked);
                Some((f, f))
            }
            _ => None,
        }
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

    fn rows(ty: GgmlType, n: usize, seed: usize) -> (Vec<u8>, Vec<u8>) {
        let w: Vec<f32> = (0..n)
            .map(|i| (((i + seed) * 37 % 101) as f32 - 50.0) * 0.013 + (i as f32 * 0.01).sin())
            .collect();
        let x: Vec<f32> = (0..n)
            .map(|i| (((i + 3 * seed) * 53 % 97) as f32 - 48.0) * 0.021)
            .collect();
        let kw = quant::kernels(ty).expect("weight type");
        let ka = quant::kernels(GgmlType::Q8_K).expect("q8_k");
        let mut wq = vec![0u8; quant::row_bytes(ty, n).expect("row")];
        let mut aq = vec![0u8; quant::row_bytes(GgmlType::Q8_K, n).expect("row")];
        (kw.from_f32)(&w, &mut wq);
        (ka.from_f32)(&x, &mut aq);
        (wq, aq)
    }

    #[test]
    fn q4_k_repacked_order_equals_the_reference_up_to_rounding() {
        let n = 1024;
        let (wq, aq) = rows(GgmlType::Q4_K, n, 1);
        let want = quant::q4_k::vec_dot(n, &wq, &aq);
        let got = vec_dot_q4_k_repacked(n, &wq, &aq);
        assert!(
            (got - want).abs() <= 1e-5 * want.abs().max(1.0),
            "{got} vs {want}"
        );
    }

    /// The AVX2 twins give the same bits as the portable statements of each order.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_twins_are_bit_identical() {
        if !crate::quant::x86::avx2_available() {
            eprintln!("skipping: no AVX2");
            return;
        }
        for seed in 0..20 {
            let n = 256 * (1 + seed % 8);
            let (wq, aq) = rows(GgmlType::Q6_K, n, seed);
            let (d, t) = avx2::vec_dot_for(GgmlType::Q6_K, 8).expect("q6_k");
            assert_eq!(
                d(n, &wq, &aq).to_bits(),
                vec_dot_q6_k(n, &wq, &aq).to_bits()
            );
            assert_eq!(
                t(n, &wq, &aq).to_bits(),
                vec_dot_q6_k_tiled(n, &wq, &aq).to_bits()
            );
            let (wq, aq) = rows(GgmlType::Q4_K, n, seed);
            let (d, _) = avx2::vec_dot_for(GgmlType::Q4_K, 640).expect("q4_k");
            let want = vec_dot_q4_k_repacked(n, &wq, &aq);
            assert_eq!(d(n, &wq, &aq).to_bits(), want.to_bits());
        }
        assert!(avx2::vec_dot_for(GgmlType::Q4_K, 641).is_none());
    }

    /// Four-row kernels give, row by row, the bits of the single-row kernels of the same order.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn four_row_kernels_equal_single_rows() {
        if !crate::quant::x86::avx2_available() {
            eprintln!("skipping: no AVX2");
            return;
        }
        for ty in [
            GgmlType::Q8_0,
            GgmlType::Q5_0,
            GgmlType::Q6_K,
            GgmlType::Q4_K,
        ] {
            let n = 768;
            let kw = quant::kernels(ty).expect("weight type");
            let act_ty = kw.vec_dot_type;
            let ka = quant::kernels(act_ty).expect("act type");
            let rb = quant::row_bytes(ty, n).expect("row");
            let mut w = vec![0u8; 4 * rb];
            for r in 0..4 {
                let v: Vec<f32> = (0..n)
                    .map(|i| ((i * (r + 3) * 37 % 101) as f32 - 50.0) * 0.011)
                    .collect();
                (kw.from_f32)(&v, &mut w[r * rb..(r + 1) * rb]);
            }
            let x: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let mut a = vec![0u8; quant::row_bytes(act_ty, n).expect("row")];
            super::super::act_quant::activation_quantizer(kw, ka)(&x, &mut a);
            let (d4, b4) = dot4_for(ty, 8);
            let (d1, b1) = vec_dot_for(ty, 8).unwrap_or((kw.vec_dot, kw.vec_dot));
            for (four, one) in [(d4, d1), (b4, b1)] {
                let Some(four) = four else { continue };
                let got = four(&w, &a);
                for r in 0..4 {
                    let want = one(n, &w[r * rb..(r + 1) * rb], &a);
                    assert_eq!(got[r].to_bits(), want.to_bits(), "{ty} row {r}");
                }
            }
        }
    }
}
