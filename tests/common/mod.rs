//! What the integration tests share: where the real model is, and the skip when it is absent.

use std::path::{Path, PathBuf};

/// The Gemma 3 270M Q4_K_M file that scripts/fetch-model.sh puts in models/, or `None` (with a
/// note on stderr) where it has not been fetched, so that a test depending on it skips.
pub fn model_path() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/gemma-3-270m-q4_k_m.gguf");
    if p.exists() {
        Some(p)
    } else {
        eprintln!(
            "skipping: {} is absent (scripts/fetch-model.sh fetches it)",
            p.display()
        );
        None
    }
}
