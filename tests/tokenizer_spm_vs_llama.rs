//! SentencePiece-style vocabularies against llama.cpp beyond Gemma's settings: a small
//! Llama-2-like vocabulary (`<unk>`, `<s>`, `</s>`, 256 `<0xNN>` byte tokens, pieces learned
//! here with scores) written as a vocab-only GGUF, with `add_space_prefix` left to its default
//! (true, as Llama 2, Mistral and TinyLlama use) and set false, and with EOS added. Ids,
//! pieces and detokenized text must agree with llama.cpp on the shared corpus.

mod tokenizer_support;

use ggml_ref::llama::RefModel;
use infer::gguf::{GgufFile, GgufWriter};
use infer::tokenizer::{token_type, Tokenizer};
use std::collections::HashMap;
use std::path::PathBuf;

const SPACE: char = '\u{2581}';

struct SpmVocab {
    tokens: Vec<String>,
    scores: Vec<f32>,
    types: Vec<i32>,
}

/// Pieces by greedy pair merging over characters (spaces as U+2581, a word boundary before
/// each space), scored so earlier merges win, plus every single character seen.
fn train(text: &str, n_merges: usize) -> SpmVocab {
    let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
    let mut types = vec![
        token_type::UNKNOWN,
        token_type::CONTROL,
        token_type::CONTROL,
    ];
    let mut scores = vec![0.0f32; 3];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(token_type::BYTE);
        scores.push(0.0);
    }

    let escaped: String = text
        .chars()
        .map(|c| if c == ' ' { SPACE } else { c })
        .collect();
    let mut counts: HashMap<String, usize> = HashMap::new();
    let mut cur = String::new();
    for c in escaped.chars() {
        if c == SPACE && !cur.is_empty() {
            *counts.entry(std::mem::take(&mut cur)).or_insert(0) += 1;
        }
        cur.push(c);
    }
    if !cur.is_empty() {
        *counts.entry(cur).or_insert(0) += 1;
    }
    let mut words: Vec<(Vec<String>, usize)> = counts
        .into_iter()
        .map(|(w, n)| (w.chars().map(String::from).collect(), n))
        .collect();
    words.sort();

    // Single characters (rare CJK and emoji are left out on purpose: they take the byte path).
    let mut chars: Vec<String> = words
        .iter()
        .flat_map(|(w, _)| w.iter().cloned())
        .filter(|c| c.len() <= 2)
        .collect();
    chars.sort();
    chars.dedup();
    for c in chars {
        tokens.push(c);
        types.push(token_type::NORMAL);
        scores.push(-1000.0);
    }

    for rank in 0..n_merges {
        let mut pairs: HashMap<(String, String), usize> = HashMap::new();
        for (syms, n) in &words {
            for p in syms.windows(2) {
                *pairs.entry((p[0].clone(), p[1].clone())).or_insert(0) += n;
            }
        }
        let Some(((a, b), n)) = pairs
            .into_iter()
            .max_by(|x, y| x.1.cmp(&y.1).then_with(|| y.0.cmp(&x.0)))
        else {
            break;
        };
        if n < 2 {
            break;
        }
        let joined = format!("{a}{b}");
        if !tokens.contains(&joined) {
            tokens.push(joined.clone());
            types.push(token_type::NORMAL);
            scores.push(-(rank as f32));
        }
        for (syms, _) in &mut words {
            let mut i = 0;
            while i + 1 < syms.len() {
                if syms[i] == a && syms[i + 1] == b {
                    syms[i] = joined.clone();
                    syms.remove(i + 1);
                }
                i += 1;
            }
        }
    }
    // Equal scores on purpose: ties must break toward the leftmost pair, as in llama.cpp.
    for t in ["ab", "bc", "abc"] {
        if !tokens.iter().any(|x| x == t) {
            tokens.push(t.to_string());
            types.push(token_type::NORMAL);
            scores.push(-5.0);
        }
    }
    tokens.push("<start_of_turn>".into());
    types.push(token_type::CONTROL);
    scores.push(0.0);
    tokens.push("<|user|>".into());
    types.push(token_type::USER_DEFINED);
    scores.push(0.0);
    SpmVocab {
        tokens,
        scores,
        types,
    }
}

fn write(v: &SpmVocab, tag: &str, add_space_prefix: Option<bool>, add_eos: bool) -> PathBuf {
    let path = std::env::temp_dir().join(format!("infer-spm-{}-{tag}.gguf", std::process::id()));
    let mut w = GgufWriter::new()
        .meta("general.architecture", "llama")
        .meta("tokenizer.ggml.model", "llama")
        .meta("tokenizer.ggml.tokens", v.tokens.clone())
        .meta("tokenizer.ggml.scores", v.scores.clone())
        .meta("tokenizer.ggml.token_type", v.types.clone())
        .meta("tokenizer.ggml.add_eos_token", add_eos);
    if let Some(p) = add_space_prefix {
        w = w.meta("tokenizer.ggml.add_space_prefix", p);
    }
    w.write_to(&path).expect("write synthetic gguf");
    path
}

fn compare(tag: &str, add_space_prefix: Option<bool>, add_eos: bool) {
    let mut text = String::from("abc abcabc bcab aabbcc ");
    for s in tokenizer_support::corpus() {
        text.push_str(&s);
        text.push(' ');
    }
    let vocab = train(&text.repeat(2), 500);
    let path = write(&vocab, tag, add_space_prefix, add_eos);
    let file = GgufFile::open(&path).expect("open");
    let ours = Tokenizer::from_gguf(&file).expect("our tokenizer");
    let theirs = RefModel::load(&path, true)
        .unwrap_or_else(|e| panic!("llama.cpp refused the SPM file {tag}: {e}"));
    let _ = std::fs::remove_file(&path);

    let mut extra = tokenizer_support::corpus();
    extra.extend(["abc", "abcbc", "<start_of_turn>abc<|user|> x", "a<|user|>"].map(String::from));
    for text in &extra {
        for (add, parse) in [(true, true), (false, false), (true, false), (false, true)] {
            assert_eq!(
                ours.encode(text, add, parse),
                theirs.tokenize(text, add, parse),
                "{tag}: ids for {text:?} (add_special={add}, parse_special={parse})"
            );
        }
        let ids = ours.encode(text, true, true);
        for (remove, unparse) in [(false, false), (true, false), (false, true), (true, true)] {
            assert_eq!(
                ours.detokenize(&ids, remove, unparse),
                theirs.detokenize(&ids, remove, unparse),
                "{tag}: detokenize {text:?} remove_special={remove} unparse_special={unparse}"
            );
        }
    }
    for id in 0..ours.n_vocab() as u32 {
        for special in [false, true] {
            assert_eq!(
                ours.token_to_piece(id, special),
                theirs.token_to_piece(id, 0, special),
                "{tag}: piece of {id} special={special}"
            );
        }
        assert_eq!(ours.is_eog(id), theirs.is_eog(id), "{tag}: is_eog({id})");
    }
}

#[test]
fn llama2_style_with_default_space_prefix_matches_llama_cpp() {
    compare("default-prefix", None, false);
}

#[test]
fn without_space_prefix_matches_llama_cpp() {
    compare("no-prefix", Some(false), false);
}

#[test]
fn with_eos_added_matches_llama_cpp() {
    compare("add-eos", Some(true), true);
}
