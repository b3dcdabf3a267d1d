//! Whether a draft model's vocabulary can stand in for the target's. The rules and the size
//! tolerance are llama.cpp's (`common_speculative_are_compatible` in common/speculative.cpp):
//! the same tokenizer type, the same BOS/EOS handling, sizes within 128 tokens of each other, and
//! the same text for every token id from 5 up to the smaller size.

use super::SpecError;
use crate::tokenizer::Tokenizer;

/// llama.cpp's `SPEC_VOCAB_MAX_SIZE_DIFFERENCE`.
pub const MAX_SIZE_DIFFERENCE: usize = 128;
/// llama.cpp's `SPEC_VOCAB_CHECK_START_TOKEN_ID`: the first few ids (unk, pad, bos, eos, ...)
/// may be spelled differently by two conversions of the same family.
pub const CHECK_START_ID: u32 = 5;

/// Checks that `draft` (read from the file `draft_name`) can draft for `target` (`target_name`);
/// the error names both files and the first difference found.
pub fn check_vocab(
    target_name: &str,
    target: &Tokenizer,
    draft_name: &str,
    draft: &Tokenizer,
) -> Result<(), SpecError> {
    let fail = |why: String| SpecError::Incompatible {
        target: target_name.to_string(),
        draft: draft_name.to_string(),
        why,
    };
    if target.kind() != draft.kind() {
        return Err(fail(format!(
            "tokenizer type differs: target {:?}, draft {:?}",
            target.kind(),
            draft.kind()
        )));
    }
    let special = |name: &str, add_t: bool, id_t: Option<u32>, add_d: bool, id_d: Option<u32>| {
        if add_t != add_d || (add_t && id_t != id_d) {
            Err(fail(format!(
                "{name} handling differs: target adds {name} {add_t} with id {id_t:?}, draft adds {add_d} with id {id_d:?}"
            )))
        } else {
            Ok(())
        }
    };
    special(
        "BOS",
        target.add_bos(),
        target.bos(),
        draft.add_bos(),
        draft.bos(),
    )?;
    special(
        "EOS",
        target.add_eos(),
        target.eos(),
        draft.add_eos(),
        draft.eos(),
    )?;
    let (nt, nd) = (target.n_vocab(), draft.n_vocab());
    if nt.abs_diff(nd) > MAX_SIZE_DIFFERENCE {
        return Err(fail(format!(
            "vocabulary sizes differ by {} (target {nt}, draft {nd}; at most {MAX_SIZE_DIFFERENCE} allowed)",
            nt.abs_diff(nd)
        )));
    }
    for id in CHECK_START_ID..nt.min(nd) as u32 {
        let (a, b) = (target.token_text(id), draft.token_text(id));
        if a != b {
            return Err(fail(format!(
                "token {id} differs: target {:?}, draft {:?}",
                a.unwrap_or(""),
                b.unwrap_or("")
            )));
        }
    }
    Ok(())
}
