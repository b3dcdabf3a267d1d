//! `infer batch` end to end: plain lines and JSON Lines in, one JSON object per prompt out, in
//! input order. Greedy completions equal what separate `infer run` calls print for the same
//! prompts (so loading the model once and reusing cached prefixes changes nothing); per-line
//! options are honoured; bad lines get error records in place while the job goes on, and the
//! exit code says that some failed.

mod common;

use common::model_path;
use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn batch(model: &Path, args: &[&str], input: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_infer"))
        .arg("batch")
        .arg(model)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn infer batch");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

fn records(out: &Output) -> Vec<Value> {
    String::from_utf8(out.stdout.clone())
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect()
}

fn run_once(model: &Path, prompt: &str, n: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_infer"))
        .arg("run")
        .arg(model)
        .args(["-p", prompt, "--temp", "0", "-n", n])
        .stdin(Stdio::null())
        .output()
        .expect("infer run");
    assert!(out.status.success());
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn plain_lines_match_separate_runs_in_input_order() {
    let Some(model) = model_path() else { return };
    let prompts = [
        "The capital of France is",
        "Once upon a time",
        "The capital of France is",
        "1, 2, 3, 4,",
    ];
    let out = batch(
        &model,
        &["--temp", "0", "-n", "6"],
        &(prompts.join("\n") + "\n"),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recs = records(&out);
    assert_eq!(recs.len(), prompts.len());
    for (i, (r, p)) in recs.iter().zip(prompts).enumerate() {
        assert_eq!(r["id"], i + 1, "{r}");
        assert_eq!(r["tokens_generated"], 6, "{r}");
        assert_eq!(r["end"], "limit");
        let expected = run_once(&model, p, "6");
        assert_eq!(r["completion"], expected.as_str(), "prompt {p:?}");
    }
    // No prompt reuses its neighbour's cache (a shared prefix would change how the prompt is
    // batched, and so its rounding): the third repeats the first and is evaluated whole.
    assert_eq!(recs[2]["tokens_cached"], 0, "{}", recs[2]);
    let keys: Vec<&String> = recs[0].as_object().expect("object").keys().collect();
    assert_eq!(keys[0], "id", "id comes first: {keys:?}");
}

#[test]
fn json_lines_options_and_bad_lines() {
    let Some(model) = model_path() else { return };
    let input = [
        r#"{"id": "a", "prompt": "The capital of France is", "n_predict": 3, "temp": 0}"#,
        r#"{"prompt": "Once upon a time", "temp": 0.9, "seed": 42, "n_predict": 8}"#,
        "{not json at all",
        r#"{"prompt": "Once upon a time", "temp": 0.9, "seed": 42, "n_predict": 8, "id": 7}"#,
        "",
        r#"{"id": "typo", "prompt": "hi", "n_predcit": 2}"#,
        r#"{"id": "long", "prompt": "LONG"}"#,
        "A plain line among JSON ones",
    ]
    .join("\n")
    .replace("LONG", &"word ".repeat(300));
    let out = batch(&model, &["-n", "2", "--temp", "0", "-c", "64"], &input);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "some lines failed: {stderr}");
    assert!(stderr.contains("3 of 7 prompts failed"), "{stderr}");
    let recs = records(&out);
    let ids: Vec<String> = recs.iter().map(|r| r["id"].to_string()).collect();
    assert_eq!(
        ids,
        [r#""a""#, "2", "3", "7", r#""typo""#, r#""long""#, "8"]
    );

    assert_eq!(recs[0]["tokens_generated"], 3);
    assert_eq!(
        recs[0]["completion"],
        run_once(&model, "The capital of France is", "3").as_str()
    );
    // The same seed gives the same sampled text; the line's n_predict beats -n 2.
    assert_eq!(recs[1]["tokens_generated"], 8);
    assert_eq!(recs[1]["completion"], recs[3]["completion"]);
    // Error records, in place, naming the line and the problem.
    assert_eq!(recs[2]["line"], 3);
    assert!(recs[2]["error"]
        .as_str()
        .expect("error")
        .contains("invalid JSON"));
    assert!(recs[4]["error"]
        .as_str()
        .expect("error")
        .contains("n_predcit"));
    let long = recs[5]["error"].as_str().expect("error");
    // -c 64 is rounded up to 256, as llama.cpp rounds it.
    assert!(long.contains("context holds 256"), "{long}");
    assert!(recs[5].get("completion").is_none());
    // Plain text still works after JSON lines; -n 2 applies to it.
    assert_eq!(recs[6]["tokens_generated"], 2);
}

#[test]
fn empty_input_is_no_work() {
    let Some(model) = model_path() else { return };
    let out = batch(&model, &[], "\n\n");
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty());
}

#[test]
fn chat_mode_uses_the_template_and_hides_special_tokens() {
    let Some(model) = model_path() else { return };
    let out = batch(&model, &["--chat", "--temp", "0", "-n", "8"], "Hello!\n");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recs = records(&out);
    // <bos><start_of_turn>user\nHello!<end_of_turn>\n<start_of_turn>model\n
    assert_eq!(recs[0]["tokens_prompt"], 11, "{}", recs[0]);
    let text = recs[0]["completion"].as_str().expect("text");
    assert!(!text.contains("<end_of_turn>") && !text.contains("<start_of_turn>"));
}

#[test]
fn closed_stdout_ends_quietly() {
    let Some(model) = model_path() else { return };
    let mut child = Command::new(env!("CARGO_BIN_EXE_infer"))
        .arg("batch")
        .arg(&model)
        .args(["-n", "2", "--temp", "0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdout.take());
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"one\ntwo\nthree\n")
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("error"), "{err}");
}
