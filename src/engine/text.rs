//! Token pieces to printable text: only complete UTF-8 characters, and never any part of a stop
//! string. Text that could still become the start of a stop string is held back until the next
//! piece decides it.

use crate::tokenizer::Utf8Stream;

pub struct TextOut {
    utf8: Utf8Stream,
    held: String,
    stops: Vec<String>,
}

impl TextOut {
    pub fn new(stops: Vec<String>) -> TextOut {
        TextOut {
            utf8: Utf8Stream::new(),
            held: String::new(),
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
        }
    }

    /// Adds a piece; returns the text that may be printed now and whether a stop string was hit
    /// (then the text is everything before it, and nothing more should be generated).
    pub fn push(&mut self, piece: &[u8]) -> (String, bool) {
        self.held.push_str(&self.utf8.push(piece));
        let first_stop = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min();
        if let Some(at) = first_stop {
            self.held.truncate(at);
            return (std::mem::take(&mut self.held), true);
        }
        let keep = self.longest_stop_prefix_suffix();
        let cut = self.held.len() - keep;
        let shown = self.held[..cut].to_string();
        self.held.drain(..cut);
        (shown, false)
    }

    /// What is left at the end of generation (a held partial stop string was not a stop after all).
    pub fn finish(&mut self) -> String {
        let mut s = std::mem::take(&mut self.held);
        s.push_str(&self.utf8.finish());
        s
    }

    /// Length of the longest tail of `held` that is a proper prefix of some stop string.
    fn longest_stop_prefix_suffix(&self) -> usize {
        let h = &self.held;
        h.char_indices()
            .map(|(i, _)| i)
            .find(|&i| self.stops.iter().any(|s| s.starts_with(&h[i..])))
            .map_or(0, |i| h.len() - i)
    }
}

#[cfg(test)]
mod tests {
    use super::TextOut;

    fn feed(stops: &[&str], pieces: &[&[u8]]) -> (Vec<String>, bool, String) {
        let mut t = TextOut::new(stops.iter().map(|s| s.to_string()).collect());
        let mut shown = Vec::new();
        for p in pieces {
            let (s, stop) = t.push(p);
            shown.push(s);
            if stop {
                return (shown, true, String::new());
            }
        }
        let rest = t.finish();
        (shown, false, rest)
    }

    #[test]
    fn stop_string_is_cut_and_not_printed() {
        let (shown, stopped, _) = feed(&["END"], &[b"abc E", b"N", b"D more"]);
        assert!(stopped);
        assert_eq!(shown, ["abc ", "", ""]);
    }

    #[test]
    fn partial_stop_is_released_when_it_turns_out_not_to_be_one() {
        let (shown, stopped, rest) = feed(&["END"], &[b"xE", b"Nx", b"yE"]);
        assert!(!stopped);
        assert_eq!(shown, ["x", "ENx", "y"]);
        assert_eq!(rest, "E");
    }

    #[test]
    fn stop_inside_one_piece_and_earliest_of_several() {
        let (shown, stopped, _) = feed(&["\n\n", "###"], &[b"a### b\n\nc"]);
        assert!(stopped);
        assert_eq!(shown, ["a"]);
    }

    #[test]
    fn split_utf8_is_never_printed_half() {
        let e = "é".as_bytes();
        let (shown, _, rest) = feed(&[], &[b"caf", &e[..1], &e[1..]]);
        assert_eq!(shown, ["caf", "", "é"]);
        assert_eq!(rest, "");
    }

    #[test]
    fn multibyte_stop_prefix_is_held_on_char_boundaries() {
        let (shown, stopped, _) = feed(&["日本"], &["a日".as_bytes(), "本".as_bytes()]);
        assert!(stopped);
        assert_eq!(shown, ["a", ""]);
    }
}
