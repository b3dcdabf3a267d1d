//! The `infer` command line: parse arguments, call a subcommand, map errors to exit codes
//! (0 ok, 1 error, 2 usage, 130 interrupted).

use clap::{CommandFactory, Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "infer",
    version,
    about = "Run GGUF language models on CPUs and GPUs",
    after_help = EXAMPLES
)]
struct Cli {
    /// Colour terminal output: auto (only on a terminal, and not when NO_COLOR is set), always, never.
    #[arg(long, global = true, value_enum, default_value_t = infer::ui::ColorChoice::Auto)]
    color: infer::ui::ColorChoice,
    /// No progress bars, timings or notes on stderr (errors and warnings still appear).
    #[arg(short = 'q', long, global = true)]
    quiet: bool,
    /// Attention arithmetic on the CPU: on = ggml's flash-attention kernel, off = its unfused
    /// path; auto = on, as llama.cpp's default resolves on CPUs. Either way the numbers equal
    /// llama.cpp's with the same setting.
    #[arg(long = "flash-attn", alias = "fa", global = true, value_enum, default_value_t = infer::cli::common::FlashAttn::Auto)]
    flash_attn: infer::cli::common::FlashAttn,
    #[command(subcommand)]
    command: Command,
}

const EXAMPLES: &str = "Examples:
  scripts/fetch-model.sh                         # download the default model (Gemma 3 270M)
  infer run -p 'The capital of France is' -n 16  # complete a prompt with the default model
  infer chat                                     # talk to it; /help inside lists the commands
  infer batch -n 32 < prompts.txt > out.jsonl    # many prompts, one JSON line each
  infer info model.gguf                          # what a GGUF file holds

Without MODEL, infer uses $INFER_MODEL, else models/gemma-3-270m-q4_k_m.gguf.
Exit codes: 0 ok, 1 error, 2 usage, 130 interrupted.";

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
    /// Chat with a model in the terminal (streamed replies, history, /help for commands).
    Chat(infer::cli::chat::Args),
    /// Complete many prompts from stdin (lines or JSON Lines) with one model load; JSON Lines out.
    Batch(infer::cli::batch::Args),
    /// Prefill and decode speed as llama-bench measures it (tokens/s, GB/s; --json for its fields).
    Bench(infer::cli::bench::Args),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(infer::cli::completions::Args),
    /// List the GPU adapters (backend, type, limits) that `--device gpu:N` can pick.
    Devices(infer::cli::devices::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    infer::ui::init(cli.color, cli.quiet);
    infer::cli::common::set_flash_attn(cli.flash_attn);
    let result: anyhow::Result<()> = match cli.command {
        Command::Info(a) => infer::cli::info::run(a),
        Command::Run(a) => infer::cli::run::run(a),
        Command::Perplexity(a) => infer::cli::perplexity::run(a),
        Command::Tokenize(a) => infer::cli::tokenize::run(a),
        Command::Devices(a) => infer::cli::devices::run(a),
        Command::Chat(a) => infer::cli::chat::run(a),
        Command::Batch(a) => infer::cli::batch::run(a),
        Command::Bench(a) => infer::cli::bench::run(a),
        Command::Completions(a) => infer::cli::completions::run(a, Cli::command()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            if e.is::<infer::ui::interrupt::Interrupted>() {
                return ExitCode::from(infer::ui::interrupt::EXIT_CODE);
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
