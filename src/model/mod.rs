//! A decoder-only transformer bound to a GGUF file: hyperparameters (`hparams`) and per-architecture
//! flags (`arch`) read once, weights viewed in place (`weights`), the KV cache (`kv_cache`) and the
//! one forward pass shared by every architecture (`forward`). The compute kernels live in `cpu`;
//! this module decides what to compute, not how.

pub mod arch;
pub mod forward;
pub mod hparams;
pub mod kv_cache;
pub mod weights;

pub use forward::{Batch, Segment, State};
pub use hparams::Hparams;

use crate::cpu::Pool;
use crate::gguf::{GgufError, GgufFile};
use crate::quant::GgmlType;
use weights::Weights;

/// Errors from loading or running a model. Each names the file and the field, tensor or value.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{file}: unsupported architecture '{arch}' (supported: {supported})")]
    UnsupportedArch {
        file: String,
        arch: String,
        supported: String,
    },
    #[error("{file}: missing tensor '{name}'")]
    MissingTensor { file: String, name: String },
    #[error("{file}: tensor '{name}' has type {ty}, which infer cannot compute with")]
    UnsupportedType {
        file: String,
        name: String,
        ty: GgmlType,
    },
    #[error("{file}: tensor '{name}' has shape {got:?}, expected {expected:?}")]
    Shape {
        file: String,
        name: String,
        got: Vec<u64>,
        expected: Vec<u64>,
    },
    #[error("{file}: tensor '{name}': {why}")]
    Tensor {
        file: String,
        name: String,
        why: String,
    },
    #[error("{file}: metadata key '{key}' is missing")]
    MissingKey { file: String, key: String },
    #[error("{file}: metadata '{key}' = {value} is invalid: {why}")]
    BadValue {
        file: String,
        key: String,
        value: String,
        why: String,
    },
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error("cannot start {n_threads} compute threads: {why}")]
    Threads { n_threads: usize, why: String },
    #[error("context exceeded: {cached} cached + {new} new tokens > n_ctx {n_ctx}")]
    ContextExceeded {
        cached: usize,
        new: usize,
        n_ctx: usize,
    },
    #[error("token id {id} at batch index {index} is out of range (n_vocab {n_vocab})")]
    BadToken {
        id: u32,
        index: usize,
        n_vocab: usize,
    },
    #[error("forward called with no tokens")]
    EmptyBatch,
    #[error("{rows} rows in one multi-sequence forward pass, more than its {max}")]
    BatchTooLarge { rows: usize, max: usize },
    #[error("several sequences in one forward pass run on the CPU only")]
    SegmentsOnGpu,
    #[error("the hidden state alone (a draft's shortlist head) is computed on the CPU only")]
    HiddenOnGpu,
    #[error("n_ctx must be at least 1")]
    ZeroContext,
    #[error(transparent)]
    Gpu(#[from] crate::gpu::GpuError),
    #[error(transparent)]
    Kv(#[from] kv_cache::KvError),
}

/// How to run a model.
#[derive(Clone, Debug, Default)]
pub struct ModelOptions {
    /// Compute threads; 0 means one per available core.
    pub n_threads: usize,
}

/// The output head's weights in place: `n_vocab` rows of `n_embd` elements of `ty`, row-major.
pub struct OutputHead<'a> {
    pub ty: GgmlType,
    pub n_embd: usize,
    pub n_vocab: usize,
    pub data: &'a [u8],
    /// `[n_vocab]`, when the file has `output.bias`.
    pub bias: Option<&'a [f32]>,
}

/// A model ready to run: hyperparameters, weight views into `gguf`, and a thread pool.
pub struct Model<'a> {
    /// New states attend through ggml's flash-attention arithmetic (`State::set_flash_attn`).
    flash_attn: bool,
    hp: Hparams,
    weights: Weights<'a>,
    pool: Pool,
    gguf: &'a GgufFile,
    /// The weights on a GPU, when `use_gpu` attached one: `forward` then runs there.
    gpu: Option<crate::gpu::forward::GpuModel>,
}

impl<'a> Model<'a> {
    /// Bind the weights of `gguf`, checking the architecture, every tensor's presence, shape and
    /// type. Touches no tensor data except the small norm/bias vectors.
    pub fn load(gguf: &'a GgufFile, opts: &ModelOptions) -> Result<Model<'a>, ModelError> {
        let file = gguf.path().display().to_string();
        let arch_name = gguf.metadata().arch()?;
        let spec = arch::find(arch_name).ok_or_else(|| ModelError::UnsupportedArch {
            file: file.clone(),
            arch: arch_name.to_string(),
            supported: arch::supported_list(),
        })?;
        let embd = weights::Binder::new(gguf).require(arch::names::TOKEN_EMBD)?;
        let n_vocab = embd.dims.get(1).copied().unwrap_or(1) as usize;
        let hp = Hparams::load(gguf, spec, n_vocab)?;
        let weights = Weights::bind(gguf, spec, &hp)?;
        let pool = Pool::new(opts.n_threads).map_err(|e| ModelError::Threads {
            n_threads: opts.n_threads,
            why: e.to_string(),
        })?;
        Ok(Model {
            flash_attn: false,
            hp,
            weights,
            pool,
            gguf,
            gpu: None,
        })
    }

    pub fn hparams(&self) -> &Hparams {
        &self.hp
    }

    /// Threads the forward pass uses.
    pub fn n_threads(&self) -> usize {
        self.pool.n_threads()
    }

    /// The forward pass's threads, for work that goes with it (a draft's shortlist head): a
    /// second spinning pool on the same cores would slow both.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The output head as stored (`n_vocab` rows of `n_embd` elements, the embedding table when
    /// the file ties them) and its bias, for a caller that computes some logits itself from
    /// [`Model::forward_hidden`].
    pub fn output_head(&self) -> OutputHead<'_> {
        let t = self
            .gguf
            .tensor(arch::names::OUTPUT)
            .or_else(|| self.gguf.tensor(arch::names::TOKEN_EMBD));
        OutputHead {
            ty: self.weights.output.w.ty(),
            n_embd: self.hp.n_embd,
            n_vocab: self.hp.n_vocab,
            // `load` bound this very tensor (checked shape and type), so it is there.
            data: t.map_or(&[][..], |t| self.gguf.tensor_data(t)),
            bias: self.weights.output.b.as_deref(),
        }
    }

    /// Whether states made from now on follow ggml's flash-attention arithmetic on the CPU
    /// (llama.cpp's default there) rather than its unfused attention; off unless set. Either way
    /// the numbers equal llama.cpp's with the same setting.
    pub fn set_flash_attn(&mut self, on: bool) {
        self.flash_attn = on;
    }

    /// A fresh state (KV cache for `n_ctx` positions and scratch buffers) for this model.
    pub fn new_state(&self, n_ctx: usize) -> Result<State, ModelError> {
        self.new_state_with(n_ctx, &kv_cache::KvOptions::default())
    }

    /// [`Model::new_state`] with the cache's storage types.
    pub fn new_state_with(
        &self,
        n_ctx: usize,
        kv: &kv_cache::KvOptions,
    ) -> Result<State, ModelError> {
        if n_ctx == 0 {
            return Err(ModelError::ZeroContext);
        }
        let mut st = State::new(&self.hp, n_ctx, kv)?;
        st.set_flash_attn(self.flash_attn);
        if let Some(g) = &self.gpu {
            let mut gs = g.new_state(n_ctx)?;
            gs.set_flash_attn(self.flash_attn, self.n_threads());
            st.gpu = Some(gs);
        }
        Ok(st)
    }

    /// Run on the GPU `choice` names: upload the weights once; every later `forward` (and every
    /// state made after this) runs there. `Ok(None)`: the CPU was chosen (`cpu`, or `auto`
    /// without a discrete or integrated GPU). Errors: no adapter for `gpu`, or a model that
    /// does not fit the device, before any generation.
    pub fn use_gpu(
        &mut self,
        choice: crate::gpu::DeviceChoice,
    ) -> Result<Option<String>, ModelError> {
        let Some(gpu) = crate::gpu::Gpu::open(choice)? else {
            return Ok(None);
        };
        let name = gpu.describe();
        let g = crate::gpu::forward::GpuModel::upload(gpu, self.gguf, &self.hp, &self.weights)?;
        self.gpu = Some(g);
        Ok(Some(name))
    }

    /// The GPU the model runs on, if any.
    pub fn gpu(&self) -> Option<&crate::gpu::forward::GpuModel> {
        self.gpu.as_ref()
    }

    /// With a GPU: run `tokens` like `forward` and return the id of the largest logit after the
    /// last one (ties to the lowest id), read back alone instead of the logits. `Ok(None)`
    /// without a GPU or a state made before `use_gpu`.
    pub fn forward_argmax(
        &self,
        st: &mut State,
        tokens: &[u32],
    ) -> Result<Option<u32>, ModelError> {
        let (Some(g), Some(gs)) = (&self.gpu, st.gpu.as_mut()) else {
            return Ok(None);
        };
        if tokens.is_empty() {
            return Err(ModelError::EmptyBatch);
        }
        if gs.len() + tokens.len() > gs.n_ctx() {
            return Err(ModelError::ContextExceeded {
                cached: gs.len(),
                new: tokens.len(),
                n_ctx: gs.n_ctx(),
            });
        }
        if let Some((index, &id)) = tokens
            .iter()
            .enumerate()
            .find(|(_, &t)| t as usize >= self.hp.n_vocab)
        {
            return Err(ModelError::BadToken {
                id,
                index,
                n_vocab: self.hp.n_vocab,
            });
        }
        Ok(Some(g.forward_argmax(gs, tokens)?))
    }
}
