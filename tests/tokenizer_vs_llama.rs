//! The Gemma 3 tokenizer against llama.cpp's, on the real model file: ids for a varied corpus
//! in every add_special/parse_special mode, pieces for control/byte/user-defined tokens and a
//! spread of normal ones, detokenized text, token attributes and the end-of-generation set.
//! Skips (with a message) when the model is not present.

mod tokenizer_support;

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

#[test]
fn ids_match_llama_cpp_on_the_corpus() {
    let Some(p) = pair() else { return };
    let mut n = 0;
    for text in tokenizer_support::corpus() {
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
    for text in tokenizer_support::corpus() {
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
