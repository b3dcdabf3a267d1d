//! A model's own chat template (`tokenizer.chat_template`, Jinja) rendered with minijinja in a
//! sandbox: no file system, no includes, and a fuel limit so a hostile template cannot spin.
//! Hugging Face renders these with `trim_blocks` and `lstrip_blocks`, and templates call
//! Python string methods (`.strip()`, `.startswith()`), which minijinja-contrib's pycompat
//! provides.

use super::{ChatError, Message, Part};
use minijinja::{context, Environment, Error, ErrorKind};

/// Instructions a render may take; real templates need a few thousand per message.
const FUEL: u64 = 5_000_000;

/// A compiled template.
pub struct Jinja {
    env: Environment<'static>,
    source: String,
    bos: String,
    eos: String,
}

impl Jinja {
    pub fn new(source: &str, bos: &str, eos: &str) -> Result<Jinja, ChatError> {
        let mut env = Environment::new();
        env.set_fuel(Some(FUEL));
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |msg: String| -> Result<String, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, msg))
        });
        // Templates that print today's date get a fixed one, so a render never depends on the
        // clock (and tests and the KV-cache reuse between turns stay stable).
        env.add_function("strftime_now", |_fmt: String| "01 Jan 2025".to_string());
        env.add_template_owned("chat", source.to_string())
            .map_err(|e| ChatError::Template(describe(&e)))?;
        Ok(Jinja {
            env,
            source: source.to_string(),
            bos: bos.to_string(),
            eos: eos.to_string(),
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders `messages` and splits the text into template parts and message text. A
    /// template that rewrites message text beyond trimming it cannot be split, and is refused,
    /// since its output would let a user's text become special tokens.
    pub fn render(
        &self,
        messages: &[Message],
        add_assistant: bool,
    ) -> Result<Vec<Part>, ChatError> {
        let tmpl = self
            .env
            .get_template("chat")
            .map_err(|e| ChatError::Template(describe(&e)))?;
        let msgs: Vec<_> = messages
            .iter()
            .map(|m| context! { role => m.role.as_str(), content => m.content.as_str() })
            .collect();
        let text = tmpl
            .render(context! {
                messages => msgs,
                add_generation_prompt => add_assistant,
                bos_token => self.bos.as_str(),
                eos_token => self.eos.as_str(),
            })
            .map_err(|e| ChatError::Template(describe(&e)))?;
        split(&text, messages)
    }
}

/// Marks where each message's text (as given, or trimmed) sits in `text`, in order.
fn split(text: &str, messages: &[Message]) -> Result<Vec<Part>, ChatError> {
    let mut parts = Vec::new();
    let mut at = 0;
    for (i, m) in messages.iter().enumerate() {
        let trimmed = m.content.trim();
        if trimmed.is_empty() {
            continue;
        }
        let (pos, len) = match text[at..].find(m.content.as_str()) {
            Some(p) => (p, m.content.len()),
            None => match text[at..].find(trimmed) {
                Some(p) => (p, trimmed.len()),
                None => {
                    return Err(ChatError::Template(format!(
                        "the template changed the text of message {} ({}), so it cannot be told apart from the template's own markers",
                        i + 1,
                        m.role.as_str()
                    )))
                }
            },
        };
        if pos > 0 {
            parts.push(Part {
                text: text[at..at + pos].to_string(),
                template: true,
            });
        }
        parts.push(Part {
            text: text[at + pos..at + pos + len].to_string(),
            template: false,
        });
        at += pos + len;
    }
    if at < text.len() {
        parts.push(Part {
            text: text[at..].to_string(),
            template: true,
        });
    }
    Ok(parts)
}

/// The error with its line and cause chain on one line.
fn describe(e: &Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s.replace('\n', " ")
}
