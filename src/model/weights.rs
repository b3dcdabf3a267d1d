//! Weight binding: every tensor the forward pass uses, found by name and checked for shape and
//! type. Matrices are views into the GGUF mapping (`QMatrix`), never copies; only the small 1-D
//! tensors (norm weights, biases, RoPE frequency factors) are converted to owned f32 vectors, so
//! that F16 or quantized norms work the same and the forward pass reads plain `&[f32]`.

use super::arch::{names, ArchSpec};
use super::hparams::Hparams;
use super::ModelError;
use crate::cpu::matmul::{MatrixError, QMatrix};
use crate::gguf::{GgufFile, TensorInfo};
use crate::quant::{self, QuantError};

/// A projection `y = W x (+ b)`.
pub struct Linear<'a> {
    pub w: QMatrix<'a>,
    /// `[n_rows]`, when the file has `<name>.bias`.
    pub b: Option<Vec<f32>>,
}

/// One decoder block. Shapes in (input → output) order of the product.
pub struct LayerWeights<'a> {
    /// `[n_embd]`
    pub attn_norm: Vec<f32>,
    /// n_embd → n_head * head_dim
    pub wq: Linear<'a>,
    /// n_embd → n_head_kv * head_dim
    pub wk: Linear<'a>,
    /// n_embd → n_head_kv * head_dim_v
    pub wv: Linear<'a>,
    /// n_head * head_dim_v → n_embd
    pub wo: Linear<'a>,
    /// `[head_dim]` each, when the architecture normalises Q and K per head.
    pub q_norm: Option<Vec<f32>>,
    pub k_norm: Option<Vec<f32>>,
    /// `[n_embd]`, on the attention output before the residual add (Gemma).
    pub attn_post_norm: Option<Vec<f32>>,
    /// `[n_embd]`
    pub ffn_norm: Vec<f32>,
    /// n_embd → n_ff
    pub ffn_gate: Linear<'a>,
    /// n_embd → n_ff
    pub ffn_up: Linear<'a>,
    /// n_ff → n_embd
    pub ffn_down: Linear<'a>,
    /// `[n_embd]`, on the feed-forward output before the residual add (Gemma).
    pub ffn_post_norm: Option<Vec<f32>>,
}

pub struct Weights<'a> {
    /// n_vocab rows of n_embd; read one row per token.
    pub token_embd: QMatrix<'a>,
    /// `[n_embd]`
    pub output_norm: Vec<f32>,
    /// n_embd → n_vocab; `token_embd` itself when the file has no `output.weight` (tied).
    pub output: Linear<'a>,
    /// `[n_rot / 2]` RoPE frequency divisors (Llama 3.1+ `rope_freqs.weight`).
    pub rope_freqs: Option<Vec<f32>>,
    pub layers: Vec<LayerWeights<'a>>,
}

/// Looks tensors up in one file and turns them into checked views.
pub(crate) struct Binder<'a> {
    gguf: &'a GgufFile,
}

impl<'a> Binder<'a> {
    pub(crate) fn new(gguf: &'a GgufFile) -> Self {
        Binder { gguf }
    }

    fn file(&self) -> String {
        self.gguf.path().display().to_string()
    }

    pub(crate) fn require(&self, name: &str) -> Result<&'a TensorInfo, ModelError> {
        self.gguf
            .tensor(name)
            .ok_or_else(|| ModelError::MissingTensor {
                file: self.file(),
                name: name.to_string(),
            })
    }

    /// Dimensions without trailing 1s, as ggml compares shapes.
    fn shape(t: &TensorInfo) -> Vec<u64> {
        let mut d = t.dims.clone();
        while d.len() > 1 && d.last() == Some(&1) {
            d.pop();
        }
        d
    }

    fn check_shape(&self, t: &TensorInfo, expected: &[u64]) -> Result<(), ModelError> {
        let got = Self::shape(t);
        if got != expected {
            return Err(ModelError::Shape {
                file: self.file(),
                name: t.name.clone(),
                got: t.dims.clone(),
                expected: expected.to_vec(),
            });
        }
        Ok(())
    }

    fn type_error(&self, t: &TensorInfo, e: QuantError) -> ModelError {
        match e {
            QuantError::Unsupported(ty) => ModelError::UnsupportedType {
                file: self.file(),
                name: t.name.clone(),
                ty,
            },
            other => ModelError::Tensor {
                file: self.file(),
                name: t.name.clone(),
                why: other.to_string(),
            },
        }
    }

    /// A tensor of `n_rows` rows of `n_cols` elements (ggml dims `[n_cols, n_rows]`).
    pub(crate) fn matrix_of(
        &self,
        t: &'a TensorInfo,
        n_cols: usize,
        n_rows: usize,
    ) -> Result<QMatrix<'a>, ModelError> {
        self.check_shape(t, &[n_cols as u64, n_rows as u64])?;
        QMatrix::new(t.ty, n_cols, n_rows, self.gguf.tensor_data(t)).map_err(|e| match e {
            MatrixError::Quant(q) => self.type_error(t, q),
            size => ModelError::Tensor {
                file: self.file(),
                name: t.name.clone(),
                why: size.to_string(),
            },
        })
    }

    pub(crate) fn matrix(
        &self,
        name: &str,
        n_cols: usize,
        n_rows: usize,
    ) -> Result<QMatrix<'a>, ModelError> {
        self.matrix_of(self.require(name)?, n_cols, n_rows)
    }

    /// `<base>.weight` and, if present, `<base>.bias`.
    pub(crate) fn linear(
        &self,
        base: &str,
        n_in: usize,
        n_out: usize,
    ) -> Result<Linear<'a>, ModelError> {
        Ok(Linear {
            w: self.matrix(&format!("{base}.weight"), n_in, n_out)?,
            b: self.opt_vector(&format!("{base}.bias"), n_out)?,
        })
    }

    /// A 1-D tensor of `n` elements as owned f32.
    pub(crate) fn vector(&self, name: &str, n: usize) -> Result<Vec<f32>, ModelError> {
        let t = self.require(name)?;
        self.check_shape(t, &[n as u64])?;
        let k = quant::kernels(t.ty).map_err(|e| self.type_error(t, e))?;
        quant::row_bytes(t.ty, n).map_err(|e| self.type_error(t, e))?;
        let mut out = vec![0.0f32; n];
        (k.to_f32)(self.gguf.tensor_data(t), &mut out);
        Ok(out)
    }

    pub(crate) fn opt_vector(&self, name: &str, n: usize) -> Result<Option<Vec<f32>>, ModelError> {
        match self.gguf.tensor(name) {
            Some(_) => self.vector(name, n).map(Some),
            None => Ok(None),
        }
    }
}

impl<'a> Weights<'a> {
    pub(crate) fn bind(
        gguf: &'a GgufFile,
        spec: &ArchSpec,
        hp: &Hparams,
    ) -> Result<Weights<'a>, ModelError> {
        let b = Binder::new(gguf);
        let e = hp.n_embd;
        let token_embd = b.matrix(names::TOKEN_EMBD, e, hp.n_vocab)?;
        let output = match gguf.tensor(names::OUTPUT) {
            Some(t) => Linear {
                w: b.matrix_of(t, e, hp.n_vocab)?,
                b: b.opt_vector(names::OUTPUT_BIAS, hp.n_vocab)?,
            },
            None => Linear {
                w: token_embd,
                b: None,
            },
        };
        let mut layers = Vec::with_capacity(hp.n_layer);
        for il in 0..hp.n_layer {
            let n = |s: &str| names::blk(il, s);
            let req_bias = |base: &str, lin: &Linear<'a>| -> Result<(), ModelError> {
                if spec.qkv_bias_required && lin.b.is_none() {
                    return Err(ModelError::MissingTensor {
                        file: gguf.path().display().to_string(),
                        name: format!("{base}.bias"),
                    });
                }
                Ok(())
            };
            let wq = b.linear(&n(names::ATTN_Q), e, hp.n_q())?;
            let wk = b.linear(&n(names::ATTN_K), e, hp.n_k())?;
            let wv = b.linear(&n(names::ATTN_V), e, hp.n_v())?;
            req_bias(&n(names::ATTN_Q), &wq)?;
            req_bias(&n(names::ATTN_K), &wk)?;
            req_bias(&n(names::ATTN_V), &wv)?;
            let norm =
                |s: &str, len: usize, required: bool| -> Result<Option<Vec<f32>>, ModelError> {
                    if required {
                        b.vector(&n(s), len).map(Some)
                    } else {
                        Ok(None)
                    }
                };
            layers.push(LayerWeights {
                attn_norm: b.vector(&n(&format!("{}.weight", names::ATTN_NORM)), e)?,
                wq,
                wk,
                wv,
                wo: b.linear(&n(names::ATTN_OUT), hp.n_head * hp.head_dim_v, e)?,
                q_norm: norm(
                    &format!("{}.weight", names::ATTN_Q_NORM),
                    hp.head_dim,
                    hp.qk_norm,
                )?,
                k_norm: norm(
                    &format!("{}.weight", names::ATTN_K_NORM),
                    hp.head_dim,
                    hp.qk_norm,
                )?,
                attn_post_norm: norm(
                    &format!("{}.weight", names::ATTN_POST_NORM),
                    e,
                    hp.post_norms,
                )?,
                ffn_norm: b.vector(&n(&format!("{}.weight", names::FFN_NORM)), e)?,
                ffn_gate: b.linear(&n(names::FFN_GATE), e, hp.n_ff)?,
                ffn_up: b.linear(&n(names::FFN_UP), e, hp.n_ff)?,
                ffn_down: b.linear(&n(names::FFN_DOWN), hp.n_ff, e)?,
                ffn_post_norm: norm(
                    &format!("{}.weight", names::FFN_POST_NORM),
                    e,
                    hp.post_norms,
                )?,
            });
        }
        Ok(Weights {
            token_embd,
            output_norm: b.vector(names::OUTPUT_NORM, e)?,
            output,
            rope_freqs: b.opt_vector(names::ROPE_FREQS, hp.n_rot / 2)?,
            layers,
        })
    }
}
