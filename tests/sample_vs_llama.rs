//! infer's sampler steps against llama.cpp's own samplers (through ggml-ref), on random logits.
//!
//! Bounds: the surviving candidate ids must be identical and in the same order (logits are drawn
//! without ties so the order is well defined); logits after penalties and temperature must be
//! bit-identical (same f32 operations); probabilities within 1e-6 absolute (both sum in f32 or
//! f64 in the same order, so only summation-order rounding may differ). Greedy picks must match
//! exactly, ties included (both take the lowest id).

use ggml_ref::generate::{RefChain, TokenData};
use infer::sample::{self, Candidates, Rng};
use std::collections::HashMap;

const N_VOCAB: usize = 3000;

/// Distinct logits roughly N(0, 3): the sum of uniforms, plus a tiny id-dependent offset so that
/// no two are equal.
fn random_logits(seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    (0..N_VOCAB)
        .map(|i| {
            let s: f64 = (0..4).map(|_| rng.next_f64()).sum::<f64>() - 2.0;
            (s * 5.2) as f32 + i as f32 * 1e-6
        })
        .collect()
}

fn ref_cands(logits: &[f32]) -> Vec<TokenData> {
    logits
        .iter()
        .enumerate()
        .map(|(i, &logit)| TokenData {
            id: i as u32,
            logit,
            p: 0.0,
        })
        .collect()
}

fn ours_vs_ref(ours: &Candidates, theirs: &[TokenData], what: &str, check_p: bool) {
    let ids: Vec<u32> = theirs.iter().map(|d| d.id).collect();
    assert_eq!(ours.ids(), ids, "{what}: surviving ids differ");
    for (a, b) in ours.data.iter().zip(theirs) {
        assert_eq!(
            a.logit.to_bits(),
            b.logit.to_bits(),
            "{what}: logit of {}",
            a.id
        );
        if check_p {
            assert!(
                (a.p - b.p).abs() <= 1e-6,
                "{what}: p of {}: {} vs {}",
                a.id,
                a.p,
                b.p
            );
        }
    }
}

#[test]
fn top_k_matches_llama() {
    for (seed, k) in [(1, 40), (2, 1), (3, 500), (4, N_VOCAB as i32 + 5)] {
        let logits = random_logits(seed);
        let mut ours = Candidates::from_logits(&logits);
        sample::top_k(&mut ours, k);
        let theirs = RefChain::new().top_k(k).apply(&ref_cands(&logits));
        ours_vs_ref(&ours, &theirs.data, &format!("top-k {k}"), false);
    }
}

#[test]
fn top_p_matches_llama() {
    for (seed, p, min_keep) in [(5, 0.95, 0), (6, 0.5, 0), (7, 0.1, 5), (8, 0.999, 1)] {
        let logits = random_logits(seed);
        // After top-k (as in the default chain) and on the full unsorted vocabulary.
        for k in [40, 0] {
            let mut ours = Candidates::from_logits(&logits);
            sample::top_k(&mut ours, k);
            sample::top_p(&mut ours, p, min_keep);
            let theirs = RefChain::new()
                .top_k(k)
                .top_p(p, min_keep)
                .apply(&ref_cands(&logits));
            ours_vs_ref(
                &ours,
                &theirs.data,
                &format!("top-k {k} top-p {p} min_keep {min_keep}"),
                true,
            );
        }
    }
}

#[test]
fn min_p_matches_llama() {
    for (seed, p, min_keep) in [(9, 0.05, 0), (10, 0.3, 0), (11, 0.9, 3)] {
        let logits = random_logits(seed);
        for k in [40, 0] {
            let mut ours = Candidates::from_logits(&logits);
            sample::top_k(&mut ours, k);
            sample::min_p(&mut ours, p, min_keep);
            let theirs = RefChain::new()
                .top_k(k)
                .min_p(p, min_keep)
                .apply(&ref_cands(&logits));
            ours_vs_ref(
                &ours,
                &theirs.data,
                &format!("top-k {k} min-p {p} min_keep {min_keep}"),
                false,
            );
        }
    }
}

#[test]
fn temperature_matches_llama() {
    let logits = random_logits(12);
    for t in [0.8, 1.7, 0.0] {
        let mut ours = Candidates::from_logits(&logits);
        sample::temperature(&mut ours, t);
        let theirs = RefChain::new().temp(t).apply(&ref_cands(&logits));
        ours_vs_ref(&ours, &theirs.data, &format!("temp {t}"), false);
    }
}

#[test]
fn penalties_match_llama() {
    let logits = random_logits(13);
    let mut rng = Rng::new(99);
    // A history with repeats, longer than the window so that old tokens must drop out.
    let history: Vec<u32> = (0..100).map(|_| (rng.next_u64() % 50) as u32 * 7).collect();
    for (last_n, repeat, freq, present) in [
        (64, 1.3, 0.0, 0.0),
        (16, 1.1, 0.2, 0.5),
        (64, 1.0, 0.3, 0.0),
    ] {
        let mut theirs = RefChain::new().penalties(N_VOCAB, last_n, repeat, freq, present);
        let mut counts = HashMap::new();
        for &t in &history {
            theirs.accept(t);
        }
        for &t in &history[history.len() - last_n as usize..] {
            *counts.entry(t).or_insert(0u32) += 1;
        }
        let mut ours = Candidates::from_logits(&logits);
        sample::penalties(&mut ours, &counts, repeat, freq, present);
        let theirs = theirs.apply(&ref_cands(&logits));
        ours_vs_ref(
            &ours,
            &theirs.data,
            &format!("penalties last_n {last_n} repeat {repeat} freq {freq} present {present}"),
            false,
        );
    }
}

#[test]
fn sampler_penalty_window_matches_llama() {
    // The Sampler's own window bookkeeping (accept) against llama.cpp's: greedy picks under a
    // strong repeat penalty depend on exactly which tokens are in the window.
    let mut ours = sample::Sampler::new(sample::SamplerParams {
        temp: 0.0,
        repeat_penalty: 1.5,
        repeat_last_n: 8,
        presence_penalty: 0.7,
        ..Default::default()
    });
    let mut theirs = RefChain::new()
        .penalties(N_VOCAB, 8, 1.5, 0.0, 0.7)
        .greedy();
    let mut rng = Rng::new(5);
    // A peaked distribution over few tokens so the penalties change the winner often.
    let mut picks = Vec::new();
    for step in 0..200 {
        let logits: Vec<f32> = (0..N_VOCAB)
            .map(|i| {
                if i < 12 {
                    4.0 + rng.next_f64() as f32
                } else {
                    -3.0 + rng.next_f64() as f32
                }
            })
            .collect();
        let a = ours.sample(&logits).unwrap();
        let b = theirs.sample(&logits).unwrap();
        assert_eq!(a, b, "step {step}");
        ours.accept(a);
        theirs.accept(b);
        picks.push(a);
    }
    picks.sort_unstable();
    picks.dedup();
    assert!(
        picks.len() > 3,
        "the penalties never changed the pick: {picks:?}"
    );
}

#[test]
fn default_chain_leaves_same_candidates_and_probabilities() {
    // penalties → top-k 40 → top-p 0.95 → min-p 0.05 → temp 0.8 → dist, llama.cpp's default
    // order; dist normalises the probabilities, which our draw does the same way.
    let logits = random_logits(14);
    let history = [3u32, 17, 17, 200, 5];
    let mut theirs = RefChain::new()
        .penalties(N_VOCAB, 64, 1.1, 0.05, 0.1)
        .top_k(40)
        .top_p(0.95, 0)
        .min_p(0.05, 0)
        .temp(0.8)
        .dist(1234);
    let mut counts = HashMap::new();
    for &t in &history {
        theirs.accept(t);
        *counts.entry(t).or_insert(0u32) += 1;
    }
    let mut ours = Candidates::from_logits(&logits);
    sample::penalties(&mut ours, &counts, 1.1, 0.05, 0.1);
    sample::top_k(&mut ours, 40);
    sample::top_p(&mut ours, 0.95, 0);
    sample::min_p(&mut ours, 0.05, 0);
    sample::temperature(&mut ours, 0.8);
    let chosen = sample::draw(&mut ours, &mut Rng::new(1)).unwrap();
    let theirs = theirs.apply(&ref_cands(&logits));
    ours_vs_ref(&ours, &theirs.data, "default chain", true);
    assert!(ours.data.iter().any(|c| c.id == chosen));
    assert!(theirs.selected.is_some());
}

#[test]
fn greedy_matches_llama_including_ties() {
    for seed in 20..30 {
        let mut logits = random_logits(seed);
        // Plant a tie for the maximum at two ids: both must pick the lower one.
        let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max) + 1.0;
        logits[(seed as usize * 37) % N_VOCAB] = max;
        logits[(seed as usize * 91) % N_VOCAB] = max;
        let mut s = sample::Sampler::new(sample::SamplerParams {
            temp: 0.0,
            ..Default::default()
        });
        let ours = s.sample(&logits).unwrap();
        let theirs = RefChain::new().greedy().sample(&logits).unwrap();
        assert_eq!(ours, theirs, "seed {seed}");
    }
}
