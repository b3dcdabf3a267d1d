//! Incremental decoding for streamed output: token pieces are bytes, and a multi-byte
//! character (emoji, CJK) is often split across tokens, so text is released only up to the
//! last complete UTF-8 sequence and the incomplete tail is held for the next piece.

/// Turns a sequence of byte pieces into text, never emitting half a character.
#[derive(Clone, Debug, Default)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    pub fn new() -> Utf8Stream {
        Utf8Stream::default()
    }

    /// Add a piece; returns the text that is now complete (possibly empty). Bytes that can
    /// never become valid UTF-8 come out as U+FFFD.
    pub fn push(&mut self, piece: &[u8]) -> String {
        self.pending.extend_from_slice(piece);
        let mut out = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (good, bad) = rest.split_at(e.valid_up_to());
                    // from_utf8 just validated `good`.
                    out.push_str(std::str::from_utf8(good).unwrap_or_default());
                    match e.error_len() {
                        Some(n) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            rest = &bad[n..];
                        }
                        // An incomplete sequence at the end: wait for more bytes.
                        None => {
                            rest = bad;
                            break;
                        }
                    }
                }
            }
        }
        let keep = rest.len();
        let drop = self.pending.len() - keep;
        self.pending.drain(..drop);
        out
    }

    /// Whatever is still held, as text (an unfinished character becomes U+FFFD).
    pub fn finish(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_back_split_characters() {
        let emoji = "👍".as_bytes();
        let mut s = Utf8Stream::new();
        assert_eq!(s.push(b"ok "), "ok ");
        assert_eq!(s.push(&emoji[..1]), "");
        assert_eq!(s.push(&emoji[1..3]), "");
        assert_eq!(s.push(&emoji[3..]), "👍");
        assert_eq!(s.push("é".as_bytes()), "é");
        assert_eq!(s.finish(), "");
    }

    #[test]
    fn invalid_bytes_become_replacement_chars() {
        let mut s = Utf8Stream::new();
        assert_eq!(s.push(&[b'a', 0xFF, b'b']), "a\u{FFFD}b");
        assert_eq!(s.push(&[0xE2, 0x82]), "");
        assert_eq!(s.finish(), "\u{FFFD}");
    }
}
