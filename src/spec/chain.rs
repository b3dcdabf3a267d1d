//! The sampler chain of `crate::sample` seen as a distribution instead of a draw: speculative
//! sampling needs the probabilities `p` (target) and `q` (draft) that the chain would draw from,
//! not just one token. The steps and their order are exactly [`crate::sample::Sampler::sample`]'s
//! (penalties → top-k → top-p → min-p → temperature → softmax), built from the same public step
//! functions, so a token drawn from [`Chain::dist`] has the distribution the target alone would
//! sample from. The penalty window is recomputed from the token history (prompt and generated
//! tokens, the same tokens `Sampler::accept` would have seen), because speculation evaluates
//! positions whose history includes drafted tokens that may later be dropped.

use super::acceptance::Dist;
use crate::sample::{self, Candidate, Candidates, SamplerParams};
use std::collections::HashMap;

/// How many candidates llama.cpp's draft sampler keeps (`common/speculative.cpp`: top-k 10);
/// `--draft-p-min` is a probability within them.
const DRAFT_TOP_K: i32 = 10;

/// The logits a chain reads.
#[derive(Clone, Copy, Debug)]
pub enum Logits<'a> {
    /// `l[id]` for every id of the vocabulary.
    Dense(&'a [f32]),
    /// `logits[i]` for `ids[i]` only; every other id is out of the running (a draft's
    /// shortlist, see [`super::shortlist`]).
    Sparse { ids: &'a [u32], logits: &'a [f32] },
}

/// One model's sampling settings plus a reusable candidate buffer.
pub struct Chain {
    params: SamplerParams,
    cands: Candidates,
    counts: HashMap<u32, u32>,
}

impl Chain {
    pub fn new(params: SamplerParams) -> Chain {
        Chain {
            params,
            cands: Candidates::default(),
            counts: HashMap::new(),
        }
    }

    pub fn params(&self) -> &SamplerParams {
        &self.params
    }

    pub fn greedy(&self) -> bool {
        self.params.temp <= 0.0
    }

    fn penalties_enabled(&self) -> bool {
        let p = &self.params;
        p.repeat_last_n > 0
            && (p.repeat_penalty != 1.0 || p.frequency_penalty != 0.0 || p.presence_penalty != 0.0)
    }

    /// Fills the candidates from `logits` with the penalties of the last `repeat_last_n` tokens
    /// of `history` applied.
    fn penalised(&mut self, logits: Logits<'_>, history: &[u32]) {
        match logits {
            Logits::Dense(l) => self.cands.fill(l),
            Logits::Sparse { ids, logits } => {
                self.cands.data.clear();
                self.cands
                    .data
                    .extend(ids.iter().zip(logits).map(|(&id, &logit)| Candidate {
                        id,
                        logit,
                        p: 0.0,
                    }));
                self.cands.sorted = false;
            }
        }
        if self.penalties_enabled() {
            let p = &self.params;
            let window = &history[history.len().saturating_sub(p.repeat_last_n)..];
            self.counts.clear();
            for &t in window {
                *self.counts.entry(t).or_insert(0) += 1;
            }
            sample::penalties(
                &mut self.cands,
                &self.counts,
                p.repeat_penalty,
                p.frequency_penalty,
                p.presence_penalty,
            );
        }
    }

    /// The greedy choice after `history`: the argmax of the penalised logits, ties to the lowest
    /// id, exactly what `Sampler::sample` returns at `temp <= 0`.
    pub fn argmax(&mut self, logits: Logits<'_>, history: &[u32]) -> Option<u32> {
        self.penalised(logits, history);
        sample::argmax(&self.cands)
    }

    /// The draft's confidence that `--draft-p-min` compares against when drafting greedily: the
    /// probability of the most likely token among the 10 most likely at temperature 1 after the
    /// penalties, as llama.cpp's draft sampler (top-k 10) reports it.
    pub fn top_prob(&mut self, logits: Logits<'_>, history: &[u32]) -> f64 {
        self.penalised(logits, history);
        sample::top_k(&mut self.cands, DRAFT_TOP_K);
        let max = self
            .cands
            .data
            .iter()
            .fold(f32::NEG_INFINITY, |m, c| m.max(c.logit));
        if !max.is_finite() {
            return 0.0;
        }
        let sum: f64 = self
            .cands
            .data
            .iter()
            .map(|c| f64::from((c.logit - max).exp()))
            .sum();
        1.0 / sum
    }

    /// The distribution the chain draws from after `history` (`temp > 0`); for `temp <= 0`, all
    /// mass on the greedy token.
    pub fn dist(&mut self, logits: Logits<'_>, history: &[u32]) -> Dist {
        if self.greedy() {
            return self
                .argmax(logits, history)
                .map_or_else(Dist::default, Dist::point);
        }
        self.penalised(logits, history);
        let p = &self.params;
        sample::top_k(&mut self.cands, p.top_k);
        sample::top_p(&mut self.cands, p.top_p, p.min_keep);
        sample::min_p(&mut self.cands, p.min_p, p.min_keep);
        sample::temperature(&mut self.cands, p.temp);
        // As `sample::draw`: exp in f32 after subtracting the max, normalised in f64.
        let max = self
            .cands
            .data
            .iter()
            .fold(f32::NEG_INFINITY, |m, c| m.max(c.logit));
        Dist::new(
            self.cands
                .data
                .iter()
                .map(|c| (c.id, f64::from((c.logit - max).exp()))),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::{Rng, Sampler};

    fn params(temp: f32) -> SamplerParams {
        SamplerParams {
            temp,
            top_k: 3,
            top_p: 0.9,
            min_p: 0.05,
            repeat_penalty: 1.5,
            repeat_last_n: 2,
            ..SamplerParams::default()
        }
    }

    #[test]
    fn greedy_matches_the_sampler_with_penalties() {
        let logits = [3.0, 2.9, 1.0, -1.0];
        let mut s = Sampler::new(params(0.0));
        let mut c = Chain::new(params(0.0));
        let mut history = vec![];
        for _ in 0..6 {
            let want = s.sample(&logits).unwrap();
            assert_eq!(c.argmax(Logits::Dense(&logits), &history), Some(want));
            assert_eq!(c.dist(Logits::Dense(&logits), &history), Dist::point(want));
            s.accept(want);
            history.push(want);
        }
    }

    #[test]
    fn dist_is_what_the_sampler_draws_from() {
        // Frequencies of the real sampler over 20,000 seeds vs the chain's probabilities.
        let logits = [2.0, 1.6, 1.5, 0.2, -3.0];
        let history = [1u32, 0];
        let mut c = Chain::new(params(0.7));
        let d = c.dist(Logits::Dense(&logits), &history);
        let mut hits = [0usize; 5];
        let n = 20_000;
        let mut seeds = Rng::new(5);
        for _ in 0..n {
            let mut s = Sampler::new(SamplerParams {
                seed: seeds.next_u64(),
                ..params(0.7)
            });
            for &t in &history {
                s.accept(t);
            }
            hits[s.sample(&logits).unwrap() as usize] += 1;
        }
        for (id, &h) in hits.iter().enumerate() {
            let want = d.prob(id as u32);
            let got = h as f64 / n as f64;
            assert!(
                (got - want).abs() < 0.015,
                "{id}: {got} vs {want} ({hits:?})"
            );
        }
        assert_eq!(d.prob(3), 0.0, "top-k 3 excludes token 3");
        assert_eq!(d.prob(4), 0.0);
    }

    #[test]
    fn top_prob_is_within_the_ten_best() {
        // One logit of ln 2 and 20 of 0: over the best ten, p = 2 / (2 + 9) whatever the rest.
        let mut logits = vec![0.0f32; 21];
        logits[7] = 2f32.ln();
        let mut c = Chain::new(SamplerParams {
            temp: 0.0,
            ..SamplerParams::default()
        });
        assert!((c.top_prob(Logits::Dense(&logits), &[]) - 2.0 / 11.0).abs() < 1e-6);
    }
}
