//! What the commands that run a model share: opening the file with an error that names it,
//! building the tokenizer and the model, reading prompt text, and the defaults of `-t`.

use crate::gguf::GgufFile;
use crate::model::{Model, ModelOptions};
use crate::tokenizer::Tokenizer;
use anyhow::{bail, Context, Result};
use std::io::Read;
use std::path::Path;

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

/// Binds the weights with `threads` compute threads (`None`: one per available core).
pub fn load_model<'a>(gguf: &'a GgufFile, threads: Option<usize>) -> Result<Model<'a>> {
    if threads == Some(0) {
        bail!("-t/--threads must be at least 1");
    }
    let opts = ModelOptions {
        n_threads: threads.unwrap_or(0),
    };
    Ok(Model::load(gguf, &opts)?)
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
