//! Splitting text at spellings of special tokens before tokenization (llama.cpp's
//! `tokenizer_st_partition`): each special token in turn, longest first, claims every
//! occurrence in the text fragments left unclaimed by longer ones.

use super::vocab::{attr, Vocab};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Fragment {
    /// Byte range `start..start + len` of the input, `len > 0`.
    Text {
        start: usize,
        len: usize,
    },
    Token(u32),
}

/// C's `isspace` in the "C" locale, which llama.cpp's lstrip/rstrip use.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, rest) = needle.split_first()?;
    let mut from = 0;
    while hay.len() - from >= needle.len() {
        let i = from
            + hay[from..=hay.len() - needle.len()]
                .iter()
                .position(|&b| b == first)?;
        if &hay[i + 1..i + needle.len()] == rest {
            return Some(i);
        }
        from = i + 1;
    }
    None
}

pub(super) fn partition(vocab: &Vocab, text: &str, parse_special: bool) -> Vec<Fragment> {
    let bytes = text.as_bytes();
    if bytes.is_empty() {
        return Vec::new();
    }
    let mut frags = vec![Fragment::Text {
        start: 0,
        len: bytes.len(),
    }];
    // Only tokens that occur somewhere in the text can claim a piece of it; finding those in
    // one pass keeps Gemma's 6k `<unusedN>` tokens from each scanning the whole text.
    for id in vocab.specials_present(bytes) {
        let a = vocab.attr(id);
        // Without parse_special only user-defined tokens are matched.
        if !parse_special && a & (attr::CONTROL | attr::UNKNOWN) != 0 {
            continue;
        }
        let needle = vocab.texts[id as usize].as_bytes();
        let mut next = Vec::with_capacity(frags.len() + 2);
        for f in &frags {
            let Fragment::Text { start, len } = *f else {
                next.push(*f);
                continue;
            };
            let (mut base, mut blen) = (start, len);
            loop {
                let Some(rel) = find(&bytes[base..base + blen], needle) else {
                    next.push(Fragment::Text {
                        start: base,
                        len: blen,
                    });
                    break;
                };
                let m = base + rel;
                let mut left = rel;
                if a & attr::LSTRIP != 0 {
                    while left > 0 && is_c_space(bytes[base + left - 1]) {
                        left -= 1;
                    }
                }
                if left > 0 {
                    next.push(Fragment::Text {
                        start: base,
                        len: left,
                    });
                }
                next.push(Fragment::Token(id));
                let mut r_off = m + needle.len();
                let end = base + blen;
                if r_off >= end {
                    break;
                }
                if a & attr::RSTRIP != 0 {
                    while r_off < end && is_c_space(bytes[r_off]) {
                        r_off += 1;
                    }
                }
                if r_off >= end {
                    break;
                }
                base = r_off;
                blen = end - r_off;
            }
        }
        frags = next;
    }
    frags
}
