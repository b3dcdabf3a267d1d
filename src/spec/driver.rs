//! The speculative generation loop: draft, verify, emit, roll back, adapt.
//!
//! Invariant between steps: `history` is the prompt plus every emitted token; the target's cache
//! holds all of it but the last token, and the draft's cache holds a prefix of it (it sits out
//! steps when drafting does not pay, and catches up when it drafts again). The first step starts
//! right after the prompt, so even the first generated token goes through verification.
//!
//! All randomness of a run (draft draws, acceptance uniforms, residual and bonus draws) comes
//! from one [`Rng`] seeded with the target's sampling seed, consumed in that order within a step,
//! so a seed fixes the output. Greedy decoding draws nothing.

use super::adapt::Adapt;
use super::chain::Chain;
use super::proposer::{DraftLimits, Drafted, Proposer};
use super::shortlist::{base_ids, Shortlist};
use super::verifier::Verifier;
use super::SpecError;

use crate::model::Model;
use crate::sample::{Rng, SamplerParams};
use crate::tokenizer::Tokenizer;
use std::time::{Duration, Instant};

/// The `--draft-*` settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SpecParams {
    /// `--draft-max`: most tokens drafted per step.
    pub n_max: usize,
    /// `--draft-min`: a draft shorter than this is dropped and the step decodes plainly.
    pub n_min: usize,
    /// `--draft-p-min`: stop drafting when the draft's top probability is below this.
    pub p_min: f32,
    /// Choose each draft's length from measured costs and acceptance ([`super::adapt`]); when
    /// false, every step asks for `n_max` tokens (llama.cpp's behaviour; tests use it to check
    /// every step's verification).
    pub adaptive: bool,
    /// `--draft-vocab`: the draft computes logits only for a shortlist built on this many of
    /// the vocabulary's most frequent tokens ([`super::shortlist`]); 0 = its whole output head.
    pub draft_vocab: usize,
}

/// `--draft-vocab`'s default. Gemma 3 270M as the Q4_K_M draft of its F16 self: the draft's
/// choice equals the target's 97.1% of the time with it (97.5% at 32768, 98.0% with all 262,144
/// ids), while its head reads 12 MB per token instead of 178 MB.
pub const DEFAULT_DRAFT_VOCAB: usize = 16384;

impl Default for SpecParams {
    /// llama.cpp's defaults (`common_params_speculative`) but for `p_min`, and the shortlist
    /// head. llama.cpp stops drafting below a top probability of 0.75; here the adaptive length
    /// does that job from measured acceptance, and the cut costs more than it saves with a draft
    /// of the target's own family: Gemma 3 270M's Q4_K_M draft agrees with its F16 target 97% of
    /// the time overall, unsure positions included, yet at 0.75 it stopped after 2-3 tokens and
    /// the policy found drafting not worth it (`scripts/bench-spec.sh`: x0.91 at 0.75, x1.21 at 0
    /// in the same loaded conditions).
    fn default() -> Self {
        SpecParams {
            n_max: 16,
            n_min: 0,
            p_min: 0.0,
            adaptive: true,
            draft_vocab: DEFAULT_DRAFT_VOCAB,
        }
    }
}

/// Counters of one or more runs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SpecStats {
    /// Tokens the draft proposed (and the target checked).
    pub drafted: usize,
    /// Drafted tokens the target kept.
    pub accepted: usize,
    /// Verification forwards with at least one drafted token.
    pub spec_steps: usize,
    /// Steps decoded without a draft (draft sitting out, or a draft shorter than `--draft-min`).
    pub plain_steps: usize,
    /// The draft length used at each speculative step, in order.
    pub lengths: Vec<usize>,
    /// Time spent drafting (draft forwards, catching up included) and verifying (target
    /// forwards, the first one's prompt part excluded).
    pub t_draft: Duration,
    pub t_verify: Duration,
    /// Ids in the draft's shortlist at the end, or `None` for its whole output head.
    pub shortlist: Option<usize>,
}

impl SpecStats {
    pub fn acceptance(&self) -> f64 {
        if self.drafted == 0 {
            0.0
        } else {
            self.accepted as f64 / self.drafted as f64
        }
    }
}

/// Why generation ended (the same cases as `infer run`'s plain loop).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// The target produced an end-of-generation token (not counted, not passed on).
    Eog,
    /// `n_predict` tokens were generated.
    Limit,
    /// The token callback asked to stop.
    Stopped,
    /// The next token would not fit the context.
    ContextFull,
}

/// What one [`Speculator::generate`] call did.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub tokens: Vec<u32>,
    pub end: End,
    pub t_prompt: Duration,
    pub t_gen: Duration,
    /// This run's counters.
    pub stats: SpecStats,
}

/// A target model and a draft model, each with its own cache, generating one sequence.
pub struct Speculator<'m, 'g> {
    proposer: Proposer<'m, 'g>,
    verifier: Verifier<'m, 'g>,
    n_vocab_target: usize,
    params: SpecParams,
    rng: Rng,
    /// The prompt and tokens of the last run: what the caches may still hold a prefix of.
    history: Vec<u32>,
    drafts: Vec<Drafted>,
}

impl<'m, 'g> Speculator<'m, 'g> {
    /// Both models get a cache of `n_ctx` positions. The caller has checked that the
    /// vocabularies are compatible ([`super::check_vocab`]); `vocab` is the target's, which the
    /// draft's shortlist is chosen from (`params.draft_vocab`); `draft_sampling` is the chain the
    /// draft draws its proposals from (any chain keeps the output exact; one close to the
    /// target's gets more accepted).
    pub fn new(
        target: &'m Model<'g>,
        draft: &'m Model<'g>,
        vocab: &Tokenizer,
        n_ctx: usize,
        target_sampling: SamplerParams,
        draft_sampling: SamplerParams,
        params: SpecParams,
    ) -> Result<Self, SpecError> {
        if params.n_max == 0 {
            return Err(SpecError::Params("--draft-max must be at least 1".into()));
        }
        if params.n_min > params.n_max {
            return Err(SpecError::Params(format!(
                "--draft-min {} is larger than --draft-max {}",
                params.n_min, params.n_max
            )));
        }
        if !(0.0..=1.0).contains(&params.p_min) {
            return Err(SpecError::Params(format!(
                "--draft-p-min must be in [0, 1], got {}",
                params.p_min
            )));
        }
        let rng = Rng::new(target_sampling.seed);
        let n_draft_vocab = draft.hparams().n_vocab;
        let shortlist = if params.draft_vocab > 0 && params.draft_vocab < n_draft_vocab {
            Some(Shortlist::new(draft, &base_ids(vocab, params.draft_vocab))?)
        } else {
            None
        };
        let chain = Chain::new(draft_sampling);
        Ok(Speculator {
            proposer: Proposer::new(draft, draft.new_state(n_ctx)?, chain, shortlist),
            verifier: Verifier::new(
                target,
                target.new_state(n_ctx)?,
                Chain::new(target_sampling),
            ),
            n_vocab_target: target.hparams().n_vocab,
            params,
            rng,
            history: Vec::new(),
            drafts: Vec::new(),
        })
    }

    /// New sampling settings for later runs (a chat's `/set`): the target's chain, the draft's,
    /// and the random stream restarted from the target's seed when that changed. The caches
    /// are kept.
    pub fn set_sampling(&mut self, target: SamplerParams, draft: SamplerParams) {
        if target.seed != self.verifier.seed() {
            self.rng = Rng::new(target.seed);
        }
        self.verifier.set_chain(Chain::new(target));
        self.proposer.set_chain(Chain::new(draft));
    }

    /// Tokens the target's cache holds a prefix of: the last run's prompt and output.
    pub fn history(&self) -> &[u32] {
        &self.history
    }

    /// Restarts the random stream (as a new `--seed`).
    pub fn reseed(&mut self, seed: u64) {
        self.rng = Rng::new(seed);
    }

    /// Generates after `prompt` until an end-of-generation token, `n_predict` tokens, a `false`
    /// from `on_token` (called with each token as soon as it is final), or a full context. The
    /// caches keep whatever prefix they share with the previous run's prompt.
    pub fn generate<E: From<SpecError>>(
        &mut self,
        prompt: &[u32],
        n_predict: Option<usize>,
        is_eog: &dyn Fn(u32) -> bool,
        mut on_token: impl FnMut(u32) -> Result<bool, E>,
    ) -> Result<Outcome, E> {
        let n_ctx = self.verifier.n_ctx();
        if prompt.is_empty() {
            return Err(SpecError::EmptyPrompt.into());
        }
        if prompt.len() >= n_ctx {
            return Err(SpecError::PromptTooLong {
                n_prompt: prompt.len(),
                n_ctx,
            }
            .into());
        }
        let t0 = Instant::now();
        let common = self
            .history
            .iter()
            .zip(prompt)
            .take_while(|(a, b)| a == b)
            .count()
            .min(prompt.len() - 1);
        // The target evaluates the rest of the prompt in the first verification, in one batch
        // as plain decoding does (its last row's rounding then matches); the draft lags by one.
        // The same prompt again (a chat's /regen): the target's cache and kept logits serve.
        let whole = common + 1 == prompt.len()
            && self.history.len() >= prompt.len()
            && self.history[..prompt.len()] == *prompt
            && self.verifier.reuse_prompt(prompt.len());
        if !whole {
            self.verifier.truncate(common);
        }
        self.proposer.truncate(common);
        let body = &prompt[..prompt.len() - 1];
        self.proposer.feed(&body[self.proposer.cached()..])?;
        let t_prompt = t0.elapsed();

        let mut history = std::mem::take(&mut self.history);
        history.clear();
        history.extend_from_slice(prompt);
        let mut out = Outcome {
            tokens: Vec::new(),
            end: End::Limit,
            t_prompt,
            t_gen: Duration::ZERO,
            stats: SpecStats {
                shortlist: self.proposer.shortlist_len(),
                ..SpecStats::default()
            },
        };
        let mut adapt = Adapt::new(self.params.n_max, self.params.n_min);
        let t1 = Instant::now();
        let result = self.run(
            &mut history,
            n_predict,
            is_eog,
            &mut on_token,
            &mut adapt,
            &mut out,
        );
        out.t_gen = t1
            .elapsed()
            .saturating_sub(out.t_prompt.saturating_sub(t_prompt));
        self.history = history;
        result.map(|end| {
            out.end = end;
            out
        })
    }

    fn run<E: From<SpecError>>(
        &mut self,
        history: &mut Vec<u32>,
        n_predict: Option<usize>,
        is_eog: &dyn Fn(u32) -> bool,
        on_token: &mut impl FnMut(u32) -> Result<bool, E>,
        adapt: &mut Adapt,
        out: &mut Outcome,
    ) -> Result<End, E> {
        let n_ctx = self.verifier.n_ctx();
        loop {
            let left = n_predict.map_or(usize::MAX, |l| l.saturating_sub(out.tokens.len()));
            if left == 0 {
                return Ok(End::Limit);
            }
            // Room: the verify batch (last token + drafts) must fit the target's context, and
            // drafts beyond what may still be emitted would be wasted.
            let room = (n_ctx - history.len()).min(left);
            // The first verification of a run also evaluates the rest of the prompt.
            let prompt_left = history.len() - self.verifier.cached() > 1;
            let want = if self.params.adaptive {
                adapt.next_len(room)
            } else {
                self.params.n_max.min(room)
            };
            self.drafts.clear();
            if want > 0 {
                let lim = DraftLimits {
                    n: want,
                    p_min: self.params.p_min,
                    n_vocab_target: self.n_vocab_target,
                };
                let cost =
                    self.proposer
                        .propose(history, lim, is_eog, &mut self.rng, &mut self.drafts)?;
                out.stats.t_draft += cost.catch_up + cost.drafting;
                adapt.time_draft(cost.drafting.as_secs_f64() / cost.forwards as f64);
                adapt.record_draft(self.drafts.len(), cost.unsure);
                if self.drafts.len() < self.params.n_min {
                    self.drafts.clear();
                }
            }
            let t = Instant::now();
            let v = self
                .verifier
                .verify(history, &self.drafts, &mut self.rng)
                .map_err(SpecError::from)?
                .ok_or(SpecError::NoCandidates)?;
            let k = self.drafts.len();
            // A prompt batch says nothing about the cost or success of drafting; its time is
            // prompt time.
            if prompt_left {
                out.t_prompt += t.elapsed();
            } else {
                out.stats.t_verify += t.elapsed();
                adapt.time_verify(k + 1, t.elapsed().as_secs_f64());
                adapt.record(k, v.accepted, v.accepted < k);
            }
            if k > 0 {
                out.stats.drafted += k;
                out.stats.accepted += v.accepted;
                out.stats.spec_steps += 1;
                out.stats.lengths.push(k);
            } else {
                out.stats.plain_steps += 1;
            }
            // The draft cache holds history + drafts[..k-1]; keep what is still history.
            let draft_valid = history.len() + v.accepted.min(k.saturating_sub(1));
            if self.proposer.cached() > draft_valid {
                self.proposer.truncate(draft_valid);
            }
            let emitted = self.drafts[..v.accepted]
                .iter()
                .map(|d| d.id)
                .chain([v.next]);
            for id in emitted {
                if is_eog(id) {
                    return Ok(End::Eog);
                }
                history.push(id);
                out.tokens.push(id);
                if !on_token(id)? {
                    return Ok(End::Stopped);
                }
                if n_predict.is_some_and(|l| out.tokens.len() >= l) {
                    return Ok(End::Limit);
                }
                // Evaluating this token would need position `history.len() - 1`.
                if history.len() > n_ctx {
                    return Ok(End::ContextFull);
                }
            }
        }
    }
}
