//! Where do we part from llama.cpp? Runs a prompt through both (prefill, then greedy decode steps
//! feeding llama.cpp's picks to both), captures every layer's intermediate tensors, and prints,
//! per step, the first tensor (in graph order) whose values are not bit-identical, with its
//! largest difference. A development tool for issue #3's exactness work.
//! Usage: cargo run --release --example parity_trace -- MODEL "PROMPT" [STEPS]
use ggml_ref::eval::{ContextParams, LlamaContext, LlamaModel};
use infer::gguf::GgufFile;
use infer::model::{Model, ModelOptions};
use infer::tokenizer::Tokenizer;
use std::path::Path;

const NAMES: &[&str] = &[
    "attn_norm",
    "Qcur_normed",
    "Kcur_normed",
    "Vcur",
    "Qcur",
    "Kcur",
    "kqv_out",
    "attn_post_norm",
    "ffn_norm",
    "ffn_out",
    "ffn_post_norm",
    "l_out",
];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = Path::new(&args[1]);
    let prompt = &args[2];
    let steps: usize = args.get(3).map_or(8, |s| s.parse().expect("steps"));
    let gguf = GgufFile::open(path).expect("open");
    let tok = Tokenizer::from_gguf(&gguf).expect("tokenizer");
    let ids = tok.encode(prompt, true, true);
    let model = Model::load(&gguf, &ModelOptions { n_threads: 2 }).expect("load");
    let n_layer = model.hparams().n_layer;
    let mut names: Vec<String> = Vec::new();
    for il in 0..n_layer {
        for n in NAMES {
            names.push(format!("{n}-{il}"));
        }
    }
    names.push("result_norm".into());
    let name_refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    let lm = LlamaModel::load(path).expect("llama model");
    let p = ContextParams {
        n_ctx: 2048,
        n_batch: 512,
        n_threads: 2,
        flash_attn: false,
        kv_f32: false,
    };
    let mut ctx = LlamaContext::with_capture(&lm, p, &name_refs).expect("ctx");
    let mut st = model.new_state(2048).expect("state");
    let mut feed = ids.clone();
    for step in 0..=steps {
        let mut ours: Vec<(String, Vec<f32>)> = Vec::new();
        let mut keep = |name: &str, il: usize, d: &[f32]| {
            let n = if name == "result_norm" {
                name.to_string()
            } else {
                format!("{name}-{il}")
            };
            ours.push((n, d.to_vec()));
        };
        let logits = model
            .forward_traced(&mut st, &feed, false, &mut keep)
            .expect("forward")
            .to_vec();
        ctx.decode(&feed, false).expect("decode");
        let theirs = ctx.take_captured();
        let ref_logits = ctx.logits_ith(-1).expect("logits");
        let mut first = None;
        let mut seen: Vec<&str> = Vec::new();
        for (name, _) in &theirs {
            if seen.contains(&name.as_str()) {
                continue;
            }
            seen.push(name);
            // llama.cpp names several tensors alike (e.g. Qcur before and after RoPE): the last
            // is the finished one, and ours traces a name once, also when finished.
            let t = &theirs
                .iter()
                .rev()
                .find(|(n, _)| n == name)
                .expect("present")
                .1;
            let Some((_, o)) = ours.iter().rev().find(|(n, _)| n == name) else {
                continue;
            };
            if o.len() != t.len() {
                println!("step {step}: {name}: length {} vs {}", o.len(), t.len());
                continue;
            }
            let (mut maxd, mut nd) = (0.0f32, 0);
            for (a, b) in o.iter().zip(t) {
                if a.to_bits() != b.to_bits() {
                    nd += 1;
                    maxd = maxd.max((a - b).abs());
                }
            }
            if nd > 0 && first.is_none() {
                first = Some(format!("{name}: {nd}/{} differ, max |d| {maxd:e}", o.len()));
            }
        }
        let lmax = logits
            .iter()
            .zip(&ref_logits)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        let pick = ref_logits
            .iter()
            .enumerate()
            .fold((0, f32::MIN), |m, (i, &v)| if v > m.1 { (i, v) } else { m })
            .0 as u32;
        println!(
            "step {step} ({} tok): first diff {}; logits max |d| {lmax:e}",
            feed.len(),
            first.unwrap_or_else(|| "none".into())
        );
        feed = vec![pick];
    }
}
