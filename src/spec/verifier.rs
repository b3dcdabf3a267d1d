//! The target side: one batched forward scores the last emitted token and every drafted token,
//! each row rounded as if decoded alone (`State::set_rows_as_decode`, so the scores equal plain
//! token-by-token decoding bit for bit), then the drafts are checked in order. The first
//! verification of a run evaluates the rest of the prompt first, as one prompt batch (as plain
//! decoding does), then the drafts. Greedy: a draft is kept
//! while it equals the target's own greedy choice, so the text is the target's alone. Sampling:
//! the rule of [`super::acceptance`]. The first rejected position emits the target's replacement;
//! when every draft is kept the last row gives one more token for free. The target's cache is
//! rolled back to the kept tokens.

use super::acceptance::{self, Verdict};
use super::chain::{Chain, Logits};
use super::proposer::Drafted;
use crate::model::{Model, ModelError, State};
use crate::sample::Rng;

/// What one verification produced: `drafted[..accepted]` then `next`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verified {
    pub accepted: usize,
    pub next: u32,
}

pub struct Verifier<'m, 'g> {
    model: &'m Model<'g>,
    state: State,
    chain: Chain,
    batch: Vec<u32>,
    /// Logits rows when a verification takes two forwards (see `verify`).
    rows: Vec<f32>,
    /// The logits after the last prompt batch, with the prompt's length: a prompt that is
    /// entirely cached again (a chat's `/regen`) reuses them, as plain decoding does, instead
    /// of evaluating its last token alone (which rounds differently).
    prompt_logits: Option<(usize, Vec<f32>)>,
}

impl<'m, 'g> Verifier<'m, 'g> {
    pub fn new(model: &'m Model<'g>, state: State, chain: Chain) -> Self {
        Verifier {
            model,
            state,
            chain,
            batch: Vec::new(),
            rows: Vec::new(),
            prompt_logits: None,
        }
    }

    pub fn cached(&self) -> usize {
        self.state.len()
    }

    pub fn n_ctx(&self) -> usize {
        self.state.n_ctx()
    }

    /// The seed of the chain's sampling settings.
    pub fn seed(&self) -> u64 {
        self.chain.params().seed
    }

    /// Replaces the sampler chain (a chat's `/set`); the cache is kept.
    pub fn set_chain(&mut self, chain: Chain) {
        self.chain = chain;
    }

    pub fn truncate(&mut self, n: usize) {
        self.state.truncate(n);
    }

    /// Makes the cache hold exactly the first `n` tokens and returns true when the logits after
    /// them are kept from the last prompt batch (the same prompt again); else changes nothing.
    pub fn reuse_prompt(&mut self, n: usize) -> bool {
        let kept = matches!(&self.prompt_logits, Some((len, _)) if *len == n);
        kept && self.state.len() >= n && self.state.truncate(n) == n
    }

    /// Evaluates `tokens` without sampling (prompt prefill).
    pub fn feed(&mut self, tokens: &[u32]) -> Result<(), ModelError> {
        if !tokens.is_empty() {
            self.model.forward(&mut self.state, tokens, false)?;
        }
        Ok(())
    }

    /// Scores `drafted` after `history`, whose tail from `cached()` the cache does not hold yet
    /// (the last token, or the rest of the prompt on a run's first call, then without drafts). Afterwards the cache holds `history` plus the
    /// accepted drafts. `history` is restored before returning. Draws come from `rng`: one
    /// acceptance uniform per checked draft (sampling only), one more on a rejection or for the
    /// bonus token.
    pub fn verify(
        &mut self,
        history: &mut Vec<u32>,
        drafted: &[Drafted],
        rng: &mut Rng,
    ) -> Result<Option<Verified>, ModelError> {
        let base = history.len();
        let from = self.state.len();
        debug_assert!(
            from <= base,
            "the target cache must not run ahead of the history"
        );
        self.batch.clear();
        self.batch.extend(drafted.iter().map(|d| d.id));
        let logits: &[f32] = if from == base {
            // The whole prompt is cached and its last logits kept (see `reuse_prompt`).
            self.rows.clear();
            if let Some((_, l)) = &self.prompt_logits {
                self.rows.extend_from_slice(l);
            }
            if !drafted.is_empty() {
                self.state.set_rows_as_decode(true);
                let more = self.model.forward(&mut self.state, &self.batch, true)?;
                self.rows.extend_from_slice(more);
            }
            self.batch.insert(0, history[base - 1]);
            &self.rows
        } else if from + 1 == base {
            // One pending token: it and the drafts are decode steps, each row rounded so.
            self.batch.insert(0, history[from]);
            self.state.set_rows_as_decode(true);
            self.model
                .forward(&mut self.state, &self.batch, !drafted.is_empty())?
        } else {
            // The rest of a prompt: one prompt batch, as plain decoding evaluates it; then the
            // drafts as decode steps. Row 0 is the prompt's last, then one row per draft.
            self.state.set_rows_as_decode(false);
            let last = self
                .model
                .forward(&mut self.state, &history[from..], false)?;
            self.rows.clear();
            self.rows.extend_from_slice(last);
            self.prompt_logits = Some((base, last.to_vec()));
            if !drafted.is_empty() {
                self.state.set_rows_as_decode(true);
                let more = self.model.forward(&mut self.state, &self.batch, true)?;
                self.rows.extend_from_slice(more);
            }
            self.batch.insert(0, history[base - 1]);
            &self.rows
        };
        let n_vocab = logits.len() / self.batch.len();
        let mut result = None;
        for (j, row) in logits.chunks_exact(n_vocab).enumerate() {
            let Some(d) = drafted.get(j) else {
                // Every draft was kept: the last row's token is a bonus.
                let next = if self.chain.greedy() {
                    self.chain.argmax(Logits::Dense(row), history)
                } else {
                    self.chain
                        .dist(Logits::Dense(row), history)
                        .draw(rng.next_f64())
                };
                result = next.map(|next| Verified { accepted: j, next });
                break;
            };
            let verdict = if self.chain.greedy() {
                match self.chain.argmax(Logits::Dense(row), history) {
                    Some(t) if t == d.id => Some(Verdict::Accept),
                    other => other.map(Verdict::Reject),
                }
            } else {
                let p = self.chain.dist(Logits::Dense(row), history);
                let u = rng.next_f64();
                if acceptance::accepts(&p, &d.q, d.id, u) {
                    Some(Verdict::Accept)
                } else {
                    acceptance::residual(&p, &d.q)
                        .draw(rng.next_f64())
                        .map(Verdict::Reject)
                }
            };
            match verdict {
                Some(Verdict::Accept) => history.push(d.id),
                Some(Verdict::Reject(next)) => {
                    result = Some(Verified { accepted: j, next });
                    break;
                }
                None => break,
            }
        }
        history.truncate(base);
        let kept = result.map_or(0, |v| v.accepted);
        self.state.truncate(base + kept);
        Ok(result)
    }
}
