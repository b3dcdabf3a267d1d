//! Byte-level BPE against llama.cpp on synthetic vocabularies: a small GPT-2-style vocabulary
//! is trained here (a few hundred merges over an English + multilingual text), written as a
//! vocab-only GGUF with our writer under several `tokenizer.ggml.pre` names, and loaded by
//! both infer and llama.cpp. Ids, pieces and detokenized text must agree on the corpus.

mod tokenizer_support;

use ggml_ref::llama::RefModel;
use infer::gguf::{GgufFile, GgufWriter};
use infer::tokenizer::{token_type, Tokenizer};
use std::collections::HashMap;
use std::path::PathBuf;

/// GPT-2's byte alphabet, written out independently of infer's: printable Latin-1 bytes stand
/// for themselves, the other 68 bytes for U+0100.. in byte order.
fn byte_char(b: u8) -> char {
    let printable = |x: u8| (0x21..=0x7E).contains(&x) || (0xA1..=0xAC).contains(&x) || x >= 0xAE;
    if printable(b) {
        return b as char;
    }
    let rank = (0..b).filter(|&x| !printable(x)).count() as u32;
    char::from_u32(0x100 + rank).expect("valid char")
}

fn encode_bytes(s: &str) -> Vec<String> {
    s.bytes().map(|b| byte_char(b).to_string()).collect()
}

/// Words for training: a leading space joins the run that follows, runs break where the kind
/// of character (letter, digit, other) changes. Good enough to learn realistic merges.
fn training_words(text: &str) -> HashMap<String, usize> {
    let kind = |c: char| {
        if c.is_alphabetic() {
            0
        } else if c.is_numeric() {
            1
        } else if c.is_whitespace() {
            2
        } else {
            3
        }
    };
    let mut words = HashMap::new();
    let mut cur = String::new();
    let mut cur_kind = None;
    for c in text.chars() {
        let k = kind(c);
        let continues = match cur_kind {
            Some(prev) => prev == k || (cur == " " && k != 2),
            None => false,
        };
        if !continues && !cur.is_empty() {
            *words.entry(std::mem::take(&mut cur)).or_insert(0) += 1;
        }
        cur.push(c);
        cur_kind = Some(k);
    }
    if !cur.is_empty() {
        *words.entry(cur).or_insert(0) += 1;
    }
    words
}

/// A byte-level BPE: 256 byte tokens, one token per merge, then the special tokens.
struct TrainedVocab {
    tokens: Vec<String>,
    types: Vec<i32>,
    merges: Vec<String>,
}

const SPECIALS: &[(&str, i32)] = &[
    ("<|begin_of_text|>", token_type::CONTROL),
    ("<|end_of_text|>", token_type::CONTROL),
    ("<|eot_id|>", token_type::CONTROL),
    ("<|im_end|>", token_type::CONTROL),
    ("<tool>", token_type::USER_DEFINED),
];

fn train(text: &str, n_merges: usize) -> TrainedVocab {
    let mut words: Vec<(Vec<String>, usize)> = training_words(text)
        .into_iter()
        .map(|(w, n)| (encode_bytes(&w), n))
        .collect();
    words.sort();
    let mut tokens: Vec<String> = (0..=255u8).map(|b| byte_char(b).to_string()).collect();
    let mut merges = Vec::new();
    for _ in 0..n_merges {
        let mut counts: HashMap<(String, String), usize> = HashMap::new();
        for (syms, n) in &words {
            for pair in syms.windows(2) {
                *counts
                    .entry((pair[0].clone(), pair[1].clone()))
                    .or_insert(0) += n;
            }
        }
        // Most frequent pair; ties broken by the pair itself so training is deterministic.
        let Some(((a, b), n)) = counts
            .into_iter()
            .max_by(|x, y| x.1.cmp(&y.1).then_with(|| y.0.cmp(&x.0)))
        else {
            break;
        };
        if n < 2 {
            break;
        }
        let joined = format!("{a}{b}");
        merges.push(format!("{a} {b}"));
        if !tokens.contains(&joined) {
            tokens.push(joined.clone());
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
    let mut types = vec![token_type::NORMAL; tokens.len()];
    for (t, ty) in SPECIALS {
        tokens.push(t.to_string());
        types.push(*ty);
    }
    TrainedVocab {
        tokens,
        types,
        merges,
    }
}

fn training_text() -> String {
    let mut text = String::from(
        "The tokenizer splits text into words and merges the most frequent pairs of bytes. \
         It's a simple idea: we count pairs, we merge the best one, and we repeat. They'll \
         find that numbers like 2024, 365 and 1000000 split into groups; code such as \
         fn main() { println!(\"hello\"); } and def f(x): return x + 1 appears too.\n\n",
    );
    for s in tokenizer_support::corpus() {
        text.push_str(&s);
        text.push('\n');
    }
    text.repeat(2)
}

fn write_vocab(v: &TrainedVocab, pre: &str) -> PathBuf {
    let id = |t: &str| v.tokens.iter().position(|x| x == t).expect("special token") as u32;
    let path = std::env::temp_dir().join(format!("infer-bpe-{}-{pre}.gguf", std::process::id()));
    GgufWriter::new()
        .meta("general.architecture", "llama")
        .meta("general.name", "synthetic bpe")
        .meta("tokenizer.ggml.model", "gpt2")
        .meta("tokenizer.ggml.pre", pre)
        .meta("tokenizer.ggml.tokens", v.tokens.clone())
        .meta("tokenizer.ggml.token_type", v.types.clone())
        .meta("tokenizer.ggml.merges", v.merges.clone())
        .meta("tokenizer.ggml.bos_token_id", id("<|begin_of_text|>"))
        .meta("tokenizer.ggml.eos_token_id", id("<|end_of_text|>"))
        .write_to(&path)
        .expect("write synthetic gguf");
    path
}

fn compare(pre: &str) {
    let vocab = train(&training_text(), 400);
    assert!(
        vocab.merges.len() >= 300,
        "only {} merges learned",
        vocab.merges.len()
    );
    let path = write_vocab(&vocab, pre);
    let file = GgufFile::open(&path).expect("our reader opens the synthetic file");
    let ours = Tokenizer::from_gguf(&file).expect("our tokenizer");
    let theirs = RefModel::load(&path, true)
        .unwrap_or_else(|e| panic!("llama.cpp refused the vocab-only file for pre={pre}: {e}"));
    let _ = std::fs::remove_file(&path);

    assert_eq!(ours.n_vocab(), theirs.n_vocab());
    assert_eq!(ours.add_bos(), theirs.add_bos(), "add_bos for pre={pre}");
    for text in tokenizer_support::corpus() {
        for (add, parse) in [(true, true), (false, false), (true, false), (false, true)] {
            let a = ours.encode(&text, add, parse);
            let b = theirs.tokenize(&text, add, parse);
            assert_eq!(
                a, b,
                "pre={pre} ids for {text:?} (add_special={add}, parse_special={parse})"
            );
        }
        let ids = ours.encode(&text, true, true);
        for (remove, unparse) in [(false, false), (true, true)] {
            assert_eq!(
                ours.detokenize(&ids, remove, unparse),
                theirs.detokenize(&ids, remove, unparse),
                "pre={pre} detokenize {text:?} remove_special={remove} unparse_special={unparse}"
            );
        }
    }
    for id in 0..ours.n_vocab() as u32 {
        for special in [false, true] {
            assert_eq!(
                ours.token_to_piece(id, special),
                theirs.token_to_piece(id, 0, special),
                "pre={pre} piece of {id} special={special}"
            );
        }
        assert_eq!(ours.is_eog(id), theirs.is_eog(id), "pre={pre} is_eog({id})");
    }
}

#[test]
fn llama3_pre_tokenizer_matches_llama_cpp() {
    compare("llama-bpe");
}

#[test]
fn qwen2_pre_tokenizer_matches_llama_cpp() {
    compare("qwen2");
}

#[test]
fn default_pre_tokenizer_matches_llama_cpp() {
    compare("default");
}

#[test]
fn gpt2_pre_tokenizer_matches_llama_cpp() {
    compare("gpt-2");
}

#[test]
fn smollm_pre_tokenizer_matches_llama_cpp() {
    compare("smollm");
}

#[test]
fn unknown_pre_tokenizer_is_a_clear_error() {
    let vocab = train("a b a b a b", 2);
    let path = write_vocab(&vocab, "no-such-pre");
    let file = GgufFile::open(&path).expect("open");
    let _ = std::fs::remove_file(&path);
    let err = Tokenizer::from_gguf(&file).expect_err("unknown pre must fail");
    let msg = err.to_string();
    assert!(
        msg.contains("no-such-pre") && msg.contains("infer-bpe"),
        "{msg}"
    );
}

#[test]
fn a_file_without_a_tokenizer_is_a_clear_error() {
    let path = std::env::temp_dir().join(format!("infer-notok-{}.gguf", std::process::id()));
    GgufWriter::new()
        .meta("general.architecture", "llama")
        .write_to(&path)
        .expect("write");
    let file = GgufFile::open(&path).expect("open");
    let _ = std::fs::remove_file(&path);
    let msg = Tokenizer::from_gguf(&file)
        .expect_err("no tokenizer keys")
        .to_string();
    assert!(
        msg.contains("infer-notok") && msg.contains("no tokenizer"),
        "{msg}"
    );
}
