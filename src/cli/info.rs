//! `infer info MODEL [--tensors] [--verbose]`: what a GGUF file holds, read from its header only
//! (tensor data is never touched, so this is fast and small even for large models).

use crate::gguf::{GgufFile, Value};
use crate::quant::GgmlType;
use anyhow::Result;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;

/// llama.cpp's `llama_ftype` values (include/llama.h): the quantization mix a file was made with.
const FILE_TYPES: &[(u32, &str)] = &[
    (0, "F32"),
    (1, "F16"),
    (2, "Q4_0"),
    (3, "Q4_1"),
    (7, "Q8_0"),
    (8, "Q5_0"),
    (9, "Q5_1"),
    (10, "Q2_K"),
    (11, "Q3_K_S"),
    (12, "Q3_K_M"),
    (13, "Q3_K_L"),
    (14, "Q4_K_S"),
    (15, "Q4_K_M"),
    (16, "Q5_K_S"),
    (17, "Q5_K_M"),
    (18, "Q6_K"),
    (19, "IQ2_XXS"),
    (20, "IQ2_XS"),
    (21, "Q2_K_S"),
    (22, "IQ3_XS"),
    (23, "IQ3_XXS"),
    (24, "IQ1_S"),
    (25, "IQ4_NL"),
    (26, "IQ3_S"),
    (27, "IQ3_M"),
    (28, "IQ2_S"),
    (29, "IQ2_M"),
    (30, "IQ4_XS"),
    (31, "IQ1_M"),
    (32, "BF16"),
    (36, "TQ1_0"),
    (37, "TQ2_0"),
    (38, "MXFP4_MOE"),
    (39, "NVFP4"),
    (40, "Q1_0"),
    (41, "Q2_0"),
];

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The GGUF model file.
    pub model: PathBuf,
    /// List every tensor with its type, shape and size.
    #[arg(long)]
    pub tensors: bool,
    /// Context size for the KV cache estimate [default: run's -c default].
    #[arg(short = 'c', long = "ctx-size")]
    pub ctx_size: Option<usize>,
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
    // A file infer cannot run still gets its report; the estimate then says why it is missing.
    let kv = kv_estimate(&file, args.ctx_size)
        .unwrap_or_else(|e| format!("kv cache:      unknown ({e:#})"));
    writeln!(out, "{kv}")?;
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

/// The KV cache `infer run -c N` would allocate (f16 and q8_0), or why it cannot be said.
fn kv_estimate(file: &GgufFile, ctx: Option<usize>) -> Result<String> {
    use crate::model::kv_cache::{estimate_bytes, swa_cells, CacheType, KvLayout};
    let arch = file.metadata().arch()?;
    let Some(spec) = crate::model::arch::find(arch) else {
        return Ok(format!(
            "kv cache:      unknown (architecture '{arch}' is not supported)"
        ));
    };
    let n_vocab = file
        .metadata()
        .get_str_array("tokenizer.ggml.tokens")?
        .map_or(0, |t| t.len());
    let hp = crate::model::Hparams::load(file, spec, n_vocab)?;
    let n_ctx = super::common::context_size(ctx, hp.n_ctx_train)?;
    let layout = KvLayout {
        swa_layers: (0..hp.n_layer).map(|il| hp.is_swa(il)).collect(),
        window: hp.sliding_window,
        k_width: hp.n_k(),
        v_width: hp.n_v(),
        head_dim: hp.head_dim,
        head_dim_v: hp.head_dim_v,
    };
    let mib = |t| estimate_bytes(&layout, n_ctx, t, t) as f64 / (1024.0 * 1024.0);
    let n_swa = layout.swa_layers.iter().filter(|&&s| s).count();
    let shape = match hp.sliding_window {
        Some(w) if n_swa > 0 => format!(
            "{} layers x {n_ctx} cells + {n_swa} window layers x {} cells",
            hp.n_layer - n_swa,
            swa_cells(n_ctx, w)
        ),
        _ => format!("{} layers x {n_ctx} cells", hp.n_layer),
    };
    let q8 = if hp.head_dim % 32 == 0 && hp.head_dim_v % 32 == 0 {
        format!(", {:.1} MiB as q8_0", mib(CacheType::Q8_0))
    } else {
        String::new()
    };
    let asked = match ctx {
        Some(c) if c != n_ctx => format!("-c {c} (rounded up to {n_ctx} as llama.cpp does)"),
        _ => format!("-c {n_ctx}"),
    };
    Ok(format!(
        "kv cache:      {asked}: {:.1} MiB as f16{q8} ({shape})",
        mib(CacheType::F16)
    ))
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
    if let Some(ft) = md.get_u32("general.file_type")? {
        let name = FILE_TYPES
            .iter()
            .find(|(id, _)| *id == ft)
            .map_or("unknown", |(_, n)| n);
        writeln!(s, "file type:     {name} ({ft})")?;
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
