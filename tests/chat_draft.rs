//! `infer chat --draft`: greedy replies with a draft model are exactly the replies without one,
//! across turns (the speculator keeps both caches between turns), a `/set` that rebuilds the
//! sampler chains, and `/regen`; with a good draft (the target's own file, nearly every draft
//! kept) and a deliberately poor one (random one-layer weights, nearly every draft rejected).
//! A draft file that cannot be opened is an error naming it, exit code 1.

#[path = "spec_support/mod.rs"]
mod spec_support;

use infer::gguf::GgufFile;
use spec_support::{real_model, write_poor_draft, TempDir};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const SCRIPT: &str = "Name three colours.\n/set top-k 1\nWhat is two plus two?\n/regen\n";

fn chat(model: &Path, extra: &[&str], input: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_infer"))
        .arg("chat")
        .arg(model)
        .args([
            "--temp",
            "0",
            "-n",
            "24",
            "-c",
            "512",
            "--no-history",
            "-t",
            "2",
        ])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start infer chat");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write the messages");
    child.wait_with_output().expect("infer chat output")
}

fn replies(out: &Output) -> String {
    assert!(
        out.status.success(),
        "infer chat failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("UTF-8 replies")
}

#[test]
fn greedy_replies_with_a_draft_equal_the_replies_without() {
    let Some(model) = real_model() else { return };
    let plain = replies(&chat(&model, &[], SCRIPT));
    assert!(plain.trim().len() > 10, "replies expected: {plain:?}");
    let m = model.to_str().expect("UTF-8 path");
    let good = replies(&chat(&model, &["--draft", m, "--draft-max", "6"], SCRIPT));
    assert_eq!(good, plain, "good draft");

    let dir = TempDir::new("chat-draft");
    let poor = dir.0.join("poor.gguf");
    write_poor_draft(&GgufFile::open(&model).expect("open the real model"), &poor);
    let p = poor.to_str().expect("UTF-8 path");
    let with_poor = replies(&chat(&model, &["--draft", p], SCRIPT));
    assert_eq!(with_poor, plain, "poor draft");
}

#[test]
fn a_missing_draft_file_is_an_error_naming_it() {
    let Some(model) = real_model() else { return };
    let out = chat(&model, &["--draft", "/no/such/draft.gguf"], "Hi\n");
    assert_eq!(out.status.code(), Some(1), "exit code");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/no/such/draft.gguf"), "stderr: {err}");
    assert!(out.stdout.is_empty(), "no reply without a model");
}
