//! Tiny synthetic models of every supported architecture against llama.cpp: the test writes an
//! F32 GGUF with random weights (deterministic PRNG) and a minimal `llama` vocabulary, lets
//! llama.cpp quantize it (`llama_model_quantize`, its own per-tensor rules) to F16, Q8_0, Q4_0 and
//! Q4_K_M, and compares the logits of both engines for a 16-token prefill (every position) and 8
//! single-token decode steps, for each architecture x type (F32 too).
//!
//! Shapes: n_embd 256, 2 layers, 4 query heads and 2 KV heads of 64, n_ff 512, vocab 512: every
//! row a multiple of 256 so that k-quants apply, GQA exercised. Gemma 3 gets a sliding window of
//! 8 on layer 0 (pattern 2: layer 1 global), so the 24 positions cross it; Llama gets an untied
//! `output.weight`, the others tie it to the embeddings; Qwen2 has Q/K/V biases.
//!
//! Metrics as in model_gemma3_vs_llama.rs: argmax, max |Δ|/max|ref| and NMSE per position, and
//! the median NMSE. Measured over the 20 cases (printed per case): Q8_0 is bit-identical (NMSE
//! 0), Q4_0/Q4_K_M/F32 mostly ~1e-14, F16 ~2e-7 (activations rounded to f16 in a different
//! summation order); the worst positions reach NMSE ~2e-4 and max_rel ~1.4e-2 where a last-ulp
//! difference in attention moves an activation across a Q8 rounding step and the 4-bit weights
//! amplify it; worst median 1.3e-5 (qwen2 Q4_0). No argmax differs. Bounds: NMSE <= 2e-3 per
//! position, median <= 1e-4, max_rel <= 0.1, identical argmax everywhere. A wrong RoPE pairing,
//! a missing bias or norm, or a broken window gives NMSE > 1e-2.

mod model_support;

use std::path::{Path, PathBuf};

use ggml_ref::eval::{quantize, ContextParams, Ftype, LlamaContext, LlamaModel};
use infer::gguf::{GgufFile, GgufWriter, Value};
use infer::model::{Model, ModelOptions};
use model_support::{check, compare, token_ids, uniform, Bounds};

const N_EMBD: usize = 256;
const N_LAYER: usize = 2;
const N_HEAD: usize = 4;
const N_HEAD_KV: usize = 2;
const HEAD_DIM: usize = 64;
const N_FF: usize = 512;
const N_VOCAB: usize = 512;
const N_CTX: usize = 64;
const N_PREFILL: usize = 16;
const N_DECODE: usize = 8;

const BOUNDS: Bounds = Bounds {
    max_rel: 0.1,
    nmse: 2e-3,
    median_nmse: 1e-4,
    top1_margin: 0.0,
};

/// A vocabulary llama.cpp accepts as SPM ("llama"): unk/bos/eos, the 256 byte tokens, then
/// filler pieces.
fn vocab(w: GgufWriter) -> GgufWriter {
    let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
    let mut types: Vec<i32> = vec![2, 3, 3];
    for b in 0..256 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(6);
    }
    let mut i = 0;
    while tokens.len() < N_VOCAB {
        tokens.push(format!("\u{2581}t{i}"));
        types.push(1);
        i += 1;
    }
    let scores: Vec<f32> = (0..N_VOCAB).map(|i| -(i as f32)).collect();
    w.meta("tokenizer.ggml.model", "llama")
        .meta("tokenizer.ggml.tokens", Value::from(tokens))
        .meta("tokenizer.ggml.scores", scores)
        .meta("tokenizer.ggml.token_type", types)
        .meta("tokenizer.ggml.unknown_token_id", 0u32)
        .meta("tokenizer.ggml.bos_token_id", 1u32)
        .meta("tokenizer.ggml.eos_token_id", 2u32)
}

/// Writes an F32 model of `arch` to `path`.
fn write_model(arch: &str, path: &Path) {
    let mut seed = 0u64;
    let mut next = || {
        seed += 1;
        seed
    };
    let e = N_EMBD as u64;
    let q = (N_HEAD * HEAD_DIM) as u64;
    let kv = (N_HEAD_KV * HEAD_DIM) as u64;
    let ff = N_FF as u64;
    let v = N_VOCAB as u64;
    let k = |s: &str| format!("{arch}.{s}");
    let mut w = GgufWriter::new()
        .meta("general.architecture", arch)
        .meta("general.name", "synthetic")
        .meta(&k("context_length"), 512u32)
        .meta(&k("embedding_length"), N_EMBD as u32)
        .meta(&k("block_count"), N_LAYER as u32)
        .meta(&k("feed_forward_length"), N_FF as u32)
        .meta(&k("attention.head_count"), N_HEAD as u32)
        .meta(&k("attention.head_count_kv"), N_HEAD_KV as u32)
        .meta(&k("attention.key_length"), HEAD_DIM as u32)
        .meta(&k("attention.value_length"), HEAD_DIM as u32)
        .meta(&k("attention.layer_norm_rms_epsilon"), 1e-6f32);
    if arch == "gemma3" {
        // A global base different from the local layers' 10000, so that mixing them up shows.
        w = w
            .meta(&k("attention.sliding_window"), 8u32)
            .meta(&k("attention.sliding_window_pattern"), 2u32)
            .meta(&k("rope.freq_base"), 100000.0f32);
    } else {
        w = w.meta(&k("rope.freq_base"), 10000.0f32);
    }
    w = vocab(w);
    // Weights ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) * 2 keep activations O(1) through the layers;
    // norm weights near 1.
    let mat = |w: GgufWriter, name: &str, n_in: u64, n_out: u64, seed: u64| {
        let s = 2.0 / (n_in as f32).sqrt();
        w.tensor_f32(
            name,
            &[n_in, n_out],
            &uniform((n_in * n_out) as usize, s, seed),
        )
    };
    let norm = |w: GgufWriter, name: &str, n: u64, seed: u64| {
        let vals: Vec<f32> = uniform(n as usize, 0.2, seed)
            .iter()
            .map(|x| 1.0 + x)
            .collect();
        w.tensor_f32(name, &[n], &vals)
    };
    w = w.tensor_f32(
        "token_embd.weight",
        &[e, v],
        &uniform((e * v) as usize, 1.0, next()),
    );
    w = norm(w, "output_norm.weight", e, next());
    if arch == "llama" {
        w = mat(w, "output.weight", e, v, next());
    }
    for il in 0..N_LAYER {
        let b = |s: &str| format!("blk.{il}.{s}");
        w = norm(w, &b("attn_norm.weight"), e, next());
        w = mat(w, &b("attn_q.weight"), e, q, next());
        w = mat(w, &b("attn_k.weight"), e, kv, next());
        w = mat(w, &b("attn_v.weight"), e, kv, next());
        w = mat(w, &b("attn_output.weight"), q, e, next());
        if arch == "qwen2" {
            w = w.tensor_f32(&b("attn_q.bias"), &[q], &uniform(q as usize, 0.5, next()));
            w = w.tensor_f32(&b("attn_k.bias"), &[kv], &uniform(kv as usize, 0.5, next()));
            w = w.tensor_f32(&b("attn_v.bias"), &[kv], &uniform(kv as usize, 0.5, next()));
        }
        if arch == "qwen3" || arch == "gemma3" {
            w = norm(w, &b("attn_q_norm.weight"), HEAD_DIM as u64, next());
            w = norm(w, &b("attn_k_norm.weight"), HEAD_DIM as u64, next());
        }
        if arch == "gemma3" {
            w = norm(w, &b("post_attention_norm.weight"), e, next());
            w = norm(w, &b("post_ffw_norm.weight"), e, next());
        }
        w = norm(w, &b("ffn_norm.weight"), e, next());
        w = mat(w, &b("ffn_gate.weight"), e, ff, next());
        w = mat(w, &b("ffn_up.weight"), e, ff, next());
        w = mat(w, &b("ffn_down.weight"), ff, e, next());
    }
    w.write_to(path).expect("write synthetic gguf");
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Compare both engines on `path`: prefill then single-token decodes, every position's logits.
fn compare_file(label: &str, path: &Path) {
    let tokens: Vec<u32> = {
        let mut t = vec![1u32];
        t.extend(token_ids(N_PREFILL + N_DECODE - 1, 3, N_VOCAB as u32, 7));
        t
    };
    let gguf = GgufFile::open(path).expect("open gguf");
    let model = Model::load(&gguf, &ModelOptions { n_threads: 2 }).expect("load model");
    assert_eq!(model.hparams().n_vocab, N_VOCAB);
    let mut st = model.new_state(N_CTX).expect("state");

    let lm = LlamaModel::load(path).expect("llama.cpp load");
    let params = ContextParams {
        n_ctx: N_CTX as u32,
        n_batch: N_CTX as u32,
        n_ubatch: 0,
        n_threads: 2,
        flash_attn: false,
        kv_f32: false,
    };
    let mut ctx = LlamaContext::new(&lm, params).expect("llama.cpp context");

    let mut diffs = Vec::new();
    let ours = model
        .forward(&mut st, &tokens[..N_PREFILL], true)
        .expect("prefill")
        .to_vec();
    ctx.decode(&tokens[..N_PREFILL], true)
        .expect("llama prefill");
    for i in 0..N_PREFILL {
        let r = ctx.logits_ith(i as i32).expect("logits");
        diffs.push((i, compare(&ours[i * N_VOCAB..(i + 1) * N_VOCAB], &r)));
    }
    for (i, &t) in tokens.iter().enumerate().skip(N_PREFILL) {
        let ours = model.forward(&mut st, &[t], false).expect("decode");
        ctx.decode(&[t], false).expect("llama decode");
        diffs.push((i, compare(ours, &ctx.logits_ith(-1).expect("logits"))));
    }
    check(label, &diffs, BOUNDS);
}

fn run_arch(arch: &str) {
    let dir =
        TempDir(std::env::temp_dir().join(format!("infer-synth-{arch}-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).expect("temp dir");
    let f32_path = dir.0.join("f32.gguf");
    write_model(arch, &f32_path);
    compare_file(&format!("{arch} F32"), &f32_path);
    for (ftype, name) in [
        (Ftype::F16, "F16"),
        (Ftype::Q8_0, "Q8_0"),
        (Ftype::Q4_0, "Q4_0"),
        (Ftype::Q4_K_M, "Q4_K_M"),
    ] {
        let out = dir.0.join(format!("{name}.gguf"));
        quantize(&f32_path, &out, ftype, 2).expect("llama_model_quantize");
        compare_file(&format!("{arch} {name}"), &out);
    }
}

#[test]
fn llama_matches_llama_cpp() {
    run_arch("llama");
}

#[test]
fn qwen2_matches_llama_cpp() {
    run_arch("qwen2");
}

#[test]
fn qwen3_matches_llama_cpp() {
    run_arch("qwen3");
}

#[test]
fn gemma3_matches_llama_cpp() {
    run_arch("gemma3");
}
