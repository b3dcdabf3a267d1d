//! Hyperparameters read once from GGUF metadata (`<arch>.*` keys, as llama.cpp's
//! `llama_model::load_hparams` reads them, with the same defaults) and folded together with the
//! architecture's flags into the one struct the forward pass consults.

use super::arch::{Activation, ArchSpec};
use super::ModelError;
use crate::cpu::ops::RopeStyle;
use crate::gguf::{Array, GgufFile, Value};

/// Everything the forward pass needs to know about a model's shape and arithmetic.
#[derive(Clone, Debug)]
pub struct Hparams {
    /// `general.architecture`.
    pub arch: String,
    pub n_vocab: usize,
    /// Context length the model was trained with (`<arch>.context_length`).
    pub n_ctx_train: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    /// Per-head width of Q and K (`attention.key_length`, default n_embd / n_head).
    pub head_dim: usize,
    /// Per-head width of V (`attention.value_length`).
    pub head_dim_v: usize,
    /// Leading dimensions of each head that RoPE rotates (`rope.dimension_count`).
    pub n_rot: usize,
    pub n_ff: usize,
    pub rms_eps: f32,
    pub rope_style: RopeStyle,
    pub rope_freq_base: f32,
    /// Linear RoPE scaling: positions are multiplied by this (1 / `rope.scaling.factor`).
    pub rope_freq_scale: f32,
    /// RoPE base and scale of sliding-window layers.
    pub rope_freq_base_swa: f32,
    pub rope_freq_scale_swa: f32,
    pub activation: Activation,
    /// Multiplier of the looked-up embeddings (Gemma: sqrt(n_embd)).
    pub embd_scale: Option<f32>,
    /// Multiplier of q . k before the softmax.
    pub attn_scale: f32,
    /// Whether the model multiplies the queries by `attn_scale` before attention (Gemma's graph in
    /// llama.cpp scales `Qcur`) rather than the scores inside the softmax (everyone else). The
    /// product is the same in exact arithmetic, but the queries are rounded to f16 for an f16
    /// cache, and small scaled queries round differently (f16 subnormals), so the place matters.
    pub attn_scale_on_q: bool,
    /// `cap * tanh(logit / cap)` on the output logits, when the file sets
    /// `<arch>.final_logit_softcapping`.
    pub final_logit_softcap: Option<f32>,
    /// Window of the sliding-window layers (`attention.sliding_window`).
    pub sliding_window: Option<usize>,
    /// Which layers use the sliding window (all false without one).
    pub swa_layers: Vec<bool>,
    pub qk_norm: bool,
    pub post_norms: bool,
}

impl Hparams {
    /// Whether layer `il` attends only within the sliding window.
    pub fn is_swa(&self, il: usize) -> bool {
        self.swa_layers.get(il).copied().unwrap_or(false)
    }

    /// Query width (`n_head * head_dim`).
    pub fn n_q(&self) -> usize {
        self.n_head * self.head_dim
    }

    pub fn n_k(&self) -> usize {
        self.n_head_kv * self.head_dim
    }

    pub fn n_v(&self) -> usize {
        self.n_head_kv * self.head_dim_v
    }

    pub(crate) fn load(
        gguf: &GgufFile,
        spec: &ArchSpec,
        n_vocab: usize,
    ) -> Result<Hparams, ModelError> {
        let md = gguf.metadata();
        let a = spec.name;
        let key = |k: &str| format!("{a}.{k}");
        let file = || gguf.path().display().to_string();
        let missing = |k: String| ModelError::MissingKey {
            file: file(),
            key: k,
        };
        let bad = |k: String, value: String, why: &str| ModelError::BadValue {
            file: file(),
            key: k,
            value,
            why: why.to_string(),
        };
        let req_u32 = |k: &str| -> Result<usize, ModelError> {
            let full = key(k);
            md.get_u32(&full)?
                .map(|v| v as usize)
                .ok_or_else(|| missing(full))
        };
        let opt_u32 = |k: &str| -> Result<Option<usize>, ModelError> {
            Ok(md.get_u32(&key(k))?.map(|v| v as usize))
        };
        let opt_f32 = |k: &str| -> Result<Option<f32>, ModelError> { Ok(md.get_f32(&key(k))?) };

        let n_ctx_train = req_u32("context_length")?;
        let n_embd = req_u32("embedding_length")?;
        let n_layer = req_u32("block_count")?;
        let n_ff = req_u32("feed_forward_length")?;
        let n_head = req_u32("attention.head_count")?;
        let n_head_kv = opt_u32("attention.head_count_kv")?.unwrap_or(n_head);
        let positive = |k: &str, v: usize| {
            if v == 0 {
                Err(bad(key(k), "0".into(), "must be positive"))
            } else {
                Ok(v)
            }
        };
        positive("embedding_length", n_embd)?;
        positive("block_count", n_layer)?;
        positive("feed_forward_length", n_ff)?;
        positive("attention.head_count", n_head)?;
        positive("attention.head_count_kv", n_head_kv)?;
        if n_head % n_head_kv != 0 {
            return Err(bad(
                key("attention.head_count_kv"),
                n_head_kv.to_string(),
                &format!("must divide attention.head_count ({n_head})"),
            ));
        }
        let head_dim = opt_u32("attention.key_length")?.unwrap_or(n_embd / n_head);
        let head_dim_v = opt_u32("attention.value_length")?.unwrap_or(n_embd / n_head);
        positive("attention.key_length", head_dim)?;
        positive("attention.value_length", head_dim_v)?;
        let n_rot = opt_u32("rope.dimension_count")?.unwrap_or(head_dim);
        if n_rot > head_dim || n_rot % 2 != 0 {
            return Err(bad(
                key("rope.dimension_count"),
                n_rot.to_string(),
                &format!("must be even and at most the head width {head_dim}"),
            ));
        }
        let rms_eps = opt_f32("attention.layer_norm_rms_epsilon")?
            .ok_or_else(|| missing(key("attention.layer_norm_rms_epsilon")))?;

        let rope_freq_base = opt_f32("rope.freq_base")?.unwrap_or(10000.0);
        let scaling = md.get_str(&key("rope.scaling.type"))?.unwrap_or("linear");
        let factor = match opt_f32("rope.scaling.factor")? {
            Some(f) => Some(f),
            None => opt_f32("rope.scale_linear")?,
        };
        let rope_freq_scale = match scaling {
            "none" => 1.0,
            "linear" => match factor {
                Some(f) if f != 0.0 => 1.0 / f,
                _ => 1.0,
            },
            other => {
                return Err(bad(
                    key("rope.scaling.type"),
                    other.to_string(),
                    "only linear RoPE scaling (or none) is supported",
                ))
            }
        };

        let sliding_window = opt_u32("attention.sliding_window")?.filter(|&w| w > 0);
        let swa_layers = match (sliding_window, spec.swa_pattern) {
            (Some(_), Some(default)) => swa_pattern(
                gguf,
                &key("attention.sliding_window_pattern"),
                n_layer,
                default,
            )?,
            _ => vec![false; n_layer],
        };
        let (rope_freq_base_swa, rope_freq_scale_swa) = if spec.swa_own_rope {
            (opt_f32("rope.freq_base_swa")?.unwrap_or(10000.0), 1.0)
        } else {
            (rope_freq_base, rope_freq_scale)
        };

        let final_logit_softcap = opt_f32("final_logit_softcapping")?.filter(|&c| c != 0.0);
        // Gemma 3 27B scales queries by 1/sqrt(n_embd / n_head) (its query_pre_attn_scalar); every
        // other model by 1/sqrt(head_dim). llama.cpp recognises the 27B by its 62 layers.
        let attn_scale = if spec.name == "gemma3" && n_layer == 62 {
            1.0 / ((n_embd / n_head) as f32).sqrt()
        } else {
            1.0 / (head_dim as f32).sqrt()
        };

        Ok(Hparams {
            arch: a.to_string(),
            n_vocab,
            n_ctx_train,
            n_embd,
            n_layer,
            n_head,
            n_head_kv,
            head_dim,
            head_dim_v,
            n_rot,
            n_ff,
            rms_eps,
            rope_style: spec.rope,
            rope_freq_base,
            rope_freq_scale,
            rope_freq_base_swa,
            rope_freq_scale_swa,
            activation: spec.activation,
            embd_scale: spec.scale_embeddings.then(|| (n_embd as f32).sqrt()),
            attn_scale,
            attn_scale_on_q: spec.name == "gemma3",
            final_logit_softcap,
            sliding_window,
            swa_layers,
            qk_norm: spec.qk_norm,
            post_norms: spec.post_norms,
        })
    }
}

/// Which layers are sliding-window: an explicit per-layer bool array, or a period n where every
/// n-th layer (the last of each period) is global, as llama.cpp's `set_swa_pattern` does.
fn swa_pattern(
    gguf: &GgufFile,
    key: &str,
    n_layer: usize,
    default: u32,
) -> Result<Vec<bool>, ModelError> {
    let bad = |value: String, why: &str| ModelError::BadValue {
        file: gguf.path().display().to_string(),
        key: key.to_string(),
        value,
        why: why.to_string(),
    };
    let n_pattern = match gguf.metadata().get(key) {
        None => default,
        Some(Value::Array(Array::Bool(v))) => {
            if v.len() != n_layer {
                return Err(bad(
                    format!("{} entries", v.len()),
                    &format!("expected one per layer ({n_layer})"),
                ));
            }
            return Ok(v.clone());
        }
        Some(_) => gguf.metadata().get_u32(key)?.unwrap_or(default),
    };
    Ok((0..n_layer)
        .map(|il| n_pattern == 0 || (il as u32 % n_pattern) < n_pattern - 1)
        .collect())
}
