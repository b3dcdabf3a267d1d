//! Causal multi-head attention of a batch of query rows over a layer's KV cache cells, with
//! grouped query heads (GQA) and an optional sliding window. The cells come as a position table
//! (`-1` = empty) and typed row views (`[cell][kv_head][dim]`, f16/f32/q8_0); this module neither
//! owns nor writes the cache.

use half::f16;
use half::slice::HalfFloatSliceExt;
use rayon::prelude::*;

use super::ggml_order::{vec_dot_f16_order, VecDotF16Lanes};
use super::ops::{ggml_expf, hsum8};
use super::Pool;
use crate::model::kv_cache::RowsRef;
use crate::quant::q8_0;

/// Bytes of one ggml `block_q8_0` (f16 scale + 32 × i8).
const Q8_BLOCK: usize = 34;

/// Shape and masking of one attention layer.
#[derive(Clone, Copy, Debug)]
pub struct AttnParams {
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub head_dim_v: usize,
    /// Multiplies `q . k` before the softmax.
    pub scale: f32,
    /// A query at position p sees keys at positions p - window < j <= p (llama.cpp's
    /// `LLAMA_SWA_TYPE_STANDARD`: masked when `p - j >= window`); `None` sees all j <= p.
    pub window: Option<usize>,
}

/// The cells attention reads: `pos[c]` is the position of the token in cell `c` (-1: empty),
/// `keys`/`values` hold at least `pos.len()` rows of `n_head_kv * head_dim(_v)` values.
#[derive(Clone, Copy)]
pub struct KvView<'a> {
    pub pos: &'a [i32],
    pub keys: RowsRef<'a>,
    pub values: RowsRef<'a>,
}

/// [`attention_cells`] over f32 slices laid out `[position][kv_head][dim]` whose values are
/// already f16-rounded (an f16 cache with cell = position, no ring), holding at least positions
/// `0..pos0 + n_tok`: the reference the GPU kernels are tested against.
pub fn attention(
    pool: &Pool,
    p: &AttnParams,
    q: &[f32],
    keys: &[f32],
    values: &[f32],
    pos0: usize,
    out: &mut [f32],
) {
    let n_tok = q.len() / (p.n_head * p.head_dim);
    let n_kv = pos0 + n_tok;
    let (kw, vw) = (p.n_head_kv * p.head_dim, p.n_head_kv * p.head_dim_v);
    assert!(keys.len() >= n_kv * kw && values.len() >= n_kv * vw);
    let k: Vec<f16> = keys[..n_kv * kw]
        .iter()
        .map(|&x| f16::from_f32(x))
        .collect();
    let v: Vec<f16> = values[..n_kv * vw]
        .iter()
        .map(|&x| f16::from_f32(x))
        .collect();
    let pos: Vec<i32> = (0..n_kv as i32).collect();
    let kv = KvView {
        pos: &pos,
        keys: RowsRef::F16(&k),
        values: RowsRef::F16(&v),
    };
    attention_cells(pool, p, q, &kv, pos0, out);
}

/// `out[t][h] = softmax(scale * q[t][h] . K) V` over the cells visible to token t, for the query
/// rows `q` of `n_tok` tokens (`q.len() / (n_head * head_dim)`) at positions `pos0..pos0 + n_tok`.
/// Query head h reads kv head `h / (n_head / n_head_kv)`, as ggml broadcasts GQA heads.
pub fn attention_cells(
    pool: &Pool,
    p: &AttnParams,
    q: &[f32],
    kv: &KvView<'_>,
    pos0: usize,
    out: &mut [f32],
) {
    attention_cells_rows(pool, p, q, kv, pos0, out, false)
}

/// [`attention_cells`]; with `as_decode`, every query row takes the arithmetic llama.cpp uses
/// for a single-token batch, so each row is bit-identical to decoding that token alone.
pub fn attention_cells_rows(
    pool: &Pool,
    p: &AttnParams,
    q: &[f32],
    kv: &KvView<'_>,
    pos0: usize,
    out: &mut [f32],
    as_decode: bool,
) {
    let (hd, hdv) = (p.head_dim, p.head_dim_v);
    assert!(p.n_head_kv > 0 && p.n_head.is_multiple_of(p.n_head_kv));
    let n_tok = q.len() / (p.n_head * hd);
    assert_eq!(q.len(), n_tok * p.n_head * hd);
    assert_eq!(out.len(), n_tok * p.n_head * hdv);
    let group = p.n_head / p.n_head_kv;
    // Each K/V row is read by every query head of its group and every token of the batch:
    // widen the rows any token can see to f32 once (exact: f16 and q8_0 values are f32
    // values), rather than once per reader.
    let (lo, hi) = (pos0 as i64, (pos0 + n_tok) as i64 - 1);
    let seen = |cp: i32| {
        let cp = i64::from(cp);
        cp >= 0 && cp <= hi && p.window.is_none_or(|w| lo - cp < w as i64)
    };
    let mut kbuf = WIDE_K.with(|b| std::mem::take(&mut *b.borrow_mut()));
    let mut vbuf = WIDE_V.with(|b| std::mem::take(&mut *b.borrow_mut()));
    let readers = n_tok * group > 1;
    let kf = match kv.keys {
        RowsRef::F16(_) if readers => {
            widen(pool, kv.keys, kv.pos, p.n_head_kv * hd, &seen, &mut kbuf);
            Some(&kbuf[..])
        }
        _ => None,
    };
    let vf = match kv.values {
        RowsRef::F16(_) | RowsRef::Q8_0(_) if readers => {
            widen(pool, kv.values, kv.pos, p.n_head_kv * hdv, &seen, &mut vbuf);
            Some(&vbuf[..])
        }
        _ => None,
    };
    pool.install(|| {
        out.par_chunks_mut(hdv).enumerate().for_each_init(
            Scratch::default,
            |s: &mut Scratch, (i, o)| {
                let (t, h) = (i / p.n_head, i % p.n_head);
                let head = Head {
                    q: &q[i * hd..(i + 1) * hd],
                    kv,
                    p,
                    kvh: h / group,
                    pos: (pos0 + t) as i64,
                    single: n_tok == 1 || as_decode,
                    kf,
                    vf,
                };
                head.run(s, o);
            },
        );
    });
    WIDE_K.with(|b| *b.borrow_mut() = kbuf);
    WIDE_V.with(|b| *b.borrow_mut() = vbuf);
}

thread_local! {
    /// Widened key and value rows, kept between calls so that decoding does not allocate.
    static WIDE_K: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    static WIDE_V: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `rows` (`width` values per cell) as f32 into `out`, for the cells `seen` accepts; the other
/// cells' rows are left as they were (never read).
fn widen(
    pool: &Pool,
    rows: RowsRef<'_>,
    pos: &[i32],
    width: usize,
    seen: &(dyn Fn(i32) -> bool + Sync),
    out: &mut Vec<f32>,
) {
    out.resize(pos.len() * width, 0.0);
    pool.install(|| {
        out.par_chunks_mut(width)
            .zip(pos.par_iter())
            .enumerate()
            .for_each(|(c, (row, &cp))| {
                if !seen(cp) {
                    return;
                }
                match rows {
                    RowsRef::F16(b) => b[c * width..][..width].convert_to_f32_slice(row),
                    RowsRef::F32(b) => row.copy_from_slice(&b[c * width..][..width]),
                    RowsRef::Q8_0(b) => {
                        let rb = width / q8_0::QK * Q8_BLOCK;
                        q8_0::dequantize_row(&b[c * rb..][..rb], row);
                    }
                }
            });
    });
}

/// Per-thread buffers of [`Head::run`].
#[derive(Default)]
struct Scratch {
    /// (cell, score) of the visible cells, in cell order.
    scores: Vec<(usize, f32)>,
    qh: Vec<f32>,
    q8: Vec<u8>,
    row: Vec<f32>,
    acc: Vec<f32>,
    lanes: Vec<VecDotF16Lanes>,
}

/// One query head against the visible cells of its KV head.
///
/// The arithmetic is that of llama.cpp's CPU graph without flash attention, lane for lane, because
/// its results are rounded to f16 at two points with an f16 cache (the query before `K q`, the
/// softmax weights before `V w`) and a last-bit difference there can flip a rounding that later
/// layers amplify: both products run through llamafile's tinyBLAS (`k % 8 == 0`), which keeps
/// eight FMA lanes along the summed dimension (lane = index mod 8; for `V w` the index is the
/// cache *cell*, counted from cell 0) and adds them with `hsum8`; the softmax
/// (`ggml_vec_soft_max_f32`) takes `ggml_expf` of eight cells at a time and adds each group's
/// `hsum8` into an f64 sum. Masked and empty cells add exact zeros in both, so only visible cells
/// are visited, in cell order. An f32 cache skips the two f16 roundings (ggml converts nothing);
/// a q8_0 key cache quantizes the query to q8_0 and takes ggml's q8_0 dot, as ggml's `vec_dot_type`
/// for q8_0 rows does.
struct Head<'a> {
    q: &'a [f32],
    kv: &'a KvView<'a>,
    p: &'a AttnParams,
    kvh: usize,
    pos: i64,
    /// The only query row of its call: llama.cpp's f16 products then run `ggml_vec_dot_f16`
    /// (tinyBLAS declines one column), whose lanes and reduction differ (`ggml_order`).
    single: bool,
    /// The key rows widened to f32 (f16 cache, several readers), else `None`.
    kf: Option<&'a [f32]>,
    /// The value rows widened to f32 (f16 or q8_0 cache, several readers), else `None`.
    vf: Option<&'a [f32]>,
}

impl Head<'_> {
    fn run(&self, s: &mut Scratch, o: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has FMA, the only feature `run_fma` is compiled for.
            unsafe { self.run_fma(s, o) };
            return;
        }
        self.run_body(s, o);
    }

    /// `run_body` with hardware FMA for `mul_add` (same results, no libm call per element).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "fma")]
    unsafe fn run_fma(&self, s: &mut Scratch, o: &mut [f32]) {
        self.run_body(s, o);
    }

    fn visible(&self, cell_pos: i32) -> bool {
        let cp = i64::from(cell_pos);
        cp >= 0 && cp <= self.pos && self.p.window.is_none_or(|w| self.pos - cp < w as i64)
    }

    #[inline(always)]
    fn run_body(&self, s: &mut Scratch, o: &mut [f32]) {
        let (hd, hdv) = (self.q.len(), o.len());
        let k_stride = self.p.n_head_kv * hd;
        let v_stride = self.p.n_head_kv * hdv;
        s.qh.clear();
        match self.kv.keys {
            RowsRef::F16(_) => s.qh.extend(self.q.iter().map(|&x| round_f16(x))),
            RowsRef::F32(_) => s.qh.extend_from_slice(self.q),
            RowsRef::Q8_0(_) => {
                s.q8.resize(hd / q8_0::QK * Q8_BLOCK, 0);
                q8_0::quantize_row(self.q, &mut s.q8);
            }
        }
        s.row.resize(hd.max(hdv), 0.0);
        s.scores.clear();
        for (c, &cp) in self.kv.pos.iter().enumerate() {
            if !self.visible(cp) {
                continue;
            }
            let off = c * k_stride + self.kvh * hd;
            let dot = match self.kv.keys {
                RowsRef::F16(k) if self.single => {
                    k[off..off + hd].convert_to_f32_slice(&mut s.row[..hd]);
                    vec_dot_f16_order(&s.row[..hd], &s.qh)
                }
                RowsRef::F16(k) => match self.kf {
                    Some(kf) => dot_lanes(&s.qh, &kf[off..off + hd]),
                    None => {
                        k[off..off + hd].convert_to_f32_slice(&mut s.row[..hd]);
                        dot_lanes(&s.qh, &s.row[..hd])
                    }
                },
                RowsRef::F32(k) => dot_lanes(&s.qh, &k[off..off + hd]),
                RowsRef::Q8_0(k) => {
                    let start = off / q8_0::QK * Q8_BLOCK;
                    q8_0::vec_dot(hd, &k[start..start + hd / q8_0::QK * Q8_BLOCK], &s.q8)
                }
            };
            s.scores.push((c, dot * self.p.scale));
        }
        softmax_lanes(&mut s.scores);
        if self.single && matches!(self.kv.values, RowsRef::F16(_)) {
            self.weighted_values_vec_dot_f16(s, o);
            return;
        }
        // acc[d * 8 + lane]: the eight tinyBLAS lanes of output d.
        s.acc.clear();
        s.acc.resize(hdv * 8, 0.0);
        let round_w = matches!(self.kv.values, RowsRef::F16(_));
        for &(c, w) in &s.scores {
            let w = if round_w { round_f16(w) } else { w };
            let lane = c % 8;
            let off = c * v_stride + self.kvh * hdv;
            let vj: &[f32] = match (self.vf, self.kv.values) {
                (Some(vf), _) => &vf[off..off + hdv],
                (None, RowsRef::F16(v)) => {
                    v[off..off + hdv].convert_to_f32_slice(&mut s.row[..hdv]);
                    &s.row[..hdv]
                }
                (None, RowsRef::F32(v)) => &v[off..off + hdv],
                (None, RowsRef::Q8_0(v)) => {
                    let start = off / q8_0::QK * Q8_BLOCK;
                    let bytes = &v[start..start + hdv / q8_0::QK * Q8_BLOCK];
                    q8_0::dequantize_row(bytes, &mut s.row[..hdv]);
                    &s.row[..hdv]
                }
            };
            for (a, &v) in s.acc.chunks_exact_mut(8).zip(vj) {
                a[lane] = w.mul_add(v, a[lane]);
            }
        }
        for (od, a) in o.iter_mut().zip(s.acc.chunks_exact(8)) {
            *od = hsum8(a.try_into().expect("chunks of 8"));
        }
    }
}

impl Head<'_> {
    /// `V w` for a single query row with an f16 cache, as `ggml_vec_dot_f16` sums each output
    /// dimension over the cells (the element index is the cell). llama.cpp pads the number of
    /// cells it attends over to a multiple of 256, so no cell falls in the kernel's f64 tail.
    #[inline(always)]
    fn weighted_values_vec_dot_f16(&self, s: &mut Scratch, o: &mut [f32]) {
        let RowsRef::F16(v) = self.kv.values else {
            unreachable!("called for f16 values only")
        };
        let hdv = o.len();
        let v_stride = self.p.n_head_kv * hdv;
        s.lanes.clear();
        s.lanes.resize(hdv, VecDotF16Lanes::default());
        for &(c, w) in &s.scores {
            let w = round_f16(w);
            let off = c * v_stride + self.kvh * hdv;
            v[off..off + hdv].convert_to_f32_slice(&mut s.row[..hdv]);
            for (l, &x) in s.lanes.iter_mut().zip(&s.row[..hdv]) {
                l.add(c, x, w);
            }
        }
        for (od, l) in o.iter_mut().zip(&s.lanes) {
            *od = l.reduce();
        }
    }
}

fn round_f16(x: f32) -> f32 {
    f16::from_f32(x).to_f32()
}

/// tinyBLAS's f32 dot product: eight FMA lanes over chunks of eight, then `hsum8`; a tail past a
/// multiple of eight (never the case for real head sizes) is added after, in order.
#[inline(always)]
fn dot_lanes(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .fold(0.0f32, |s, (x, y)| x.mul_add(*y, s));
    for (x, y) in ac.zip(bc) {
        for l in 0..8 {
            acc[l] = x[l].mul_add(y[l], acc[l]);
        }
    }
    hsum8(&acc) + tail
}

/// In-place softmax of the scores of visible cells, given in cell order, as ggml-cpu computes it
/// over a whole row of cells: see [`Head`].
#[inline(always)]
fn softmax_lanes(x: &mut [(usize, f32)]) {
    let max = x.iter().map(|&(_, s)| s).fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f64;
    let mut lanes = [0.0f32; 8];
    let mut group = None;
    for (c, s) in x.iter_mut() {
        if group != Some(*c / 8) {
            if group.is_some() {
                sum += f64::from(hsum8(&lanes));
                lanes = [0.0; 8];
            }
            group = Some(*c / 8);
        }
        let e = ggml_expf(*s - max);
        *s = e;
        lanes[*c % 8] = e;
    }
    if group.is_some() {
        sum += f64::from(hsum8(&lanes));
    }
    let inv = (1.0 / sum) as f32;
    for (_, v) in x.iter_mut() {
        *v *= inv;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(p: &AttnParams, q: &[f32], pos: &[i32], k: &[f32], v: &[f32], pos0: usize) -> Vec<f32> {
        let pool = Pool::new(2).expect("pool");
        let kv = KvView {
            pos,
            keys: RowsRef::F32(k),
            values: RowsRef::F32(v),
        };
        let mut out = vec![0.0f32; q.len() / p.head_dim * p.head_dim_v];
        attention_cells(&pool, p, q, &kv, pos0, &mut out);
        out
    }

    /// Two query heads on one KV head: the output is the softmax-weighted mean of the visible
    /// values, and a window hides the keys it should.
    #[test]
    fn window_and_gqa_select_the_right_keys() {
        let p = AttnParams {
            n_head: 2,
            n_head_kv: 1,
            head_dim: 2,
            head_dim_v: 1,
            scale: 1.0,
            window: Some(2),
        };
        // keys all zero: uniform weights over the visible positions
        let keys = vec![0.0f32; 4 * 2];
        let values = vec![1.0f32, 2.0, 3.0, 4.0];
        let q = vec![0.5f32; 2 * 2 * 2];
        let pos = [0, 1, 2, 3];
        // tokens at positions 2 and 3; window 2 sees {1,2} and {2,3}
        let out = run(&p, &q, &pos, &keys, &values, 2);
        assert_eq!(out, vec![2.5, 2.5, 3.5, 3.5]);
        // Without the window, tokens at 1 and 3 see 2 and 4 keys (weights 1/2 and 1/4).
        let full = AttnParams { window: None, ..p };
        assert_eq!(run(&full, &q[..4], &pos, &keys, &values, 1), vec![1.5, 1.5]);
        assert_eq!(run(&full, &q[..4], &pos, &keys, &values, 3), vec![2.5, 2.5]);
    }

    /// Cells are found by the positions they hold, not by their index: a wrapped ring (position
    /// 4 in cell 0) and empty cells give what the same tokens in position order give.
    #[test]
    fn cells_are_read_by_position() {
        let p = AttnParams {
            n_head: 1,
            n_head_kv: 1,
            head_dim: 1,
            head_dim_v: 1,
            scale: 1.0,
            window: Some(3),
        };
        // position j has key j/4 and value j
        let key = |j: i32| j as f32 / 4.0;
        let ring_pos = [4, -1, 2, 3];
        let rk: Vec<f32> = ring_pos.iter().map(|&j| key(j.max(0))).collect();
        let rv: Vec<f32> = ring_pos.iter().map(|&j| j.max(0) as f32).collect();
        let lin_pos = [0, 1, 2, 3, 4];
        let lk: Vec<f32> = lin_pos.iter().map(|&j| key(j)).collect();
        let lv: Vec<f32> = lin_pos.iter().map(|&j| j as f32).collect();
        let q = [1.0f32];
        let ring = run(&p, &q, &ring_pos, &rk, &rv, 4);
        let lin = run(&p, &q, &lin_pos, &lk, &lv, 4);
        assert!((ring[0] - lin[0]).abs() < 1e-6, "{ring:?} vs {lin:?}");
        // weights exp(q k) over positions 2, 3, 4
        let w: Vec<f32> = (2..5).map(|j| key(j).exp()).collect();
        let want = (2..5).zip(&w).map(|(j, w)| j as f32 * w).sum::<f32>() / w.iter().sum::<f32>();
        assert!((lin[0] - want).abs() < 1e-5, "{lin:?} vs {want}");
    }

    /// A q8_0 cache (two KV heads, so the per-head block offset matters) gives what the same
    /// keys and values in f32 give, within q8_0's rounding (1/254 of each block's max).
    #[test]
    fn q8_0_rows_match_f32_rows() {
        let p = AttnParams {
            n_head: 4,
            n_head_kv: 2,
            head_dim: 64,
            head_dim_v: 64,
            scale: 0.125,
            window: None,
        };
        let n_kv = 24;
        let mut s = 7u32;
        let mut rnd = |n: usize| -> Vec<f32> {
            (0..n)
                .map(|_| {
                    s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    (s >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
                })
                .collect()
        };
        let k = rnd(n_kv * 128);
        let v = rnd(n_kv * 128);
        let q = rnd(2 * 4 * 64);
        let mut kq = vec![0u8; n_kv * 4 * 34];
        let mut vq = vec![0u8; n_kv * 4 * 34];
        q8_0::quantize_row(&k, &mut kq);
        q8_0::quantize_row(&v, &mut vq);
        let pos: Vec<i32> = (0..n_kv as i32).collect();
        let pool = Pool::new(2).expect("pool");
        let mut want = vec![0.0f32; 2 * 4 * 64];
        let mut got = want.clone();
        let f = KvView {
            pos: &pos,
            keys: RowsRef::F32(&k),
            values: RowsRef::F32(&v),
        };
        attention_cells(&pool, &p, &q, &f, n_kv - 2, &mut want);
        let g = KvView {
            pos: &pos,
            keys: RowsRef::Q8_0(&kq),
            values: RowsRef::Q8_0(&vq),
        };
        attention_cells(&pool, &p, &q, &g, n_kv - 2, &mut got);
        let worst = want
            .iter()
            .zip(&got)
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(worst < 0.02, "q8_0 vs f32 attention: max |diff| {worst}");
    }
}
