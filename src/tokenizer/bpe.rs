//! GPT-2-style byte-level BPE (llama.cpp's `llm_tokenizer_bpe`): pre-tokenize into words,
//! write each word's bytes in GPT-2's printable alphabet, then repeatedly merge the adjacent
//! pair with the lowest merge rank. Specials are handled upstream.

use super::pretokenize::{self, PreSplit};
use super::unicode;
use super::vocab::Vocab;
use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

/// How one `tokenizer.ggml.pre` behaves: its split and the flags llama.cpp sets with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BpePre {
    pub split: PreSplit,
    pub clean_spaces: bool,
    pub ignore_merges: bool,
    pub add_bos: bool,
}

impl BpePre {
    const fn new(split: PreSplit, clean_spaces: bool) -> BpePre {
        BpePre {
            split,
            clean_spaces,
            ignore_merges: false,
            add_bos: false,
        }
    }

    /// The pre-tokenizer named `name` (absent or empty: llama.cpp's `default`); `None` for
    /// names this crate does not implement.
    pub fn named(name: Option<&str>) -> Option<BpePre> {
        use PreSplit::*;
        let name = name.unwrap_or("");
        Some(match name {
            "" | "default" => BpePre::new(Default, true),
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral"
            | "midm-2.0" | "lfm2" | "jina-v5-nano" => BpePre {
                ignore_merges: true,
                add_bos: true,
                ..BpePre::new(Llama3, true)
            },
            "dbrx" | "smaug-bpe" => BpePre::new(Llama3, true),
            "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es"
            | "jina-v2-de" | "a.x-4.0" | "mellum" | "modern-bert" | "mpt" | "olmo" | "jais" => {
                BpePre::new(Gpt2, true)
            }
            "trillion" | "granite-docling" => BpePre::new(Gpt2, false),
            "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "hunyuan" => {
                BpePre::new(Qwen2, false)
            }
            "stablelm2" => BpePre::new(Qwen2, true),
            "starcoder" | "refact" | "codeshell" | "exaone" | "minerva-7b" | "mellum2" => {
                BpePre::new(Smollm, true)
            }
            "smollm" | "command-r" => BpePre::new(Smollm, false),
            _ => return None,
        })
    }
}

/// Merge ranks keyed by `"left right"` (tokens of a byte-level vocabulary hold no spaces),
/// plus the byte alphabet.
#[derive(Clone, Debug)]
pub struct Merges {
    ranks: HashMap<String, u32>,
    alphabet: Vec<String>,
}

impl Merges {
    pub fn new(lines: &[String]) -> Merges {
        let mut ranks = HashMap::with_capacity(lines.len());
        for (rank, line) in lines.iter().enumerate() {
            // llama.cpp splits at the first space from byte 1 on (a space byte never sits
            // inside a multi-byte character); the first of repeated pairs keeps its rank.
            if line.as_bytes().iter().skip(1).any(|&b| b == b' ') {
                ranks.entry(line.clone()).or_insert(rank as u32);
            }
        }
        Merges {
            ranks,
            alphabet: unicode::byte_alphabet(),
        }
    }

    fn rank(&self, key: &mut String, left: &str, right: &str) -> Option<u32> {
        key.clear();
        key.push_str(left);
        key.push(' ');
        key.push_str(right);
        self.ranks.get(key.as_str()).copied()
    }
}

struct Bigram {
    left: usize,
    right: usize,
    rank: u32,
    size: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bigram {
    /// Lowest rank first; among equal ranks the leftmost pair.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .rank
            .cmp(&self.rank)
            .then_with(|| other.left.cmp(&self.left))
    }
}

#[derive(Clone, Copy)]
struct Symbol {
    prev: Option<usize>,
    next: Option<usize>,
    start: usize,
    len: usize,
}

pub(super) fn tokenize(
    vocab: &Vocab,
    merges: &Merges,
    pre: &BpePre,
    text: &str,
    out: &mut Vec<u32>,
) {
    let mut key = String::new();
    let mut word = String::new();
    let mut queue = BinaryHeap::new();
    let mut symbols: Vec<Symbol> = Vec::new();
    for raw in pretokenize::split(text, pre.split) {
        word.clear();
        for &b in raw.as_bytes() {
            word.push_str(&merges.alphabet[b as usize]);
        }
        let w = word.as_bytes();
        symbols.clear();
        queue.clear();
        if pre.ignore_merges {
            if let Some(id) = vocab.text_to_token(w) {
                out.push(id);
                continue;
            }
        }
        for (start, c) in word.char_indices() {
            let idx = symbols.len();
            let len = c.len_utf8();
            symbols.push(Symbol {
                prev: idx.checked_sub(1),
                next: (start + len < w.len()).then_some(idx + 1),
                start,
                len,
            });
        }
        let text_of = |s: &Symbol| &word[s.start..s.start + s.len];
        let mut try_add =
            |symbols: &[Symbol], queue: &mut BinaryHeap<Bigram>, l: usize, r: usize| {
                let (ls, rs) = (&symbols[l], &symbols[r]);
                if let Some(rank) = merges.rank(&mut key, text_of(ls), text_of(rs)) {
                    queue.push(Bigram {
                        left: l,
                        right: r,
                        rank,
                        size: ls.len + rs.len,
                    });
                }
            };
        for i in 1..symbols.len() {
            try_add(&symbols, &mut queue, i - 1, i);
        }
        while let Some(b) = queue.pop() {
            let (l, r) = (symbols[b.left], symbols[b.right]);
            if l.len == 0 || r.len == 0 || l.len + r.len != b.size {
                continue;
            }
            symbols[b.left].len += r.len;
            symbols[b.right].len = 0;
            symbols[b.left].next = r.next;
            if let Some(n) = r.next {
                symbols[n].prev = Some(b.left);
            }
            if let Some(p) = symbols[b.left].prev {
                try_add(&symbols, &mut queue, p, b.left);
            }
            if let Some(n) = symbols[b.left].next {
                try_add(&symbols, &mut queue, b.left, n);
            }
        }
        for s in symbols.iter().filter(|s| s.len > 0) {
            let piece = &w[s.start..s.start + s.len];
            match vocab.text_to_token(piece) {
                Some(id) => out.push(id),
                // llama.cpp looks each byte of the encoded piece up as a one-byte token.
                None => out.extend(piece.iter().filter_map(|&b| vocab.text_to_token(&[b]))),
            }
        }
    }
}
