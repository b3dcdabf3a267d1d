//! AVX2 twins of `cpu::ggml_order`: dot products whose float steps follow, operation for
//! operation, the kernel llama.cpp's CPU backend (AVX2 build) runs for the same weights, so that
//! every output is bit-identical to ggml's. The integer part of each super-block comes from the
//! `kquants` block helpers (exact in any order); only the float chain is spelled out here.
//!
//! # Safety
//! Every `pub unsafe fn` here requires a CPU with avx2, fma and f16c
//! (`quant::x86::avx2_available()`); slice lengths are checked inside (panic on mismatch).

use std::arch::x86_64::*;

use super::kquants::{q4_k_chunk_sums, q6_k_lanes};
use super::{fma1, hsum_ps};
use crate::quant::as_blocks;
use crate::quant::f16::le_fp16_to_f32;
use crate::quant::q4_k::BlockQ4K;
use crate::quant::q6_k::BlockQ6K;
use crate::quant::q8_k::{check_row, BlockQ8K};

fn q4_k_rows<'a>(n: usize, w: &'a [u8], a: &'a [u8]) -> (&'a [BlockQ4K], &'a [BlockQ8K]) {
    check_row(n, w.len(), std::mem::size_of::<BlockQ4K>(), "Q4_K");
    check_row(n, a.len(), std::mem::size_of::<BlockQ8K>(), "Q8_K");
    (as_blocks(w), as_blocks(a))
}

fn q6_k_rows<'a>(n: usize, w: &'a [u8], a: &'a [u8]) -> (&'a [BlockQ6K], &'a [BlockQ8K]) {
    check_row(n, w.len(), std::mem::size_of::<BlockQ6K>(), "Q6_K");
    check_row(n, a.len(), std::mem::size_of::<BlockQ8K>(), "Q8_K");
    (as_blocks(w), as_blocks(a))
}

/// One super-block's float steps in ggml-cpu's repacked `q4_K_8x8` kernels (every Q4_K matrix
/// with a multiple of 8 rows on an AVX2 machine): `acc = fma(f32(isum), d_w·d_a, acc)` and
/// `accm = fma(f32(Σ min·bsum), dmin_w·d_a, accm)`, once per super-block in the gemv (`GEMM =
/// false`) and once per 64-element chunk in the gemm, which llama.cpp runs for the activation
/// rows of a batch that fill whole groups of four. A row's result is `acc - accm`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn q4_k_repacked_step<const GEMM: bool>(
    x: &BlockQ4K,
    y: &BlockQ8K,
    acc: &mut f32,
    accm: &mut f32,
) {
    let (isum, imin) = q4_k_chunk_sums(x, y);
    let (d, dmin) = (le_fp16_to_f32(x.d) * y.d(), le_fp16_to_f32(x.dmin) * y.d());
    if GEMM {
        for k in 0..4 {
            *acc = fma1(isum[k] as f32, d, *acc);
            *accm = fma1(imin[k] as f32, dmin, *accm);
        }
    } else {
        *acc = fma1(isum.iter().sum::<i32>() as f32, d, *acc);
        *accm = fma1(imin.iter().sum::<i32>() as f32, dmin, *accm);
    }
}

/// Q4_K · Q8_K in the gemv order of [`q4_k_repacked_step`].
///
/// # Safety
/// See the module header.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q4_k_repacked(n: usize, w: &[u8], a: &[u8]) -> f32 {
    q4_k_repacked::<false>(n, w, a)
}

/// Q4_K · Q8_K in the gemm order of [`q4_k_repacked_step`].
///
/// # Safety
/// See the module header.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q4_k_repacked_gemm(n: usize, w: &[u8], a: &[u8]) -> f32 {
    q4_k_repacked::<true>(n, w, a)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q4_k_repacked<const GEMM: bool>(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let (xs, ys) = q4_k_rows(n, w, a);
    let (mut acc, mut accm) = (0.0f32, 0.0f32);
    for (x, y) in xs.iter().zip(ys) {
        q4_k_repacked_step::<GEMM>(x, y, &mut acc, &mut accm);
    }
    acc - accm
}

/// Q6_K · Q8_K as ggml-cpu's AVX2 `ggml_vec_dot_q6_K_q8_K` rounds it (fewer than 8 activation
/// rows): the eight lanes of [`q6_k_lanes`] as f32, `acc = fma(d_a·d_w, lanes, acc)` over the
/// super-blocks, then ggml's `hsum_float_8`.
///
/// # Safety
/// See the module header.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q6_k(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let (xs, ys) = q6_k_rows(n, w, a);
    let mut acc = _mm256_setzero_ps();
    for (x, y) in xs.iter().zip(ys) {
        let d = _mm256_set1_ps(y.d() * le_fp16_to_f32(x.d));
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(q6_k_lanes(x, y)), acc);
    }
    hsum_ps(acc)
}

/// Q6_K · Q8_K as ggml-cpu's tiled K-quant matmul rounds it (8 or more activation rows): per
/// super-block `res = d_w · f32(isum)`, then `acc = fma(res, d_a, acc)`.
///
/// # Safety
/// See the module header.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q6_k_tiled(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let (xs, ys) = q6_k_rows(n, w, a);
    let mut acc = 0.0f32;
    for (x, y) in xs.iter().zip(ys) {
        let l = q6_k_lanes(x, y);
        let s = _mm_add_epi32(_mm256_castsi256_si128(l), _mm256_extracti128_si256(l, 1));
        let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
        let isum = _mm_cvtsi128_si32(s);
        acc = fma1(le_fp16_to_f32(x.d) * isum as f32, y.d(), acc);
    }
    acc
}
