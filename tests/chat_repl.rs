//! `infer chat` driven as a person drives it: in a real terminal (a tmux pane on a private tmux
//! server), typing lines and control keys and reading the screen. One session covers a question
//! and its streamed reply, `/set`, `/regen` (greedy, so the regenerated reply must equal the first
//! and only its last token is evaluated again), a long reply stopped with Ctrl-C followed by more
//! chat, `"""` multi-line input, the history file, and `/bye`. Without a terminal, chat reads one
//! message per line and prints replies only.

mod common;

use common::model_path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn have_tmux() -> bool {
    let ok = Command::new("tmux")
        .arg("-V")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("skipping: tmux is not installed");
    }
    ok
}

/// A tmux server of our own (its own socket) with one pane running a command.
struct Pane {
    socket: String,
}

impl Pane {
    fn start(cmd: &str) -> Pane {
        let socket = format!("infer-test-{}", std::process::id());
        let st = Command::new("tmux")
            .args([
                "-L",
                &socket,
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-s",
                "t",
            ])
            .args(["-x", "160", "-y", "60", cmd])
            .status()
            .expect("start tmux");
        assert!(st.success());
        Pane { socket }
    }

    fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("tmux");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Types `text` literally, then Enter.
    fn type_line(&self, text: &str) {
        self.tmux(&["send-keys", "-t", "t", "-l", text]);
        self.tmux(&["send-keys", "-t", "t", "Enter"]);
    }

    fn key(&self, key: &str) {
        self.tmux(&["send-keys", "-t", "t", key]);
    }

    /// The whole pane including scrollback, trailing blank lines dropped.
    fn screen(&self) -> String {
        let s = self.tmux(&["capture-pane", "-p", "-J", "-t", "t", "-S", "-2000"]);
        s.trim_end().to_string()
    }

    /// Waits until `done(screen)` holds; panics with the screen after `secs`.
    fn wait(&self, secs: u64, what: &str, done: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if done(&s) {
                return s;
            }
            if start.elapsed() > Duration::from_secs(secs) {
                panic!("timed out waiting for {what}; screen:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for the next `>>> ` prompt (the `n`th on screen).
    fn wait_prompt(&self, n: usize, secs: u64) -> String {
        self.wait(secs, &format!("prompt #{n}"), |s| prompts(s) >= n)
    }
}

impl Drop for Pane {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .status();
    }
}

/// Lines that are an empty `>>> ` prompt waiting for input.
fn prompts(screen: &str) -> usize {
    screen.lines().filter(|l| l.starts_with(">>>")).count()
}

/// The text printed after the line `>>> {msg}` up to the next prompt or note in brackets.
fn reply_after(screen: &str, msg: &str, nth: usize) -> String {
    let marker = format!(">>> {msg}");
    let mut seen = 0;
    let mut lines = screen.lines();
    for l in lines.by_ref() {
        if l == marker {
            seen += 1;
            if seen == nth {
                break;
            }
        }
    }
    assert_eq!(seen, nth, "{marker:?} #{nth} not on screen:\n{screen}");
    let mut out = Vec::new();
    for l in lines {
        if l.starts_with(">>>") || l.starts_with('[') {
            break;
        }
        out.push(l);
    }
    out.join("\n")
}

#[test]
fn a_person_chats_in_a_terminal() {
    let Some(model) = model_path() else { return };
    if !have_tmux() {
        return;
    }
    let state = std::env::temp_dir().join(format!("infer-chat-repl-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    let cmd = format!(
        "env XDG_STATE_HOME='{}' '{}' chat '{}' --temp 0 -n 12 -c 2048; echo EXIT=$?; sleep 600",
        state.display(),
        env!("CARGO_BIN_EXE_infer"),
        model.display()
    );
    let pane = Pane::start(&cmd);
    pane.wait_prompt(1, 60);

    // A question and its reply.
    pane.type_line("What is the capital of France?");
    let s = pane.wait_prompt(2, 120);
    let first = reply_after(&s, "What is the capital of France?", 1);
    assert!(!first.trim().is_empty(), "no reply:\n{s}");
    assert!(!first.contains("<end_of_turn>") && !first.contains("<start_of_turn>"));
    assert!(s.contains("[reply cut at 12 tokens"), "{s}");

    // Greedy /regen gives the same reply, evaluating nothing again: the prompt is cached and its
    // last logits are kept (evaluating its last token alone would round differently).
    pane.type_line("/regen");
    let s = pane.wait_prompt(3, 120);
    let regen = reply_after(&s, "/regen", 1);
    assert_eq!(regen, first, "screen:\n{s}");
    pane.type_line("/stats");
    let s = pane.wait(30, "/stats", |s| s.contains("ended by limit"));
    assert!(
        s.contains("(0 new)"),
        "regen re-evaluated prompt tokens:\n{s}"
    );
    let s = pane.wait_prompt(4, 30);

    // /set changes what the next reply does.
    pane.type_line("/set n 3");
    pane.wait(30, "/set", |s| s.contains("n = 3"));
    pane.wait_prompt(5, 30);
    pane.type_line("/regen");
    let s2 = pane.wait_prompt(6, 120);
    assert!(s2.contains("[reply cut at 3 tokens"), "{s2}");
    drop(s);

    // A long reply streams (the screen grows before the prompt returns), Ctrl-C stops it.
    pane.type_line("/set n 4000");
    pane.wait_prompt(7, 30);
    pane.type_line("Write a very long story about a dragon and a knight.");
    let msg_line = ">>> Write a very long story about a dragon and a knight.";
    let grown = |min: usize| {
        move |s: &str| {
            s.split(msg_line)
                .nth(1)
                .is_some_and(|after| after.trim().len() >= min)
        }
    };
    let a = pane.wait(120, "the reply to start", grown(1));
    let len_a = a.len();
    let b = pane.wait(120, "the reply to grow", move |s| s.len() > len_a + 20);
    assert_eq!(
        prompts(&b),
        7,
        "the reply ended before it could be interrupted:\n{b}"
    );
    pane.key("C-c");
    let s = pane.wait_prompt(8, 60);
    assert!(s.contains("[stopped]"), "{s}");

    // ... and the chat goes on.
    pane.type_line("/set n 5");
    pane.wait_prompt(9, 30);
    pane.type_line("Thanks!");
    let s = pane.wait_prompt(10, 120);
    assert!(!reply_after(&s, "Thanks!", 1).trim().is_empty(), "{s}");

    // A multi-line message: typed line by line, as a person would.
    pane.type_line("\"\"\"First line");
    pane.wait(30, "continuation prompt", |s| {
        s.lines().any(|l| l.starts_with("..."))
    });
    pane.type_line("second line\"\"\"");
    pane.wait_prompt(11, 120);

    pane.type_line("/bye");
    let s = pane.wait(30, "exit", |s| s.contains("EXIT="));
    assert!(s.contains("EXIT=0"), "{s}");

    let history = std::fs::read_to_string(state.join("infer/history")).expect("history file");
    assert!(
        history.contains("What is the capital of France?"),
        "{history}"
    );
    assert!(history.contains("First line"), "{history}");
    let _ = std::fs::remove_dir_all(&state);
}

#[test]
fn piped_chat_prints_one_reply_per_message_and_ends_at_eof() {
    let Some(model) = model_path() else { return };
    let state = std::env::temp_dir().join(format!("infer-chat-pipe-{}", std::process::id()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_infer"))
        .args([
            "chat",
            model.to_str().expect("utf-8"),
            "--temp",
            "0",
            "-n",
            "6",
        ])
        .env("XDG_STATE_HOME", &state)
        .env_remove("NO_COLOR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(b"Hello!\n\n/nonsense\nWhat is 2+2?\n")
            .expect("write");
    }
    let out = child.wait_with_output().expect("wait");
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        !stdout.contains(">>>") && !stdout.contains('\x1b'),
        "{stdout:?}"
    );
    assert!(stderr.contains("unknown command /nonsense"), "{stderr}");
    // Two messages, two replies of at most 6 tokens: the greedy replies are the same as the
    // first turn alone gives.
    assert!(
        !state.join("infer/history").exists(),
        "history written without a terminal"
    );
    let alone = Command::new(env!("CARGO_BIN_EXE_infer"))
        .args([
            "chat",
            model.to_str().expect("utf-8"),
            "--temp",
            "0",
            "-n",
            "6",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(b"Hello!\n")?;
            c.wait_with_output()
        })
        .expect("run");
    let alone = String::from_utf8(alone.stdout).expect("utf-8");
    assert!(stdout.starts_with(&alone), "{stdout:?} vs {alone:?}");
    assert!(stdout.len() > alone.len(), "no second reply: {stdout:?}");
}

#[test]
fn piped_chat_survives_a_full_context_and_saves_the_transcript() {
    let Some(model) = model_path() else { return };
    let dir = std::env::temp_dir().join(format!("infer-chat-save-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let save = dir.join("t.json");
    // Longer than the whole context by itself: no context shift can make room for it.
    let long = "word ".repeat(300);
    let input = format!(
        "Hello\n{long}\n/system Be brief.\nHi again\n/save {}\n/bye\nnever answered\n",
        save.display()
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_infer"))
        .args([
            "chat",
            model.to_str().expect("utf-8"),
            "--temp",
            "0",
            "-n",
            "4",
            "-c",
            "64",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(input.as_bytes()).expect("write");
    }
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // -c 64 is rounded up to 256, as llama.cpp rounds it.
    assert!(
        stderr.contains("the context holds 256") && stderr.contains("send a shorter one"),
        "{stderr}"
    );
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&save).expect("saved")).expect("JSON");
    let roles: Vec<&str> = saved
        .as_array()
        .expect("array")
        .iter()
        .map(|m| m["role"].as_str().expect("role"))
        .collect();
    // The too-long message was dropped; the system message leads; /bye ended before the last line.
    assert_eq!(roles, ["system", "user", "assistant", "user", "assistant"]);
    assert_eq!(saved[0]["content"], "Be brief.");
    assert_eq!(saved[3]["content"], "Hi again");
    let replies = String::from_utf8(out.stdout).expect("utf-8");
    assert!(!replies.trim().is_empty(), "no replies on stdout");
    let _ = std::fs::remove_dir_all(&dir);
}
