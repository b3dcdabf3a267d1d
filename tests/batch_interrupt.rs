//! Ctrl-C (SIGINT) outside the chat REPL ends `infer batch` and `infer run` with exit code 130;
//! batch stops after the step in progress (prompts run --parallel at once) and leaves only whole
//! JSON records on stdout.

mod common;

use common::model_path;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};

fn sigint(child: &Child) {
    let st = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(st.success(), "kill -INT failed");
}

#[test]
fn ctrl_c_ends_batch_with_130_after_whole_records() {
    let Some(model) = model_path() else { return };
    let mut child = Command::new(env!("CARGO_BIN_EXE_infer"))
        .arg("batch")
        .arg(&model)
        .args(["-q", "--plain", "--temp", "0", "-n", "48", "-t", "2"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start infer batch");
    let prompts: String = (0..200)
        .map(|i| format!("Tell me a long story about the number {i}.\n"))
        .collect();
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(prompts.as_bytes())
        .expect("write prompts");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    out.read_line(&mut first).expect("first record");
    sigint(&child);
    let mut rest = String::new();
    out.read_to_string(&mut rest).expect("the other records");
    let status = child.wait().expect("wait for infer batch");
    assert_eq!(status.code(), Some(130), "exit code after Ctrl-C");
    let records: Vec<&str> = std::iter::once(first.as_str())
        .chain(rest.lines())
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert!(
        records.len() < 200,
        "batch stopped early ({} records)",
        records.len()
    );
    for r in &records {
        let v: serde_json::Value = serde_json::from_str(r).expect("a whole JSON record");
        assert!(v.get("completion").is_some(), "{r}");
    }
}

#[test]
fn ctrl_c_ends_run_with_130() {
    let Some(model) = model_path() else { return };
    let mut child = Command::new(env!("CARGO_BIN_EXE_infer"))
        .arg("run")
        .arg(&model)
        .args([
            "-q",
            "-p",
            "Once upon a time",
            "-n",
            "4000",
            "--temp",
            "0",
            "-t",
            "2",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start infer run");
    let mut out = child.stdout.take().expect("stdout");
    let mut byte = [0u8; 1];
    out.read_exact(&mut byte).expect("first output byte");
    sigint(&child);
    let status = child.wait().expect("wait for infer run");
    assert_eq!(status.code(), Some(130), "exit code after Ctrl-C");
}
