//! Activation quantizers as ggml-cpu runs them, which is not always the reference quantizer that
//! writes model files. For Q8_0 and Q8_1, ggml's x86 SIMD `quantize_row_q8_0`/`quantize_row_q8_1`
//! (arch/x86/quants.c, used whenever llama.cpp is built with AVX/AVX2) compute the inverse scale as
//! `127 / amax` and round half to even, while `quantize_row_q8_*_ref` uses `1 / (amax / 127)` and
//! rounds half away from zero. The two disagree by one step on a few values per block, and Gemma 3
//! amplifies that to ~1e-3 NMSE at the logits; with the quantizers below our logits match
//! llama.cpp's to ~1e-12. Q8_K activations use ggml's reference quantizer on every CPU, so the
//! quant module's own `from_f32` serves for it and every other `vec_dot_type`.
//!
//! Block layouts (ggml-common.h): `block_q8_0 { f16 d; i8 qs[32] }` (34 bytes) and
//! `block_q8_1 { f16 d; f16 s; i8 qs[32] }` (36 bytes, `s = d * sum(qs)`).

use half::f16;

use crate::quant::{FromF32Fn, GgmlType, TypeKernels};

const QK: usize = 32;

/// The quantizer ggml-cpu applies to activations multiplied with weights of kernels `k`.
pub fn activation_quantizer(k: &TypeKernels, act: &TypeKernels) -> FromF32Fn {
    match k.vec_dot_type {
        GgmlType::Q8_0 => quantize_q8_0,
        GgmlType::Q8_1 => quantize_q8_1,
        _ => act.from_f32,
    }
}

/// One block's scale and quants: `d = amax / 127`, `q = round_half_even(x * (127 / amax))`.
fn block(x: &[f32], qs: &mut [u8]) -> (f32, i32) {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    let mut sum = 0i32;
    for (q, &v) in qs.iter_mut().zip(x) {
        // |v * id| <= 127 (up to rounding of id, which the saturating cast absorbs as ggml's
        // saturating packs do).
        let i = (round_half_even(v * id) as i32).clamp(-128, 127);
        sum += i;
        *q = i as i8 as u8;
    }
    (d, sum)
}

/// Round half to even for |x| < 2^22: adding 1.5 * 2^23 leaves no fraction bits, so the FPU's
/// default rounding (to nearest, ties to even) does the rounding. `f32::round_ties_even` is a libm
/// call without SSE4.1 at compile time; this is two adds. Larger |x| (never the case here: |x| is
/// at most ~127) would lose precision.
#[inline]
fn round_half_even(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    (x + MAGIC) - MAGIC
}

/// ggml-cpu's x86 `quantize_row_q8_0`.
pub fn quantize_q8_0(x: &[f32], y: &mut [u8]) {
    assert!(
        x.len().is_multiple_of(QK) && y.len() == x.len() / QK * 34,
        "q8_0 row lengths"
    );
    for (xb, yb) in x.chunks_exact(QK).zip(y.chunks_exact_mut(34)) {
        let (d, _) = block(xb, &mut yb[2..]);
        yb[..2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
    }
}

/// ggml-cpu's x86 `quantize_row_q8_1` (AVX2 branch: `s = f16(d * sum)` with an exact integer sum).
pub fn quantize_q8_1(x: &[f32], y: &mut [u8]) {
    assert!(
        x.len().is_multiple_of(QK) && y.len() == x.len() / QK * 36,
        "q8_1 row lengths"
    );
    for (xb, yb) in x.chunks_exact(QK).zip(y.chunks_exact_mut(36)) {
        let (d, sum) = block(xb, &mut yb[4..]);
        yb[..2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
        yb[2..4].copy_from_slice(&f16::from_f32(d * sum as f32).to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_round_to_even_and_scale_is_127_over_amax() {
        // amax 127 makes id exactly 1, so x.5 values are true ties.
        let mut x = vec![0.0f32; 32];
        x[0] = 127.0;
        x[1] = 2.5;
        x[2] = -3.5;
        x[3] = 0.5;
        let mut y = vec![0u8; 34];
        quantize_q8_0(&x, &mut y);
        assert_eq!(f16::from_le_bytes([y[0], y[1]]).to_f32(), 1.0);
        assert_eq!(&y[2..6], &[127u8, 2, (-4i8) as u8, 0]);
        let mut y1 = vec![0u8; 36];
        quantize_q8_1(&x, &mut y1);
        assert_eq!(&y1[4..8], &y[2..6]);
        assert_eq!(
            f16::from_le_bytes([y1[2], y1[3]]).to_f32(),
            127.0 + 2.0 - 4.0
        );
    }

    #[test]
    fn magic_rounding_equals_round_ties_even() {
        for i in -300_000..300_000 {
            let x = i as f32 * 0.000_5 + 0.25 * (i % 4) as f32;
            assert_eq!(round_half_even(x), x.round_ties_even(), "{x}");
        }
    }

    #[test]
    fn zero_block_quantizes_to_zero() {
        let mut y = vec![1u8; 34];
        quantize_q8_0(&[0.0; 32], &mut y);
        assert!(y.iter().all(|&b| b == 0));
    }
}
