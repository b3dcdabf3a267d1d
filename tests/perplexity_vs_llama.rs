//! `infer perplexity -c 512` on the real Gemma 3 270M Q4_K_M against the perplexity computed from
//! llama.cpp's own logits with llama-perplexity's chunking (ggml-ref `generate::perplexity`).
//!
//! Bounds: the final PPL within 1% of llama.cpp's, each running per-chunk value within 1%, and the
//! error estimate within 5% (it is a difference of two near-equal sums, so it amplifies the small
//! logit differences of two Q4_K implementations). The text is ~1,300 tokens of generated prose,
//! i.e. two full chunks of 512. A text shorter than two chunks is refused, as llama-perplexity does.

mod run_prose;

mod common;

use common::model_path;
use ggml_ref::eval::{ContextParams, LlamaContext, LlamaModel};
use ggml_ref::generate::perplexity;
use ggml_ref::llama::RefModel;
use std::path::PathBuf;
use std::process::Command;

const N_CTX: usize = 512;

fn temp_file(name: &str, text: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("infer-{}-{name}", std::process::id()));
    std::fs::write(&p, text).expect("write temp file");
    p
}

fn within(ours: f64, theirs: f64, rel: f64) -> bool {
    (ours - theirs).abs() <= rel * theirs.abs()
}

#[test]
fn perplexity_matches_llama_within_1_percent() {
    let Some(path) = model_path() else { return };
    let text = run_prose::prose(3, 80);
    let vocab = RefModel::load(&path, true).expect("llama.cpp loads the vocabulary");
    // llama-perplexity tokenizes with add_special and without parsing special tokens.
    let tokens = vocab.tokenize(&text, true, false);
    assert!(
        tokens.len() >= 2 * N_CTX,
        "the text must hold two chunks: {} tokens",
        tokens.len()
    );
    let bos = vocab.add_bos().then(|| vocab.bos() as u32);

    let lm = LlamaModel::load(&path).expect("llama.cpp loads the model");
    let mut ctx = LlamaContext::new(
        &lm,
        ContextParams {
            n_ctx: N_CTX as u32,
            n_batch: N_CTX as u32,
            n_ubatch: 0,
            n_threads: 2,
            flash_attn: false,
            ..Default::default()
        },
    )
    .expect("llama.cpp context");
    let reference = perplexity(&mut ctx, &tokens, N_CTX, bos).expect("llama.cpp perplexity");

    let file = temp_file("ppl.txt", &text);
    let out = Command::new(env!("CARGO_BIN_EXE_infer"))
        .arg("perplexity")
        .arg(&path)
        .arg("-f")
        .arg(&file)
        .args(["-c", "512"])
        .output()
        .expect("run infer");
    let _ = std::fs::remove_file(&file);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "infer perplexity failed: {stderr}");

    // Last stdout line: "PPL = <ppl> +/- <error>".
    let line = stdout.lines().last().unwrap_or_default();
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert!(
        fields.len() == 5 && fields[0] == "PPL" && fields[1] == "=" && fields[3] == "+/-",
        "unexpected final line: {line:?}"
    );
    let ppl: f64 = fields[2].parse().expect("ppl value");
    let err: f64 = fields[4].parse().expect("error value");

    // Running values on stderr: "[1]x.xxxx,[2]y.yyyy,".
    let running: Vec<f64> = stderr
        .split(',')
        .filter_map(|s| s.trim().rsplit_once(']').map(|(_, v)| v))
        .filter_map(|v| v.parse().ok())
        .collect();

    eprintln!(
        "ours: PPL = {ppl} +/- {err}, running {running:?}; llama.cpp: PPL = {:.4} +/- {:.5}, running {:?}",
        reference.ppl, reference.error, reference.running
    );
    assert!(
        within(ppl, reference.ppl, 0.01),
        "PPL {ppl} vs llama.cpp {}",
        reference.ppl
    );
    assert!(
        within(err, reference.error, 0.05),
        "error {err} vs llama.cpp {}",
        reference.error
    );
    assert_eq!(running.len(), reference.running.len(), "chunk count");
    for (i, (a, b)) in running.iter().zip(&reference.running).enumerate() {
        assert!(
            within(*a, *b, 0.01),
            "chunk {}: {a} vs llama.cpp {b}",
            i + 1
        );
    }
}

#[test]
fn text_shorter_than_two_chunks_is_refused() {
    let Some(path) = model_path() else { return };
    let file = temp_file("short.txt", "Only a few words here.");
    let out = Command::new(env!("CARGO_BIN_EXE_infer"))
        .arg("perplexity")
        .arg(&path)
        .arg("-f")
        .arg(&file)
        .output()
        .expect("run infer");
    let _ = std::fs::remove_file(&file);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("needs at least 1024") && stderr.lines().count() == 1,
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}
