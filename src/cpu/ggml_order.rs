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

/// Q4_K · Q8_K in the order of ggml-cpu's repacked `q4_K_8x8` gemm (the activation rows of a
/// batch that fill whole groups of four): [`vec_dot_q4_k_repacked`]'s two chains, stepped per
/// 64-element chunk instead of per super-block.
pub fn vec_dot_q4_k_repacked_gemm(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let xs = as_blocks::<BlockQ4K>(w);
    let ys = as_blocks::<BlockQ8K>(a);
    assert!(
        xs.len() == ys.len() && xs.len() * 256 == n,
        "Q4_K/Q8_K row lengths"
    );
    let (mut acc, mut accm) = (0.0f32, 0.0f32);
    for (x, y) in xs.iter().zip(ys) {
        let (isum, imin) = q4_k::chunk_sums(x, y);
        let (d, dmin) = (le_fp16_to_f32(x.d) * y.d(), le_fp16_to_f32(x.dmin) * y.d());
        for k in 0..4 {
            acc = (isum[k] as f32).mul_add(d, acc);
            accm = (imin[k] as f32).mul_add(dmin, accm);
        }
    }
    acc - accm
}

/// ggml-cpu's `ggml_vec_dot_f16` (AVX2 build), the kernel llama.cpp's f16 products take for a
/// single activation column (llamafile's tinyBLAS declines `n < 2`), e.g. attention while
/// decoding one token: four 8-lane FMA accumulators over steps of 32 (element `i` goes to
/// accumulator `i % 32 / 8`, lane `i % 8`), reduced as `(x0 + x2) + (x1 + x3)`, then the two
/// halves lane by lane, then two horizontal adds; a tail past a multiple of 32 is added in f64
/// after that. `a` and `b` hold f16 values widened to f32.
pub fn vec_dot_f16_order(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "vec_dot_f16 lengths");
    let np = a.len() & !31;
    let mut acc = VecDotF16Lanes::default();
    for (i, (x, y)) in a[..np].iter().zip(&b[..np]).enumerate() {
        acc.add(i, *x, *y);
    }
    let mut sum = f64::from(acc.reduce());
    for (x, y) in a[np..].iter().zip(&b[np..]) {
        sum += f64::from(x * y);
    }
    sum as f32
}

/// The 32 accumulator lanes of [`vec_dot_f16_order`], for callers that feed elements one at a
/// time (e.g. attention's `V w`, summed over cache cells, where the element index is the cell).
#[derive(Clone, Copy)]
pub struct VecDotF16Lanes {
    lanes: [f32; 32],
}

impl Default for VecDotF16Lanes {
    fn default() -> Self {
        VecDotF16Lanes { lanes: [0.0; 32] }
    }
}

impl VecDotF16Lanes {
    /// Accumulate `x * y` as element `i` (only `i % 32` matters; elements past the last multiple
    /// of 32 of the whole vector belong in the f64 tail instead).
    #[inline(always)]
    pub fn add(&mut self, i: usize, x: f32, y: f32) {
        let l = &mut self.lanes[i % 32];
        *l = x.mul_add(y, *l);
    }

    /// `GGML_F32x8_REDUCE` over the four accumulators.
    pub fn reduce(&self) -> f32 {
        let x = |j: usize, l: usize| self.lanes[8 * j + l];
        let mut v = [0.0f32; 8];
        for (l, v) in v.iter_mut().enumerate() {
            *v = (x(0, l) + x(2, l)) + (x(1, l) + x(3, l));
        }
        let t0 = [v[0] + v[4], v[1] + v[5], v[2] + v[6], v[3] + v[7]];
        (t0[0] + t0[1]) + (t0[2] + t0[3])
    }
}

/// Fewest activation rows for which llama.cpp's CPU backend takes its tiled K-quant matmul
/// (`ggml_tiled_min_batch`).
pub const BATCH_MIN_ROWS: usize = 8;

/// Four weight rows (back to back in `w`) against one activation row, each row bit-identical to
/// the matching single-row kernel: the form that shares activation loads.
pub type Dot4Fn = fn(w: &[u8], a: &[u8]) -> [f32; 4];

/// `rows` weight rows (back to back in `w`) against `toks` activation rows (`a`, with what the
/// tile's `prep` made of each in `aux`), into `out[t * rows + r]` (each token's outputs side by
/// side, as they lie in the product), each entry bit-identical to
/// the single-row kernel: the prefill and batched-decode form, which loads each weight block
/// once for several tokens.
pub type TileFn = fn(w: &[u8], a: &[&[u8]], aux: &[&[u8]], out: &mut [f32]);

/// Work a tile wants done once per activation row and product rather than once per tile:
/// `aux` (`aux_per_block` bytes per block of the row) from the quantized row `a`.
pub type TilePrepFn = fn(a: &[u8], aux: &mut [u8]);

/// A tile kernel and its shape.
#[derive(Clone, Copy)]
pub struct Tile {
    pub rows: usize,
    pub toks: usize,
    pub run: TileFn,
    pub prep: Option<(TilePrepFn, usize)>,
    /// Which activation rows may take the tile.
    pub order: TileOrder,
}

/// The kernel order a tile computes, for formats whose `single` and `batch` orders differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TileOrder {
    /// `single` = `batch`: any row.
    Any,
    /// The `batch` kernel's: only the rows the batch rule sends there.
    Batch,
    /// The `single` kernel's: only the other rows (all of them in a decode-order product).
    Single,
}

/// The most outputs a tile has (`rows * toks`).
pub const TILE_MAX_OUT: usize = 32;

/// One float order: its single-row kernel and, where one exists, its four-row form.
#[derive(Clone, Copy)]
pub struct Kernel {
    pub one: VecDotFn,
    pub four: Option<Dot4Fn>,
}

/// Which activation rows of a product llama.cpp sends through its batched kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchRule {
    /// The tiled K-quant matmul: every row, when the batch has at least [`BATCH_MIN_ROWS`].
    Tiled,
    /// The repacked gemm: the rows that fill whole groups of four, whatever the batch size
    /// (the remaining one to three rows go through the gemv).
    GroupsOfFour,
}

/// The kernels a weight matrix runs, in llama.cpp's orders: `single` for decode-style rows,
/// `batch` for the rows `rule` picks.
#[derive(Clone, Copy)]
pub struct Orders {
    pub single: Kernel,
    pub batch: Kernel,
    pub rule: BatchRule,
    /// Tile kernels, widest first, for formats whose every row takes one order
    /// (`single` = `batch`); the product runs each batch of tokens through the widest that fits.
    pub tiles: [Option<Tile>; 2],
}

impl Orders {
    /// The kernel for activation row `t` of a product over `n_tok` rows.
    pub fn for_row(&self, t: usize, n_tok: usize) -> &Kernel {
        let batched = match self.rule {
            BatchRule::Tiled => n_tok >= BATCH_MIN_ROWS,
            BatchRule::GroupsOfFour => t < n_tok - n_tok % 4,
        };
        if batched {
            &self.batch
        } else {
            &self.single
        }
    }

    /// How many leading activation rows of a product over `n_tok` rows take the `batch`
    /// kernel (`for_row` sends exactly those there).
    pub fn batch_rows(&self, n_tok: usize) -> usize {
        match self.rule {
            BatchRule::Tiled if n_tok >= BATCH_MIN_ROWS => n_tok,
            BatchRule::Tiled => 0,
            BatchRule::GroupsOfFour => n_tok - n_tok % 4,
        }
    }

    /// The type's own kernel for every row (formats whose order needs no replacement).
    pub fn plain(one: VecDotFn) -> Orders {
        let k = Kernel { one, four: None };
        Orders {
            single: k,
            batch: k,
            rule: BatchRule::Tiled,
            tiles: [None; 2],
        }
    }
}

/// The kernels of a weight matrix of type `ty` with `n_rows` rows, or `None` where the type's
/// own `vec_dot` (in `quant`) already has llama.cpp's order and no four-row form exists.
pub fn orders_for(ty: GgmlType, n_rows: usize) -> Option<Orders> {
    #[cfg(target_arch = "x86_64")]
    if crate::quant::x86::avx2_available() {
        return avx2::orders_for(ty, n_rows);
    }
    let _ = n_rows;
    match ty {
        GgmlType::Q6_K => Some(Orders {
            single: Kernel {
                one: vec_dot_q6_k,
                four: None,
            },
            batch: Kernel {
                one: vec_dot_q6_k_tiled,
                four: None,
            },
            rule: BatchRule::Tiled,
            tiles: [None; 2],
        }),
        // ggml repacks Q4_K only on AVX2 machines; elsewhere its plain kernels run, whose order
        // the quant module's reference already has.
        _ => None,
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{BatchRule, Dot4Fn, Kernel, Orders, Tile, TileOrder};
    use crate::quant::x86::avx2::ggml_order as k;
    use crate::quant::x86::avx2::rows4 as r4;
    use crate::quant::x86::avx512 as x512;
    use crate::quant::{GgmlType, VecDotFn};

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

    macro_rules! safe4 {
        ($f:path) => {{
            fn safe(w: &[u8], a: &[u8]) -> [f32; 4] {
                // SAFETY: as in `safe!`.
                unsafe { $f(w, a) }
            }
            safe as Dot4Fn
        }};
    }

    /// An AVX2 tile over `$toks` tokens as a [`Tile`]; `$check` says what confirmed its CPU
    /// features.
    macro_rules! tile_avx2 {
        ($f:ident, $prep:ident, $toks:expr, $check:literal) => {{
            fn run(w: &[u8], a: &[&[u8]], aux: &[&[u8]], out: &mut [f32]) {
                // SAFETY: handed out only after `avx2_available()` and $check confirmed this
                // CPU's features; the kernel checks its slice lengths itself.
                unsafe { r4::$f::<{ $toks }>(w, a, aux, out) }
            }
            fn prep(a: &[u8], aux: &mut [u8]) {
                // SAFETY: handed out only after `avx2_available()`; the preparation checks its
                // slice lengths itself.
                unsafe { r4::$prep(a, aux) }
            }
            Tile {
                rows: r4::TILE_ROWS,
                toks: $toks,
                run,
                prep: Some((prep, r4::AUX_PER_BLOCK)),
                order: TileOrder::Any,
            }
        }};
    }

    /// The wide and narrow AVX2 tiles of one kernel.
    macro_rules! tiles_avx2 {
        ($f:ident, $prep:ident, $check:literal) => {
            (
                tile_avx2!($f, $prep, r4::TILE_TOKS, $check),
                tile_avx2!($f, $prep, r4::NARROW_TOKS, $check),
            )
        };
    }

    /// A 4x8 AVX-512 tile as a [`Tile`].
    macro_rules! tile4x8 {
        ($f:path, $prep:path) => {{
            fn run(w: &[u8], a: &[&[u8]], aux: &[&[u8]], out: &mut [f32]) {
                // SAFETY: handed out only after `avx512::available()`; the kernel checks its
                // slice lengths itself.
                unsafe { $f(w, a, aux, out) }
            }
            fn prep(a: &[u8], aux: &mut [u8]) {
                // SAFETY: handed out only after `avx512::available()`, which implies avx2, fma
                // and f16c; the preparation checks its slice lengths itself.
                unsafe { $prep(a, aux) }
            }
            Tile {
                rows: x512::legacy::ROWS,
                toks: x512::legacy::TOKS,
                run,
                prep: Some((prep, r4::AUX_PER_BLOCK)),
                order: TileOrder::Any,
            }
        }};
    }

    /// An AVX-512 tile in a k-quant's batch order as a [`Tile`].
    macro_rules! ktile {
        ($f:path, $m:path, $order:ident) => {{
            use $m as m;
            fn run(w: &[u8], a: &[&[u8]], aux: &[&[u8]], out: &mut [f32]) {
                // SAFETY: handed out only after `avx512::available()`; the kernel checks its
                // slice lengths itself.
                unsafe { $f(w, a, aux, out) }
            }
            Tile {
                rows: m::ROWS,
                toks: m::TOKS,
                run,
                prep: None,
                order: TileOrder::$order,
            }
        }};
    }

    /// The tiles for a format: the AVX-512 one where the CPU has it, else the wide AVX2 one,
    /// then the narrow AVX2 one for the tokens left over. Every tile of a format reads the same
    /// preparation (the product makes only its widest tile's).
    fn tiles(avx512: Option<Tile>, (wide, narrow): (Tile, Tile)) -> [Option<Tile>; 2] {
        [Some(avx512.unwrap_or(wide)), Some(narrow)]
    }

    pub(super) fn orders_for(ty: GgmlType, n_rows: usize) -> Option<Orders> {
        let same = |one: VecDotFn, four: Dot4Fn, tiles: [Option<Tile>; 2]| {
            let k = Kernel {
                one,
                four: Some(four),
            };
            Orders {
                single: k,
                batch: k,
                rule: BatchRule::Tiled,
                tiles,
            }
        };
        // Q8_0 and Q5_0 run in ggml's vec_dot order for any batch (llamafile's tinyBLAS has the
        // same lanes and the same final sum), so only the four-row form is new for them.
        let kernels = crate::quant::kernels(ty).ok()?;
        // AVX-VNNI forms the same lane integers in one instruction instead of two; AVX-512
        // holds two rows per register and a 4x8 tile in its 32 registers.
        let vnni = std::arch::is_x86_feature_detected!("avxvnni");
        let wide = x512::available();
        match ty {
            GgmlType::Q8_0 => Some(same(
                kernels.vec_dot,
                safe4!(r4::vec_dot4_q8_0),
                tiles(
                    wide.then(|| tile4x8!(x512::legacy::tile4x8_q8_0, r4::prep_q8_0)),
                    if vnni {
                        tiles_avx2!(tile_q8_0_vnni, prep_q8_0, "the avxvnni check")
                    } else {
                        tiles_avx2!(tile_q8_0, prep_q8_0, "nothing more")
                    },
                ),
            )),
            GgmlType::Q5_0 => Some(same(
                kernels.vec_dot,
                safe4!(r4::vec_dot4_q5_0),
                tiles(
                    wide.then(|| tile4x8!(x512::legacy::tile4x8_q5_0, r4::prep_q5_0)),
                    if vnni {
                        tiles_avx2!(tile_q5_0_vnni, prep_q5_0, "the avxvnni check")
                    } else {
                        tiles_avx2!(tile_q5_0, prep_q5_0, "nothing more")
                    },
                ),
            )),
            GgmlType::Q6_K => Some(Orders {
                single: Kernel {
                    one: safe!(k::vec_dot_q6_k),
                    four: Some(safe4!(r4::vec_dot4_q6_k)),
                },
                batch: Kernel {
                    one: safe!(k::vec_dot_q6_k_tiled),
                    four: None,
                },
                rule: BatchRule::Tiled,
                tiles: [
                    wide.then(|| ktile!(x512::q6_k::tile2x8_q6_k_tiled, x512::q6_k, Batch)),
                    wide.then(|| ktile!(x512::q6_k::tile2x8_q6_k, x512::q6_k, Single)),
                ],
            }),
            GgmlType::Q4_K if n_rows.is_multiple_of(8) => Some(Orders {
                single: Kernel {
                    one: safe!(k::vec_dot_q4_k_repacked),
                    four: Some(safe4!(r4::vec_dot4_q4_k_repacked)),
                },
                batch: Kernel {
                    one: safe!(k::vec_dot_q4_k_repacked_gemm),
                    four: Some(safe4!(r4::vec_dot4_q4_k_repacked_gemm)),
                },
                rule: BatchRule::GroupsOfFour,
                tiles: [
                    wide.then(|| ktile!(x512::q4_k::tile2x8_q4_k_gemm, x512::q4_k, Batch)),
                    wide.then(|| ktile!(x512::q4_k::tile2x8_q4_k, x512::q4_k, Single)),
                ],
            }),
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

    /// The AVX2 twins (single- and four-row) give the same bits as the portable statements of
    /// each order.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_kernels_are_bit_identical_to_the_portable_orders() {
        if !crate::quant::x86::avx2_available() {
            eprintln!("skipping: no AVX2");
            return;
        }
        type Portable = fn(usize, &[u8], &[u8]) -> f32;
        let cases: [(GgmlType, Portable, Portable); 2] = [
            (GgmlType::Q6_K, vec_dot_q6_k, vec_dot_q6_k_tiled),
            (
                GgmlType::Q4_K,
                vec_dot_q4_k_repacked,
                vec_dot_q4_k_repacked_gemm,
            ),
        ];
        for (ty, single, batch) in cases {
            let o = avx2::orders_for(ty, 640).expect("orders");
            for seed in 0..12 {
                let n = 256 * (1 + seed % 5);
                let rb = quant::row_bytes(ty, n).expect("row");
                let mut w = Vec::new();
                let mut a = Vec::new();
                for r in 0..4 {
                    let (wq, aq) = rows(ty, n, 4 * seed + r);
                    w.extend_from_slice(&wq);
                    if r == 0 {
                        a = aq;
                    }
                }
                for (k, portable) in [(o.single, single), (o.batch, batch)] {
                    let four = k.four.map(|f| f(&w, &a));
                    for r in 0..4 {
                        let row = &w[r * rb..(r + 1) * rb];
                        let want = portable(n, row, &a).to_bits();
                        assert_eq!((k.one)(n, row, &a).to_bits(), want, "{ty} seed {seed}");
                        if let Some(four) = four {
                            assert_eq!(four[r].to_bits(), want, "{ty} four-row, row {r}");
                        }
                    }
                }
            }
        }
        assert!(avx2::orders_for(GgmlType::Q4_K, 641).is_none());
    }

    /// The four-row forms of the plain Q8_0/Q5_0 kernels and every tile form this CPU can run
    /// give each (row, token) its single-row bits, over several row lengths.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn four_row_legacy_kernels_equal_single_rows() {
        if !crate::quant::x86::avx2_available() {
            eprintln!("skipping: no AVX2");
            return;
        }
        for ty in [GgmlType::Q8_0, GgmlType::Q5_0] {
            for n in [32, 160, 768] {
                legacy_kernels_equal_single_rows(ty, n);
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    fn legacy_kernels_equal_single_rows(ty: GgmlType, n: usize) {
        use crate::quant::x86::avx2::rows4 as r4;
        type Run<'a> = &'a dyn Fn(&[u8], &[&[u8]], &[&[u8]], &mut [f32]);
        type Prep<'a> = &'a dyn Fn(&[u8], &mut [u8]);
        let kw = quant::kernels(ty).expect("weight type");
        let ka = quant::kernels(kw.vec_dot_type).expect("act type");
        let rb = quant::row_bytes(ty, n).expect("row");
        let mut w = vec![0u8; 4 * rb];
        for r in 0..4 {
            let v: Vec<f32> = (0..n)
                .map(|i| ((i * (r + 3) * 37 % 101) as f32 - 50.0) * 0.011)
                .collect();
            (kw.from_f32)(&v, &mut w[r * rb..(r + 1) * rb]);
        }
        let x: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
        let mut a = vec![0u8; quant::row_bytes(kw.vec_dot_type, n).expect("row")];
        super::super::act_quant::activation_quantizer(kw, ka)(&x, &mut a);
        let o = orders_for(ty, 8).expect("orders");
        let got = (o.single.four.expect("four-row form"))(&w, &a);
        for r in 0..4 {
            let want = (kw.vec_dot)(n, &w[r * rb..(r + 1) * rb], &a);
            assert_eq!(got[r].to_bits(), want.to_bits(), "{ty} n{n} row {r}");
        }
        if ty == GgmlType::Q8_0 {
            // A hostile file may hold -128, which our quantizer never writes: ggml's sign
            // trick and the tiles' unsigned offset must still agree.
            for r in 0..4 {
                for i in (2..32).step_by(7) {
                    w[r * rb + 34 * (r % (n / 32)) + i] = 0x80;
                }
            }
        }
        // Eight different activation rows through every tile form.
        let acts: Vec<Vec<u8>> = (0..8)
            .map(|t| {
                let x: Vec<f32> = (0..n)
                    .map(|i| (i as f32 * 0.1 * (t + 1) as f32).cos())
                    .collect();
                let mut a = vec![0u8; quant::row_bytes(kw.vec_dot_type, n).expect("row")];
                super::super::act_quant::activation_quantizer(kw, ka)(&x, &mut a);
                a
            })
            .collect();
        let acts: Vec<&[u8]> = acts.iter().map(|a| &a[..]).collect();
        let want = |r: usize, t: usize| (kw.vec_dot)(n, &w[r * rb..(r + 1) * rb], acts[t]);
        let check = |form: &str, rows: usize, toks: usize, run: Run, prep: Option<Prep>| {
            let mut got = vec![0.0f32; rows * toks];
            let aux: Vec<Vec<u8>> = acts[..toks]
                .iter()
                .map(|a| match prep {
                    Some(prep) => {
                        let mut aux = vec![0u8; r4::AUX_PER_BLOCK * n / 32];
                        prep(a, &mut aux);
                        aux
                    }
                    None => Vec::new(),
                })
                .collect();
            let aux: Vec<&[u8]> = aux.iter().map(|a| &a[..]).collect();
            run(&w[..rows * rb], &acts[..toks], &aux, &mut got);
            for r in 0..rows {
                for t in 0..toks {
                    let (g, e) = (got[t * rows + r], want(r, t));
                    assert_eq!(g.to_bits(), e.to_bits(), "{ty} n{n} {form} r{r} t{t}");
                }
            }
        };
        for tile in o.tiles.iter().flatten() {
            let prep = tile.prep.map(|(p, per_block)| {
                assert_eq!(per_block, r4::AUX_PER_BLOCK, "one preparation layout");
                p
            });
            check(
                "selected",
                tile.rows,
                tile.toks,
                &tile.run,
                prep.as_ref().map(|p| p as Prep),
            );
        }
        // The closures' unsafe blocks: avx2, fma and f16c were checked by the caller, avxvnni is
        // checked before the forms that need it run, and the kernels check their slice lengths.
        macro_rules! forms {
            ($avx2:ident, $vnni:ident, $prep:ident, $toks:expr) => {{
                let avx2: Run = &|w, a, x, o| {
                    // SAFETY: see above.
                    unsafe { r4::$avx2::<{ $toks }>(w, a, x, o) }
                };
                let vnni: Run = &|w, a, x, o| {
                    // SAFETY: see above.
                    unsafe { r4::$vnni::<{ $toks }>(w, a, x, o) }
                };
                let prep: Prep = &|a, x| {
                    // SAFETY: see above.
                    unsafe { r4::$prep(a, x) }
                };
                (avx2, vnni, prep, $toks)
            }};
        }
        let forms = match ty {
            GgmlType::Q8_0 => [
                forms!(tile_q8_0, tile_q8_0_vnni, prep_q8_0, r4::TILE_TOKS),
                forms!(tile_q8_0, tile_q8_0_vnni, prep_q8_0, r4::NARROW_TOKS),
            ],
            _ => [
                forms!(tile_q5_0, tile_q5_0_vnni, prep_q5_0, r4::TILE_TOKS),
                forms!(tile_q5_0, tile_q5_0_vnni, prep_q5_0, r4::NARROW_TOKS),
            ],
        };
        for (avx2, vnni, prep, toks) in forms {
            check("avx2", r4::TILE_ROWS, toks, avx2, Some(prep));
            if std::arch::is_x86_feature_detected!("avxvnni") {
                check("vnni", r4::TILE_ROWS, toks, vnni, Some(prep));
            } else {
                eprintln!("no avxvnni here: its tile form is not exercised");
            }
        }
        if !crate::quant::x86::avx512::available() {
            eprintln!("no avx512 vnni here: the 4x8 tile is not exercised");
        }
    }

    /// The value is the dot product up to rounding, the tail past 32 is included, and the
    /// reduction runs in the documented order (cases where other orders give other bits).
    #[test]
    fn vec_dot_f16_order_sums_in_ggml_reduce_order() {
        let a: Vec<f32> = (0..70)
            .map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.37)
            .collect();
        let b: Vec<f32> = (0..70)
            .map(|i| ((i * 5 % 11) as f32 - 5.0) * 0.29)
            .collect();
        let exact: f64 = a
            .iter()
            .zip(&b)
            .map(|(x, y)| f64::from(*x) * f64::from(*y))
            .sum();
        assert!((f64::from(vec_dot_f16_order(&a, &b)) - exact).abs() < 1e-4);
        // Accumulators 0, 1, 2 hold 1, 2^-24, -1 in lane 0: (1 + -1) + (2^-24 + 0) keeps the
        // small term, where (1 + 2^-24) + -1 would lose it.
        let mut l = VecDotF16Lanes::default();
        l.add(0, 1.0, 1.0);
        l.add(8, 1.0, 2f32.powi(-24));
        l.add(16, -1.0, 1.0);
        assert_eq!(l.reduce(), 2f32.powi(-24));
        let mut l = VecDotF16Lanes::default();
        l.add(0, 1.0, 1.0);
        l.add(4, 1.0, 2f32.powi(-25));
        l.add(5, 1.0, 2f32.powi(-25));
        // t0 = [1 + 2^-25, 2^-25, 0, 0]: (1 + 2^-25) rounds to 1, then + 2^-25 rounds to 1 again.
        assert_eq!(l.reduce(), 1.0);
    }

    #[test]
    fn batch_rules_pick_llama_cpp_rows() {
        let o = Orders::plain(quant::q8_0::vec_dot);
        let tiled = Orders {
            batch: Kernel {
                one: quant::q4_0::vec_dot,
                four: None,
            },
            ..o
        };
        let is_batch = |o: &Orders, t, n| std::ptr::fn_addr_eq(o.for_row(t, n).one, o.batch.one);
        assert!(!is_batch(&tiled, 0, 7) && is_batch(&tiled, 6, 8));
        let groups = Orders {
            rule: BatchRule::GroupsOfFour,
            ..tiled
        };
        assert!(is_batch(&groups, 3, 6) && !is_batch(&groups, 4, 6) && !is_batch(&groups, 0, 3));
        assert!(is_batch(&groups, 7, 8) && !is_batch(&groups, 8, 9));
        for o in [&tiled, &groups] {
            for n in 1..20 {
                let first = (0..n).take_while(|&t| is_batch(o, t, n)).count();
                assert_eq!(o.batch_rows(n), first, "{:?} n={n}", o.rule);
                assert!((first..n).all(|t| !is_batch(o, t, n)));
            }
        }
    }

    /// The k-quant tiles (where this CPU has them) give every (row, token) the bits of the
    /// batch order they stand for, over several super-blocks and extreme activations.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn k_quant_tiles_equal_their_orders() {
        type Portable = fn(usize, &[u8], &[u8]) -> f32;
        let cases: [(GgmlType, usize, TileOrder, Portable); 4] = [
            (
                GgmlType::Q4_K,
                0,
                TileOrder::Batch,
                vec_dot_q4_k_repacked_gemm,
            ),
            (GgmlType::Q4_K, 1, TileOrder::Single, vec_dot_q4_k_repacked),
            (GgmlType::Q6_K, 0, TileOrder::Batch, vec_dot_q6_k_tiled),
            (GgmlType::Q6_K, 1, TileOrder::Single, vec_dot_q6_k),
        ];
        for (ty, which, order, portable) in cases {
            k_quant_tile_equals(ty, which, order, portable);
        }
    }

    #[cfg(target_arch = "x86_64")]
    fn k_quant_tile_equals(
        ty: GgmlType,
        which: usize,
        order: TileOrder,
        portable: fn(usize, &[u8], &[u8]) -> f32,
    ) {
        let Some(o) = crate::quant::x86::avx2_available()
            .then(|| orders_for(ty, 640))
            .flatten()
        else {
            eprintln!("skipping: no AVX2");
            return;
        };
        let Some(tile) = o.tiles[which] else {
            eprintln!("no avx512 vnni here: the {ty} tile is not exercised");
            return;
        };
        assert_eq!(tile.order, order);
        for seed in 0..3 {
            let n = 256 * (1 + 2 * seed);
            let rb = quant::row_bytes(ty, n).expect("row");
            let mut w = Vec::new();
            let mut acts = Vec::new();
            for r in 0..tile.rows.max(tile.toks) {
                let (wq, mut aq) = rows(ty, n, 7 * seed + r);
                if r < tile.rows {
                    w.extend_from_slice(&wq);
                }
                if r == 3 {
                    // Q8_K reaches -128, the extreme the byte products must carry.
                    for b in (4..4 + 256).step_by(5) {
                        aq[b] = 0x80;
                    }
                }
                acts.push(aq);
            }
            let a: Vec<&[u8]> = acts[..tile.toks].iter().map(|a| &a[..]).collect();
            let mut got = vec![0.0f32; tile.rows * tile.toks];
            (tile.run)(&w, &a, &vec![&[][..]; tile.toks], &mut got);
            for r in 0..tile.rows {
                for t in 0..tile.toks {
                    let want = portable(n, &w[r * rb..(r + 1) * rb], a[t]);
                    let got = got[t * tile.rows + r];
                    assert_eq!(got.to_bits(), want.to_bits(), "{ty} r{r} t{t}");
                }
            }
        }
    }
}
