//! The generation loop shared by `infer run`, `infer chat` and `infer batch`: one model, one
//! sequence, and the tokens whose keys and values the sequence's KV cache holds. Each call to
//! [`Engine::generate`] evaluates only the part of the new prompt that differs from what is
//! cached (a chat's next turn, a batch prompt sharing a prefix with the previous one), then
//! samples, streams complete UTF-8 text with stop strings held back, and ends at an
//! end-of-generation token, a token limit, a stop string, a full context or an interrupt.
//!
//! It knows nothing of terminals, templates or JSON: those belong to `cli` and `chat`.

pub mod batch;
mod text;

pub use text::TextOut;

use crate::model::{Model, ModelError, State};
use crate::sample::{SampleError, Sampler};
use crate::tokenizer::Tokenizer;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Prompt tokens evaluated per forward call, so that a long prefill can report progress and be
/// interrupted between chunks (the forward pass batches at the same size internally).
const PREFILL_CHUNK: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Sample(#[from] SampleError),
    #[error("the prompt is empty (no tokens to start from)")]
    EmptyPrompt,
    #[error("the prompt is {n_prompt} tokens but the context holds {n_ctx} (-c); it must leave room to generate")]
    PromptTooLong { n_prompt: usize, n_ctx: usize },
    /// The text callback failed (e.g. stdout was closed); the cause is kept for the caller.
    #[error("writing the output failed: {0}")]
    Output(#[source] std::io::Error),
}

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// The model produced an end-of-generation token (not counted, not shown, not cached).
    Eog,
    /// `n_predict` tokens were generated.
    Limit,
    /// A stop string appeared in the output (it is not part of the text).
    Stop,
    /// The next token would not fit the context.
    ContextFull,
    /// The interrupt flag was raised (Ctrl-C).
    Interrupted,
}

impl End {
    /// A short name for JSON records and `/stats`.
    pub fn as_str(self) -> &'static str {
        match self {
            End::Eog => "eog",
            End::Limit => "limit",
            End::Stop => "stop",
            End::ContextFull => "context",
            End::Interrupted => "interrupted",
        }
    }
}

/// What to generate after a prompt.
#[derive(Clone, Debug, Default)]
pub struct GenOptions {
    /// Most tokens to generate; `None` = until EOG or a full context.
    pub n_predict: Option<usize>,
    /// Stop when the output contains one of these (not included in the text).
    pub stops: Vec<String>,
}

/// What one [`Engine::generate`] call did.
#[derive(Clone, Debug)]
pub struct Generation {
    /// The text shown (stop string excluded), exactly the concatenation of what was streamed.
    pub text: String,
    /// Generated token ids (EOG excluded).
    pub tokens: Vec<u32>,
    /// Tokens of the prompt as given.
    pub n_prompt: usize,
    /// Prompt tokens that had to be evaluated (the rest were already cached).
    pub n_prefilled: usize,
    pub end: End,
    pub t_prompt: Duration,
    pub t_gen: Duration,
    /// Context shifts done while generating, as `(keep, discard)` over the prompt followed by
    /// the generated tokens (see [`State::drain_shifts`]).
    pub shifts: Vec<(usize, usize)>,
}

impl Generation {
    pub fn n_generated(&self) -> usize {
        self.tokens.len()
    }
}

/// Tokens per second, 0 when no time passed.
pub fn per_second(n: usize, t: Duration) -> f64 {
    let s = t.as_secs_f64();
    if s > 0.0 {
        n as f64 / s
    } else {
        0.0
    }
}

/// One model, one sequence and its KV cache.
pub struct Engine<'m, 'g> {
    model: &'m Model<'g>,
    tok: &'m Tokenizer,
    state: State,
    /// The tokens whose K/V the cache holds, in order: `cached.len() == state.len()`.
    cached: Vec<u32>,
    /// The logits after the last prompt evaluated, with that prompt's length: a prompt that is
    /// entirely cached again (a chat's `/regen`) reuses them instead of evaluating its last token
    /// alone, which would round differently from the batch it was first evaluated in.
    prompt_logits: Option<(usize, Vec<f32>)>,
}

impl<'m, 'g> Engine<'m, 'g> {
    pub fn new(
        model: &'m Model<'g>,
        tok: &'m Tokenizer,
        n_ctx: usize,
    ) -> Result<Self, EngineError> {
        Ok(Engine {
            model,
            tok,
            state: model.new_state(n_ctx)?,
            cached: Vec::new(),
            prompt_logits: None,
        })
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        self.tok
    }

    pub fn model(&self) -> &Model<'g> {
        self.model
    }

    pub fn n_ctx(&self) -> usize {
        self.state.n_ctx()
    }

    /// Context shift when generation reaches the context size: `Some(keep)` keeps the first
    /// `keep` cached tokens and drops the older half of the rest (see `Model::context_shift`),
    /// `None` (the default, as in llama.cpp) ends generation with `End::ContextFull`.
    pub fn set_context_shift(&mut self, keep: Option<usize>) {
        self.state.set_context_shift(keep);
    }

    /// The sequence's state (its KV cache), for inspection.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The tokens in the cache (the last prompt and what was generated after it).
    pub fn cached(&self) -> &[u32] {
        &self.cached
    }

    /// Forget the cache.
    pub fn clear(&mut self) {
        self.state.truncate(0);
        self.cached.clear();
        self.prompt_logits = None;
    }

    /// Makes room for `prompt` before [`Engine::generate`] as llama-cli does for new input that
    /// would fill the context: while the prompt leaves no room to generate, keeps the cached
    /// prefix it shares and context-shifts it (the first `keep` tokens of
    /// [`Engine::set_context_shift`] stay, the older half of the rest goes, kept keys are
    /// re-rotated), removing the same tokens from `prompt`. Returns the shifts done, as
    /// `(keep, discard)` over `prompt`. Without context shift, or when the shared prefix is too
    /// short to free enough, nothing changes and the error says how long the prompt is.
    pub fn make_room(&mut self, prompt: &mut Vec<u32>) -> Result<Vec<(usize, usize)>, EngineError> {
        let n_ctx = self.state.n_ctx();
        if prompt.len() < n_ctx {
            return Ok(Vec::new());
        }
        let too_long = EngineError::PromptTooLong {
            n_prompt: prompt.len(),
            n_ctx,
        };
        let Some(keep) = self.state.context_shift() else {
            return Err(too_long);
        };
        let common = self
            .cached
            .iter()
            .zip(prompt.iter())
            .take_while(|(a, b)| a == b)
            .count();
        // Check first that shifting the shared prefix frees enough, so that a refused prompt
        // leaves the cache as it was.
        let (mut n_past, mut len) = (common, prompt.len());
        while len >= n_ctx {
            let discard = n_past.saturating_sub(keep) / 2;
            if discard == 0 {
                return Err(too_long);
            }
            n_past -= discard;
            len -= discard;
        }
        let n = self.state.truncate(common);
        self.cached.truncate(n);
        let mut shifts = Vec::new();
        while prompt.len() >= n_ctx {
            if self.state.len().saturating_sub(keep) < 2 {
                // A window ring could not keep the shared prefix (truncate emptied it).
                return Err(EngineError::PromptTooLong {
                    n_prompt: prompt.len(),
                    n_ctx,
                });
            }
            self.model.context_shift(&mut self.state)?;
            for (k, d) in self.state.drain_shifts() {
                self.cached.drain(k..k + d);
                prompt.drain(k..k + d);
                shifts.push((k, d));
            }
            self.prompt_logits = None;
        }
        Ok(shifts)
    }

    /// Makes the cache hold `prompt` and returns the logits after its last token, evaluating
    /// only what is not cached yet. At least the last token is always evaluated, since the
    /// logits of earlier positions are not kept. `on_progress(done, total)` follows the
    /// evaluation; a raised `interrupt` stops between chunks with `Ok(None)`.
    fn prefill(
        &mut self,
        prompt: &[u32],
        interrupt: Option<&AtomicBool>,
        on_progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Option<(Vec<f32>, usize)>, EngineError> {
        let common = self
            .cached
            .iter()
            .zip(prompt)
            .take_while(|(a, b)| a == b)
            .count();
        if let Some((n, logits)) = &self.prompt_logits {
            if *n == prompt.len() && common >= *n && self.state.truncate(*n) == *n {
                self.cached.truncate(*n);
                on_progress(0, 0);
                return Ok(Some((logits.clone(), 0)));
            }
        }
        // A sliding-window ring may no longer hold what the shared prefix needs; truncate says
        // how much it kept (possibly nothing).
        let keep = self.state.truncate(common.min(prompt.len() - 1));
        self.cached.truncate(keep);
        let todo = &prompt[keep..];
        let mut logits = Vec::new();
        for (i, chunk) in todo.chunks(PREFILL_CHUNK).enumerate() {
            if interrupt.is_some_and(|f| f.load(Ordering::Relaxed)) {
                return Ok(None);
            }
            on_progress(i * PREFILL_CHUNK, todo.len());
            let out = self.model.forward(&mut self.state, chunk, false)?;
            self.cached.extend_from_slice(chunk);
            logits.clear();
            logits.extend_from_slice(out);
        }
        on_progress(todo.len(), todo.len());
        self.prompt_logits = Some((prompt.len(), logits.clone()));
        Ok(Some((logits, todo.len())))
    }

    /// Evaluates `prompt` (reusing the cached prefix it shares), then samples up to
    /// `opts.n_predict` tokens, handing each new piece of text to `on_text` as soon as it is
    /// complete UTF-8 and cannot be the start of a stop string. The whole prompt is `accept`ed
    /// by the sampler first, so penalties see it as in llama.cpp. `interrupt` is checked between
    /// prompt chunks and between tokens; special tokens never reach the text.
    pub fn generate(
        &mut self,
        prompt: &[u32],
        sampler: &mut Sampler,
        opts: &GenOptions,
        interrupt: Option<&AtomicBool>,
        on_progress: &mut dyn FnMut(usize, usize),
        on_text: &mut dyn FnMut(&str) -> std::io::Result<()>,
    ) -> Result<Generation, EngineError> {
        if prompt.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        let n_ctx = self.state.n_ctx();
        if prompt.len() >= n_ctx {
            return Err(EngineError::PromptTooLong {
                n_prompt: prompt.len(),
                n_ctx,
            });
        }
        let t0 = Instant::now();
        let mut gen = Generation {
            text: String::new(),
            tokens: Vec::new(),
            n_prompt: prompt.len(),
            n_prefilled: 0,
            end: End::Interrupted,
            t_prompt: Duration::ZERO,
            t_gen: Duration::ZERO,
            shifts: Vec::new(),
        };
        let Some((logits, n_prefilled)) = self.prefill(prompt, interrupt, on_progress)? else {
            gen.t_prompt = t0.elapsed();
            return Ok(gen);
        };
        // Accepting the whole prompt leaves the penalty window holding its last tokens, whatever
        // the sampler saw before (a chat's earlier turns, a batch's previous prompt).
        for &t in prompt {
            sampler.accept(t);
        }
        gen.n_prefilled = n_prefilled;
        gen.t_prompt = t0.elapsed();

        let t1 = Instant::now();
        let mut out = TextOut::new(opts.stops.clone());
        let tok = self.tok;
        let result = decode(
            self.model,
            &mut self.state,
            logits,
            sampler,
            &|id| tok.is_eog(id),
            opts.n_predict,
            interrupt,
            |id| -> Result<bool, EngineError> {
                gen.tokens.push(id);
                let (shown, stopped) = out.push(&tok.token_to_piece(id, false));
                if !shown.is_empty() {
                    on_text(&shown).map_err(EngineError::Output)?;
                    gen.text.push_str(&shown);
                }
                Ok(!stopped)
            },
        );
        // The state is the truth about what the cache holds, also after an error; context
        // shifts removed runs of tokens from it.
        let mut all = prompt.to_vec();
        all.extend_from_slice(&gen.tokens);
        gen.shifts = self.state.drain_shifts();
        for &(keep, discard) in &gen.shifts {
            all.drain(keep.min(all.len())..(keep + discard).min(all.len()));
        }
        all.truncate(self.state.len());
        self.cached = all;
        if !gen.shifts.is_empty() {
            // The kept logits belong to positions a shift has moved.
            self.prompt_logits = None;
        }
        gen.end = result?;
        if gen.end != End::Stop {
            let rest = out.finish();
            if !rest.is_empty() {
                on_text(&rest).map_err(EngineError::Output)?;
                gen.text.push_str(&rest);
            }
        }
        gen.t_gen = t1.elapsed();
        Ok(gen)
    }
}

/// The sampling loop after a prompt: samples from `logits`, passes each kept token to
/// `on_token` (false = stop, e.g. a stop string) and evaluates it, until an end-of-generation
/// token (not passed on, not evaluated), `n_predict` tokens, an interrupt, or a full context.
/// The last token passed on is not evaluated unless the loop goes on, so a limit of n costs n-1
/// single-token forward passes, as in llama.cpp. Shared by [`Engine::generate`] and the
/// library-level loop of `infer run`'s tests.
#[allow(clippy::too_many_arguments)]
pub fn decode<E: From<EngineError>>(
    model: &Model,
    state: &mut State,
    mut logits: Vec<f32>,
    sampler: &mut Sampler,
    is_eog: &dyn Fn(u32) -> bool,
    n_predict: Option<usize>,
    interrupt: Option<&AtomicBool>,
    mut on_token: impl FnMut(u32) -> Result<bool, E>,
) -> Result<End, E> {
    let mut n = 0usize;
    let n_ctx = state.n_ctx();
    // Greedy on a GPU: the device picks the argmax and one id comes back, not the logits.
    let on_device = state.gpu.is_some() && plain_greedy(sampler);
    let mut next: Option<u32> = None;
    loop {
        if n_predict.is_some_and(|l| n >= l) {
            return Ok(End::Limit);
        }
        let id = match next.take() {
            Some(id) => id,
            None => sampler.sample(&logits).map_err(EngineError::from)?,
        };
        if is_eog(id) {
            return Ok(End::Eog);
        }
        sampler.accept(id);
        n += 1;
        if !on_token(id)? {
            return Ok(End::Stop);
        }
        if n_predict.is_some_and(|l| n >= l) {
            return Ok(End::Limit);
        }
        if interrupt.is_some_and(|f| f.load(Ordering::Relaxed)) {
            return Ok(End::Interrupted);
        }
        // With context shift on, shift as llama-completion does, one cell before the context
        // is full; otherwise stop when it is.
        if state.context_shift().is_some() && state.len() + 1 >= n_ctx {
            model.context_shift(state).map_err(EngineError::from)?;
        } else if state.len() >= n_ctx {
            return Ok(End::ContextFull);
        }
        if on_device {
            next = model
                .forward_argmax(state, &[id])
                .map_err(EngineError::from)?;
            if next.is_some() {
                continue;
            }
        }
        let l = model
            .forward(state, &[id], false)
            .map_err(EngineError::from)?;
        logits.clear();
        logits.extend_from_slice(l);
    }
}

/// Whether `sampler` is the argmax of the raw logits (temperature <= 0 and no penalty), which
/// the device can compute without the logits leaving it.
fn plain_greedy(sampler: &Sampler) -> bool {
    let p = sampler.params();
    let penalties = p.repeat_last_n > 0
        && (p.repeat_penalty != 1.0 || p.frequency_penalty != 0.0 || p.presence_penalty != 0.0);
    p.temp <= 0.0 && !penalties
}
