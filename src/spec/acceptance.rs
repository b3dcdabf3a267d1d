//! The acceptance rule of speculative sampling (Leviathan et al. 2023, "Fast Inference from
//! Transformers via Speculative Decoding", Algorithm 1; Chen et al. 2023 the same), as pure
//! functions over two small distributions so that it can be tested without a model.
//!
//! A drafted token `x` was drawn from the draft's distribution `q`. The target's distribution at
//! the same position is `p`. Accept `x` with probability `min(1, p(x)/q(x))`; on rejection draw
//! from the residual `max(0, p - q)`, normalised. The emitted token is then distributed exactly
//! as `p`, whatever `q` is. The uniform numbers come from the caller, so every function here is
//! deterministic.

/// A discrete distribution over token ids: `(id, probability)` sorted by id, ids unique, each
/// probability finite and `> 0`. Probabilities need not sum to exactly 1 (float rounding):
/// [`Dist::draw`] scales by their total.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Dist {
    entries: Vec<(u32, f64)>,
}

impl Dist {
    /// From `(id, probability)` pairs in any order; zero, negative and non-finite probabilities
    /// are dropped (such a token cannot be drawn), repeated ids add up.
    pub fn new(pairs: impl IntoIterator<Item = (u32, f64)>) -> Dist {
        let mut entries: Vec<(u32, f64)> = pairs
            .into_iter()
            .filter(|&(_, p)| p.is_finite() && p > 0.0)
            .collect();
        entries.sort_unstable_by_key(|&(id, _)| id);
        entries.dedup_by(|b, a| {
            if a.0 == b.0 {
                a.1 += b.1;
                true
            } else {
                false
            }
        });
        Dist { entries }
    }

    /// Everything on one token (the target's greedy choice).
    pub fn point(id: u32) -> Dist {
        Dist {
            entries: vec![(id, 1.0)],
        }
    }

    pub fn entries(&self) -> &[(u32, f64)] {
        &self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn total(&self) -> f64 {
        self.entries.iter().map(|&(_, p)| p).sum()
    }

    /// The probability of `id`, normalised by the total; 0 for a token not in the support.
    pub fn prob(&self, id: u32) -> f64 {
        let total = self.total();
        match self.entries.binary_search_by_key(&id, |&(i, _)| i) {
            Ok(i) if total > 0.0 => self.entries[i].1 / total,
            _ => 0.0,
        }
    }

    /// The most likely token (lowest id on ties) and its normalised probability.
    pub fn top(&self) -> Option<(u32, f64)> {
        let total = self.total();
        let mut best: Option<(u32, f64)> = None;
        for &(id, p) in &self.entries {
            if best.is_none_or(|(_, bp)| p > bp) {
                best = Some((id, p));
            }
        }
        best.map(|(id, p)| (id, p / total))
    }

    /// Inverse-CDF draw with `u` uniform in [0, 1): the first token whose running sum exceeds
    /// `u * total`. Never returns a token outside the support; `None` only when it is empty.
    pub fn draw(&self, u: f64) -> Option<u32> {
        let target = u * self.total();
        let mut run = 0.0;
        for &(id, p) in &self.entries {
            run += p;
            if run > target {
                return Some(id);
            }
        }
        // Rounding can leave the running sum a hair below the target: the last token is correct.
        self.entries.last().map(|&(id, _)| id)
    }
}

/// The normalised residual `max(0, p - q)` that a rejection draws from. Tokens where `q >= p`
/// drop out, so a token with `p = 0` can never come back. When the residual is empty (`p == q`
/// up to rounding, where a rejection has probability 0 in exact arithmetic but can still happen
/// in floating point) it is `p` itself, which is then the exact answer.
pub fn residual(p: &Dist, q: &Dist) -> Dist {
    let (pt, qt) = (p.total(), q.total());
    let r = Dist::new(p.entries.iter().map(|&(id, pp)| {
        let qq = if qt > 0.0 { q.prob(id) } else { 0.0 };
        (id, pp / pt - qq)
    }));
    if r.is_empty() {
        p.clone()
    } else {
        r
    }
}

/// The outcome of checking one drafted token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Keep the drafted token.
    Accept,
    /// Drop it and every drafted token after it; emit this token instead.
    Reject(u32),
}

/// Whether a token `x` drawn from `q` survives against `p`, given `u_accept` uniform in [0, 1):
/// accepted when `u_accept * q(x) < p(x)`, i.e. with probability `min(1, p(x)/q(x))`, written
/// without a division so that `q(x) = 0` (which sampling from `q` cannot produce) accepts iff
/// `p(x) > 0` instead of dividing by zero, and `p(x) = 0` always rejects.
pub fn accepts(p: &Dist, q: &Dist, x: u32, u_accept: f64) -> bool {
    u_accept * q.prob(x) < p.prob(x)
}

/// The whole rule for one drafted token: accept, or reject and draw the replacement from the
/// residual with `u_resample`. `None` only when `p` is empty (the target allows no token).
pub fn verify(p: &Dist, q: &Dist, x: u32, u_accept: f64, u_resample: f64) -> Option<Verdict> {
    if accepts(p, q, x, u_accept) {
        return Some(Verdict::Accept);
    }
    residual(p, q).draw(u_resample).map(Verdict::Reject)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(pairs: &[(u32, f64)]) -> Dist {
        Dist::new(pairs.iter().copied())
    }

    #[test]
    fn dist_normalises_drops_zeros_and_merges() {
        let x = d(&[(5, 2.0), (1, 0.0), (3, 1.0), (5, 1.0), (9, f64::NAN)]);
        assert_eq!(x.entries(), &[(3, 1.0), (5, 3.0)]);
        assert!((x.prob(5) - 0.75).abs() < 1e-15);
        assert_eq!(x.prob(1), 0.0);
        assert_eq!(x.prob(9), 0.0);
        assert_eq!(x.top(), Some((5, 0.75)));
    }

    #[test]
    fn draw_is_inverse_cdf_and_skips_zero_mass() {
        let x = d(&[(0, 0.25), (2, 0.5), (7, 0.25)]);
        assert_eq!(x.draw(0.0), Some(0));
        assert_eq!(x.draw(0.2499), Some(0));
        assert_eq!(x.draw(0.25), Some(2));
        assert_eq!(x.draw(0.7499), Some(2));
        assert_eq!(x.draw(0.75), Some(7));
        assert_eq!(x.draw(0.999_999_999), Some(7));
        assert_eq!(Dist::default().draw(0.5), None);
    }

    #[test]
    fn accept_probability_is_min_one_p_over_q() {
        let p = d(&[(0, 0.2), (1, 0.8)]);
        let q = d(&[(0, 0.5), (1, 0.5)]);
        // p(0)/q(0) = 0.4: accepted for u < 0.4 only.
        assert!(accepts(&p, &q, 0, 0.399));
        assert!(!accepts(&p, &q, 0, 0.401));
        // p(1) > q(1): always accepted.
        assert!(accepts(&p, &q, 1, 0.999_999));
    }

    #[test]
    fn residual_when_p_below_q() {
        // p = (0.2, 0.8), q = (0.5, 0.5): residual max(0, p - q) = (0, 0.3) → all on token 1.
        let p = d(&[(0, 0.2), (1, 0.8)]);
        let q = d(&[(0, 0.5), (1, 0.5)]);
        let r = residual(&p, &q);
        assert_eq!(r.entries().len(), 1);
        assert!((r.prob(1) - 1.0).abs() < 1e-12);
        for u in [0.0, 0.3, 0.99] {
            assert_eq!(verify(&p, &q, 0, 0.9, u), Some(Verdict::Reject(1)));
        }
        // Three tokens, p < q on two of them: the residual keeps (p - q)+ in proportion.
        let p = d(&[(0, 0.1), (1, 0.3), (2, 0.6)]);
        let q = d(&[(0, 0.4), (1, 0.5), (2, 0.1)]);
        let r = residual(&p, &q);
        assert_eq!(r.entries().len(), 1, "{r:?}");
        assert!((r.prob(2) - 1.0).abs() < 1e-12);
        let p = d(&[(0, 0.1), (1, 0.5), (2, 0.4)]);
        let q = d(&[(0, 0.6), (1, 0.2), (2, 0.2)]);
        let r = residual(&p, &q);
        assert!((r.prob(1) - 0.6).abs() < 1e-12, "0.3 / 0.5");
        assert!((r.prob(2) - 0.4).abs() < 1e-12, "0.2 / 0.5");
        assert_eq!(r.prob(0), 0.0);
    }

    #[test]
    fn zero_probability_tokens_are_never_emitted() {
        // The target gives token 1 no mass; the draft proposes it: always rejected, and the
        // replacement is never 1 whatever the uniforms.
        let p = d(&[(0, 0.5), (2, 0.5)]);
        let q = d(&[(0, 0.2), (1, 0.6), (2, 0.2)]);
        for i in 0..1000 {
            let u = i as f64 / 1000.0;
            assert!(!accepts(&p, &q, 1, u));
            match verify(&p, &q, 1, u, 1.0 - u - 1e-9) {
                Some(Verdict::Reject(t)) => assert!(t == 0 || t == 2, "{t}"),
                other => panic!("{other:?}"),
            }
        }
        // Disjoint supports: the residual is p.
        let q = d(&[(1, 1.0)]);
        assert_eq!(residual(&p, &q), p);
    }

    #[test]
    fn draft_probability_zero_does_not_divide_by_zero() {
        // q(x) = 0 cannot come from sampling q, but must give a defined answer: accept iff p > 0.
        let p = d(&[(0, 1.0)]);
        let q = d(&[(1, 1.0)]);
        assert!(accepts(&p, &q, 0, 0.999));
        assert!(!accepts(&p, &q, 3, 0.0), "p = q = 0: reject");
        assert!(!accepts(&p, &Dist::default(), 3, 0.0));
        assert!(accepts(&p, &Dist::default(), 0, 0.5));
    }

    #[test]
    fn identical_distributions_always_accept_and_equal_residual_falls_back_to_p() {
        let p = d(&[(0, 0.3), (1, 0.7)]);
        for i in 0..100 {
            assert!(accepts(&p, &p, 0, i as f64 / 100.0));
            assert!(accepts(&p, &p, 1, i as f64 / 100.0));
        }
        assert_eq!(residual(&p, &p), p);
    }

    /// Exact output distribution of the rule, computed by summing over the draft's choices:
    /// P(emit y) = q(y) min(1, p(y)/q(y)) + (Σ_x q(x) (1 - min(1, p(x)/q(x)))) r(y). It must be p.
    #[test]
    fn rule_preserves_p_exactly() {
        let cases = [
            (
                vec![(0, 0.1), (1, 0.2), (2, 0.7)],
                vec![(0, 0.6), (1, 0.3), (2, 0.1)],
            ),
            (vec![(0, 0.5), (3, 0.5)], vec![(1, 0.5), (3, 0.5)]),
            (vec![(4, 1.0)], vec![(0, 0.25), (1, 0.25), (4, 0.5)]),
        ];
        for (pp, qq) in cases {
            let (p, q) = (d(&pp), d(&qq));
            let r = residual(&p, &q);
            let reject: f64 = q
                .entries()
                .iter()
                .map(|&(x, qx)| qx * (1.0 - (p.prob(x) / qx).min(1.0)))
                .sum();
            for y in 0..6 {
                let qy = q.prob(y);
                let keep = if qy > 0.0 {
                    qy * (p.prob(y) / qy).min(1.0)
                } else {
                    0.0
                };
                let got = keep + reject * r.prob(y);
                assert!(
                    (got - p.prob(y)).abs() < 1e-12,
                    "y {y}: {got} vs {}",
                    p.prob(y)
                );
            }
        }
    }

    /// 20,000 draws through `verify` with a seeded generator: the emitted frequencies match p
    /// within a chi-squared bound (3 degrees of freedom, 0.1% critical value 16.27).
    #[test]
    fn sampled_rule_matches_p_chi_squared() {
        let p = d(&[(0, 0.1), (1, 0.2), (2, 0.3), (3, 0.4)]);
        let q = d(&[(0, 0.4), (1, 0.3), (2, 0.2), (3, 0.1)]);
        let mut rng = crate::sample::Rng::new(11);
        let n = 20_000;
        let mut hits = [0usize; 4];
        for _ in 0..n {
            let x = q.draw(rng.next_f64()).unwrap();
            let y = match verify(&p, &q, x, rng.next_f64(), rng.next_f64()).unwrap() {
                Verdict::Accept => x,
                Verdict::Reject(t) => t,
            };
            hits[y as usize] += 1;
        }
        let chi2: f64 = hits
            .iter()
            .enumerate()
            .map(|(i, &h)| {
                let e = n as f64 * p.prob(i as u32);
                (h as f64 - e).powi(2) / e
            })
            .sum();
        assert!(chi2 < 16.27, "chi2 {chi2}, hits {hits:?}");
        // A draft emitted unchecked would be far off: the test can tell the two apart.
        let e: f64 = (0..4)
            .map(|i| {
                let e = n as f64 * p.prob(i);
                (n as f64 * q.prob(i) - e).powi(2) / e
            })
            .sum();
        assert!(e > 1000.0);
    }
}
