//! Built-in chat formats for models whose GGUF has no `tokenizer.chat_template`, written from
//! llama.cpp's `llm_chat_apply_template` (src/llama-chat.cpp) so the same messages give the same
//! text; tests/chat_template_vs_llama.rs holds them against it. Message text and template
//! markers are kept apart ([`Part`]) so that only the markers may become special tokens.

use super::{Message, Part, Role};

/// A format infer knows without a Jinja template. Names are llama.cpp's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Builtin {
    Chatml,
    Gemma,
    Llama3,
    MistralV1,
    MistralV3,
    MistralV3Tekken,
    MistralV7,
    MistralV7Tekken,
}

impl Builtin {
    pub const ALL: [Builtin; 8] = [
        Builtin::Chatml,
        Builtin::Gemma,
        Builtin::Llama3,
        Builtin::MistralV1,
        Builtin::MistralV3,
        Builtin::MistralV3Tekken,
        Builtin::MistralV7,
        Builtin::MistralV7Tekken,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Builtin::Chatml => "chatml",
            Builtin::Gemma => "gemma",
            Builtin::Llama3 => "llama3",
            Builtin::MistralV1 => "mistral-v1",
            Builtin::MistralV3 => "mistral-v3",
            Builtin::MistralV3Tekken => "mistral-v3-tekken",
            Builtin::MistralV7 => "mistral-v7",
            Builtin::MistralV7Tekken => "mistral-v7-tekken",
        }
    }

    /// By name; `mistral` alone means the current format, v7.
    pub fn from_name(name: &str) -> Option<Builtin> {
        if name == "mistral" {
            return Some(Builtin::MistralV7);
        }
        Builtin::ALL.into_iter().find(|b| b.name() == name)
    }

    /// Which format a Jinja template is written for, by the markers it contains (llama.cpp's
    /// `llm_chat_detect_template` for the formats built in here). Used when a template fails to
    /// render.
    pub fn detect(template: &str) -> Option<Builtin> {
        let has = |s: &str| template.contains(s);
        if has("<|im_start|>") {
            Some(Builtin::Chatml)
        } else if has("<start_of_turn>") {
            Some(Builtin::Gemma)
        } else if has("<|start_header_id|>") && has("<|end_header_id|>") {
            Some(Builtin::Llama3)
        } else if has("[SYSTEM_PROMPT]") {
            Some(Builtin::MistralV7)
        } else if has("[INST]") {
            Some(Builtin::MistralV3)
        } else {
            None
        }
    }

    /// The text of `messages`, followed by the start of an assistant turn when `add_assistant`.
    pub fn render(self, messages: &[Message], add_assistant: bool) -> Vec<Part> {
        let mut r = Render::default();
        match self {
            Builtin::Chatml => {
                for m in messages {
                    r.mark(&format!("<|im_start|>{}\n", m.role.as_str()));
                    r.text(&m.content);
                    r.mark("<|im_end|>\n");
                }
                if add_assistant {
                    r.mark("<|im_start|>assistant\n");
                }
            }
            Builtin::Gemma => {
                // Gemma has no system role: the system text opens the next user turn.
                let mut system = String::new();
                for m in messages {
                    if m.role == Role::System {
                        system.push_str(trim(&m.content));
                        continue;
                    }
                    let role = match m.role {
                        Role::Assistant => "model",
                        _ => m.role.as_str(),
                    };
                    r.mark(&format!("<start_of_turn>{role}\n"));
                    if !system.is_empty() && m.role != Role::Assistant {
                        r.text(&system);
                        r.mark("\n\n");
                        system.clear();
                    }
                    r.text(trim(&m.content));
                    r.mark("<end_of_turn>\n");
                }
                if add_assistant {
                    r.mark("<start_of_turn>model\n");
                }
            }
            Builtin::Llama3 => {
                for m in messages {
                    r.mark(&format!(
                        "<|start_header_id|>{}<|end_header_id|>\n\n",
                        m.role.as_str()
                    ));
                    r.text(trim(&m.content));
                    r.mark("<|eot_id|>");
                }
                if add_assistant {
                    r.mark("<|start_header_id|>assistant<|end_header_id|>\n\n");
                }
            }
            Builtin::MistralV7 | Builtin::MistralV7Tekken => {
                let sp = if self == Builtin::MistralV7 { " " } else { "" };
                for m in messages {
                    match m.role {
                        Role::System => {
                            r.mark(&format!("[SYSTEM_PROMPT]{sp}"));
                            r.text(&m.content);
                            r.mark("[/SYSTEM_PROMPT]");
                        }
                        Role::User => {
                            r.mark(&format!("[INST]{sp}"));
                            r.text(&m.content);
                            r.mark("[/INST]");
                        }
                        Role::Assistant => {
                            r.mark(sp);
                            r.text(&m.content);
                            r.mark("</s>");
                        }
                    }
                }
            }
            Builtin::MistralV1 | Builtin::MistralV3 | Builtin::MistralV3Tekken => {
                let lead = if self == Builtin::MistralV1 { " " } else { "" };
                let trail = if self == Builtin::MistralV3Tekken {
                    ""
                } else {
                    " "
                };
                let mut in_turn = false;
                for m in messages {
                    if !in_turn {
                        r.mark(&format!("{lead}[INST]{trail}"));
                        in_turn = true;
                    }
                    match m.role {
                        Role::System => {
                            r.text(&m.content);
                            r.mark("\n\n");
                        }
                        Role::User => {
                            r.text(&m.content);
                            r.mark(&format!("{lead}[/INST]"));
                        }
                        Role::Assistant => {
                            r.mark(trail);
                            if self == Builtin::MistralV3 {
                                r.text(trim(&m.content));
                            } else {
                                r.text(&m.content);
                            }
                            r.mark("</s>");
                            in_turn = false;
                        }
                    }
                }
            }
        }
        r.parts
    }
}

/// llama.cpp's `trim`: the C locale's `isspace` bytes off both ends (not Unicode spaces).
pub fn trim(s: &str) -> &str {
    s.trim_matches(|c| matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r'))
}

/// Collects parts, merging neighbours of the same kind.
#[derive(Default)]
struct Render {
    parts: Vec<Part>,
}

impl Render {
    fn push(&mut self, s: &str, template: bool) {
        if s.is_empty() {
            return;
        }
        match self.parts.last_mut() {
            Some(p) if p.template == template => p.text.push_str(s),
            _ => self.parts.push(Part {
                text: s.to_string(),
                template,
            }),
        }
    }

    fn mark(&mut self, s: &str) {
        self.push(s, true);
    }

    fn text(&mut self, s: &str) {
        self.push(s, false);
    }
}
