//! The tokens of a chat as its KV cache holds them, built a turn at a time as llama.cpp's
//! llama-cli builds them. The first turn renders the conversation with the chat template; each
//! later turn tokenizes only what the conversation added since the last prompt (the last reply,
//! the new message and the start of the next reply: the text difference of two renderings, see
//! [`parts_after`]). A context shift removes a range of tokens from the cache; the history
//! removes the same range, so it stays what the cache holds, and the next turn appends to it
//! instead of re-rendering a conversation the cache no longer matches.
//!
//! It holds tokens only: evaluating them is the engine's job, deciding what to say is `cli`'s.

use super::{encode_parts, parts_after, tokenize_parts, ChatTemplate, Message, Role};
use crate::tokenizer::Tokenizer;

/// How many tokens at the front a context shift keeps (`infer chat --keep`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    /// The system message's part of the prompt (the tokens before the first user message's
    /// text); BOS alone without a system message, as llama-cli keeps by default (`--keep 0`
    /// plus BOS).
    System,
    /// N tokens after BOS (llama.cpp's `--keep N`), at most the first prompt.
    Tokens(usize),
    /// The whole first prompt (`--keep -1`).
    FirstPrompt,
}

impl std::fmt::Display for Keep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Keep::System => write!(f, "keeping the system message (or BOS)"),
            Keep::Tokens(n) => write!(f, "keeping {n} tokens after BOS"),
            Keep::FirstPrompt => write!(f, "keeping the first prompt"),
        }
    }
}

/// What the history was before a turn, to take the turn back.
#[derive(Clone, Debug, Default)]
struct Before {
    msgs: Vec<Message>,
    reply_tail: Option<Vec<u32>>,
    keep: usize,
}

/// The prompt of one turn before it is evaluated; [`History::commit`] records it.
#[derive(Clone, Debug)]
pub struct Turn {
    /// The prompt: the history followed by the turn's own tokens.
    pub tokens: Vec<u32>,
    /// Where the turn's own tokens start in `tokens` (0 when the conversation was rendered
    /// whole again).
    pub start: usize,
    /// Tokens a context shift keeps at the front.
    pub keep: usize,
    /// Set when the chat template failed and its fallback format was used.
    pub warning: Option<String>,
    msgs: Vec<Message>,
    before: Before,
}

impl Turn {
    /// The turn's own tokens (those not in the history before it).
    pub fn own(&self) -> &[u32] {
        &self.tokens[self.start..]
    }
}

/// The last committed turn.
#[derive(Clone, Debug)]
struct Last {
    /// Where its tokens start in [`History::tokens`] (after the shifts since).
    start: usize,
    /// Its own tokens as first evaluated.
    own: Vec<u32>,
    /// Whether a shift removed some of them.
    damaged: bool,
    before: Before,
}

/// A conversation's prompt tokens as the KV cache holds them.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// The conversation `tokens` renders (with the start of an assistant reply after it).
    msgs: Vec<Message>,
    /// The last prompt, minus the ranges context shifts removed.
    tokens: Vec<u32>,
    keep: usize,
    /// The generated tokens still cached of a reply whose start a shift removed: they stand
    /// for the reply in the next prompt, since its text can no longer be re-tokenized in place.
    reply_tail: Option<Vec<u32>>,
    last: Option<Last>,
}

impl History {
    /// The last prompt as the cache holds it.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    pub fn keep(&self) -> usize {
        self.keep
    }

    /// Forgets everything: the next turn renders its conversation whole.
    pub fn clear(&mut self) {
        *self = History::default();
    }

    /// The prompt for `conv` (the whole conversation, ending with the new user message): the
    /// history followed by what `conv` adds to the conversation it was rendered from, or `conv`
    /// rendered whole when it does not continue it.
    pub fn next_turn(
        &self,
        template: &ChatTemplate,
        tok: &Tokenizer,
        conv: &[Message],
        keep: Keep,
    ) -> Turn {
        let new = template.render(conv, true);
        let before = Before {
            msgs: self.msgs.clone(),
            reply_tail: self.reply_tail.clone(),
            keep: self.keep,
        };
        if !self.tokens.is_empty() && conv.starts_with(&self.msgs) {
            let old = template.render(&self.msgs, true);
            if let Some(mut parts) = parts_after(tok, &old.parts, &new.parts) {
                let mut tokens = self.tokens.clone();
                // With a reply whose start is gone, its cached tail replaces its text.
                let reply = conv
                    .get(self.msgs.len())
                    .filter(|m| m.role == Role::Assistant);
                if let (Some(tail), Some(reply)) = (&self.reply_tail, reply) {
                    let at = parts.iter().take(2).position(|p| {
                        !p.template && !p.text.is_empty() && reply.content.contains(&p.text)
                    });
                    if let Some(at) = at {
                        parts.drain(..=at);
                        tokens.extend_from_slice(tail);
                    }
                }
                tokens.extend(encode_parts(tok, &parts));
                return Turn {
                    tokens,
                    start: self.tokens.len(),
                    keep: self.keep,
                    warning: new.warning,
                    msgs: conv.to_vec(),
                    before,
                };
            }
        }
        let tokens = tokenize_parts(tok, &new.parts);
        let keep = keep_tokens(keep, template, tok, conv, &tokens);
        Turn {
            tokens,
            start: 0,
            keep,
            warning: new.warning,
            msgs: conv.to_vec(),
            before,
        }
    }

    /// The prompt that answers the last turn again (`/regen`), whose conversation is `conv`:
    /// the last prompt as cached, or, when a shift removed part of the turn, the history before
    /// it followed by the whole turn again (to be evaluated anew). `None` when the last turn
    /// was not `conv`'s.
    pub fn again(&self, conv: &[Message]) -> Option<Turn> {
        let last = self.last.as_ref().filter(|_| self.msgs == conv)?;
        let mut tokens = self.tokens.clone();
        if last.damaged {
            tokens.truncate(last.start);
            tokens.extend_from_slice(&last.own);
        }
        Some(Turn {
            tokens,
            start: last.start,
            keep: self.keep,
            warning: None,
            msgs: self.msgs.clone(),
            before: last.before.clone(),
        })
    }

    /// Whether the last turn lost tokens to a context shift (so [`History::again`] evaluates
    /// it anew).
    pub fn last_damaged(&self) -> bool {
        self.last.as_ref().is_some_and(|l| l.damaged)
    }

    /// Records `turn` as evaluated, followed by `generated`, with the context shifts done
    /// meanwhile, in order, as `(keep, discard)` over the prompt and then the generated tokens
    /// (the engine's `make_room` result followed by its generation's shifts).
    pub fn commit(&mut self, turn: Turn, shifts: &[(usize, usize)], generated: &[u32]) {
        let n_prompt = turn.tokens.len();
        let mut alive: Vec<usize> = (0..n_prompt + generated.len()).collect();
        for &(keep, discard) in shifts {
            let n = alive.len();
            alive.drain(keep.min(n)..(keep + discard).min(n));
        }
        let lost_reply = generated.len() - alive.iter().filter(|&&i| i >= n_prompt).count();
        let damaged = alive
            .iter()
            .filter(|&&i| i >= turn.start && i < n_prompt)
            .count()
            != n_prompt - turn.start;
        self.tokens = alive
            .iter()
            .filter(|&&i| i < n_prompt)
            .map(|&i| turn.tokens[i])
            .collect();
        self.reply_tail = (lost_reply > 0).then(|| generated[lost_reply..].to_vec());
        self.last = Some(Last {
            start: alive.iter().filter(|&&i| i < turn.start).count(),
            own: turn.own().to_vec(),
            damaged,
            before: turn.before,
        });
        self.msgs = turn.msgs;
        self.keep = turn.keep;
    }

    /// Takes the last turn back (a reply stopped before its first token): the history is again
    /// what it was before it, less what shifts removed since.
    pub fn undo(&mut self) {
        if let Some(last) = self.last.take() {
            self.tokens.truncate(last.start);
            self.msgs = last.before.msgs;
            self.reply_tail = last.before.reply_tail;
            self.keep = last.before.keep;
            if self.tokens.is_empty() {
                self.clear();
            }
        }
    }
}

/// The `keep` of [`Keep`] for a conversation rendered whole as `tokens`.
fn keep_tokens(
    keep: Keep,
    template: &ChatTemplate,
    tok: &Tokenizer,
    conv: &[Message],
    tokens: &[u32],
) -> usize {
    let bos = usize::from(tok.bos().is_some() && tokens.first() == tok.bos().as_ref());
    let n = match keep {
        Keep::FirstPrompt => tokens.len(),
        Keep::Tokens(n) => n.saturating_add(bos),
        Keep::System => match conv.first().filter(|m| m.role == Role::System) {
            // The system message followed by an empty user message renders as the real
            // prompt does up to the user's text (templates that merge the system text into
            // the first user turn, as Gemma's, included).
            Some(sys) => {
                let probe = [sys.clone(), Message::new(Role::User, "")];
                let (p, _) = template.tokens(tok, &probe, true);
                p.iter().zip(tokens).take_while(|(a, b)| a == b).count()
            }
            None => bos,
        },
    };
    n.min(tokens.len())
}
