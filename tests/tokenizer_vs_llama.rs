//! The Gemma 3 tokenizer against llama.cpp's, on the real model file: ids for a varied corpus
//! in every add_special/parse_special mode, pieces for control/byte/user-defined tokens and a
//! spread of normal ones, detokenized text, token attributes and the end-of-generation set.
//! Skips (with a message) when the model is not present.

use ggml_ref::llama::RefModel;
use infer::gguf::GgufFile;
use infer::tokenizer::Tokenizer;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Instant;

const MODEL: &str = "models/gemma-3-270m-q4_k_m.gguf";

struct Pair {
    ours: Tokenizer,
    theirs: RefModel,
}

fn pair() -> Option<&'static Pair> {
    static PAIR: OnceLock<Option<Pair>> = OnceLock::new();
    PAIR.get_or_init(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(MODEL);
        if !path.exists() {
            eprintln!(
                "skipping: {} not found (scripts/fetch-model.sh fetches it)",
                path.display()
            );
            return None;
        }
        let t0 = Instant::now();
        let file = GgufFile::open(&path).expect("open gguf");
        let t1 = Instant::now();
        let ours = Tokenizer::from_gguf(&file).expect("our tokenizer");
        let t2 = Instant::now();
        eprintln!(
            "GgufFile::open {:.1} ms, Tokenizer::from_gguf {:.1} ms ({} tokens)",
            (t1 - t0).as_secs_f64() * 1e3,
            (t2 - t1).as_secs_f64() * 1e3,
            ours.n_vocab()
        );
        let theirs = RefModel::load(&path, true).expect("llama.cpp vocab-only load");
        Some(Pair { ours, theirs })
    })
    .as_ref()
}

fn corpus() -> Vec<String> {
    let mut v: Vec<String> = [
        "",
        " ",
        "  ",
        "   ",
        "\t",
        "\t\t",
        " \t \t",
        "\n",
        "\n\n",
        "\n\n\n\n",
        "\r\n",
        "line one\r\nline two\r\n",
        "Hello",
        "Hello world",
        " Hello world",
        "Hello world ",
        "  leading and trailing  ",
        "Hello,   world!   How are you?",
        "mixed \t whitespace\t \n end",
        "fn main() {\n    println!(\"hi {}\", 42);\n}\n",
        "def f(x):\n    if x:\n        return [i ** 2 for i in range(x)]\n    return None\n",
        "{\"key\": [1, 2.5, -3e10, true, null], \"nested\": {\"a\": \"b\"}}",
        "SELECT * FROM users WHERE id = 1;",
        "<html><body><div class=\"x\">hi</div></body></html>",
        "<table><tr><td>1</td></tr></table>",
        "中文分词测试，这是一个句子。",
        "日本語のテキストです。カタカナとひらがな",
        "한국어 텍스트입니다",
        "Emoji: 😀🎉👍🏽 and 👩‍👩‍👧‍👦 family, 🏳️‍🌈 flag",
        "👍🏻👍🏼👍🏽👍🏾👍🏿",
        "café naïve résumé Ångström",
        "e\u{301} combining acute, a\u{30a}, n\u{303}",
        "Zalgo: Z\u{36b}\u{33e}a\u{357}l\u{30f}g\u{34b}o",
        "مرحبا بالعالم",
        "שלום עולם",
        "नमस्ते दुनिया, हिन्दी पाठ",
        "สวัสดีครับ ภาษาไทย",
        "Привет, мир! Ёжик",
        "Γειά σου Κόσμε",
        "0123456789",
        "3.14159 2,718 1e-9 -42 +7 100000000000",
        "Numbers: 1 12 123 1234 12345 123456",
        "https://example.com/path?query=1&x=y#frag",
        "user@example.org, ftp://files.example.net/a/b.tar.gz",
        "<start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n",
        "<bos>",
        "<bos>Hello<eos>",
        "<start_of",
        "<start_of_turn",
        "text <end_of_turn> more",
        "</s> and <s> and <unk> and <pad> and <mask>",
        "<unused0><unused6241>[multimodal]",
        "<b>bold</b> <i>it</i> <code>x</code>",
        "\u{1}\u{2}\u{7f} control chars",
        "\u{E000}\u{F8FF} private use",
        "\u{10FFFF} and \u{FFFD}",
        "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕞𝕒𝕥𝕙 𝒮𝒸𝓇𝒾𝓅𝓉",
        "∀x∈ℝ: x² ≥ 0 → √x ∈ ℝ⁺",
        "tabs\tinside\twords",
        "\n\nleading newlines",
        "trailing newlines\n\n\n",
        "                                        forty spaces",
        "a\u{a0}b\u{2003}c\u{3000}d",
        "I'm sure you've heard they'll say it's 'quoted'",
        "ALL CAPS SENTENCE. lower case sentence.",
        "--- *** ___ ~~~ ``` ''' \"\"\"",
        "\\escaped\\ \"quotes\" and 'apostrophes'",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push(
        "The quick brown fox jumps over the lazy dog. ".repeat(20)
            + "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor \
               incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis \
               nostrud exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat.",
    );
    v.push("x".repeat(300));
    v.push("\u{2581}already escaped\u{2581}space".to_string());
    v
}

#[test]
fn ids_match_llama_cpp_on_the_corpus() {
    let Some(p) = pair() else { return };
    let mut n = 0;
    for text in corpus() {
        for (add_special, parse_special) in
            [(true, true), (false, false), (true, false), (false, true)]
        {
            let ours = p.ours.encode(&text, add_special, parse_special);
            let theirs = p.theirs.tokenize(&text, add_special, parse_special);
            assert_eq!(
                ours, theirs,
                "ids differ for {text:?} (add_special={add_special}, parse_special={parse_special})"
            );
            n += 1;
        }
    }
    assert!(n >= 240, "corpus too small: {n}");
}

#[test]
fn special_text_becomes_tokens_only_with_parse_special() {
    let Some(p) = pair() else { return };
    let t = &p.ours;
    let sot = t
        .token_id("<start_of_turn>")
        .expect("<start_of_turn> in vocab");
    let eot = t.token_id("<end_of_turn>").expect("<end_of_turn> in vocab");
    let ids = t.encode("<start_of_turn>user\nhi<end_of_turn>", true, true);
    assert_eq!(ids[0], t.bos().expect("bos"));
    assert_eq!(ids[1], sot);
    assert_eq!(*ids.last().expect("ids"), eot);
    let plain = t.encode("<start_of_turn>user\nhi<end_of_turn>", true, false);
    assert!(!plain.contains(&sot) && !plain.contains(&eot));
}

#[test]
fn pieces_match_llama_cpp() {
    let Some(p) = pair() else { return };
    let (ours, theirs) = (&p.ours, &p.theirs);
    let n = ours.n_vocab() as u32;
    assert_eq!(n as usize, theirs.n_vocab());
    // Every non-normal token (control, byte, user-defined, unused) plus a stride over the rest.
    let mut ids: Vec<u32> = (0..n)
        .filter(|&id| ours.token_attr(id) != infer::tokenizer::attr::NORMAL)
        .collect();
    ids.extend((0..n).step_by(97));
    ids.sort_unstable();
    ids.dedup();
    assert!(ids.len() >= 5000, "sampled only {} ids", ids.len());
    for &id in &ids {
        for special in [false, true] {
            assert_eq!(
                ours.token_to_piece(id, special),
                theirs.token_to_piece(id, 0, special),
                "piece of {id} ({:?}) special={special}",
                ours.token_text(id)
            );
        }
    }
}

#[test]
fn attributes_and_end_of_generation_match_llama_cpp() {
    let Some(p) = pair() else { return };
    let (ours, theirs) = (&p.ours, &p.theirs);
    assert_eq!(ours.bos().map(|x| x as i32), Some(theirs.bos()));
    assert_eq!(ours.eos().map(|x| x as i32), Some(theirs.eos()));
    assert_eq!(ours.eot().map(|x| x as i32).unwrap_or(-1), theirs.eot());
    assert_eq!(ours.add_bos(), theirs.add_bos());
    for id in 0..ours.n_vocab() as u32 {
        assert_eq!(
            ours.is_eog(id),
            theirs.is_eog(id),
            "is_eog({id}) {:?}",
            ours.token_text(id)
        );
        assert_eq!(
            ours.token_attr(id),
            theirs.token_attr(id),
            "attr of {id} {:?}",
            ours.token_text(id)
        );
    }
    let eot = ours.token_id("<end_of_turn>").expect("<end_of_turn>");
    assert!(ours.is_eog(eot));
}

#[test]
fn detokenize_matches_llama_cpp() {
    let Some(p) = pair() else { return };
    for text in corpus() {
        let ids = p.ours.encode(&text, true, true);
        for (remove_special, unparse_special) in
            [(false, false), (true, false), (false, true), (true, true)]
        {
            assert_eq!(
                p.ours.detokenize(&ids, remove_special, unparse_special),
                p.theirs.detokenize(&ids, remove_special, unparse_special),
                "detokenize {text:?} remove_special={remove_special} unparse_special={unparse_special}"
            );
        }
    }
}

#[test]
fn streaming_pieces_reassemble_the_text() {
    let Some(p) = pair() else { return };
    let text = "Emoji 👩‍👩‍👧‍👦 and 中文 and café";
    let ids = p.ours.encode(text, false, false);
    let mut stream = infer::tokenizer::Utf8Stream::new();
    let mut out = String::new();
    for &id in &ids {
        let chunk = stream.push(&p.ours.token_to_piece(id, false));
        // Every released chunk is whole characters: the pieces of split emoji are held back.
        assert!(
            !chunk.contains('\u{FFFD}'),
            "partial character released: {chunk:?}"
        );
        out.push_str(&chunk);
    }
    out.push_str(&stream.finish());
    assert_eq!(out, text);
}
