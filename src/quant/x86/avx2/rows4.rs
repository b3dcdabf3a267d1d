//! Four weight rows against one activation row at a time: the decode-time (matrix-vector) form of
//! the kernels llama.cpp runs, for the formats that dominate a step (the Q8_0 output head, Q5_0,
//! Q6_K and Q4_K layer weights). Each row keeps its own accumulators and goes through exactly the
//! float steps of its single-row kernel (`legacy::vec_dot_*`, `ggml_order::*`), so results are
//! bit-identical to those; what four rows buy is one activation load per block instead of four
//! and four independent memory streams in flight, which is what a memory-bound step needs.
//!
//! # Safety
//! Every `pub unsafe fn` here requires a CPU with avx2, fma and f16c
//! (`quant::x86::avx2_available()`); slice lengths are checked inside (panic on mismatch).

use std::arch::x86_64::*;

use super::ggml_order::q4_k_repacked_step;
use super::kquants::q6_k_lanes;
use super::legacy::unpack5;
use super::{hsum_ps, load_i8x32, mul_sum_i8_ps};
use crate::quant::f16::le_fp16_to_f32;
use crate::quant::q4_k::BlockQ4K;
use crate::quant::q5_0::BlockQ5_0;
use crate::quant::q6_k::BlockQ6K;
use crate::quant::q8_0::BlockQ8_0;
use crate::quant::q8_k::BlockQ8K;
use crate::quant::{as_blocks, Block};

/// Splits `w` (four rows back to back) into four block rows as long as the activation row `a`.
#[inline]
fn four_rows<'a, W: Block, A: Block>(w: &'a [u8], a: &'a [u8]) -> ([&'a [W]; 4], &'a [A]) {
    let ys = as_blocks::<A>(a);
    let xs = as_blocks::<W>(w);
    assert_eq!(
        xs.len(),
        4 * ys.len(),
        "four weight rows per activation row"
    );
    let nb = ys.len();
    (
        [
            &xs[..nb],
            &xs[nb..2 * nb],
            &xs[2 * nb..3 * nb],
            &xs[3 * nb..],
        ],
        ys,
    )
}

/// Asks for the cache lines of the block `PREFETCH_BYTES` past `x`. A decode step streams each
/// weight once, and with a few dozen instructions per cache line the out-of-order window alone
/// keeps too few misses in flight: the hardware prefetcher left one core at about half of its
/// read bandwidth (Q8_0 head, `examples/matvec_speed.rs`: 30 ms of CPU without, 15 ms with).
#[inline(always)]
pub(crate) fn prefetch_ahead<W>(x: &W) {
    let p = (x as *const W as *const i8).wrapping_add(PREFETCH_BYTES);
    for off in (0..std::mem::size_of::<W>()).step_by(64) {
        // SAFETY: a prefetch is a hint that never faults, whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(off)) };
    }
}

/// How far ahead of the row being read: 4-16 KiB measured alike; less fell off quickly.
const PREFETCH_BYTES: usize = 8192;

/// The four rows' block scales times the activation's, `f32(dx)·f32(dy)` as one vector multiply
/// (the bits of `fp16_product`, which did it per row), left in memory for broadcast loads.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn scales4<W: Block + HasD>(xs: &[&[W]; 4], b: usize, dy: [u8; 2]) -> [f32; 4] {
    let dx = f16x4([0, 1, 2, 3].map(|r| xs[r][b].d()));
    let dy = _mm_set1_ps(le_fp16_to_f32(dy));
    let mut dd = [0.0f32; 4];
    // SAFETY: `dd` holds four f32.
    unsafe { _mm_storeu_ps(dd.as_mut_ptr(), _mm_mul_ps(dx, dy)) };
    dd
}

/// Four little-endian f16 as f32 lanes, one F16C conversion.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn f16x4(h: [[u8; 2]; 4]) -> __m128 {
    let h = h.map(|v| u64::from(u16::from_le_bytes(v)));
    let packed = h[0] | h[1] << 16 | h[2] << 32 | h[3] << 48;
    _mm_cvtph_ps(_mm_set_epi64x(0, packed as i64))
}

/// Blocks whose first field is one f16 scale.
trait HasD {
    fn d(&self) -> [u8; 2];
}

impl HasD for BlockQ8_0 {
    fn d(&self) -> [u8; 2] {
        self.d
    }
}

impl HasD for BlockQ5_0 {
    fn d(&self) -> [u8; 2] {
        self.d
    }
}

/// Q8_0 · Q8_0, four rows (order of `legacy::vec_dot_q8_0`, i.e. ggml's AVX2 kernel).
///
/// # Safety
/// See the module header.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot4_q8_0(w: &[u8], a: &[u8]) -> [f32; 4] {
    let (xs, ys) = four_rows::<BlockQ8_0, BlockQ8_0>(w, a);
    let mut acc = [_mm256_setzero_ps(); 4];
    for (b, y) in ys.iter().enumerate() {
        let qy = load_i8x32(&y.qs);
        let dd = scales4(&xs, b, y.d);
        for r in 0..4 {
            let x = &xs[r][b];
            prefetch_ahead(x);
            let d = _mm256_set1_ps(dd[r]);
            acc[r] = _mm256_fmadd_ps(d, mul_sum_i8_ps(load_i8x32(&x.qs), qy), acc[r]);
        }
    }
    acc.map(|v| hsum_ps(v))
}

/// Q5_0 · Q8_0, four rows (order of `legacy::vec_dot_q5_0`).
///
/// # Safety
/// See the module header.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot4_q5_0(w: &[u8], a: &[u8]) -> [f32; 4] {
    let (xs, ys) = four_rows::<BlockQ5_0, BlockQ8_0>(w, a);
    let mut acc = [_mm256_setzero_ps(); 4];
    let (ones8, ones16) = (_mm256_set1_epi8(1), _mm256_set1_epi16(1));
    for (b, y) in ys.iter().enumerate() {
        let qy = load_i8x32(&y.qs);
        // The 5-bit values go in unsigned (0..31) and 16·Σy comes off each 32-bit lane once for
        // the four rows: the same lane integers as ggml's signed form, two sign flips fewer.
        let off = _mm256_slli_epi32(
            _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, qy), ones16),
            4,
        );
        let dd = scales4(&xs, b, y.d);
        for r in 0..4 {
            let x = &xs[r][b];
            prefetch_ahead(x);
            let d = _mm256_set1_ps(dd[r]);
            let p = _mm256_madd_epi16(_mm256_maddubs_epi16(unpack5(x.qh, &x.qs), qy), ones16);
            let lanes = _mm256_cvtepi32_ps(_mm256_sub_epi32(p, off));
            acc[r] = _mm256_fmadd_ps(d, lanes, acc[r]);
        }
    }
    acc.map(|v| hsum_ps(v))
}

/// Q6_K · Q8_K, four rows (order of `ggml_order::vec_dot_q6_k`, ggml's AVX2 vec_dot).
///
/// # Safety
/// See the module header.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot4_q6_k(w: &[u8], a: &[u8]) -> [f32; 4] {
    let (xs, ys) = four_rows::<BlockQ6K, BlockQ8K>(w, a);
    let mut acc = [_mm256_setzero_ps(); 4];
    for (b, y) in ys.iter().enumerate() {
        for r in 0..4 {
            let x = &xs[r][b];
            prefetch_ahead(x);
            let d = _mm256_set1_ps(y.d() * le_fp16_to_f32(x.d));
            acc[r] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(q6_k_lanes(x, y)), acc[r]);
        }
    }
    acc.map(|v| hsum_ps(v))
}

/// Q4_K · Q8_K, four rows (order of `ggml_order::vec_dot_q4_k_repacked`).
///
/// # Safety
/// See the module header.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot4_q4_k_repacked(w: &[u8], a: &[u8]) -> [f32; 4] {
    q4_k_repacked4::<false>(w, a)
}

/// Q4_K · Q8_K, four rows (order of `ggml_order::vec_dot_q4_k_repacked_gemm`).
///
/// # Safety
/// See the module header.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot4_q4_k_repacked_gemm(w: &[u8], a: &[u8]) -> [f32; 4] {
    q4_k_repacked4::<true>(w, a)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q4_k_repacked4<const GEMM: bool>(w: &[u8], a: &[u8]) -> [f32; 4] {
    let (xs, ys) = four_rows::<BlockQ4K, BlockQ8K>(w, a);
    let mut acc = [0.0f32; 4];
    let mut accm = [0.0f32; 4];
    for (b, y) in ys.iter().enumerate() {
        for r in 0..4 {
            prefetch_ahead(&xs[r][b]);
            q4_k_repacked_step::<GEMM>(&xs[r][b], y, &mut acc[r], &mut accm[r]);
        }
    }
    [0, 1, 2, 3].map(|r| acc[r] - accm[r])
}

/// Blocks of two weight rows and four activation rows of equal length.
#[inline]
fn tile_rows<'a, W: Block>(
    w: &'a [u8],
    a: [&'a [u8]; 4],
) -> (&'a [W], [&'a [BlockQ8_0]; 4], usize) {
    let ys = a.map(as_blocks::<BlockQ8_0>);
    let nb = ys[0].len();
    assert!(
        ys.iter().all(|y| y.len() == nb),
        "activation rows of one length"
    );
    let xs = as_blocks::<W>(w);
    assert_eq!(xs.len(), 2 * nb, "two weight rows per tile");
    (xs, ys, nb)
}

/// `init + Σ ux·sy` per 32-bit lane over groups of four bytes (`ux` unsigned, `sy` signed): the
/// lane integers of ggml's `maddubs`/`madd` pair, exact while no pair sum passes ±32767.
#[inline]
#[target_feature(enable = "avx2")]
fn lane_dot_avx2(init: __m256i, ux: __m256i, sy: __m256i) -> __m256i {
    let pairs = _mm256_maddubs_epi16(ux, sy);
    _mm256_add_epi32(init, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
}

/// [`lane_dot_avx2`] in one AVX-VNNI instruction (which has no pair saturation at all).
#[inline]
#[target_feature(enable = "avx2,avxvnni")]
fn lane_dot_vnni(init: __m256i, ux: __m256i, sy: __m256i) -> __m256i {
    _mm256_dpbusd_avx_epi32(init, ux, sy)
}

/// The four activation scales of a tile's block as f32 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn tile_dy(ys: &[&[BlockQ8_0]; 4], b: usize) -> __m128 {
    f16x4([0, 1, 2, 3].map(|t| ys[t][b].d))
}

/// The 2x4 prefill tiles (two weight rows back to back in `w` against four activation rows,
/// `out[r][t]`), each weight block unpacked once for four tokens and each activation block loaded
/// once for two rows, while every (row, token) keeps the float chain of its single-row kernel:
/// `acc = fma(dx·dy, f32(lane integers), acc)` per block. The scale products are formed four at a
/// time and broadcast from memory, so a (row, token, block) costs the lane integers, a convert
/// and one FMA. Generated twice: for AVX2 and for AVX-VNNI, whose one instruction gives the same
/// lane integers as AVX2's two.
macro_rules! tiles_2x4 {
    ($features:literal, $lane_dot:ident, $q5_0:ident, $q8_0:ident) => {
        /// Q5_0 · Q8_0 tile (order of `legacy::vec_dot_q5_0`). The 5-bit values go in unsigned
        /// (0..31) and each lane starts from `-16·Σy`, which gives the lane integers of ggml's
        /// signed form.
        ///
        /// # Safety
        /// See the module header; this form also needs the CPU features it is compiled for.
        #[target_feature(enable = $features)]
        pub unsafe fn $q5_0(w: &[u8], a: [&[u8]; 4]) -> [[f32; 4]; 2] {
            let (xs, ys, nb) = tile_rows::<BlockQ5_0>(w, a);
            let ones8 = _mm256_set1_epi8(1);
            let zero = _mm256_setzero_si256();
            let mut acc = [[_mm256_setzero_ps(); 4]; 2];
            for b in 0..nb {
                let qy = [0, 1, 2, 3].map(|t| load_i8x32(&ys[t][b].qs));
                let neg = qy.map(|q| {
                    _mm256_sub_epi32(zero, _mm256_slli_epi32($lane_dot(zero, ones8, q), 4))
                });
                let dy = tile_dy(&ys, b);
                for (r, acc) in acc.iter_mut().enumerate() {
                    let x = &xs[r * nb + b];
                    let qx = unpack5(x.qh, &x.qs);
                    let mut dd = [0.0f32; 4];
                    let prod = _mm_mul_ps(_mm_set1_ps(le_fp16_to_f32(x.d)), dy);
                    // SAFETY: `dd` holds four f32.
                    unsafe { _mm_storeu_ps(dd.as_mut_ptr(), prod) };
                    for t in 0..4 {
                        let lanes = _mm256_cvtepi32_ps($lane_dot(neg[t], qx, qy[t]));
                        acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(dd[t]), lanes, acc[t]);
                    }
                }
            }
            acc.map(|row| row.map(|v| hsum_ps(v)))
        }

        /// Q8_0 · Q8_0 tile (order of `legacy::vec_dot_q8_0`; x's sign moved onto y).
        ///
        /// # Safety
        /// See the module header; this form also needs the CPU features it is compiled for.
        #[target_feature(enable = $features)]
        pub unsafe fn $q8_0(w: &[u8], a: [&[u8]; 4]) -> [[f32; 4]; 2] {
            let (xs, ys, nb) = tile_rows::<BlockQ8_0>(w, a);
            let zero = _mm256_setzero_si256();
            let mut acc = [[_mm256_setzero_ps(); 4]; 2];
            for b in 0..nb {
                let qy = [0, 1, 2, 3].map(|t| load_i8x32(&ys[t][b].qs));
                let dy = tile_dy(&ys, b);
                for (r, acc) in acc.iter_mut().enumerate() {
                    let x = &xs[r * nb + b];
                    let qx = load_i8x32(&x.qs);
                    let ax = _mm256_sign_epi8(qx, qx);
                    let mut dd = [0.0f32; 4];
                    let prod = _mm_mul_ps(_mm_set1_ps(le_fp16_to_f32(x.d)), dy);
                    // SAFETY: `dd` holds four f32.
                    unsafe { _mm_storeu_ps(dd.as_mut_ptr(), prod) };
                    for t in 0..4 {
                        let sy = _mm256_sign_epi8(qy[t], qx);
                        let lanes = _mm256_cvtepi32_ps($lane_dot(zero, ax, sy));
                        acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(dd[t]), lanes, acc[t]);
                    }
                }
            }
            acc.map(|row| row.map(|v| hsum_ps(v)))
        }
    };
}

tiles_2x4!("avx2,fma,f16c", lane_dot_avx2, tile2x4_q5_0, tile2x4_q8_0);
tiles_2x4!(
    "avx2,fma,f16c,avxvnni",
    lane_dot_vnni,
    tile2x4_q5_0_vnni,
    tile2x4_q8_0_vnni
);
