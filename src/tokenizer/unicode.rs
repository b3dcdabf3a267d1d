//! Codepoint classes for the BPE pre-tokenizers, and GPT-2's byte <-> printable-char mapping.
//! The classes are llama.cpp's (one general category per codepoint, plus a separate whitespace
//! set), read from the generated table in `unicode_data.rs`; nothing here allocates per call.

use super::unicode_data::{CATEGORY_RANGES, WHITESPACE};

/// Category bits, as in llama.cpp's `unicode_cpt_flags` (the low byte).
pub(super) mod cat {
    pub const UNDEFINED: u8 = 0x01;
    pub const NUMBER: u8 = 0x02;
    pub const LETTER: u8 = 0x04;
    pub const PUNCTUATION: u8 = 0x20;
}

/// What the splitters ask about one codepoint. `Flags::NONE` stands for "outside the chunk",
/// which no real codepoint maps to (every codepoint has at least one category bit).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Flags {
    pub category: u8,
    pub whitespace: bool,
}

impl Flags {
    pub const NONE: Flags = Flags {
        category: 0,
        whitespace: false,
    };

    pub fn is_letter(self) -> bool {
        self.category & cat::LETTER != 0
    }

    pub fn is_number(self) -> bool {
        self.category & cat::NUMBER != 0
    }

    /// True for any codepoint inside the chunk (llama.cpp's `flags.as_uint() != 0`).
    pub fn is_defined(self) -> bool {
        self.category != 0 || self.whitespace
    }
}

pub(super) fn category(cpt: u32) -> u8 {
    // The table's first entry starts at 0 and its last at 0x110000, so the partition point
    // is at least 1 for every codepoint; past the end llama.cpp answers UNDEFINED.
    if cpt >= 0x11_0000 {
        return cat::UNDEFINED;
    }
    let i = CATEGORY_RANGES.partition_point(|&(start, _)| start <= cpt);
    CATEGORY_RANGES[i - 1].1
}

pub(super) fn is_whitespace(cpt: u32) -> bool {
    WHITESPACE.binary_search(&cpt).is_ok()
}

pub(super) fn flags(cpt: u32) -> Flags {
    Flags {
        category: category(cpt),
        whitespace: is_whitespace(cpt),
    }
}

/// GPT-2's byte-level alphabet: byte `b` is written as the char `BYTE_TO_CHAR[b]`, printable
/// bytes as themselves and the rest as 256 + their rank among the non-printable ones.
pub(super) fn byte_to_char(b: u8) -> char {
    let printable = |b: u8| (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || b >= 0xAE;
    if printable(b) {
        return char::from(b);
    }
    let rank = (0..b).filter(|&x| !printable(x)).count() as u32;
    // 256 + rank is below 0x200, always a valid scalar value.
    char::from_u32(256 + rank).unwrap_or(char::REPLACEMENT_CHARACTER)
}

/// The inverse of `byte_to_char`, for chars outside the alphabet `None`.
pub(super) fn char_to_byte(c: char) -> Option<u8> {
    let cp = c as u32;
    if cp < 256 {
        let b = cp as u8;
        return (byte_to_char(b) == c).then_some(b);
    }
    if cp < 256 + 68 {
        let rank = cp - 256;
        let printable =
            |b: u8| (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || b >= 0xAE;
        return (0..=255u8).filter(|&x| !printable(x)).nth(rank as usize);
    }
    None
}

/// The 256 byte chars as UTF-8 strings, built once per tokenizer.
pub(super) fn byte_alphabet() -> Vec<String> {
    (0..=255u8).map(|b| byte_to_char(b).to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_alphabet_round_trips_and_matches_gpt2() {
        // GPT-2's encoder writes space as 'Ġ' (U+0120) and newline as 'Ċ' (U+010A).
        assert_eq!(byte_to_char(b' '), '\u{120}');
        assert_eq!(byte_to_char(b'\n'), '\u{10A}');
        assert_eq!(byte_to_char(b'a'), 'a');
        assert_eq!(byte_to_char(0xAD), '\u{143}');
        for b in 0..=255u8 {
            assert_eq!(char_to_byte(byte_to_char(b)), Some(b));
        }
        assert_eq!(char_to_byte('\u{144}'), None);
    }

    #[test]
    fn categories_of_known_codepoints() {
        assert_eq!(category('a' as u32), cat::LETTER);
        assert_eq!(category('7' as u32), cat::NUMBER);
        assert_eq!(category('!' as u32), cat::PUNCTUATION);
        // '$' is a symbol (0x40); U+0301 COMBINING ACUTE ACCENT a mark (0x10).
        assert_eq!(category('$' as u32), 0x40);
        assert_eq!(category(0x301), 0x10);
        assert_eq!(category('中' as u32), cat::LETTER);
        assert!(is_whitespace(0x3000));
        assert!(!is_whitespace('a' as u32));
    }
}
