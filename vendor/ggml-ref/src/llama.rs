//! Safe wrappers over llama.cpp's model and vocabulary C API, for tests that compare infer
//! with llama.cpp: load a GGUF (optionally vocabulary only), tokenize, render pieces,
//! detokenize. llama.cpp's own logging is silenced (via `eval::init`) so test output stays
//! readable. `eval` holds the full-model wrappers (contexts, decode, logits).

use crate::sys;
use std::ffi::CString;
use std::path::Path;

/// Initialise llama.cpp's backends once per process and drop its log output (shared with
/// `eval`, so the two never initialise twice).
pub fn init() {
    crate::eval::init();
}

/// Why llama.cpp refused a model.
#[derive(Debug)]
pub struct LoadError(pub String);

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LoadError {}

/// A model loaded by llama.cpp; freed on drop.
pub struct RefModel {
    model: *mut sys::llama_model,
}

// SAFETY: a llama_model is immutable after loading and llama.cpp documents the vocabulary
// functions used here as safe to call from several threads.
unsafe impl Send for RefModel {}
// SAFETY: as above; `&RefModel` only reaches const functions of the model and its vocabulary.
unsafe impl Sync for RefModel {}

impl RefModel {
    /// Load `path`; with `vocab_only` llama.cpp reads metadata and the vocabulary but no
    /// tensors. llama.cpp's reason for a refusal goes to its (silenced) log, so the error
    /// says only that loading failed.
    pub fn load(path: &Path, vocab_only: bool) -> Result<RefModel, LoadError> {
        init();
        let cpath = CString::new(path.to_string_lossy().as_bytes())
            .map_err(|_| LoadError(format!("{}: path contains a NUL byte", path.display())))?;
        // SAFETY: llama_model_default_params returns a plain struct by value.
        let mut params = unsafe { sys::llama_model_default_params() };
        params.vocab_only = vocab_only;
        params.n_gpu_layers = 0;
        // SAFETY: cpath is a valid NUL-terminated string that outlives the call; params is a
        // fully initialised struct from llama_model_default_params.
        let model = unsafe { sys::llama_model_load_from_file(cpath.as_ptr(), params) };
        if model.is_null() {
            return Err(LoadError(format!(
                "llama.cpp could not load {} (vocab_only = {vocab_only})",
                path.display()
            )));
        }
        Ok(RefModel { model })
    }

    pub fn as_ptr(&self) -> *mut sys::llama_model {
        self.model
    }

    fn vocab(&self) -> *const sys::llama_vocab {
        // SAFETY: self.model is a live model; the vocabulary lives as long as the model.
        unsafe { sys::llama_model_get_vocab(self.model) }
    }

    pub fn n_vocab(&self) -> usize {
        // SAFETY: the vocabulary pointer is valid while self lives.
        let n = unsafe { sys::llama_vocab_n_tokens(self.vocab()) };
        n.max(0) as usize
    }

    pub fn bos(&self) -> i32 {
        // SAFETY: the vocabulary pointer is valid while self lives.
        unsafe { sys::llama_vocab_bos(self.vocab()) }
    }

    pub fn eos(&self) -> i32 {
        // SAFETY: the vocabulary pointer is valid while self lives.
        unsafe { sys::llama_vocab_eos(self.vocab()) }
    }

    pub fn eot(&self) -> i32 {
        // SAFETY: the vocabulary pointer is valid while self lives.
        unsafe { sys::llama_vocab_eot(self.vocab()) }
    }

    pub fn add_bos(&self) -> bool {
        // SAFETY: the vocabulary pointer is valid while self lives.
        unsafe { sys::llama_vocab_get_add_bos(self.vocab()) }
    }

    pub fn is_eog(&self, id: u32) -> bool {
        // SAFETY: the vocabulary pointer is valid while self lives; any id is accepted.
        unsafe { sys::llama_vocab_is_eog(self.vocab(), id as i32) }
    }

    /// The token's attribute bits (`llama_token_attr`); `id` must be below `n_vocab`.
    pub fn token_attr(&self, id: u32) -> u32 {
        assert!((id as usize) < self.n_vocab(), "token id {id} out of range");
        // SAFETY: the vocabulary pointer is valid and id is in range (checked above; llama.cpp
        // would throw across the C boundary otherwise).
        unsafe { sys::llama_vocab_get_attr(self.vocab(), id as i32) as u32 }
    }

    /// `llama_tokenize(vocab, text, .., add_special, parse_special)`.
    pub fn tokenize(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        let len = i32::try_from(text.len()).expect("text longer than 2 GiB");
        let mut buf: Vec<sys::llama_token> = vec![0; text.len() + 8];
        loop {
            // SAFETY: text points to len readable bytes; buf has buf.len() writable tokens and
            // llama.cpp writes at most n_tokens_max of them.
            let n = unsafe {
                sys::llama_tokenize(
                    self.vocab(),
                    text.as_ptr().cast(),
                    len,
                    buf.as_mut_ptr(),
                    buf.len() as i32,
                    add_special,
                    parse_special,
                )
            };
            if n >= 0 {
                buf.truncate(n as usize);
                return buf.into_iter().map(|t| t as u32).collect();
            }
            assert!(n != i32::MIN, "llama_tokenize overflowed");
            buf.resize((-n) as usize, 0);
        }
    }

    /// `llama_token_to_piece(vocab, id, .., lstrip, special)` as bytes; `id` must be below
    /// `n_vocab`.
    pub fn token_to_piece(&self, id: u32, lstrip: i32, special: bool) -> Vec<u8> {
        assert!((id as usize) < self.n_vocab(), "token id {id} out of range");
        let mut buf = vec![0u8; 64];
        loop {
            // SAFETY: buf has buf.len() writable bytes and llama.cpp writes at most `length`;
            // id is in range (checked above).
            let n = unsafe {
                sys::llama_token_to_piece(
                    self.vocab(),
                    id as i32,
                    buf.as_mut_ptr().cast(),
                    buf.len() as i32,
                    lstrip,
                    special,
                )
            };
            if n >= 0 {
                buf.truncate(n as usize);
                return buf;
            }
            buf.resize((-n) as usize, 0);
        }
    }

    /// `llama_detokenize(vocab, ids, .., remove_special, unparse_special)` as bytes.
    pub fn detokenize(&self, ids: &[u32], remove_special: bool, unparse_special: bool) -> Vec<u8> {
        let toks: Vec<sys::llama_token> = ids.iter().map(|&t| t as i32).collect();
        let mut buf = vec![0u8; ids.len() * 8 + 16];
        loop {
            // SAFETY: toks holds toks.len() tokens; buf has buf.len() writable bytes and
            // llama.cpp writes at most text_len_max of them.
            let n = unsafe {
                sys::llama_detokenize(
                    self.vocab(),
                    toks.as_ptr(),
                    toks.len() as i32,
                    buf.as_mut_ptr().cast(),
                    buf.len() as i32,
                    remove_special,
                    unparse_special,
                )
            };
            if n >= 0 {
                buf.truncate(n as usize);
                return buf;
            }
            buf.resize((-n) as usize, 0);
        }
    }
}

impl Drop for RefModel {
    fn drop(&mut self) {
        // SAFETY: self.model came from llama_model_load_from_file and is freed exactly once.
        unsafe { sys::llama_model_free(self.model) }
    }
}

unsafe extern "C" {
    // llama.cpp's internal `unicode_cpt_flags unicode_cpt_flags_from_cpt(uint32_t)` (C++,
    // src/unicode.cpp). The result is a 2-byte trivially-copyable struct of bit fields,
    // returned in a register like a uint16_t on the x86-64 and AArch64 C++ ABIs.
    #[link_name = "_Z26unicode_cpt_flags_from_cptj"]
    fn unicode_cpt_flags_from_cpt(cpt: u32) -> u16;
}

/// llama.cpp's codepoint flags: categories in the low byte (0x01 undefined, 0x02 number,
/// 0x04 letter, 0x08 separator, 0x10 mark, 0x20 punctuation, 0x40 symbol, 0x80 control),
/// 0x100 whitespace, 0x200 lowercase, 0x400 uppercase, 0x800 NFD.
pub fn unicode_flags(cpt: u32) -> u16 {
    init();
    // SAFETY: the function takes any u32 and only reads its static tables.
    unsafe { unicode_cpt_flags_from_cpt(cpt) }
}
