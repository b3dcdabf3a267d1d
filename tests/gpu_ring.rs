//! The GPU's KV cache past the point where the sliding-window ring wraps: a small synthetic Gemma 3
//! (Q8_0 weights, a 16-token window on every other layer) at `-c 1024`, whose window layers keep
//! pad(16 + 512, 256) = 768 cells, fed 800 prompt tokens (the second 512-token batch wraps the ring
//! and lands in cells out of position order) then decode steps. The GPU places tokens as the CPU
//! cache does (`crate::model::kv_cache`, llama.cpp's `find_slot`) and attends over cells in cell
//! order, so its logits must equal the CPU's value for value at every step, with flash attention
//! on (the CLI's default) and off. Before the GPU cache followed the CPU's cells (it was linear
//! by position), the two could only agree up to the window ring's size.
//!
//! Runs on any wgpu adapter (CI: lavapipe); without one it prints why it skipped. ~8 s there.

mod model_support;

use std::path::{Path, PathBuf};

use infer::gguf::{GgufFile, GgufWriter, Value};
use infer::gpu::{DeviceChoice, GpuError};
use infer::model::{Model, ModelError, ModelOptions};
use infer::quant::{self, GgmlType};
use model_support::{argmax, token_ids, uniform};

const N_EMBD: usize = 128;
const N_LAYER: usize = 2;
const N_HEAD: usize = 4;
const N_HEAD_KV: usize = 2;
const HEAD_DIM: usize = 64;
const N_FF: usize = 256;
const N_VOCAB: usize = 320;
const WINDOW: u32 = 16;
const N_CTX: usize = 1024;
const N_PROMPT: usize = 800;
const N_DECODE: usize = 6;

/// An SPM vocabulary the loader accepts: unk/bos/eos, the 256 byte tokens, filler pieces.
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

/// `[n_in, n_out]` weights ~ U(-2/sqrt(n_in), 2/sqrt(n_in)) quantized to Q8_0.
fn q8(w: GgufWriter, name: &str, n_in: usize, n_out: usize, seed: u64) -> GgufWriter {
    let vals = uniform(n_in * n_out, 2.0 / (n_in as f32).sqrt(), seed);
    let rb = quant::row_bytes(GgmlType::Q8_0, n_in).expect("row bytes");
    let mut bytes = vec![0u8; rb * n_out];
    for (src, dst) in vals.chunks_exact(n_in).zip(bytes.chunks_exact_mut(rb)) {
        quant::quantize_row(GgmlType::Q8_0, src, dst).expect("quantize");
    }
    w.tensor(name, GgmlType::Q8_0, &[n_in as u64, n_out as u64], bytes)
}

fn norm(w: GgufWriter, name: &str, n: usize, seed: u64) -> GgufWriter {
    let vals: Vec<f32> = uniform(n, 0.2, seed).iter().map(|x| 1.0 + x).collect();
    w.tensor_f32(name, &[n as u64], &vals)
}

fn write_model(path: &Path) {
    let k = |s: &str| format!("gemma3.{s}");
    let mut w = GgufWriter::new()
        .meta("general.architecture", "gemma3")
        .meta("general.name", "synthetic ring")
        .meta(&k("context_length"), 2048u32)
        .meta(&k("embedding_length"), N_EMBD as u32)
        .meta(&k("block_count"), N_LAYER as u32)
        .meta(&k("feed_forward_length"), N_FF as u32)
        .meta(&k("attention.head_count"), N_HEAD as u32)
        .meta(&k("attention.head_count_kv"), N_HEAD_KV as u32)
        .meta(&k("attention.key_length"), HEAD_DIM as u32)
        .meta(&k("attention.value_length"), HEAD_DIM as u32)
        .meta(&k("attention.layer_norm_rms_epsilon"), 1e-6f32)
        .meta(&k("attention.sliding_window"), WINDOW)
        .meta(&k("attention.sliding_window_pattern"), 2u32)
        .meta(&k("rope.freq_base"), 100000.0f32);
    w = vocab(w);
    let (e, q, kv, ff) = (N_EMBD, N_HEAD * HEAD_DIM, N_HEAD_KV * HEAD_DIM, N_FF);
    let mut seed = 0u64;
    let mut next = || {
        seed += 1;
        seed
    };
    w = q8(w, "token_embd.weight", e, N_VOCAB, next());
    w = norm(w, "output_norm.weight", e, next());
    for il in 0..N_LAYER {
        let b = |s: &str| format!("blk.{il}.{s}");
        w = norm(w, &b("attn_norm.weight"), e, next());
        w = q8(w, &b("attn_q.weight"), e, q, next());
        w = q8(w, &b("attn_k.weight"), e, kv, next());
        w = q8(w, &b("attn_v.weight"), e, kv, next());
        w = q8(w, &b("attn_output.weight"), q, e, next());
        w = norm(w, &b("attn_q_norm.weight"), HEAD_DIM, next());
        w = norm(w, &b("attn_k_norm.weight"), HEAD_DIM, next());
        w = norm(w, &b("post_attention_norm.weight"), e, next());
        w = norm(w, &b("post_ffw_norm.weight"), e, next());
        w = norm(w, &b("ffn_norm.weight"), e, next());
        w = q8(w, &b("ffn_gate.weight"), e, ff, next());
        w = q8(w, &b("ffn_up.weight"), e, ff, next());
        w = q8(w, &b("ffn_down.weight"), ff, e, next());
    }
    w.write_to(path).expect("write synthetic gguf");
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn same(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: logits length");
    let diff = got.iter().zip(want).filter(|(a, b)| a != b).count();
    assert_eq!(diff, 0, "{what}: {diff} of {} logits differ", want.len());
}

#[test]
fn window_ring_on_gpu_matches_cpu_after_wrapping() {
    let dir = TempDir(std::env::temp_dir().join(format!("infer-gpu-ring-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).expect("temp dir");
    let path = dir.0.join("ring.gguf");
    write_model(&path);
    let file = GgufFile::open(&path).expect("synthetic model opens");
    let opts = ModelOptions { n_threads: 2 };
    let mut gm = Model::load(&file, &opts).expect("model loads");
    match gm.use_gpu(DeviceChoice::Gpu(None)) {
        Ok(_) => {}
        Err(ModelError::Gpu(GpuError::NoAdapter)) => {
            eprintln!("skipping GPU ring test: no wgpu adapter on this machine");
            return;
        }
        Err(e) => panic!("GPU adapter present but the model does not run there: {e}"),
    }
    let mut cm = Model::load(&file, &opts).expect("model loads");
    let prompt = token_ids(N_PROMPT, 3, N_VOCAB as u32, 7);
    for fa in [true, false] {
        cm.set_flash_attn(fa);
        gm.set_flash_attn(fa);
        let mut cs = cm.new_state(N_CTX).expect("cpu state");
        let mut gs = gm.new_state(N_CTX).expect("gpu state");
        let want = cm.forward(&mut cs, &prompt, false).expect("cpu").to_vec();
        let got = gm.forward(&mut gs, &prompt, false).expect("gpu").to_vec();
        same(&got, &want, &format!("flash attn {fa}: prefill"));
        // The window ring's cells are no longer in position order (the point of this test).
        let ring = cs.kv().cells(1).positions();
        assert!(
            ring.windows(2).any(|w| w[0] > w[1] && w[1] >= 0),
            "the ring did not wrap"
        );
        let mut next = argmax(&want) as u32;
        for step in 0..N_DECODE {
            let want = cm.forward(&mut cs, &[next], false).expect("cpu").to_vec();
            let got = gm.forward(&mut gs, &[next], false).expect("gpu").to_vec();
            same(&got, &want, &format!("flash attn {fa}: decode step {step}"));
            next = argmax(&want) as u32;
        }
    }
}
