//! `infer tokenize MODEL TEXT`: the ids the model's tokenizer gives TEXT, as llama.cpp's
//! `llama-tokenize` would (BOS added when the model asks for it, special-token text parsed).
//!
//! Output: one id per line by default; `--json` a JSON array (`[2, 9259, 1902]`, the same text
//! as `llama-tokenize --ids`); `--pieces` `llama-tokenize`'s default `    id -> 'piece'` lines,
//! pieces as raw bytes with control tokens shown. `--count` adds llama-tokenize's
//! `Total number of tokens: N` line. TEXT `-` reads standard input (all of it, newline included).

use crate::gguf::GgufFile;
use crate::tokenizer::Tokenizer;
use anyhow::{Context, Result};
use std::io::{Read, Write};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The GGUF model file.
    pub model: PathBuf,
    /// The text to tokenize; `-` reads standard input.
    pub text: String,
    /// Print a JSON array of ids.
    #[arg(long, conflicts_with = "pieces")]
    pub json: bool,
    /// Print `id -> 'piece'` lines.
    #[arg(long)]
    pub pieces: bool,
    /// Do not add BOS/EOS even where the model asks for them.
    #[arg(long)]
    pub no_bos: bool,
    /// Treat text spelling control tokens (`<start_of_turn>`) as plain text.
    #[arg(long)]
    pub no_parse_special: bool,
    /// Also print the number of tokens.
    #[arg(long)]
    pub count: bool,
}

pub fn run(args: Args) -> Result<()> {
    let text = if args.text == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("reading standard input")?;
        String::from_utf8(buf).context("standard input is not valid UTF-8")?
    } else {
        args.text.clone()
    };
    let file = GgufFile::open(&args.model)?;
    let tok = Tokenizer::from_gguf(&file)?;
    let ids = tok.encode(&text, !args.no_bos, !args.no_parse_special);
    let mut out = std::io::stdout().lock();
    out.write_all(&render(&tok, &ids, &args))?;
    out.flush()?;
    Ok(())
}

/// What `run` prints for `ids`.
pub fn render(tok: &Tokenizer, ids: &[u32], args: &Args) -> Vec<u8> {
    let mut out = Vec::new();
    if args.json {
        let list: Vec<String> = ids.iter().map(u32::to_string).collect();
        out.extend_from_slice(format!("[{}]\n", list.join(", ")).as_bytes());
    } else if args.pieces {
        for &id in ids {
            out.extend_from_slice(format!("{id:6} -> '").as_bytes());
            out.extend_from_slice(&tok.token_to_piece(id, true));
            out.extend_from_slice(b"'\n");
        }
    } else {
        for &id in ids {
            out.extend_from_slice(format!("{id}\n").as_bytes());
        }
    }
    if args.count {
        out.extend_from_slice(format!("Total number of tokens: {}\n", ids.len()).as_bytes());
    }
    out
}
