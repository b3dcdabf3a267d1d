//! Greedy generation on the real Gemma 3 270M Q4_K_M against llama.cpp's (through ggml-ref:
//! llama.cpp tokenizes the prompt, decodes it, and picks 32 tokens with its greedy sampler).
//!
//! Bound: for every prompt, the first 32 generated tokens are identical — ids through the library
//! API (`infer::cli::run::generate`, the loop the binary runs), and text byte for byte through the
//! binary's stdout (`infer run -n 32 --temp 0`), which must hold nothing but that text. Prompts:
//! short, code, a list, French, Japanese, Gemma chat markup (special tokens), and a ~700-token
//! text past the model's 512-token sliding window.

mod run_prose;

use ggml_ref::eval::{ContextParams, LlamaContext, LlamaModel};
use ggml_ref::generate::greedy_generate;
use ggml_ref::llama::RefModel;
use infer::cli::run::generate;
use infer::gguf::GgufFile;
use infer::model::{Model, ModelOptions};
use infer::sample::{Sampler, SamplerParams};
use infer::tokenizer::Tokenizer;
use std::path::{Path, PathBuf};
use std::process::Command;

const N_GEN: usize = 32;
const N_CTX: usize = 2048;

fn model_path() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/gemma-3-270m-q4_k_m.gguf");
    if p.exists() {
        Some(p)
    } else {
        eprintln!(
            "skipping: {} is absent (scripts/fetch-model.sh fetches it)",
            p.display()
        );
        None
    }
}

fn prompts() -> Vec<(&'static str, String)> {
    vec![
        ("short", "The capital of France is".to_string()),
        (
            "code",
            "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n".to_string(),
        ),
        (
            "list",
            "Things to pack for a hiking trip:\n1. Water\n2. A map\n3.".to_string(),
        ),
        (
            "french",
            "Il était une fois, dans un petit village de Provence, une vieille femme qui".to_string(),
        ),
        ("japanese", "日本の首都は東京です。東京には".to_string()),
        (
            "chat",
            "<start_of_turn>user\nWrite a short poem about the sea.<end_of_turn>\n<start_of_turn>model\n"
                .to_string(),
        ),
        ("long", run_prose::prose(11, 48)),
    ]
}

#[test]
fn greedy_32_tokens_match_llama() {
    let Some(path) = model_path() else { return };
    let vocab = RefModel::load(&path, true).expect("llama.cpp loads the vocabulary");
    let lm = LlamaModel::load(&path).expect("llama.cpp loads the model");
    let mut ctx = LlamaContext::new(
        &lm,
        ContextParams {
            n_ctx: N_CTX as u32,
            n_batch: N_CTX as u32,
            n_threads: 2,
            flash_attn: false,
            ..Default::default()
        },
    )
    .expect("llama.cpp context");

    let gguf = GgufFile::open(&path).expect("open model");
    let tok = Tokenizer::from_gguf(&gguf).expect("tokenizer");
    let model = Model::load(&gguf, &ModelOptions { n_threads: 0 }).expect("model");

    let mut failures = Vec::new();
    for (name, prompt) in prompts() {
        let ref_prompt = vocab.tokenize(&prompt, true, true);
        if name == "long" {
            assert!(
                ref_prompt.len() > 600,
                "the long prompt must pass the 512-token window: {} tokens",
                ref_prompt.len()
            );
        }
        ctx.clear();
        let ref_ids = greedy_generate(&mut ctx, &ref_prompt, N_GEN, |id| vocab.is_eog(id))
            .expect("llama.cpp greedy generation");
        let ref_text: Vec<u8> = ref_ids
            .iter()
            .flat_map(|&id| vocab.token_to_piece(id, 0, false))
            .collect();

        // Library API: the same loop the binary runs.
        let our_prompt = tok.encode(&prompt, true, true);
        assert_eq!(
            our_prompt, ref_prompt,
            "{name}: prompt tokenization differs from llama.cpp"
        );
        let mut state = model.new_state(N_CTX).expect("state");
        let mut sampler = Sampler::new(SamplerParams {
            temp: 0.0,
            ..Default::default()
        });
        let mut ids = Vec::new();
        generate(
            &model,
            &mut state,
            &our_prompt,
            &mut sampler,
            |id| tok.is_eog(id),
            N_GEN as i64,
            |id| {
                ids.push(id);
                Ok(true)
            },
        )
        .expect("our generation");
        if ids != ref_ids {
            let at = ids.iter().zip(&ref_ids).take_while(|(a, b)| a == b).count();
            failures.push(format!(
                "{name}: ids differ from token {at}: ours {ids:?}, llama.cpp {ref_ids:?}"
            ));
        }

        // The binary: stdout is exactly the generated text.
        let out = Command::new(env!("CARGO_BIN_EXE_infer"))
            .arg("run")
            .arg(&path)
            .args(["-p", &prompt, "-n", "32", "--temp", "0", "-c", "2048"])
            .output()
            .expect("run infer");
        assert!(
            out.status.success(),
            "{name}: infer run failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if out.stdout != ref_text {
            failures.push(format!(
                "{name}: text differs:\n  ours:      {:?}\n  llama.cpp: {:?}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&ref_text)
            ));
        }
        eprintln!(
            "{name}: {} prompt tokens, {} generated: {:?}",
            ref_prompt.len(),
            ref_ids.len(),
            String::from_utf8_lossy(&ref_text)
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
