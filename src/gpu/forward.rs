//! The whole-model forward pass on the GPU: the same Hparams-driven layer sequence as
//! `crate::model::forward` (read that file's header for the per-layer plan), recorded op by op
//! into one submission per batch of tokens, with weights uploaded once and the KV cache on the
//! device. Only the output leaves the device: the logits of the tokens asked for, or, for greedy
//! decoding, the one id the device-side argmax picked.
//!
//! What the plan consults is shared with the CPU forward rather than copied: `Hparams` (flags and
//! shapes), the bound `Weights` (norm vectors and biases already converted to f32, which tensors
//! exist) and `forward::rope_table` (the angles, frequency factors included). The matrices are
//! uploaded from the GGUF file under the names `Weights::bind` checked.

use super::buffers::{GpuMatrix, GpuTensor};
use super::device::{Gpu, GpuError};
use super::ops::{Batch, Glu, KvCells};
use crate::cpu::attention::AttnParams;
use crate::gguf::GgufFile;
use crate::model::arch::{names, Activation};
use crate::model::forward::rope_table;
use crate::model::kv_cache::{CacheType, KvCache, KvLayout};
use crate::model::weights::{Linear, Weights};
use crate::model::Hparams;

/// Receives intermediate tensors by the names `crate::model::forward::Trace` uses, for comparing
/// the GPU forward with the CPU's op by op (examples/gpu_trace.rs).
pub type GpuTrace<'t> = &'t mut dyn FnMut(&str, usize, &[f32]);

/// Tokens per submission, as the CPU forward's internal batch: it bounds the scratch tensors.
pub const MAX_BATCH: usize = 512;

/// A projection on the device; the bias is stored repeated for `MAX_BATCH` rows so that one
/// element-wise add applies it to a whole batch.
struct GpuLinear {
    w: GpuMatrix,
    b: Option<GpuTensor>,
}

struct GpuLayer {
    attn_norm: GpuTensor,
    wq: GpuLinear,
    wk: GpuLinear,
    wv: GpuLinear,
    wo: GpuLinear,
    q_norm: Option<GpuTensor>,
    k_norm: Option<GpuTensor>,
    attn_post_norm: Option<GpuTensor>,
    ffn_norm: GpuTensor,
    ffn_gate: GpuLinear,
    ffn_up: GpuLinear,
    ffn_down: GpuLinear,
    ffn_post_norm: Option<GpuTensor>,
}

/// A model's weights on one GPU, and the device that holds them.
pub struct GpuModel {
    gpu: Gpu,
    hp: Hparams,
    rope_freqs: Option<Vec<f32>>,
    token_embd: GpuMatrix,
    output_norm: GpuTensor,
    /// `None` when the output head is tied to `token_embd`.
    output: Option<GpuMatrix>,
    output_bias: Option<GpuTensor>,
    layers: Vec<GpuLayer>,
    /// Bytes of weights uploaded (for `bench`'s GB/s).
    weight_bytes: u64,
}

/// The device-side state of one sequence: the KV cache and every scratch tensor, allocated once.
pub struct GpuState {
    /// Per layer: rows `[cell][kv_head][dim]` of the layer's cell group.
    keys: Vec<GpuTensor>,
    values: Vec<GpuTensor>,
    /// Which cell holds which position, placed as the CPU cache places them (llama.cpp's
    /// `find_slot`, the window ring included), so attention visits the same cells in the same
    /// order: a `KvCache` of zero-width rows, positions only.
    cells: KvCache,
    /// Per cell group: each cell's position (i32 bits, -1: empty), and the cells the batch
    /// being run stores its rows into.
    cell_pos: Vec<GpuTensor>,
    slots: Vec<GpuTensor>,
    n_ctx: usize,
    /// Attention in ggml's flash-attention arithmetic (as the CPU's with `--flash-attn` on),
    /// splitting long single-row attention over as many chunks as the CPU has threads.
    flash_attn: bool,
    fa_threads: usize,
    ids: GpuTensor,
    x: GpuTensor,
    xn: GpuTensor,
    q: GpuTensor,
    k: GpuTensor,
    v: GpuTensor,
    attn: GpuTensor,
    /// Attention scores of as many (token, head) rows as fit (see `Batch::attention`).
    scores: GpuTensor,
    proj: GpuTensor,
    gate: GpuTensor,
    up: GpuTensor,
    rope_global: GpuTensor,
    rope_swa: GpuTensor,
    /// Rows of the residual stream picked for the output head, and their norms.
    head_in: GpuTensor,
    head_norm: GpuTensor,
    logits: GpuTensor,
    /// Rows of logits one output submission holds (`logits` stays within a storage binding).
    head_rows: usize,
    argmax: GpuTensor,
    /// Quantized activations of the matrix products: one i32 per element, one f32 per block.
    aq: GpuTensor,
    ad: GpuTensor,
    rope_host: Vec<f32>,
}

impl GpuState {
    /// Positions cached.
    pub fn len(&self) -> usize {
        self.cells.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// Forget positions `n..` (their cache rows are overwritten by the next tokens) and return
    /// the new length: `n`, or 0 where a window ring no longer holds what a token at `n` attends
    /// to (`KvCache::truncate`).
    pub fn truncate(&mut self, n: usize) -> usize {
        self.cells.truncate(n)
    }

    /// Whether [`GpuState::truncate`] to `n` keeps `n` positions.
    pub fn can_truncate(&self, n: usize) -> bool {
        self.cells.can_truncate(n)
    }

    /// Attend as `crate::cpu::flash_attn` does with `n_threads` threads (`on`), or as
    /// `crate::cpu::attention` does.
    pub fn set_flash_attn(&mut self, on: bool, n_threads: usize) {
        self.flash_attn = on;
        self.fa_threads = n_threads.max(1);
    }

    pub fn flash_attn(&self) -> bool {
        self.flash_attn
    }

    /// The CPU thread count whose chunking flash attention follows.
    pub fn fa_threads(&self) -> usize {
        self.fa_threads
    }
}

/// What the output head computes after the layers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Head {
    /// Nothing: a prefill chunk that is not the last.
    Skip,
    /// The logits of the last token.
    Last,
    /// The index of the largest logit of the last token.
    Argmax,
    /// The logits of every token.
    All,
}

fn shape(what: &str, msg: String) -> GpuError {
    GpuError::Shape {
        what: what.to_string(),
        msg,
    }
}

impl GpuModel {
    /// Upload the weights `Weights::bind` checked: matrices from `gguf` by name, 1-D tensors
    /// from `w`. A model that does not fit the device is an `OutOfMemory` or `TooLarge` error
    /// here, before any generation.
    pub fn upload(
        gpu: Gpu,
        gguf: &GgufFile,
        hp: &Hparams,
        w: &Weights,
    ) -> Result<GpuModel, GpuError> {
        let mut bytes = 0u64;
        let mut mat = |name: &str, k: usize, m: usize| -> Result<GpuMatrix, GpuError> {
            let t = gguf
                .tensor(name)
                .ok_or_else(|| shape(name, "tensor missing from the file".into()))?;
            let data = gguf.tensor_data(t);
            bytes += data.len() as u64;
            GpuMatrix::upload(&gpu, name, t.ty, k, m, data)
        };
        let (e, nv) = (hp.n_embd, hp.n_vocab);
        let token_embd = mat(names::TOKEN_EMBD, e, nv)?;
        let output = match gguf.tensor(names::OUTPUT) {
            Some(_) => Some(mat(names::OUTPUT, e, nv)?),
            None => None,
        };
        let mut layers = Vec::with_capacity(hp.n_layer);
        for (il, lw) in w.layers.iter().enumerate() {
            let name = |s: &str| format!("{}.weight", names::blk(il, s));
            let mut lin = |s: &str, l: &Linear, k: usize, m: usize| {
                Ok::<_, GpuError>(GpuLinear {
                    w: mat(&name(s), k, m)?,
                    b: tiled(&gpu, l.b.as_deref(), &name(s))?,
                })
            };
            let wq = lin(names::ATTN_Q, &lw.wq, e, hp.n_q())?;
            let wk = lin(names::ATTN_K, &lw.wk, e, hp.n_k())?;
            let wv = lin(names::ATTN_V, &lw.wv, e, hp.n_v())?;
            let wo = lin(names::ATTN_OUT, &lw.wo, hp.n_head * hp.head_dim_v, e)?;
            let ffn_gate = lin(names::FFN_GATE, &lw.ffn_gate, e, hp.n_ff)?;
            let ffn_up = lin(names::FFN_UP, &lw.ffn_up, e, hp.n_ff)?;
            let ffn_down = lin(names::FFN_DOWN, &lw.ffn_down, hp.n_ff, e)?;
            let v = |x: &[f32], s: &str| GpuTensor::from_f32(&gpu, x, &name(s));
            let ov = |x: &Option<Vec<f32>>, s: &str| x.as_deref().map(|x| v(x, s)).transpose();
            layers.push(GpuLayer {
                attn_norm: v(&lw.attn_norm, names::ATTN_NORM)?,
                wq,
                wk,
                wv,
                wo,
                q_norm: ov(&lw.q_norm, names::ATTN_Q_NORM)?,
                k_norm: ov(&lw.k_norm, names::ATTN_K_NORM)?,
                attn_post_norm: ov(&lw.attn_post_norm, names::ATTN_POST_NORM)?,
                ffn_norm: v(&lw.ffn_norm, names::FFN_NORM)?,
                ffn_gate,
                ffn_up,
                ffn_down,
                ffn_post_norm: ov(&lw.ffn_post_norm, names::FFN_POST_NORM)?,
            });
        }
        let output_norm = GpuTensor::from_f32(&gpu, &w.output_norm, names::OUTPUT_NORM)?;
        let output_bias = tiled(&gpu, w.output.b.as_deref(), names::OUTPUT_BIAS)?;
        // Uploads are staged on the queue: wait for them so that a device that ran out of
        // memory says so now, not at the first token.
        gpu.wait()?;
        Ok(GpuModel {
            gpu,
            hp: hp.clone(),
            rope_freqs: w.rope_freqs.clone(),
            token_embd,
            output_norm,
            output,
            output_bias,
            layers,
            weight_bytes: bytes,
        })
    }

    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// Bytes of weight data on the device (as stored in the file).
    pub fn weight_bytes(&self) -> u64 {
        self.weight_bytes
    }

    /// The KV cache for `n_ctx` positions and the scratch tensors of a sequence.
    pub fn new_state(&self, n_ctx: usize) -> Result<GpuState, GpuError> {
        let hp = &self.hp;
        let g = &self.gpu;
        let z = |n: usize, what: &str| GpuTensor::zeros(g, n, what);
        let b = MAX_BATCH;
        let layout = KvLayout {
            swa_layers: (0..hp.n_layer).map(|il| hp.is_swa(il)).collect(),
            window: hp.sliding_window,
            k_width: 0,
            v_width: 0,
            head_dim: hp.head_dim,
            head_dim_v: hp.head_dim_v,
        };
        let cells = KvCache::new(&layout, n_ctx, CacheType::F16, CacheType::F16)
            .map_err(|e| shape("kv cache", e.to_string()))?;
        let mut keys = Vec::with_capacity(hp.n_layer);
        let mut values = Vec::with_capacity(hp.n_layer);
        for il in 0..hp.n_layer {
            let size = cells.cells(cells.layer(il).group()).size();
            keys.push(z(size * hp.n_k(), "k cache")?);
            values.push(z(size * hp.n_v(), "v cache")?);
        }
        let mut cell_pos = Vec::new();
        let mut slots = Vec::new();
        for g in 0..cells.n_groups() {
            cell_pos.push(z(cells.cells(g).size(), "cell positions")?);
            slots.push(z(b, "cell slots")?);
        }
        let widest = hp
            .n_embd
            .max(hp.n_ff)
            .max(hp.n_head * hp.head_dim_v)
            .div_ceil(32)
            * 32;
        let row_bytes = (hp.n_vocab * 4) as u64;
        let head_rows = ((g.max_binding() / row_bytes.max(1)) as usize).clamp(1, b);
        let st = GpuState {
            keys,
            values,
            cells,
            cell_pos,
            slots,
            n_ctx,
            flash_attn: false,
            fa_threads: 1,
            ids: z(b, "token ids")?,
            x: z(b * hp.n_embd, "residual")?,
            xn: z(b * hp.n_embd, "normed")?,
            q: z(b * hp.n_q(), "q")?,
            k: z(b * hp.n_k(), "k")?,
            v: z(b * hp.n_v(), "v")?,
            attn: z(b * hp.n_head * hp.head_dim_v, "attention")?,
            scores: z(
                score_floats(b * hp.n_head, 3 * n_ctx, g.max_binding()),
                "attention scores",
            )?,
            proj: z(b * hp.n_embd, "projection")?,
            gate: z(b * hp.n_ff, "ffn gate")?,
            up: z(b * hp.n_ff, "ffn up")?,
            rope_global: z(b * hp.n_rot, "rope angles")?,
            rope_swa: z(b * hp.n_rot, "rope angles (swa)")?,
            head_in: z(head_rows * hp.n_embd, "head input")?,
            head_norm: z(head_rows * hp.n_embd, "head norm")?,
            logits: z(head_rows * hp.n_vocab, "logits")?,
            head_rows,
            argmax: z(1, "argmax")?,
            aq: z(b * widest, "activation quants")?,
            ad: z(b * widest / 32, "activation scales")?,
            rope_host: Vec::new(),
        };
        g.wait()?;
        Ok(st)
    }

    /// Run `tokens` at positions `st.len()..` and write the logits of the last token (or, with
    /// `all_logits`, of every token, row-major) into `logits`. The caller checked the ids and
    /// the room in the context.
    pub fn forward(
        &self,
        st: &mut GpuState,
        tokens: &[u32],
        all_logits: bool,
        logits: &mut Vec<f32>,
    ) -> Result<(), GpuError> {
        let nv = self.hp.n_vocab;
        logits.clear();
        let n_chunks = tokens.len().div_ceil(MAX_BATCH);
        for (ci, chunk) in tokens.chunks(MAX_BATCH).enumerate() {
            let head = if all_logits {
                Head::All
            } else if ci + 1 == n_chunks {
                Head::Last
            } else {
                Head::Skip
            };
            self.batch(st, chunk, head, logits, &mut None)?;
        }
        debug_assert_eq!(logits.len(), if all_logits { tokens.len() } else { 1 } * nv);
        Ok(())
    }

    /// Run `tokens` and return the id of the largest logit after the last one (ties to the
    /// lowest id), reading back that one id instead of the logits.
    pub fn forward_argmax(&self, st: &mut GpuState, tokens: &[u32]) -> Result<u32, GpuError> {
        let mut none = Vec::new();
        let n_chunks = tokens.len().div_ceil(MAX_BATCH);
        for (ci, chunk) in tokens.chunks(MAX_BATCH).enumerate() {
            let head = if ci + 1 == n_chunks {
                Head::Argmax
            } else {
                Head::Skip
            };
            self.batch(st, chunk, head, &mut none, &mut None)?;
        }
        let id = st.argmax.read_u32(&self.gpu)?;
        id.first()
            .copied()
            .filter(|&i| (i as usize) < self.hp.n_vocab)
            .ok_or_else(|| shape("argmax", "no finite logit".into()))
    }

    /// [`GpuModel::forward`] for at most `MAX_BATCH` tokens (logits of the last one), reporting
    /// the intermediate tensors to `trace`: each is read back after its op, one submission per
    /// op, so this is for diagnosis only.
    pub fn forward_traced(
        &self,
        st: &mut GpuState,
        tokens: &[u32],
        logits: &mut Vec<f32>,
        trace: GpuTrace<'_>,
    ) -> Result<(), GpuError> {
        if tokens.len() > MAX_BATCH {
            return Err(shape(
                "trace",
                format!("{} tokens exceed one batch of {MAX_BATCH}", tokens.len()),
            ));
        }
        logits.clear();
        self.batch(st, tokens, Head::Last, logits, &mut Some(trace))
    }

    /// One batch of at most `MAX_BATCH` tokens through every layer in one submission, then the
    /// output head; logits are appended to `out`. With a trace, the batch is cut after each
    /// traced op to read its output back.
    fn batch(
        &self,
        st: &mut GpuState,
        tokens: &[u32],
        head: Head,
        out: &mut Vec<f32>,
        trace: &mut Option<GpuTrace<'_>>,
    ) -> Result<(), GpuError> {
        let hp = &self.hp;
        let g = &self.gpu;
        let n = tokens.len();
        let pos0 = st.len();
        if pos0 + n > st.n_ctx {
            return Err(shape(
                "kv cache",
                format!("{pos0} cached + {n} new > n_ctx {}", st.n_ctx),
            ));
        }
        let placed = st
            .cells
            .place(n)
            .map_err(|e| shape("kv cache", e.to_string()))?;
        // Per group: the cells attention reads (positions up to the last used cell) and, for
        // flash attention, llama.cpp's padded cell count.
        let mut groups = Vec::with_capacity(placed.len());
        for (gi, cells_new) in placed.iter().enumerate() {
            let slot_ids: Vec<u32> = cells_new.iter().map(|&c| c as u32).collect();
            st.slots[gi].write_u32(g, &slot_ids);
            let cells = st.cells.cells(gi);
            let used = cells.used_max_p1();
            let pos: Vec<u32> = cells.positions()[..used]
                .iter()
                .map(|&p| p as u32)
                .collect();
            st.cell_pos[gi].write_u32(g, &pos);
            let n_kv = cells.size().min(used.next_multiple_of(256).max(256));
            groups.push((used, n_kv));
        }
        let (e, eps) = (hp.n_embd, hp.rms_eps);
        st.ids.write_u32(g, tokens);
        let freqs = self.rope_freqs.as_deref();
        rope_table(
            hp,
            freqs,
            hp.rope_freq_base,
            hp.rope_freq_scale,
            pos0,
            n,
            &mut st.rope_host,
        );
        st.rope_global.write_f32(g, &st.rope_host);
        if hp.swa_layers.iter().any(|&s| s) {
            rope_table(
                hp,
                freqs,
                hp.rope_freq_base_swa,
                hp.rope_freq_scale_swa,
                pos0,
                n,
                &mut st.rope_host,
            );
            st.rope_swa.write_f32(g, &st.rope_host);
        }

        let mut b = Batch::new(g);
        b.get_rows(&self.token_embd, &st.ids, n, &st.x)?;
        if let Some(s) = hp.embd_scale {
            b.scale(&st.x, n * e, s)?;
        }
        let glu = match hp.activation {
            Activation::Silu => Glu::Silu,
            Activation::GeluTanh => Glu::Gelu,
        };
        for (il, lw) in self.layers.iter().enumerate() {
            let swa = hp.is_swa(il);
            b.rms_norm(&lw.attn_norm, &st.x, &st.xn, e, n, eps)?;
            b = tap(g, b, trace, "attn_norm", il, &st.xn, n * e)?;
            linear(&mut b, st, &lw.wq, &st.xn, n, &st.q)?;
            linear(&mut b, st, &lw.wk, &st.xn, n, &st.k)?;
            linear(&mut b, st, &lw.wv, &st.xn, n, &st.v)?;
            if let (Some(qn), Some(kn)) = (&lw.q_norm, &lw.k_norm) {
                b.rms_norm(qn, &st.q, &st.q, hp.head_dim, n * hp.n_head, eps)?;
                b.rms_norm(kn, &st.k, &st.k, hp.head_dim, n * hp.n_head_kv, eps)?;
            }
            b = tap(g, b, trace, "Qcur_normed", il, &st.q, n * hp.n_q())?;
            b = tap(g, b, trace, "Kcur_normed", il, &st.k, n * hp.n_k())?;
            b = tap(g, b, trace, "Vcur", il, &st.v, n * hp.n_v())?;
            let table = if swa { &st.rope_swa } else { &st.rope_global };
            b.rope(
                table,
                &st.q,
                hp.head_dim,
                hp.n_rot,
                hp.n_head,
                n,
                hp.rope_style,
            )?;
            b.rope(
                table,
                &st.k,
                hp.head_dim,
                hp.n_rot,
                hp.n_head_kv,
                n,
                hp.rope_style,
            )?;
            b = tap(g, b, trace, "Qcur", il, &st.q, n * hp.n_q())?;
            b = tap(g, b, trace, "Kcur", il, &st.k, n * hp.n_k())?;
            // Gemma scales the queries before attention, as llama.cpp's graph (and the CPU
            // forward) does: the f16 rounding of a scaled query differs from that of the query
            // scaled after rounding where the scaled value is an f16 subnormal.
            if hp.attn_scale_on_q {
                b.scale(&st.q, n * hp.n_q(), hp.attn_scale)?;
            }
            let gi = st.cells.layer(il).group();
            b.kv_store(&st.k, &st.keys[il], &st.slots[gi], hp.n_k(), n)?;
            b.kv_store(&st.v, &st.values[il], &st.slots[gi], hp.n_v(), n)?;
            let params = AttnParams {
                n_head: hp.n_head,
                n_head_kv: hp.n_head_kv,
                head_dim: hp.head_dim,
                head_dim_v: hp.head_dim_v,
                scale: if hp.attn_scale_on_q {
                    1.0
                } else {
                    hp.attn_scale
                },
                window: if swa { hp.sliding_window } else { None },
            };
            let (n_cells, n_kv) = groups[gi];
            let kv = KvCells {
                keys: &st.keys[il],
                values: &st.values[il],
                pos: &st.cell_pos[gi],
                n_cells,
            };
            if st.flash_attn {
                b.flash_attention(
                    &params,
                    &st.q,
                    &kv,
                    n_kv,
                    st.fa_threads,
                    pos0,
                    n,
                    &st.attn,
                    &st.scores,
                )?;
            } else {
                b.attention(&params, &st.q, &kv, pos0, n, &st.attn, &st.scores)?;
            }
            b = tap(
                g,
                b,
                trace,
                "kqv_out",
                il,
                &st.attn,
                n * hp.n_head * hp.head_dim_v,
            )?;
            linear(&mut b, st, &lw.wo, &st.attn, n, &st.proj)?;
            b = tap(g, b, trace, "attn_out", il, &st.proj, n * e)?;
            if let Some(pn) = &lw.attn_post_norm {
                b.rms_norm(pn, &st.proj, &st.proj, e, n, eps)?;
                b = tap(g, b, trace, "attn_post_norm", il, &st.proj, n * e)?;
            }
            b.add(&st.x, &st.proj, n * e)?;
            let name = if hp.post_norms { "sa_out" } else { "ffn_inp" };
            b = tap(g, b, trace, name, il, &st.x, n * e)?;

            b.rms_norm(&lw.ffn_norm, &st.x, &st.xn, e, n, eps)?;
            b = tap(g, b, trace, "ffn_norm", il, &st.xn, n * e)?;
            linear(&mut b, st, &lw.ffn_gate, &st.xn, n, &st.gate)?;
            linear(&mut b, st, &lw.ffn_up, &st.xn, n, &st.up)?;
            b.glu(glu, &st.gate, &st.up, &st.gate, n * hp.n_ff)?;
            let name = match glu {
                Glu::Gelu => "ffn_geglu",
                Glu::Silu => "ffn_swiglu",
            };
            b = tap(g, b, trace, name, il, &st.gate, n * hp.n_ff)?;
            linear(&mut b, st, &lw.ffn_down, &st.gate, n, &st.proj)?;
            b = tap(g, b, trace, "ffn_out", il, &st.proj, n * e)?;
            if let Some(pn) = &lw.ffn_post_norm {
                b.rms_norm(pn, &st.proj, &st.proj, e, n, eps)?;
                b = tap(g, b, trace, "ffn_post_norm", il, &st.proj, n * e)?;
            }
            b.add(&st.x, &st.proj, n * e)?;
            b = tap(g, b, trace, "l_out", il, &st.x, n * e)?;
        }

        // The output head runs on groups of rows small enough for one logits binding; the
        // first group rides in the layers' submission, so a decode step is one submission.
        let rows = match head {
            Head::Skip => return b.submit(),
            Head::Last | Head::Argmax => n - 1..n,
            Head::All => 0..n,
        };
        let mut b = Some(b);
        let mut t0 = rows.start;
        while t0 < rows.end {
            let nr = st.head_rows.min(rows.end - t0);
            let mut bb = b.take().unwrap_or_else(|| Batch::new(g));
            self.head(&mut bb, st, t0, nr)?;
            if head == Head::Argmax {
                bb.argmax(&st.logits, self.hp.n_vocab, &st.argmax)?;
                return bb.submit();
            }
            bb.submit()?;
            out.extend(st.logits.read_f32_prefix(g, nr * self.hp.n_vocab)?);
            t0 += nr;
        }
        Ok(())
    }

    /// Logits of residual rows `t0..t0 + nr` into `st.logits`.
    fn head(&self, b: &mut Batch, st: &GpuState, t0: usize, nr: usize) -> Result<(), GpuError> {
        let hp = &self.hp;
        let (e, nv) = (hp.n_embd, hp.n_vocab);
        b.copy(&st.x, t0 * e, &st.head_in, 0, nr * e)?;
        b.rms_norm(
            &self.output_norm,
            &st.head_in,
            &st.head_norm,
            e,
            nr,
            hp.rms_eps,
        )?;
        let w = self.output.as_ref().unwrap_or(&self.token_embd);
        b.matmul_q8(w, &st.head_norm, nr, &st.logits, &st.aq, &st.ad)?;
        if let Some(bias) = &self.output_bias {
            b.add(&st.logits, bias, nr * nv)?;
        }
        if let Some(cap) = hp.final_logit_softcap {
            b.softcap(&st.logits, nr * nv, cap)?;
        }
        Ok(())
    }
}

/// Floats of attention-score scratch for `rows` query rows over `n_ctx` positions: all of them
/// where that stays within a storage binding and 64 MiB, else as many rows as do (attention is
/// then dispatched in groups of rows), and at least one row.
fn score_floats(rows: usize, n_ctx: usize, max_binding: u64) -> usize {
    let cap = (max_binding.min(64 << 20) / 4) as usize;
    (rows * n_ctx).min(cap.max(n_ctx)).max(1)
}

/// With a trace: submit what `b` holds, report the first `n` elements of `t` and go on in a new
/// batch. Without one, `b` unchanged.
fn tap<'g>(
    g: &'g Gpu,
    b: Batch<'g>,
    trace: &mut Option<GpuTrace<'_>>,
    name: &str,
    il: usize,
    t: &GpuTensor,
    n: usize,
) -> Result<Batch<'g>, GpuError> {
    let Some(tr) = trace.as_mut() else {
        return Ok(b);
    };
    b.submit()?;
    let v = t.read_f32_prefix(g, n)?;
    tr(name, il, &v);
    Ok(Batch::new(g))
}

/// `y = x W (+ b)` for `n` rows.
fn linear(
    b: &mut Batch,
    st: &GpuState,
    l: &GpuLinear,
    x: &GpuTensor,
    n: usize,
    y: &GpuTensor,
) -> Result<(), GpuError> {
    b.matmul_q8(&l.w, x, n, y, &st.aq, &st.ad)?;
    if let Some(bias) = &l.b {
        b.add(y, bias, n * l.w.m())?;
    }
    Ok(())
}

/// A bias repeated for `MAX_BATCH` rows, or as many as one binding holds (the output bias of
/// a large vocabulary); `linear` never adds more rows than a batch has.
fn tiled(gpu: &Gpu, b: Option<&[f32]>, name: &str) -> Result<Option<GpuTensor>, GpuError> {
    let Some(b) = b else { return Ok(None) };
    let fit = (gpu.max_binding() as usize / (4 * b.len().max(1))).clamp(1, MAX_BATCH);
    let rows: Vec<f32> = b.iter().copied().cycle().take(b.len() * fit).collect();
    GpuTensor::from_f32(gpu, &rows, name).map(Some)
}
