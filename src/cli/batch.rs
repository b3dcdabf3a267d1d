//! `infer batch [MODEL]`: many prompts, one model load. Reads stdin, one prompt per line: plain
//! text, or a JSON object with `prompt` and optional `id`, `n_predict`, `temp` and `seed`.
//! Writes one JSON object per prompt to stdout, in input order (a finished record waits for the
//! ones before it) or, with `--unordered`, as each finishes. A line that cannot be read or run
//! gets an error record and the job goes on; the exit code is 1 when any line failed.
//!
//! Up to `--parallel` prompts run at once through `engine::batch` (continuous batching). Every
//! prompt is evaluated from an empty cache as `infer run` evaluates it, and decoded in rows that
//! round as if decoded alone, so each completion equals `infer run`'s for the same settings and
//! does not depend on `--parallel` or on the other prompts.

use super::chat::{seed_or_random, SamplingArgs};
use super::common;
use crate::chat::{ChatTemplate, Message, Role};
use crate::engine::batch::{Completion, Request, Scheduler};
use crate::engine::{per_second, GenOptions};
use crate::ui::{self, progress};
use anyhow::{bail, Context, Result};
use indicatif::ProgressBar;
use serde::Deserialize;
use serde_json::{json, Value};
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Instant;

const EXAMPLES: &str = "Examples:
  printf 'The capital of France is\\nOnce upon a time\\n' | infer batch -n 16
  infer batch model.gguf --temp 0 < prompts.txt > results.jsonl
  echo '{\"id\": \"q1\", \"prompt\": \"2+2=\", \"n_predict\": 4, \"temp\": 0}' | infer batch
  infer batch --chat --system 'Answer briefly.' < questions.txt

Each output line is a JSON object: id, completion, tokens_prompt, tokens_cached,
tokens_generated, end (eog|limit|stop|context), prompt_ms, generation_ms, tokens_per_second;
or id, line and error for a line that failed.";

#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// The GGUF model file [default: $INFER_MODEL, else models/gemma-3-270m-q4_k_m.gguf].
    pub model: Option<PathBuf>,
    /// Tokens to generate per prompt (a line's `n_predict` overrides); -1 = until end of
    /// generation or the context is full.
    #[arg(short = 'n', long = "n-predict", default_value_t = -1, allow_negative_numbers = true)]
    pub n_predict: i64,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Context size in tokens [default: 4096, or the model's training context if smaller].
    #[arg(short = 'c', long = "ctx-size")]
    pub ctx_size: Option<usize>,
    /// Compute threads [default: one per available core].
    #[arg(short = 't', long)]
    pub threads: Option<usize>,
    /// Stop a completion when it contains this string (not included); may be repeated.
    #[arg(long = "stop")]
    pub stop: Vec<String>,
    /// Every line is a prompt, even one that starts with `{`.
    #[arg(long)]
    pub plain: bool,
    /// Send each prompt as a user message through the model's chat template.
    #[arg(long)]
    pub chat: bool,
    /// With --chat: a system message before each prompt.
    #[arg(long, requires = "chat")]
    pub system: Option<String>,
    /// With --chat: the chat format (a built-in name or a Jinja file).
    #[arg(long = "chat-template", value_name = "NAME|FILE", requires = "chat")]
    pub chat_template: Option<String>,
    /// Treat special-token spellings in prompts (e.g. `<start_of_turn>`) as plain text.
    #[arg(long = "no-parse-special")]
    pub no_parse_special: bool,
    /// Sequences decoded together (continuous batching: a finished one's slot takes the next
    /// prompt). Each has its own KV cache of -c positions. Results do not depend on N.
    #[arg(long, default_value_t = DEFAULT_PARALLEL, value_name = "N")]
    pub parallel: usize,
    /// Print each record as soon as its prompt finishes, not in input order.
    #[arg(long)]
    pub unordered: bool,
    /// Also print the KV cache size of all slots.
    #[arg(short = 'v', long)]
    pub verbose: bool,
}

/// `--parallel` by default. On a CPU, decoding one sequence is bound by reading every weight
/// for one token; eight rows per read share that cost eight ways while the products stay cheap
/// next to it (beyond ~8, the 262144-row output head of models like Gemma 3 makes each step
/// compute-bound and longer for every sequence). Eight caches at -c 4096 of Gemma 3 270M take
/// about 220 MiB.
const DEFAULT_PARALLEL: usize = 8;

/// A JSON Lines input record. Unknown fields are refused, so a misspelt option is an error
/// rather than silently ignored.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Line {
    prompt: String,
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    n_predict: Option<i64>,
    #[serde(default)]
    temp: Option<f32>,
    #[serde(default)]
    seed: Option<i64>,
}

/// One job: the line number (1-based) and what it asked for, or why it could not be read.
struct Job {
    line_no: usize,
    parsed: std::result::Result<Line, (Option<Value>, String)>,
}

fn parse_line(line_no: usize, text: &str, plain: bool) -> Job {
    let t = text.trim_end_matches(['\r', '\n']);
    let parsed = if !plain && t.trim_start().starts_with('{') {
        match serde_json::from_str::<Line>(t) {
            Ok(l) => Ok(l),
            Err(e) => {
                // Keep the id of a record that is valid JSON but wrong in its fields.
                let id = serde_json::from_str::<Value>(t)
                    .ok()
                    .and_then(|v| v.get("id").cloned());
                Err((id, format!("invalid JSON line: {e}")))
            }
        }
    } else {
        Ok(Line {
            prompt: t.to_string(),
            id: None,
            n_predict: None,
            temp: None,
            seed: None,
        })
    };
    Job { line_no, parsed }
}

pub fn run(args: Args) -> Result<()> {
    if args.parallel == 0 {
        bail!("--parallel must be at least 1");
    }
    let path = common::resolve_model(args.model.as_deref())?;
    let mut jobs = Vec::new();
    for (i, line) in std::io::stdin().lock().lines().enumerate() {
        let line = line.with_context(|| format!("cannot read line {} of stdin", i + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        jobs.push(parse_line(i + 1, &line, args.plain));
    }

    let loading = progress::spinner(&format!("loading {}", path.display()));
    let gguf = common::open_model(&path)?;
    let tok = common::load_tokenizer(&gguf)?;
    let model = common::load_model(&gguf, args.threads)?;
    let template = if args.chat {
        Some(ChatTemplate::for_model(
            &gguf,
            &tok,
            args.chat_template.as_deref(),
        )?)
    } else {
        None
    };
    loading.finish_and_clear();
    let n_ctx = common::context_size(args.ctx_size, model.hparams().n_ctx_train)?;
    // No more slots than prompts: each slot's cache is allocated up front.
    let n_parallel = args.parallel.min(jobs.len().max(1));
    let mut sched = Scheduler::new(&model, &tok, n_ctx, n_parallel)?;
    if args.verbose {
        let bytes = sched.cache_bytes();
        eprintln!(
            "kv cache: {n_parallel} slots x {n_ctx} positions (-c) = {:.1} MiB ({bytes} bytes)",
            bytes as f64 / (1024.0 * 1024.0)
        );
    }
    let interrupt = ui::interrupt::watch_ctrl_c();

    let t0 = Instant::now();
    let bar = progress::bar(jobs.len() as u64, "prompts");
    let mut out = Output {
        records: jobs.iter().map(|_| None).collect(),
        next: 0,
        unordered: args.unordered,
        failed: 0,
        stdout: std::io::stdout().lock(),
        bar: &bar,
    };
    let mut ids = Vec::with_capacity(jobs.len());
    let mut warned = false;
    for (index, job) in jobs.iter().enumerate() {
        let default_id = json!(job.line_no);
        let l = match &job.parsed {
            Err((id, why)) => {
                let id = id.clone().unwrap_or(default_id);
                ids.push(id.clone());
                out.put(index, Err((id, why.clone())), job.line_no)?;
                continue;
            }
            Ok(l) => l,
        };
        ids.push(l.id.clone().unwrap_or(default_id));
        let tokens = match &template {
            Some(t) => {
                let mut msgs = Vec::new();
                if let Some(s) = &args.system {
                    msgs.push(Message::new(Role::System, s.clone()));
                }
                msgs.push(Message::new(Role::User, l.prompt.clone()));
                let (tokens, warning) = t.tokens(&tok, &msgs, true);
                if let (Some(w), false) = (warning, warned) {
                    ui::warn(&w);
                    warned = true;
                }
                tokens
            }
            None => tok.encode(&l.prompt, true, !args.no_parse_special),
        };
        sched.submit(index, request(&args, l, tokens));
    }
    while !sched.is_idle() {
        // Sequences cut short by Ctrl-C get no record: the output holds only finished ones.
        if interrupt.load(Ordering::Relaxed) {
            break;
        }
        for (index, result) in sched.step()? {
            let id = ids[index].clone();
            let record = result
                .map(|c| with_id(id.clone(), record(&c)))
                .map_err(|e| (id, e.to_string()));
            out.put(index, record, jobs[index].line_no)?;
        }
    }
    bar.finish_and_clear();
    let failed = out.failed;
    drop(out);
    if interrupt.load(Ordering::Relaxed) {
        return Err(ui::interrupt::Interrupted.into());
    }
    let st = sched.stats();
    ui::note(&format!(
        "{} prompts in {:.2} s, model loaded once ({} failed); --parallel {}: decode {} tokens \
         in {:.2} s = {:.2} t/s aggregate ({} steps, up to {} sequences each), prompts {} tokens \
         in {:.2} s = {:.2} t/s",
        jobs.len(),
        t0.elapsed().as_secs_f64(),
        failed,
        n_parallel,
        st.n_decoded,
        st.t_decode.as_secs_f64(),
        per_second(st.n_decoded, st.t_decode),
        st.n_steps,
        st.max_rows,
        st.n_prompt,
        st.t_prompt.as_secs_f64(),
        per_second(st.n_prompt, st.t_prompt),
    ));
    if failed > 0 {
        bail!(
            "{failed} of {} prompts failed (see their error records)",
            jobs.len()
        );
    }
    Ok(())
}

/// Where records go: straight to stdout with `--unordered`, else held until every earlier
/// line's record is out.
struct Output<'b> {
    records: Vec<Option<Value>>,
    /// The first line whose record has not been printed (input order).
    next: usize,
    unordered: bool,
    failed: usize,
    stdout: std::io::StdoutLock<'static>,
    bar: &'b ProgressBar,
}

impl Output<'_> {
    fn put(
        &mut self,
        index: usize,
        record: std::result::Result<Value, (Value, String)>,
        line_no: usize,
    ) -> Result<()> {
        let value = match record {
            Ok(v) => v,
            Err((id, why)) => {
                self.failed += 1;
                json!({ "id": id, "line": line_no, "error": why })
            }
        };
        if self.unordered {
            return self.print(&value);
        }
        self.records[index] = Some(value);
        while let Some(v) = self.records.get_mut(self.next).and_then(Option::take) {
            self.print(&v)?;
            self.next += 1;
        }
        Ok(())
    }

    fn print(&mut self, value: &Value) -> Result<()> {
        // Serialised first so that a closed stdout surfaces as the io::Error main recognises
        // (serde_json's writer error hides it).
        let mut line = serde_json::to_string(value)?;
        line.push('\n');
        self.stdout.write_all(line.as_bytes())?;
        self.stdout.flush()?;
        self.bar.inc(1);
        Ok(())
    }
}

fn with_id(id: Value, mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        // Keep `id` first in the printed object for people reading the output.
        let mut m = serde_json::Map::new();
        m.insert("id".into(), id);
        m.append(o);
        return Value::Object(m);
    }
    v
}

/// The request of a line: its tokens, and the sampling and limits of the command line with the
/// line's own `temp`, `seed` and `n_predict` over them.
fn request(args: &Args, l: &Line, tokens: Vec<u32>) -> Request {
    let mut params = args.sampling.params();
    if let Some(t) = l.temp {
        params.temp = t;
    }
    if let Some(s) = l.seed {
        params.seed = seed_or_random(s);
    }
    let n_predict = l.n_predict.unwrap_or(args.n_predict);
    Request {
        prompt: tokens,
        params,
        opts: GenOptions {
            n_predict: usize::try_from(n_predict).ok(),
            stops: args.stop.clone(),
        },
    }
}

/// The output record of a completion (without its id). Every prompt is evaluated from the
/// start, as `infer run` evaluates it, so `tokens_cached` is 0: reusing a prefix shared with
/// another prompt would split the prompt into other batches, which round differently.
fn record(c: &Completion) -> Value {
    json!({
        "completion": c.text,
        "tokens_prompt": c.n_prompt,
        "tokens_cached": 0,
        "tokens_generated": c.tokens.len(),
        "end": c.end.as_str(),
        "prompt_ms": round2(c.t_prompt.as_secs_f64() * 1e3),
        "generation_ms": round2(c.t_gen.as_secs_f64() * 1e3),
        "tokens_per_second": round2(per_second(c.tokens.len(), c.t_gen)),
    })
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::parse_line;

    #[test]
    fn lines_are_text_or_json() {
        let j = parse_line(
            3,
            r#"{"prompt": "hi", "id": "a", "n_predict": 4, "temp": 0, "seed": 7}"#,
            false,
        );
        let l = j.parsed.expect("valid");
        assert_eq!(
            (l.prompt.as_str(), l.n_predict, l.temp, l.seed),
            ("hi", Some(4), Some(0.0), Some(7))
        );
        assert_eq!(l.id, Some(serde_json::json!("a")));

        let p = parse_line(1, "plain text\r", false).parsed.expect("text");
        assert_eq!(p.prompt, "plain text");

        let (id, why) = parse_line(2, r#"{"prompt": "x", "id": 9, "tmep": 1}"#, false)
            .parsed
            .expect_err("unknown field");
        assert_eq!(id, Some(serde_json::json!(9)));
        assert!(why.contains("tmep"), "{why}");

        assert!(parse_line(2, "{not json", false).parsed.is_err());
        assert_eq!(
            parse_line(2, "{not json", true)
                .parsed
                .expect("plain")
                .prompt,
            "{not json"
        );
    }
}
