//! Shared by the model-vs-llama.cpp tests: logits comparison metrics, op-by-op comparison of
//! traced intermediate tensors, and a deterministic PRNG.

#![allow(dead_code)]

/// How one of our logits rows compares with llama.cpp's for the same position.
#[derive(Debug, Clone, Copy)]
pub struct Diff {
    /// Both argmaxes agree.
    pub same_top1: bool,
    /// max |ours - ref| / max |ref|.
    pub max_rel: f32,
    /// sum (ours - ref)^2 / sum ref^2.
    pub nmse: f64,
    /// Reference top-1 minus top-2 logit: how close the argmax was to a tie.
    pub ref_margin: f32,
}

pub fn argmax(x: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] {
            best = i;
        }
    }
    best
}

pub fn nmse(ours: &[f32], reference: &[f32]) -> f64 {
    assert_eq!(ours.len(), reference.len(), "lengths");
    let err: f64 = ours
        .iter()
        .zip(reference)
        .map(|(a, b)| ((a - b) as f64).powi(2))
        .sum();
    let energy: f64 = reference.iter().map(|b| (*b as f64).powi(2)).sum();
    if energy == 0.0 {
        return if err == 0.0 { 0.0 } else { f64::INFINITY };
    }
    err / energy
}

pub fn compare(ours: &[f32], reference: &[f32]) -> Diff {
    assert_eq!(ours.len(), reference.len(), "logits row lengths");
    assert!(
        ours.iter().all(|v| v.is_finite()),
        "our logits hold NaN/inf"
    );
    let max_ref = reference.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let max_diff = ours
        .iter()
        .zip(reference)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    let top = argmax(reference);
    let second = reference
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != top)
        .fold(f32::NEG_INFINITY, |m, (_, &v)| m.max(v));
    Diff {
        same_top1: argmax(ours) == top,
        max_rel: max_diff / max_ref,
        nmse: nmse(ours, reference),
        ref_margin: reference[top] - second,
    }
}

/// Deterministic token ids in `lo..hi` (a 64-bit LCG; no external crates).
pub fn token_ids(n: usize, lo: u32, hi: u32, seed: u64) -> Vec<u32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            lo + ((s >> 33) % (hi - lo) as u64) as u32
        })
        .collect()
}

/// Deterministic values, uniform in [-scale, scale).
pub fn uniform(n: usize, scale: f32, seed: u64) -> Vec<f32> {
    let mut s = seed ^ 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0) * scale
        })
        .collect()
}

/// Acceptance bounds for a set of compared logits rows.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Every position: max |Δ| / max |ref| at most this.
    pub max_rel: f32,
    /// Every position: NMSE at most this.
    pub nmse: f64,
    /// The median position: NMSE at most this.
    pub median_nmse: f64,
    /// The argmax must agree wherever llama.cpp's top-1 leads its top-2 by at least this many
    /// logits (0 = everywhere).
    pub top1_margin: f32,
}

/// Checks `diffs` against `b`; panics listing every offending position.
pub fn check(label: &str, diffs: &[(usize, Diff)], b: Bounds) {
    let mut failures = Vec::new();
    let mut nmses: Vec<f64> = diffs.iter().map(|(_, d)| d.nmse).collect();
    nmses.sort_by(|a, b| a.total_cmp(b));
    let median = nmses[nmses.len() / 2];
    let worst_rel = diffs.iter().fold(0.0f32, |m, (_, d)| m.max(d.max_rel));
    let worst_nmse = nmses[nmses.len() - 1];
    let flips: Vec<String> = diffs
        .iter()
        .filter(|(_, d)| !d.same_top1)
        .map(|(p, d)| format!("{p} (margin {:.3})", d.ref_margin))
        .collect();
    for &(pos, d) in diffs {
        if d.max_rel > b.max_rel
            || d.nmse > b.nmse
            || (!d.same_top1 && d.ref_margin >= b.top1_margin)
        {
            failures.push(format!("pos {pos}: {d:?}"));
        }
    }
    if median > b.median_nmse {
        failures.push(format!("median nmse {median:.3e} > {:.1e}", b.median_nmse));
    }
    eprintln!(
        "{label}: {} positions; worst max_rel {worst_rel:.3e} (bound {:.1e}); nmse median \
         {median:.3e} (bound {:.1e}), worst {worst_nmse:.3e} (bound {:.1e}); top-1 differs at \
         {} position(s) {flips:?} (allowed below margin {})",
        diffs.len(),
        b.max_rel,
        b.median_nmse,
        b.nmse,
        flips.len(),
        b.top1_margin
    );
    assert!(failures.is_empty(), "{label}:\n{}", failures.join("\n"));
}

/// Compare traced tensors of ours with llama.cpp's captured ones by name (`name-layer`). For a
/// name llama.cpp emits twice (e.g. `Kcur` before norm and after RoPE) the last one counts, as
/// ours. Every captured tensor must have a traced twin of the same length, with NMSE over the
/// whole tensor at most `bound(name)`. Returns the worst NMSE and the tensor it was seen on.
pub fn check_tensors(
    label: &str,
    ours: &[(String, Vec<f32>)],
    theirs: &[(String, Vec<f32>)],
    bound: &dyn Fn(&str) -> f64,
) -> (f64, String) {
    let last = |v: &[(String, Vec<f32>)], n: &str| {
        v.iter().rev().find(|(m, _)| m == n).map(|(_, d)| d.clone())
    };
    let mut names: Vec<&str> = theirs.iter().map(|(n, _)| n.as_str()).collect();
    names.dedup();
    assert!(!names.is_empty(), "{label}: llama.cpp reported no tensors");
    let mut worst = (0.0f64, String::new());
    let mut failures = Vec::new();
    for n in names {
        let t = last(theirs, n).expect("captured");
        let Some(o) = last(ours, n) else {
            failures.push(format!("{n}: not traced by us"));
            continue;
        };
        if o.len() != t.len() {
            failures.push(format!(
                "{n}: {} values vs llama.cpp's {}",
                o.len(),
                t.len()
            ));
            continue;
        }
        let e = nmse(&o, &t);
        if e > worst.0 {
            worst = (e, n.to_string());
        }
        if e > bound(n) || e.is_nan() {
            failures.push(format!("{n}: nmse {e:.3e} > {:.1e}", bound(n)));
        }
    }
    eprintln!("{label}: worst tensor nmse {:.3e} ({})", worst.0, worst.1);
    assert!(failures.is_empty(), "{label}:\n{}", failures.join("\n"));
    worst
}
