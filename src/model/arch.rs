//! The supported architectures as data: how each one differs from the common pre-norm decoder
//! (rope pairing, gated activation, extra norms, embedding scale, sliding-window default) and the
//! tensor names every architecture shares (llama.cpp's `llama-arch.cpp` names). The forward pass
//! reads these flags; it never matches on an architecture name.

use crate::cpu::ops::RopeStyle;

/// The gate activation of the feed-forward block (`act(gate) * up`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// SwiGLU: SiLU gate (Llama, Qwen).
    Silu,
    /// GEGLU with the tanh approximation of GELU (Gemma).
    GeluTanh,
}

/// What distinguishes one architecture, as llama.cpp's graph builder for it does
/// (src/models/<arch>.cpp) and its hparams loader (src/llama-model.cpp).
#[derive(Clone, Copy, Debug)]
pub struct ArchSpec {
    /// `general.architecture` value, also the prefix of its metadata keys.
    pub name: &'static str,
    pub rope: RopeStyle,
    pub activation: Activation,
    /// Embeddings are multiplied by sqrt(n_embd) after lookup (Gemma).
    pub scale_embeddings: bool,
    /// Per-head RMS norms on Q and K before RoPE (`attn_q_norm`, `attn_k_norm`).
    pub qk_norm: bool,
    /// RMS norms on the attention and feed-forward outputs before each residual add
    /// (`post_attention_norm`, `post_ffw_norm`).
    pub post_norms: bool,
    /// Q/K/V projections carry biases (Qwen2); other architectures may still have them.
    pub qkv_bias_required: bool,
    /// Sliding-window layer pattern when the file gives a window but no pattern: every n-th
    /// layer is global, the others local (Gemma 3: 6).
    pub swa_pattern: Option<u32>,
    /// Local (sliding-window) layers use their own RoPE base, `<arch>.rope.freq_base_swa`,
    /// defaulting to 10000, and no frequency scaling (Gemma 3).
    pub swa_own_rope: bool,
}

pub const ARCHS: &[ArchSpec] = &[
    ArchSpec {
        name: "gemma3",
        rope: RopeStyle::Neox,
        activation: Activation::GeluTanh,
        scale_embeddings: true,
        qk_norm: true,
        post_norms: true,
        qkv_bias_required: false,
        swa_pattern: Some(6),
        swa_own_rope: true,
    },
    ArchSpec {
        name: "llama",
        rope: RopeStyle::Norm,
        activation: Activation::Silu,
        scale_embeddings: false,
        qk_norm: false,
        post_norms: false,
        qkv_bias_required: false,
        swa_pattern: None,
        swa_own_rope: false,
    },
    ArchSpec {
        name: "qwen2",
        rope: RopeStyle::Neox,
        activation: Activation::Silu,
        scale_embeddings: false,
        qk_norm: false,
        post_norms: false,
        qkv_bias_required: true,
        swa_pattern: None,
        swa_own_rope: false,
    },
    ArchSpec {
        name: "qwen3",
        rope: RopeStyle::Neox,
        activation: Activation::Silu,
        scale_embeddings: false,
        qk_norm: true,
        post_norms: false,
        qkv_bias_required: false,
        swa_pattern: None,
        swa_own_rope: false,
    },
];

pub fn find(name: &str) -> Option<&'static ArchSpec> {
    ARCHS.iter().find(|a| a.name == name)
}

/// "gemma3, llama, qwen2, qwen3", for error messages.
pub fn supported_list() -> String {
    ARCHS.iter().map(|a| a.name).collect::<Vec<_>>().join(", ")
}

/// Tensor names (llama.cpp's `LLM_TENSOR_*` GGUF names).
pub mod names {
    pub const TOKEN_EMBD: &str = "token_embd.weight";
    pub const OUTPUT_NORM: &str = "output_norm.weight";
    pub const OUTPUT: &str = "output.weight";
    pub const OUTPUT_BIAS: &str = "output.bias";
    pub const ROPE_FREQS: &str = "rope_freqs.weight";

    /// `blk.{layer}.{suffix}`.
    pub fn blk(layer: usize, suffix: &str) -> String {
        format!("blk.{layer}.{suffix}")
    }

    pub const ATTN_NORM: &str = "attn_norm";
    pub const ATTN_Q: &str = "attn_q";
    pub const ATTN_K: &str = "attn_k";
    pub const ATTN_V: &str = "attn_v";
    pub const ATTN_OUT: &str = "attn_output";
    pub const ATTN_Q_NORM: &str = "attn_q_norm";
    pub const ATTN_K_NORM: &str = "attn_k_norm";
    pub const ATTN_POST_NORM: &str = "post_attention_norm";
    pub const FFN_NORM: &str = "ffn_norm";
    pub const FFN_GATE: &str = "ffn_gate";
    pub const FFN_UP: &str = "ffn_up";
    pub const FFN_DOWN: &str = "ffn_down";
    pub const FFN_POST_NORM: &str = "post_ffw_norm";
}
