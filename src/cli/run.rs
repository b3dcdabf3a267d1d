//! `infer run [MODEL] -p TEXT`: generate text after a prompt and stream it to stdout.
//!
//! Flag names and defaults follow llama.cpp's `llama-completion`. Only generated text goes to
//! stdout, flushed per token and never as half a UTF-8 character; timings and `--verbose` details
//! go to stderr (timings not with `-q`). Generation ends at an end-of-generation token, after `-n`
//! tokens, at a `--stop` string (which is not printed), or when the context is full. Without
//! MODEL, the default model of `common::resolve_model` is used. The sampling loop is
//! `engine::decode`, shared with `chat` and `batch`.

use super::common;
use crate::engine;
use crate::model::kv_cache::{CacheType, KvOptions};
use crate::model::{Model, State};
use crate::sample::{random_seed, Sampler, SamplerParams};
use crate::spec;
use crate::ui;
use anyhow::{bail, Result};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use crate::engine::TextOut;

const EXAMPLES: &str = "Examples:
  infer run -p 'The capital of France is' -n 16      # the default model (see MODEL)
  infer run model.gguf -p 'Once upon a time' --temp 0 -n 64
  infer run model.gguf -f prompt.txt --stop '\\n\\n' -s 42
  echo 'Translate to French: cheese' | infer run model.gguf -p - -n 16 -q";

#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// The GGUF model file [default: $INFER_MODEL, else models/gemma-3-270m-q4_k_m.gguf].
    pub model: Option<PathBuf>,
    /// Prompt text; `-` reads it from stdin.
    #[arg(short = 'p', long = "prompt", conflicts_with = "file")]
    pub prompt: Option<String>,
    /// Read the prompt from this file.
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// Tokens to generate; -1 = until end of generation or the context is full.
    #[arg(short = 'n', long = "n-predict", default_value_t = -1, allow_negative_numbers = true)]
    pub n_predict: i64,
    /// Temperature; <= 0 samples greedily (always the most likely token).
    #[arg(long, default_value_t = 0.8, allow_negative_numbers = true)]
    pub temp: f32,
    /// Keep the K most likely tokens; <= 0 keeps all.
    #[arg(long = "top-k", default_value_t = 40, allow_negative_numbers = true)]
    pub top_k: i32,
    /// Nucleus sampling threshold; 1.0 disables.
    #[arg(long = "top-p", default_value_t = 0.95)]
    pub top_p: f32,
    /// Drop tokens less likely than P times the most likely one; 0.0 disables.
    #[arg(long = "min-p", default_value_t = 0.05)]
    pub min_p: f32,
    /// Penalise repeated tokens (divide positive logits, multiply negative ones); 1.0 disables.
    #[arg(long = "repeat-penalty", default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// How many recent tokens (prompt included) the penalties look at; 0 disables, -1 = context size.
    #[arg(
        long = "repeat-last-n",
        default_value_t = 64,
        allow_negative_numbers = true
    )]
    pub repeat_last_n: i64,
    /// Subtracted once from the logit of every token in the penalty window; 0.0 disables.
    #[arg(
        long = "presence-penalty",
        default_value_t = 0.0,
        allow_negative_numbers = true
    )]
    pub presence_penalty: f32,
    /// Subtracted from a token's logit per occurrence in the penalty window; 0.0 disables.
    #[arg(
        long = "frequency-penalty",
        default_value_t = 0.0,
        allow_negative_numbers = true
    )]
    pub frequency_penalty: f32,
    /// RNG seed; the same seed gives the same text. Negative = random (shown with --verbose).
    #[arg(short = 's', long, default_value_t = -1, allow_negative_numbers = true)]
    pub seed: i64,
    /// Context size in tokens [default: 4096, or the model's training context if smaller].
    #[arg(short = 'c', long = "ctx-size")]
    pub ctx_size: Option<usize>,
    /// Compute threads [default: one per available core].
    #[arg(short = 't', long)]
    pub threads: Option<usize>,
    /// Stop when the output contains this string (not printed); may be repeated.
    #[arg(long = "stop")]
    pub stop: Vec<String>,
    /// Treat special-token spellings in the prompt (e.g. `<start_of_turn>`) as plain text.
    #[arg(long = "no-parse-special")]
    pub no_parse_special: bool,
    /// Where to run the model: cpu, gpu (the best adapter), gpu:N (see `infer devices`), or auto
    /// (a discrete or integrated GPU if there is one, else the CPU).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// KV cache storage of keys: f16, f32 or q8_0.
    #[arg(long = "cache-type-k", alias = "ctk", default_value = "f16")]
    pub cache_type_k: CacheType,
    /// KV cache storage of values: f16, f32 or q8_0.
    #[arg(long = "cache-type-v", alias = "ctv", default_value = "f16")]
    pub cache_type_v: CacheType,
    /// When the context is full, keep the first N prompt tokens (after BOS; -1 = the whole
    /// prompt), drop the older half of the rest and go on (with --context-shift).
    #[arg(long = "keep", default_value_t = 0, allow_negative_numbers = true)]
    pub keep: i64,
    /// Go on past a full context by dropping old tokens (see --keep), as llama.cpp's
    /// --context-shift; off by default, as in llama.cpp.
    #[arg(long = "context-shift", overrides_with = "no_context_shift")]
    pub context_shift: bool,
    /// Never stop at an end-of-generation token (it is passed on like any other), for
    /// measurements that need a fixed number of tokens.
    #[arg(long = "ignore-eos")]
    pub ignore_eos: bool,
    /// Stop when the context is full (the default).
    #[arg(long = "no-context-shift", overrides_with = "context_shift")]
    pub no_context_shift: bool,
    /// Print model, hyper-parameter, thread and sampling details to stderr.
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// Speculative decoding: a smaller model with the same vocabulary drafts tokens that this
    /// model checks in one batch; same output, faster when the draft is cheap and often right.
    #[arg(long = "draft", alias = "model-draft", value_name = "MODEL")]
    pub draft: Option<PathBuf>,
    /// Most tokens drafted per step (the length adapts below it).
    #[arg(long = "draft-max", default_value_t = 16)]
    pub draft_max: usize,
    /// Drafts shorter than this are not checked.
    #[arg(long = "draft-min", default_value_t = 0)]
    pub draft_min: usize,
    /// Stop drafting when the draft's top probability falls below P (llama.cpp uses 0.75; 0 here
    /// lets the adaptive draft length decide).
    #[arg(long = "draft-p-min", default_value_t = spec::SpecParams::default().p_min)]
    pub draft_p_min: f32,
    /// The draft computes logits only for a shortlist of the N most frequent tokens (plus the
    /// single characters, special tokens and every token already used); 0 = all. The output is
    /// the same either way; a shortlist makes each draft step much cheaper.
    #[arg(long = "draft-vocab", value_name = "N", default_value_t = spec::DEFAULT_DRAFT_VOCAB)]
    pub draft_vocab: usize,
    /// Compute threads for the draft model [default: as many as -t]. Fewer can be faster on a
    /// busy machine: the draft's steps are short, and waiting for a second thread costs more.
    #[arg(long = "threads-draft", value_name = "N")]
    pub threads_draft: Option<usize>,
}

pub fn run(args: Args) -> Result<()> {
    crate::ui::interrupt::exit_on_ctrl_c();
    let model_path = common::resolve_model(args.model.as_deref())?;
    let prompt = common::read_prompt(args.prompt.as_deref(), args.file.as_deref())?;
    let gguf = common::open_model(&model_path)?;
    let tok = common::load_tokenizer(&gguf)?;
    let mut model = common::load_model(&gguf, args.threads)?;
    let gpu_name = common::use_device(&mut model, &args.device)?;
    let hp = model.hparams();

    let n_ctx = common::context_size(args.ctx_size, hp.n_ctx_train)?;
    let tokens = tok.encode(&prompt, true, !args.no_parse_special);
    if tokens.is_empty() {
        bail!("the prompt is empty (no tokens to start from)");
    }
    if tokens.len() >= n_ctx {
        bail!(
            "the prompt is {} tokens but the context holds {n_ctx} (-c); it must leave room to generate",
            tokens.len()
        );
    }
    let repeat_last_n = match args.repeat_last_n {
        -1 => n_ctx,
        n if n < -1 => bail!("--repeat-last-n must be -1, 0 or positive, got {n}"),
        n => n as usize,
    };
    let seed = u64::try_from(args.seed).unwrap_or_else(|_| random_seed());
    let kv_opts = KvOptions {
        type_k: args.cache_type_k,
        type_v: args.cache_type_v,
    };
    // llama-completion's n_keep: -1 or more than the prompt keeps the prompt; else N after BOS.
    let keep = match usize::try_from(args.keep) {
        Ok(k) if k <= tokens.len() => k + usize::from(tok.add_bos()),
        _ if args.keep < -1 => bail!("--keep must be -1 or more, got {}", args.keep),
        _ => tokens.len(),
    };
    let shift = (args.context_shift && !args.no_context_shift).then_some(keep);
    let params = SamplerParams {
        temp: args.temp,
        top_k: args.top_k,
        top_p: args.top_p,
        min_p: args.min_p,
        min_keep: 0,
        repeat_penalty: args.repeat_penalty,
        repeat_last_n,
        frequency_penalty: args.frequency_penalty,
        presence_penalty: args.presence_penalty,
        seed,
    };

    let mut err = std::io::stderr().lock();
    if args.verbose {
        writeln!(
            err,
            "model: {} ({}, {} layers, n_embd {}, n_vocab {}, n_ctx_train {})",
            model_path.display(),
            hp.arch,
            hp.n_layer,
            hp.n_embd,
            hp.n_vocab,
            hp.n_ctx_train
        )?;
        writeln!(
            err,
            "context: {}, threads: {}, prompt: {} tokens",
            common::context_note(args.ctx_size, n_ctx),
            model.n_threads(),
            tokens.len()
        )?;
        if let Some(g) = &gpu_name {
            writeln!(err, "device: {g}")?;
        }
        let st = model.new_state_with(n_ctx, &kv_opts)?;
        let kv = st.kv();
        let ring = match kv.n_groups() {
            1 => String::new(),
            _ => format!(
                "; {} of {} layers in a {}-cell window ring",
                (0..kv.n_layer())
                    .filter(|&il| kv.layer(il).group() == 1)
                    .count(),
                kv.n_layer(),
                kv.cells(1).size()
            ),
        };
        writeln!(
            err,
            "kv cache: {:.2} MiB (K {}, V {}{ring})",
            kv.bytes() as f64 / (1024.0 * 1024.0),
            kv_opts.type_k,
            kv_opts.type_v,
        )?;
        drop(st);
        writeln!(err, "sampling: {params:?}")?;
    }
    drop(err);

    let mut text = TextOut::new(args.stop.clone());
    let mut out = std::io::stdout().lock();
    let on_token = |id| {
        let (shown, stopped) = text.push(&tok.token_to_piece(id, false));
        out.write_all(shown.as_bytes())?;
        out.flush()?;
        Ok(!stopped)
    };
    let gen = match &args.draft {
        Some(path) => {
            let target = spec::Target {
                model: &model,
                tok: &tok,
                path: &model_path,
            };
            let draft = spec::DraftOptions {
                path,
                params: spec::SpecParams {
                    n_max: args.draft_max,
                    n_min: args.draft_min,
                    p_min: args.draft_p_min,
                    adaptive: true,
                    draft_vocab: args.draft_vocab,
                },
                n_threads: args.threads_draft.or(args.threads).unwrap_or(0),
            };
            let limit = usize::try_from(args.n_predict).ok();
            let o = spec::generate_with_draft::<anyhow::Error>(
                target, &draft, n_ctx, params, &tokens, limit, on_token,
            )?;
            if !ui::quiet() {
                eprintln!("\n{}", o.stats.summary(o.tokens.len(), o.t_gen));
            }
            let end = match o.end {
                spec::End::Eog => End::Eog,
                spec::End::Limit => End::Limit,
                spec::End::Stopped => End::Stopped,
                spec::End::ContextFull => End::ContextFull,
            };
            Generated {
                n_generated: o.tokens.len(),
                end,
                t_prompt: o.t_prompt,
                t_gen: o.t_gen,
            }
        }
        None => {
            let mut sampler = Sampler::new(params);
            let mut state = model.new_state_with(n_ctx, &kv_opts)?;
            state.set_context_shift(shift);
            let is_eog = |id| !args.ignore_eos && tok.is_eog(id);
            generate(
                &model,
                &mut state,
                &tokens,
                &mut sampler,
                is_eog,
                args.n_predict,
                on_token,
            )?
        }
    };
    out.write_all(text.finish().as_bytes())?;
    out.flush()?;

    let mut err = std::io::stderr().lock();
    if gen.end == End::ContextFull {
        writeln!(
            err,
            "\ncontext full ({n_ctx} tokens, -c); stopped after {} generated tokens",
            gen.n_generated
        )?;
    }
    if !ui::quiet() {
        writeln!(
            err,
            "\nprompt: {} tokens in {:.1} ms ({:.2} tokens/s)",
            tokens.len(),
            gen.t_prompt.as_secs_f64() * 1e3,
            per_second(tokens.len(), gen.t_prompt.as_secs_f64())
        )?;
        writeln!(
            err,
            "generated: {} tokens in {:.1} ms ({:.2} tokens/s)",
            gen.n_generated,
            gen.t_gen.as_secs_f64() * 1e3,
            per_second(gen.n_generated, gen.t_gen.as_secs_f64())
        )?;
    }
    if args.verbose {
        writeln!(err, "seed: {seed}")?;
    }
    Ok(())
}

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// The model produced an end-of-generation token (not counted, not passed on).
    Eog,
    /// `n_predict` tokens were generated.
    Limit,
    /// The token callback asked to stop (e.g. a stop string).
    Stopped,
    /// The next token would not fit the context.
    ContextFull,
}

/// What [`generate`] did, for the timing line.
#[derive(Clone, Debug)]
pub struct Generated {
    pub n_generated: usize,
    pub end: End,
    pub t_prompt: Duration,
    pub t_gen: Duration,
}

/// `infer run`'s loop over a bare `State`, shared with the tests: evaluates `prompt` in `state`,
/// then runs `engine::decode` (the sampling loop of every command), which hands each token to
/// `on_token` (returning whether to go on) and feeds it back, until an EOG token, `n_predict`
/// tokens (negative: no limit), a stop from `on_token`, or a full context. The prompt tokens are
/// `accept`ed first so that the penalties see them, as llama.cpp's completion tool does.
pub fn generate(
    model: &Model,
    state: &mut State,
    prompt: &[u32],
    sampler: &mut Sampler,
    is_eog: impl Fn(u32) -> bool,
    n_predict: i64,
    mut on_token: impl FnMut(u32) -> Result<bool>,
) -> Result<Generated> {
    for &t in prompt {
        sampler.accept(t);
    }
    let t0 = Instant::now();
    let logits = model.forward(state, prompt, false)?.to_vec();
    let t_prompt = t0.elapsed();
    let t1 = Instant::now();
    let mut n = 0usize;
    let end = engine::decode(
        model,
        state,
        logits,
        sampler,
        &is_eog,
        usize::try_from(n_predict).ok(),
        None,
        |id| -> Result<bool> {
            n += 1;
            on_token(id)
        },
    )?;
    let end = match end {
        engine::End::Eog => End::Eog,
        engine::End::Limit => End::Limit,
        // No interrupt flag is passed, so only a stop from `on_token` ends it this way.
        engine::End::Stop | engine::End::Interrupted => End::Stopped,
        engine::End::ContextFull => End::ContextFull,
    };
    Ok(Generated {
        n_generated: n,
        end,
        t_prompt,
        t_gen: t1.elapsed(),
    })
}

fn per_second(n: usize, secs: f64) -> f64 {
    if secs > 0.0 {
        n as f64 / secs
    } else {
        0.0
    }
}
