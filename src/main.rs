//! The `infer` command line: parse arguments, call a subcommand, map errors to exit codes
//! (0 ok, 1 error, 2 usage).

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "infer", version, about = "Run GGUF language models on CPUs and GPUs")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show what a GGUF model file holds: metadata, hyper-parameters, tokenizer, tensors.
    Info(infer::cli::info::Args),
    /// Generate text after a prompt, streamed to stdout (llama.cpp's flag names and defaults).
    Run(infer::cli::run::Args),
    /// Perplexity of a text file, computed as llama-perplexity does.
    Perplexity(infer::cli::perplexity::Args),
    /// Print the token ids (or pieces) the model's tokenizer gives a text, as llama-tokenize does.
    Tokenize(infer::cli::tokenize::Args),
    /// List the GPU adapters (backend, type, limits) that `--device gpu:N` can pick.
    Devices(infer::cli::devices::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: anyhow::Result<()> = match cli.command {
        Command::Info(a) => infer::cli::info::run(a),
        Command::Run(a) => infer::cli::run::run(a),
        Command::Perplexity(a) => infer::cli::perplexity::run(a),
        Command::Tokenize(a) => infer::cli::tokenize::run(a),
        Command::Devices(a) => infer::cli::devices::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// A reader that closed our stdout (`infer run ... | head`) ends the run quietly.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
