//! Greedy speculative decoding gives exactly the target's own greedy tokens, with a good draft
//! (the target's own file: nearly every draft accepted) and a deliberately poor one (a random
//! one-layer model with the same vocabulary: nearly every draft rejected, so the adaptive length
//! must shrink and the draft must sit out). The reference is `infer run`'s plain loop on the
//! target alone. The good-draft cases run with the draft's whole output head and with its
//! shortlist head. An F16 target (whose verification batches go through `gemm_float`, every row
//! rounded as a one-token product) with the Q4_K_M draft must give its own greedy tokens too.
//! Also: the vocabulary check accepts the pair and names both files and the first difference when
//! a vocabulary differs (llama.cpp's rules).

mod spec_support;

use infer::gguf::{GgufFile, GgufWriter};
use infer::model::{Model, ModelOptions};
use infer::sample::SamplerParams;
use infer::spec::{check_vocab, SpecError, SpecParams, Speculator};
use infer::tokenizer::Tokenizer;
use spec_support::{f16_model, plain_decode, real_model, write_poor_draft, TempDir};

const N_GEN: usize = 32;
const PROMPTS: [&str; 2] = [
    "The capital of France is",
    "Write a short poem about the sea:\n",
];

fn greedy(repeat_penalty: f32) -> SamplerParams {
    SamplerParams {
        temp: 0.0,
        repeat_penalty,
        ..SamplerParams::default()
    }
}

fn speculate(
    target: &Model,
    draft: &Model,
    prompt: &[u32],
    sp: SamplerParams,
    spec: SpecParams,
    tok: &Tokenizer,
) -> (Vec<u32>, infer::spec::SpecStats) {
    let mut s = Speculator::new(target, draft, tok, 512, sp.clone(), sp, spec).expect("speculator");
    let out = s
        .generate::<SpecError>(prompt, Some(N_GEN), &|id| tok.is_eog(id), |_| Ok(true))
        .expect("speculative decode");
    (out.tokens, out.stats)
}

#[test]
fn good_draft_gives_identical_greedy_tokens() {
    let Some(path) = real_model() else { return };
    let gguf = GgufFile::open(&path).unwrap();
    let tok = Tokenizer::from_gguf(&gguf).unwrap();
    let target = Model::load(&gguf, &ModelOptions::default()).unwrap();
    // A second load of the same file as the draft, as `--draft` of the same file would do.
    let draft = Model::load(&gguf, &ModelOptions::default()).unwrap();
    // Fixed lengths, so that every step verifies a draft: long drafts with p-min off and the
    // whole head, then the default p-min and shortlist with a repeat penalty (drafted positions
    // must see the same penalty window).
    let cases = [
        (PROMPTS[0], 1.0, 8, 0.0, 0),
        (PROMPTS[1], 1.3, 4, 0.75, infer::spec::DEFAULT_DRAFT_VOCAB),
    ];
    for (text, penalty, n_max, p_min, draft_vocab) in cases {
        let prompt = tok.encode(text, true, true);
        let sp = greedy(penalty);
        let want = plain_decode(&target, &prompt, sp.clone(), N_GEN);
        let spec = SpecParams {
            n_max,
            n_min: 0,
            p_min,
            adaptive: false,
            draft_vocab,
        };
        let (got, stats) = speculate(&target, &draft, &prompt, sp, spec, &tok);
        eprintln!("{text:?}: {stats:?}, acceptance {:.3}", stats.acceptance());
        assert_eq!(
            got, want,
            "prompt {text:?}: speculative tokens differ from the target's"
        );
        assert!(
            stats.acceptance() > 0.95,
            "the target drafting for itself must be accepted: {stats:?}"
        );
        assert!(
            stats.spec_steps * 2 < want.len(),
            "several tokens per verification expected: {stats:?}"
        );
    }
}

#[test]
fn poor_draft_gives_identical_greedy_tokens_and_shrinks() {
    let Some(path) = real_model() else { return };
    let dir = TempDir::new("spec-greedy");
    let draft_path = dir.0.join("poor-draft.gguf");
    let gguf = GgufFile::open(&path).unwrap();
    write_poor_draft(&gguf, &draft_path);
    let dgguf = GgufFile::open(&draft_path).unwrap();
    let tok = Tokenizer::from_gguf(&gguf).unwrap();
    let dtok = Tokenizer::from_gguf(&dgguf).unwrap();
    check_vocab(
        &path.display().to_string(),
        &tok,
        &draft_path.display().to_string(),
        &dtok,
    )
    .expect("same vocabulary");
    let target = Model::load(&gguf, &ModelOptions::default()).unwrap();
    let draft = Model::load(&dgguf, &ModelOptions::default()).unwrap();
    let prompt = tok.encode(PROMPTS[0], true, true);
    let want = plain_decode(&target, &prompt, greedy(1.0), N_GEN);
    // p-min 0: the random draft is never confident, and it must be made to draft anyway.
    let spec = SpecParams {
        n_max: 16,
        n_min: 0,
        p_min: 0.0,
        adaptive: true,
        draft_vocab: infer::spec::DEFAULT_DRAFT_VOCAB,
    };
    let (got, stats) = speculate(&target, &draft, &prompt, greedy(1.0), spec, &tok);
    eprintln!(
        "poor draft: {stats:?}, acceptance {:.3}",
        stats.acceptance()
    );
    assert_eq!(got, want, "speculative tokens differ from the target's");
    assert!(stats.acceptance() < 0.2, "{stats:?}");
    let l = &stats.lengths;
    let third = l.len() / 3;
    let mean = |v: &[usize]| v.iter().sum::<usize>() as f64 / v.len().max(1) as f64;
    assert!(
        third >= 1 && mean(&l[l.len() - third..]) < mean(&l[..third]) && l.last() == Some(&1),
        "the draft length must shrink after rejections: {l:?}"
    );
    assert!(
        stats.plain_steps > stats.spec_steps,
        "a draft that is never right must sit out most steps: {stats:?}"
    );
}

#[test]
fn f16_target_gives_identical_greedy_tokens() {
    let (Some(draft_path), Some(target_path)) = (real_model(), f16_model()) else {
        return;
    };
    let tgguf = GgufFile::open(&target_path).unwrap();
    let dgguf = GgufFile::open(&draft_path).unwrap();
    let tok = Tokenizer::from_gguf(&tgguf).unwrap();
    // Flash attention on, as `infer run` does by default.
    let mut target = Model::load(&tgguf, &ModelOptions::default()).unwrap();
    target.set_flash_attn(true);
    let mut draft = Model::load(&dgguf, &ModelOptions::default()).unwrap();
    draft.set_flash_attn(true);
    let prompt = tok.encode(PROMPTS[1], true, true);
    let want = plain_decode(&target, &prompt, greedy(1.0), N_GEN);
    // Every batch size from 2 to 9 rows, then the adaptive length.
    for (n_max, adaptive) in [(8, false), (16, true)] {
        let spec = SpecParams {
            n_max,
            n_min: 0,
            p_min: 0.0,
            adaptive,
            draft_vocab: infer::spec::DEFAULT_DRAFT_VOCAB,
        };
        let (got, stats) = speculate(&target, &draft, &prompt, greedy(1.0), spec, &tok);
        eprintln!("F16 target, n_max {n_max}: {stats:?}");
        assert_eq!(
            got, want,
            "F16 target: speculative tokens differ from its own"
        );
        assert!(stats.acceptance() > 0.8, "{stats:?}");
    }
}

/// Only the tokenizer keys of the real file, with `edit` applied: enough for `Tokenizer`.
fn vocab_variant(
    real: &GgufFile,
    edit: impl Fn(&str, infer::gguf::Value) -> infer::gguf::Value,
) -> Tokenizer {
    let mut w = GgufWriter::new().meta("general.architecture", "gemma3");
    for (k, v) in real.metadata().iter() {
        if k.starts_with("tokenizer.") {
            w = w.meta(k, edit(k, v.clone()));
        }
    }
    let file = GgufFile::from_bytes(w.to_bytes()).unwrap();
    Tokenizer::from_gguf(&file).unwrap()
}

#[test]
fn vocab_check_names_both_files_and_the_difference() {
    let Some(path) = real_model() else { return };
    let gguf = GgufFile::open(&path).unwrap();
    let tok = Tokenizer::from_gguf(&gguf).unwrap();
    let same = vocab_variant(&gguf, |_, v| v);
    check_vocab("target.gguf", &tok, "draft.gguf", &same).expect("identical vocabularies");

    let renamed = vocab_variant(&gguf, |k, v| match (k, v) {
        ("tokenizer.ggml.tokens", infer::gguf::Value::Array(a)) => {
            let mut a = a.clone();
            if let infer::gguf::Array::String(s) = &mut a {
                s[1000] = "changed".into();
            }
            infer::gguf::Value::Array(a)
        }
        (_, v) => v,
    });
    let err = check_vocab("target.gguf", &tok, "draft.gguf", &renamed).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("target.gguf") && msg.contains("draft.gguf") && msg.contains("token 1000"),
        "{msg}"
    );

    let other_bos = vocab_variant(&gguf, |k, v| {
        if k == "tokenizer.ggml.bos_token_id" {
            infer::gguf::Value::from(7u32)
        } else {
            v
        }
    });
    let msg = check_vocab("target.gguf", &tok, "draft.gguf", &other_bos)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("BOS") && msg.contains("Some(2)") && msg.contains("Some(7)"),
        "{msg}"
    );
}
