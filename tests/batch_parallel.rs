//! `infer batch --parallel N` (continuous batching) end to end. Batch invariance: greedy
//! completions of 32 prompts of different lengths and token limits (so sequences finish at
//! different steps and slots are reused) are identical with --parallel 1 and --parallel 8, and
//! so are sampled ones with a seed. Parity with `infer run`: a prompt of more than 512 tokens,
//! admitted into a slot freed while another sequence decodes (its prompt evaluated in 512-token
//! chunks between decode steps), and the short prompts beside it complete exactly as separate
//! `infer run` calls do. Ordering: input order by default, finishing order with --unordered.

mod common;

use common::model_path;
use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;

/// One test at a time: each runs `infer` with two spinning compute threads, and two such
/// processes on a two-core machine slow each other down many times over.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn batch(model: &Path, args: &[&str], input: &str) -> Vec<Value> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_infer"))
        .arg("batch")
        .arg(model)
        .args(["-t", "2", "-q"])
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
    let out: Output = child.wait_with_output().expect("wait");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect()
}

fn run_once(model: &Path, prompt: &str, n: usize) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_infer"))
        .arg("run")
        .arg(model)
        .args([
            "-t",
            "2",
            "-q",
            "--temp",
            "0",
            "-n",
            &n.to_string(),
            "-p",
            prompt,
        ])
        .stdin(Stdio::null())
        .output()
        .expect("infer run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn line(id: usize, prompt: &str, n: usize, extra: &str) -> String {
    let p = serde_json::to_string(prompt).expect("json");
    format!("{{\"id\": {id}, \"prompt\": {p}, \"n_predict\": {n}{extra}}}\n")
}

/// What a record says apart from its timings.
fn result(r: &Value) -> (Value, Value, Value, Value) {
    (
        r["id"].clone(),
        r["completion"].clone(),
        r["tokens_generated"].clone(),
        r["end"].clone(),
    )
}

const SUBJECTS: [&str; 8] = [
    "the sea",
    "a small town in the mountains where it snows all winter",
    "bread",
    "the history of clocks, from sundials to atomic time",
    "cats",
    "why the sky is blue",
    "a robot who learns to paint portraits of the people it meets",
    "rain",
];

#[test]
fn parallel_8_equals_parallel_1_on_32_prompts() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(model) = model_path() else { return };
    let mut input = String::new();
    for i in 0..32 {
        let prompt = format!("Write about {}:", SUBJECTS[i % 8]);
        let n = 4 + (i * 5) % 9;
        // A quarter of the lines sample, each with its own seed.
        let extra = if i % 4 == 3 {
            format!(", \"temp\": 0.8, \"seed\": {i}")
        } else {
            String::new()
        };
        input.push_str(&line(i, &prompt, n, &extra));
    }
    let one = batch(&model, &["--temp", "0", "--parallel", "1"], &input);
    let eight = batch(&model, &["--temp", "0", "--parallel", "8"], &input);
    assert_eq!(one.len(), 32);
    let ids: Vec<Value> = one.iter().map(|r| r["id"].clone()).collect();
    assert_eq!(ids, (0..32).map(Value::from).collect::<Vec<_>>());
    for (a, b) in one.iter().zip(&eight) {
        assert_eq!(result(a), result(b));
    }
}

#[test]
fn long_prompt_admitted_while_others_decode_matches_infer_run() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(model) = model_path() else { return };
    let long = format!(
        "Here are some notes. {} Summary:",
        "The river runs past the old mill and the bridge. ".repeat(60)
    );
    let prompts = [
        ("The capital of France is", 12),
        ("Once upon a time", 2),
        (long.as_str(), 6),
        ("1, 2, 3, 4,", 8),
    ];
    let input: String = prompts
        .iter()
        .enumerate()
        .map(|(i, (p, n))| line(i, p, *n, ""))
        .collect();
    // Two slots: the long prompt takes the second prompt's slot as soon as it finishes, while
    // the first still decodes.
    let recs = batch(&model, &["--temp", "0", "--parallel", "2"], &input);
    assert_eq!(recs.len(), prompts.len());
    assert!(recs[2]["tokens_prompt"].as_u64().expect("count") > 512);
    for (r, (p, n)) in recs.iter().zip(prompts) {
        assert_eq!(r["tokens_generated"], n, "{r}");
        assert_eq!(
            r["completion"],
            run_once(&model, p, n).as_str(),
            "prompt {}",
            &p[..p.len().min(40)]
        );
    }
}

#[test]
fn records_in_input_order_or_as_they_finish() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(model) = model_path() else { return };
    let input = [
        line(0, "The capital of France is", 10, ""),
        line(1, "Once upon a time", 1, ""),
        line(2, "1, 2, 3, 4,", 3, ""),
    ]
    .concat();
    let ordered = batch(&model, &["--temp", "0", "--parallel", "3"], &input);
    let ids: Vec<u64> = ordered
        .iter()
        .map(|r| r["id"].as_u64().expect("id"))
        .collect();
    assert_eq!(ids, [0, 1, 2]);
    let args = ["--temp", "0", "--parallel", "3", "--unordered"];
    let unordered = batch(&model, &args, &input);
    // All three start together; the one-token line ends first and the ten-token one last.
    let ids: Vec<u64> = unordered
        .iter()
        .map(|r| r["id"].as_u64().expect("id"))
        .collect();
    assert_eq!(ids, [1, 2, 0]);
    for r in &unordered {
        let id = r["id"].as_u64().expect("id") as usize;
        assert_eq!(result(r), result(&ordered[id]));
    }
}
