//! Chat formats: turning a conversation into the prompt a chat model was trained on. The model's
//! own Jinja template (`tokenizer.chat_template`) when it has one, else a built-in format chosen
//! from its architecture and special tokens; `--chat-template NAME|FILE` overrides both.
//!
//! Rendering keeps message text apart from the template's markers ([`Part`]), and
//! [`ChatTemplate::tokens`] lets only the markers become special tokens: a user who types
//! `<end_of_turn>` gets those characters, not a turn boundary.

pub mod builtin;
pub mod history;
pub mod jinja;

pub use builtin::Builtin;

use crate::gguf::GgufFile;
use crate::tokenizer::Tokenizer;
use jinja::Jinja;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("chat template: {0}")]
    Template(String),
    #[error("unknown chat template '{name}': give a file or one of {known}")]
    UnknownName { name: String, known: String },
    #[error("cannot read chat template {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Gguf(#[from] crate::gguf::GgufError),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

impl Message {
    pub fn new(role: Role, content: impl Into<String>) -> Message {
        Message {
            role,
            content: content.into(),
        }
    }
}

/// A run of rendered text: the template's own (`template`, may hold special tokens) or a
/// message's (always plain text).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    pub text: String,
    pub template: bool,
}

/// Concatenated text of rendered parts.
pub fn joined(parts: &[Part]) -> String {
    parts.iter().map(|p| p.text.as_str()).collect()
}

enum Kind {
    Builtin(Builtin),
    Jinja(Box<Jinja>),
}

/// The chat format in use, with the built-in format that replaces a Jinja template that fails.
pub struct ChatTemplate {
    kind: Kind,
    fallback: Builtin,
    origin: String,
}

/// A rendered conversation; `warning` says when the template failed and which fallback was used.
pub struct Rendered {
    pub parts: Vec<Part>,
    pub warning: Option<String>,
}

impl ChatTemplate {
    pub fn builtin(b: Builtin) -> ChatTemplate {
        ChatTemplate {
            kind: Kind::Builtin(b),
            fallback: b,
            origin: format!("{} (built-in)", b.name()),
        }
    }

    /// The template for a model: `choice` (a built-in name or a Jinja file) when given, else the
    /// file's `tokenizer.chat_template`, else a built-in format guessed from the model.
    pub fn for_model(
        gguf: &GgufFile,
        tok: &Tokenizer,
        choice: Option<&str>,
    ) -> Result<ChatTemplate, ChatError> {
        let guess = guess_builtin(gguf, tok);
        let bos = tok.bos().and_then(|id| tok.token_text(id)).unwrap_or("");
        let eos = tok.eos().and_then(|id| tok.token_text(id)).unwrap_or("");
        let jinja = |source: &str, origin: String| -> Result<ChatTemplate, ChatError> {
            Ok(ChatTemplate {
                kind: Kind::Jinja(Box::new(Jinja::new(source, bos, eos)?)),
                fallback: Builtin::detect(source).unwrap_or(guess),
                origin,
            })
        };
        match choice {
            Some(name) => {
                if let Some(b) = Builtin::from_name(name) {
                    return Ok(ChatTemplate::builtin(b));
                }
                let path = Path::new(name);
                if !path.is_file() {
                    return Err(ChatError::UnknownName {
                        name: name.to_string(),
                        known: Builtin::ALL.map(Builtin::name).join(", "),
                    });
                }
                let source = std::fs::read_to_string(path).map_err(|source| ChatError::Read {
                    path: name.to_string(),
                    source,
                })?;
                jinja(&source, name.to_string())
            }
            None => match gguf.metadata().get_str("tokenizer.chat_template")? {
                Some(source) => match jinja(source, "the model's tokenizer.chat_template".into()) {
                    Ok(t) => Ok(t),
                    // A template that does not even compile is reported at the first render,
                    // where the fallback is named.
                    Err(ChatError::Template(why)) => Ok(ChatTemplate {
                        kind: Kind::Builtin(Builtin::detect(source).unwrap_or(guess)),
                        fallback: Builtin::detect(source).unwrap_or(guess),
                        origin: format!(
                            "{} (built-in; the model's template does not compile: {why})",
                            Builtin::detect(source).unwrap_or(guess).name()
                        ),
                    }),
                    Err(e) => Err(e),
                },
                None => Ok(ChatTemplate {
                    kind: Kind::Builtin(guess),
                    fallback: guess,
                    origin: format!(
                        "{} (built-in; the model file has no chat template)",
                        guess.name()
                    ),
                }),
            },
        }
    }

    /// Where the template came from, for `--verbose` and `/stats`.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The conversation as template and message parts. A Jinja template that fails to render is
    /// replaced by the built-in fallback, and the warning says so.
    pub fn render(&self, messages: &[Message], add_assistant: bool) -> Rendered {
        match &self.kind {
            Kind::Builtin(b) => Rendered {
                parts: b.render(messages, add_assistant),
                warning: None,
            },
            Kind::Jinja(j) => match j.render(messages, add_assistant) {
                Ok(parts) => Rendered {
                    parts,
                    warning: None,
                },
                Err(e) => Rendered {
                    parts: self.fallback.render(messages, add_assistant),
                    warning: Some(format!(
                        "{e}; using the built-in '{}' format instead",
                        self.fallback.name()
                    )),
                },
            },
        }
    }

    /// The prompt tokens for `messages`: see [`tokenize_parts`].
    pub fn tokens(
        &self,
        tok: &Tokenizer,
        messages: &[Message],
        add_assistant: bool,
    ) -> (Vec<u32>, Option<String>) {
        let r = self.render(messages, add_assistant);
        (tokenize_parts(tok, &r.parts), r.warning)
    }
}

/// Tokens of rendered parts: template parts with special-token parsing, message text without,
/// and BOS in front when the model wants one and the template did not write it.
pub fn tokenize_parts(tok: &Tokenizer, parts: &[Part]) -> Vec<u32> {
    let mut out = Vec::new();
    for p in parts {
        out.extend(tok.encode(&p.text, false, p.template));
    }
    if let Some(bos) = tok.bos().filter(|_| tok.add_bos()) {
        if out.first() != Some(&bos) {
            out.insert(0, bos);
        }
    }
    out
}

/// Tokens of rendered parts as [`tokenize_parts`] makes them, without BOS: the continuation of
/// a prompt.
pub fn encode_parts(tok: &Tokenizer, parts: &[Part]) -> Vec<u32> {
    parts
        .iter()
        .flat_map(|p| tok.encode(&p.text, false, p.template))
        .collect()
}

/// The parts `new` holds after the text of `old`, an earlier rendering of the start of the same
/// conversation: the text difference llama.cpp's `common_chat_format_single` takes, kept as
/// parts so that message text never becomes special tokens. When the cut falls inside a part,
/// its rest is the first part returned, and only if tokenizing the two sides apart gives the
/// tokens of the whole part (so that appending the continuation's [`encode_parts`] to the
/// tokens of `old` gives the tokens of `new`). `None` when `old` is empty or is not the start
/// of `new` (the template rendered the earlier turns differently, e.g. a new system message).
pub fn parts_after(tok: &Tokenizer, old: &[Part], new: &[Part]) -> Option<Vec<Part>> {
    let (last, same) = old.split_last()?;
    let n = same.len();
    if new.len() <= n || new[..n] != *same || new[n].template != last.template {
        return None;
    }
    let cont = &new[n];
    let rest = cont.text.strip_prefix(last.text.as_str())?;
    let mut out = Vec::with_capacity(new.len() - n);
    if !rest.is_empty() {
        let whole = tok.encode(&cont.text, false, cont.template);
        let mut apart = tok.encode(&last.text, false, last.template);
        apart.extend(tok.encode(rest, false, cont.template));
        if whole != apart {
            return None;
        }
        out.push(Part {
            text: rest.to_string(),
            template: cont.template,
        });
    }
    out.extend_from_slice(&new[n + 1..]);
    Some(out)
}

/// The built-in format a model without a template most likely wants: by architecture, then by
/// the special tokens its vocabulary has; ChatML (llama.cpp's default) otherwise.
fn guess_builtin(gguf: &GgufFile, tok: &Tokenizer) -> Builtin {
    let arch = gguf.metadata().arch().unwrap_or("");
    let has = |t: &str| tok.token_id(t).is_some();
    let bpe = matches!(tok.kind(), crate::tokenizer::VocabKind::Bpe(_));
    if arch.starts_with("gemma") || has("<start_of_turn>") {
        Builtin::Gemma
    } else if has("<|start_header_id|>") && has("<|eot_id|>") {
        Builtin::Llama3
    } else if has("<|im_start|>") {
        Builtin::Chatml
    } else if has("[SYSTEM_PROMPT]") {
        if bpe {
            Builtin::MistralV7Tekken
        } else {
            Builtin::MistralV7
        }
    } else if has("[INST]") {
        if bpe {
            Builtin::MistralV3Tekken
        } else {
            Builtin::MistralV3
        }
    } else {
        Builtin::Chatml
    }
}
