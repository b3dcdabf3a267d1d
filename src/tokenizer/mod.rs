//! Text <-> token ids for GGUF vocabularies, matching llama.cpp's `llama_tokenize`,
//! `llama_token_to_piece` and `llama_detokenize` id for id and byte for byte.
//!
//! `vocab` holds the vocabulary and the flags derived from metadata, `special` splits text at
//! special-token spellings, `spm` and `bpe` are the two algorithms (`pretokenize` and
//! `unicode` serve BPE), `stream` releases streamed pieces as complete UTF-8. This module
//! only dispatches; it reads no files itself beyond `from_gguf`'s metadata.

mod bpe;
mod pretokenize;
mod special;
mod spm;
mod stream;
mod unicode;
mod unicode_data;
mod vocab;

pub use bpe::BpePre;
pub use pretokenize::PreSplit;
pub use stream::Utf8Stream;
pub use vocab::{attr, token_type, SpecialIds, VocabKind};

use crate::gguf::{Array, GgufError, GgufFile, Metadata, Value};
use special::Fragment;
use std::borrow::Cow;
use vocab::Vocab;

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("{origin}: no tokenizer in this file (tokenizer.ggml.model is missing)")]
    NoTokenizer { origin: String },
    #[error(
        "{origin}: tokenizer.ggml.model = {model:?} is not supported (only \"llama\" and \"gpt2\")"
    )]
    UnsupportedModel { origin: String, model: String },
    #[error("{origin}: tokenizer.ggml.pre = {pre:?} is not a supported pre-tokenizer")]
    UnsupportedPre { origin: String, pre: String },
    #[error("{origin}: a gpt2 tokenizer needs tokenizer.ggml.merges, which is missing")]
    MissingMerges { origin: String },
    #[error("{origin}: {what}")]
    Invalid { origin: String, what: String },
    #[error(transparent)]
    Gguf(#[from] GgufError),
}

/// Everything a tokenizer is built from, as GGUF's `tokenizer.ggml.*` keys hold it. `None`
/// means the key is absent (llama.cpp's defaults then apply).
#[derive(Clone, Debug, Default)]
pub struct VocabData<'a> {
    /// `tokenizer.ggml.model`: "llama" (SentencePiece) or "gpt2" (byte-level BPE).
    pub model: String,
    /// `tokenizer.ggml.pre`, the BPE pre-tokenizer name.
    pub pre: Option<String>,
    pub tokens: Cow<'a, [String]>,
    pub scores: Option<Cow<'a, [f32]>>,
    /// `tokenizer.ggml.token_type`, values of [`token_type`].
    pub token_types: Option<Cow<'a, [i32]>>,
    /// `tokenizer.ggml.merges`, `"left right"` per line, by rank.
    pub merges: Option<Cow<'a, [String]>>,
    /// `tokenizer.ggml.*_token_id`.
    pub ids: SpecialIds,
    pub add_bos: Option<bool>,
    pub add_eos: Option<bool>,
    pub add_space_prefix: Option<bool>,
    /// `general.name`: llama.cpp keys a few per-token attributes on it (Phi-3).
    pub general_name: Option<String>,
}

#[derive(Clone, Debug)]
enum Algo {
    Spm,
    Bpe(BpePre, bpe::Merges),
}

#[derive(Clone, Debug)]
pub struct Tokenizer {
    vocab: Vocab,
    algo: Algo,
}

const SPM_SPACE: &str = "\u{2581}";

impl<'a> VocabData<'a> {
    /// Read the `tokenizer.ggml.*` keys, borrowing the arrays; `origin` names the file for
    /// errors.
    pub fn from_metadata(md: &'a Metadata, origin: &str) -> Result<VocabData<'a>, TokenizerError> {
        let model = md
            .get_str("tokenizer.ggml.model")?
            .ok_or_else(|| TokenizerError::NoTokenizer {
                origin: origin.to_string(),
            })?
            .to_string();
        let tokens =
            md.get_str_array("tokenizer.ggml.tokens")?
                .ok_or_else(|| TokenizerError::Invalid {
                    origin: origin.to_string(),
                    what: "tokenizer.ggml.tokens is missing".to_string(),
                })?;
        // llama.cpp accepts float or int32 scores.
        let scores = match md.get("tokenizer.ggml.scores") {
            None => None,
            Some(Value::Array(Array::F32(v))) => Some(Cow::Borrowed(v.as_slice())),
            Some(Value::Array(Array::I32(v))) => {
                Some(Cow::Owned(v.iter().map(|&x| x as f32).collect()))
            }
            Some(v) => {
                return Err(TokenizerError::Invalid {
                    origin: origin.to_string(),
                    what: format!(
                        "tokenizer.ggml.scores is {}, expected arr[f32] or arr[i32]",
                        v.type_name()
                    ),
                })
            }
        };
        let id = |key: &str| md.get_u32(key);
        // llama.cpp reads the deprecated prefix/suffix/middle keys last, so they win.
        let ids = SpecialIds {
            bos: id("tokenizer.ggml.bos_token_id")?,
            eos: id("tokenizer.ggml.eos_token_id")?,
            eot: id("tokenizer.ggml.eot_token_id")?,
            eom: id("tokenizer.ggml.eom_token_id")?,
            unk: id("tokenizer.ggml.unknown_token_id")?,
            sep: id("tokenizer.ggml.seperator_token_id")?,
            pad: id("tokenizer.ggml.padding_token_id")?,
            mask: id("tokenizer.ggml.mask_token_id")?,
            fim_pre: id("tokenizer.ggml.prefix_token_id")?
                .or(id("tokenizer.ggml.fim_pre_token_id")?),
            fim_suf: id("tokenizer.ggml.suffix_token_id")?
                .or(id("tokenizer.ggml.fim_suf_token_id")?),
            fim_mid: id("tokenizer.ggml.middle_token_id")?
                .or(id("tokenizer.ggml.fim_mid_token_id")?),
            fim_pad: id("tokenizer.ggml.fim_pad_token_id")?,
            fim_rep: id("tokenizer.ggml.fim_rep_token_id")?,
            fim_sep: id("tokenizer.ggml.fim_sep_token_id")?,
        };
        Ok(VocabData {
            model,
            pre: md.get_str("tokenizer.ggml.pre")?.map(str::to_string),
            tokens: Cow::Borrowed(tokens),
            scores,
            token_types: md
                .get_i32_array("tokenizer.ggml.token_type")?
                .map(Cow::Borrowed),
            merges: md
                .get_str_array("tokenizer.ggml.merges")?
                .map(Cow::Borrowed),
            ids,
            add_bos: md.get_bool("tokenizer.ggml.add_bos_token")?,
            add_eos: md.get_bool("tokenizer.ggml.add_eos_token")?,
            add_space_prefix: md.get_bool("tokenizer.ggml.add_space_prefix")?,
            general_name: md.get_str("general.name")?.map(str::to_string),
        })
    }
}

impl Tokenizer {
    /// The tokenizer of a GGUF model file.
    pub fn from_gguf(file: &GgufFile) -> Result<Tokenizer, TokenizerError> {
        let origin = file.path().display().to_string();
        let data = VocabData::from_metadata(file.metadata(), &origin)?;
        Tokenizer::from_vocab(data, &origin)
    }

    /// Build from vocabulary data; `source` names where it came from, for errors.
    pub fn from_vocab(data: VocabData<'_>, source: &str) -> Result<Tokenizer, TokenizerError> {
        let merges = data.merges.clone();
        let vocab = Vocab::build(data, source)?;
        let algo = match vocab.kind {
            VocabKind::Spm => Algo::Spm,
            VocabKind::Bpe(pre) => {
                Algo::Bpe(pre, bpe::Merges::new(merges.as_deref().unwrap_or(&[])))
            }
        };
        Ok(Tokenizer { vocab, algo })
    }

    pub fn kind(&self) -> VocabKind {
        self.vocab.kind
    }

    pub fn n_vocab(&self) -> usize {
        self.vocab.n_tokens()
    }

    pub fn bos(&self) -> Option<u32> {
        self.vocab.special.bos
    }

    pub fn eos(&self) -> Option<u32> {
        self.vocab.special.eos
    }

    /// End-of-turn token (`<end_of_turn>` for Gemma), from metadata or found by its text.
    pub fn eot(&self) -> Option<u32> {
        self.vocab.special.eot
    }

    pub fn special_ids(&self) -> &SpecialIds {
        &self.vocab.special
    }

    /// Whether the model wants BOS in front of a prompt (`add_special` adds it).
    pub fn add_bos(&self) -> bool {
        self.vocab.add_bos
    }

    pub fn add_eos(&self) -> bool {
        self.vocab.add_eos
    }

    /// Whether generating `id` ends the turn (llama.cpp's EOG set: EOS, EOT, EOM and tokens
    /// such as `<end_of_turn>` recognised by their text).
    pub fn is_eog(&self, id: u32) -> bool {
        self.vocab.is_eog(id)
    }

    /// All end-of-generation ids, ascending.
    pub fn eog_ids(&self) -> &[u32] {
        &self.vocab.eog
    }

    /// The token's text as stored in the vocabulary (`▁` for spaces in SPM, GPT-2's byte
    /// alphabet in BPE).
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.vocab.texts.get(id as usize)
    }

    pub fn token_score(&self, id: u32) -> Option<f32> {
        self.vocab.scores.get(id as usize).copied()
    }

    /// The token's [`attr`] bits after llama.cpp's adjustments.
    pub fn token_attr(&self, id: u32) -> u32 {
        self.vocab.attr(id)
    }

    /// The id whose text is exactly `text`.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.vocab.text_to_token(text.as_bytes())
    }

    /// Text to ids, as `llama_tokenize(vocab, text, add_special, parse_special)`:
    /// `add_special` adds BOS/EOS where the model asks for them; `parse_special` lets text
    /// spelling a control token (`<start_of_turn>`) become that token. User-defined tokens
    /// are matched either way.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        let frags = special::partition(&self.vocab, text, parse_special);
        let v = &self.vocab;
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if add_special && v.add_bos {
            out.extend(v.special.bos);
        }
        match &self.algo {
            Algo::Spm => {
                let mut prev_special = true;
                let mut buf = String::new();
                for f in frags {
                    match f {
                        Fragment::Text { start, len } => {
                            buf.clear();
                            if v.add_space_prefix && prev_special {
                                buf.push_str(SPM_SPACE);
                            }
                            for c in text[start..start + len].chars() {
                                if c == ' ' {
                                    buf.push_str(SPM_SPACE);
                                } else {
                                    buf.push(c);
                                }
                            }
                            spm::tokenize(v, &buf, &mut out);
                            prev_special = false;
                        }
                        Fragment::Token(id) => {
                            out.push(id);
                            prev_special = true;
                        }
                    }
                }
            }
            Algo::Bpe(pre, merges) => {
                for f in frags {
                    match f {
                        Fragment::Text { start, len } => {
                            bpe::tokenize(v, merges, pre, &text[start..start + len], &mut out)
                        }
                        Fragment::Token(id) => out.push(id),
                    }
                }
            }
        }
        if add_special && v.add_eos {
            out.extend(v.special.eos);
        }
        out
    }

    /// The bytes a token stands for, as `llama_token_to_piece(vocab, id, buf, len, 0,
    /// special)`: control and unknown tokens are empty unless `special`; byte tokens are the
    /// raw byte (so a piece may be part of a UTF-8 character). Unknown ids are empty.
    pub fn token_to_piece(&self, id: u32, special: bool) -> Vec<u8> {
        let mut out = Vec::new();
        self.append_piece(id, special, 0, &mut out);
        out
    }

    fn append_piece(&self, id: u32, special: bool, lstrip: usize, out: &mut Vec<u8>) {
        let Some(text) = self.vocab.texts.get(id as usize) else {
            return;
        };
        let a = self.vocab.attr(id);
        let shown = attr::UNKNOWN | attr::CONTROL;
        if !special && a & shown != 0 {
            return;
        }
        let start = out.len();
        if a & (shown | attr::USER_DEFINED) != 0 {
            out.extend_from_slice(text.as_bytes());
        } else if a & attr::NORMAL != 0 {
            match self.algo {
                Algo::Spm => out.extend_from_slice(text.replace(SPM_SPACE, " ").as_bytes()),
                Algo::Bpe(..) => decode_byte_level(text, out),
            }
        } else if a & attr::BYTE != 0 {
            out.push(byte_of_byte_token(text));
        }
        let n_spaces = out[start..]
            .iter()
            .take(lstrip)
            .take_while(|&&b| b == b' ')
            .count();
        out.drain(start..start + n_spaces);
    }

    /// Ids to bytes, as `llama_detokenize(vocab, ids, .., remove_special, unparse_special)`:
    /// `remove_special` drops a leading BOS / trailing EOS the model adds, `unparse_special`
    /// renders control tokens as their text. SPM's added leading space is removed, and
    /// tokenizers that ask for it get llama.cpp's clean-up of spaces before punctuation.
    pub fn detokenize(&self, ids: &[u32], remove_special: bool, unparse_special: bool) -> Vec<u8> {
        let v = &self.vocab;
        let mut ids = ids;
        let mut remove_space = v.add_space_prefix;
        if remove_special && v.add_bos {
            if let (Some(&first), Some(bos)) = (ids.first(), v.special.bos) {
                if first == bos {
                    remove_space = false;
                    ids = &ids[1..];
                }
            }
        }
        if remove_special && v.add_eos {
            if let (Some(&last), Some(eos)) = (ids.last(), v.special.eos) {
                if last == eos {
                    ids = &ids[..ids.len() - 1];
                }
            }
        }
        let mut out = Vec::new();
        for &id in ids {
            self.append_piece(id, unparse_special, usize::from(remove_space), &mut out);
            remove_space = false;
        }
        if v.clean_spaces {
            out = clean_up_spaces(&out);
        }
        out
    }

    /// Ids to text for display: control tokens dropped, invalid UTF-8 replaced.
    pub fn decode(&self, ids: &[u32]) -> String {
        String::from_utf8_lossy(&self.detokenize(ids, false, false)).into_owned()
    }
}

/// The class bits the BPE pre-tokenizers see for a codepoint, in llama.cpp's
/// `unicode_cpt_flags` layout: the general-category bit (low byte) and 0x100 for whitespace.
/// Exposed so tests can hold the whole table against llama.cpp's.
#[doc(hidden)]
pub fn codepoint_class(cpt: u32) -> u16 {
    let f = if cpt < 0x11_0000 {
        unicode::flags(cpt)
    } else {
        unicode::Flags {
            category: unicode::category(cpt),
            whitespace: false,
        }
    };
    u16::from(f.category) | if f.whitespace { 0x100 } else { 0 }
}

/// GPT-2 byte alphabet back to bytes; chars outside it are spelled out the way llama.cpp's
/// `llama_decode_text` does.
fn decode_byte_level(text: &str, out: &mut Vec<u8>) {
    for c in text.chars() {
        match unicode::char_to_byte(c) {
            Some(b) => out.push(b),
            None => {
                out.extend_from_slice(b"[UNK_BYTE_0x");
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).as_bytes() {
                    out.extend_from_slice(format!("{b:02x}").as_bytes());
                }
                out.extend_from_slice(text.as_bytes());
                out.push(b']');
            }
        }
    }
}

/// `<0xNN>` -> NN, reading the hex digits at bytes 3..5 as C's strtol would (stop at the
/// first non-digit, 0 if none).
fn byte_of_byte_token(text: &str) -> u8 {
    let digits = text.as_bytes().get(3..).unwrap_or(&[]);
    let mut v: u32 = 0;
    for &d in digits.iter().take(2) {
        match (d as char).to_digit(16) {
            Some(x) => v = v * 16 + x,
            None => break,
        }
    }
    v as u8
}

/// llama.cpp's `clean_spaces` passes over detokenized bytes: " ?" " !" " ." " ," lose the
/// space; " ' " loses both spaces; " 's" " 'm" " 're" " 've" lose the space.
fn clean_up_spaces(src: &[u8]) -> Vec<u8> {
    if src.is_empty() {
        return Vec::new();
    }
    let mut a = Vec::with_capacity(src.len());
    a.push(src[0]);
    for i in 1..src.len() {
        let x = src[i];
        if src[i - 1] == b' ' && matches!(x, b'?' | b'!' | b'.' | b',') {
            a.pop();
        }
        a.push(x);
    }

    // The second pass zeroes the space it drops after an apostrophe, which later reads see.
    let mut s = a;
    let mut b = Vec::with_capacity(s.len());
    b.push(s[0]);
    let n = s.len();
    let mut i = 1;
    while i < n {
        let x = s[i];
        if x == b'\'' && i + 1 < n && s[i - 1] == b' ' && s[i + 1] == b' ' {
            b.pop();
            i += 1;
            s[i] = 0;
        }
        b.push(x);
        i += 1;
    }

    let s = b;
    let n = s.len();
    let mut c = Vec::with_capacity(n);
    c.push(s[0]);
    for i in 1..n {
        let x = s[i];
        if s[i - 1] == b' ' && x == b'\'' && i + 1 < n {
            let x1 = s[i + 1];
            if x1 == b's' || x1 == b'm' {
                c.pop();
            } else if x1 != b't' && x1 != b'd' && i + 2 < n {
                let x2 = s[i + 2];
                if (x1 == b'r' || x1 == b'v') && x2 == b'e' {
                    c.pop();
                }
            }
        }
        c.push(x);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_up_spaces_follows_llama_cpp_rules() {
        assert_eq!(clean_up_spaces(b"Hello , world !"), b"Hello, world!");
        assert_eq!(clean_up_spaces(b"it 's a ' b"), b"it's a'b");
        assert_eq!(clean_up_spaces(b"we 're they 'll"), b"we're they 'll");
    }

    #[test]
    fn byte_token_hex() {
        assert_eq!(byte_of_byte_token("<0x0A>"), 0x0A);
        assert_eq!(byte_of_byte_token("<0xFF>"), 0xFF);
        assert_eq!(byte_of_byte_token("<0x"), 0);
    }
}
