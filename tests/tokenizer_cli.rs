//! `infer tokenize` end to end on the real Gemma 3 model: its ids are llama.cpp's, in each
//! output format, from an argument and from standard input. Skips when the model is absent.

use ggml_ref::llama::RefModel;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn model() -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/gemma-3-270m-q4_k_m.gguf");
    if path.exists() {
        Some(path)
    } else {
        eprintln!("skipping: {} not found", path.display());
        None
    }
}

fn infer(args: &[&str], stdin: Option<&str>) -> (i32, Vec<u8>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_infer"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run infer");
    if let Some(s) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(s.as_bytes())
            .expect("write stdin");
    } else {
        drop(child.stdin.take());
    }
    let out = child.wait_with_output().expect("wait");
    (
        out.status.code().unwrap_or(-1),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const TEXT: &str = "<start_of_turn>user\nWrite a haiku about 🌸 and code.<end_of_turn>\n";

#[test]
fn default_output_is_llama_cpp_ids_one_per_line() {
    let Some(m) = model() else { return };
    let reference = RefModel::load(&m, true).expect("llama.cpp load");
    let expected = reference.tokenize(TEXT, true, true);
    let (code, out, err) = infer(&["tokenize", m.to_str().expect("utf-8 path"), TEXT], None);
    assert_eq!(code, 0, "{err}");
    let ids: Vec<u32> = String::from_utf8(out)
        .expect("utf-8")
        .lines()
        .map(|l| l.parse().expect("one id per line"))
        .collect();
    assert_eq!(ids, expected);
}

#[test]
fn json_no_bos_no_parse_special_and_stdin() {
    let Some(m) = model() else { return };
    let reference = RefModel::load(&m, true).expect("llama.cpp load");
    let path = m.to_str().expect("utf-8 path");

    let (code, out, err) = infer(&["tokenize", path, TEXT, "--json", "--no-bos"], None);
    assert_eq!(code, 0, "{err}");
    let expected = reference.tokenize(TEXT, false, true);
    let list: Vec<String> = expected.iter().map(u32::to_string).collect();
    assert_eq!(
        String::from_utf8(out).expect("utf-8"),
        format!("[{}]\n", list.join(", "))
    );

    let (code, out, err) = infer(
        &["tokenize", path, "-", "--json", "--no-parse-special"],
        Some(TEXT),
    );
    assert_eq!(code, 0, "{err}");
    let expected = reference.tokenize(TEXT, true, false);
    let list: Vec<String> = expected.iter().map(u32::to_string).collect();
    assert_eq!(
        String::from_utf8(out).expect("utf-8"),
        format!("[{}]\n", list.join(", "))
    );
}

#[test]
fn pieces_lines_show_llama_cpp_pieces() {
    let Some(m) = model() else { return };
    let reference = RefModel::load(&m, true).expect("llama.cpp load");
    let (code, out, err) = infer(
        &[
            "tokenize",
            m.to_str().expect("utf-8 path"),
            "Hi there",
            "--pieces",
            "--count",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let mut expected = Vec::new();
    let ids = reference.tokenize("Hi there", true, true);
    for &id in &ids {
        expected.extend_from_slice(format!("{id:6} -> '").as_bytes());
        expected.extend_from_slice(&reference.token_to_piece(id, 0, true));
        expected.extend_from_slice(b"'\n");
    }
    expected.extend_from_slice(format!("Total number of tokens: {}\n", ids.len()).as_bytes());
    assert_eq!(
        String::from_utf8_lossy(&out),
        String::from_utf8_lossy(&expected)
    );
}

#[test]
fn a_file_that_is_not_gguf_is_an_error_naming_it() {
    let (code, _, err) = infer(&["tokenize", "Cargo.toml", "x"], None);
    assert_eq!(code, 1);
    assert!(err.contains("Cargo.toml"), "{err}");
}
