//! Continuous batching: up to N sequences in flight, each in its own slot (a [`State`] with its
//! own KV cache, positions and window ring), decoded together one token each per step, so every
//! weight is read once for all of them. A slot freed by a finished sequence takes the next
//! request at the following step. Prompts are evaluated in their own forward passes, one
//! 512-token chunk at a time and at most 512 prompt tokens per step, so a long prompt never
//! stalls the running sequences for more than one chunk.
//!
//! Batch invariance: a prompt's completion does not depend on N or on its neighbours. Its prompt
//! is evaluated exactly as `infer run` evaluates it (the same 512-token physical batches, from an
//! empty cache), and each decode row takes llama.cpp's one-token arithmetic in the shared pass
//! (`Model::forward_segments`), bit-identical to decoding that sequence alone. Each sequence
//! samples with its own sampler and seed, so sampled text is the same for every N too.
//!
//! It knows nothing of JSON or terminals; `cli::batch` reads requests and prints completions.

use super::{End, EngineError, GenOptions, TextOut};
use crate::model::{Batch, Model, Segment, State};
use crate::sample::{Sampler, SamplerParams};
use crate::tokenizer::Tokenizer;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Prompt tokens per forward pass: llama.cpp's physical batch (`N_UBATCH`), which `infer run`
/// evaluates a prompt in, so a prompt's rows round as they do there.
const CHUNK: usize = crate::model::kv_cache::N_UBATCH;

/// One prompt to complete.
#[derive(Clone, Debug)]
pub struct Request {
    pub prompt: Vec<u32>,
    pub params: SamplerParams,
    pub opts: GenOptions,
}

/// A finished request: the text and tokens generated, and why it ended.
#[derive(Clone, Debug)]
pub struct Completion {
    /// The text (stop string excluded).
    pub text: String,
    /// Generated token ids (EOG excluded).
    pub tokens: Vec<u32>,
    pub n_prompt: usize,
    pub end: End,
    /// From admission to the first token's logits (the prompt's chunks, interleaved with the
    /// other sequences' steps).
    pub t_prompt: Duration,
    /// From then to the end.
    pub t_gen: Duration,
}

/// What one step finished: the caller's index of each request and its outcome.
pub type Finished = (usize, Result<Completion, EngineError>);

/// Totals since the scheduler was made.
#[derive(Clone, Debug, Default)]
pub struct BatchStats {
    /// Prompt tokens evaluated, and the time their forward passes took.
    pub n_prompt: usize,
    pub t_prompt: Duration,
    /// Tokens evaluated by the shared decode passes, and the time those passes (with their
    /// sampling) took: the aggregate decode rate is one over the other.
    pub n_decoded: usize,
    pub t_decode: Duration,
    /// Decode passes, and the most sequences one of them carried.
    pub n_steps: usize,
    pub max_rows: usize,
}

/// A request in a slot.
struct Seq {
    index: usize,
    state: State,
    prompt: Vec<u32>,
    /// Prompt tokens evaluated so far.
    done: usize,
    sampler: Sampler,
    n_predict: Option<usize>,
    out: TextOut,
    text: String,
    tokens: Vec<u32>,
    /// The token to evaluate in the next decode pass, once the prompt is in.
    next: Option<[u32; 1]>,
    t0: Instant,
    t_prompt: Duration,
}

/// Up to `n_parallel` sequences of one model, stepped together.
pub struct Scheduler<'m, 'g> {
    model: &'m Model<'g>,
    tok: &'m Tokenizer,
    /// Idle slots, each with an empty cache.
    free: Vec<State>,
    /// Requests without a slot yet, in submission order.
    waiting: VecDeque<(usize, Request)>,
    /// Sequences in slots, in the order they were admitted.
    running: Vec<Seq>,
    batch: Batch,
    logits: Vec<f32>,
    stats: BatchStats,
}

impl<'m, 'g> Scheduler<'m, 'g> {
    /// `n_parallel` slots of `n_ctx` positions each, allocated now.
    pub fn new(
        model: &'m Model<'g>,
        tok: &'m Tokenizer,
        n_ctx: usize,
        n_parallel: usize,
    ) -> Result<Self, EngineError> {
        let free = (0..n_parallel.max(1))
            .map(|_| model.new_state(n_ctx))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Scheduler {
            model,
            tok,
            free,
            waiting: VecDeque::new(),
            running: Vec::new(),
            batch: Batch::new(),
            logits: Vec::new(),
            stats: BatchStats::default(),
        })
    }

    /// Bytes of the KV caches of every slot.
    pub fn cache_bytes(&self) -> usize {
        let f = self.free.iter().map(|s| s.kv().bytes());
        f.chain(self.running.iter().map(|s| s.state.kv().bytes()))
            .sum()
    }

    /// Whether nothing is waiting or in flight.
    pub fn is_idle(&self) -> bool {
        self.running.is_empty() && self.waiting.is_empty()
    }

    pub fn stats(&self) -> &BatchStats {
        &self.stats
    }

    /// Queues request `index`; it takes a slot at the first step that finds one free.
    pub fn submit(&mut self, index: usize, req: Request) {
        self.waiting.push_back((index, req));
    }

    /// Moves waiting requests into free slots, in submission order. A request that cannot run
    /// (an empty prompt, one that leaves no room in the context) finishes at once.
    fn admit(&mut self, finished: &mut Vec<Finished>) {
        while let Some(state) = self.free.pop() {
            let Some((index, req)) = self.waiting.pop_front() else {
                self.free.push(state);
                return;
            };
            let n_ctx = state.n_ctx();
            let err = if req.prompt.is_empty() {
                Some(EngineError::EmptyPrompt)
            } else if req.prompt.len() >= n_ctx {
                Some(EngineError::PromptTooLong {
                    n_prompt: req.prompt.len(),
                    n_ctx,
                })
            } else {
                None
            };
            if let Some(e) = err {
                self.free.push(state);
                finished.push((index, Err(e)));
                continue;
            }
            self.running.push(Seq {
                index,
                state,
                prompt: req.prompt,
                done: 0,
                sampler: Sampler::new(req.params),
                n_predict: req.opts.n_predict,
                out: TextOut::new(req.opts.stops),
                text: String::new(),
                tokens: Vec::new(),
                next: None,
                t0: Instant::now(),
                t_prompt: Duration::ZERO,
            });
        }
    }

    /// One step: waiting requests take the free slots, then a shared decode pass runs over every
    /// sequence with a token to evaluate, then prompt chunks of admitted sequences (in admission
    /// order) until 512 prompt tokens have run. Returns the requests that finished; their slots
    /// take new requests at the next step. An
    /// error of a forward pass is returned as is (the sequences in it cannot go on).
    pub fn step(&mut self) -> Result<Vec<Finished>, EngineError> {
        let n_vocab = self.model.hparams().n_vocab;
        let mut finished = Vec::new();
        self.admit(&mut finished);
        let mut ended: Vec<Option<Result<End, EngineError>>> =
            (0..self.running.len()).map(|_| None).collect();

        let t = Instant::now();
        let mut segs: Vec<Segment> = self
            .running
            .iter_mut()
            .filter_map(|s| {
                let Seq { state, next, .. } = s;
                next.as_ref().map(|tokens| Segment { state, tokens })
            })
            .collect();
        let rows = segs.len();
        if rows > 0 {
            let logits = self.model.forward_segments(&mut self.batch, &mut segs)?;
            drop(segs);
            let decoding = self.running.iter_mut().enumerate();
            let decoding = decoding.filter(|(_, s)| s.next.is_some());
            for ((i, seq), row) in decoding.zip(logits.chunks_exact(n_vocab)) {
                ended[i] = advance(seq, self.tok, row);
            }
            self.stats.n_decoded += rows;
            self.stats.t_decode += t.elapsed();
            self.stats.n_steps += 1;
            self.stats.max_rows = self.stats.max_rows.max(rows);
        } else {
            drop(segs);
        }

        let mut budget = CHUNK;
        for (i, seq) in self.running.iter_mut().enumerate() {
            if budget == 0 {
                break;
            }
            if seq.done == seq.prompt.len() {
                continue;
            }
            // Chunk boundaries at multiples of 512, as `infer run` splits the prompt.
            let end = ((seq.done / CHUNK + 1) * CHUNK).min(seq.prompt.len());
            let t = Instant::now();
            let chunk = &seq.prompt[seq.done..end];
            let out = self.model.forward(&mut seq.state, chunk, false);
            self.stats.t_prompt += t.elapsed();
            let out = match out {
                Ok(l) => l,
                Err(e) => {
                    ended[i] = Some(Err(e.into()));
                    continue;
                }
            };
            self.stats.n_prompt += chunk.len();
            budget = budget.saturating_sub(chunk.len());
            seq.done = end;
            if seq.done == seq.prompt.len() {
                self.logits.clear();
                self.logits.extend_from_slice(out);
                // The whole prompt is accepted first, so penalties see it as in llama.cpp.
                for &t in &seq.prompt {
                    seq.sampler.accept(t);
                }
                seq.t_prompt = seq.t0.elapsed();
                ended[i] = advance(seq, self.tok, &self.logits);
            }
        }

        // Finished sequences leave in admission order; their slots are emptied for reuse.
        let mut kept = Vec::with_capacity(self.running.len());
        for (mut seq, end) in self.running.drain(..).zip(ended) {
            let Some(result) = end else {
                kept.push(seq);
                continue;
            };
            seq.state.truncate(0);
            let completion = result.map(|end| {
                if end != End::Stop {
                    seq.text.push_str(&seq.out.finish());
                }
                Completion {
                    text: std::mem::take(&mut seq.text),
                    tokens: std::mem::take(&mut seq.tokens),
                    n_prompt: seq.prompt.len(),
                    end,
                    t_prompt: seq.t_prompt,
                    t_gen: seq.t0.elapsed().saturating_sub(seq.t_prompt),
                }
            });
            finished.push((seq.index, completion));
            self.free.push(seq.state);
        }
        self.running = kept;
        Ok(finished)
    }
}

/// After `logits` of a sequence's last evaluated token: samples the next token and decides, as
/// `engine::decode` does, whether the sequence goes on (`None`, with the token to evaluate in
/// `seq.next`) or ends and why.
fn advance(seq: &mut Seq, tok: &Tokenizer, logits: &[f32]) -> Option<Result<End, EngineError>> {
    seq.next = None;
    let n_predict = seq.n_predict;
    let limit = |n: usize| n_predict.is_some_and(|l| n >= l);
    if limit(seq.tokens.len()) {
        return Some(Ok(End::Limit));
    }
    let id = match seq.sampler.sample(logits) {
        Ok(id) => id,
        Err(e) => return Some(Err(e.into())),
    };
    if tok.is_eog(id) {
        return Some(Ok(End::Eog));
    }
    seq.sampler.accept(id);
    seq.tokens.push(id);
    let (shown, stopped) = seq.out.push(&tok.token_to_piece(id, false));
    seq.text.push_str(&shown);
    if stopped {
        return Some(Ok(End::Stop));
    }
    if limit(seq.tokens.len()) {
        return Some(Ok(End::Limit));
    }
    if seq.state.len() >= seq.state.n_ctx() {
        return Some(Ok(End::ContextFull));
    }
    seq.next = Some([id]);
    None
}
