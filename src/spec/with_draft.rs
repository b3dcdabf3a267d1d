//! What a command needs for `--draft FILE`: open the draft file and check its vocabulary against
//! the target's (`open_draft`), load it (`load_draft`), or all of that plus one speculative run in
//! one call (`generate_with_draft`, for `infer run`). Kept here so that a command adds only its
//! flags and these calls.

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
    let gguf = open_draft(&target, draft.path)?;
    let dmodel = load_draft(&gguf, draft)?;
    let mut s = Speculator::new(
        target.model,
        &dmodel,
        target.tok,
        n_ctx,
        sampling.clone(),
        sampling,
        draft.params,
    )?;
    let tok = target.tok;
    s.generate(prompt, n_predict, &|id| tok.is_eog(id), on_token)
}

/// Opens the draft file at `path` and checks that its vocabulary can draft for `target`'s.
pub fn open_draft(target: &Target<'_, '_, '_>, path: &Path) -> Result<GgufFile, SpecError> {
    let gguf = GgufFile::open(path)?;
    let dtok = Tokenizer::from_gguf(&gguf)?;
    check_vocab(
        &target.path.display().to_string(),
        target.tok,
        &path.display().to_string(),
        &dtok,
    )?;
    Ok(gguf)
}

/// The draft model's weights, bound to the file [`open_draft`] checked.
pub fn load_draft<'g>(
    gguf: &'g GgufFile,
    draft: &DraftOptions<'_>,
) -> Result<Model<'g>, SpecError> {
    let opts = ModelOptions {
        n_threads: draft.n_threads,
    };
    let mut model = Model::load(gguf, &opts)?;
    // The draft's numbers need not equal anyone's (the target checks every token), so it takes
    // the faster attention whatever `--flash-attn` says: ggml's flash form runs in AVX2, the
    // unfused one's f16 dot products are scalar.
    model.set_flash_attn(true);
    Ok(model)
}

impl SpecStats {
    /// One line for stderr: drafted, accepted, acceptance rate, steps, tokens/s, where the time
    /// went, and the draft's head.
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
        let steps = (self.spec_steps + self.plain_steps).max(1) as f64;
        let head = match self.shortlist {
            Some(n) => format!("shortlist of {n} ids"),
            None => "whole output head".to_string(),
        };
        format!(
            "speculative: drafted {}, accepted {} ({:.1}%), {} verifications (mean draft {:.1}) + {} plain steps, {n_generated} tokens at {rate:.2} tokens/s; per step {:.1} ms drafting + {:.1} ms verifying; draft {head}",
            self.drafted,
            self.accepted,
            100.0 * self.acceptance(),
            self.spec_steps,
            mean_len,
            self.plain_steps,
            1e3 * self.t_draft.as_secs_f64() / steps,
            1e3 * self.t_verify.as_secs_f64() / steps,
        )
    }
}
