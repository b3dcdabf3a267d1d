//! `infer info MODEL [--tensors] [--verbose]`: what a GGUF file holds, read from its header only
//! (tensor data is never touched, so this is fast and small even for large models).

use crate::gguf::{GgufFile, Value};
use crate::quant::GgmlType;
use anyhow::Result;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The GGUF model file.
    pub model: PathBuf,
    /// List every tensor with its type, shape and size.
    #[arg(long)]
    pub tensors: bool,
    /// Also print this process's peak resident memory (VmHWM), to check that loading does not
    /// fault in the weights.
    #[arg(long)]
    pub verbose: bool,
}

pub fn run(args: Args) -> Result<()> {
    let file = GgufFile::open(&args.model)?;
    let text = describe(&file, args.tensors)?;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    if args.verbose {
        writeln!(
            out,
            "peak RSS:      {}",
            peak_rss().as_deref().unwrap_or("unknown")
        )?;
    }
    out.flush()?;
    Ok(())
}

/// The report `infer info` prints.
pub fn describe(file: &GgufFile, list_tensors: bool) -> Result<String> {
    let md = file.metadata();
    let mut s = String::new();
    writeln!(
        s,
        "file:          {} ({} bytes)",
        file.path().display(),
        file.file_len()
    )?;
    writeln!(s, "GGUF version:  {}", file.version())?;
    writeln!(s, "alignment:     {}", file.alignment())?;
    writeln!(s, "metadata:      {} keys", md.len())?;
    let arch = md.arch()?;
    writeln!(s, "architecture:  {arch}")?;
    if let Some(name) = md.get_str("general.name")? {
        writeln!(s, "name:          {name}")?;
    }
    if let Some(ft) = md.get("general.file_type") {
        writeln!(s, "file type:     {ft}")?;
    }

    writeln!(s, "hyper-parameters:")?;
    let prefix = format!("{arch}.");
    for (key, value) in md.iter() {
        if let Some(short) = key.strip_prefix(&prefix) {
            writeln!(s, "  {short:<38} {value}")?;
        }
    }

    writeln!(s, "tokenizer:")?;
    for (label, key) in [
        ("model", "tokenizer.ggml.model"),
        ("pre", "tokenizer.ggml.pre"),
    ] {
        if let Some(v) = md.get_str(key)? {
            writeln!(s, "  {label:<38} {v}")?;
        }
    }
    match md.get_str_array("tokenizer.ggml.tokens")? {
        Some(tokens) => writeln!(s, "  {:<38} {}", "vocabulary", tokens.len())?,
        None => writeln!(s, "  {:<38} none", "vocabulary")?,
    }
    if let Some(merges) = md.get_str_array("tokenizer.ggml.merges")? {
        writeln!(s, "  {:<38} {}", "merges", merges.len())?;
    }
    for (key, value) in md.iter() {
        let Some(short) = key.strip_prefix("tokenizer.ggml.") else {
            continue;
        };
        // Scalars only: special token ids and add_bos/add_eos style flags.
        if !matches!(value, Value::Array(_) | Value::String(_)) {
            writeln!(s, "  {short:<38} {value}")?;
        }
    }
    if let Some(t) = md.get_str("tokenizer.chat_template")? {
        writeln!(s, "  {:<38} {} bytes", "chat template", t.len())?;
    }

    let tensors = file.tensors();
    let total_bytes: u64 = tensors.iter().map(|t| t.n_bytes).sum();
    let total_params: u64 = tensors.iter().map(|t| t.n_elements).sum();
    writeln!(
        s,
        "tensors:       {} ({} bytes, {} parameters, data at byte {})",
        tensors.len(),
        total_bytes,
        total_params,
        file.data_offset()
    )?;
    let mut by_type: BTreeMap<GgmlType, (usize, u64)> = BTreeMap::new();
    for t in tensors {
        let e = by_type.entry(t.ty).or_default();
        e.0 += 1;
        e.1 += t.n_bytes;
    }
    let mut by_type: Vec<_> = by_type.into_iter().collect();
    // Most common first, as a quantization mix is usually described.
    by_type.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then(a.0.cmp(&b.0)));
    for (ty, (count, bytes)) in by_type {
        writeln!(s, "  {:<8} {count:>5} tensors {bytes:>14} bytes", ty.name())?;
    }

    if list_tensors {
        let width = tensors.iter().map(|t| t.name.len()).max().unwrap_or(0);
        for t in tensors {
            let shape: Vec<String> = t.dims.iter().map(u64::to_string).collect();
            writeln!(
                s,
                "  {:<width$}  {:<7} [{}]  {} bytes",
                t.name,
                t.ty.name(),
                shape.join(", "),
                t.n_bytes
            )?;
        }
    }
    Ok(s)
}

/// VmHWM from /proc/self/status (Linux), e.g. "31240 kB".
fn peak_rss() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .map(|v| v.trim().to_string())
}
