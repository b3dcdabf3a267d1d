//! What the commands that run a model share: opening the file with an error that names it,
//! building the tokenizer and the model, reading prompt text, the defaults of `-t` and `-c`, and
//! which model to use when none is named.

use crate::gguf::GgufFile;
use crate::model::{Model, ModelOptions};
use crate::tokenizer::Tokenizer;
use anyhow::{bail, Context, Result};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Context size when `-c` is not given (or the model's training context, if smaller).
const DEFAULT_CTX: usize = 4096;

/// The file `scripts/fetch-model.sh` downloads, used when no model is named.
pub const DEFAULT_MODEL: &str = "models/gemma-3-270m-q4_k_m.gguf";

/// Moves the model to the device `--device` names (`auto`, `cpu`, `gpu`, `gpu:N`). With `gpu`,
/// no adapter is an error; with `auto`, a note on stderr and the CPU. Returns the adapter's
/// description when the model runs on a GPU.
pub fn use_device(model: &mut Model, device: &str) -> Result<Option<String>> {
    let choice: crate::gpu::DeviceChoice = device.parse()?;
    let on = model.use_gpu(choice)?;
    if on.is_none() && choice == crate::gpu::DeviceChoice::Auto {
        eprintln!("note: no discrete or integrated GPU adapter found; running on the CPU");
    }
    Ok(on)
}

/// Opens a GGUF model file; a missing file gets its own plain message.
pub fn open_model(path: &Path) -> Result<GgufFile> {
    if !path.exists() {
        bail!("model file not found: {}", path.display());
    }
    Ok(GgufFile::open(path)?)
}

pub fn load_tokenizer(gguf: &GgufFile) -> Result<Tokenizer> {
    Ok(Tokenizer::from_gguf(gguf)?)
}

/// `--flash-attn`: which of llama.cpp's two attention paths the CPU forward follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FlashAttn {
    On,
    Off,
    Auto,
}

/// The `--flash-attn` of this process (set once by `main`; `auto` when unset, e.g. in tests).
static FLASH_ATTN: std::sync::OnceLock<FlashAttn> = std::sync::OnceLock::new();

pub fn set_flash_attn(mode: FlashAttn) {
    let _ = FLASH_ATTN.set(mode);
}

/// Binds the weights with `threads` compute threads (`None`: one per available core), with the
/// attention path `--flash-attn` chose.
pub fn load_model<'a>(gguf: &'a GgufFile, threads: Option<usize>) -> Result<Model<'a>> {
    if threads == Some(0) {
        bail!("-t/--threads must be at least 1");
    }
    let opts = ModelOptions {
        n_threads: threads.unwrap_or(0),
    };
    let mut model = Model::load(gguf, &opts)?;
    let mode = FLASH_ATTN.get().copied().unwrap_or(FlashAttn::Auto);
    model.set_flash_attn(mode != FlashAttn::Off);
    Ok(model)
}

/// The text of `-p TEXT` / `-p -` (stdin) / `-f FILE`; exactly one must be given (clap enforces
/// that they do not come together).
pub fn read_prompt(prompt: Option<&str>, file: Option<&Path>) -> Result<String> {
    match (prompt, file) {
        (Some("-"), _) => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("cannot read the prompt from stdin")?;
            Ok(s)
        }
        (Some(p), _) => Ok(p.to_string()),
        (None, Some(f)) => read_text_file(f),
        (None, None) => bail!("no prompt: give -p TEXT, -p - (stdin) or -f FILE"),
    }
}

pub fn read_text_file(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "{}: not UTF-8 text (invalid byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        )
    })
}

/// The model to use: the one named, else `$INFER_MODEL`, else [`DEFAULT_MODEL`] under the
/// current directory or under the repository the executable was built in.
pub fn resolve_model(given: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p.to_path_buf());
    }
    if let Some(env) = std::env::var_os("INFER_MODEL").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(env));
    }
    let mut looked = Vec::new();
    let here = PathBuf::from(DEFAULT_MODEL);
    if here.is_file() {
        return Ok(here);
    }
    looked.push(
        std::env::current_dir()
            .map(|d| d.join(DEFAULT_MODEL))
            .unwrap_or(here),
    );
    // target/release/infer inside a checkout: the checkout's models/ folder.
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1).take(4) {
            let p = dir.join(DEFAULT_MODEL);
            if p.is_file() {
                return Ok(p);
            }
            if dir.join("Cargo.toml").is_file() {
                looked.push(p);
                break;
            }
        }
    }
    let looked: Vec<String> = looked.iter().map(|p| p.display().to_string()).collect();
    bail!(
        "no model given and no default model found (looked for {}); name a GGUF file, set INFER_MODEL, or run scripts/fetch-model.sh in the infer repository to download {DEFAULT_MODEL}",
        looked.join(", ")
    )
}

/// llama.cpp rounds every context size up to a multiple of this (`llama_context`'s
/// `GGML_PAD(n_ctx, 256)`); the same rounding keeps our cache's cell placement, and so where
/// a context shift happens, equal to llama.cpp's for any `-c`.
pub const CTX_PAD: usize = 256;

/// The context a run gets: `-c` or the default, checked, rounded up to a multiple of
/// [`CTX_PAD`] as llama.cpp rounds it.
pub fn context_size(ctx: Option<usize>, n_ctx_train: usize) -> Result<usize> {
    let n = match ctx {
        Some(0) => bail!("-c/--ctx-size must be at least 1"),
        Some(c) => c,
        None => DEFAULT_CTX.min(n_ctx_train.max(1)),
    };
    n.checked_next_multiple_of(CTX_PAD)
        .with_context(|| format!("-c/--ctx-size {n} is too large"))
}

/// `-c N` as given and what it became, for `--verbose`: "N tokens" or "N tokens (-c M rounded
/// up to a multiple of 256, as llama.cpp does)".
pub fn context_note(ctx: Option<usize>, n_ctx: usize) -> String {
    match ctx {
        Some(c) if c != n_ctx => {
            format!(
                "{n_ctx} tokens (-c {c} rounded up to a multiple of {CTX_PAD}, as llama.cpp does)"
            )
        }
        _ => format!("{n_ctx} tokens"),
    }
}
