//! infer: run GGUF language models on CPUs and GPUs.
//!
//! Library layout (see README.md): `gguf` reads files, `quant` holds one module per block format,
//! `cpu` the compute kernels, `model` the decoder forward, `tokenizer` the vocabularies, `sample`
//! the sampler chain, `cli` the subcommands.

pub mod chat;
pub mod cli;
pub mod cpu;
pub mod engine;
pub mod gguf;
pub mod gpu;
pub mod model;
pub mod quant;
pub mod sample;
pub mod spec;
pub mod tokenizer;
pub mod ui;
