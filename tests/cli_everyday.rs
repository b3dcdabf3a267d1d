//! The everyday surface of the command line: `--help` with examples, shell completions that know
//! every subcommand, the default model (`INFER_MODEL`, `models/` under the current directory or
//! the executable's checkout, and a clear error otherwise), and `--color` / `NO_COLOR` / `-q`
//! on stderr.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const MODEL_REL: &str = "models/gemma-3-270m-q4_k_m.gguf";

fn model_path() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(MODEL_REL);
    if p.exists() {
        Some(p)
    } else {
        eprintln!(
            "skipping: {} is absent (scripts/fetch-model.sh fetches it)",
            p.display()
        );
        None
    }
}

fn infer_with(exe: &Path, args: &[&str], env: &[(&str, &str)], cwd: &Path, input: &str) -> Output {
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .current_dir(cwd)
        .env_remove("INFER_MODEL")
        .env_remove("NO_COLOR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    // A freshly copied executable can be "busy" while another test thread's fork still holds
    // the copy's write descriptor: retry briefly.
    let mut tries = 0;
    let mut child = loop {
        match cmd.spawn() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && tries < 50 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            r => break r.expect("spawn infer"),
        }
    };
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write");
    child.wait_with_output().expect("wait")
}

fn infer(args: &[&str], env: &[(&str, &str)], input: &str) -> Output {
    infer_with(
        Path::new(env!("CARGO_BIN_EXE_infer")),
        args,
        env,
        &std::env::temp_dir(),
        input,
    )
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn help_has_examples() {
    for args in [
        &["--help"][..],
        &["chat", "--help"],
        &["batch", "--help"],
        &["completions", "--help"],
    ] {
        let out = infer(args, &[], "");
        assert_eq!(out.status.code(), Some(0));
        let s = text(&out.stdout);
        assert!(s.contains("Examples:"), "{args:?}: {s}");
    }
    let s = text(&infer(&["--help"], &[], "").stdout);
    for sub in ["run", "chat", "batch", "completions", "--color", "--quiet"] {
        assert!(s.contains(sub), "{sub} missing from --help");
    }
}

#[test]
fn completions_know_every_subcommand() {
    let bash = text(&infer(&["completions", "bash"], &[], "").stdout);
    for sub in [
        "run",
        "chat",
        "batch",
        "perplexity",
        "tokenize",
        "info",
        "completions",
    ] {
        assert!(bash.contains(sub), "bash completion lacks {sub}");
    }
    assert!(
        bash.contains("--chat-template"),
        "chat's flags are completed"
    );
    let zsh = text(&infer(&["completions", "zsh"], &[], "").stdout);
    assert!(
        zsh.starts_with("#compdef infer"),
        "{}",
        &zsh[..zsh.len().min(80)]
    );
    let fish = infer(&["completions", "fish"], &[], "");
    assert!(fish.status.success() && text(&fish.stdout).contains("complete -c infer"));
    assert_eq!(
        infer(&["completions", "tcsh"], &[], "").status.code(),
        Some(2)
    );
}

#[test]
fn default_model_from_env_cwd_or_checkout() {
    let Some(model) = model_path() else { return };
    let m = model.to_str().expect("utf-8");
    // INFER_MODEL names the file.
    let out = infer(
        &["batch", "-n", "2", "--temp", "0"],
        &[("INFER_MODEL", m)],
        "Hello\n",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().count(), 1);
    // A wrong INFER_MODEL is reported by name, not silently replaced.
    let out = infer(&["chat"], &[("INFER_MODEL", "/no/such/model.gguf")], "hi\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("/no/such/model.gguf"));
    // The executable inside this checkout finds the checkout's models/ from anywhere. With
    // CARGO_TARGET_DIR outside the checkout that lookup cannot apply, so run from the checkout and
    // let the current-directory lookup find it instead.
    let exe = Path::new(env!("CARGO_BIN_EXE_infer"));
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cwd = if exe.starts_with(root) {
        std::env::temp_dir()
    } else {
        root.to_path_buf()
    };
    let infer =
        |args: &[&str], env: &[(&str, &str)], input: &str| infer_with(exe, args, env, &cwd, input);
    let out = infer(&["chat", "--temp", "0", "-n", "2"], &[], "Hello\n");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!out.stdout.is_empty());
    let out = infer(&["run", "-p", "Hello", "--temp", "0", "-n", "2"], &[], "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!out.stdout.is_empty());
    // -q: only the model's text, nothing on stderr.
    let out = infer(
        &["run", "-q", "-p", "Hello", "--temp", "0", "-n", "2"],
        &[],
        "",
    );
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));

    // A copy of the executable outside any checkout: models/ under the current directory, else
    // a clear error saying how to get a model.
    let dir = std::env::temp_dir().join(format!("infer-default-model-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("bin")).expect("dir");
    std::fs::create_dir_all(dir.join("work/models")).expect("dir");
    let exe = dir.join("bin/infer");
    if std::fs::hard_link(env!("CARGO_BIN_EXE_infer"), &exe).is_err() {
        std::fs::copy(env!("CARGO_BIN_EXE_infer"), &exe).expect("copy exe");
    }
    for args in [
        &["batch", "-n", "2"][..],
        &["run", "-p", "Hello", "-n", "2"],
        &["chat"],
    ] {
        let out = infer_with(&exe, args, &[], &dir, "Hello\n");
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = text(&out.stderr);
        assert!(
            err.contains("INFER_MODEL")
                && err.contains("scripts/fetch-model.sh")
                && err.contains(MODEL_REL),
            "{err}"
        );
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    }
    std::os::unix::fs::symlink(&model, dir.join("work").join(MODEL_REL)).expect("symlink");
    let out = infer_with(
        &exe,
        &["batch", "-n", "2", "--temp", "0"],
        &[],
        &dir.join("work"),
        "Hello\n",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn color_and_quiet_on_stderr() {
    let Some(model) = model_path() else { return };
    let m = model.to_str().expect("utf-8");
    let args = |extra: &[&'static str]| {
        let mut v = vec!["batch", m, "-n", "1", "--temp", "0"];
        v.extend_from_slice(extra);
        v
    };
    // Piped stderr: no colour unless asked; --color always wins over NO_COLOR.
    let plain = infer(&args(&[]), &[], "Hi\n");
    let err = text(&plain.stderr);
    assert!(
        err.contains("model loaded once") && !err.contains('\x1b'),
        "{err:?}"
    );
    let always = infer(&args(&["--color", "always"]), &[("NO_COLOR", "1")], "Hi\n");
    assert!(
        text(&always.stderr).contains("\x1b["),
        "{:?}",
        text(&always.stderr)
    );
    let never = infer(&args(&["--color", "never"]), &[], "Hi\n");
    assert!(!text(&never.stderr).contains('\x1b'));
    // -q: nothing on stderr but errors; stdout unchanged.
    let quiet = infer(&args(&["-q"]), &[], "Hi\n");
    assert!(quiet.stderr.is_empty(), "{:?}", text(&quiet.stderr));
    assert_eq!(quiet.stdout.len() > 10, plain.stdout.len() > 10);
    let bad = infer(&args(&["-q", "--color", "sometimes"]), &[], "Hi\n");
    assert_eq!(bad.status.code(), Some(2));
}
