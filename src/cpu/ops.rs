//! Element-wise and row-wise f32 operations of the decoder: RMS norm, RoPE, softmax, the gated
//! activations, residual add. Each follows ggml-cpu's arithmetic (accumulation width, rounding
//! points) so that our logits track llama.cpp's closely; the facts are cited where they matter.
//! Nothing here knows about weights or quantized formats.

use std::sync::OnceLock;

use half::f16;

/// RMS norm of `x` into `out`, then multiplied by `w` element-wise:
/// `out = x / sqrt(mean(x^2) + eps) * w`. ggml sums the squares in f64 and takes the scale in f32.
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    assert!(x.len() == w.len() && x.len() == out.len());
    let scale = rms_scale(x, eps);
    for ((o, &xi), &wi) in out.iter_mut().zip(x).zip(w) {
        *o = (xi * scale) * wi;
    }
}

/// In-place RMS norm times `w` (for per-head Q/K norms).
pub fn rms_norm_inplace(x: &mut [f32], w: &[f32], eps: f32) {
    assert_eq!(x.len(), w.len());
    let scale = rms_scale(x, eps);
    for (xi, &wi) in x.iter_mut().zip(w) {
        *xi = (*xi * scale) * wi;
    }
}

fn rms_scale(x: &[f32], eps: f32) -> f32 {
    let sum: f64 = x.iter().map(|&v| (v * v) as f64).sum();
    let mean = (sum / x.len() as f64) as f32;
    1.0 / (mean + eps).sqrt()
}

/// How RoPE pairs the dimensions of a head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeStyle {
    /// Adjacent pairs `(x[2i], x[2i+1])` (ggml's `GGML_ROPE_TYPE_NORMAL`, Llama).
    Norm,
    /// Split halves `(x[i], x[i + n_rot/2])` (ggml's `GGML_ROPE_TYPE_NEOX`: Gemma, Qwen, GPT-NeoX).
    Neox,
}

/// Rotation angles for one position: `cos_sin[2i], cos_sin[2i+1]` for pair `i` of `n_rot / 2`.
/// As in ggml, theta starts at the position and is multiplied by `base^(-2/n_rot)` once per pair
/// (not recomputed with `powf`), and linear scaling multiplies theta by `freq_scale`.
pub fn rope_cache(pos: usize, n_rot: usize, freq_base: f32, freq_scale: f32, cos_sin: &mut [f32]) {
    assert_eq!(cos_sin.len(), n_rot);
    let theta_scale = freq_base.powf(-2.0 / n_rot as f32);
    let mut theta = pos as f32;
    for pair in cos_sin.chunks_exact_mut(2) {
        let t = freq_scale * theta;
        pair[0] = t.cos();
        pair[1] = t.sin();
        theta *= theta_scale;
    }
}

/// Rotate the first `n_rot` dimensions of each head in `x` (`n_head` heads of `head_dim`) by the
/// angles in `cos_sin` (from [`rope_cache`]); dimensions past `n_rot` pass through.
pub fn rope(x: &mut [f32], head_dim: usize, n_rot: usize, style: RopeStyle, cos_sin: &[f32]) {
    assert!(n_rot <= head_dim && n_rot.is_multiple_of(2) && cos_sin.len() == n_rot);
    assert_eq!(x.len() % head_dim, 0);
    for head in x.chunks_exact_mut(head_dim) {
        let half = n_rot / 2;
        for i in 0..half {
            let (c, s) = (cos_sin[2 * i], cos_sin[2 * i + 1]);
            let (a, b) = match style {
                RopeStyle::Norm => (2 * i, 2 * i + 1),
                RopeStyle::Neox => (i, i + half),
            };
            let (x0, x1) = (head[a], head[b]);
            // ggml-cpu's C is built with FMA contraction: the first product of each expression
            // is fused with the sum, the second is rounded on its own. Rounding the same way keeps
            // Q and K bit-identical to llama.cpp's, which matters because they are rounded to f16
            // for the attention products next.
            head[a] = x0.mul_add(c, -(x1 * s));
            head[b] = x0.mul_add(s, x1 * c);
        }
    }
}

/// In-place softmax. ggml accumulates the sum of exponentials in f64 and scales by its inverse.
pub fn softmax_inplace(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f64;
    for v in x.iter_mut() {
        let e = (*v - max).exp();
        sum += e as f64;
        *v = e;
    }
    let inv = (1.0 / sum) as f32;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// ggml-cpu's vectorised `expf` (`ggml_v_expf` in vec.h, the AVX2 variant), one lane at a time:
/// a degree-5 polynomial after range reduction by `ln 2`, with FMA at the same points. It differs
/// from libm's `expf` in the last bit now and then; llama.cpp's softmax uses it, and the softmax
/// weights are rounded to f16 next, so the same bits are needed to land on the same weights.
#[inline(always)]
pub fn ggml_expf(x: f32) -> f32 {
    let c = |bits: u32| f32::from_bits(bits);
    let r = 12_582_912.0f32; // 0x1.8p23
    let z = x.mul_add(c(0x3FB8_AA3B), r); // log2(e)
    let n = z - r;
    let b = (-n).mul_add(c(0x35BF_BE8E), (-n).mul_add(c(0x3F31_7200), x)); // ln 2, hi and lo
    let e = z.to_bits().wrapping_shl(23);
    let k = c(e.wrapping_add(1.0f32.to_bits()));
    let u = b * b;
    let j = c(0x3C07_2010)
        .mul_add(b, c(0x3D2B_9F17))
        .mul_add(u, c(0x3E2A_AF33).mul_add(b, c(0x3EFF_FEDB)))
        .mul_add(u, c(0x3F7F_FFF6) * b);
    if n.abs() <= 126.0 {
        return j.mul_add(k, k);
    }
    let g: u32 = if n <= 0.0 { 0x8200_0000 } else { 0 };
    let s1 = c(g.wrapping_add(0x7F00_0000));
    let s2 = c(e.wrapping_sub(g));
    if n.abs() > 192.0 {
        s1 * s1
    } else {
        s2.mul_add(j, s2) * s1
    }
}

/// ggml's `hsum_float_8` (and tinyBLAS's `hsum`): the upper half of eight lanes added to the lower,
/// then pairs two apart, then the last two.
#[inline(always)]
pub fn hsum8(l: &[f32; 8]) -> f32 {
    let r = [l[4] + l[0], l[5] + l[1], l[6] + l[2], l[7] + l[3]];
    (r[0] + r[2]) + (r[1] + r[3])
}

/// ggml's tanh approximation of GELU, rounded as ggml-cpu's build computes it: GCC contracts
/// `1 + a·x·x` into one fused multiply-add (`-ffp-contract=fast` with FMA enabled), which moves
/// a few entries of the f16 table below by one step.
pub fn gelu_f32(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    const COEF_A: f32 = 0.044715;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (COEF_A * x).mul_add(x, 1.0)).tanh())
}

/// GELU of every f16 value, rounded to f16: ggml-cpu evaluates GELU through this table (its
/// `GGML_GELU_FP16` path) for inputs in (-10, 10), so we do too, to land on the same numbers.
fn gelu_table() -> &'static [u16] {
    static TABLE: OnceLock<Vec<u16>> = OnceLock::new();
    TABLE.get_or_init(|| {
        (0..=u16::MAX)
            .map(|bits| f16::from_f32(gelu_f32(f16::from_bits(bits).to_f32())).to_bits())
            .collect()
    })
}

/// `out = gelu(gate) * up` (GEGLU, Gemma's feed-forward gate), with ggml's f16 table for GELU.
pub fn geglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
    assert!(gate.len() == up.len() && gate.len() == out.len());
    let table = gelu_table();
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        *o = if g <= -10.0 {
            0.0
        } else if g >= 10.0 {
            g * u
        } else {
            f16::from_bits(table[f16::from_f32(g).to_bits() as usize]).to_f32() * u
        };
    }
}

/// `out = silu(gate) * up` (SwiGLU, the Llama/Qwen feed-forward gate).
pub fn swiglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
    assert!(gate.len() == up.len() && gate.len() == out.len());
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        *o = g / (1.0 + (-g).exp()) * u;
    }
}

/// `acc += x`.
pub fn add_inplace(acc: &mut [f32], x: &[f32]) {
    assert_eq!(acc.len(), x.len());
    for (a, &b) in acc.iter_mut().zip(x) {
        *a += b;
    }
}

/// `x *= s`.
pub fn scale_inplace(x: &mut [f32], s: f32) {
    for v in x.iter_mut() {
        *v *= s;
    }
}

/// Logit soft-capping (Gemma 2): `cap * tanh(x / cap)`.
pub fn softcap_inplace(x: &mut [f32], cap: f32) {
    for v in x.iter_mut() {
        *v = cap * (*v / cap).tanh();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rms_norm_matches_definition() {
        let x = [1.0f32, -2.0, 3.0, -4.0];
        let w = [1.0f32, 0.5, 2.0, 1.0];
        let mut out = [0.0f32; 4];
        rms_norm(&x, &w, 0.0, &mut out);
        let rms = (30.0f32 / 4.0).sqrt();
        for i in 0..4 {
            assert!((out[i] - x[i] / rms * w[i]).abs() < 1e-6);
        }
    }

    #[test]
    fn rope_styles_pair_different_dims_and_keep_norm() {
        let head_dim = 8;
        let mut cs = vec![0.0f32; head_dim];
        rope_cache(3, head_dim, 10000.0, 1.0, &mut cs);
        // pair 0 rotates by the position itself
        assert!((cs[0] - 3.0f32.cos()).abs() < 1e-6 && (cs[1] - 3.0f32.sin()).abs() < 1e-6);
        let x: Vec<f32> = (0..head_dim).map(|i| i as f32 + 1.0).collect();
        let mut a = x.clone();
        let mut b = x.clone();
        rope(&mut a, head_dim, head_dim, RopeStyle::Norm, &cs);
        rope(&mut b, head_dim, head_dim, RopeStyle::Neox, &cs);
        let n = |v: &[f32]| v.iter().map(|t| t * t).sum::<f32>();
        assert!((n(&a) - n(&x)).abs() < 1e-3 && (n(&b) - n(&x)).abs() < 1e-3);
        // Norm rotates (x0, x1) together; Neox rotates (x0, x4).
        assert!((a[0] - (x[0] * cs[0] - x[1] * cs[1])).abs() < 1e-5);
        assert!((b[0] - (x[0] * cs[0] - x[4] * cs[1])).abs() < 1e-5);
    }

    #[test]
    fn ggml_expf_is_within_two_ulp_of_exp_and_handles_the_edges() {
        for i in -2000..2000 {
            let x = i as f32 * 0.0437;
            let (a, b) = (ggml_expf(x), x.exp());
            assert!((a - b).abs() <= 2.5e-7 * b, "{x}: {a} vs {b}");
        }
        assert_eq!(ggml_expf(f32::NEG_INFINITY), 0.0);
        assert_eq!(ggml_expf(0.0), 1.0);
    }

    #[test]
    fn softmax_sums_to_one() {
        let mut x = [1.0f32, 2.0, 3.0, -1e9];
        softmax_inplace(&mut x);
        assert!((x.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert_eq!(x[3], 0.0);
        assert!((x[2] / x[1] - 1f32.exp()).abs() < 1e-5);
    }

    #[test]
    fn geglu_table_is_close_to_exact_gelu() {
        let g: Vec<f32> = (-120..120).map(|i| i as f32 * 0.1).collect();
        let up = vec![1.0f32; g.len()];
        let mut out = vec![0.0f32; g.len()];
        geglu(&g, &up, &mut out);
        for (&gi, &o) in g.iter().zip(&out) {
            let exact = gelu_f32(gi);
            assert!(
                (o - exact).abs() <= 2e-3 * exact.abs().max(1.0),
                "{gi}: {o} vs {exact}"
            );
        }
    }
}
