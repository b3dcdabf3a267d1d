//! A q8_0 KV cache (`--cache-type-k q8_0 --cache-type-v q8_0`) against llama.cpp's q8_0 cache on
//! the real Gemma 3 270M: greedy decoding of two prompts, token by token, as llama-completion
//! runs it (prompt in one batch, then one `llama_decode` per token; llama.cpp runs a q8_0 cache
//! only with flash attention, so its side has it on).
//!
//! Both sides store the same q8_0 rows (ggml's reference quantization of the same f32 keys and
//! values), but llama.cpp's flash-attention kernel converts the query to q8_0 too and sums
//! K·q in q8_0 dot products, while ours attends in f32 over the dequantized rows, so the
//! logits cannot be bit-identical. What must hold: the greedy tokens agree step for step
//! (each step is checked on llama.cpp's own token, so one near-tie cannot derail the rest), except
//! where llama.cpp's top two are within a small margin, and the per-step logits stay within the
//! stated NMSE budget. Measured over 2 x 32 steps: 59 agree, the 5 others are near-ties (top-two
//! margin < 0.5), logits NMSE median 1.9e-3, worst 2.1e-2; the bounds below leave ~5x room. So
//! greedy text is NOT identical to llama.cpp's with a q8_0 cache (it is with f16, see
//! tests/run_greedy_vs_llama.rs): matching it would need ggml's flash-attention arithmetic for
//! q8_0 rows (q8_0 query, q8_0 dot products). A q8_0 block read with the wrong scale or from the
//! wrong cell moves the logits by NMSE ~1 and the greedy tokens at once.

mod model_support;

use std::path::Path;

use ggml_ref::eval::{ContextParams, LlamaContext, LlamaModel};
use infer::gguf::GgufFile;
use infer::model::kv_cache::{CacheType, KvOptions};
use infer::model::{Model, ModelOptions};
use infer::tokenizer::Tokenizer;
use model_support::{argmax, compare};

const MODEL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/models/gemma-3-270m-q4_k_m.gguf"
);
const STEPS: usize = 24;
/// Largest per-step logits NMSE against llama.cpp, and the median over steps.
const NMSE_MAX: f64 = 0.1;
const NMSE_MEDIAN: f64 = 0.01;
/// A step whose reference top-two logits are closer than this may pick the other token.
const NEAR_TIE: f32 = 0.5;

#[test]
fn q8_0_cache_decodes_as_llama_cpp_does() {
    let path = Path::new(MODEL);
    if !path.exists() {
        eprintln!("skipping: {MODEL} is absent (scripts/fetch-model.sh fetches it)");
        return;
    }
    let gguf = GgufFile::open(path).expect("open gguf");
    let tok = Tokenizer::from_gguf(&gguf).expect("tokenizer");
    let mut model = Model::load(&gguf, &ModelOptions { n_threads: 2 }).expect("load model");
    model.set_flash_attn(true);
    let lm = LlamaModel::load(path).expect("llama.cpp load");
    let q8 = KvOptions {
        type_k: CacheType::Q8_0,
        type_v: CacheType::Q8_0,
    };
    let prompts = [
        "The history of the printing press begins in",
        "<start_of_turn>user\nWrite a short poem about the sea.<end_of_turn>\n<start_of_turn>model\n",
    ];
    let mut all = Vec::new();
    let (mut agree, mut ties) = (0, 0);
    for text in prompts {
        let prompt = tok.encode(text, true, true);
        let params = ContextParams {
            n_ctx: 512,
            n_batch: 512,
            n_ubatch: 512,
            n_threads: 2,
            flash_attn: true,
            kv_f32: false,
        };
        let mut ctx = LlamaContext::with_q8_0_cache(&lm, params).expect("q8_0 context");
        let mut st = model.new_state_with(512, &q8).expect("state");
        let mut ours = model
            .forward(&mut st, &prompt, false)
            .expect("forward")
            .to_vec();
        ctx.decode(&prompt, false).expect("llama decode");
        let mut theirs_ids = Vec::new();
        let mut ours_ids = Vec::new();
        for step in 0..STEPS {
            let theirs = ctx.logits_ith(-1).expect("logits");
            let d = compare(&ours, &theirs);
            all.push(d.nmse);
            let (a, b) = (argmax(&ours) as u32, argmax(&theirs) as u32);
            if a == b {
                agree += 1;
            } else {
                assert!(
                    d.ref_margin < NEAR_TIE,
                    "{text:?} step {step}: ours {a}, llama.cpp {b} (margin {:.3}, nmse {:.3e})",
                    d.ref_margin,
                    d.nmse
                );
                ties += 1;
            }
            ours_ids.push(a);
            theirs_ids.push(b);
            if tok.is_eog(b) {
                break;
            }
            ours = model
                .forward(&mut st, &[b], false)
                .expect("forward")
                .to_vec();
            ctx.decode(&[b], false).expect("llama decode");
        }
        eprintln!(
            "{text:?}\n  llama.cpp: {:?}\n  ours:      {:?}",
            String::from_utf8_lossy(&tok.detokenize(&theirs_ids, true, false)),
            String::from_utf8_lossy(&tok.detokenize(&ours_ids, true, false)),
        );
    }
    all.sort_by(f64::total_cmp);
    let (median, worst) = (all[all.len() / 2], all[all.len() - 1]);
    eprintln!(
        "q8_0 cache vs llama.cpp's: {agree} greedy steps agree, {ties} near-ties differ; logits nmse median {median:.3e}, worst {worst:.3e}"
    );
    assert!(worst <= NMSE_MAX, "worst nmse {worst:.3e}");
    assert!(median <= NMSE_MEDIAN, "median nmse {median:.3e}");
    assert!(
        agree >= all.len() * 9 / 10,
        "{agree} of {} steps agree",
        all.len()
    );
}
