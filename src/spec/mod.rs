//! Speculative decoding: a small draft model proposes tokens, the target checks them all in one
//! batched forward, and the output is exactly the target's (identical text when greedy, the same
//! distribution when sampling). `proposer` drafts, `verifier` checks and rolls the target's cache
//! back, `acceptance` is the pure sampling rule, `chain` the sampler chain as a distribution,
//! `compat` the vocabulary check, `driver` the loop, `adapt` its draft-length policy, `shortlist`
//! the draft's reduced output head, `with_draft` the one call a command makes.
//!
//! This module drives `model` and `sample` through their public interfaces; it changes neither.

pub mod acceptance;
pub mod adapt;
pub mod chain;
pub mod compat;
pub mod driver;
pub mod proposer;
pub mod shortlist;
pub mod verifier;
pub mod with_draft;

pub use compat::check_vocab;
pub use driver::{End, Outcome, SpecParams, SpecStats, Speculator, DEFAULT_DRAFT_VOCAB};
pub use with_draft::{generate_with_draft, load_draft, open_draft, DraftOptions, Target};

use crate::gguf::GgufError;
use crate::model::ModelError;
use crate::tokenizer::TokenizerError;

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("draft model {draft} cannot draft for target {target}: {why}")]
    Incompatible {
        target: String,
        draft: String,
        why: String,
    },
    #[error("{0}")]
    Params(String),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error("the prompt is empty (no tokens to start from)")]
    EmptyPrompt,
    #[error("the prompt is {n_prompt} tokens but the context holds {n_ctx} (-c); it must leave room to generate")]
    PromptTooLong { n_prompt: usize, n_ctx: usize },
    #[error("the target's sampler chain left no token to choose from")]
    NoCandidates,
    #[error("the draft's output head ({n_vocab} rows of {n_embd} {ty}) cannot be read for a shortlist: {why}")]
    Head {
        ty: crate::quant::GgmlType,
        n_embd: usize,
        n_vocab: usize,
        why: String,
    },
}
