//! `infer run` as a user meets it: errors are one line with a non-zero exit (2 for bad flags, via
//! clap), a closed stdout ends the run quietly, `--seed` repeats itself, `--stop` cuts the text
//! exactly before the stop string, and `-p -` reads the prompt from stdin. Text equality with
//! llama.cpp is tests/run_greedy_vs_llama.rs; here the binary is compared with itself under
//! different flags, each comparison being a property a wrong implementation would break.

mod common;

use common::model_path;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn infer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_infer"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run infer")
}

fn run_model(model: &Path, args: &[&str]) -> Output {
    let mut all = vec!["run", model.to_str().expect("UTF-8 path")];
    all.extend_from_slice(args);
    infer(&all)
}

fn one_line_error(out: &Output, code: i32, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "not one line: {stderr}"
    );
    for n in needles {
        assert!(stderr.contains(n), "{n:?} not in {stderr:?}");
    }
    assert!(out.stdout.is_empty(), "stdout not empty on error");
}

#[test]
fn missing_model_file_is_one_line_naming_it() {
    let out = infer(&["run", "/no/such/dir/model.gguf", "-p", "hi"]);
    one_line_error(&out, 1, &["/no/such/dir/model.gguf", "not found"]);
}

#[test]
fn bad_flag_exits_2() {
    let out = infer(&["run", "model.gguf", "-p", "hi", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));
    let out = infer(&["run", "model.gguf", "-p", "hi", "--temp", "warm"]);
    assert_eq!(out.status.code(), Some(2));
    let out = infer(&["run", "model.gguf", "-p", "hi", "-f", "x.txt"]);
    assert_eq!(out.status.code(), Some(2), "-p and -f together");
}

#[test]
fn prompt_longer_than_context_names_both_lengths() {
    let Some(model) = model_path() else { return };
    // -c 8 becomes 256, as llama.cpp rounds every context up to a multiple of 256.
    let prompt = "word ".repeat(300);
    let out = run_model(&model, &["-p", &prompt, "-c", "8", "-n", "1"]);
    one_line_error(&out, 1, &["302 tokens", "context holds 256"]);
}

#[test]
fn closed_stdout_ends_quietly() {
    let Some(model) = model_path() else { return };
    let mut child = Command::new(env!("CARGO_BIN_EXE_infer"))
        .arg("run")
        .arg(&model)
        .args(["-p", "Once upon a time", "-n", "300", "--seed", "1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn infer");
    // Like `| head -c 5`: read five bytes, then close the pipe.
    let mut stdout = child.stdout.take().expect("stdout");
    let mut first = [0u8; 5];
    stdout.read_exact(&mut first).expect("five bytes of output");
    drop(stdout);
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
    assert!(
        !stderr.contains("panicked") && !stderr.contains("error"),
        "{stderr}"
    );
}

#[test]
fn same_seed_same_text_and_seeds_matter() {
    let Some(model) = model_path() else { return };
    let gen = |seed: &str| {
        let out = run_model(
            &model,
            &[
                "-p",
                "My favourite animal is",
                "-n",
                "16",
                "--temp",
                "1.5",
                "--seed",
                seed,
            ],
        );
        assert!(out.status.success());
        out.stdout
    };
    let a = gen("42");
    assert!(!a.is_empty());
    assert_eq!(a, gen("42"), "the same seed must give the same text");
    assert!(
        ["1", "2", "3"].iter().any(|s| gen(s) != a),
        "three other seeds all gave the seed-42 text"
    );
}

#[test]
fn stop_string_cuts_before_it_and_stdin_prompt_matches() {
    let Some(model) = model_path() else { return };
    let base = ["-p", "The capital of France is", "-n", "24", "--temp", "0"];
    let full = run_model(&model, &base);
    assert!(full.status.success());
    let text = String::from_utf8(full.stdout).expect("UTF-8 output");
    let chars: Vec<char> = text.chars().collect();
    assert!(chars.len() > 20, "too little text to test --stop: {text:?}");
    // A stop string from the middle of the greedy text: the output must be exactly the text
    // before its first occurrence.
    let stop: String = chars[12..16].iter().collect();
    let cut = &text[..text.find(&stop).expect("stop is in the text")];
    let mut args = base.to_vec();
    args.extend(["--stop", &stop]);
    let stopped = run_model(&model, &args);
    assert!(stopped.status.success());
    assert_eq!(
        String::from_utf8_lossy(&stopped.stdout),
        cut,
        "stop {stop:?}"
    );

    // `-p -` reads the prompt from stdin and gives the same greedy text.
    let mut child = Command::new(env!("CARGO_BIN_EXE_infer"))
        .arg("run")
        .arg(&model)
        .args(["-p", "-", "-n", "24", "--temp", "0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn infer");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"The capital of France is")
        .expect("write prompt");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), text);
}

#[test]
fn full_context_stops_with_a_message() {
    let Some(model) = model_path() else { return };
    // 250 prompt tokens in a context of 256 (-c 12 rounded up as llama.cpp rounds it): the 7th
    // generated token is the last that can be shown (it is never fed back), so generation must
    // stop there, say why, and still succeed.
    let prompt = "word ".repeat(244) + "The capital of France is";
    let out = run_model(&model, &["-p", &prompt, "-c", "12", "--temp", "0"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("context full (256 tokens"), "{stderr}");
    assert!(stderr.contains("prompt: 250 tokens"), "{stderr}");
    assert!(stderr.contains("generated: 7 tokens"), "{stderr}");
    assert!(!out.stdout.is_empty());
}
