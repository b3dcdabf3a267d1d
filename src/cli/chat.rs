//! `infer chat [MODEL]`: talk to a chat model in a terminal.
//!
//! A REPL on rustyline with a history file, `"""` multi-line messages, streamed replies and
//! slash commands. The conversation stays in the KV cache between turns: each turn tokenizes
//! only what the conversation added since the last prompt (`chat::history`) and the engine
//! evaluates only the tokens after the part it already holds. When the conversation outgrows
//! the context, a context shift keeps the start (`--keep`) and drops the older half of the rest,
//! as llama-cli does. Ctrl-C stops a reply between tokens and returns to the prompt.
//!
//! When stdin is not a terminal, each line is one message (slash commands work too); replies go
//! to stdout one per line, without prompts or colours, and the command ends at end of input.

use super::common;
use crate::chat::history::{History, Keep, Turn};
use crate::chat::{ChatTemplate, Message, Role};
use crate::engine::{per_second, End, Engine, EngineError, GenOptions, Generation, TextOut};
use crate::sample::{random_seed, Sampler, SamplerParams};
use crate::spec::{self, Speculator};
use crate::ui::{self, progress, Style};
use anyhow::{Context, Result};
use rustyline::error::ReadlineError;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

const EXAMPLES: &str = "Examples:
  infer chat                                   # the default model (see MODEL)
  infer chat model.gguf --system 'Answer in one sentence.'
  infer chat model.gguf --temp 0 --chat-template chatml
  printf 'Hi!\\nWhat is 2+2?\\n' | infer chat   # one message per line, replies on stdout
  infer chat big.gguf --draft small.gguf       # speculative decoding: same replies, faster
  infer chat --device gpu                      # on the GPU (see infer devices)

In the chat, /help lists the commands; Ctrl-C stops a reply, Ctrl-D or /bye leaves.";

/// Speculative decoding flags (llama.cpp's names; the same as `infer run`'s).
#[derive(clap::Args, Debug, Clone)]
pub struct DraftArgs {
    /// Speculative decoding: a smaller model with the same vocabulary drafts tokens that this
    /// model checks in one batch; same replies, faster when the draft is cheap and often right.
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

/// Sampling flags shared by `chat` and `batch` (llama.cpp's names and defaults).
#[derive(clap::Args, Debug, Clone)]
pub struct SamplingArgs {
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
    /// Penalise the last 64 tokens (divide positive logits, multiply negative ones); 1.0 disables.
    #[arg(long = "repeat-penalty", default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// RNG seed; the same seed gives the same text. Negative = random.
    #[arg(short = 's', long, default_value_t = -1, allow_negative_numbers = true)]
    pub seed: i64,
}

impl SamplingArgs {
    pub fn params(&self) -> SamplerParams {
        SamplerParams {
            temp: self.temp,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            seed: seed_or_random(self.seed),
            ..SamplerParams::default()
        }
    }
}

/// A non-negative seed as given, a negative one replaced by a random seed.
pub fn seed_or_random(seed: i64) -> u64 {
    u64::try_from(seed).unwrap_or_else(|_| random_seed())
}

#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// The GGUF model file [default: $INFER_MODEL, else models/gemma-3-270m-q4_k_m.gguf].
    pub model: Option<PathBuf>,
    /// A system message that opens the conversation.
    #[arg(long)]
    pub system: Option<String>,
    /// Chat format: a built-in name (gemma, llama3, chatml, mistral, mistral-v1/v3/v7...) or a
    /// Jinja file [default: the model's template, else a built-in one that suits the model].
    #[arg(long = "chat-template", value_name = "NAME|FILE")]
    pub chat_template: Option<String>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[command(flatten)]
    pub draft: DraftArgs,
    /// Most tokens per reply; -1 = until the model ends its turn or the context is full.
    #[arg(short = 'n', long = "n-predict", default_value_t = -1, allow_negative_numbers = true)]
    pub n_predict: i64,
    /// Context size in tokens [default: 4096, or the model's training context if smaller].
    #[arg(short = 'c', long = "ctx-size")]
    pub ctx_size: Option<usize>,
    /// When the conversation outgrows the context, keep its first N tokens after BOS (-1 = the
    /// whole first prompt), drop the older half of the rest and go on [default: the system
    /// message's part of the prompt, else BOS only].
    #[arg(long = "keep", allow_negative_numbers = true)]
    pub keep: Option<i64>,
    /// Context shift when the conversation outgrows the context (the default in chat).
    #[arg(long = "context-shift", overrides_with = "no_context_shift")]
    pub context_shift: bool,
    /// No context shift: a message that would overflow the context is refused (/clear starts
    /// over) and a reply stops at a full context.
    #[arg(long = "no-context-shift", overrides_with = "context_shift")]
    pub no_context_shift: bool,
    /// Compute threads [default: one per available core].
    #[arg(short = 't', long)]
    pub threads: Option<usize>,
    /// Where to run the model: cpu, gpu (the best adapter), gpu:N (see `infer devices`), or auto
    /// (a discrete or integrated GPU if there is one, else the CPU). On a GPU there is no context
    /// shift (a message that would overflow is refused) and no --draft.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Do not read or write the history file ($XDG_STATE_HOME/infer/history).
    #[arg(long = "no-history")]
    pub no_history: bool,
    /// Print the chat template in use and timings after each reply to stderr.
    #[arg(short = 'v', long)]
    pub verbose: bool,
}

/// Raised by Ctrl-C while a reply is being generated; cleared before each reply.
static INTERRUPT: AtomicBool = AtomicBool::new(false);

pub fn run(args: Args) -> Result<()> {
    let path = common::resolve_model(args.model.as_deref())?;
    let interactive = std::io::stdin().is_terminal();
    let loading = progress::spinner(&format!("loading {}", path.display()));
    let gguf = common::open_model(&path)?;
    let tok = common::load_tokenizer(&gguf)?;
    let mut model = common::load_model(&gguf, args.threads)?;
    let gpu_name = common::use_device(&mut model, &args.device)?;
    if gpu_name.is_some() && args.draft.draft.is_some() {
        anyhow::bail!(
            "--draft runs on the CPU only; leave out --device {}",
            args.device
        );
    }
    let template = ChatTemplate::for_model(&gguf, &tok, args.chat_template.as_deref())?;
    let draft_opts = args.draft.draft.as_deref().map(|p| spec::DraftOptions {
        path: p,
        params: spec::SpecParams {
            n_max: args.draft.draft_max,
            n_min: args.draft.draft_min,
            p_min: args.draft.draft_p_min,
            adaptive: true,
            draft_vocab: args.draft.draft_vocab,
        },
        n_threads: args.draft.threads_draft.or(args.threads).unwrap_or(0),
    });
    let target = spec::Target {
        model: &model,
        tok: &tok,
        path: &path,
    };
    let draft_gguf = match &draft_opts {
        Some(d) => Some(spec::open_draft(&target, d.path)?),
        None => None,
    };
    let draft_model = match (&draft_gguf, &draft_opts) {
        (Some(g), Some(d)) => Some(spec::load_draft(g, d)?),
        _ => None,
    };
    loading.finish_and_clear();
    let n_ctx = common::context_size(args.ctx_size, model.hparams().n_ctx_train)?;
    let keep = match args.keep {
        None => Keep::System,
        Some(-1) => Keep::FirstPrompt,
        Some(k) => match usize::try_from(k) {
            Ok(k) => Keep::Tokens(k),
            Err(_) => anyhow::bail!("--keep must be -1 or more, got {k}"),
        },
    };
    // The context shift re-rotates cached keys on the CPU; the GPU cache has no such pass.
    let shift = !args.no_context_shift && gpu_name.is_none();
    if args.verbose {
        if let Some(g) = &gpu_name {
            ui::note(&format!("device: {g}"));
        }
        let shifting = match (shift, args.draft.draft.is_some()) {
            (false, _) if gpu_name.is_some() => "context shift off on the GPU".to_string(),
            (false, _) => "context shift off".to_string(),
            (true, true) => "context shift off with --draft".to_string(),
            (true, false) => format!("context shift on, {keep}"),
        };
        ui::note(&format!(
            "model: {}, context {} ({shifting}), chat template: {}",
            path.display(),
            common::context_note(args.ctx_size, n_ctx),
            template.origin()
        ));
    }
    let params = args.sampling.params();
    let spec = match (&draft_model, &draft_opts) {
        (Some(d), Some(o)) => {
            let sp = Speculator::new(
                &model,
                d,
                &tok,
                n_ctx,
                params.clone(),
                params.clone(),
                o.params,
            )?;
            Some(sp)
        }
        _ => None,
    };
    let mut session = Session {
        engine: Engine::new(&model, &tok, n_ctx)?,
        template,
        system: args.system.clone().filter(|s| !s.is_empty()),
        messages: Vec::new(),
        history: History::default(),
        keep,
        shift,
        sampler: Sampler::new(params.clone()),
        spec,
        params,
        n_predict: usize::try_from(args.n_predict).ok(),
        last: None,
        interactive,
        verbose: args.verbose,
        warned: false,
    };
    if interactive {
        repl(&mut session, &args)
    } else {
        piped(&mut session)
    }
}

/// One message per line from a pipe or file: no prompts, no colours, no line editor.
fn piped(s: &mut Session) -> Result<()> {
    ui::interrupt::exit_on_ctrl_c();
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let line = line.context("cannot read stdin")?;
        if s.handle(&line)? == Flow::Quit {
            break;
        }
    }
    Ok(())
}

fn history_path() -> Option<PathBuf> {
    let state = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".local/state"))
        })?;
    Some(state.join("infer/history"))
}

fn repl(s: &mut Session, args: &Args) -> Result<()> {
    let config = rustyline::Config::builder()
        .auto_add_history(false)
        .max_history_size(1000)
        .context("line editor")?
        .build();
    let mut rl =
        rustyline::DefaultEditor::with_config(config).context("cannot start the line editor")?;
    let history = if args.no_history {
        None
    } else {
        history_path()
    };
    if let Some(h) = &history {
        // A missing history file is the normal first run.
        let _ = rl.load_history(h);
    }
    // The terminal sends SIGINT only while the line editor is not reading (during a reply);
    // then Ctrl-C raises the flag the generation loop checks between tokens.
    ctrlc::set_handler(|| INTERRUPT.store(true, Ordering::Relaxed))
        .context("cannot install the Ctrl-C handler")?;
    let color = ui::color_stdout();
    let prompt = ui::paint(color, Style::Bold, ">>> ");
    let more = ui::paint(color, Style::Dim, "... ");
    ui::note("Type a message, /help for commands, Ctrl-D or /bye to leave.");
    let mut history_failed = false;
    loop {
        let line = match rl.readline(&prompt) {
            Ok(l) => l,
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e).context("cannot read input"),
        };
        let text = match read_multiline(&line, || rl.readline(&more)) {
            Ok(t) => t,
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e).context("cannot read input"),
        };
        if text.trim().is_empty() {
            continue;
        }
        let _ = rl.add_history_entry(text.as_str());
        if let Some(h) = &history {
            if let Err(e) = save_history(&mut rl, h) {
                if !std::mem::replace(&mut history_failed, true) {
                    ui::warn(&format!("cannot save the history to {}: {e}", h.display()));
                }
            }
        }
        if s.handle(&text)? == Flow::Quit {
            break;
        }
    }
    Ok(())
}

fn save_history(rl: &mut rustyline::DefaultEditor, path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    rl.save_history(path)?;
    Ok(())
}

/// A line starting with `"""` opens a block that ends at a line ending with `"""`; the block's
/// lines, without the quotes, are one message.
fn read_multiline(
    first: &str,
    mut next: impl FnMut() -> Result<String, ReadlineError>,
) -> Result<String, ReadlineError> {
    let Some(rest) = first.trim_start().strip_prefix("\"\"\"") else {
        return Ok(first.to_string());
    };
    if let Some(done) = rest.trim_end().strip_suffix("\"\"\"") {
        return Ok(done.to_string());
    }
    let mut lines = vec![rest.to_string()];
    loop {
        let l = next()?;
        if let Some(done) = l.trim_end().strip_suffix("\"\"\"") {
            lines.push(done.to_string());
            break;
        }
        lines.push(l);
    }
    let text = lines.join("\n");
    Ok(text.trim_matches('\n').to_string())
}

#[derive(PartialEq, Eq)]
enum Flow {
    Go,
    Quit,
}

struct Session<'e, 'g> {
    engine: Engine<'e, 'g>,
    template: ChatTemplate,
    system: Option<String>,
    /// The conversation after the system message.
    messages: Vec<Message>,
    /// The prompt tokens the engine's cache holds, continued a turn at a time.
    history: History,
    keep: Keep,
    /// Context shift when the conversation outgrows the context (not with `--draft`).
    shift: bool,
    params: SamplerParams,
    sampler: Sampler,
    /// With `--draft`: generates the replies instead of `engine` (with its own target cache).
    spec: Option<Speculator<'e, 'g>>,
    n_predict: Option<usize>,
    last: Option<Generation>,
    interactive: bool,
    verbose: bool,
    /// A template warning is shown once, not every turn.
    warned: bool,
}

/// A turn ready to evaluate: its prompt after the context shifts that made room for it.
struct Prompt {
    turn: Turn,
    tokens: Vec<u32>,
    /// The shifts done over `turn.tokens`, as `(keep, discard)`.
    shifts: Vec<(usize, usize)>,
}

const HELP: &str = "Commands:
  /help                 this list
  /system [TEXT]        show or set the system message (applies to the whole conversation)
  /set                  show the sampling settings
  /set NAME VALUE       temp, top-k, top-p, min-p, repeat-penalty, seed, n (tokens per reply)
  /clear                forget the conversation (the system message stays)
  /regen                replace the last reply with a new one
  /stats                timings of the last reply and how full the context is
  /save FILE            write the conversation to FILE (JSON if it ends in .json)
  /bye                  leave (Ctrl-D too)
A line starting with \"\"\" starts a multi-line message that ends with \"\"\".
Ctrl-C stops a reply.";

impl Session<'_, '_> {
    /// Something for the person at the terminal (stderr, so stdout holds only replies).
    fn say(&self, text: &str) {
        if self.interactive {
            eprintln!("{}", ui::paint(ui::color_stderr(), Style::Dim, text));
        } else if !ui::quiet() {
            eprintln!("{text}");
        }
    }

    fn handle(&mut self, line: &str) -> Result<Flow> {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            return Ok(Flow::Go);
        }
        if let Some(cmd) = trimmed.strip_prefix('/') {
            return self.command(cmd);
        }
        self.messages.push(Message::new(Role::User, line));
        self.reply(false)?;
        Ok(Flow::Go)
    }

    fn command(&mut self, cmd: &str) -> Result<Flow> {
        let (name, arg) = match cmd.split_once(char::is_whitespace) {
            Some((n, a)) => (n, a.trim()),
            None => (cmd, ""),
        };
        match name {
            "bye" | "exit" | "quit" => return Ok(Flow::Quit),
            "help" | "?" => self.say(HELP),
            "system" if arg.is_empty() => match &self.system {
                Some(s) => self.say(&format!("system: {s}")),
                None => self.say("no system message"),
            },
            "system" => {
                self.system = Some(arg.to_string());
                self.say("system message set");
            }
            "set" => self.set(arg),
            "clear" => {
                self.messages.clear();
                self.history.clear();
                self.say("conversation cleared");
            }
            "regen" => {
                if self
                    .messages
                    .last()
                    .is_some_and(|m| m.role == Role::Assistant)
                {
                    self.messages.pop();
                }
                if self.messages.last().is_some_and(|m| m.role == Role::User) {
                    self.reply(true)?;
                } else {
                    self.say("nothing to regenerate: send a message first");
                }
            }
            "stats" => self.stats(),
            "save" if arg.is_empty() => self.say("usage: /save FILE"),
            "save" => match self.save(Path::new(arg)) {
                Ok(()) => self.say(&format!("saved to {arg}")),
                Err(e) => self.say(&format!("cannot save to {arg}: {e:#}")),
            },
            _ => self.say(&format!(
                "unknown command /{name}; /help lists the commands"
            )),
        }
        Ok(Flow::Go)
    }

    fn set(&mut self, arg: &str) {
        let mut it = arg.split_whitespace();
        let (Some(name), Some(value)) = (it.next(), it.next()) else {
            let p = &self.params;
            let n = self
                .n_predict
                .map_or("-1 (no limit)".to_string(), |n| n.to_string());
            self.say(&format!(
                "temp {} top-k {} top-p {} min-p {} repeat-penalty {} seed {} n {n}",
                p.temp, p.top_k, p.top_p, p.min_p, p.repeat_penalty, p.seed
            ));
            return;
        };
        let mut p = self.params.clone();
        let ok = match name {
            "temp" => value.parse().map(|v| p.temp = v).is_ok(),
            "top-k" | "top_k" => value.parse().map(|v| p.top_k = v).is_ok(),
            "top-p" | "top_p" => value.parse().map(|v| p.top_p = v).is_ok(),
            "min-p" | "min_p" => value.parse().map(|v| p.min_p = v).is_ok(),
            "repeat-penalty" | "repeat_penalty" => {
                value.parse().map(|v| p.repeat_penalty = v).is_ok()
            }
            "seed" => value
                .parse::<i64>()
                .map(|v| p.seed = seed_or_random(v))
                .is_ok(),
            "n" | "n-predict" => match value.parse::<i64>() {
                Ok(v) => {
                    self.n_predict = usize::try_from(v).ok();
                    true
                }
                Err(_) => false,
            },
            _ => {
                self.say(&format!(
                    "unknown setting '{name}': temp, top-k, top-p, min-p, repeat-penalty, seed or n"
                ));
                return;
            }
        };
        if !ok {
            self.say(&format!("'{value}' is not a valid value for {name}"));
            return;
        }
        if p != self.params {
            // A new seed restarts the random sequence; other changes keep it going.
            self.sampler = Sampler::new(p.clone());
            if let Some(sp) = &mut self.spec {
                sp.set_sampling(p.clone(), p.clone());
            }
            self.params = p;
        }
        self.say(&format!("{name} = {value}"));
    }

    fn conversation(&self) -> Vec<Message> {
        let mut all = Vec::with_capacity(self.messages.len() + 1);
        if let Some(s) = &self.system {
            all.push(Message::new(Role::System, s.clone()));
        }
        all.extend(self.messages.iter().cloned());
        all
    }

    /// The prompt of a turn answering the last (user) message; `again` answers it anew
    /// (`/regen`). `None` when it cannot fit the context: the message is dropped and the person
    /// told why.
    fn prompt(&mut self, again: bool) -> Result<Option<Prompt>> {
        let conv = self.conversation();
        let tok = self.engine.tokenizer();
        let turn = match again.then(|| self.history.again(&conv)).flatten() {
            Some(t) => {
                if self.history.last_damaged() {
                    self.say("[a context shift dropped part of this message: evaluating it again]");
                }
                t
            }
            None if self.spec.is_some() => {
                // The speculator keeps its own cache, which does not shift: the conversation is
                // rendered whole and must fit.
                let mut t = History::default().next_turn(&self.template, tok, &conv, self.keep);
                t.keep = t.tokens.len();
                t
            }
            None => self
                .history
                .next_turn(&self.template, tok, &conv, self.keep),
        };
        if let Some(w) = &turn.warning {
            if !self.warned {
                ui::warn(w);
                self.warned = true;
            }
        }
        let n_ctx = self.engine.n_ctx();
        let mut prompt = turn.tokens.clone();
        let shift = self.shift && self.spec.is_none();
        let fits = if shift {
            self.engine.set_context_shift(Some(turn.keep));
            match self.engine.make_room(&mut prompt) {
                Ok(shifts) => Some(shifts),
                Err(EngineError::PromptTooLong { .. }) => None,
                Err(e) => return Err(e.into()),
            }
        } else {
            (prompt.len() < n_ctx).then(Vec::new)
        };
        if let Some(shifts) = fits {
            return Ok(Some(Prompt {
                turn,
                tokens: prompt,
                shifts,
            }));
        }
        self.messages.pop();
        let own = turn.own().len();
        let why = if shift && turn.start > 0 && turn.keep + own >= n_ctx {
            format!(
                "this message needs {own} tokens after the {} kept at the start, the context holds {n_ctx} (-c): send a shorter one",
                turn.keep
            )
        } else {
            let off = match (self.shift, self.spec.is_some()) {
                (false, _) => " and context shift is off",
                (true, true) => " and context shift is off with --draft",
                (true, false) => "",
            };
            format!(
                "the conversation is {} tokens with this message, the context holds {n_ctx} (-c){off}: /clear to start over",
                turn.tokens.len()
            )
        };
        self.say(&why);
        Ok(None)
    }

    /// Answers the last (user) message, streaming the reply to stdout; `again` answers it anew.
    fn reply(&mut self, again: bool) -> Result<()> {
        let Some(Prompt {
            turn,
            tokens,
            mut shifts,
        }) = self.prompt(again)?
        else {
            return Ok(());
        };
        let n_ctx = self.engine.n_ctx();
        INTERRUPT.store(false, Ordering::Relaxed);
        let mut bar = progress::PrefillProgress::new();
        let mut out = std::io::stdout().lock();
        let opts = GenOptions {
            n_predict: self.n_predict,
            stops: Vec::new(),
        };
        let mut show = |text: &str| -> std::io::Result<()> {
            out.write_all(text.as_bytes())?;
            out.flush()
        };
        let gen = match &mut self.spec {
            Some(sp) => {
                let tok = self.engine.tokenizer();
                speculate(sp, tok, &tokens, self.n_predict, self.verbose, &mut show)?
            }
            None => self.engine.generate(
                &tokens,
                &mut self.sampler,
                &opts,
                Some(&INTERRUPT),
                &mut |d, t| bar.update(d, t),
                &mut show,
            )?,
        };
        writeln!(out)?;
        out.flush()?;
        drop(out);
        shifts.extend_from_slice(&gen.shifts);
        if !shifts.is_empty() {
            let dropped: usize = shifts.iter().map(|&(_, d)| d).sum();
            self.say(&format!(
                "[context shift: the conversation outgrew the context ({n_ctx} tokens, -c); kept the first {} tokens and dropped {dropped} older ones]",
                turn.keep
            ));
        }
        match gen.end {
            End::Interrupted => self.say("[stopped]"),
            End::ContextFull => self.say(&format!(
                "[the context is full ({n_ctx} tokens, -c): /clear to start over]"
            )),
            End::Limit => self.say(&format!(
                "[reply cut at {} tokens: /set n to change]",
                gen.n_generated()
            )),
            End::Eog | End::Stop => {}
        }
        if gen.end == End::Interrupted && gen.tokens.is_empty() {
            // Stopped before any reply: the message stays unanswered (and in the history), so
            // the conversation does not carry an empty assistant turn.
            self.messages.pop();
            self.history.commit(turn, &shifts, &[]);
            self.history.undo();
        } else {
            self.history.commit(turn, &shifts, &gen.tokens);
            self.messages
                .push(Message::new(Role::Assistant, gen.text.clone()));
        }
        if self.verbose {
            ui::note(&stats_line(&gen));
        }
        self.last = Some(gen);
        Ok(())
    }

    fn stats(&self) {
        let used = match &self.spec {
            Some(sp) => sp.history().len(),
            None => self.engine.cached().len(),
        };
        let n_ctx = self.engine.n_ctx();
        let mut s = format!(
            "context: {used} of {n_ctx} tokens; chat template: {}",
            self.template.origin()
        );
        if let Some(g) = &self.last {
            s.push('\n');
            s.push_str(&stats_line(g));
        }
        self.say(&s);
    }

    fn save(&self, path: &Path) -> Result<()> {
        let all = self.conversation();
        let text = if path.extension().is_some_and(|e| e == "json") {
            let v: Vec<_> = all
                .iter()
                .map(|m| serde_json::json!({ "role": m.role.as_str(), "content": m.content }))
                .collect();
            serde_json::to_string_pretty(&v)? + "\n"
        } else {
            all.iter()
                .map(|m| format!("{}: {}\n\n", m.role.as_str(), m.content))
                .collect()
        };
        std::fs::write(path, text)?;
        Ok(())
    }
}

/// One reply decoded speculatively, reported as the engine reports a plain one. Ctrl-C stops it
/// between verification steps (the prompt's prefill is not interruptible here).
fn speculate(
    sp: &mut Speculator,
    tok: &crate::tokenizer::Tokenizer,
    tokens: &[u32],
    n_predict: Option<usize>,
    verbose: bool,
    show: &mut dyn FnMut(&str) -> std::io::Result<()>,
) -> Result<Generation> {
    let n_cached = sp
        .history()
        .iter()
        .zip(tokens)
        .take_while(|(a, b)| a == b)
        .count()
        .min(tokens.len() - 1);
    let mut text = String::new();
    let mut out = TextOut::new(Vec::new());
    let o = sp.generate::<anyhow::Error>(tokens, n_predict, &|id| tok.is_eog(id), |id| {
        let (shown, _) = out.push(&tok.token_to_piece(id, false));
        if !shown.is_empty() {
            show(&shown)?;
            text.push_str(&shown);
        }
        Ok(!INTERRUPT.load(Ordering::Relaxed))
    })?;
    let rest = out.finish();
    if !rest.is_empty() {
        show(&rest)?;
        text.push_str(&rest);
    }
    let end = match o.end {
        spec::End::Eog => End::Eog,
        spec::End::Limit => End::Limit,
        spec::End::Stopped => End::Interrupted,
        spec::End::ContextFull => End::ContextFull,
    };
    if verbose {
        ui::note(&o.stats.summary(o.tokens.len(), o.t_gen));
    }
    Ok(Generation {
        text,
        tokens: o.tokens,
        n_prompt: tokens.len(),
        n_prefilled: tokens.len() - n_cached,
        end,
        t_prompt: o.t_prompt,
        t_gen: o.t_gen,
        shifts: Vec::new(),
    })
}

fn stats_line(g: &Generation) -> String {
    format!(
        "prompt: {} tokens ({} new) in {:.1} ms ({:.1} tokens/s); reply: {} tokens in {:.1} ms ({:.1} tokens/s), ended by {}",
        g.n_prompt,
        g.n_prefilled,
        g.t_prompt.as_secs_f64() * 1e3,
        per_second(g.n_prefilled, g.t_prompt),
        g.n_generated(),
        g.t_gen.as_secs_f64() * 1e3,
        per_second(g.n_generated(), g.t_gen),
        g.end.as_str()
    )
}

#[cfg(test)]
mod tests {
    use super::read_multiline;
    use rustyline::error::ReadlineError;

    fn lines(first: &str, rest: &[&str]) -> String {
        let mut it = rest.iter();
        read_multiline(first, || {
            it.next().map(|s| s.to_string()).ok_or(ReadlineError::Eof)
        })
        .expect("complete block")
    }

    #[test]
    fn triple_quotes_span_lines() {
        assert_eq!(
            lines("\"\"\"first", &["second", "third\"\"\""]),
            "first\nsecond\nthird"
        );
        assert_eq!(lines("\"\"\"", &["a", "b", "\"\"\""]), "a\nb");
        assert_eq!(lines("\"\"\"one line\"\"\"", &[]), "one line");
        assert_eq!(lines("plain", &["never read"]), "plain");
    }
}
