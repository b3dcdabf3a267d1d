//! Products with float weight matrices (F32, F16, BF16): `y = x W^T` for a batch of activation
//! rows, in the arithmetic llama.cpp's CPU backend uses for them on AVX2 (llamafile's tinyBLAS,
//! which ggml-cpu takes for float weights whenever the row length is a multiple of 8):
//! activations are rounded to the weight type first (ggml's `vec_dot_type`: F16 for F16 weights,
//! BF16 for BF16, F32 kept), each output is accumulated in one 8-lane FMA register over the row,
//! and the lanes are summed at the end as `ops::hsum8` does. Rows whose length is not a multiple
//! of 8 add their last elements in f64, as ggml's `vec_dot` leftovers do.
//!
//! The per-output order does not depend on the batch: an output of a batch has the bits of the
//! same product for its token alone (`batch_single_and_portable_paths_are_bit_identical`), which
//! is what lets a speculative verification batch reproduce token-by-token decoding.
//!
//! Why it is fast: the weights are the only large operand. A single token (decoding) streams the
//! rows straight from the mmap, `DECODE_ROWS` at a time, prefetching ahead. A batch widens each
//! block of `TILE_ROWS` weight rows to f32 once and passes the tokens over it with the block's
//! outputs in registers and nothing but loads and fused multiply-adds in the loop: with AVX2,
//! `TILE_TOKENS` tokens per pass, one (row, token) per register; with AVX-512, two rows
//! interleaved so that one 16-lane register carries two rows' eight lanes, `WIDE_TOKENS` tokens
//! per pass (same lanes, same order, half the instructions). The tokens go in chunks of
//! `CHUNK_BYTES` of activations, so a prompt's activations are read from L2, not L3, by every
//! block. Verifying a few drafted tokens costs little more than one decode step.
//!
//! The kernel families are picked at run time (AVX-512F, else AVX2+FMA+F16C, else portable);
//! all compute the same numbers (same lanes, fused multiply-adds, same final sum). Nothing here
//! knows tensor names or reads files.

use super::ops::hsum8;
use super::Pool;
use crate::quant::bf16::{bf16_to_f32, f32_to_bf16};
use crate::quant::f16::{f32_to_fp16, fp16_to_f32};
use crate::quant::GgmlType;

/// A float weight format: how its elements are stored and how activations are rounded to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Float {
    F32,
    F16,
    BF16,
}

impl Float {
    fn of(ty: GgmlType) -> Option<Float> {
        match ty {
            GgmlType::F32 => Some(Float::F32),
            GgmlType::F16 => Some(Float::F16),
            GgmlType::BF16 => Some(Float::BF16),
            _ => None,
        }
    }

    fn size(self) -> usize {
        match self {
            Float::F32 => 4,
            Float::F16 | Float::BF16 => 2,
        }
    }

    /// `x` rounded to this format and widened back: the activation as ggml's `vec_dot` sees it.
    fn round(self, x: f32) -> f32 {
        match self {
            Float::F32 => x,
            Float::F16 => fp16_to_f32(f32_to_fp16(x)),
            Float::BF16 => bf16_to_f32(f32_to_bf16(x)),
        }
    }

    /// Element `i` of a little-endian row.
    fn load(self, row: &[u8], i: usize) -> f32 {
        match self {
            Float::F32 => {
                f32::from_le_bytes([row[4 * i], row[4 * i + 1], row[4 * i + 2], row[4 * i + 3]])
            }
            Float::F16 => fp16_to_f32(u16::from_le_bytes([row[2 * i], row[2 * i + 1]])),
            Float::BF16 => bf16_to_f32(u16::from_le_bytes([row[2 * i], row[2 * i + 1]])),
        }
    }
}

/// Why bytes cannot be viewed as a float weight matrix.
#[derive(Debug, thiserror::Error)]
pub enum FloatMatrixError {
    #[error("{0} is not a float weight type (F32, F16 or BF16)")]
    NotFloat(GgmlType),
    #[error("{rows} rows of {cols} {ty} elements take {expected} bytes, but the data holds {got}")]
    Size {
        ty: GgmlType,
        rows: usize,
        cols: usize,
        expected: usize,
        got: usize,
    },
}

/// A row-major float weight matrix viewed in place (the mmap's bytes, never copied).
#[derive(Clone, Copy)]
pub struct FloatMatrix<'a> {
    ty: Float,
    data: &'a [u8],
    n_cols: usize,
    n_rows: usize,
}

impl<'a> FloatMatrix<'a> {
    pub fn new(
        ty: GgmlType,
        n_cols: usize,
        n_rows: usize,
        data: &'a [u8],
    ) -> Result<FloatMatrix<'a>, FloatMatrixError> {
        let f = Float::of(ty).ok_or(FloatMatrixError::NotFloat(ty))?;
        let expected = n_cols
            .checked_mul(n_rows)
            .and_then(|n| n.checked_mul(f.size()));
        if expected != Some(data.len()) {
            return Err(FloatMatrixError::Size {
                ty,
                rows: n_rows,
                cols: n_cols,
                expected: expected.unwrap_or(usize::MAX),
                got: data.len(),
            });
        }
        Ok(FloatMatrix {
            ty: f,
            data,
            n_cols,
            n_rows,
        })
    }

    pub fn n_cols(&self) -> usize {
        self.n_cols
    }

    pub fn n_rows(&self) -> usize {
        self.n_rows
    }

    fn row_bytes(&self) -> usize {
        self.n_cols * self.ty.size()
    }
}

/// Weight rows per register block when several tokens share it (AVX2: 4 rows x 3 tokens = 12
/// accumulators, plus 3 activation vectors and a weight vector: the 16 ymm registers).
const TILE_ROWS: usize = 4;
/// Tokens per register block in the AVX2 and portable forms.
const TILE_TOKENS: usize = 3;
/// Tokens per register block in the AVX-512 form: 2 row pairs x 12 tokens = 24 zmm
/// accumulators (each holds two rows' eight lanes for one token), 2 weight vectors and the
/// broadcast activation vector, of 32, so nothing spills. A verification of up to 12 tokens is
/// one pass.
const WIDE_TOKENS: usize = 12;
/// Blocks of `TILE_ROWS` rows widened together in the AVX-512 form, each token group passing
/// over all of them in turn: a token's outputs then fill a 64-byte line of the output in one go
/// (a prompt's outputs are megabytes, and a line written a quarter at a time, far apart, was
/// fetched again for each quarter).
const WIDE_BLOCKS: usize = 4;
/// Activation bytes per token chunk in the AVX-512 form: inside a core's L2 beside the task's
/// weights, so every block of the task's rows reads the chunk from there. (One chunk of all
/// the tokens sent each block through L3 for the 2048-wide FFN input, at 40% of the speed;
/// 384 KiB to 1 MiB measured the same.)
const CHUNK_BYTES: usize = 512 * 1024;
/// Weight rows per register block for a single token: 8 independent FMA chains hide the FMA
/// latency while the rows stream from memory.
const DECODE_ROWS: usize = 8;
/// Fewest weight rows per parallel task, so that a task is worth scheduling.
const MIN_TASK_ROWS: usize = 32;

/// Which kernel family runs. All three compute the same numbers (see the module header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kernels {
    Portable,
    /// AVX2 + FMA + F16C.
    Avx2,
    /// AVX-512F besides the AVX2 set: a batch puts two rows in each 16-lane register, which
    /// halves the multiply-add instructions (one token still takes the AVX2 form: it waits on
    /// memory, not arithmetic).
    Avx512,
}

fn kernels_available() -> Kernels {
    #[cfg(target_arch = "x86_64")]
    if crate::quant::x86::avx2_available() {
        return if is_x86_feature_detected!("avx512f") && crate::quant::x86::avx512::allowed() {
            Kernels::Avx512
        } else {
            Kernels::Avx2
        };
    }
    Kernels::Portable
}

/// Raw output pointer shared by the tasks of one product.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);

impl OutPtr {
    /// The element pointer; a method, so that closures capture the whole (Sync) wrapper.
    fn at(&self, i: usize) -> *mut f32 {
        self.0.wrapping_add(i)
    }
}
// SAFETY: tasks write through it only at indices no other task writes (disjoint row ranges, see
// `matmul`), and the slice it points into outlives the parallel section that uses it.
unsafe impl Send for OutPtr {}
// SAFETY: as above.
unsafe impl Sync for OutPtr {}

/// `y[t][r] = dot(W[r], x[t])` for `n_tok` activation rows `x` (`n_tok * n_cols`, row-major) into
/// `y` (`n_tok * n_rows`, row-major), split over the pool by weight rows. Every output has the
/// bits of the same product computed for its token alone, whatever `n_tok`: a speculative
/// verification batch reproduces token-by-token decoding without a separate path.
pub fn matmul(pool: &Pool, w: &FloatMatrix, x: &[f32], n_tok: usize, y: &mut [f32]) {
    matmul_with(pool, w, x, n_tok, y, kernels_available());
}

/// `matmul` with the kernel family chosen by the caller (tests compare them).
fn matmul_with(
    pool: &Pool,
    w: &FloatMatrix,
    x: &[f32],
    n_tok: usize,
    y: &mut [f32],
    kern: Kernels,
) {
    let (k, m) = (w.n_cols, w.n_rows);
    assert_eq!(x.len(), n_tok * k, "gemm_float input length");
    assert_eq!(y.len(), n_tok * m, "gemm_float output length");
    if n_tok == 0 || m == 0 {
        return;
    }
    // Rounded once per product, a token per task, into buffers kept for the next product: a
    // prompt's activations are megabytes, and fresh ones cost a page fault per 4 KiB.
    SCRATCH.with_borrow_mut(|(xa_buf, xg_buf)| {
        let xa: &[f32] = if w.ty == Float::F32 {
            x
        } else {
            // Every element is written below, so the buffer is not cleared first.
            let xa = aligned(xa_buf, x.len());
            pool.for_each_chunk(xa, k, &|t, row| {
                row.copy_from_slice(&x[t * k..(t + 1) * k]);
                round_row(w.ty, row);
            });
            xa
        };
        let groups = (kern == Kernels::Avx512 && n_tok > 1 && k >= 8).then(|| {
            let xg = aligned(xg_buf, n_tok * (k - k % 8));
            pack_groups(pool, xa, n_tok, k, xg);
            &*xg
        });
        run_rows(pool, w, xa, groups, n_tok, y, kern);
    });
}

thread_local! {
    /// The rounded and the grouped activations of the last product on this thread.
    static SCRATCH: std::cell::RefCell<(Vec<f32>, Vec<f32>)> = const {
        std::cell::RefCell::new((Vec::new(), Vec::new()))
    };
    /// A task's block of weight rows widened for the AVX-512 form (`x86::widen_rows`).
    static WIDE: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The product's rows split over the pool.
fn run_rows(
    pool: &Pool,
    w: &FloatMatrix,
    xa: &[f32],
    groups: Option<&[f32]>,
    n_tok: usize,
    y: &mut [f32],
    kern: Kernels,
) {
    let m = w.n_rows;
    // About four tasks per worker balance the load without paying for thousands of tasks on
    // the 262k-row output matrix; rounded to whole 16-row lines of output (also whole decode
    // blocks).
    let per_task = m
        .div_ceil(pool.n_threads() * 4)
        .max(MIN_TASK_ROWS)
        .next_multiple_of(WIDE_BLOCKS * TILE_ROWS);
    let n_tasks = m.div_ceil(per_task);
    let out = OutPtr(y.as_mut_ptr());
    pool.run(n_tasks, &|task| {
        let rows = task * per_task..((task + 1) * per_task).min(m);
        let put = |t: usize, r: usize, v: f32| {
            // SAFETY: t < n_tok and r < m, so t*m + r < y.len(); the row ranges of distinct
            // tasks are disjoint, so no other task writes this element, and `y` is borrowed
            // mutably until `run` returns, after every task is done.
            unsafe { *out.at(t * m + r) = v };
        };
        let put_run = |t: usize, r: usize, v: &[f32; TILE_ROWS]| {
            assert!(
                t < n_tok && r + TILE_ROWS <= rows.end,
                "a run inside this task's rows"
            );
            // SAFETY: as for `put`, for each element of the run (one unaligned store).
            unsafe { std::ptr::write_unaligned(out.at(t * m + r).cast::<[f32; TILE_ROWS]>(), *v) };
        };
        match groups {
            _ if n_tok == 1 => rows_single(w, xa, rows, kern, &put),
            Some(xg) => rows_wide(w, xa, xg, n_tok, rows.clone(), &put, &put_run),
            None if kern == Kernels::Avx2 && w.n_cols >= 8 => {
                rows_widened(w, xa, n_tok, rows.clone(), &put, &put_run)
            }
            None => rows_batch(w, xa, n_tok, rows, kern, &put),
        }
    });
}

/// The first `n` floats of `buf` from a 64-byte boundary (so the kernels' loads split no cache
/// line), grown as needed; the contents are whatever the last product left.
fn aligned(buf: &mut Vec<f32>, n: usize) -> &mut [f32] {
    if buf.len() < n + 16 {
        buf.resize(n + 16, 0.0);
    }
    let off = buf.as_ptr().align_offset(64).min(16);
    &mut buf[off..off + n]
}

/// Token group sizes of the AVX-512 form from the first token of a group on, `left` tokens
/// remaining: twelves, then the rest as 8, 4, 2 and 1.
fn wide_group_len(left: usize) -> usize {
    match left {
        WIDE_TOKENS.. => WIDE_TOKENS,
        8.. => 8,
        4.. => 4,
        2.. => 2,
        _ => 1,
    }
}

/// The activations as [`x86::block_wide`] reads them: the first `k8` elements of the tokens,
/// in groups (`wide_group_len`); a group of `T` tokens from token `s` takes the `T * k8` floats
/// from `xg[s * k8]`, ordered by step of eight elements, then token: one pointer and fixed
/// offsets for the kernel, and one prefetch stream.
fn pack_groups(pool: &Pool, x: &[f32], n_tok: usize, k: usize, xg: &mut [f32]) {
    let k8 = k - k % 8;
    assert!(k8 > 0 && xg.len() == n_tok * k8, "grouped activations");
    let n_full = n_tok - n_tok % WIDE_TOKENS;
    pool.for_each_chunk(&mut xg[..n_full * k8], WIDE_TOKENS * k8, &|g, dst| {
        pack_group(&x[g * WIDE_TOKENS * k..], k, WIDE_TOKENS, dst);
    });
    let mut s = n_full;
    while s < n_tok {
        let t = wide_group_len(n_tok - s);
        pack_group(&x[s * k..], k, t, &mut xg[s * k8..(s + t) * k8]);
        s += t;
    }
}

fn pack_group(x: &[f32], k: usize, t: usize, dst: &mut [f32]) {
    for (c, step) in dst.chunks_exact_mut(8 * t).enumerate() {
        for (i, d) in step.chunks_exact_mut(8).enumerate() {
            d.copy_from_slice(&x[i * k + 8 * c..i * k + 8 * c + 8]);
        }
    }
}

/// `row` rounded to `ty` and widened back, as ggml's `vec_dot` sees it.
fn round_row(ty: Float, row: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if ty == Float::F16 && crate::quant::x86::avx2_available() {
        // SAFETY: just checked.
        return unsafe {
            crate::quant::x86::avx2::f16_rows::round_through_f16(row, |v| Float::F16.round(v))
        };
    }
    for v in row.iter_mut() {
        *v = ty.round(*v);
    }
}

/// Weight rows in the matrix's own bytes (each `k` elements of `ty`, `row_bytes` apart).
#[derive(Clone, Copy)]
struct Rows<'a> {
    ty: Float,
    data: &'a [u8],
    row_bytes: usize,
}

impl Rows<'_> {
    fn load(&self, r: usize, j: usize) -> f32 {
        let rb = self.row_bytes;
        self.ty.load(&self.data[r * rb..(r + 1) * rb], j)
    }

    /// Rows starting at row `r`.
    fn from(self, r: usize) -> Self {
        Rows {
            data: &self.data[r * self.row_bytes..],
            ..self
        }
    }
}

/// `out[r][t] = dot(row r, token t)` for `R` rows and `T` tokens (`xs`: `T` rows of `k`), in
/// the module header's order: eight FMA lanes over the first `k8` elements, `hsum8`, then the
/// f64 tail.
fn block<const R: usize, const T: usize>(
    rows: Rows,
    k: usize,
    xs: &[f32],
    kern: Kernels,
    out: &mut [[f32; T]; R],
) {
    let k8 = k - k % 8;
    assert!(xs.len() >= T * k, "block activations");
    assert!(
        rows.row_bytes == k * rows.ty.size() && rows.data.len() >= R * rows.row_bytes,
        "block weight rows"
    );
    match kern {
        #[cfg(target_arch = "x86_64")]
        Kernels::Avx2 | Kernels::Avx512 => {
            let (w, rb, x) = (rows.data.as_ptr(), rows.row_bytes, xs.as_ptr());
            // SAFETY: both families are chosen only where `avx2_available()` confirmed avx2, fma
            // and f16c; the asserts above guarantee R rows and T tokens of k >= k8 elements
            // behind the pointers.
            unsafe {
                match rows.ty {
                    Float::F32 => x86::block::<R, T, { x86::F32 }>(w, rb, x, k, k8, out),
                    Float::F16 => x86::block::<R, T, { x86::F16 }>(w, rb, x, k, k8, out),
                    Float::BF16 => x86::block::<R, T, { x86::BF16 }>(w, rb, x, k, k8, out),
                }
            }
        }
        _ => portable_block::<R, T>(|r, j| rows.load(r, j), |t, j| xs[t * k + j], k8, out),
    }
    if k8 < k {
        for (r, o) in out.iter_mut().enumerate() {
            for (t, v) in o.iter_mut().enumerate() {
                *v += tail(|j| rows.load(r, j), &xs[t * k..(t + 1) * k], k8, k);
            }
        }
    }
}

/// ggml's `vec_dot` leftovers: the products of the last `k % 8` elements summed in f64.
fn tail(w: impl Fn(usize) -> f32, x: &[f32], from: usize, k: usize) -> f32 {
    let mut s = 0.0f64;
    for (j, &xj) in x.iter().enumerate().take(k).skip(from) {
        s += f64::from(w(j) * xj);
    }
    s as f32
}

fn all_rows<'a>(w: &FloatMatrix<'a>) -> Rows<'a> {
    Rows {
        ty: w.ty,
        data: w.data,
        row_bytes: w.row_bytes(),
    }
}

/// One token: blocks of `DECODE_ROWS` rows read straight from the weights.
fn rows_single(
    w: &FloatMatrix,
    x: &[f32],
    rows: std::ops::Range<usize>,
    kern: Kernels,
    put: &impl Fn(usize, usize, f32),
) {
    let all = all_rows(w);
    let k = w.n_cols;
    let mut r = rows.start;
    while r < rows.end {
        if rows.end - r >= DECODE_ROWS {
            let mut out = [[0.0f32; 1]; DECODE_ROWS];
            block::<DECODE_ROWS, 1>(all.from(r), k, x, kern, &mut out);
            for (i, o) in out.iter().enumerate() {
                put(0, r + i, o[0]);
            }
            r += DECODE_ROWS;
        } else {
            let mut out = [[0.0f32; 1]; 1];
            block::<1, 1>(all.from(r), k, x, kern, &mut out);
            put(0, r, out[0][0]);
            r += 1;
        }
    }
}

/// `R` rows times `nt <= TILE_TOKENS` tokens into `out` (the first `nt` columns).
fn group<const R: usize>(
    rows: Rows,
    k: usize,
    xs: &[f32],
    nt: usize,
    kern: Kernels,
    out: &mut [[f32; TILE_TOKENS]; R],
) {
    fn copy<const R: usize, const T: usize>(
        src: &[[f32; T]; R],
        out: &mut [[f32; TILE_TOKENS]; R],
    ) {
        for (o, s) in out.iter_mut().zip(src) {
            o[..T].copy_from_slice(s);
        }
    }
    match nt {
        TILE_TOKENS => block::<R, TILE_TOKENS>(rows, k, xs, kern, out),
        2 => {
            let mut o = [[0.0f32; 2]; R];
            block::<R, 2>(rows, k, xs, kern, &mut o);
            copy(&o, out);
        }
        _ => {
            let mut o = [[0.0f32; 1]; R];
            block::<R, 1>(rows, k, xs, kern, &mut o);
            copy(&o, out);
        }
    }
}

/// Several tokens, portable form (and AVX2 rows shorter than 8): each block of `TILE_ROWS`
/// weight rows meets every token group of `TILE_TOKENS` with its outputs in registers; the
/// block's first group streams it from memory, the later ones find it in L1.
fn rows_batch(
    w: &FloatMatrix,
    x: &[f32],
    n_tok: usize,
    rows: std::ops::Range<usize>,
    kern: Kernels,
    put: &impl Fn(usize, usize, f32),
) {
    let (all, k) = (all_rows(w), w.n_cols);
    block_rows(all.from(rows.start), k, &x[..n_tok * k], rows, 0, kern, put);
}

/// [`rows_batch`]'s loop for the matrix rows `rows` (`src` starts at the first of them) and the
/// tokens `xs` (rows of `k`), the first of which is token `t0`.
fn block_rows(
    src: Rows,
    k: usize,
    xs: &[f32],
    rows: std::ops::Range<usize>,
    t0: usize,
    kern: Kernels,
    put: &impl Fn(usize, usize, f32),
) {
    let n_tok = xs.len() / k;
    let mut r = rows.start;
    while r < rows.end {
        let nr = TILE_ROWS.min(rows.end - r);
        let src = src.from(r - rows.start);
        let mut t = 0;
        while t < n_tok {
            let nt = TILE_TOKENS.min(n_tok - t);
            let xs = &xs[t * k..(t + nt) * k];
            if nr == TILE_ROWS {
                let mut out = [[0.0f32; TILE_TOKENS]; TILE_ROWS];
                group::<TILE_ROWS>(src, k, xs, nt, kern, &mut out);
                for (i, o) in out.iter().enumerate() {
                    for (j, &v) in o[..nt].iter().enumerate() {
                        put(t0 + t + j, r + i, v);
                    }
                }
            } else {
                for i in 0..nr {
                    let mut out = [[0.0f32; TILE_TOKENS]; 1];
                    group::<1>(src.from(i), k, xs, nt, kern, &mut out);
                    for (j, &v) in out[0][..nt].iter().enumerate() {
                        put(t0 + t + j, r + i, v);
                    }
                }
            }
            t += nt;
        }
        r += nr;
    }
}

/// Several tokens, AVX-512 form: the tokens in chunks of `CHUNK_BYTES`; in each, every block of
/// `TILE_ROWS` rows is widened once and meets the chunk's tokens `WIDE_TOKENS` at a time.
fn rows_wide(
    w: &FloatMatrix,
    x: &[f32],
    xg: &[f32],
    n_tok: usize,
    rows: std::ops::Range<usize>,
    put: &impl Fn(usize, usize, f32),
    put_run: &impl Fn(usize, usize, &[f32; TILE_ROWS]),
) {
    let (all, k) = (all_rows(w), w.n_cols);
    let k8 = k - k % 8;
    let chunk = (CHUNK_BYTES / (4 * k)).max(1).next_multiple_of(WIDE_TOKENS);
    WIDE.with_borrow_mut(|wide| {
        let wide = aligned(wide, WIDE_BLOCKS * TILE_ROWS * k8);
        let mut t0 = 0;
        while t0 < n_tok {
            let t1 = (t0 + chunk).min(n_tok);
            let mut r = rows.start;
            while r < rows.end {
                let nb = WIDE_BLOCKS.min((rows.end - r) / TILE_ROWS);
                if nb == 0 {
                    // The task's last rows (only where the row count is not a multiple of 4):
                    // the AVX2 blocks, which give the same bits.
                    let xs = &x[t0 * k..t1 * k];
                    block_rows(all.from(r), k, xs, r..rows.end, t0, Kernels::Avx2, put);
                    break;
                }
                let blocks = &mut wide[..nb * TILE_ROWS * k8];
                for (b, wb) in blocks.chunks_exact_mut(TILE_ROWS * k8).enumerate() {
                    widen(all.from(r + b * TILE_ROWS), k8, wb);
                }
                let mut t = t0;
                while t < t1 {
                    let mut nt = 0;
                    for (b, wb) in blocks.chunks_exact(TILE_ROWS * k8).enumerate() {
                        let rb = r + b * TILE_ROWS;
                        let mut out = [[0.0f32; TILE_ROWS]; WIDE_TOKENS];
                        nt = wide_group(wb, k8, &xg[t * k8..t1 * k8], &mut out);
                        for (j, v) in out[..nt].iter_mut().enumerate() {
                            if k8 < k {
                                let xt = &x[(t + j) * k..(t + j + 1) * k];
                                let src = all.from(rb);
                                for (i, v) in v.iter_mut().enumerate() {
                                    *v += tail(|jj| src.load(i, jj), xt, k8, k);
                                }
                            }
                            put_run(t + j, rb, v);
                        }
                    }
                    t += nt;
                }
                r += nb * TILE_ROWS;
            }
            t0 = t1;
        }
    });
}

/// Several tokens, AVX2 form: as [`rows_wide`] (chunks of tokens that stay in L2, each block
/// of `TILE_ROWS` rows widened to f32 once per chunk), with one (row, token) per 8-lane register
/// and `TILE_TOKENS` tokens per pass: the weights' conversion leaves the inner loop, which is
/// then loads and FMAs only.
fn rows_widened(
    w: &FloatMatrix,
    x: &[f32],
    n_tok: usize,
    rows: std::ops::Range<usize>,
    put: &impl Fn(usize, usize, f32),
    put_run: &impl Fn(usize, usize, &[f32; TILE_ROWS]),
) {
    let (all, k) = (all_rows(w), w.n_cols);
    let k8 = k - k % 8;
    let chunk = (CHUNK_BYTES / (4 * k)).max(1).next_multiple_of(TILE_TOKENS);
    WIDE.with_borrow_mut(|wide| {
        let wide = aligned(wide, TILE_ROWS * k8);
        let mut t0 = 0;
        while t0 < n_tok {
            let t1 = (t0 + chunk).min(n_tok);
            let mut r = rows.start;
            while r < rows.end {
                if rows.end - r < TILE_ROWS {
                    let xs = &x[t0 * k..t1 * k];
                    block_rows(all.from(r), k, xs, r..rows.end, t0, Kernels::Avx2, put);
                    break;
                }
                let src = all.from(r);
                widen(src, k8, wide);
                let mut t = t0;
                while t < t1 {
                    let mut out = [[0.0f32; TILE_ROWS]; TILE_TOKENS];
                    let nt = widened_group(wide, k8, &x[t * k..t1 * k], k, &mut out);
                    for (j, v) in out[..nt].iter_mut().enumerate() {
                        if k8 < k {
                            let xt = &x[(t + j) * k..(t + j + 1) * k];
                            for (i, v) in v.iter_mut().enumerate() {
                                *v += tail(|jj| src.load(i, jj), xt, k8, k);
                            }
                        }
                        put_run(t + j, r, v);
                    }
                    t += nt;
                }
                r += TILE_ROWS;
            }
            t0 = t1;
        }
    });
}

/// The widened block times the first 3, 2 or 1 tokens of `xs` (rows of `k`), the most it holds,
/// into `out` (`out[t][r]`); returns how many it took.
fn widened_group(
    wide: &[f32],
    k8: usize,
    xs: &[f32],
    k: usize,
    out: &mut [[f32; TILE_ROWS]; TILE_TOKENS],
) -> usize {
    let nt = (xs.len() / k).min(TILE_TOKENS);
    assert!(
        nt >= 1 && wide.len() >= TILE_ROWS * k8,
        "widened block operands"
    );
    #[cfg(target_arch = "x86_64")]
    {
        fn run<const T: usize>(
            wide: &[f32],
            k8: usize,
            xs: &[f32],
            k: usize,
            out: &mut [[f32; TILE_ROWS]; TILE_TOKENS],
        ) -> usize {
            assert!(xs.len() >= T * k && k8 <= k, "widened block tokens");
            let o: &mut [[f32; TILE_ROWS]; T] = (&mut out[..T]).try_into().expect("T tokens");
            // SAFETY: `rows_widened` runs only with `Kernels::Avx2`, chosen where avx2, fma and
            // f16c were detected; `wide` holds the TILE_ROWS * k8 widened floats and `xs` T
            // tokens of k >= k8 floats (asserted).
            unsafe { x86::block_widened::<T>(wide.as_ptr(), k8, xs.as_ptr(), k, o) };
            T
        }
        match nt {
            TILE_TOKENS => run::<TILE_TOKENS>(wide, k8, xs, k, out),
            2 => run::<2>(wide, k8, xs, k, out),
            _ => run::<1>(wide, k8, xs, k, out),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("the AVX2 form runs only on x86-64 ({nt} tokens, {k} columns)");
}

/// The first `TILE_ROWS` rows of `rows` as f32, interleaved for [`wide_group`].
fn widen(rows: Rows, k8: usize, wide: &mut [f32]) {
    assert!(
        wide.len() >= TILE_ROWS * k8
            && k8 <= rows.row_bytes / rows.ty.size()
            && rows.data.len() >= TILE_ROWS * rows.row_bytes,
        "widened rows"
    );
    #[cfg(target_arch = "x86_64")]
    {
        let (w, rb, o) = (rows.data.as_ptr(), rows.row_bytes, wide.as_mut_ptr());
        // SAFETY: `rows_wide` and `rows_widened` run only with the AVX-512 and AVX2 families,
        // chosen where (avx512f and) avx2, fma and f16c were detected; the assert guarantees
        // TILE_ROWS rows of at least k8 elements behind `w` and TILE_ROWS * k8 floats behind `o`.
        unsafe {
            match rows.ty {
                Float::F32 => x86::widen_rows::<{ x86::F32 }>(w, rb, k8, o),
                Float::F16 => x86::widen_rows::<{ x86::F16 }>(w, rb, k8, o),
                Float::BF16 => x86::widen_rows::<{ x86::BF16 }>(w, rb, k8, o),
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("the AVX-512 form runs only on x86-64 ({k8} columns)");
}

/// The widened block times the next token group of `xg` (grouped by [`pack_groups`], from a
/// group's start; `wide_group_len` of what `xg` holds) into `out` (`out[t][r]`: each token's
/// rows are one run of the output); returns the group's size.
fn wide_group(
    wide: &[f32],
    k8: usize,
    xg: &[f32],
    out: &mut [[f32; TILE_ROWS]; WIDE_TOKENS],
) -> usize {
    let nt = wide_group_len(xg.len() / k8);
    assert!(
        nt * k8 <= xg.len() && wide.len() >= TILE_ROWS * k8,
        "wide block operands"
    );
    #[cfg(target_arch = "x86_64")]
    {
        fn run<const T: usize>(
            wide: &[f32],
            k8: usize,
            xg: &[f32],
            out: &mut [[f32; TILE_ROWS]; WIDE_TOKENS],
        ) -> usize {
            let o: &mut [[f32; TILE_ROWS]; T] = (&mut out[..T]).try_into().expect("T tokens");
            // SAFETY: as in `widen` for the features; `wide` holds the TILE_ROWS * k8 widened
            // floats and `xg` a group of T tokens of k8 floats (asserted by the caller).
            unsafe { x86::block_wide::<T>(wide.as_ptr(), k8, xg.as_ptr(), o) };
            T
        }
        match nt {
            WIDE_TOKENS => run::<WIDE_TOKENS>(wide, k8, xg, out),
            8 => run::<8>(wide, k8, xg, out),
            4 => run::<4>(wide, k8, xg, out),
            2 => run::<2>(wide, k8, xg, out),
            _ => run::<1>(wide, k8, xg, out),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("the AVX-512 form runs only on x86-64 ({nt} tokens, {k8} columns)");
}

/// The portable kernel: per output, eight lanes of fused multiply-adds over `k8` elements
/// (lane `l` takes elements `8c + l`), summed by `hsum8`, exactly as the AVX2 kernel rounds.
fn portable_block<const R: usize, const T: usize>(
    w: impl Fn(usize, usize) -> f32,
    x: impl Fn(usize, usize) -> f32,
    k8: usize,
    out: &mut [[f32; T]; R],
) {
    for (r, o) in out.iter_mut().enumerate() {
        for (t, v) in o.iter_mut().enumerate() {
            let mut lanes = [0.0f32; 8];
            for c in (0..k8).step_by(8) {
                for (l, lane) in lanes.iter_mut().enumerate() {
                    *lane = w(r, c + l).mul_add(x(t, c + l), *lane);
                }
            }
            *v = hsum8(&lanes);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! AVX2+FMA+F16C register blocks, and the AVX-512F widened-row blocks. Callers check the
    //! features and the slice lengths.
    use std::arch::x86_64::*;

    use super::hsum8;

    /// How far ahead of the element being read the weights are prefetched.
    const PREFETCH_BYTES: usize = 8192;

    /// Weight type tags for the const parameters (so the load is chosen at compile time,
    /// outside the hot loop).
    pub const F32: u8 = 0;
    pub const F16: u8 = 1;
    pub const BF16: u8 = 2;

    const fn elem_bytes(ty: u8) -> usize {
        if ty == F32 {
            4
        } else {
            2
        }
    }

    /// One prefetch per row and cache line, far ahead: a one-token step streams the weights
    /// once, and the hardware prefetcher alone leaves a core well short of its bandwidth (as
    /// for the quantized four-row kernels).
    #[inline(always)]
    fn prefetch<const TY: u8>(w: *const u8, row_bytes: usize, r: usize, j: usize) {
        let p = w.wrapping_add(r * row_bytes + elem_bytes(TY) * j + PREFETCH_BYTES);
        // SAFETY: a prefetch is a hint that never faults, whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p as *const i8) };
    }

    /// 8 weights of type `TY` at element `j` of the row at `p`, widened to f32.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load_w<const TY: u8>(p: *const u8, j: usize) -> __m256 {
        // SAFETY (all arms): the caller guarantees `j + 8` elements of the row are in bounds.
        unsafe {
            match TY {
                F32 => _mm256_loadu_ps(p.add(4 * j).cast()),
                F16 => _mm256_cvtph_ps(_mm_loadu_si128(p.add(2 * j).cast())),
                _ => _mm256_castsi256_ps(_mm256_slli_epi32(
                    _mm256_cvtepu16_epi32(_mm_loadu_si128(p.add(2 * j).cast())),
                    16,
                )),
            }
        }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn lanes(v: __m256) -> [f32; 8] {
        let mut a = [0.0f32; 8];
        // SAFETY: `a` holds 8 f32.
        unsafe { _mm256_storeu_ps(a.as_mut_ptr(), v) };
        a
    }

    /// `out[r][t] = dot(row r, token t)` over `k8` elements: rows of type `TY` are `row_bytes`
    /// apart from `w`, tokens are `x_stride` f32 apart from `x`.
    ///
    /// # Safety
    /// avx2, fma and f16c available; `w` points at `R` rows of at least `k8` elements of type
    /// `TY`, `row_bytes` apart; `x` at `T` tokens of at least `k8` f32, `x_stride` apart; `k8` is
    /// a multiple of 8.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn block<const R: usize, const T: usize, const TY: u8>(
        w: *const u8,
        row_bytes: usize,
        x: *const f32,
        x_stride: usize,
        k8: usize,
        out: &mut [[f32; T]; R],
    ) {
        let mut acc = [[_mm256_setzero_ps(); T]; R];
        let mut j = 0;
        while j < k8 {
            let mut xv = [_mm256_setzero_ps(); T];
            for (t, v) in xv.iter_mut().enumerate() {
                // SAFETY: t < T and j + 8 <= k8 (the caller's contract).
                *v = unsafe { _mm256_loadu_ps(x.add(t * x_stride + j)) };
            }
            let line = (elem_bytes(TY) * j).is_multiple_of(64);
            for (r, a) in acc.iter_mut().enumerate() {
                if line {
                    prefetch::<TY>(w, row_bytes, r, j);
                }
                // SAFETY: r < R and j + 8 <= k8; row r starts r * row_bytes past `w`.
                let wv = unsafe { load_w::<TY>(w.add(r * row_bytes), j) };
                for (a, &xv) in a.iter_mut().zip(&xv) {
                    *a = _mm256_fmadd_ps(wv, xv, *a);
                }
            }
            j += 8;
        }
        for (o, a) in out.iter_mut().zip(&acc) {
            for (o, a) in o.iter_mut().zip(a) {
                *o = hsum8(&lanes(*a));
            }
        }
    }

    /// Four rows of type `TY` (`row_bytes` apart from `w`) widened to f32 into `wide`, in the
    /// order [`block_wide`] reads them: for each step of eight elements, rows 0 and 1's eight
    /// (sixteen floats), then rows 2 and 3's.
    ///
    /// # Safety
    /// avx2, fma and f16c available; `w` points at 4 rows of at least `k8` elements of type
    /// `TY`, `row_bytes` apart; `wide` at `4 * k8` floats; `k8` is a multiple of 8.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn widen_rows<const TY: u8>(
        w: *const u8,
        row_bytes: usize,
        k8: usize,
        wide: *mut f32,
    ) {
        let mut j = 0;
        while j < k8 {
            let line = (elem_bytes(TY) * j).is_multiple_of(64);
            for r in 0..4 {
                if line {
                    prefetch::<TY>(w, row_bytes, r, j);
                }
                // SAFETY: r < 4 and j + 8 <= k8 (the caller's contract); the store is the
                // (j / 8 * 4 + r)-th run of eight of the 4 * k8 floats behind `wide`.
                unsafe {
                    let v = load_w::<TY>(w.add(r * row_bytes), j);
                    _mm256_storeu_ps(wide.add(4 * j + 8 * r), v);
                }
            }
            j += 8;
        }
    }

    /// `out[t][r] = dot(row r, token t)` over `k8` elements for the four rows widened by
    /// [`widen_rows`] (row r's eight elements of step j at `4j + 8r`) and `T` tokens
    /// (`x_stride` f32 apart from `x`): [`block`]'s accumulators and fused multiply-adds in its
    /// order, without the conversion, and the lane sums eight at a time in registers
    /// (`rows4::hsum8_ps`: `hsum8`'s additions in its order).
    ///
    /// # Safety
    /// avx2, fma and f16c available; `wide` points at `4 * k8` widened floats; `x` at `T`
    /// tokens of at least `k8` f32, `x_stride` apart; `k8` is a multiple of 8.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn block_widened<const T: usize>(
        wide: *const f32,
        k8: usize,
        x: *const f32,
        x_stride: usize,
        out: &mut [[f32; 4]; T],
    ) {
        let mut acc = [[_mm256_setzero_ps(); T]; 4];
        let mut j = 0;
        while j < k8 {
            // SAFETY: t < T and j + 8 <= k8 (the caller's contract).
            let xv: [__m256; T] =
                std::array::from_fn(|t| unsafe { _mm256_loadu_ps(x.add(t * x_stride + j)) });
            for (r, a) in acc.iter_mut().enumerate() {
                // SAFETY: j + 8 <= k8, so row r's eight floats at 4j + 8r are in the block.
                let wv = unsafe { _mm256_loadu_ps(wide.add(4 * j + 8 * r)) };
                for (a, &xv) in a.iter_mut().zip(&xv) {
                    *a = _mm256_fmadd_ps(wv, xv, *a);
                }
            }
            j += 8;
        }
        // Sums of (row, token) = (i % 4, i / 4), eight accumulators per register.
        let flat: [__m256; 12] = std::array::from_fn(|i| acc[i % 4][(i / 4) % T]);
        let mut sums = [0.0f32; 16];
        for (h, s) in sums.chunks_exact_mut(8).enumerate() {
            let v = crate::quant::x86::avx2::rows4::hsum8_ps(std::array::from_fn(|l| {
                flat[(8 * h + l).min(11)]
            }));
            // SAFETY: `s` holds eight f32.
            unsafe { _mm256_storeu_ps(s.as_mut_ptr(), v) };
        }
        for (t, o) in out.iter_mut().enumerate() {
            o.copy_from_slice(&sums[4 * t..4 * t + 4]);
        }
    }

    /// `out[t][r] = dot(row r, token t)` over `k8` elements for the four rows widened by
    /// [`widen_rows`] and a group of `T` tokens (`super::pack_groups`): each 16-lane accumulator
    /// holds two rows' eight ggml lanes for one token, the token's eight elements broadcast to
    /// both halves, so every lane takes the fused multiply-adds of [`block`] in its order, and
    /// the halves are summed by the same `hsum8`: the bits of `block`, with half the
    /// instructions and no conversion in the loop.
    ///
    /// # Safety
    /// avx512f, avx2, fma and f16c available; `wide` points at `4 * k8` widened floats; `xg` at
    /// a group of `T` tokens of `k8` f32; `k8` is a multiple of 8.
    #[target_feature(enable = "avx512f,avx2,fma,f16c")]
    pub unsafe fn block_wide<const T: usize>(
        wide: *const f32,
        k8: usize,
        xg: *const f32,
        out: &mut [[f32; 4]; T],
    ) {
        let mut acc = [[_mm512_setzero_ps(); T]; 2];
        let mut j = 0;
        while j < k8 {
            // SAFETY: j + 8 <= k8, so the 32 floats at 4j are inside the widened block.
            let w = unsafe {
                [
                    _mm512_loadu_ps(wide.add(4 * j)),
                    _mm512_loadu_ps(wide.add(4 * j + 16)),
                ]
            };
            for t in 0..T {
                // SAFETY: t < T and j + 8 <= k8: inside the group (the caller's contract).
                let xv = unsafe { _mm256_loadu_pd(xg.add(T * j + 8 * t).cast()) };
                let xb = _mm512_castpd_ps(_mm512_broadcast_f64x4(xv));
                for (a, w) in acc.iter_mut().zip(&w) {
                    a[t] = _mm512_fmadd_ps(*w, xb, a[t]);
                }
            }
            j += 8;
        }
        // Rows 0 and 1 of a token end in lanes 0 and 8 of one sum, rows 2 and 3 of the other.
        let rows = _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 24, 16, 8, 0);
        for (t, o) in out.iter_mut().enumerate() {
            let s0 = crate::quant::x86::avx512::hsum8_halves(acc[0][t]);
            let s1 = crate::quant::x86::avx512::hsum8_halves(acc[1][t]);
            let v = _mm512_castps512_ps128(_mm512_permutex2var_ps(s0, rows, s1));
            // SAFETY: `o` holds four f32.
            unsafe { _mm_storeu_ps(o.as_mut_ptr(), v) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::test_values as values;

    /// The vector rounding through f16 gives the scalar conversion's bits for every kind of
    /// value: halfway cases, subnormals, overflow to infinity, infinities and NaNs (ggml's rule).
    #[test]
    fn activation_rounding_matches_the_scalar_conversion() {
        let mut vals: Vec<f32> = (0..4096u32)
            .map(|i| f32::from_bits(i.wrapping_mul(2_654_435_761)))
            .collect();
        vals.extend([
            1.0 + f32::EPSILON * 1024.0, // halfway between two f16
            65504.0,
            65520.0,
            -65520.0,
            1e-8,
            -6.0e-8,
            2.98e-8,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::from_bits(0x7fc0_1234),
            f32::from_bits(0xffa0_0001),
            0.0,
            -0.0,
        ]);
        let want: Vec<u32> = vals
            .iter()
            .map(|&v| Float::F16.round(v).to_bits())
            .collect();
        for start in 0..3 {
            let mut got = vals[start..].to_vec();
            round_row(Float::F16, &mut got);
            let got: Vec<u32> = got.iter().map(|v| v.to_bits()).collect();
            assert_eq!(got, want[start..]);
        }
    }

    fn encode(ty: GgmlType, v: &[f32]) -> Vec<u8> {
        match ty {
            GgmlType::F32 => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            GgmlType::F16 => v
                .iter()
                .flat_map(|&x| f32_to_fp16(x).to_le_bytes())
                .collect(),
            _ => v
                .iter()
                .flat_map(|&x| f32_to_bf16(x).to_le_bytes())
                .collect(),
        }
    }

    /// (n_cols, n_rows, n_tok): rows and tokens off every block size, a row length that is not
    /// a multiple of 8 (the f64 tail), and model-like widths.
    const SHAPES: [(usize, usize, usize); 8] = [
        (8, 1, 1),
        (40, 13, 1),
        (40, 13, 5),
        (37, 9, 2),
        (64, 37, 7),
        (1000, 21, 4),
        (640, 70, 16),
        (2048, 11, 3),
    ];

    const TYPES: [GgmlType; 3] = [GgmlType::F32, GgmlType::F16, GgmlType::BF16];

    /// Against the exact product of the stored weights with the activations rounded to the
    /// weight type (what ggml multiplies), in f64: the only difference allowed is f32
    /// accumulation error, at most k ulps of the sum of |products|.
    #[test]
    fn matches_f64_product_on_awkward_shapes() {
        let pool = Pool::new(2).expect("pool");
        for ty in TYPES {
            let f = Float::of(ty).expect("float type");
            for (si, &(k, m, n_tok)) in SHAPES.iter().enumerate() {
                let bytes = encode(ty, &values(k * m, 10 + si as u64));
                let x: Vec<f32> = values(k * n_tok, 100 + si as u64)
                    .iter()
                    .map(|v| v * 3.0)
                    .collect();
                let w = FloatMatrix::new(ty, k, m, &bytes).expect("matrix");
                let mut y = vec![f32::NAN; n_tok * m];
                matmul(&pool, &w, &x, n_tok, &mut y);
                for t in 0..n_tok {
                    for r in 0..m {
                        let row = &bytes[r * k * f.size()..(r + 1) * k * f.size()];
                        let (mut want, mut mag) = (0.0f64, 0.0f64);
                        for j in 0..k {
                            let p = f64::from(f.load(row, j)) * f64::from(f.round(x[t * k + j]));
                            want += p;
                            mag += p.abs();
                        }
                        let got = f64::from(y[t * m + r]);
                        let tol = k as f64 * f64::from(f32::EPSILON) * mag + 1e-30;
                        assert!(
                            (got - want).abs() <= tol,
                            "{ty} k{k} m{m} n{n_tok}: y[{t}][{r}] = {got}, want {want} (tol {tol})"
                        );
                    }
                }
            }
        }
    }

    /// Activations are rounded to the weight type before the product, as ggml converts them to
    /// the `vec_dot_type`: with x = 1 + 2^-12 (not an f16 or bf16), F16 and BF16 weights of 1.0
    /// must see exactly 1.0, F32 the value itself.
    #[test]
    fn activations_are_rounded_to_the_weight_type() {
        let pool = Pool::new(1).expect("pool");
        let (k, x) = (16, 1.0f32 + 2f32.powi(-12));
        for (ty, want) in [
            (GgmlType::F16, 16.0),
            (GgmlType::BF16, 16.0),
            (GgmlType::F32, 16.0 * x),
        ] {
            let bytes = encode(ty, &vec![1.0; k]);
            let w = FloatMatrix::new(ty, k, 1, &bytes).expect("matrix");
            let mut y = [0.0f32; 2];
            matmul(&pool, &w, &[x; 32], 2, &mut y);
            assert_eq!(y, [want; 2], "{ty}");
            let mut y1 = [0.0f32];
            matmul(&pool, &w, &[x; 16], 1, &mut y1);
            assert_eq!(y1, [want], "{ty} single token");
        }
    }

    /// The kernel families this CPU can run, slowest first.
    fn families() -> Vec<Kernels> {
        let mut f = vec![Kernels::Portable];
        match kernels_available() {
            Kernels::Avx512 => f.extend([Kernels::Avx2, Kernels::Avx512]),
            Kernels::Avx2 => f.push(Kernels::Avx2),
            Kernels::Portable => {}
        }
        f
    }

    /// Every output of a batch equals the same product of its token alone, bit for bit, in
    /// every kernel family and against the portable one, so a token verified in a batch gets
    /// the logits it gets when decoded alone (speculative decoding's greedy output depends on
    /// it) on every CPU. Batches of 2..=27 tokens cover every way the AVX2 groups of three and
    /// the AVX-512 groups of 12/8/4/2/1 end; 130 tokens of 640 and 1100 of 64 span two of the
    /// AVX-512 form's token chunks.
    #[test]
    fn batch_single_and_portable_paths_are_bit_identical() {
        let pool = Pool::new(2).expect("pool");
        let families = families();
        eprintln!("kernel families compared: {families:?}");
        let shapes = SHAPES
            .iter()
            .copied()
            .chain((2..=27).map(|n| (72, 13, n)))
            .chain([(100, 9, 9), (640, 6, 17), (640, 9, 130), (64, 5, 1100)]);
        for ty in TYPES {
            for (si, (k, m, n_tok)) in shapes.clone().enumerate() {
                let bytes = encode(ty, &values(k * m, 20 + si as u64));
                let x = values(k * n_tok, 200 + si as u64);
                let w = FloatMatrix::new(ty, k, m, &bytes).expect("matrix");
                let mut alone = vec![0.0f32; n_tok * m];
                for t in 0..n_tok {
                    let one = &mut alone[t * m..(t + 1) * m];
                    matmul_with(&pool, &w, &x[t * k..(t + 1) * k], 1, one, Kernels::Portable);
                }
                for &kern in &families {
                    let mut y = vec![f32::NAN; n_tok * m];
                    matmul_with(&pool, &w, &x, n_tok, &mut y, kern);
                    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                    assert_eq!(
                        bits(&y),
                        bits(&alone),
                        "{ty} k{k} m{m} n{n_tok}: {kern:?} batch vs each token alone (portable)"
                    );
                    let mut one = vec![f32::NAN; m];
                    matmul_with(&pool, &w, &x[..k], 1, &mut one, kern);
                    assert_eq!(
                        bits(&one),
                        bits(&alone[..m]),
                        "{ty} k{k} m{m}: {kern:?} one token"
                    );
                }
            }
        }
    }

    #[test]
    fn non_float_types_and_wrong_sizes_are_errors() {
        assert!(matches!(
            FloatMatrix::new(GgmlType::Q8_0, 32, 1, &[0u8; 34]),
            Err(FloatMatrixError::NotFloat(GgmlType::Q8_0))
        ));
        assert!(matches!(
            FloatMatrix::new(GgmlType::F16, 8, 3, &[0u8; 40]),
            Err(FloatMatrixError::Size {
                expected: 48,
                got: 40,
                ..
            })
        ));
    }
}
