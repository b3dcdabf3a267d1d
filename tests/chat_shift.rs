//! `infer chat` past its context (`-c`), with messages piped in: with context shift (the
//! default) every turn of a conversation several times longer than the context gets a reply and
//! stderr says when the start was kept and older tokens dropped; with `--no-context-shift` the
//! message that would overflow is refused with a message and the chat goes on (after `/clear`,
//! replies again). A message longer than the context by itself is refused either way.

mod common;

use common::model_path;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn chat(model: &Path, extra: &[&str], input: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_infer"))
        .arg("chat")
        .arg(model)
        .args([
            "--temp",
            "0",
            "-n",
            "16",
            "-c",
            "256",
            "--no-history",
            "-t",
            "2",
        ])
        .args(["--system", "Answer briefly."])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start infer chat");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(input.as_bytes()).expect("write");
    }
    child.wait_with_output().expect("infer chat output")
}

/// Messages of about 65 tokens each: the fourth cannot fit a 256-token context with the first
/// three and their replies.
fn long_messages(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            format!(
                "Message {i}: {}",
                "Tell me about the old mill by the river, the bridge and the village. ".repeat(4)
            )
        })
        .collect()
}

#[test]
fn every_turn_is_answered_past_the_context() {
    let Some(model) = model_path() else { return };
    let msgs = long_messages(6);
    let input = msgs.join("\n") + "\n/regen\n/stats\n";
    let out = chat(&model, &["-v"], &input);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("context 256 tokens (context shift on"),
        "{stderr}"
    );
    let shifts = stderr.matches("[context shift: ").count();
    assert!(shifts >= 2, "{shifts} shifts reported:\n{stderr}");
    assert!(
        !stderr.contains("the context holds"),
        "a turn was refused:\n{stderr}"
    );
    // Six replies and the /regen one, each on its own line (16 tokens at most).
    let stdout = String::from_utf8(out.stdout).expect("UTF-8 replies");
    let replies: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(replies.len() >= 7, "{stdout:?}\n{stderr}");
    assert_eq!(stderr.matches("ended by").count(), 7 + 1, "{stderr}");
    // /stats: the conversation still fits.
    let used: usize = stderr
        .lines()
        .find_map(|l| l.strip_prefix("context: "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("/stats line");
    assert!(used < 256, "{stderr}");
}

#[test]
fn without_context_shift_the_overflowing_message_is_refused() {
    let Some(model) = model_path() else { return };
    let msgs = long_messages(5);
    let input = format!(
        "{}\n{}\n{}\n{}\n/clear\nHello\n{}\n",
        msgs[0],
        msgs[1],
        msgs[2],
        msgs[3],
        "word ".repeat(300)
    );
    let out = chat(&model, &["--no-context-shift"], &input);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("[context shift: "), "{stderr}");
    assert!(
        stderr
            .contains("the context holds 256 (-c) and context shift is off: /clear to start over"),
        "{stderr}"
    );
    // A message longer than the context alone is refused too, and the chat still ends cleanly.
    assert!(
        stderr.matches("the context holds 256").count() >= 2,
        "{stderr}"
    );
    let stdout = String::from_utf8(out.stdout).expect("UTF-8 replies");
    let replies = stdout.lines().filter(|l| !l.trim().is_empty()).count();
    // The first messages and "Hello" after /clear are answered.
    assert!(replies >= 3, "{stdout:?}\n{stderr}");
}
