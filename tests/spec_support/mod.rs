//! Shared by the spec_* tests: the real model (skipped with a message when absent), a
//! deliberately poor draft written next to it, and the plain target-only decode of `infer run`.

#![allow(dead_code)]

use infer::gguf::{GgufFile, GgufWriter};
use infer::model::Model;
use infer::sample::{Sampler, SamplerParams};
use std::path::{Path, PathBuf};

pub const REAL: &str = "models/gemma-3-270m-q4_k_m.gguf";

/// The real model's path, or `None` after printing why the test is skipped.
pub fn real_model() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(REAL);
    if p.exists() {
        Some(p)
    } else {
        eprintln!("skipped: {REAL} is absent (scripts/fetch-model.sh fetches it)");
        None
    }
}

/// The F16 target of `scripts/bench-spec.sh` (made from the Q4_K_M file by llama-quantize), in
/// models/ or target/spec-bench/, or `None` after printing why the test is skipped.
pub fn f16_model() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let found = ["models", "target/spec-bench"]
        .iter()
        .map(|d| root.join(d).join("gemma-3-270m-f16.gguf"))
        .find(|p| p.exists());
    if found.is_none() {
        eprintln!("skipped: no gemma-3-270m-f16.gguf in models/ (scripts/bench-spec.sh makes one)");
    }
    found
}

/// Deterministic values, uniform in [-scale, scale) (64-bit LCG).
fn uniform(n: usize, scale: f32, seed: u64) -> Vec<f32> {
    let mut s = seed ^ 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0) * scale
        })
        .collect()
}

/// A temporary directory under target/tmp, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let d = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target/tmp")
            .join(format!("{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("create temp dir");
        TempDir(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes a one-layer Gemma 3 with random F32 weights (n_embd 32) that carries `real`'s whole
/// vocabulary (every `tokenizer.*` key copied): compatible with the real model, and a poor
/// predictor of it.
pub fn write_poor_draft(real: &GgufFile, path: &Path) {
    let n_vocab = real
        .tensor("token_embd.weight")
        .map(|t| t.dims[1])
        .expect("real model has token_embd");
    let (e, hd, ff) = (32u64, 32u64, 64u64);
    let mut w = GgufWriter::new()
        .meta("general.architecture", "gemma3")
        .meta("general.name", "poor draft")
        .meta("gemma3.context_length", 4096u32)
        .meta("gemma3.embedding_length", e as u32)
        .meta("gemma3.block_count", 1u32)
        .meta("gemma3.feed_forward_length", ff as u32)
        .meta("gemma3.attention.head_count", 1u32)
        .meta("gemma3.attention.head_count_kv", 1u32)
        .meta("gemma3.attention.key_length", hd as u32)
        .meta("gemma3.attention.value_length", hd as u32)
        .meta("gemma3.attention.layer_norm_rms_epsilon", 1e-6f32)
        .meta("gemma3.attention.sliding_window", 512u32)
        .meta("gemma3.rope.freq_base", 10000.0f32);
    for (k, v) in real.metadata().iter() {
        if k.starts_with("tokenizer.") {
            w = w.meta(k, v.clone());
        }
    }
    let mut seed = 100;
    let mut next = || {
        seed += 1;
        seed
    };
    let mat = |w: GgufWriter, name: &str, n_in: u64, n_out: u64, seed: u64| {
        let vals = uniform((n_in * n_out) as usize, 2.0 / (n_in as f32).sqrt(), seed);
        w.tensor_f32(name, &[n_in, n_out], &vals)
    };
    let ones = |w: GgufWriter, name: &str, n: u64| w.tensor_f32(name, &[n], &vec![1.0; n as usize]);
    w = w.tensor_f32(
        "token_embd.weight",
        &[e, n_vocab],
        &uniform((e * n_vocab) as usize, 1.0, next()),
    );
    w = ones(w, "output_norm.weight", e);
    w = ones(w, "blk.0.attn_norm.weight", e);
    w = mat(w, "blk.0.attn_q.weight", e, hd, next());
    w = mat(w, "blk.0.attn_k.weight", e, hd, next());
    w = mat(w, "blk.0.attn_v.weight", e, hd, next());
    w = mat(w, "blk.0.attn_output.weight", hd, e, next());
    w = ones(w, "blk.0.attn_q_norm.weight", hd);
    w = ones(w, "blk.0.attn_k_norm.weight", hd);
    w = ones(w, "blk.0.post_attention_norm.weight", e);
    w = ones(w, "blk.0.post_ffw_norm.weight", e);
    w = ones(w, "blk.0.ffn_norm.weight", e);
    w = mat(w, "blk.0.ffn_gate.weight", e, ff, next());
    w = mat(w, "blk.0.ffn_up.weight", e, ff, next());
    w = mat(w, "blk.0.ffn_down.weight", ff, e, next());
    w.write_to(path).expect("write poor draft");
}

/// `n` tokens after `prompt` from the target alone, with `infer run`'s own loop.
pub fn plain_decode(model: &Model, prompt: &[u32], params: SamplerParams, n: usize) -> Vec<u32> {
    let mut st = model.new_state(512).expect("state");
    let mut sampler = Sampler::new(params);
    let mut out = Vec::new();
    infer::cli::run::generate(
        model,
        &mut st,
        prompt,
        &mut sampler,
        |_| false,
        n as i64,
        |id| {
            out.push(id);
            Ok(true)
        },
    )
    .expect("plain decode");
    out
}
