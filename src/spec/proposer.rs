//! The draft side: a small model with its own KV cache proposes the next few tokens, one cheap
//! forward each. Greedy decoding proposes the draft's argmax; sampling draws from the draft's
//! chain and remembers the distribution `q` it drew from, which the acceptance rule needs.
//! Drafting stops early when the draft is unsure (`--draft-p-min`), at an end-of-generation
//! token, or at an id the target's vocabulary lacks. With a [`Shortlist`], the draft computes
//! only the shortlist's logits and draws from them.

use super::acceptance::Dist;
use super::chain::{Chain, Logits};
use super::shortlist::Shortlist;
use super::SpecError;
use crate::model::{Model, State};
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
    /// The full head's logits, when there is no shortlist.
    logits: Vec<f32>,
    shortlist: Option<Shortlist<'m>>,
}

impl<'m, 'g> Proposer<'m, 'g> {
    /// `shortlist`: the draft's logits only for those ids (else its whole output head).
    pub fn new(
        model: &'m Model<'g>,
        state: State,
        chain: Chain,
        shortlist: Option<Shortlist<'m>>,
    ) -> Self {
        Proposer {
            model,
            state,
            chain,
            logits: Vec::new(),
            shortlist,
        }
    }

    /// Ids in the shortlist, or `None` when the draft computes its whole output head.
    pub fn shortlist_len(&self) -> Option<usize> {
        self.shortlist.as_ref().map(Shortlist::len)
    }

    /// Evaluates `tokens` without any logits: the layers only on the CPU (no output head).
    fn advance(&mut self, tokens: &[u32]) -> Result<(), SpecError> {
        if self.model.gpu().is_some() {
            self.model.forward(&mut self.state, tokens, false)?;
        } else {
            self.model.forward_hidden(&mut self.state, tokens)?;
        }
        Ok(())
    }

    /// Evaluates `tokens` and keeps the logits after the last one.
    fn step(&mut self, tokens: &[u32]) -> Result<(), SpecError> {
        match &mut self.shortlist {
            Some(s) if self.model.gpu().is_none() => {
                let h = self.model.forward_hidden(&mut self.state, tokens)?;
                s.compute(self.model.pool(), h)?;
            }
            _ => {
                let l = self.model.forward(&mut self.state, tokens, false)?;
                self.logits.clear();
                self.logits.extend_from_slice(l);
            }
        }
        Ok(())
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
    pub fn feed(&mut self, tokens: &[u32]) -> Result<(), SpecError> {
        if !tokens.is_empty() {
            self.advance(tokens)?;
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
    ) -> Result<DraftCost, SpecError> {
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
            self.advance(&history[from..base - 1])?;
            catch_up = t.elapsed();
        }
        if let Some(s) = &mut self.shortlist {
            s.admit(history);
        }
        let t = Instant::now();
        self.step(&history[base - 1..])?;
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
    ) -> Result<(usize, bool), SpecError> {
        let mut forwards = 0;
        let mut unsure = false;
        let p_min = f64::from(lim.p_min);
        while out.len() < lim.n {
            let logits = match &self.shortlist {
                Some(s) if self.model.gpu().is_none() => s.logits(),
                _ => Logits::Dense(&self.logits),
            };
            let (id, q) = if self.chain.greedy() {
                if p_min > 0.0 && self.chain.top_prob(logits, history) < p_min {
                    unsure = true;
                    break;
                }
                let Some(id) = self.chain.argmax(logits, history) else {
                    break;
                };
                (id, Dist::point(id))
            } else {
                let q = self.chain.dist(logits, history);
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
            self.step(&[id])?;
            forwards += 1;
        }
        Ok((forwards, unsure))
    }
}
