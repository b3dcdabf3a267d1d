//! Sampling with a draft keeps the target's distribution (Leviathan et al.'s rule), shown on the
//! first generated token of the real model through the real driver, over many seeds.
//!
//! Target chain: temp 1, top-k 4 (so that four bins carry all the mass and a chi-squared test on
//! 150 draws has power). Draft: the same model with top-k 2, so that q puts too much mass on the
//! two best tokens and none on the other two: those can only come from the residual after a
//! rejection, and both acceptances and rejections happen. The expected distribution p is
//! computed here by hand from the target's logits (softmax of the four largest), independently of
//! the crate's chain code. Bound: chi-squared with 3 degrees of freedom below
//! 16.27 (the 0.1% critical value), and the same statistic for q's own expected counts must be far
//! above it, so that a driver that emitted drafts unchecked would fail.
//!
//! Twice: with the draft's whole output head, and with a tiny shortlist head (256 tokens) that
//! leaves out some of the target's four best, so q is normalised over the shortlist and differs
//! from the full head's: the output must still follow p exactly.

mod spec_support;

use infer::gguf::GgufFile;
use infer::model::{Model, ModelOptions};
use infer::sample::SamplerParams;
use infer::spec::shortlist::base_ids;
use infer::spec::{SpecError, SpecParams, Speculator};
use infer::tokenizer::Tokenizer;
use spec_support::real_model;

const N_DRAWS: usize = 150;
const CHI2_3DOF_P001: f64 = 16.27;
const PROMPT: &str = "My favourite colour is";

fn chain(top_k: i32) -> SamplerParams {
    SamplerParams {
        temp: 1.0,
        top_k,
        top_p: 1.0,
        min_p: 0.0,
        ..SamplerParams::default()
    }
}

/// Softmax of the `k` largest logits among the ids `keep` allows: `(id, probability)`, most
/// likely first.
fn top(logits: &[f32], k: usize, keep: impl Fn(u32) -> bool) -> Vec<(u32, f64)> {
    let mut idx: Vec<u32> = (0..logits.len() as u32).filter(|&i| keep(i)).collect();
    idx.sort_by(|&a, &b| {
        logits[b as usize]
            .total_cmp(&logits[a as usize])
            .then(a.cmp(&b))
    });
    idx.truncate(k);
    let max = f64::from(logits[idx[0] as usize]);
    let w: Vec<f64> = idx
        .iter()
        .map(|&i| (f64::from(logits[i as usize]) - max).exp())
        .collect();
    let s: f64 = w.iter().sum();
    idx.into_iter().zip(w.into_iter().map(|x| x / s)).collect()
}

fn chi2(counts: &[f64], p: &[(u32, f64)], n: f64) -> f64 {
    counts
        .iter()
        .zip(p)
        .map(|(&c, &(_, pi))| (c - n * pi).powi(2) / (n * pi))
        .sum()
}

#[test]
fn first_token_with_a_draft_follows_the_target_distribution() {
    check(0);
}

#[test]
fn first_token_with_a_shortlist_draft_follows_the_target_distribution() {
    check(256);
}

/// The test of the module header with `--draft-vocab draft_vocab`.
fn check(draft_vocab: usize) {
    let Some(path) = real_model() else { return };
    let gguf = GgufFile::open(&path).unwrap();
    let tok = Tokenizer::from_gguf(&gguf).unwrap();
    let target = Model::load(&gguf, &ModelOptions::default()).unwrap();
    let draft = Model::load(&gguf, &ModelOptions::default()).unwrap();
    let prompt = tok.encode(PROMPT, true, true);

    let mut st = target.new_state(64).unwrap();
    let logits = target.forward(&mut st, &prompt, false).unwrap().to_vec();
    let p = top(&logits, 4, |_| true);
    // The draft's q: its top two over its shortlist (the base ids plus the prompt's).
    let listed = base_ids(&tok, draft_vocab);
    let in_list =
        |id: u32| draft_vocab == 0 || listed.binary_search(&id).is_ok() || prompt.contains(&id);
    let q = top(&logits, 2, in_list);
    eprintln!("p {p:?}\nq {q:?}");
    if draft_vocab > 0 {
        assert!(
            p.iter().any(|&(id, _)| !in_list(id)),
            "the shortlist must leave out one of the target's best for this case: {p:?}"
        );
    }
    assert!(
        p.iter().all(|&(_, pi)| pi * N_DRAWS as f64 >= 5.0),
        "every bin needs >= 5 expected draws for the chi-squared bound: {p:?}"
    );

    let spec = SpecParams {
        n_max: 1,
        n_min: 0,
        p_min: 0.0,
        adaptive: false,
        draft_vocab,
    };
    let mut s = Speculator::new(&target, &draft, &tok, 64, chain(4), chain(2), spec).unwrap();
    let mut counts = vec![0.0; 4];
    let (mut drafted, mut accepted) = (0, 0);
    for seed in 0..N_DRAWS as u64 {
        s.reseed(seed);
        let out = s
            .generate::<SpecError>(&prompt, Some(1), &|_| false, |_| Ok(true))
            .unwrap();
        drafted += out.stats.drafted;
        accepted += out.stats.accepted;
        let id = out.tokens[0];
        let bin = p.iter().position(|&(t, _)| t == id);
        let Some(bin) = bin else {
            panic!("token {id} is outside the target's top-4 {p:?}")
        };
        counts[bin] += 1.0;
    }
    let n = N_DRAWS as f64;
    let stat = chi2(&counts, &p, n);
    let q_expected: Vec<f64> = p
        .iter()
        .map(|&(t, _)| n * q.iter().find(|&&(u, _)| u == t).map_or(0.0, |&(_, qi)| qi))
        .collect();
    let stat_q = chi2(&q_expected, &p, n);
    eprintln!(
        "counts {counts:?}, chi2 {stat:.2}; draft-only expectation would give {stat_q:.2}; drafted {drafted}, accepted {accepted}"
    );
    assert_eq!(
        drafted, N_DRAWS,
        "every first token must go through verification"
    );
    assert!(
        accepted > N_DRAWS / 10 && accepted < N_DRAWS * 9 / 10,
        "{accepted} accepted"
    );
    assert!(
        stat < CHI2_3DOF_P001,
        "chi2 {stat} for counts {counts:?} vs p {p:?}"
    );
    assert!(
        stat_q > 3.0 * CHI2_3DOF_P001,
        "the draft's distribution is too close to p for this test to tell them apart: {stat_q}"
    );
}
