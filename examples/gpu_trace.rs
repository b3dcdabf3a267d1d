//! Where does the GPU forward part from the CPU forward? Runs a prompt through both (prefill, then
//! greedy decode steps feeding the CPU's picks to both), captures every layer's intermediate
//! tensors by name, and prints, per step, the first tensor (in graph order) that is not
//! bit-identical, with its largest difference, then the logits' NMSE and largest difference.
//! A development tool for issue #6's parity work; the CPU forward is itself bit-identical to
//! llama.cpp (examples/parity_trace.rs).
//! Usage: cargo run --release --example gpu_trace -- MODEL "PROMPT" [STEPS]
//! ("@long" as PROMPT: the greedy tests' prompt past the 512-token window, first ubatch only.)
use infer::gguf::GgufFile;
use infer::gpu::DeviceChoice;
use infer::model::{Model, ModelOptions};
use infer::tokenizer::Tokenizer;
use std::path::Path;

#[path = "../tests/run_prose/mod.rs"]
mod run_prose;

type Tensors = Vec<(String, usize, Vec<f32>)>;

fn report(cpu: &Tensors, gpu: &Tensors) {
    let mut first = true;
    let mut parted = 0;
    for (name, il, want) in cpu {
        let Some((_, _, got)) = gpu.iter().find(|(n, l, _)| n == name && l == il) else {
            continue;
        };
        if got.len() != want.len() {
            println!("  {name}-{il}: length {} vs {}", got.len(), want.len());
            continue;
        }
        // Signed zeros compare equal: a product rounded to zero keeps whichever sign the
        // order of the sum before it left, and it changes nothing after.
        let diff = got.iter().zip(want).filter(|(a, b)| a != b).count();
        if diff == 0 {
            continue;
        }
        parted += 1;
        if first || parted <= 6 {
            let max = got
                .iter()
                .zip(want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            let i = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(0);
            println!(
                "  {}{name}-{il}: {diff}/{} elements differ, max |diff| {max:e}; first at {i}: gpu {} cpu {}",
                if first { "FIRST " } else { "" },
                want.len(),
                got[i],
                want[i]
            );
            first = false;
        }
    }
    if first {
        println!("  every traced tensor bit-identical");
    }
}

fn logits_diff(got: &[f32], want: &[f32]) {
    let (mut err, mut norm, mut max) = (0.0f64, 0.0f64, 0.0f32);
    for (&g, &w) in got.iter().zip(want) {
        err += (g as f64 - w as f64).powi(2);
        norm += (w as f64).powi(2);
        max = max.max((g - w).abs());
    }
    let same = got
        .iter()
        .zip(want)
        .filter(|(a, b)| a.to_bits() == b.to_bits())
        .count();
    println!(
        "  logits: NMSE {:e}, max |diff| {max:e}, {same}/{} bit-identical",
        err / norm.max(f64::MIN_POSITIVE),
        want.len()
    );
}

fn argmax(l: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in l.iter().enumerate() {
        if v > l[best] {
            best = i;
        }
    }
    best as u32
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: gpu_trace MODEL PROMPT [STEPS]");
        std::process::exit(2);
    }
    let path = Path::new(&args[1]);
    let prompt = &if args[2] == "@long" {
        run_prose::prose(11, 48)
    } else {
        args[2].clone()
    };
    let steps: usize = args.get(3).map_or(4, |s| s.parse().expect("steps"));
    let gguf = GgufFile::open(path).expect("open");
    let tok = Tokenizer::from_gguf(&gguf).expect("tokenizer");
    let mut ids = tok.encode(prompt, true, true);
    ids.truncate(infer::gpu::forward::MAX_BATCH);
    let opts = ModelOptions { n_threads: 2 };
    let cm = Model::load(&gguf, &opts).expect("load");
    let mut gm = Model::load(&gguf, &opts).expect("load");
    gm.use_gpu(DeviceChoice::Gpu(None)).expect("gpu");
    let g = gm.gpu().expect("model on the gpu");
    let n_ctx = ids.len() + steps + 1;
    let mut cs = cm.new_state(n_ctx).expect("state");
    let mut gs = g.new_state(n_ctx).expect("gpu state");
    let mut glog = Vec::new();
    let mut feed = ids.clone();
    println!("{} prompt tokens", ids.len());
    for step in 0..=steps {
        let mut ct: Tensors = Vec::new();
        let want = cm
            .forward_traced(&mut cs, &feed, false, &mut |n, il, x| {
                ct.push((n.to_string(), il, x.to_vec()))
            })
            .expect("cpu forward")
            .to_vec();
        let mut gt: Tensors = Vec::new();
        g.forward_traced(&mut gs, &feed, &mut glog, &mut |n, il, x| {
            gt.push((n.to_string(), il, x.to_vec()))
        })
        .expect("gpu forward");
        println!(
            "step {step} ({}):",
            if step == 0 { "prefill" } else { "decode" }
        );
        report(&ct, &gt);
        logits_diff(&glog, &want);
        let (c, gp) = (argmax(&want), argmax(&glog));
        if c != gp {
            println!("  argmax differs: cpu {c}, gpu {gp}");
        }
        feed = vec![c];
    }
}
