//! What a command (`infer run --draft FILE`) needs in one call: open the draft file, check its
//! vocabulary against the target's, load it, and decode speculatively. Kept here so that the
//! command adds only its flags and this call.

use super::{check_vocab, Outcome, SpecError, SpecParams, SpecStats, Speculator};
use crate::gguf::GgufFile;
use crate::model::{Model, ModelOptions};
use crate::sample::SamplerParams;
use crate::tokenizer::Tokenizer;
use std::path::Path;
use std::time::Duration;

/// The draft model and its settings (`--draft`, `--draft-max`, `--draft-min`, `--draft-p-min`).
#[derive(Clone, Debug)]
pub struct DraftOptions<'a> {
    pub path: &'a Path,
    pub params: SpecParams,
    /// Compute threads for the draft; 0 = one per core.
    pub n_threads: usize,
}

/// The target's side of a speculative run.
pub struct Target<'a, 'm, 'g> {
    pub model: &'m Model<'g>,
    pub tok: &'a Tokenizer,
    pub path: &'a Path,
}

/// Decodes `prompt` with `target` checking the drafts of the model at `draft.path`, whose
/// vocabulary must be compatible. The draft samples with the target's chain. Arguments and
/// callback as [`Speculator::generate`].
pub fn generate_with_draft<E: From<SpecError>>(
    target: Target<'_, '_, '_>,
    draft: &DraftOptions<'_>,
    n_ctx: usize,
    sampling: SamplerParams,
    prompt: &[u32],
    n_predict: Option<usize>,
    on_token: impl FnMut(u32) -> Result<bool, E>,
) -> Result<Outcome, E> {
    let gguf = GgufFile::open(draft.path).map_err(SpecError::from)?;
    let dtok = Tokenizer::from_gguf(&gguf).map_err(SpecError::from)?;
    check_vocab(
        &target.path.display().to_string(),
        target.tok,
        &draft.path.display().to_string(),
        &dtok,
    )?;
    let opts = ModelOptions {
        n_threads: draft.n_threads,
    };
    let dmodel = Model::load(&gguf, &opts).map_err(SpecError::from)?;
    let mut s = Speculator::new(
        target.model,
        &dmodel,
        n_ctx,
        sampling.clone(),
        sampling,
        draft.params,
    )?;
    let tok = target.tok;
    s.generate(prompt, n_predict, &|id| tok.is_eog(id), on_token)
}

impl SpecStats {
    /// One line for stderr: drafted, accepted, acceptance rate, steps, tokens/s.
    pub fn summary(&self, n_generated: usize, t_gen: Duration) -> String {
        let secs = t_gen.as_secs_f64();
        let rate = if secs > 0.0 {
            n_generated as f64 / secs
        } else {
            0.0
        };
        let mean_len = if self.spec_steps > 0 {
            self.drafted as f64 / self.spec_steps as f64
        } else {
            0.0
        };
        format!(
            "speculative: drafted {}, accepted {} ({:.1}%), {} verifications (mean draft {:.1}) + {} plain steps, {n_generated} tokens at {rate:.2} tokens/s",
            self.drafted,
            self.accepted,
            100.0 * self.acceptance(),
            self.spec_steps,
            mean_len,
            self.plain_steps,
        )
    }
}
