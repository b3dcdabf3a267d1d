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

/// Which byte pairs occur in the text: a cheap test that rules out most of the thousands of
/// special tokens (Gemma's `<unusedN>`) before searching for them.
struct PairSet(Vec<u64>);

impl PairSet {
    fn of(text: &[u8]) -> PairSet {
        let mut bits = vec![0u64; 1024];
        for w in text.windows(2) {
            let k = (usize::from(w[0]) << 8) | usize::from(w[1]);
            bits[k >> 6] |= 1 << (k & 63);
        }
        PairSet(bits)
    }

    fn may_contain(&self, needle: &[u8], text: &[u8]) -> bool {
        match needle {
            [] => false,
            [b] => text.contains(b),
            [a, b, ..] => {
                let k = (usize::from(*a) << 8) | usize::from(*b);
                self.0[k >> 6] & (1 << (k & 63)) != 0
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || needle.len() > hay.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
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
    let pairs = PairSet::of(bytes);
    for &id in &vocab.special_cache {
        let a = vocab.attr(id);
        // Without parse_special only user-defined tokens are matched.
        if !parse_special && a & (attr::CONTROL | attr::UNKNOWN) != 0 {
            continue;
        }
        let needle = vocab.texts[id as usize].as_bytes();
        if !pairs.may_contain(needle, bytes) {
            continue;
        }
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
