//! `infer bench MODEL [-p 512] [-n 128] [-d 0] [-t N] [-r REPS] [--parallel N] [--json]
//! [--profile]`: prefill (pp) and decode (tg) speed measured the way llama.cpp's llama-bench
//! measures it, so the two can be put side by side (scripts/bench-vs-llama.sh does).
//! `--parallel N` runs N sequences per test and reports their aggregate rate, decoding them in
//! shared passes as `infer batch --parallel N` does (compare llama-batched-bench's S_TG;
//! scripts/bench-batch.sh does).
//!
//! As llama-bench (tools/llama-bench/llama-bench.cpp): one warm-up run per test (the whole prompt
//! for pp, one token for tg), then `REPS` timed runs, each from an empty KV cache. pp decodes
//! `-p` random tokens (BOS first when the model adds one) in one call that returns the last
//! token's logits only; tg decodes `-n` random tokens one at a time. Rates are the mean and sample
//! standard deviation of per-run tokens/s. `--json` prints llama-bench's JSON printer's fields.
//!
//! Beside t/s the table says how close each test is to its bound: decode reads every weight
//! once per token (the tied output head included), so its bound is memory bandwidth and the table
//! gives GB/s of weights read; prefill reuses each weight across the batch, so its bound is
//! arithmetic and the table gives GFLOP/s of the layer matmuls. `--profile` times a decode
//! step's ops (between the forward pass's trace points) and prints each op's share.

use super::common;
use crate::gguf::GgufFile;
use crate::model::{Batch, Model, Segment, State};
use crate::tokenizer::Tokenizer;
use anyhow::{bail, Result};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The GGUF model file.
    pub model: PathBuf,
    /// Prompt tokens of the prefill test (pp); 0 skips it.
    #[arg(short = 'p', long = "n-prompt", default_value_t = 512)]
    pub n_prompt: usize,
    /// Generated tokens of the decode test (tg); 0 skips it.
    #[arg(short = 'n', long = "n-gen", default_value_t = 128)]
    pub n_gen: usize,
    /// Compute threads [default: the number of physical cores].
    #[arg(short = 't', long)]
    pub threads: Option<usize>,
    /// Timed repetitions of each test.
    #[arg(short = 'r', long, default_value_t = 5)]
    pub reps: usize,
    /// Print a JSON array, one object per test, with llama-bench's field names.
    #[arg(long)]
    pub json: bool,
    /// Also time each op of `-n` decode steps and print the share of a step each takes.
    #[arg(long)]
    pub profile: bool,
    /// Where to run the model: cpu, gpu, gpu:N (see `infer devices`) or auto.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Seed of the random prompt and decode tokens.
    #[arg(long, default_value_t = 1234)]
    pub seed: u64,
    /// Sequences per test: tg decodes N sequences together (one row each per step, as `infer
    /// batch --parallel N` does) and reports their aggregate tokens/s; pp evaluates N prompts,
    /// one after the other.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub parallel: usize,
    /// Tokens already in each sequence's cache before a test (untimed), as llama-bench's -d.
    #[arg(short = 'd', long = "n-depth", default_value_t = 0)]
    pub n_depth: usize,
}

/// What the model costs per token, from its tensor table.
struct ModelCost {
    /// Bytes of every tensor (llama-bench's `model_size`).
    size: u64,
    /// Elements of every tensor (llama-bench's `model_n_params`).
    n_params: u64,
    /// Weight bytes one decode step reads: every tensor except the embedding table, of which it
    /// reads one row, unless the table is also the output head (tied), which reads all of it.
    decode_bytes: u64,
    /// Floating-point operations per prompt token in the layers' matrix products (2 per weight);
    /// the output head runs once per batch in pp and is left out.
    prefill_flops: u64,
}

fn model_cost(file: &GgufFile) -> ModelCost {
    let tensors = file.tensors();
    let size = tensors.iter().map(|t| t.n_bytes).sum();
    let n_params = tensors.iter().map(|t| t.n_elements).sum();
    let tied = file.tensor("output.weight").is_none();
    let decode_bytes = tensors
        .iter()
        .filter(|t| tied || t.name != "token_embd.weight")
        .map(|t| t.n_bytes)
        .sum();
    let prefill_flops = tensors
        .iter()
        .filter(|t| t.name.starts_with("blk.") && t.dims.len() >= 2)
        .map(|t| 2 * t.n_elements)
        .sum();
    ModelCost {
        size,
        n_params,
        decode_bytes,
        prefill_flops,
    }
}

/// llama.cpp's `llama_model_ftype_name` strings for the `general.file_type` values it writes.
fn ftype_name(ft: u32) -> &'static str {
    match ft {
        0 => "all F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K - Medium",
        11 => "Q3_K - Small",
        12 => "Q3_K - Medium",
        13 => "Q3_K - Large",
        14 => "Q4_K - Small",
        15 => "Q4_K - Medium",
        16 => "Q5_K - Small",
        17 => "Q5_K - Medium",
        18 => "Q6_K",
        32 => "BF16",
        _ => "unknown type",
    }
}

/// `model_type` as llama-bench prints it (`llama_model_desc`): architecture, size, file type.
fn model_desc(file: &GgufFile, n_params: u64) -> Result<String> {
    let md = file.metadata();
    let arch = md.arch()?;
    let size = match md.get_str("general.size_label")? {
        Some(s) => s.to_string(),
        None if n_params >= 1_000_000_000 => format!("{:.1}B", n_params as f64 / 1e9),
        None => format!("{}M", n_params / 1_000_000),
    };
    let ft = md
        .get_u32("general.file_type")?
        .map_or("unknown type", ftype_name);
    Ok(format!("{arch} {size} {ft}"))
}

/// Physical cores (distinct (package, core id) pairs in /proc/cpuinfo); logical CPUs when that
/// cannot be read, as on non-Linux systems.
pub fn physical_cores() -> usize {
    let logical = std::thread::available_parallelism().map_or(1, |n| n.get());
    let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") else {
        return logical;
    };
    let mut cores = std::collections::BTreeSet::new();
    let mut package = String::new();
    for line in info.lines() {
        let mut kv = line.splitn(2, ':').map(str::trim);
        match (kv.next(), kv.next()) {
            (Some("physical id"), Some(v)) => package = v.to_string(),
            (Some("core id"), Some(v)) => {
                cores.insert((package.clone(), v.to_string()));
            }
            _ => {}
        }
    }
    if cores.is_empty() {
        logical
    } else {
        cores.len().min(logical)
    }
}

fn cpu_info() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default()
}

/// A small seeded generator for the random token ids (llama-bench uses `std::rand() % n_vocab`).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as u32
    }
}

/// One test's timings.
struct TestResult {
    name: String,
    n_prompt: usize,
    n_gen: usize,
    n_depth: usize,
    /// Sequences run per sample; the rate counts the tokens of all of them.
    n_parallel: usize,
    samples_ns: Vec<u64>,
    test_time: String,
}

/// llama-bench's test name (`tg128`, `pp512 @ d64`), with ` x8` for eight sequences.
fn test_name(kind: &str, n: usize, depth: usize, n_parallel: usize) -> String {
    let mut name = format!("{kind}{n}");
    if depth > 0 {
        name.push_str(&format!(" @ d{depth}"));
    }
    if n_parallel > 1 {
        name.push_str(&format!(" x{n_parallel}"));
    }
    name
}

impl TestResult {
    fn n_tokens(&self) -> usize {
        self.n_parallel * (self.n_prompt + self.n_gen)
    }

    fn samples_ts(&self) -> Vec<f64> {
        self.samples_ns
            .iter()
            .map(|&ns| 1e9 * self.n_tokens() as f64 / ns as f64)
            .collect()
    }
}

/// Mean and sample standard deviation (n - 1), 0 for a single sample, as llama-bench's `stdev`.
fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    if v.is_empty() {
        return (0.0, 0.0);
    }
    let mean = v.iter().sum::<f64>() / n;
    if v.len() < 2 {
        return (mean, 0.0);
    }
    let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// Seconds since the epoch as ISO 8601 UTC (llama-bench's `test_time`), without a date crate:
/// Howard Hinnant's days-to-civil conversion.
fn iso8601(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

fn now_iso() -> String {
    iso8601(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    )
}

pub fn run(args: Args) -> Result<()> {
    if args.reps == 0 {
        bail!("-r/--reps must be at least 1");
    }
    if args.n_prompt == 0 && args.n_gen == 0 {
        bail!("nothing to measure: -p and -n are both 0");
    }
    let threads = args.threads.unwrap_or_else(physical_cores);
    let file = common::open_model(&args.model)?;
    let tok = Tokenizer::from_gguf(&file)?;
    let mut model = common::load_model(&file, Some(threads))?;
    if let Some(g) = common::use_device(&mut model, &args.device)? {
        if args.profile {
            bail!("--profile times the CPU forward pass's ops; it does not apply to --device gpu");
        }
        eprintln!("device: {g}");
    }
    if args.parallel == 0 {
        bail!("--parallel must be at least 1");
    }
    if args.parallel > 1 && model.gpu().is_some() {
        bail!("--parallel runs several sequences in one pass on the CPU only (--device cpu)");
    }
    let n_vocab = model.hparams().n_vocab;
    let bos = tok.bos().filter(|_| tok.add_bos());
    let cost = model_cost(&file);
    let desc = model_desc(&file, cost.n_params)?;
    let n_par = args.parallel;
    let n_ctx = args.n_depth + args.n_prompt.max(args.n_gen + 1).max(1);
    let mut states = (0..n_par)
        .map(|_| model.new_state(n_ctx))
        .collect::<Result<Vec<_>, _>>()?;
    let mut rng = Lcg(args.seed);
    let random = |rng: &mut Lcg, n: usize, bos_first: bool| -> Vec<u32> {
        (0..n)
            .map(|i| match bos {
                Some(b) if i == 0 && bos_first => b,
                _ => rng.below(n_vocab),
            })
            .collect()
    };
    // Every sequence starts from an empty cache, filled to the depth untimed (BOS first).
    let depth = |states: &mut [State], rng: &mut Lcg| -> Result<()> {
        for st in states.iter_mut() {
            st.truncate(0);
            if args.n_depth > 0 {
                model.forward(st, &random(rng, args.n_depth, true), false)?;
            }
        }
        Ok(())
    };

    let mut results = Vec::new();
    if args.n_prompt > 0 {
        let bos_first = args.n_depth == 0;
        depth(&mut states, &mut rng)?;
        let warm = random(&mut rng, args.n_prompt, bos_first);
        model.forward(&mut states[0], &warm, false)?;
        let test_time = now_iso();
        let mut samples_ns = Vec::new();
        for _ in 0..args.reps {
            depth(&mut states, &mut rng)?;
            let prompts: Vec<_> = (0..n_par)
                .map(|_| random(&mut rng, args.n_prompt, bos_first))
                .collect();
            let t0 = Instant::now();
            for (st, tokens) in states.iter_mut().zip(&prompts) {
                model.forward(st, tokens, false)?;
            }
            samples_ns.push(t0.elapsed().as_nanos() as u64);
        }
        results.push(TestResult {
            name: test_name("pp", args.n_prompt, args.n_depth, n_par),
            n_prompt: args.n_prompt,
            n_gen: 0,
            n_depth: args.n_depth,
            n_parallel: n_par,
            samples_ns,
            test_time,
        });
    }
    if args.n_gen > 0 {
        let first = if args.n_depth == 0 {
            bos.unwrap_or_else(|| rng.below(n_vocab))
        } else {
            rng.below(n_vocab)
        };
        let mut batch = Batch::new();
        // One step of every sequence: a single sequence runs its own forward pass (plain
        // decoding), several share one pass, as `infer batch` runs them.
        let mut step = |states: &mut [State], toks: &[[u32; 1]]| -> Result<()> {
            if let [st] = states {
                model.forward(st, &toks[0], false)?;
            } else {
                let mut segs: Vec<Segment> = states
                    .iter_mut()
                    .zip(toks)
                    .map(|(state, tokens)| Segment { state, tokens })
                    .collect();
                model.forward_segments(&mut batch, &mut segs)?;
            }
            Ok(())
        };
        depth(&mut states, &mut rng)?;
        step(&mut states, &vec![[first]; n_par])?;
        let test_time = now_iso();
        let mut samples_ns = Vec::new();
        for _ in 0..args.reps {
            depth(&mut states, &mut rng)?;
            let mut toks = vec![[first]; n_par];
            let t0 = Instant::now();
            for _ in 0..args.n_gen {
                step(&mut states, &toks)?;
                for t in &mut toks {
                    *t = [rng.below(n_vocab)];
                }
            }
            samples_ns.push(t0.elapsed().as_nanos() as u64);
        }
        results.push(TestResult {
            name: test_name("tg", args.n_gen, args.n_depth, n_par),
            n_prompt: 0,
            n_gen: args.n_gen,
            n_depth: args.n_depth,
            n_parallel: n_par,
            samples_ns,
            test_time,
        });
    }

    if args.json {
        let objs: Vec<Value> = results
            .iter()
            .map(|r| json_object(r, &file, &desc, &cost, threads))
            .collect();
        println!("{}", serde_json::to_string_pretty(&Value::Array(objs))?);
    } else {
        print_table(&results, &desc, &cost, threads);
    }

    if args.profile {
        let n = args.n_gen.max(1);
        let prof = profile_decode(&model, n, n_vocab, bos, &mut rng)?;
        eprint!("{}", prof.render(n));
    }
    Ok(())
}

fn json_object(
    r: &TestResult,
    file: &GgufFile,
    desc: &str,
    cost: &ModelCost,
    threads: usize,
) -> Value {
    let ts = r.samples_ts();
    let ns: Vec<f64> = r.samples_ns.iter().map(|&v| v as f64).collect();
    let (avg_ns, sd_ns) = mean_sd(&ns);
    let (avg_ts, sd_ts) = mean_sd(&ts);
    json!({
        "build_commit": concat!("infer-", env!("CARGO_PKG_VERSION")),
        "build_number": 0,
        "cpu_info": cpu_info(),
        "gpu_info": "",
        "backends": "CPU",
        "model_filename": file.path().display().to_string(),
        "model_type": desc,
        "model_size": cost.size,
        "model_n_params": cost.n_params,
        "n_batch": 512,
        "n_ubatch": 512,
        "n_threads": threads,
        "cpu_mask": "0x0",
        "cpu_strict": false,
        "poll": 0,
        "type_k": "f16",
        "type_v": "f16",
        "n_gpu_layers": 0,
        "n_cpu_moe": 0,
        "split_mode": "layer",
        "main_gpu": 0,
        "no_kv_offload": false,
        "flash_attn": 0,
        "devices": "auto",
        "tensor_split": "0.00",
        "tensor_buft_overrides": "none",
        "embeddings": false,
        "no_op_offload": 0,
        "n_prompt": r.n_prompt,
        "n_gen": r.n_gen,
        "n_depth": r.n_depth,
        // Not a llama-bench field (readers of its JSON ignore it): the sequences whose tokens
        // the rates count, as llama-batched-bench's `pl`.
        "n_parallel": r.n_parallel,
        "test_time": r.test_time,
        "avg_ns": avg_ns.round() as u64,
        "stddev_ns": sd_ns.round() as u64,
        "avg_ts": avg_ts,
        "stddev_ts": sd_ts,
        "samples_ns": r.samples_ns,
        "samples_ts": ts,
    })
}

fn print_table(results: &[TestResult], desc: &str, cost: &ModelCost, threads: usize) {
    println!(
        "| {:<30} | {:>10} | {:>10} | {:>7} | {:>15} | {:>20} | {:>24} |",
        "model", "size", "params", "threads", "test", "t/s", "bound"
    );
    println!(
        "| {:-<30} | {:->10} | {:->10} | {:->7} | {:->15} | {:->20} | {:->24} |",
        "", "", "", "", "", "", ""
    );
    for r in results {
        let (ts, sd) = mean_sd(&r.samples_ts());
        let bound = if r.n_gen > 0 {
            // Every decode step streams the weights once, for all its sequences.
            let steps = ts / r.n_parallel as f64;
            format!("memory {:.1} GB/s", steps * cost.decode_bytes as f64 / 1e9)
        } else {
            format!(
                "compute {:.1} GFLOP/s",
                ts * cost.prefill_flops as f64 / 1e9
            )
        };
        println!(
            "| {:<30} | {:>6.2} MiB | {:>8.2} M | {:>7} | {:>15} | {:>20} | {:>24} |",
            desc,
            cost.size as f64 / (1024.0 * 1024.0),
            cost.n_params as f64 / 1e6,
            threads,
            r.name,
            format!("{ts:.2} ± {sd:.2}"),
            bound
        );
    }
    println!(
        "decode reads {:.1} MB of weights per token; prefill does {:.2} GFLOP per token in the layer matmuls",
        cost.decode_bytes as f64 / 1e6,
        cost.prefill_flops as f64 / 1e9
    );
}

/// Time spent between the forward pass's trace points, by what ran in between.
struct Profile {
    by_op: BTreeMap<&'static str, f64>,
    total: f64,
}

/// What the forward pass computes before it reports each trace point (see `model::forward`).
fn op_before(point: &str) -> &'static str {
    match point {
        "attn_norm" => "embed + attn rms_norm",
        "Qcur_normed" | "Kcur_normed" | "Vcur" => "q/k/v matmul + q/k norm",
        "Qcur" | "Kcur" => "rope",
        "kqv_out" => "kv append + attention",
        "attn_out" => "attn output matmul",
        "attn_post_norm" | "ffn_post_norm" | "ffn_norm" | "result_norm" => "rms_norm",
        "sa_out" | "ffn_inp" | "l_out" => "residual add",
        "ffn_geglu" | "ffn_swiglu" => "ffn gate/up matmul + act",
        "ffn_out" => "ffn down matmul",
        _ => "other",
    }
}

impl Profile {
    fn render(&self, n: usize) -> String {
        let mut rows: Vec<_> = self.by_op.iter().collect();
        rows.sort_by(|a, b| b.1.total_cmp(a.1));
        let mut s = format!(
            "decode profile: {n} steps, {:.3} ms per step\n",
            1e3 * self.total / n as f64
        );
        for (op, t) in rows {
            s.push_str(&format!(
                "  {:<28} {:>8.3} ms/step {:>6.1}%\n",
                op,
                1e3 * t / n as f64,
                100.0 * t / self.total
            ));
        }
        s
    }
}

fn profile_decode(
    model: &Model<'_>,
    n: usize,
    n_vocab: usize,
    bos: Option<u32>,
    rng: &mut Lcg,
) -> Result<Profile> {
    let mut st = model.new_state(n + 1)?;
    let mut by_op: BTreeMap<&'static str, f64> = BTreeMap::new();
    let mut total = 0.0;
    let mut t = bos.unwrap_or_else(|| rng.below(n_vocab));
    for _ in 0..n {
        let start = Instant::now();
        let mut last = start;
        {
            let mut trace = |name: &str, _layer: usize, _rows: &[f32]| {
                let now = Instant::now();
                *by_op.entry(op_before(name)).or_default() += (now - last).as_secs_f64();
                last = now;
            };
            model.forward_traced(&mut st, &[t], false, &mut trace)?;
        }
        let end = Instant::now();
        // After the last trace point (result_norm) only the output head and soft-cap run.
        *by_op.entry("output head matmul").or_default() += (end - last).as_secs_f64();
        total += (end - start).as_secs_f64();
        t = rng.below(n_vocab);
    }
    Ok(Profile { by_op, total })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_matches_known_dates() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        // 2000-02-29 (a leap day of a century leap year) 12:34:56 UTC
        assert_eq!(iso8601(951_827_696), "2000-02-29T12:34:56Z");
        assert_eq!(iso8601(1_798_761_599), "2026-12-31T23:59:59Z");
    }

    #[test]
    fn stddev_is_the_sample_standard_deviation() {
        let (m, sd) = mean_sd(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
        assert_eq!(m, 5.0);
        // population sd is 2; the sample (n - 1) sd is sqrt(32 / 7)
        assert!((sd - (32.0f64 / 7.0).sqrt()).abs() < 1e-12);
        assert_eq!(mean_sd(&[3.0]), (3.0, 0.0));
    }
}
