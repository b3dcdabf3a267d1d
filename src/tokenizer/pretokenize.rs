//! BPE pre-tokenizers: split text into words before merges, as llama.cpp does for each
//! `tokenizer.ggml.pre`. The GPT-2, Llama 3 and Qwen 2 patterns are hand-written scanners (as
//! in llama.cpp's unicode.cpp, whose output is the bar); the few single-class patterns of the
//! `default` and `smollm` presets are run-length scanners with llama.cpp's "collapsed" class
//! semantics (ASCII as written, other codepoints by their one general category).
//!
//! Each pass refines a list of chunk lengths (in codepoints); a later pass never joins chunks.

use super::unicode::{self, cat, Flags};

/// The regex lists llama.cpp assigns to pre-tokenizer names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreSplit {
    /// `default`: punctuation runs, then GPT-2, then digit runs, then 3-digit groups.
    Default,
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)`
    Gpt2,
    /// Llama 3: letters with one leading non-letter, numbers in groups of up to 3, newlines.
    Llama3,
    /// Qwen 2: as Llama 3 but every digit alone.
    Qwen2,
    /// SmolLM/StarCoder: every digit alone, then GPT-2.
    Smollm,
}

#[derive(Clone, Copy)]
enum Pass {
    Gpt2,
    Llama3,
    Qwen2,
    /// `[\p{P}\$\+<=>\^~\|]+`
    PunctRuns,
    /// `\p{N}+`
    NumberRuns,
    /// `\p{N}`
    SingleNumbers,
    /// `[0-9][0-9][0-9]`
    AsciiDigitTriples,
}

impl PreSplit {
    fn passes(self) -> &'static [Pass] {
        match self {
            PreSplit::Default => &[
                Pass::PunctRuns,
                Pass::Gpt2,
                Pass::NumberRuns,
                Pass::AsciiDigitTriples,
            ],
            PreSplit::Gpt2 => &[Pass::Gpt2],
            PreSplit::Llama3 => &[Pass::Llama3],
            PreSplit::Qwen2 => &[Pass::Qwen2],
            PreSplit::Smollm => &[Pass::SingleNumbers, Pass::Gpt2],
        }
    }
}

/// Split `text` into words (plain UTF-8, not yet byte-encoded).
pub fn split(text: &str, kind: PreSplit) -> Vec<&str> {
    let cpts: Vec<char> = text.chars().collect();
    let mut lens = vec![cpts.len()];
    for pass in kind.passes() {
        lens = run_pass(*pass, &cpts, &lens);
    }
    let mut words = Vec::with_capacity(lens.len());
    let mut byte = 0;
    let mut cpt = 0;
    for len in lens {
        let start = byte;
        for c in &cpts[cpt..cpt + len] {
            byte += c.len_utf8();
        }
        cpt += len;
        words.push(&text[start..byte]);
    }
    words
}

fn run_pass(pass: Pass, cpts: &[char], lens: &[usize]) -> Vec<usize> {
    let mut out = Vec::with_capacity(lens.len());
    let mut start = 0;
    for &len in lens {
        let chunk = Chunk {
            cpts,
            ini: start,
            end: start + len,
        };
        match pass {
            Pass::Gpt2 => chunk.gpt2(&mut out),
            Pass::Llama3 => chunk.llama3(&mut out, 3),
            Pass::Qwen2 => chunk.llama3(&mut out, 1),
            Pass::PunctRuns => chunk.class_runs(&mut out, is_punct_class, true),
            Pass::NumberRuns => chunk.class_runs(&mut out, is_number_class, true),
            Pass::SingleNumbers => chunk.class_runs(&mut out, is_number_class, false),
            Pass::AsciiDigitTriples => chunk.digit_triples(&mut out),
        }
        start += len;
    }
    out
}

/// `[\p{P}\$\+<=>\^~\|]` with llama.cpp's collapsed semantics.
fn is_punct_class(c: char) -> bool {
    let cp = c as u32;
    if cp < 128 {
        return matches!(
            c,
            '!' | '"'
                | '#'
                | '%'..='*'
                | ','..='/'
                | ':'
                | ';'
                | '?'
                | '@'
                | '['..=']'
                | '_'
                | '{'
                | '}'
                | '$'
                | '+'
                | '<'..='>'
                | '^'
                | '~'
                | '|'
        );
    }
    !unicode::is_whitespace(cp) && unicode::category(cp) == cat::PUNCTUATION
}

/// `\p{N}` with llama.cpp's collapsed semantics: ASCII digits, or any other number codepoint.
fn is_number_class(c: char) -> bool {
    let cp = c as u32;
    if cp < 128 {
        return c.is_ascii_digit();
    }
    !unicode::is_whitespace(cp) && unicode::category(cp) == cat::NUMBER
}

const OUT_OF_RANGE: u32 = u32::MAX;

struct Chunk<'a> {
    cpts: &'a [char],
    ini: usize,
    end: usize,
}

/// Collects chunk lengths, dropping empty ones.
struct Emitter<'o> {
    out: &'o mut Vec<usize>,
    prev_end: usize,
}

impl Emitter<'_> {
    fn add(&mut self, end: usize) -> usize {
        let len = end - self.prev_end;
        if len > 0 {
            self.out.push(len);
        }
        self.prev_end = end;
        len
    }
}

impl Chunk<'_> {
    fn cpt(&self, pos: usize) -> u32 {
        if self.ini <= pos && pos < self.end {
            self.cpts[pos] as u32
        } else {
            OUT_OF_RANGE
        }
    }

    fn flags(&self, pos: usize) -> Flags {
        if self.ini <= pos && pos < self.end {
            unicode::flags(self.cpts[pos] as u32)
        } else {
            Flags::NONE
        }
    }

    /// `'s|'t|'re|'ve|'m|'ll|'d` at `pos` (case-insensitive when asked): its length.
    fn contraction(&self, pos: usize, fold_case: bool) -> Option<usize> {
        if self.cpt(pos) != '\'' as u32 || pos + 1 >= self.end {
            return None;
        }
        let lower = |c: u32| {
            if fold_case && (b'A' as u32..=b'Z' as u32).contains(&c) {
                c + 32
            } else {
                c
            }
        };
        let c1 = lower(self.cpt(pos + 1));
        if [b's', b't', b'm', b'd'].iter().any(|&b| c1 == b as u32) {
            return Some(2);
        }
        if pos + 2 < self.end {
            let c2 = lower(self.cpt(pos + 2));
            let pair = |a: u8, b: u8| c1 == a as u32 && c2 == b as u32;
            if pair(b'r', b'e') || pair(b'v', b'e') || pair(b'l', b'l') {
                return Some(3);
            }
        }
        None
    }

    fn gpt2(&self, out: &mut Vec<usize>) {
        let mut em = Emitter {
            out,
            prev_end: self.ini,
        };
        let mut pos = self.ini;
        while pos < self.end {
            let cpt = self.cpt(pos);
            let flags = self.flags(pos);
            if let Some(n) = self.contraction(pos, false) {
                pos += em.add(pos + n);
                continue;
            }
            let space = cpt == ' ' as u32;
            let mut f2 = if space { self.flags(pos + 1) } else { flags };
            if f2.is_letter() {
                pos += usize::from(space);
                while f2.is_letter() {
                    pos += 1;
                    f2 = self.flags(pos);
                }
                em.add(pos);
                continue;
            }
            if f2.is_number() {
                pos += usize::from(space);
                while f2.is_number() {
                    pos += 1;
                    f2 = self.flags(pos);
                }
                em.add(pos);
                continue;
            }
            let other =
                |f: Flags| !(f.whitespace || f.is_letter() || f.is_number()) && f.is_defined();
            if other(f2) {
                pos += usize::from(space);
                while other(f2) {
                    pos += 1;
                    f2 = self.flags(pos);
                }
                em.add(pos);
                continue;
            }
            let mut n_ws = 0;
            while self.flags(pos + n_ws).whitespace {
                n_ws += 1;
            }
            if n_ws > 1 && self.cpt(pos + n_ws) != OUT_OF_RANGE {
                pos += n_ws - 1;
                em.add(pos);
                continue;
            }
            if n_ws > 0 {
                pos += n_ws;
                em.add(pos);
                continue;
            }
            pos += 1;
            em.add(pos);
        }
    }

    /// Llama 3 (`max_digits` 3) and Qwen 2 (`max_digits` 1).
    fn llama3(&self, out: &mut Vec<usize>, max_digits: usize) {
        let mut em = Emitter {
            out,
            prev_end: self.ini,
        };
        let is_rn = |c: u32| c == '\r' as u32 || c == '\n' as u32;
        let mut pos = self.ini;
        while pos < self.end {
            let cpt = self.cpt(pos);
            let flags = self.flags(pos);
            if let Some(n) = self.contraction(pos, true) {
                pos += em.add(pos + n);
                continue;
            }
            // [^\r\n\p{L}\p{N}]?\p{L}+
            if !(is_rn(cpt) || flags.is_number())
                && (flags.is_letter() || self.flags(pos + 1).is_letter())
            {
                pos += 1;
                while self.flags(pos).is_letter() {
                    pos += 1;
                }
                em.add(pos);
                continue;
            }
            // \p{N}{1,max_digits}
            if flags.is_number() {
                let mut ini = pos;
                while self.flags(pos).is_number() {
                    pos += 1;
                    if pos - ini >= max_digits {
                        em.add(pos);
                        ini = pos;
                    }
                }
                em.add(pos);
                continue;
            }
            // <space>?[^\s\p{L}\p{N}]+[\r\n]*
            let space = cpt == ' ' as u32;
            let mut f2 = if space { self.flags(pos + 1) } else { flags };
            let other = |f: Flags| !(f.whitespace || f.is_letter() || f.is_number());
            if other(f2) && flags.is_defined() {
                pos += usize::from(space);
                while other(f2) && f2.is_defined() {
                    pos += 1;
                    f2 = self.flags(pos);
                }
                while is_rn(self.cpt(pos)) {
                    pos += 1;
                }
                em.add(pos);
                continue;
            }
            let mut n_ws = 0;
            let mut last_rn_end = 0;
            while self.flags(pos + n_ws).whitespace {
                if is_rn(self.cpt(pos + n_ws)) {
                    last_rn_end = pos + n_ws + 1;
                }
                n_ws += 1;
            }
            // \s*[\r\n]+
            if last_rn_end > 0 {
                pos = last_rn_end;
                em.add(pos);
                continue;
            }
            // \s+(?!\S)
            if n_ws > 1 && self.cpt(pos + n_ws) != OUT_OF_RANGE {
                pos += n_ws - 1;
                em.add(pos);
                continue;
            }
            if n_ws > 0 {
                pos += n_ws;
                em.add(pos);
                continue;
            }
            pos += 1;
            em.add(pos);
        }
    }

    /// A single-class pattern (`[class]+` when `runs`, else `[class]`): matches and the gaps
    /// between them each become a chunk.
    fn class_runs(&self, out: &mut Vec<usize>, class: fn(char) -> bool, runs: bool) {
        let mut pos = self.ini;
        let mut gap_start = self.ini;
        while pos < self.end {
            if !class(self.cpts[pos]) {
                pos += 1;
                continue;
            }
            if pos > gap_start {
                out.push(pos - gap_start);
            }
            let m = pos;
            pos += 1;
            if runs {
                while pos < self.end && class(self.cpts[pos]) {
                    pos += 1;
                }
            }
            out.push(pos - m);
            gap_start = pos;
        }
        if self.end > gap_start {
            out.push(self.end - gap_start);
        }
    }

    /// `[0-9][0-9][0-9]`, leftmost matches without overlap.
    fn digit_triples(&self, out: &mut Vec<usize>) {
        let digit = |p: usize| self.cpts[p].is_ascii_digit();
        let mut pos = self.ini;
        let mut gap_start = self.ini;
        while pos + 3 <= self.end {
            if digit(pos) && digit(pos + 1) && digit(pos + 2) {
                if pos > gap_start {
                    out.push(pos - gap_start);
                }
                out.push(3);
                pos += 3;
                gap_start = pos;
            } else {
                pos += 1;
            }
        }
        if self.end > gap_start {
            out.push(self.end - gap_start);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt2_split_of_a_sentence() {
        let w = split("Hello world's  end 123!!\n", PreSplit::Gpt2);
        assert_eq!(
            w,
            ["Hello", " world", "'s", " ", " end", " 123", "!!", "\n"]
        );
    }

    #[test]
    fn llama3_groups_digits_by_three() {
        let w = split("abc 1234567 x", PreSplit::Llama3);
        assert_eq!(w, ["abc", " ", "123", "456", "7", " x"]);
    }

    #[test]
    fn default_preset_splits_punctuation_and_digit_triples() {
        let w = split("a+b=12345", PreSplit::Default);
        assert_eq!(w, ["a", "+", "b", "=", "123", "45"]);
    }
}
