//! The draft's shortlist head on the real model: which ids it lists (every digit, the special
//! tokens that end a turn, the newline, byte fallbacks, no unused placeholders), and that the
//! logits it computes from `forward_hidden` are bit for bit the full forward's logits of the same
//! ids, for the base runs and for ids admitted from the history.

mod spec_support;

use infer::gguf::GgufFile;
use infer::model::{Model, ModelOptions};
use infer::spec::chain::Logits;
use infer::spec::shortlist::{base_ids, Shortlist};
use infer::tokenizer::Tokenizer;
use spec_support::real_model;

#[test]
fn base_ids_keep_digits_specials_and_frequent_tokens() {
    let Some(path) = real_model() else { return };
    let gguf = GgufFile::open(&path).unwrap();
    let tok = Tokenizer::from_gguf(&gguf).unwrap();
    let n = 16384;
    let ids = base_ids(&tok, n);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "sorted and distinct");
    let has = |text: &str| {
        let id = tok
            .token_id(text)
            .unwrap_or_else(|| panic!("{text:?} in the vocabulary"));
        ids.binary_search(&id).is_ok()
    };
    for text in [
        "0",
        "1",
        "7",
        "9",
        ".",
        ",",
        "(",
        "\n",
        "<eos>",
        "<end_of_turn>",
        "<0x0A>",
    ] {
        assert!(has(text), "{text:?} must be listed");
    }
    // Frequent words are listed, rare ones are not.
    for text in ["▁the", "▁Paris", "ing"] {
        assert!(has(text), "{text:?} must be listed");
    }
    assert!(!has("<unused100>"), "unused placeholders are left out");
    assert!(!has("quorum"), "a rare word is left out");
    // n words, n/16 single characters, and the control, user-defined and byte tokens.
    let specials = (0..tok.n_vocab() as u32)
        .filter(|&id| {
            use infer::tokenizer::attr;
            let a = tok.token_attr(id);
            a & (attr::CONTROL | attr::USER_DEFINED | attr::BYTE) != 0 && a & attr::UNUSED == 0
        })
        .count();
    assert_eq!(ids.len(), n + n / 16 + specials, "{specials} specials");
}

#[test]
fn shortlist_logits_equal_the_full_heads() {
    let Some(path) = real_model() else { return };
    let gguf = GgufFile::open(&path).unwrap();
    let tok = Tokenizer::from_gguf(&gguf).unwrap();
    let model = Model::load(&gguf, &ModelOptions::default()).unwrap();
    let prompt = tok.encode("Quorum sensing in Vibrio fischeri", true, true);
    let mut st = model.new_state(64).unwrap();
    let full = model.forward(&mut st, &prompt, false).unwrap().to_vec();
    let mut st = model.new_state(64).unwrap();
    let h = model.forward_hidden(&mut st, &prompt).unwrap().to_vec();
    assert_eq!(h.len(), model.hparams().n_embd);

    let base = base_ids(&tok, 4096);
    let mut s = Shortlist::new(&model, &base).unwrap();
    let n_base = s.len();
    assert!(
        n_base >= base.len(),
        "merged runs hold at least the base ids"
    );
    s.admit(&prompt);
    s.admit(&prompt);
    let admitted = prompt
        .iter()
        .filter(|&&id| base.binary_search(&id).is_err());
    let mut fresh: Vec<u32> = admitted.copied().collect();
    fresh.sort_unstable();
    fresh.dedup();
    assert!(
        !fresh.is_empty(),
        "the prompt must bring rare ids for this test"
    );
    assert!(
        s.len() <= n_base + fresh.len(),
        "each id admitted at most once"
    );
    s.compute(model.pool(), &h).unwrap();
    let Logits::Sparse { ids, logits } = s.logits() else {
        panic!("a shortlist gives sparse logits")
    };
    assert_eq!(ids.len(), logits.len());
    for id in &fresh {
        assert!(ids.contains(id), "admitted id {id} is listed");
    }
    for (&id, &l) in ids.iter().zip(logits) {
        assert_eq!(
            l.to_bits(),
            full[id as usize].to_bits(),
            "id {id}: shortlist {l}, full head {}",
            full[id as usize]
        );
    }
}
