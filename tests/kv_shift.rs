//! Context shift on the real Gemma 3 270M: after `Model::context_shift` the cache must hold, for
//! every kept token, the keys and values a forward pass would have produced at the token's new
//! position.
//!
//! Values do not depend on the position, so each kept cell must hold exactly the `Vcur` the
//! original pass produced (f16-rounded): this checks that the right cells were kept and moved.
//! Keys must equal `rope(Kcur_normed, new position)` with the layer's own RoPE base (10k on the
//! local layers, 1M on the global ones), rounded to f16. Ours are the old keys rotated by the
//! position delta, so they were rounded to f16 twice; the stated tolerance is
//! max |Δ| <= 2^-9 * max |row| per row (two f16 roundings are 2^-10 at most; measured below it),
//! while a wrong base, a wrong sign or a missing rotation moves keys by tens of percent. Layer 0
//! depends on nothing but the token and its position, so there a fresh forward over the kept
//! tokens must give the same values bit for bit and the same keys within that tolerance.

use std::collections::HashMap;
use std::path::Path;

use infer::cpu::ops;
use infer::gguf::GgufFile;
use infer::model::{Model, ModelOptions, State};

const MODEL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/models/gemma-3-270m-q4_k_m.gguf"
);

fn model_path() -> Option<&'static Path> {
    let p = Path::new(MODEL);
    if p.exists() {
        Some(p)
    } else {
        eprintln!("skipping: {MODEL} is absent (scripts/fetch-model.sh fetches it)");
        None
    }
}

fn tokens(n: usize) -> Vec<u32> {
    // BOS, then ordinary vocabulary ids from a fixed LCG.
    let mut s = 0x2545_f491_4f6c_dd1du64;
    let mut t = vec![2];
    while t.len() < n {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        t.push(1000 + ((s >> 33) % 200_000) as u32);
    }
    t
}

/// Forward `toks`, keeping per layer the named traced rows.
fn traced(
    model: &Model,
    st: &mut State,
    toks: &[u32],
    names: &[&str],
) -> HashMap<(String, usize), Vec<f32>> {
    let mut out: HashMap<(String, usize), Vec<f32>> = HashMap::new();
    let mut keep = |name: &str, layer: usize, data: &[f32]| {
        if names.contains(&name) {
            out.entry((name.to_string(), layer))
                .or_default()
                .extend_from_slice(data);
        }
    };
    model
        .forward_traced(st, toks, false, &mut keep)
        .expect("forward");
    out
}

fn f16_round(x: &mut [f32]) {
    for v in x {
        *v = half::f16::from_f32(*v).to_f32();
    }
}

/// `(cell, position)` of the filled cells of layer `il`'s group.
fn filled(st: &State, il: usize) -> Vec<(usize, usize)> {
    let g = st.kv().layer(il).group();
    st.kv()
        .cells(g)
        .positions()
        .iter()
        .enumerate()
        .filter(|(_, &p)| p >= 0)
        .map(|(c, &p)| (c, p as usize))
        .collect()
}

fn max_abs(x: &[f32]) -> f32 {
    x.iter().fold(0.0f32, |m, v| m.max(v.abs()))
}

#[test]
fn shifted_cache_holds_the_keys_and_values_of_the_new_positions() {
    let Some(path) = model_path() else { return };
    let gguf = GgufFile::open(path).expect("open gguf");
    let model = Model::load(&gguf, &ModelOptions { n_threads: 2 }).expect("load");
    let hp = model.hparams().clone();
    let (n_ctx, keep) = (768, 4);
    let toks = tokens(n_ctx - 1);
    let mut st = model.new_state(n_ctx).expect("state");
    st.set_context_shift(Some(keep));
    let tr = traced(&model, &mut st, &toks, &["Kcur_normed", "Vcur"]);
    let discard = model.context_shift(&mut st).expect("shift");
    assert_eq!(discard, (toks.len() - keep) / 2);
    assert_eq!(st.len(), toks.len() - discard);
    // Position after the shift -> index of the token in `toks`.
    let src = |p: usize| if p < keep { p } else { p + discard };

    let (nk, nv) = (hp.n_k(), hp.n_v());
    let mut row = vec![0.0f32; nk.max(nv)];
    let mut cs = vec![0.0f32; hp.n_rot];
    let mut worst = 0.0f32;
    for il in 0..hp.n_layer {
        let cells = filled(&st, il);
        let window = if hp.is_swa(il) {
            hp.sliding_window
        } else {
            None
        };
        // Every position the next token can see is held.
        let next = st.len();
        let lo = window.map_or(0, |w| (next + 1).saturating_sub(w));
        for p in lo..next {
            assert!(
                cells.iter().any(|&(_, q)| q == p),
                "layer {il}: position {p} missing"
            );
        }
        let (base, scale) = if hp.is_swa(il) {
            (hp.rope_freq_base_swa, hp.rope_freq_scale_swa)
        } else {
            (hp.rope_freq_base, hp.rope_freq_scale)
        };
        let kn = &tr[&("Kcur_normed".to_string(), il)];
        let vc = &tr[&("Vcur".to_string(), il)];
        for &(cell, p) in &cells {
            let t = src(p);
            st.kv().layer(il).read_v(cell, &mut row[..nv]);
            let mut want_v = vc[t * nv..(t + 1) * nv].to_vec();
            f16_round(&mut want_v);
            assert_eq!(
                &row[..nv],
                &want_v[..],
                "layer {il} cell {cell}: V of token {t}"
            );

            st.kv().layer(il).read_k(cell, &mut row[..nk]);
            let mut want_k = kn[t * nk..(t + 1) * nk].to_vec();
            ops::rope_cache(p, hp.n_rot, base, scale, &mut cs);
            ops::rope(&mut want_k, hp.head_dim, hp.n_rot, hp.rope_style, &cs);
            f16_round(&mut want_k);
            let d = row[..nk]
                .iter()
                .zip(&want_k)
                .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
            let rel = d / max_abs(&want_k);
            worst = worst.max(rel);
            assert!(
                rel <= 1.0 / 512.0,
                "layer {il} cell {cell} (token {t} now at {p}): key off by {rel:.2e} of its max"
            );
        }
    }
    eprintln!("worst key difference after the shift: {worst:.3e} of the row max");

    // Layer 0 against a fresh forward over the kept tokens at their new positions.
    let kept: Vec<u32> = (0..st.len()).map(|p| toks[src(p)]).collect();
    let mut fresh = model.new_state(n_ctx).expect("state");
    model
        .forward(&mut fresh, &kept, false)
        .expect("fresh forward");
    let fresh_cells: HashMap<usize, usize> =
        filled(&fresh, 0).into_iter().map(|(c, p)| (p, c)).collect();
    let mut other = vec![0.0f32; nk.max(nv)];
    for (cell, p) in filled(&st, 0) {
        let fc = fresh_cells[&p];
        st.kv().layer(0).read_v(cell, &mut row[..nv]);
        fresh.kv().layer(0).read_v(fc, &mut other[..nv]);
        assert_eq!(row[..nv], other[..nv], "layer 0 V at position {p}");
        st.kv().layer(0).read_k(cell, &mut row[..nk]);
        fresh.kv().layer(0).read_k(fc, &mut other[..nk]);
        let d = row[..nk]
            .iter()
            .zip(&other[..nk])
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            d <= max_abs(&other[..nk]) / 512.0,
            "layer 0 K at position {p}: off by {d}"
        );
    }

    // Generation goes on past the old limit.
    let l = model
        .forward(&mut st, &[toks[100]], false)
        .expect("decode after shift");
    assert!(l.iter().all(|x| x.is_finite()));
}

/// Without context shift the state refuses to grow past n_ctx; truncate rolls back and a
/// re-evaluation gives the same logits bit for bit, also on window layers past the window.
#[test]
fn truncate_round_trips_past_the_window() {
    let Some(path) = model_path() else { return };
    let gguf = GgufFile::open(path).expect("open gguf");
    let model = Model::load(&gguf, &ModelOptions { n_threads: 2 }).expect("load");
    let toks = tokens(700);
    let mut st = model.new_state(1024).expect("state");
    model
        .forward(&mut st, &toks[..690], false)
        .expect("prefill");
    let mut first = Vec::new();
    for &t in &toks[690..] {
        first.push(
            model
                .forward(&mut st, &[t], false)
                .expect("decode")
                .to_vec(),
        );
    }
    assert_eq!(st.truncate(690), 690);
    for (i, &t) in toks[690..].iter().enumerate() {
        let again = model.forward(&mut st, &[t], false).expect("decode");
        assert_eq!(again, &first[i][..], "token {} after truncate", 690 + i);
    }
    let mut small = model.new_state(8).expect("state");
    model.forward(&mut small, &toks[..8], false).expect("fill");
    assert!(model.forward(&mut small, &toks[..1], false).is_err());
}
