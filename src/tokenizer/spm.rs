//! SentencePiece-style tokenization (llama.cpp's `llm_tokenizer_spm`): start from UTF-8
//! characters, repeatedly merge the adjacent pair whose concatenation is the highest-scoring
//! vocabulary token, and spell leftovers that are not tokens as `<0xNN>` byte tokens.
//! Input here is one fragment already escaped (spaces as U+2581); specials are handled upstream.

use super::vocab::Vocab;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

#[derive(Clone, Copy)]
struct Symbol {
    prev: Option<usize>,
    next: Option<usize>,
    start: usize,
    len: usize,
}

// u32 fields keep an entry at 16 bytes: the queue's sift-down is most of SPM's time.
struct Bigram {
    left: u32,
    right: u32,
    score: f32,
    size: u32,
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
    /// Highest score first; among equal scores the leftmost pair.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .partial_cmp(&other.score)
            .unwrap_or(Ordering::Equal)
            .then_with(|| other.left.cmp(&self.left))
    }
}

/// The byte length of the UTF-8 sequence a lead byte announces (llama.cpp's
/// `unicode_len_utf8`; a stray continuation byte counts as 1).
pub(super) fn utf8_len(lead: u8) -> usize {
    match lead >> 4 {
        0xC | 0xD => 2,
        0xE => 3,
        0xF => 4,
        _ => 1,
    }
}

/// The token for a raw byte: `<0xNN>`, else the one-character token for an ASCII byte, else
/// the unknown token (llama.cpp aborts there; a vocabulary without byte tokens is broken).
pub(super) fn byte_token(vocab: &Vocab, b: u8) -> Option<u32> {
    let hex = format!("<0x{b:02X}>");
    vocab
        .text_to_token(hex.as_bytes())
        .or_else(|| vocab.text_to_token(&[b]))
        .or(vocab.special.unk)
}

pub(super) fn tokenize(vocab: &Vocab, text: &str, out: &mut Vec<u32>) {
    let bytes = text.as_bytes();
    // Positions and sizes are kept as u32 in the queue; split larger fragments (never
    // expected: 4 GiB of text) at character boundaries rather than overflow.
    if bytes.len() > u32::MAX as usize / 2 {
        let mut cut = u32::MAX as usize / 4;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        tokenize(vocab, &text[..cut], out);
        tokenize(vocab, &text[cut..], out);
        return;
    }
    let mut symbols: Vec<Symbol> = Vec::with_capacity(bytes.len());
    let mut offs = 0;
    while offs < bytes.len() {
        let len = utf8_len(bytes[offs]).min(bytes.len() - offs);
        let idx = symbols.len();
        symbols.push(Symbol {
            prev: idx.checked_sub(1),
            next: (offs + len < bytes.len()).then_some(idx + 1),
            start: offs,
            len,
        });
        offs += len;
    }
    if symbols.is_empty() {
        return;
    }

    let mut queue = BinaryHeap::new();
    let try_add =
        |symbols: &[Symbol], queue: &mut BinaryHeap<Bigram>, left: usize, right: usize| {
            let (l, r) = (symbols[left], symbols[right]);
            let piece = &bytes[l.start..l.start + l.len + r.len];
            if let Some(id) = vocab.text_to_token(piece) {
                queue.push(Bigram {
                    left: left as u32,
                    right: right as u32,
                    score: vocab.scores[id as usize],
                    size: piece.len() as u32,
                });
            }
        };
    for i in 1..symbols.len() {
        try_add(&symbols, &mut queue, i - 1, i);
    }

    while let Some(b) = queue.pop() {
        let (left, right) = (b.left as usize, b.right as usize);
        let (l, r) = (symbols[left], symbols[right]);
        // A pair whose sides have merged with something else since it was queued is stale.
        if l.len == 0 || r.len == 0 || l.len + r.len != b.size as usize {
            continue;
        }
        symbols[left].len += r.len;
        symbols[right].len = 0;
        symbols[left].next = r.next;
        if let Some(n) = r.next {
            symbols[n].prev = Some(left);
        }
        if let Some(p) = symbols[left].prev {
            try_add(&symbols, &mut queue, p, left);
        }
        if let Some(n) = symbols[left].next {
            try_add(&symbols, &mut queue, left, n);
        }
    }

    let mut i = Some(0);
    while let Some(idx) = i {
        let s = symbols[idx];
        let piece = &bytes[s.start..s.start + s.len];
        match vocab.text_to_token(piece) {
            Some(id) => out.push(id),
            None => out.extend(piece.iter().filter_map(|&b| byte_token(vocab, b))),
        }
        i = s.next;
    }
}
