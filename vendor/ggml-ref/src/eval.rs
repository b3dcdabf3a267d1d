//! llama.cpp as a whole-model oracle: load a GGUF model (weights and vocabulary), run `llama_decode`
//! over a token batch and read back logits; quantize a GGUF file with `llama_model_quantize`.
//!
//! Everything here runs on the CPU backend (no GPU offload), so the reference numbers come from
//! ggml-cpu. This module only wraps the C API; it holds no model logic of its own.

use std::ffi::{c_char, c_void, CString};
use std::fmt;
use std::path::Path;
use std::sync::Once;

use crate::sys;

/// What went wrong in a call into llama.cpp.
#[derive(Debug)]
pub enum EvalError {
    /// A path that cannot be passed to C (interior NUL or not UTF-8).
    BadPath(String),
    /// `llama_model_load_from_file` returned null.
    Load(String),
    /// `llama_init_from_model` returned null.
    Context(String),
    /// `llama_decode` returned a non-zero status.
    Decode { status: i32, n_tokens: usize },
    /// More tokens than the context holds.
    ContextFull {
        n_past: usize,
        n_tokens: usize,
        n_ctx: usize,
    },
    /// `llama_model_quantize` returned a non-zero status.
    Quantize { input: String, status: u32 },
    /// A logits row that llama.cpp did not compute.
    NoLogits(i32),
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EvalError::BadPath(p) => write!(f, "path {p:?} cannot be passed to llama.cpp"),
            EvalError::Load(p) => write!(f, "llama.cpp failed to load model {p}"),
            EvalError::Context(p) => write!(f, "llama.cpp failed to create a context for {p}"),
            EvalError::Decode { status, n_tokens } => {
                write!(f, "llama_decode of {n_tokens} tokens returned {status}")
            }
            EvalError::ContextFull {
                n_past,
                n_tokens,
                n_ctx,
            } => write!(
                f,
                "{n_tokens} tokens after {n_past} do not fit the context of {n_ctx}"
            ),
            EvalError::Quantize { input, status } => {
                write!(f, "llama_model_quantize of {input} returned {status}")
            }
            EvalError::NoLogits(i) => write!(f, "llama.cpp computed no logits for row {i}"),
        }
    }
}

impl std::error::Error for EvalError {}

unsafe extern "C" fn quiet_log(
    _level: sys::ggml_log_level,
    _text: *const c_char,
    _user: *mut c_void,
) {
}

static INIT: Once = Once::new();

/// Initialise the llama.cpp backend once per process and silence its (very chatty) logs.
pub fn init() {
    INIT.call_once(|| {
        // SAFETY: both calls take no pointers we own; the callback is a `'static` function that
        // ignores its arguments, and a null user pointer is allowed.
        unsafe {
            sys::llama_log_set(Some(quiet_log), std::ptr::null_mut());
            sys::ggml_log_set(Some(quiet_log), std::ptr::null_mut());
            sys::llama_backend_init();
        }
    });
}

fn c_path(path: &Path) -> Result<CString, EvalError> {
    let s = path
        .to_str()
        .ok_or_else(|| EvalError::BadPath(path.display().to_string()))?;
    CString::new(s).map_err(|_| EvalError::BadPath(s.to_string()))
}

/// A model loaded by llama.cpp, weights included (not vocab-only), on the CPU.
pub struct LlamaModel {
    ptr: *mut sys::llama_model,
    path: String,
}

impl LlamaModel {
    pub fn load(path: &Path) -> Result<LlamaModel, EvalError> {
        init();
        let c = c_path(path)?;
        // SAFETY: default params are a plain struct; we only change the GPU layer count.
        let mut params = unsafe { sys::llama_model_default_params() };
        params.n_gpu_layers = 0;
        // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
        let ptr = unsafe { sys::llama_model_load_from_file(c.as_ptr(), params) };
        if ptr.is_null() {
            return Err(EvalError::Load(path.display().to_string()));
        }
        Ok(LlamaModel {
            ptr,
            path: path.display().to_string(),
        })
    }

    /// Number of tokens in the vocabulary, which is the length of a logits row.
    pub fn n_vocab(&self) -> usize {
        // SAFETY: `ptr` is a live model; the vocab it returns lives as long as the model.
        let n = unsafe { sys::llama_vocab_n_tokens(sys::llama_model_get_vocab(self.ptr)) };
        n.max(0) as usize
    }
}

impl Drop for LlamaModel {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from llama_model_load_from_file and is freed once; every context
        // borrows the model, so none outlives it.
        unsafe { sys::llama_model_free(self.ptr) }
    }
}

/// Settings for a llama.cpp context.
#[derive(Clone, Copy, Debug)]
pub struct ContextParams {
    pub n_ctx: u32,
    /// Largest batch passed to one `llama_decode`.
    pub n_batch: u32,
    /// The physical batch (`n_ubatch`): how many tokens one graph evaluates; 0 = `n_batch`.
    /// llama-completion's default is 512 whatever `n_batch` is.
    pub n_ubatch: u32,
    pub n_threads: i32,
    /// Use ggml's flash-attention kernel (llama.cpp's default on CPU is "auto", i.e. on).
    pub flash_attn: bool,
    /// Keep the KV cache in f32 instead of llama.cpp's default f16.
    pub kv_f32: bool,
}

impl Default for ContextParams {
    fn default() -> Self {
        ContextParams {
            n_ctx: 1024,
            n_batch: 1024,
            n_ubatch: 0,
            n_threads: 2,
            flash_attn: false,
            kv_f32: false,
        }
    }
}

/// Intermediate tensors recorded during `llama_decode` through ggml's eval callback.
#[derive(Default)]
struct Capture {
    /// Tensor names to record (ggml names such as `attn_norm-0`, `l_out-17`, `result_norm`).
    names: Vec<String>,
    got: Vec<(String, Vec<f32>)>,
}

unsafe extern "C" fn capture_cb(t: *mut sys::ggml_tensor, ask: bool, user: *mut c_void) -> bool {
    // SAFETY: `user` is the `Capture` boxed in the `LlamaContext` that registered this callback,
    // which outlives every decode; ggml calls back on the decoding thread only. `t` is a live
    // tensor of the graph being computed, its name a NUL-terminated string inside it.
    unsafe {
        let cap = &mut *(user as *mut Capture);
        let name = std::ffi::CStr::from_ptr(sys::ggml_get_name(t))
            .to_string_lossy()
            .into_owned();
        if ask {
            return cap.names.contains(&name);
        }
        if (*t).type_ == sys::GGML_TYPE_F32 && sys::ggml_is_contiguous(t) {
            let n = sys::ggml_nelements(t).max(0) as usize;
            let mut v = vec![0.0f32; n];
            sys::ggml_backend_tensor_get(t, v.as_mut_ptr().cast(), 0, n * 4);
            cap.got.push((name, v));
        }
        true
    }
}

/// A llama.cpp context over one sequence (seq id 0), fed in order from position 0.
pub struct LlamaContext<'m> {
    ctx: *mut sys::llama_context,
    model: &'m LlamaModel,
    n_ctx: usize,
    n_batch: usize,
    n_past: usize,
    n_vocab: usize,
    /// Rows of the last decode that have logits, in batch order.
    n_outputs: usize,
    /// Boxed so the pointer handed to ggml's callback stays put when the context moves.
    capture: Option<Box<Capture>>,
}

impl<'m> LlamaContext<'m> {
    pub fn new(model: &'m LlamaModel, p: ContextParams) -> Result<LlamaContext<'m>, EvalError> {
        Self::build(model, p, None, None)
    }

    /// A context whose KV cache holds keys and values as q8_0 (llama-completion's
    /// `-ctk q8_0 -ctv q8_0`, which llama.cpp runs only with `p.flash_attn`).
    pub fn with_q8_0_cache(
        model: &'m LlamaModel,
        p: ContextParams,
    ) -> Result<LlamaContext<'m>, EvalError> {
        Self::build(model, p, None, Some(sys::GGML_TYPE_Q8_0))
    }

    /// A context that records the named intermediate tensors (f32, contiguous) of every decode,
    /// for locating where two implementations part ways; see [`LlamaContext::take_captured`].
    pub fn with_capture(
        model: &'m LlamaModel,
        p: ContextParams,
        names: &[&str],
    ) -> Result<LlamaContext<'m>, EvalError> {
        let cap = Capture {
            names: names.iter().map(|s| s.to_string()).collect(),
            got: Vec::new(),
        };
        Self::build(model, p, Some(Box::new(cap)), None)
    }

    /// The tensors recorded since the last call, in computation order.
    pub fn take_captured(&mut self) -> Vec<(String, Vec<f32>)> {
        self.capture
            .as_mut()
            .map(|c| std::mem::take(&mut c.got))
            .unwrap_or_default()
    }

    fn build(
        model: &'m LlamaModel,
        p: ContextParams,
        mut capture: Option<Box<Capture>>,
        kv_type: Option<sys::ggml_type>,
    ) -> Result<LlamaContext<'m>, EvalError> {
        // SAFETY: default params are a plain struct that we adjust field by field.
        let mut cp = unsafe { sys::llama_context_default_params() };
        cp.n_ctx = p.n_ctx;
        cp.n_batch = p.n_batch;
        cp.n_ubatch = if p.n_ubatch == 0 {
            p.n_batch
        } else {
            p.n_ubatch.min(p.n_batch)
        };
        cp.n_threads = p.n_threads;
        cp.n_threads_batch = p.n_threads;
        cp.flash_attn_type = if p.flash_attn {
            sys::LLAMA_FLASH_ATTN_TYPE_ENABLED
        } else {
            sys::LLAMA_FLASH_ATTN_TYPE_DISABLED
        };
        if p.kv_f32 {
            cp.type_k = sys::GGML_TYPE_F32;
            cp.type_v = sys::GGML_TYPE_F32;
        }
        if let Some(t) = kv_type {
            cp.type_k = t;
            cp.type_v = t;
        }
        cp.no_perf = true;
        if let Some(c) = capture.as_mut() {
            cp.cb_eval = Some(capture_cb);
            cp.cb_eval_user_data = (&mut **c as *mut Capture).cast();
        }
        // SAFETY: `model.ptr` is a live model that outlives the context (borrow `'m`).
        let ctx = unsafe { sys::llama_init_from_model(model.ptr, cp) };
        if ctx.is_null() {
            return Err(EvalError::Context(model.path.clone()));
        }
        Ok(LlamaContext {
            ctx,
            model,
            n_ctx: p.n_ctx as usize,
            n_batch: p.n_batch as usize,
            n_past: 0,
            n_vocab: model.n_vocab(),
            n_outputs: 0,
            capture,
        })
    }

    pub fn n_past(&self) -> usize {
        self.n_past
    }

    /// Forget every cached position.
    pub fn clear(&mut self) {
        // SAFETY: `ctx` is live; the memory handle it returns belongs to it.
        unsafe { sys::llama_memory_clear(sys::llama_get_memory(self.ctx), true) };
        self.n_past = 0;
        self.n_outputs = 0;
    }

    /// Decode `tokens` at positions `n_past..`. With `all_logits` every token gets a logits row,
    /// otherwise only the last one. The batch must fit one `llama_decode` (n_batch) so that the
    /// logits of every row stay readable afterwards.
    pub fn decode(&mut self, tokens: &[u32], all_logits: bool) -> Result<(), EvalError> {
        let n = tokens.len();
        if self.n_past + n > self.n_ctx || n > self.n_batch {
            return Err(EvalError::ContextFull {
                n_past: self.n_past,
                n_tokens: n,
                n_ctx: self.n_ctx.min(self.n_past + self.n_batch),
            });
        }
        // SAFETY: llama_batch_init allocates arrays for `n` tokens with one seq id each; we
        // write exactly `n` entries of each and free the batch below.
        unsafe {
            let batch = sys::llama_batch_init(n as i32, 0, 1);
            let mut b = batch;
            b.n_tokens = n as i32;
            for (i, &t) in tokens.iter().enumerate() {
                *b.token.add(i) = t as sys::llama_token;
                *b.pos.add(i) = (self.n_past + i) as sys::llama_pos;
                *b.n_seq_id.add(i) = 1;
                *(*b.seq_id.add(i)) = 0;
                *b.logits.add(i) = (all_logits || i + 1 == n) as i8;
            }
            let status = sys::llama_decode(self.ctx, b);
            sys::llama_batch_free(batch);
            if status != 0 {
                return Err(EvalError::Decode {
                    status,
                    n_tokens: n,
                });
            }
        }
        self.n_past += n;
        self.n_outputs = if all_logits { n } else { 1 };
        Ok(())
    }

    /// The logits of row `i` of the last decode (negative counts from the end, as in llama.cpp),
    /// copied out because the buffer is overwritten by the next decode.
    pub fn logits_ith(&self, i: i32) -> Result<Vec<f32>, EvalError> {
        // SAFETY: llama_get_logits_ith returns null for a row without logits, else a pointer to
        // n_vocab floats inside the context's output buffer, valid until the next decode.
        unsafe {
            let p = sys::llama_get_logits_ith(self.ctx, i);
            if p.is_null() {
                return Err(EvalError::NoLogits(i));
            }
            Ok(std::slice::from_raw_parts(p, self.n_vocab).to_vec())
        }
    }

    /// Rows with logits in the last decode.
    pub fn n_outputs(&self) -> usize {
        self.n_outputs
    }

    pub fn model(&self) -> &LlamaModel {
        self.model
    }
}

impl Drop for LlamaContext<'_> {
    fn drop(&mut self) {
        // SAFETY: `ctx` came from llama_init_from_model and is freed exactly once.
        unsafe { sys::llama_free(self.ctx) }
    }
}

/// Target formats for [`quantize`], as llama.cpp's file types.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ftype {
    F16,
    Q8_0,
    Q4_0,
    Q4_K_M,
}

impl Ftype {
    fn raw(self) -> sys::llama_ftype {
        match self {
            Ftype::F16 => sys::LLAMA_FTYPE_MOSTLY_F16,
            Ftype::Q8_0 => sys::LLAMA_FTYPE_MOSTLY_Q8_0,
            Ftype::Q4_0 => sys::LLAMA_FTYPE_MOSTLY_Q4_0,
            Ftype::Q4_K_M => sys::LLAMA_FTYPE_MOSTLY_Q4_K_M,
        }
    }
}

/// Quantize the GGUF model `input` (F32/F16 weights) into `output` with llama.cpp's own mixture
/// rules for `ftype` (e.g. Q4_K_M keeps some tensors in Q6_K), as `llama-quantize` would.
pub fn quantize(
    input: &Path,
    output: &Path,
    ftype: Ftype,
    n_threads: i32,
) -> Result<(), EvalError> {
    init();
    let ci = c_path(input)?;
    let co = c_path(output)?;
    // SAFETY: default params are a plain struct; we set the file type and thread count.
    let mut params = unsafe { sys::llama_model_quantize_default_params() };
    params.ftype = ftype.raw();
    params.nthread = n_threads;
    // SAFETY: both strings are NUL-terminated and live across the call; `params` is a valid
    // struct whose pointer fields are the defaults (null).
    let status = unsafe { sys::llama_model_quantize(ci.as_ptr(), co.as_ptr(), &params) };
    if status != 0 {
        return Err(EvalError::Quantize {
            input: input.display().to_string(),
            status,
        });
    }
    Ok(())
}
