//! The adaptive draft length: how many tokens to draft next, from what was measured so far.
//!
//! Speculation pays only when the tokens a step yields outweigh its cost. With `α` the chance
//! that the target keeps a drafted token, a draft of `k` tokens yields on average
//! `E(k) = 1 + α + … + α^k` tokens (the kept drafts plus the target's own token) and costs `k`
//! draft forwards plus one target forward over `k + 1` tokens, `k·c_d + c_t(k + 1)`; a plain step
//! yields 1 token for `c_t(1)`. The policy picks the `k` in `0..=n_max` with the best
//! `E(k) / cost(k)`, so the length shrinks when acceptance drops (or a batched target forward
//! proves expensive) and grows back when it recovers, and `k = 0` (the draft sits out, no draft
//! forward at all) whenever no draft is expected to beat the target alone.
//!
//! With `--draft-p-min` the draft may stop before `k` on its own; with `β` the chance that it goes
//! on at a position, the expected yield is `Σ_{i≤k} (αβ)^i`, the draft forwards `Σ_{i<k} β^i`
//! and the verified batch `1 + Σ_{1≤i≤k} β^i` tokens, so a draft that is rarely sure is not woken
//! up for a forward that then proposes nothing.
//!
//! `α` and `β` are estimated from decayed counts of kept drafts and rejections (a draft cut short by
//! `--draft-p-min` or the length is not a rejection); `c_d` and `c_t(n)` are moving averages of
//! measured times, with `c_t` interpolated linearly between the batch sizes seen. Before enough is
//! measured, a prior worth one observation (α = 0.8, β = 0.9, `c_d = 0.2·c_t(1)`, each extra verified token 10% of `c_t(1)`)
//! makes the first steps draft, which then measures. While the draft sits out, `α` gets no
//! evidence, so every `probe` plain steps one short draft is tried; the probe interval doubles
//! (8 → 256) while drafting keeps not paying, which bounds the cost of a useless draft to a few
//! percent.

/// Moving-average weight of a new measurement.
const EMA: f64 = 0.3;
/// Per-step decay of the acceptance counts: about the last 10 steps matter.
const DECAY: f64 = 0.9;
const PROBE_MIN: usize = 8;
const PROBE_MAX: usize = 256;
const PRIOR_ALPHA: f64 = 0.8;
const PRIOR_BETA: f64 = 0.9;
const PRIOR_DRAFT_COST: f64 = 0.2;
const PRIOR_EXTRA_TOKEN_COST: f64 = 0.1;

fn ema(slot: &mut Option<f64>, x: f64) {
    *slot = Some(slot.map_or(x, |m| m + EMA * (x - m)));
}

#[derive(Clone, Debug)]
pub struct Adapt {
    n_max: usize,
    n_min: usize,
    kept: f64,
    rejected: f64,
    went_on: f64,
    stopped: f64,
    draft_cost: Option<f64>,
    /// `verify_cost[n]`: seconds of a target forward over `n` tokens.
    verify_cost: Vec<Option<f64>>,
    plain_run: usize,
    probe: usize,
}

impl Adapt {
    /// Draft lengths in `0..=n_max`; a draft shorter than `n_min` is not worth a verification.
    pub fn new(n_max: usize, n_min: usize) -> Adapt {
        Adapt {
            n_max,
            n_min: n_min.max(1),
            kept: 0.0,
            rejected: 0.0,
            went_on: 0.0,
            stopped: 0.0,
            draft_cost: None,
            verify_cost: vec![None; n_max + 2],
            plain_run: 0,
            probe: PROBE_MIN,
        }
    }

    /// The estimated chance that a drafted token is kept.
    pub fn alpha(&self) -> f64 {
        let n = self.kept + self.rejected;
        (self.kept + PRIOR_ALPHA) / (n + 1.0)
    }

    /// The estimated chance that the draft, asked for more, proposes another token.
    pub fn beta(&self) -> f64 {
        let n = self.went_on + self.stopped;
        (self.went_on + PRIOR_BETA) / (n + 1.0)
    }

    /// Estimated seconds of a target forward over `n` tokens (relative units before any
    /// measurement); `n` may be fractional (an expected batch size).
    fn verify(&self, n: f64) -> f64 {
        let seen: Vec<(usize, f64)> = self
            .verify_cost
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.map(|c| (i, c)))
            .collect();
        let prior = |n: f64| 1.0 + PRIOR_EXTRA_TOKEN_COST * (n - 1.0);
        match seen.as_slice() {
            [] => prior(n),
            [(n0, c0)] => c0 * prior(n) / prior(*n0 as f64),
            _ => {
                // The two measured sizes around n (or the nearest two on one side).
                let hi = seen
                    .iter()
                    .position(|&(i, _)| i as f64 > n)
                    .unwrap_or(seen.len() - 1)
                    .max(1);
                let ((n0, c0), (n1, c1)) = (seen[hi - 1], seen[hi]);
                let slope = ((c1 - c0) / (n1 as f64 - n0 as f64)).max(0.0);
                (c0 + slope * (n - n0 as f64)).max(c0.min(c1) * 0.5)
            }
        }
    }

    fn draft(&self) -> f64 {
        self.draft_cost
            .unwrap_or_else(|| PRIOR_DRAFT_COST * self.verify(1.0))
    }

    /// Expected tokens per second (or per unit) of a draft of `k`.
    fn rate(&self, k: usize) -> f64 {
        let (a, b) = (self.alpha(), self.beta());
        let tokens: f64 = (0..=k).map(|i| (a * b).powi(i as i32)).sum();
        let forwards: f64 = (0..k).map(|i| b.powi(i as i32)).sum();
        let batch: f64 = 1.0 + (1..=k).map(|i| b.powi(i as i32)).sum::<f64>();
        // A batch never costs less than one token: measurement noise must not make drafting look
        // free when drafts are never kept.
        let verify = if k == 0 {
            self.verify(1.0)
        } else {
            self.verify(batch).max(self.verify(1.0))
        };
        tokens / (forwards * self.draft() + verify)
    }

    /// Draft length for the next step, at most `room`; 0 = decode plainly.
    pub fn next_len(&mut self, room: usize) -> usize {
        let top = self.n_max.min(room);
        if top < self.n_min {
            return 0;
        }
        let mut best = (0, self.rate(0));
        // A draft none of whose recent tokens were kept is only probed now and then: with a very
        // cheap draft the estimated rate would otherwise favour drafting on the prior alone.
        let hopeless = self.kept < 0.5 && self.rejected >= 3.0;
        for k in (self.n_min..=top).filter(|_| !hopeless) {
            let r = self.rate(k);
            if r > best.1 {
                best = (k, r);
            }
        }
        if best.0 == 0 && self.plain_run >= self.probe {
            // Probe: one short draft, so that a draft that started to agree is noticed.
            self.probe = (self.probe * 2).min(PROBE_MAX);
            return self.n_min;
        }
        best.0
    }

    /// After a step that drafted `drafted` tokens (0 = plain) and kept `kept` of them; `rejected`
    /// says whether the target refused one (rather than the draft stopping on its own).
    pub fn record(&mut self, drafted: usize, kept: usize, rejected: bool) {
        if drafted == 0 {
            self.plain_run += 1;
            return;
        }
        self.plain_run = 0;
        self.kept = self.kept * DECAY + kept as f64;
        self.rejected = self.rejected * DECAY + f64::from(u8::from(rejected));
        if self.rate(drafted) > self.rate(0) {
            self.probe = PROBE_MIN;
        }
    }

    /// After a draft that proposed `drafted` tokens and then stopped on its own (`--draft-p-min`)
    /// or not.
    pub fn record_draft(&mut self, drafted: usize, stopped_unsure: bool) {
        self.went_on = self.went_on * DECAY + drafted as f64;
        self.stopped = self.stopped * DECAY + f64::from(u8::from(stopped_unsure));
    }

    /// Seconds per draft forward, measured.
    pub fn time_draft(&mut self, secs_per_forward: f64) {
        ema(&mut self.draft_cost, secs_per_forward);
    }

    /// Seconds of a target forward over `n` tokens, measured.
    pub fn time_verify(&mut self, n: usize, secs: f64) {
        if let Some(slot) = self.verify_cost.get_mut(n) {
            ema(slot, secs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds the policy a simulated pair: draft forward `cd`, target forward `ct(n)`, each draft
    /// kept with probability `alpha` (seeded draws). Returns the lengths chosen.
    fn simulate(
        a: &mut Adapt,
        steps: usize,
        cd: f64,
        ct: impl Fn(usize) -> f64,
        alpha: f64,
    ) -> Vec<usize> {
        let mut lens = Vec::new();
        let mut rng = crate::sample::Rng::new(3);
        for _ in 0..steps {
            let k = a.next_len(usize::MAX);
            lens.push(k);
            if k > 0 {
                a.time_draft(cd);
            }
            a.time_verify(k + 1, ct(k + 1));
            let mut kept = 0;
            let mut rejected = false;
            for _ in 0..k {
                if rng.next_f64() < alpha {
                    kept += 1;
                } else {
                    rejected = true;
                    break;
                }
            }
            a.record(k, kept, rejected);
        }
        lens
    }

    #[test]
    fn useless_draft_sits_out_except_rare_probes() {
        let mut a = Adapt::new(16, 0);
        let lens = simulate(&mut a, 400, 0.4, |n| 1.0 + 0.5 * (n as f64 - 1.0), 0.0);
        let drafting = lens.iter().filter(|&&k| k > 0).count();
        assert!(drafting < 20, "{lens:?}");
        assert!(lens[100..].iter().all(|&k| k <= 1), "{lens:?}");
    }

    #[test]
    fn good_draft_with_cheap_verification_drafts_long() {
        let mut a = Adapt::new(16, 0);
        let lens = simulate(&mut a, 100, 0.1, |n| 1.0 + 0.02 * (n as f64 - 1.0), 0.98);
        assert!(lens[20..].iter().all(|&k| k >= 8), "{lens:?}");
    }

    #[test]
    fn length_shrinks_when_acceptance_drops_and_grows_back() {
        let mut a = Adapt::new(16, 0);
        let ct = |n: usize| 1.0 + 0.1 * (n as f64 - 1.0);
        let good = simulate(&mut a, 60, 0.1, ct, 0.95);
        let bad = simulate(&mut a, 60, 0.1, ct, 0.3);
        let again = simulate(&mut a, 200, 0.1, ct, 0.95);
        let mean = |v: &[usize]| v.iter().sum::<usize>() as f64 / v.len() as f64;
        let (g, b, r) = (mean(&good[30..]), mean(&bad[30..]), mean(&again[150..]));
        assert!(b < g / 2.0, "good {g}, bad {b}");
        assert!(r > 2.0 * b, "recovered {r}, bad {b}");
    }

    #[test]
    fn an_unsure_draft_is_not_asked_when_it_rarely_proposes() {
        // The draft stops before its first token 9 times in 10: each try costs a draft forward
        // for nothing, so the policy stops asking (apart from probes).
        let mut a = Adapt::new(16, 0);
        let mut asked = 0;
        for step in 0..200 {
            let k = a.next_len(usize::MAX);
            let mut drafted = 0;
            if k > 0 {
                asked += 1;
                a.time_draft(0.4);
                drafted = usize::from(step % 10 == 0);
                a.record_draft(drafted, drafted < k);
            }
            a.time_verify(drafted + 1, 1.0 + 0.3 * drafted as f64);
            a.record(drafted, drafted, false);
        }
        assert!(asked < 40, "asked {asked} times");
    }

    #[test]
    fn expensive_batches_keep_drafts_short() {
        // Each extra verified token costs half a decode (a compute-bound target): long drafts
        // never pay, even at 98% acceptance, but short ones do.
        let mut a = Adapt::new(16, 0);
        let lens = simulate(&mut a, 100, 0.35, |n| 1.0 + 0.5 * (n as f64 - 1.0), 0.98);
        assert!(lens[30..].iter().all(|&k| (1..=8).contains(&k)), "{lens:?}");
    }

    /// Tokens per unit of time of a run of `steps` simulated steps (costs and acceptance as
    /// `simulate`), with the policy or with every draft of fixed length `fixed`.
    fn throughput(
        fixed: Option<usize>,
        steps: usize,
        cd: f64,
        ct: impl Fn(usize) -> f64,
        alpha: f64,
    ) -> f64 {
        let mut a = Adapt::new(16, 0);
        let mut rng = crate::sample::Rng::new(9);
        let (mut tokens, mut time) = (0.0, 0.0);
        for _ in 0..steps {
            let k = fixed.unwrap_or_else(|| a.next_len(usize::MAX));
            let mut kept = 0;
            while kept < k && rng.next_f64() < alpha {
                kept += 1;
            }
            let cost = k as f64 * cd + ct(k + 1);
            if k > 0 {
                a.time_draft(cd);
                a.record_draft(k, false);
            }
            a.time_verify(k + 1, ct(k + 1));
            a.record(k, kept, kept < k);
            tokens += kept as f64 + 1.0;
            time += cost;
        }
        tokens / time
    }

    #[test]
    fn measured_costs_get_close_to_the_best_fixed_length() {
        // Gemma 3 270M: the Q4_K_M draft with its shortlist head costs a quarter of an F16
        // target step; verifying costs 11% of a step per extra token up to 8 rows, then a second
        // pass over the weights (measured, one thread); the draft agrees 97% of the time.
        let ct = |n: usize| 1.0 + 0.11 * (n.min(8) - 1) as f64 + if n > 8 { 0.7 } else { 0.0 };
        let (cd, alpha) = (0.25, 0.97);
        let best = (0..=16)
            .map(|k| (k, throughput(Some(k), 400, cd, ct, alpha)))
            .fold((0, 0.0), |b, (k, r)| if r > b.1 { (k, r) } else { b });
        let got = throughput(None, 400, cd, ct, alpha);
        let plain = throughput(Some(0), 400, cd, ct, alpha);
        eprintln!(
            "best fixed k {} at {:.3}, adaptive {got:.3}, plain {plain:.3}",
            best.0, best.1
        );
        assert!(got > 0.9 * best.1, "adaptive {got} vs best fixed {best:?}");
        assert!(got > 1.5 * plain, "adaptive {got} vs plain {plain}");
    }
}
