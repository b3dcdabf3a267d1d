//! One module per subcommand. Each exposes an `Args` struct (clap) and `run(Args) -> anyhow::Result<()>`.
//! Only `main` and `cli/` use anyhow; library code returns typed errors.

pub mod batch;
pub mod bench;
pub mod chat;
pub mod common;
pub mod completions;
pub mod devices;
pub mod info;
pub mod perplexity;
pub mod run;
pub mod tokenize;
