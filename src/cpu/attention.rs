//! Causal multi-head attention of a batch of query rows over cached keys and values, with grouped
//! query heads (GQA) and an optional sliding window. Keys and values come as f32 slices laid out
//! `[position][kv_head][dim]`; this module neither owns nor appends to the cache.

use half::f16;
use rayon::prelude::*;

use super::ops::softmax_inplace;
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
            || (Vec::new(), Vec::new()),
            |(scores, qh): &mut (Vec<f32>, Vec<f32>), (i, o)| {
                let (t, h) = (i / p.n_head, i % p.n_head);
                let kvh = h / group;
                let pos = pos0 + t;
                let start = p.window.map_or(0, |w| (pos + 1).saturating_sub(w));
                qh.clear();
                qh.extend(q[i * hd..(i + 1) * hd].iter().map(|&x| round_f16(x)));
                scores.clear();
                scores.extend((start..=pos).map(|j| {
                    let kj = &keys[j * k_stride + kvh * hd..][..hd];
                    dot(qh, kj) * p.scale
                }));
                softmax_inplace(scores);
                o.fill(0.0);
                for (j, &s) in (start..=pos).zip(scores.iter()) {
                    axpy(o, round_f16(s), &values[j * v_stride + kvh * hdv..][..hdv]);
                }
            },
        );
    });
}

fn round_f16(x: f32) -> f32 {
    f16::from_f32(x).to_f32()
}

/// f32 dot product in eight independent lanes, which the compiler turns into SIMD.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ac.zip(bc) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `y += s * x`.
fn axpy(y: &mut [f32], s: f32, x: &[f32]) {
    for (yi, &xi) in y.iter_mut().zip(x) {
        *yi += s * xi;
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
