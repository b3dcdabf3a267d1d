//! Causal multi-head attention of a batch of query rows over cached keys and values, with grouped
//! query heads (GQA) and an optional sliding window. Keys and values come as f32 slices laid out
//! `[position][kv_head][dim]`; this module neither owns nor appends to the cache.

use half::f16;
use rayon::prelude::*;

use super::ops::{ggml_expf, hsum8};
use super::Pool;

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

/// `out[t][h] = softmax(scale * q[t][h] . K[0..=p]) V[0..=p]` for the query rows `q` of `n_tok`
/// tokens (`q.len() / (n_head * head_dim)`) at positions `pos0..pos0 + n_tok`, where
/// `keys`/`values` hold at least positions `0..pos0 + n_tok`.
/// Query head h reads kv head `h / (n_head / n_head_kv)`, as ggml broadcasts GQA heads.
pub fn attention(
    pool: &Pool,
    p: &AttnParams,
    q: &[f32],
    keys: &[f32],
    values: &[f32],
    pos0: usize,
    out: &mut [f32],
) {
    let (hd, hdv) = (p.head_dim, p.head_dim_v);
    assert!(p.n_head_kv > 0 && p.n_head.is_multiple_of(p.n_head_kv));
    let n_tok = q.len() / (p.n_head * hd);
    assert_eq!(q.len(), n_tok * p.n_head * hd);
    assert_eq!(out.len(), n_tok * p.n_head * hdv);
    let n_kv = pos0 + n_tok;
    let (k_stride, v_stride) = (p.n_head_kv * hd, p.n_head_kv * hdv);
    assert!(keys.len() >= n_kv * k_stride && values.len() >= n_kv * v_stride);
    let group = p.n_head / p.n_head_kv;
    pool.install(|| {
        out.par_chunks_mut(hdv).enumerate().for_each_init(
            || (Vec::new(), Vec::new(), Vec::new()),
            |(scores, qh, acc): &mut (Vec<f32>, Vec<f32>, Vec<f32>), (i, o)| {
                let (t, h) = (i / p.n_head, i % p.n_head);
                let kvh = h / group;
                let pos = pos0 + t;
                let start = p.window.map_or(0, |w| (pos + 1).saturating_sub(w));
                qh.clear();
                qh.extend(q[i * hd..(i + 1) * hd].iter().map(|&x| round_f16(x)));
                let head = Head {
                    q: qh,
                    keys: &keys[kvh * hd..],
                    values: &values[kvh * hdv..],
                    k_stride,
                    v_stride,
                    start,
                    pos,
                    scale: p.scale,
                };
                head.run(scores, acc, o);
            },
        );
    });
}

/// One query head against the visible keys `start..=pos` of its KV head.
///
/// The arithmetic is that of llama.cpp's CPU graph without flash attention, lane for lane, because
/// its results are rounded to f16 at two points (the query before `K q`, the softmax weights
/// before `V w`) and a last-bit difference there can flip a rounding that later layers amplify:
/// both products run through llamafile's tinyBLAS (`k % 8 == 0`), which keeps eight FMA lanes
/// along the summed dimension (lane = index mod 8, counted from cache cell 0) and adds them with
/// `hsum8`; the softmax (`ggml_vec_soft_max_f32`) takes `ggml_expf` of eight cells at a time and
/// adds each group's `hsum8` into an f64 sum. Cells of this sequence are its positions (one
/// sequence, filled from 0, no ring wrap-around), and masked cells add exact zeros.
struct Head<'a> {
    q: &'a [f32],
    keys: &'a [f32],
    values: &'a [f32],
    k_stride: usize,
    v_stride: usize,
    start: usize,
    pos: usize,
    scale: f32,
}

impl Head<'_> {
    fn run(&self, scores: &mut Vec<f32>, acc: &mut Vec<f32>, o: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has FMA, the only feature `run_fma` is compiled for.
            unsafe { self.run_fma(scores, acc, o) };
            return;
        }
        self.run_body(scores, acc, o);
    }

    /// `run_body` with hardware FMA for `mul_add` (same results, no libm call per element).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "fma")]
    unsafe fn run_fma(&self, scores: &mut Vec<f32>, acc: &mut Vec<f32>, o: &mut [f32]) {
        self.run_body(scores, acc, o);
    }

    #[inline(always)]
    fn run_body(&self, scores: &mut Vec<f32>, acc: &mut Vec<f32>, o: &mut [f32]) {
        let (hd, hdv) = (self.q.len(), o.len());
        scores.clear();
        scores.extend((self.start..=self.pos).map(|j| {
            let kj = &self.keys[j * self.k_stride..][..hd];
            dot_lanes(self.q, kj) * self.scale
        }));
        softmax_lanes(scores, self.start);
        // acc[d * 8 + lane]: the eight tinyBLAS lanes of output d.
        acc.clear();
        acc.resize(hdv * 8, 0.0);
        for (j, &s) in (self.start..=self.pos).zip(scores.iter()) {
            let w = round_f16(s);
            let lane = j % 8;
            let vj = &self.values[j * self.v_stride..][..hdv];
            for (a, &v) in acc.chunks_exact_mut(8).zip(vj) {
                a[lane] = w.mul_add(v, a[lane]);
            }
        }
        for (od, a) in o.iter_mut().zip(acc.chunks_exact(8)) {
            *od = hsum8(a.try_into().expect("chunks of 8"));
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

/// In-place softmax of the scores of cells `start..start + x.len()` as ggml-cpu computes it: see
/// [`Head`].
#[inline(always)]
fn softmax_lanes(x: &mut [f32], start: usize) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f64;
    let end = start + x.len();
    let mut g = start - start % 8;
    while g < end {
        let mut lanes = [0.0f32; 8];
        for (l, lane) in lanes.iter_mut().enumerate() {
            let j = g + l;
            if j >= start && j < end {
                let e = ggml_expf(x[j - start] - max);
                x[j - start] = e;
                *lane = e;
            }
        }
        sum += f64::from(hsum8(&lanes));
        g += 8;
    }
    let inv = (1.0 / sum) as f32;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two query heads on one KV head: the output is the softmax-weighted mean of the visible values, and a
    /// window hides the keys it should.
    #[test]
    fn window_and_gqa_select_the_right_keys() {
        let pool = Pool::new(2).expect("pool");
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
        let mut out = vec![0.0f32; 2 * 2];
        // tokens at positions 2 and 3; window 2 sees {1,2} and {2,3}
        attention(&pool, &p, &q, &keys, &values, 2, &mut out);
        assert_eq!(out, vec![2.5, 2.5, 3.5, 3.5]);
        // Without the window, tokens at 1 and 3 see 2 and 4 keys (weights 1/2 and 1/4, exact in
        // the f16 the weights are rounded to).
        let full = AttnParams { window: None, ..p };
        let mut one = vec![0.0f32; 2];
        attention(&pool, &full, &q[..4], &keys, &values, 1, &mut one);
        assert_eq!(one, vec![1.5, 1.5]);
        attention(&pool, &full, &q[..4], &keys, &values, 3, &mut one);
        assert_eq!(one, vec![2.5, 2.5]);
    }
}
