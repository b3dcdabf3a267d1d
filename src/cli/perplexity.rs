//! `infer perplexity MODEL -f FILE`: perplexity of a text, computed the way llama.cpp's
//! `llama-perplexity` does (tools/perplexity/perplexity.cpp, `perplexity()`), so the numbers can
//! be compared with it directly.
//!
//! The text is tokenized once with BOS (special-token spellings are not parsed) and cut into
//! chunks of `n_ctx` tokens. Each chunk runs from an empty cache with its first token replaced by
//! BOS when the model adds one, and only the second half of each chunk is scored (every token
//! then has at least `n_ctx / 2` tokens of context). Running values `[i]ppl,` go to stderr; the
//! last line on stdout is `PPL = <ppl> +/- <error>`. On a terminal a progress bar over the tokens
//! shows the running perplexity instead, and the `[i]ppl,` line follows when it is done; `-q`
//! keeps stderr to errors.

use super::common;
use crate::ui::{self, progress};
use anyhow::{bail, Result};
use std::io::Write;
use std::path::PathBuf;

/// Logit rows per forward call in the scored half: each row is `n_vocab` floats (1 MiB for a
/// 256k vocabulary), so this bounds the memory of all-token logits.
const MAX_LOGIT_ROWS: usize = 64;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The GGUF model file.
    pub model: PathBuf,
    /// The text to score.
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
    /// Tokens per chunk; the text must hold at least two chunks.
    #[arg(short = 'c', long = "ctx-size", default_value_t = 512)]
    pub ctx_size: usize,
    /// Tokens per forward call (the scored half is fed at most 64 at a time, to bound the logits).
    #[arg(short = 'b', long = "batch-size", default_value_t = 512)]
    pub batch_size: usize,
    /// Score at most this many chunks; -1 = all.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub chunks: i64,
    /// Compute threads [default: one per available core].
    #[arg(short = 't', long)]
    pub threads: Option<usize>,
}

/// Running sums of the negative log-likelihood, as llama-perplexity keeps them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NllSum {
    pub nll: f64,
    pub nll2: f64,
    pub count: usize,
}

impl NllSum {
    /// Adds `-log softmax(logits)[target]` (max-subtracted, exp in f32, sum in f64).
    pub fn add(&mut self, logits: &[f32], target: u32) {
        let max = logits.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
        let sum: f64 = logits.iter().map(|&x| f64::from((x - max).exp())).sum();
        let t = logits
            .get(target as usize)
            .copied()
            .unwrap_or(f32::NEG_INFINITY);
        let v = -(f64::from(t - max) - sum.ln());
        self.nll += v;
        self.nll2 += v * v;
        self.count += 1;
    }

    pub fn ppl(&self) -> f64 {
        (self.nll / self.count as f64).exp()
    }

    /// `(ppl, error)`, the error being ppl times the standard error of the mean NLL, as
    /// llama-perplexity's final estimate; `None` when the variance is not positive.
    pub fn estimate(&self) -> Option<(f64, f64)> {
        let n = self.count as f64;
        let mean = self.nll / n;
        let var = self.nll2 / n - mean * mean;
        let ppl = mean.exp();
        (var > 0.0 && self.count > 1).then(|| (ppl, (var / (n - 1.0)).sqrt() * ppl))
    }
}

pub fn run(args: Args) -> Result<()> {
    let n_ctx = args.ctx_size;
    if n_ctx < 4 {
        bail!("-c/--ctx-size must be at least 4, got {n_ctx}");
    }
    if args.batch_size == 0 {
        bail!("-b/--batch-size must be at least 1");
    }
    ui::interrupt::exit_on_ctrl_c();
    let text = common::read_text_file(&args.file)?;
    let gguf = common::open_model(&args.model)?;
    let tok = common::load_tokenizer(&gguf)?;
    let model = common::load_model(&gguf, args.threads)?;

    let tokens = tok.encode(&text, true, false);
    if tokens.len() < 2 * n_ctx {
        bail!(
            "{}: the text is {} tokens; perplexity at -c {n_ctx} needs at least {} (2 x n_ctx)",
            args.file.display(),
            tokens.len(),
            2 * n_ctx
        );
    }
    let bos = if tok.add_bos() { tok.bos() } else { None };
    let mut n_chunk = tokens.len() / n_ctx;
    if args.chunks >= 0 {
        n_chunk = n_chunk.min(args.chunks as usize);
    }
    let n_vocab = model.hparams().n_vocab;
    let first = n_ctx / 2;
    let batch = args.batch_size.min(n_ctx);
    let mut state = model.new_state(n_ctx)?;
    let mut sum = NllSum::default();
    let quiet = ui::quiet();
    if !quiet {
        eprintln!(
            "perplexity: {} tokens, {n_chunk} chunks of {n_ctx}, scoring the last {} of each",
            tokens.len(),
            n_ctx - first - 1
        );
    }
    let bar = progress::bar((n_chunk * n_ctx) as u64, "tokens");
    // Bar redraws and a growing line of running values would overwrite each other: with a bar
    // the values wait for the end.
    let mut running = String::new();

    for i in 0..n_chunk {
        let chunk = &tokens[i * n_ctx..(i + 1) * n_ctx];
        let mut input = chunk.to_vec();
        if let Some(b) = bos {
            input[0] = b;
        }
        state.truncate(0);
        // The unscored first half needs no logits.
        for piece in input[..first].chunks(batch) {
            model.forward(&mut state, piece, false)?;
            bar.inc(piece.len() as u64);
        }
        let mut pos = first;
        for piece in input[first..].chunks(batch.min(MAX_LOGIT_ROWS)) {
            let logits = model.forward(&mut state, piece, true)?;
            for (r, row) in logits.chunks_exact(n_vocab).enumerate() {
                // The row at position p predicts token p + 1; the chunk's last row has no target.
                if let Some(&target) = chunk.get(pos + r + 1) {
                    sum.add(row, target);
                }
            }
            pos += piece.len();
            bar.inc(piece.len() as u64);
        }
        let value = format!("[{}]{:.4},", i + 1, sum.ppl());
        if !bar.is_hidden() {
            bar.set_message(format!("ppl {:.4}", sum.ppl()));
            running.push_str(&value);
        } else if !quiet {
            let mut err = std::io::stderr().lock();
            err.write_all(value.as_bytes())?;
            err.flush()?;
        }
    }
    bar.finish_and_clear();
    if !quiet {
        eprintln!("{running}");
    }

    let Some((ppl, error)) = sum.estimate() else {
        bail!("the log-likelihoods have no positive variance; cannot estimate an error");
    };
    writeln!(std::io::stdout().lock(), "PPL = {ppl:.4} +/- {error:.5}")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::NllSum;

    #[test]
    fn nll_of_uniform_and_known_rows() {
        let mut s = NllSum::default();
        // Uniform over 4: -ln(1/4) each, so ppl 4 exactly.
        s.add(&[0.5; 4], 2);
        s.add(&[-1.0; 4], 0);
        assert!((s.ppl() - 4.0).abs() < 1e-6);
        // ln 1, ln 2, ln 3, ln 4 → p = 0.1 .. 0.4.
        let mut t = NllSum::default();
        let row = [0.0, 2f32.ln(), 3f32.ln(), 4f32.ln()];
        t.add(&row, 0);
        t.add(&row, 3);
        let (a, b) = (-(0.1f64.ln()), -(0.4f64.ln()));
        assert!((t.nll - (a + b)).abs() < 1e-6);
        let (ppl, err) = t.estimate().unwrap();
        assert!((ppl - ((a + b) / 2.0).exp()).abs() < 1e-6);
        // Two samples: std of the mean = |a - b| / 2, times ppl.
        assert!((err - (a - b).abs() / 2.0 * ppl).abs() < 1e-6, "{err}");
        assert!(
            s.estimate().is_none(),
            "zero variance has no error estimate"
        );
    }
}
