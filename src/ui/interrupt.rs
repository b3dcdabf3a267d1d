//! Ctrl-C outside the chat REPL ends a command with exit code 130, the shell's code for "stopped
//! by SIGINT", whether the command stops at once (`exit_on_ctrl_c`: `run`, `perplexity`, whose
//! output so far is already flushed) or at its next safe point (`watch_ctrl_c`: `batch`, which
//! finishes no record half-written). The chat REPL installs its own handler instead (Ctrl-C
//! there stops a reply, not the program); a process has one handler, so each command picks one.

use std::sync::atomic::{AtomicBool, Ordering};

/// The exit code of a command stopped by Ctrl-C (128 + SIGINT).
pub const EXIT_CODE: u8 = 130;

static RAISED: AtomicBool = AtomicBool::new(false);

/// Returned by a command that stopped because of Ctrl-C; `main` maps it to [`EXIT_CODE`].
#[derive(Debug, thiserror::Error)]
#[error("interrupted (Ctrl-C)")]
pub struct Interrupted;

/// Ctrl-C exits at once with code 130. Without a handler the process would die of the signal
/// and report no exit code at all to a parent that is not a shell.
pub fn exit_on_ctrl_c() {
    // Fails only when a handler is already installed, which then decides.
    let _ = ctrlc::set_handler(|| std::process::exit(i32::from(EXIT_CODE)));
}

/// The first Ctrl-C raises the returned flag, for the command to stop at its next safe point and
/// return [`Interrupted`]; a second one exits at once with code 130.
pub fn watch_ctrl_c() -> &'static AtomicBool {
    let _ = ctrlc::set_handler(|| {
        if RAISED.swap(true, Ordering::Relaxed) {
            std::process::exit(i32::from(EXIT_CODE));
        }
    });
    &RAISED
}
