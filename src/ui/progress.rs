//! Progress bars on stderr (indicatif), drawn only when stderr is a terminal and not `-q`: a
//! pipe or a log file never receives bar redraws.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::Duration;

fn visible() -> bool {
    !super::quiet() && std::io::stderr().is_terminal()
}

fn target() -> ProgressDrawTarget {
    if visible() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    }
}

/// A bar of `len` steps named `what` ("prompts", "tokens").
pub fn bar(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(Some(len), target());
    let template =
        format!("{{spinner}} [{{elapsed_precise}}] {{bar:30}} {{pos}}/{{len}} {what} {{msg}}");
    if let Ok(style) = ProgressStyle::with_template(&template) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb
}

/// A spinner with a message, for steps of unknown length (loading a model).
pub fn spinner(msg: &str) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(None, target());
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg}") {
        pb.set_style(style);
    }
    pb.set_message(msg.to_string());
    pb.enable_steady_tick(Duration::from_millis(100));
    pb
}

/// Reports prefill progress `(done, total)` on a bar that appears only for prompts long enough
/// to be worth one (a short chat turn should not flash a bar).
pub struct PrefillProgress {
    bar: Option<ProgressBar>,
}

/// Prompts shorter than this evaluate in well under a second on a small model.
const PREFILL_BAR_MIN: usize = 256;

impl PrefillProgress {
    pub fn new() -> PrefillProgress {
        PrefillProgress { bar: None }
    }

    pub fn update(&mut self, done: usize, total: usize) {
        if total < PREFILL_BAR_MIN || !visible() {
            return;
        }
        let b = self
            .bar
            .get_or_insert_with(|| bar(total as u64, "prompt tokens"));
        b.set_position(done as u64);
        if done >= total {
            b.finish_and_clear();
        }
    }
}

impl Default for PrefillProgress {
    fn default() -> Self {
        PrefillProgress::new()
    }
}
