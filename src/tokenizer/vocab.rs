//! The vocabulary: token texts, scores and attributes, the text -> id index, special ids and
//! the flags llama.cpp derives from metadata (defaults per tokenizer model, `tokenizer.pre`
//! rules, EOT/EOG detection by token text). Holds no tokenization algorithm.

use super::bpe::BpePre;
use super::{TokenizerError, VocabData};
use aho_corasick::{AhoCorasick, MatchKind};
use std::sync::OnceLock;

/// Token attributes, llama.cpp's `llama_token_attr` bits.
pub mod attr {
    pub const UNKNOWN: u32 = 1 << 0;
    pub const UNUSED: u32 = 1 << 1;
    pub const NORMAL: u32 = 1 << 2;
    pub const CONTROL: u32 = 1 << 3;
    pub const USER_DEFINED: u32 = 1 << 4;
    pub const BYTE: u32 = 1 << 5;
    pub const LSTRIP: u32 = 1 << 7;
    pub const RSTRIP: u32 = 1 << 8;
}

/// The GGUF `tokenizer.ggml.token_type` values.
pub mod token_type {
    pub const NORMAL: i32 = 1;
    pub const UNKNOWN: i32 = 2;
    pub const CONTROL: i32 = 3;
    pub const USER_DEFINED: i32 = 4;
    pub const UNUSED: i32 = 5;
    pub const BYTE: i32 = 6;
}

fn attr_of_type(t: i32) -> u32 {
    match t {
        token_type::NORMAL => attr::NORMAL,
        token_type::UNKNOWN => attr::UNKNOWN,
        token_type::CONTROL => attr::CONTROL,
        token_type::USER_DEFINED => attr::USER_DEFINED,
        token_type::UNUSED => attr::UNUSED,
        token_type::BYTE => attr::BYTE,
        _ => 0,
    }
}

/// Which algorithm turns text into ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VocabKind {
    /// SentencePiece-style (`tokenizer.ggml.model = "llama"`).
    Spm,
    /// GPT-2-style byte-level BPE (`"gpt2"`) with a pre-tokenizer.
    Bpe(BpePre),
}

/// All token texts in one buffer: one allocation instead of one per token, which is most of
/// the load time for a 262k-token vocabulary.
#[derive(Clone, Debug, Default)]
pub struct Texts {
    buf: String,
    /// `ends[i]` is where token i's text ends in `buf`; it starts where token i-1's ends.
    ends: Vec<usize>,
}

impl Texts {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn get(&self, id: usize) -> Option<&str> {
        let end = *self.ends.get(id)?;
        let start = if id == 0 { 0 } else { self.ends[id - 1] };
        self.buf.get(start..end)
    }

    fn push(&mut self, s: &str) {
        self.buf.push_str(s);
        self.ends.push(self.buf.len());
    }

    fn iter(&self) -> impl Iterator<Item = &str> {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let s = &self.buf[start..end];
            start = end;
            s
        })
    }
}

impl std::ops::Index<usize> for Texts {
    type Output = str;

    fn index(&self, id: usize) -> &str {
        let start = if id == 0 { 0 } else { self.ends[id - 1] };
        &self.buf[start..self.ends[id]]
    }
}

/// text -> id, open addressing over ids into `Texts` so the 262k-token Gemma vocabulary is
/// indexed without a second copy of every string.
#[derive(Clone, Debug)]
struct TextIndex {
    slots: Vec<u32>,
    mask: usize,
}

const EMPTY: u32 = u32::MAX;

fn hash_str(s: &[u8]) -> u64 {
    // FNV-1a: short keys, no adversary, and a fixed function keeps load deterministic.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in s {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    h ^ (h >> 29)
}

impl TextIndex {
    fn build(texts: &Texts) -> TextIndex {
        let cap = (texts.len() * 2).next_power_of_two().max(16);
        let mut idx = TextIndex {
            slots: vec![EMPTY; cap],
            mask: cap - 1,
        };
        for (id, t) in texts.iter().enumerate() {
            // A repeated text maps to its last id, as llama.cpp's `token_to_id[word] = i`.
            let mut i = hash_str(t.as_bytes()) as usize & idx.mask;
            loop {
                let s = idx.slots[i];
                if s == EMPTY {
                    idx.slots[i] = id as u32;
                    break;
                }
                if &texts[s as usize] == t {
                    idx.slots[i] = id as u32;
                    break;
                }
                i = (i + 1) & idx.mask;
            }
        }
        idx
    }

    fn get(&self, texts: &Texts, key: &[u8]) -> Option<u32> {
        let mut i = hash_str(key) as usize & self.mask;
        loop {
            let s = self.slots[i];
            if s == EMPTY {
                return None;
            }
            if texts[s as usize].as_bytes() == key {
                return Some(s);
            }
            i = (i + 1) & self.mask;
        }
    }
}

/// Special token ids; `None` is llama.cpp's LLAMA_TOKEN_NULL.
#[derive(Clone, Copy, Debug, Default)]
pub struct SpecialIds {
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub eot: Option<u32>,
    pub eom: Option<u32>,
    pub unk: Option<u32>,
    pub sep: Option<u32>,
    pub pad: Option<u32>,
    pub mask: Option<u32>,
    pub fim_pre: Option<u32>,
    pub fim_suf: Option<u32>,
    pub fim_mid: Option<u32>,
    pub fim_pad: Option<u32>,
    pub fim_rep: Option<u32>,
    pub fim_sep: Option<u32>,
}

#[derive(Clone, Debug)]
pub struct Vocab {
    pub kind: VocabKind,
    pub texts: Texts,
    pub scores: Vec<f32>,
    pub attrs: Vec<u32>,
    index: TextIndex,
    pub special: SpecialIds,
    pub add_bos: bool,
    pub add_eos: bool,
    pub add_space_prefix: bool,
    pub clean_spaces: bool,
    /// Ids ending generation, ascending.
    pub eog: Vec<u32>,
    /// Control, user-defined and unknown tokens, longest text first: the order in which text
    /// is searched for them.
    pub special_cache: Vec<u32>,
    /// An automaton over the `special_cache` texts, built on first use (a few ms for Gemma).
    special_finder: OnceLock<Option<AhoCorasick>>,
}

// Token texts llama.cpp recognises as end-of-turn and friends (`llama_vocab::impl::load`).
const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];
const EOM_TEXTS: &[&str] = &["<|eom_id|>"];
const FIM_PRE_TEXTS: &[&str] = &[
    "<|fim_prefix|>",
    "<fim-prefix>",
    "<fim_prefix>",
    "<｜fim▁begin｜>",
    "<PRE>",
    "▁<PRE>",
    "<|code_prefix|>",
    "<|prefix|>",
];
const FIM_SUF_TEXTS: &[&str] = &[
    "<|fim_suffix|>",
    "<fim-suffix>",
    "<fim_suffix>",
    "<｜fim▁hole｜>",
    "<SUF>",
    "▁<SUF>",
    "<|code_suffix|>",
    "<|suffix|>",
];
const FIM_MID_TEXTS: &[&str] = &[
    "<|fim_middle|>",
    "<fim-middle>",
    "<fim_middle>",
    "<｜fim▁end｜>",
    "<MID>",
    "▁<MID>",
    "<|code_middle|>",
    "<|middle|>",
];
const FIM_PAD_TEXTS: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"];
const FIM_REP_TEXTS: &[&str] = &[
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<reponame>",
];
const FIM_SEP_TEXTS: &[&str] = &["<|file_sep|>"];
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];
/// Picks one id field of `SpecialIds`.
type SlotOf = fn(&mut SpecialIds) -> &mut Option<u32>;

// gpt-oss: always rendered, so user-defined whatever the file says.
const ALWAYS_USER_DEFINED: &[&str] = &["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"];

impl Vocab {
    pub fn build(data: VocabData<'_>, source: &str) -> Result<Vocab, TokenizerError> {
        let n = data.tokens.len();
        if n == 0 {
            return Err(TokenizerError::Invalid {
                origin: source.to_string(),
                what: "tokenizer.ggml.tokens is empty".to_string(),
            });
        }
        if n >= u32::MAX as usize {
            return Err(TokenizerError::Invalid {
                origin: source.to_string(),
                what: format!("{n} tokens do not fit 32-bit ids"),
            });
        }
        let kind = match data.model.as_str() {
            "llama" => VocabKind::Spm,
            "gpt2" => {
                if data.merges.is_none() {
                    return Err(TokenizerError::MissingMerges {
                        origin: source.to_string(),
                    });
                }
                let pre = data.pre.as_deref();
                VocabKind::Bpe(BpePre::named(pre).ok_or_else(|| {
                    TokenizerError::UnsupportedPre {
                        origin: source.to_string(),
                        pre: pre.unwrap_or("").to_string(),
                    }
                })?)
            }
            other => {
                return Err(TokenizerError::UnsupportedModel {
                    origin: source.to_string(),
                    model: other.to_string(),
                })
            }
        };

        // Defaults per model type, then the pre-tokenizer's, then explicit metadata.
        let mut special = SpecialIds::default();
        let (mut add_bos, mut add_space_prefix, clean_spaces);
        match kind {
            VocabKind::Spm => {
                special.bos = Some(1);
                special.eos = Some(2);
                special.unk = Some(0);
                add_bos = true;
                add_space_prefix = true;
                clean_spaces = false;
            }
            VocabKind::Bpe(pre) => {
                special.bos = Some(11);
                special.eos = Some(11);
                add_bos = pre.add_bos;
                add_space_prefix = false;
                clean_spaces = pre.clean_spaces;
            }
        }
        if let Some(v) = data.add_space_prefix {
            add_space_prefix = v;
        }

        let mut texts = Texts {
            buf: String::with_capacity(data.tokens.iter().map(String::len).sum::<usize>() + 64),
            ends: Vec::with_capacity(n),
        };
        for (i, t) in data.tokens.iter().enumerate() {
            if t.is_empty() {
                texts.push(&format!("[EMPTY_{i}]"));
            } else {
                texts.push(t);
            }
        }
        let scores = match data.scores {
            Some(s) if s.len() < n => {
                return Err(TokenizerError::Invalid {
                    origin: source.to_string(),
                    what: format!(
                        "tokenizer.ggml.scores has {} entries for {n} tokens",
                        s.len()
                    ),
                })
            }
            Some(s) => s[..n].to_vec(),
            None => vec![0.0; n],
        };
        let attrs = match data.token_types {
            Some(t) if t.len() < n => {
                return Err(TokenizerError::Invalid {
                    origin: source.to_string(),
                    what: format!(
                        "tokenizer.ggml.token_type has {} entries for {n} tokens",
                        t.len()
                    ),
                })
            }
            Some(t) => t[..n].iter().map(|&t| attr_of_type(t)).collect(),
            None => vec![attr::NORMAL; n],
        };
        let index = TextIndex::build(&texts);

        // Explicit ids: a default outside the vocabulary is dropped, an explicit one outside
        // it is ignored in favour of the default.
        let ids = &data.ids;
        let in_range = |id: Option<u32>| id.filter(|&i| (i as usize) < n);
        let pick = |default: Option<u32>, explicit: Option<u32>| match in_range(explicit) {
            Some(i) => Some(i),
            None => in_range(default),
        };
        special.bos = pick(special.bos, ids.bos);
        special.eos = pick(special.eos, ids.eos);
        special.eot = pick(None, ids.eot);
        special.eom = pick(None, ids.eom);
        special.unk = pick(special.unk, ids.unk);
        special.sep = pick(None, ids.sep);
        special.pad = pick(None, ids.pad);
        special.mask = pick(None, ids.mask);
        special.fim_pre = pick(None, ids.fim_pre);
        special.fim_suf = pick(None, ids.fim_suf);
        special.fim_mid = pick(None, ids.fim_mid);
        special.fim_pad = pick(None, ids.fim_pad);
        special.fim_rep = pick(None, ids.fim_rep);
        special.fim_sep = pick(None, ids.fim_sep);

        if let Some(v) = data.add_bos {
            add_bos = v;
        }
        let add_eos = data.add_eos.unwrap_or(false);

        let mut v = Vocab {
            kind,
            texts,
            scores,
            attrs,
            index,
            special,
            add_bos,
            add_eos,
            add_space_prefix,
            clean_spaces,
            eog: Vec::new(),
            special_cache: Vec::new(),
            special_finder: OnceLock::new(),
        };
        v.detect_specials_by_text();
        v.attrs_by_model_name(data.general_name.as_deref(), data.pre.as_deref());
        v.build_special_cache();
        Ok(v)
    }

    pub fn n_tokens(&self) -> usize {
        self.texts.len()
    }

    pub fn text_to_token(&self, text: &[u8]) -> Option<u32> {
        self.index.get(&self.texts, text)
    }

    pub fn attr(&self, id: u32) -> u32 {
        self.attrs.get(id as usize).copied().unwrap_or(0)
    }

    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.binary_search(&id).is_ok()
    }

    /// The first id (lowest) whose text is one of `names`.
    fn find_first(&self, names: &[&str]) -> Option<u32> {
        names
            .iter()
            .filter_map(|n| self.text_to_token(n.as_bytes()))
            .min()
    }

    fn force_control(&mut self, id: u32) {
        if let Some(a) = self.attrs.get_mut(id as usize) {
            *a |= attr::CONTROL;
        }
    }

    /// EOT/EOM/FIM ids by token text where metadata gave none, the "unused" marking, and
    /// the end-of-generation set, following llama.cpp's text rules.
    fn detect_specials_by_text(&mut self) {
        // llama.cpp takes the first match of an unordered_map walk; with one candidate per
        // vocabulary (the usual case) that is the same token as our lowest-id choice.
        let slots: [(SlotOf, &[&str]); 8] = [
            (|s| &mut s.eot, EOT_TEXTS),
            (|s| &mut s.eom, EOM_TEXTS),
            (|s| &mut s.fim_pre, FIM_PRE_TEXTS),
            (|s| &mut s.fim_suf, FIM_SUF_TEXTS),
            (|s| &mut s.fim_mid, FIM_MID_TEXTS),
            (|s| &mut s.fim_pad, FIM_PAD_TEXTS),
            (|s| &mut s.fim_rep, FIM_REP_TEXTS),
            (|s| &mut s.fim_sep, FIM_SEP_TEXTS),
        ];
        for (slot, names) in slots {
            if slot(&mut self.special).is_none() {
                if let Some(id) = self.find_first(names) {
                    *slot(&mut self.special) = Some(id);
                    self.force_control(id);
                }
            }
        }

        for (t, a) in self.texts.iter().zip(self.attrs.iter_mut()) {
            if *a & attr::CONTROL != 0 && t.contains("unused") {
                *a |= attr::UNUSED;
            }
        }

        let mut eog: Vec<u32> = [
            self.special.fim_pad,
            self.special.fim_rep,
            self.special.fim_sep,
        ]
        .into_iter()
        .flatten()
        .collect();
        for name in EOG_TEXTS {
            if let Some(id) = self.text_to_token(name.as_bytes()) {
                eog.push(id);
                self.force_control(id);
            }
        }
        for name in ALWAYS_USER_DEFINED {
            if let Some(id) = self.text_to_token(name.as_bytes()) {
                self.attrs[id as usize] = attr::USER_DEFINED;
            }
        }
        eog.extend(
            [self.special.eos, self.special.eot, self.special.eom]
                .into_iter()
                .flatten(),
        );
        eog.sort_unstable();
        eog.dedup();

        // o200k_harmony / solar-open: "<|end|>" ends a message, not the generation.
        let has = |eog: &[u32], name: &str| {
            self.text_to_token(name.as_bytes())
                .is_some_and(|id| eog.binary_search(&id).is_ok())
        };
        let end = self
            .text_to_token(b"<|end|>")
            .filter(|id| eog.binary_search(id).is_ok());
        let has_call = has(&eog, "<|call|>") || has(&eog, "<|calls|>");
        let drop_end = has_call && (has(&eog, "<|return|>") || has(&eog, "<|flush|>"));
        // Gemma 4 and PLaMo use "</s>" as an ordinary token.
        let normal_s = has(&eog, "<|tool_response>") || has(&eog, "<|plamo:eos|>");
        let s_id = self
            .text_to_token(b"</s>")
            .filter(|id| eog.binary_search(id).is_ok());
        if let (Some(end), true) = (end, drop_end) {
            eog.retain(|&i| i != end);
            self.attrs[end as usize] = attr::USER_DEFINED;
        }
        if let (Some(s), true) = (s_id, normal_s) {
            eog.retain(|&i| i != s);
            self.attrs[s as usize] = attr::NORMAL;
        }
        self.eog = eog;
    }

    /// Per-token lstrip/rstrip that llama.cpp sets from the model or pre-tokenizer name.
    fn attrs_by_model_name(&mut self, general_name: Option<&str>, pre: Option<&str>) {
        let name = general_name.unwrap_or("").to_lowercase();
        let pre = pre.unwrap_or("");
        let contains_any = |s: &str, subs: &[&str]| subs.iter().any(|x| s.contains(x));
        if contains_any(pre, &["jina-v2-de", "jina-v2-es", "jina-v2-code", "mmbert"]) {
            if let Some(id) = self.text_to_token(b"<mask>") {
                self.attrs[id as usize] |= attr::LSTRIP;
            }
        } else if contains_any(&name, &["phi-3", "phi3"]) {
            for id in 0..self.n_tokens() {
                if self.attrs[id] & (attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN) != 0 {
                    self.attrs[id] |= attr::RSTRIP;
                }
            }
            if let Some(id) = self.text_to_token(b"</s>") {
                self.attrs[id as usize] |= attr::RSTRIP;
            }
            for t in ["<unk>", "<s>", "<|endoftext|>"] {
                if let Some(id) = self.text_to_token(t.as_bytes()) {
                    self.attrs[id as usize] &= !attr::RSTRIP;
                }
            }
        } else if contains_any(&name, &["modern-bert"]) {
            if let Some(id) = self.text_to_token(b"[MASK]") {
                self.attrs[id as usize] |= attr::LSTRIP;
            }
        }
    }

    /// The special tokens whose text occurs in `text` (overlapping occurrences included), in
    /// `special_cache` order.
    pub fn specials_present(&self, text: &[u8]) -> Vec<u32> {
        let finder = self.special_finder.get_or_init(|| {
            let texts = self
                .special_cache
                .iter()
                .map(|&id| &self.texts[id as usize]);
            AhoCorasick::builder()
                .match_kind(MatchKind::Standard)
                .build(texts)
                .ok()
        });
        let Some(ac) = finder else {
            // The automaton could not be built (too large): search for every one.
            return self.special_cache.clone();
        };
        let mut positions: Vec<usize> = ac
            .find_overlapping_iter(text)
            .map(|m| m.pattern().as_usize())
            .collect();
        positions.sort_unstable();
        positions.dedup();
        positions
            .into_iter()
            .map(|p| self.special_cache[p])
            .collect()
    }

    fn build_special_cache(&mut self) {
        let mask = attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN;
        let mut cache: Vec<u32> = (0..self.n_tokens() as u32)
            .filter(|&id| self.attrs[id as usize] & mask != 0)
            .collect();
        // Longest first; equal lengths keep id order (llama.cpp's sort is unstable there, which
        // matters only for two equally long special texts that overlap in the input).
        cache.sort_by_key(|&id| std::cmp::Reverse(self.texts[id as usize].len()));
        self.special_cache = cache;
    }
}
