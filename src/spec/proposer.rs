//! The draft side: a small model with its own KV cache proposes the next few tokens, one cheap
//! forward each. Greedy decoding proposes the draft's argmax; sampling draws from the draft's
//! chain and remembers the distribution `q` it drew from, which the acceptance rule needs.
//! Drafting stops early when the draft is unsure (`--draft-p-min`), at an end-of-generation
//! token, or at an id the target's vocabulary lacks.

use super::acceptance::Dist;
use super::chain::Chain;
use crate::model::{Model, ModelError, State};
use crate::sample::Rng;
use std::time::{Duration, Instant};

/// One drafted token and the draft's distribution it came from (a point for greedy drafts).
#[derive(Clone, Debug)]
pub struct Drafted {
    pub id: u32,
    pub q: Dist,
}

/// What limits one draft.
#[derive(Clone, Copy, Debug)]
pub struct DraftLimits {
    /// Most tokens to propose.
    pub n: usize,
    /// Stop before a token whose draft probability (the top of the draft's distribution) is
    /// below this; 0 never stops.
    pub p_min: f32,
    /// Ids at or above this are not drafted (the target's vocabulary size).
    pub n_vocab_target: usize,
}

/// What one draft cost.
#[derive(Clone, Copy, Debug)]
pub struct DraftCost {
    /// Evaluating history the cache lacked beyond its last token (after the draft sat out some
    /// steps): a batched forward, not part of the per-token drafting cost.
    pub catch_up: Duration,
    /// The single-token forwards that produced the drafts.
    pub drafting: Duration,
    pub forwards: usize,
    /// Drafting stopped because the draft was unsure (`--draft-p-min`), not at the length limit.
    pub unsure: bool,
}

pub struct Proposer<'m, 'g> {
    model: &'m Model<'g>,
    state: State,
    chain: Chain,
    logits: Vec<f32>,
}

impl<'m, 'g> Proposer<'m, 'g> {
    pub fn new(model: &'m Model<'g>, state: State, chain: Chain) -> Self {
        Proposer {
            model,
            state,
            chain,
            logits: Vec::new(),
        }
    }

    /// Positions in the draft's cache.
    pub fn cached(&self) -> usize {
        self.state.len()
    }

    /// Replaces the sampler chain (a chat's `/set`); the cache is kept.
    pub fn set_chain(&mut self, chain: Chain) {
        self.chain = chain;
    }

    /// Drops cached positions `n..` (drafted tokens the target did not keep).
    pub fn truncate(&mut self, n: usize) {
        self.state.truncate(n);
    }

    /// Evaluates `tokens` without proposing (prompt prefill); the cache must hold exactly the
    /// history before them.
    pub fn feed(&mut self, tokens: &[u32]) -> Result<(), ModelError> {
        if !tokens.is_empty() {
            self.model.forward(&mut self.state, tokens, false)?;
        }
        Ok(())
    }

    /// Proposes up to `lim.n` tokens after `history`, whose first `cached()` tokens the cache
    /// holds, into `out`. `history` is extended by the drafted tokens while drafting and restored
    /// before returning.
    pub fn propose(
        &mut self,
        history: &mut Vec<u32>,
        lim: DraftLimits,
        is_eog: &dyn Fn(u32) -> bool,
        rng: &mut Rng,
        out: &mut Vec<Drafted>,
    ) -> Result<DraftCost, ModelError> {
        out.clear();
        let base = history.len();
        if self.state.len() >= base {
            self.state.truncate(base.saturating_sub(1));
        }
        let mut catch_up = Duration::ZERO;
        let lag = base - self.state.len();
        if lag > 1 {
            let t = Instant::now();
            let from = self.state.len();
            self.model
                .forward(&mut self.state, &history[from..base - 1], false)?;
            catch_up = t.elapsed();
        }
        let t = Instant::now();
        let l = self
            .model
            .forward(&mut self.state, &history[base - 1..], false)?;
        self.logits.clear();
        self.logits.extend_from_slice(l);
        let result = self.draft_loop(history, lim, is_eog, rng, out);
        history.truncate(base);
        result.map(|(forwards, unsure)| DraftCost {
            catch_up,
            drafting: t.elapsed(),
            forwards: forwards + 1,
            unsure,
        })
    }

    fn draft_loop(
        &mut self,
        history: &mut Vec<u32>,
        lim: DraftLimits,
        is_eog: &dyn Fn(u32) -> bool,
        rng: &mut Rng,
        out: &mut Vec<Drafted>,
    ) -> Result<(usize, bool), ModelError> {
        let mut forwards = 0;
        let mut unsure = false;
        let p_min = f64::from(lim.p_min);
        while out.len() < lim.n {
            let (id, q) = if self.chain.greedy() {
                if p_min > 0.0 && self.chain.top_prob(&self.logits, history) < p_min {
                    unsure = true;
                    break;
                }
                let Some(id) = self.chain.argmax(&self.logits, history) else {
                    break;
                };
                (id, Dist::point(id))
            } else {
                let q = self.chain.dist(&self.logits, history);
                if q.top().is_none_or(|(_, p)| p < p_min) {
                    unsure = true;
                    break;
                }
                let Some(id) = q.draw(rng.next_f64()) else {
                    break;
                };
                (id, q)
            };
            if id as usize >= lim.n_vocab_target {
                break;
            }
            out.push(Drafted { id, q });
            history.push(id);
            if is_eog(id) || out.len() == lim.n {
                break;
            }
            let l = self.model.forward(&mut self.state, &[id], false)?;
            forwards += 1;
            self.logits.clear();
            self.logits.extend_from_slice(l);
        }
        Ok((forwards, unsure))
    }
}
