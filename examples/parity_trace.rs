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

#[path = "../tests/run_prose/mod.rs"]
mod run_prose;

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
    "ffn_geglu",
    "ffn_out",
    "ffn_post_norm",
    "l_out",
];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = Path::new(&args[1]);
    // "@long": the greedy test's prompt past the 512-token window.
    let prompt = &if args[2] == "@long" {
        run_prose::prose(11, 48)
    } else {
        args[2].clone()
    };
    let steps: usize = args.get(3).map_or(8, |s| s.parse().expect("steps"));
    let gguf = GgufFile::open(path).expect("open");
    let tok = Tokenizer::from_gguf(&gguf).expect("tokenizer");
    let mut ids = tok.encode(prompt, true, true);
    // MAX_PROMPT=N keeps the first N prompt tokens (to look at one ubatch of a long prompt).
    if let Some(n) = std::env::var("MAX_PROMPT")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        ids.truncate(n);
    }
    let model = Model::load(&gguf, &ModelOptions { n_threads: 2 }).expect("load");
    let n_layer = model.hparams().n_layer;
    let mut names: Vec<String> = Vec::new();
    for il in 0..n_layer {
        for n in NAMES {
            names.push(format!("{n}-{il}"));
        }
    }
    names.push("result_norm".into());
    // Attention internals of one layer, for locating a parting inside attention.
    let probe: Option<usize> = std::env::var("PROBE_LAYER")
        .ok()
        .and_then(|v| v.parse().ok());
    if let Some(il) = probe {
        names.push(format!("kq-{il}"));
        names.push(format!("kq_soft_max-{il}"));
    }
    let name_refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    // FA=1: llama.cpp with flash attention (llama-completion's default on CPUs) and ours alike.
    let fa = std::env::var_os("FA").is_some();
    let lm = LlamaModel::load(path).expect("llama model");
    let p = ContextParams {
        n_ctx: 2048,
        n_batch: 2048,
        n_ubatch: 512,
        n_threads: 2,
        flash_attn: fa,
        kv_f32: false,
    };
    let mut ctx = LlamaContext::with_capture(&lm, p, &name_refs).expect("ctx");
    let mut st = model.new_state(2048).expect("state");
    st.set_flash_attn(fa);
    let mut feed = ids.clone();
    // llama.cpp's own K rows of the probed layer, one per position, for recomputing its kq.
    let mut ref_k: Vec<Vec<f32>> = Vec::new();
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
        if let Some(il) = probe {
            let last = |n: &str| {
                theirs
                    .iter()
                    .rev()
                    .find(|(m, _)| m == n)
                    .map(|(_, d)| d.clone())
            };
            if let (Some(k), Some(q), Some(kq)) = (
                last(&format!("Kcur-{il}")),
                last(&format!("Qcur-{il}")),
                last(&format!("kq-{il}")),
            ) {
                for row in k.chunks(256) {
                    ref_k.push(
                        row.iter()
                            .map(|&x| half::f16::from_f32(x).to_f32())
                            .collect(),
                    );
                }
                if feed.len() == 1 {
                    let r = |x: &f32| half::f16::from_f32(*x).to_f32();
                    for h in 0..4 {
                        let qh: Vec<f32> = q[h * 256..(h + 1) * 256].iter().map(r).collect();
                        let mut bad = 0;
                        for (c, kr) in ref_k.iter().enumerate() {
                            let mine = infer::cpu::ggml_order::vec_dot_f16_order(kr, &qh) * 0.0625;
                            let theirs_v = kq[h * 256 + c];
                            if mine.to_bits() != theirs_v.to_bits() {
                                bad += 1;
                                if bad < 3 {
                                    println!(
                                        "  kq head {h} cell {c}: ours {mine} theirs {theirs_v}"
                                    );
                                }
                            }
                        }
                        if bad > 0 {
                            println!("  kq head {h}: {bad} cells differ");
                        }
                    }
                }
            }
            for n in [format!("kq-{il}"), format!("kq_soft_max-{il}")] {
                if let Some((_, t)) = theirs.iter().rev().find(|(m, _)| *m == n) {
                    let nz: Vec<(usize, f32)> = t
                        .iter()
                        .copied()
                        .enumerate()
                        .filter(|(_, v)| v.is_finite() && *v != 0.0)
                        .take(40)
                        .collect();
                    println!("  {n} ({} values): {:?}", t.len(), nz);
                }
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
