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

/// Weight rows per prefill tile. The tile runs them one at a time against all its tokens: one
/// row's eight accumulators, its unpacked block and the temporaries fit the 16 ymm registers,
/// where two rows against four tokens (the earlier shape) spilled and unpacked each weight block
/// for only four tokens.
pub const TILE_ROWS: usize = 4;
/// Activation rows (tokens) per prefill tile: the wide one, and the narrow one for what is left.
pub const TILE_TOKS: usize = 8;
/// See [`TILE_TOKS`].
pub const NARROW_TOKS: usize = 4;

/// Bytes of tile preparation per activation block: the eight lanes' `-offset·Σy` (i32) and the
/// block's scale as f32. The AVX-512 tiles read the same layout, so one preparation serves a
/// product whichever of the two tile kinds takes a run of its tokens.
pub const AUX_PER_BLOCK: usize = 36;

/// What the tiles need of one Q8_0 activation row besides its blocks, computed once per product
/// instead of once per tile: per block, each lane's starting integer `-(Σ of its four y) <<
/// SHIFT` (the weights go in offset by `1 << SHIFT`) and the scale as f32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn prep<const SHIFT: i32>(a: &[u8], aux: &mut [u8]) {
    let ys = as_blocks::<BlockQ8_0>(a);
    assert_eq!(aux.len(), AUX_PER_BLOCK * ys.len(), "tile preparation size");
    let zero = _mm256_setzero_si256();
    for (y, out) in ys.iter().zip(aux.chunks_exact_mut(AUX_PER_BLOCK)) {
        let sum = lane_dot_avx2(zero, _mm256_set1_epi8(1), load_i8x32(&y.qs));
        let neg = _mm256_sub_epi32(zero, _mm256_slli_epi32::<SHIFT>(sum));
        // SAFETY: `out` is 36 writable bytes; storeu has no alignment requirement.
        unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), neg) };
        let d = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(
            u16::from_le_bytes(y.d),
        ))));
        out[32..].copy_from_slice(&d.to_le_bytes());
    }
}

/// [`prep`] for the Q5_0 tiles (values stored as 0..31, offset 16).
///
/// # Safety
/// See the module header.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn prep_q5_0(a: &[u8], aux: &mut [u8]) {
    prep::<4>(a, aux)
}

/// [`prep`] for the Q8_0 tiles (signed bytes flipped by 128 where the lane integers come from
/// AVX-VNNI or AVX-512 VNNI; the plain AVX2 tile keeps ggml's sign trick and reads only the scale).
///
/// # Safety
/// See the module header.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn prep_q8_0(a: &[u8], aux: &mut [u8]) {
    prep::<7>(a, aux)
}

/// A tile's weight blocks (`TILE_ROWS` rows back to back), activation blocks and preparations,
/// all `nb` blocks long.
struct Operands<'a, W, const T: usize> {
    xs: &'a [W],
    ys: [&'a [BlockQ8_0]; T],
    pre: [&'a [u8]; T],
    nb: usize,
}

/// [`Operands`], with every length checked (inlined: a separate call cost about 4% of the tile).
#[inline(always)]
fn tile_operands<'a, W: Block, const T: usize>(
    w: &'a [u8],
    a: &[&'a [u8]],
    aux: &[&'a [u8]],
    out: &[f32],
) -> Operands<'a, W, T> {
    assert!(
        T <= 8 && a.len() == T && aux.len() == T,
        "activation rows per tile"
    );
    assert_eq!(out.len(), TILE_ROWS * T, "a tile's outputs");
    let ys: [&[BlockQ8_0]; T] = std::array::from_fn(|t| as_blocks::<BlockQ8_0>(a[t]));
    let nb = ys[0].len();
    let pre: [&[u8]; T] = std::array::from_fn(|t| aux[t]);
    assert!(
        (0..T).all(|t| ys[t].len() == nb && pre[t].len() == AUX_PER_BLOCK * nb),
        "activation rows of one length"
    );
    let xs = as_blocks::<W>(w);
    assert_eq!(xs.len(), TILE_ROWS * nb, "weight rows per tile");
    Operands { xs, ys, pre, nb }
}

/// Block `b` of an activation row `y` and its preparation `pre`: the lanes' starting integers,
/// the scale broadcast, and the 32 quants.
///
/// # Safety
/// `b < y.len()` and `pre.len() == AUX_PER_BLOCK * y.len()` (checked once per tile by
/// [`tile_operands`], not per block in the innermost loop), and the CPU has avx2, fma and f16c.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn token_block(y: &[BlockQ8_0], pre: &[u8], b: usize) -> (__m256i, __m256, __m256i) {
    // SAFETY: in bounds by the contract above; loadu has no alignment requirement, and the f32
    // is read unaligned.
    unsafe {
        let p = pre.as_ptr().add(AUX_PER_BLOCK * b);
        let neg = _mm256_loadu_si256(p.cast());
        let d = std::ptr::read_unaligned(p.add(32).cast::<f32>());
        let qy = _mm256_loadu_si256(y.get_unchecked(b).qs.as_ptr().cast());
        (neg, _mm256_set1_ps(d), qy)
    }
}

/// A weight block's scale as f32, broadcast (F16C; the portable conversion is a call).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn scale8<W: HasD>(x: &W) -> __m256 {
    let h = _mm_cvtsi32_si128(i32::from(u16::from_le_bytes(x.d())));
    _mm256_broadcastss_ps(_mm_cvtph_ps(h))
}

/// `hsum_ps` of eight accumulators at once, lane `k` holding `hsum_ps(v[k])`: the same additions
/// in the same order (halves, then lanes two apart, then neighbours), done across registers.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn hsum8_ps(v: [__m256; 8]) -> __m256 {
    // s[k]: v[k]'s halves added in the low 128 bits, v[k + 4]'s in the high.
    let s: [__m256; 4] = std::array::from_fn(|k| {
        _mm256_add_ps(
            _mm256_permute2f128_ps::<0x20>(v[k], v[k + 4]),
            _mm256_permute2f128_ps::<0x31>(v[k], v[k + 4]),
        )
    });
    let two_apart = |a: __m256, c: __m256| {
        _mm256_add_ps(
            _mm256_shuffle_ps::<0b01_00_01_00>(a, c),
            _mm256_shuffle_ps::<0b11_10_11_10>(a, c),
        )
    };
    _mm256_hadd_ps(two_apart(s[0], s[1]), two_apart(s[2], s[3]))
}

/// One weight row's sums against the tile's tokens, `sums[t] = hsum_ps(acc[t])`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn row_sums<const T: usize>(acc: [__m256; T]) -> [f32; T] {
    let mut lanes = [0.0f32; 8];
    // A narrow tile's accumulators fill the register by repeating.
    let v = hsum8_ps(std::array::from_fn(|k| acc[k % T]));
    // SAFETY: `lanes` holds eight f32; storeu has no alignment requirement.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), v) };
    std::array::from_fn(|t| lanes[t])
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

/// Q8_0 lane integers without VNNI: ggml's sign trick (x's sign moved onto y, which keeps every
/// `maddubs` pair sum in range), so the prepared offset term is not used.
#[inline]
#[target_feature(enable = "avx2")]
fn q8_lanes_avx2(_neg: __m256i, qx: __m256i, qy: __m256i) -> __m256i {
    lane_dot_avx2(
        _mm256_setzero_si256(),
        _mm256_sign_epi8(qx, qx),
        _mm256_sign_epi8(qy, qx),
    )
}

/// Q8_0 lane integers with AVX-VNNI: x flipped by 128 to unsigned, from the prepared `-128·Σy`.
#[inline]
#[target_feature(enable = "avx2,avxvnni")]
fn q8_lanes_vnni(neg: __m256i, qx: __m256i, qy: __m256i) -> __m256i {
    _mm256_dpbusd_avx_epi32(neg, _mm256_xor_si256(qx, _mm256_set1_epi8(-128)), qy)
}

/// The body every prefill tile shares (see [`tiles`]): `$unpack` turns a weight block into its
/// 32 bytes, `$lanes` forms the lane integers. A macro, not a generic function taking closures,
/// so that both expand inside the tile's own target features.
macro_rules! tile_body {
    ($block:ty, $w:ident, $a:ident, $aux:ident, $out:ident, |$x:ident| $unpack:expr, $lanes:ident) => {{
        let Operands { xs, ys, pre, nb } = tile_operands::<$block, T>($w, $a, $aux, $out);
        for (r, row) in xs.chunks_exact(nb).enumerate() {
            let mut acc = [_mm256_setzero_ps(); T];
            for (b, $x) in row.iter().enumerate() {
                let qx = $unpack;
                let dx = scale8($x);
                for t in 0..T {
                    // SAFETY: b < nb, and `tile_operands` checked every row's length.
                    let (neg, dy, qy) = unsafe { token_block(ys[t], pre[t], b) };
                    let lanes = _mm256_cvtepi32_ps($lanes(neg, qx, qy));
                    acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(dx, dy), lanes, acc[t]);
                }
            }
            for (t, s) in row_sums(acc).into_iter().enumerate() {
                $out[t * TILE_ROWS + r] = s;
            }
        }
    }};
}

/// The prefill tiles (`TILE_ROWS` weight rows back to back in `w` against `T` activation rows
/// `a` with their preparations `aux`, into `out[t * TILE_ROWS + r]`): a row at a time, each weight
/// block is unpacked once for all the tile's tokens, while every (row, token) keeps the float
/// chain of its single-row kernel: `acc = fma(dx·dy, f32(lane integers), acc)` per block, then
/// `hsum_ps`. The offset term and the activation scale come ready from the preparation, so a
/// (row, token, block) costs the lane integers, a convert, the scale product and one FMA.
/// Generated twice: for AVX2 and for AVX-VNNI, whose one instruction gives the same lane integers
/// as AVX2's two.
macro_rules! tiles {
    ($features:literal, $q5_lanes:ident, $q8_lanes:ident, $q5_0:ident, $q8_0:ident) => {
        /// Q5_0 · Q8_0 tile (order of `legacy::vec_dot_q5_0`; `aux` from [`prep_q5_0`]). The
        /// 5-bit values go in unsigned (0..31) and each lane starts from `-16·Σy`, which gives
        /// the lane integers of ggml's signed form.
        ///
        /// # Safety
        /// See the module header; this form also needs the CPU features it is compiled for.
        #[target_feature(enable = $features)]
        pub unsafe fn $q5_0<const T: usize>(w: &[u8], a: &[&[u8]], aux: &[&[u8]], out: &mut [f32]) {
            tile_body!(
                BlockQ5_0,
                w,
                a,
                aux,
                out,
                |x| unpack5(x.qh, &x.qs),
                $q5_lanes
            )
        }

        /// Q8_0 · Q8_0 tile (order of `legacy::vec_dot_q8_0`; `aux` from [`prep_q8_0`]).
        ///
        /// # Safety
        /// See the module header; this form also needs the CPU features it is compiled for.
        #[target_feature(enable = $features)]
        pub unsafe fn $q8_0<const T: usize>(w: &[u8], a: &[&[u8]], aux: &[&[u8]], out: &mut [f32]) {
            tile_body!(BlockQ8_0, w, a, aux, out, |x| load_i8x32(&x.qs), $q8_lanes)
        }
    };
}

tiles!(
    "avx2,fma,f16c",
    lane_dot_avx2,
    q8_lanes_avx2,
    tile_q5_0,
    tile_q8_0
);
tiles!(
    "avx2,fma,f16c,avxvnni",
    lane_dot_vnni,
    q8_lanes_vnni,
    tile_q5_0_vnni,
    tile_q8_0_vnni
);
