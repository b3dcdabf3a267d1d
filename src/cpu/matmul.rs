//! Matrix products with a quantized weight matrix: `y = x W^T` for a batch of activation rows, as
//! ggml's `mul_mat` does it on the CPU: every activation row is quantized once into the weight
//! type's `vec_dot_type` (Q8_K for k-quants, Q8_0/Q8_1 for legacy quants, the float type itself
//! for float weights; see `act_quant` for why Q8_0/Q8_1 use ggml-cpu's own quantizer), then each
//! output is one `vec_dot` of a weight row with an activation row.
//! Output rows are split over the pool in tiles, and a tile of weight rows is reused for every
//! token of the batch while it is hot in cache, so prefill reads each weight once per tile.

use super::act_quant::activation_quantizer;
use super::ggml_order::{orders_for, Orders, TileOrder, TILE_MAX_OUT};
use super::Pool;
use crate::quant::{self, FromF32Fn, GgmlType, QuantError, TypeKernels};

/// A 2-D weight matrix viewed in place: `n_rows` rows of `n_cols` elements of one ggml type.
#[derive(Clone, Copy)]
pub struct QMatrix<'a> {
    data: &'a [u8],
    kernels: &'static TypeKernels,
    /// Quantizes activation rows into `kernels.vec_dot_type`, as ggml-cpu does.
    quantize_act: FromF32Fn,
    /// `kernels.vec_dot`, or its replacements in ggml-cpu's float orders (`ggml_order`), with
    /// the rule that says which activation rows of a batch take which.
    orders: Orders,
    n_cols: usize,
    n_rows: usize,
    row_bytes: usize,
    act_row_bytes: usize,
}

/// Why bytes cannot be viewed as a matrix of a type.
#[derive(Debug, thiserror::Error)]
pub enum MatrixError {
    #[error(transparent)]
    Quant(#[from] QuantError),
    #[error("{rows} rows of {cols} {ty} elements take {expected} bytes, but the data holds {got}")]
    Size {
        ty: GgmlType,
        rows: usize,
        cols: usize,
        expected: usize,
        got: usize,
    },
}

impl<'a> QMatrix<'a> {
    pub fn new(
        ty: GgmlType,
        n_cols: usize,
        n_rows: usize,
        data: &'a [u8],
    ) -> Result<QMatrix<'a>, MatrixError> {
        let kernels = quant::kernels(ty)?;
        let act = quant::kernels(kernels.vec_dot_type)?;
        let quantize_act = activation_quantizer(kernels, act);
        let row_bytes = quant::row_bytes(ty, n_cols)?;
        let act_row_bytes = quant::row_bytes(kernels.vec_dot_type, n_cols)?;
        let expected = row_bytes.checked_mul(n_rows);
        if expected != Some(data.len()) {
            return Err(MatrixError::Size {
                ty,
                rows: n_rows,
                cols: n_cols,
                expected: expected.unwrap_or(usize::MAX),
                got: data.len(),
            });
        }
        let orders = orders_for(ty, n_rows).unwrap_or_else(|| Orders::plain(kernels.vec_dot));
        Ok(QMatrix {
            data,
            kernels,
            quantize_act,
            orders,
            n_cols,
            n_rows,
            row_bytes,
            act_row_bytes,
        })
    }

    pub fn ty(&self) -> GgmlType {
        self.kernels.ty
    }

    /// Elements per row (the input width of the product).
    pub fn n_cols(&self) -> usize {
        self.n_cols
    }

    /// Number of rows (the output width of the product).
    pub fn n_rows(&self) -> usize {
        self.n_rows
    }

    fn row(&self, r: usize) -> &'a [u8] {
        &self.data[r * self.row_bytes..(r + 1) * self.row_bytes]
    }

    /// Rows `r..r + n`, back to back.
    fn rows(&self, r: usize, n: usize) -> &'a [u8] {
        &self.data[r * self.row_bytes..(r + n) * self.row_bytes]
    }

    /// `out[j] = dot(W[r0 + j], a)` for every `j`, with `a` activation row `t` of `n_tok`,
    /// four weight rows at a time where a four-row kernel exists.
    fn dot_rows(&self, r0: usize, a: &[u8], out: &mut [f32], t: usize, n_tok: usize) {
        let k = self.orders.for_row(t, n_tok);
        let (one, four) = (k.one, k.four);
        let mut j = 0;
        if let Some(four) = four {
            while j + 4 <= out.len() {
                out[j..j + 4].copy_from_slice(&four(self.rows(r0 + j, 4), a));
                j += 4;
            }
        }
        for (jj, o) in out.iter_mut().enumerate().skip(j) {
            *o = one(self.n_cols, self.row(r0 + jj), a);
        }
    }

    /// Dequantize row `r` into `out` (`n_cols` long): how the embedding table is read, one token
    /// row at a time.
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        assert_eq!(out.len(), self.n_cols);
        (self.kernels.to_f32)(self.row(r), out);
    }
}

/// Weight rows per task: enough to amortise the task, few enough that a tile stays in L1/L2
/// while every token of the batch passes over it.
const TILE_ROWS: usize = 32;

/// Rows per task when decoding one token: a few tasks per thread (so a thread that finishes early
/// takes over), each long enough that rayon's per-task cost stays out of the profile.
fn decode_chunk_rows(m: usize, n_threads: usize) -> usize {
    m.div_ceil(4 * n_threads.max(1)).next_multiple_of(TILE_ROWS)
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
// SAFETY: tasks write through it only at indices no other task writes (see `matmul`), and the
// slice it points into outlives the parallel section that uses it.
unsafe impl Send for OutPtr {}
// SAFETY: as above.
unsafe impl Sync for OutPtr {}

/// `y[t][r] = dot(W[r], x[t])` for `n_tok` activation rows `x` (`n_tok * n_cols`, row-major) into
/// `y` (`n_tok * n_rows`, row-major). `act` is scratch for the quantized activations, reused
/// across calls.
pub fn matmul(pool: &Pool, w: &QMatrix, x: &[f32], n_tok: usize, y: &mut [f32], act: &mut Vec<u8>) {
    matmul_rows(pool, w, x, n_tok, y, act, false)
}

/// [`matmul`]; with `as_decode`, every activation row takes the kernel llama.cpp runs for a
/// single-token batch, so each output row is bit-identical to a product of that row alone
/// (what a speculative verification batch needs to reproduce token-by-token decoding).
pub fn matmul_rows(
    pool: &Pool,
    w: &QMatrix,
    x: &[f32],
    n_tok: usize,
    y: &mut [f32],
    act: &mut Vec<u8>,
    as_decode: bool,
) {
    let (k, m) = (w.n_cols, w.n_rows);
    assert_eq!(x.len(), n_tok * k, "matmul input length");
    assert_eq!(y.len(), n_tok * m, "matmul output length");
    if let Ok(fw) = super::gemm_float::FloatMatrix::new(w.ty(), k, m, w.data) {
        return super::gemm_float::matmul(pool, &fw, x, n_tok, y);
    }
    let arb = w.act_row_bytes;
    act.clear();
    act.resize(n_tok * arb, 0);
    let from_f32 = w.quantize_act;
    if n_tok == 1 {
        // One row is a few microseconds of work: not worth a region of its own.
        from_f32(x, act);
    } else {
        pool.for_each_chunk(act, arb, &|t, a| from_f32(&x[t * k..(t + 1) * k], a));
    }
    // What the widest tile wants computed once per activation row (see `TilePrepFn`).
    let prep = w
        .orders
        .tiles
        .iter()
        .flatten()
        .find(|t| t.toks <= n_tok)
        .and_then(|t| t.prep);
    let aux_row = prep.map_or(0, |(_, per_block)| per_block * (k / w.ty().block_size()));
    act.truncate(n_tok * arb);
    act.resize(n_tok * (arb + aux_row), 0);
    let (qa, aux) = act.split_at_mut(n_tok * arb);
    if let Some((prep, _)) = prep {
        let qa: &[u8] = qa;
        pool.for_each_chunk(aux, aux_row, &|t, x| prep(&qa[t * arb..(t + 1) * arb], x));
    }
    let act: &[u8] = act;
    let (act, aux) = act.split_at(n_tok * arb);
    // The batch size the kernel rules see: 1 when every row must round as if decoded alone.
    let n_rule = if as_decode { 1 } else { n_tok };
    if n_tok == 1 {
        let chunk = decode_chunk_rows(m, pool.n_threads());
        pool.for_each_chunk(y, chunk, &|tile, ys| {
            w.dot_rows(tile * chunk, act, ys, 0, 1)
        });
        return;
    }
    // Every token's rows, sliced once: the tiles take runs of them.
    let act_rows: Vec<&[u8]> = act.chunks_exact(arb).collect();
    let aux_rows: Vec<&[u8]> = if aux_row > 0 {
        aux.chunks_exact(aux_row).collect()
    } else {
        vec![&[]; n_tok]
    };
    let out = OutPtr(y.as_mut_ptr());
    let n_tiles = m.div_ceil(TILE_ROWS);
    pool.run(n_tiles, &|tile| {
        let r0 = tile * TILE_ROWS;
        let rows = TILE_ROWS.min(m - r0);
        let mut buf = [0.0f32; TILE_ROWS];
        let put = |t: usize, j: usize, v: f32| {
            // SAFETY: t < n_tok and j < rows, so t*m + r0 + j < y.len(); row ranges of distinct
            // tiles are disjoint, so no other task writes this element, and `y` is borrowed
            // mutably until `run` returns, after every task is done.
            unsafe { *out.at(t * m + r0 + j) = v };
        };
        let put_run = |t: usize, j: usize, v: &[f32]| {
            assert!(j + v.len() <= rows);
            let at = out.at(t * m + r0 + j);
            // SAFETY: as for `put`, for each of the elements j..j + v.len() of token t's row.
            // The tiles' widths get one store each (a copy of a run-time length is a call).
            unsafe {
                match *v {
                    [a, b, c, d] => std::ptr::write_unaligned(at.cast::<[f32; 4]>(), [a, b, c, d]),
                    [a, b] => std::ptr::write_unaligned(at.cast::<[f32; 2]>(), [a, b]),
                    _ => std::ptr::copy_nonoverlapping(v.as_ptr(), at, v.len()),
                }
            }
        };
        // The rows the batch rule sends to the batch kernel come first, then the rest; each run
        // goes through the tiles of its order (widest first), then the row kernels.
        let n_batch = w.orders.batch_rows(n_rule);
        for (t0, t1, batch) in [(0, n_batch, true), (n_batch, n_tok, false)] {
            let mut t = t0;
            for tile in w.orders.tiles.iter().flatten() {
                let fits = match tile.order {
                    TileOrder::Any => true,
                    TileOrder::Batch => batch,
                    TileOrder::Single => !batch,
                };
                if !fits {
                    continue;
                }
                // `toks` tokens at a time against `rows` rows at a time; the rows left over
                // take the row kernels.
                let (tr, tt) = (tile.rows, tile.toks);
                let mut got = [0.0f32; TILE_MAX_OUT];
                let got = &mut got[..tr * tt];
                while t + tt <= t1 {
                    let (a, x) = (&act_rows[t..t + tt], &aux_rows[t..t + tt]);
                    let mut j = 0;
                    while j + tr <= rows {
                        (tile.run)(w.rows(r0 + j, tr), a, x, got);
                        for (i, got) in got.chunks_exact(tr).enumerate() {
                            put_run(t + i, j, got);
                        }
                        j += tr;
                    }
                    for (i, a) in a.iter().enumerate() {
                        let n = rows - j;
                        w.dot_rows(r0 + j, a, &mut buf[..n], (t + i).min(n_rule - 1), n_rule);
                        for (jj, &v) in buf[..n].iter().enumerate() {
                            put(t + i, j + jj, v);
                        }
                    }
                    t += tt;
                }
            }
            for (t, a) in act_rows.iter().enumerate().take(t1).skip(t) {
                w.dot_rows(r0, a, &mut buf[..rows], t.min(n_rule - 1), n_rule);
                for (j, &v) in buf[..rows].iter().enumerate() {
                    put(t, j, v);
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::test_values as values;

    #[test]
    fn f32_matmul_matches_naive_product_for_batch_and_single_row() {
        let (k, m, n_tok) = (64, 37, 5); // m not a multiple of the tile
        let wv = values(k * m, 1);
        let x = values(k * n_tok, 2);
        let bytes: Vec<u8> = wv.iter().flat_map(|v| v.to_le_bytes()).collect();
        let w = QMatrix::new(GgmlType::F32, k, m, &bytes).expect("f32 matrix");
        let pool = Pool::new(2).expect("pool");
        let mut act = Vec::new();
        let mut y = vec![0.0f32; n_tok * m];
        matmul(&pool, &w, &x, n_tok, &mut y, &mut act);
        let mut y1 = vec![0.0f32; m];
        matmul(&pool, &w, &x[k..2 * k], 1, &mut y1, &mut act);
        for t in 0..n_tok {
            for r in 0..m {
                let want: f32 = (0..k).map(|i| wv[r * k + i] * x[t * k + i]).sum();
                assert!((y[t * m + r] - want).abs() < 1e-4, "t{t} r{r}");
            }
        }
        assert_eq!(&y1[..], &y[m..2 * m]);
    }

    /// Q5_0 and Q8_0 products give every (token, row) the bits of the single-row kernel,
    /// whichever tiles and row kernels the batch size and the row count send it through.
    #[test]
    fn legacy_quant_matmul_equals_single_row_dots() {
        let pool = Pool::new(2).expect("pool");
        for ty in [GgmlType::Q5_0, GgmlType::Q8_0] {
            let kw = quant::kernels(ty).expect("weight type");
            for (k, m) in [(32, 9), (160, 37)] {
                let rb = quant::row_bytes(ty, k).expect("row");
                let wv = values(k * m, 3);
                let mut wq = vec![0u8; m * rb];
                for (v, q) in wv.chunks_exact(k).zip(wq.chunks_exact_mut(rb)) {
                    (kw.from_f32)(v, q);
                }
                let w = QMatrix::new(ty, k, m, &wq).expect("matrix");
                for n_tok in [1usize, 3, 4, 5, 8, 11, 12, 13, 19] {
                    let x = values(k * n_tok, 4 + n_tok as u64);
                    let mut y = vec![0.0f32; n_tok * m];
                    let mut act = Vec::new();
                    matmul(&pool, &w, &x, n_tok, &mut y, &mut act);
                    let mut a = vec![0u8; w.act_row_bytes];
                    for t in 0..n_tok {
                        (w.quantize_act)(&x[t * k..(t + 1) * k], &mut a);
                        for r in 0..m {
                            let want = (kw.vec_dot)(k, w.row(r), &a);
                            let got = y[t * m + r];
                            assert_eq!(
                                got.to_bits(),
                                want.to_bits(),
                                "{ty} k{k} n{n_tok} t{t} r{r}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn wrong_byte_count_is_an_error() {
        let bytes = vec![0u8; 4 * 10];
        assert!(matches!(
            QMatrix::new(GgmlType::F32, 4, 3, &bytes),
            Err(MatrixError::Size {
                expected: 48,
                got: 40,
                ..
            })
        ));
    }
}
