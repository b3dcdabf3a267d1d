//! THE forward pass: one pre-norm decoder for every supported architecture, parameterised by the
//! flags in `Hparams` (RoPE pairing and bases, Q/K norms, post-norms, gate activation, embedding
//! scale, sliding-window layers, logit soft-cap). A batch of tokens runs through each weight once
//! (batched matmul for prefill, matvec for one token); the KV cache grows by the batch. A batch
//! may hold several sequences (segments, each with its own `State`): row-wise steps run over all
//! their rows at once, RoPE, the cache writes and attention per segment (continuous batching).
//!
//! Per layer, with x the residual stream of the batch:
//!   h = rms_norm(x) * attn_norm
//!   q, k, v = h Wq (+bq), h Wk (+bk), h Wv (+bv)
//!   [q, k = rms_norm per head * q_norm, k_norm]        (qk_norm)
//!   q, k = rope(q), rope(k)                            (base/scale of a global or local layer)
//!   a = attention(q, cache + k, cache + v) Wo (+bo)    (window on sliding-window layers)
//!   [a = rms_norm(a) * post_attention_norm]            (post_norms)
//!   x = x + a
//!   h = rms_norm(x) * ffn_norm
//!   f = (act(h Wgate) * (h Wup)) Wdown
//!   [f = rms_norm(f) * post_ffw_norm]                  (post_norms)
//!   x = x + f
//! then logits = (rms_norm(x) * output_norm) Wout, [soft-capped].

use super::arch::Activation;
use super::hparams::Hparams;
use super::kv_cache::{KvCache, KvError, KvLayout, KvOptions, N_UBATCH};
use super::weights::Linear;
use super::{Model, ModelError};
use crate::cpu::attention::{attention_cells_rows, AttnParams, KvView};
use crate::cpu::flash_attn;
use crate::cpu::matmul::matmul_rows;
use crate::cpu::ops;
use crate::cpu::Pool;

/// Tokens per internal pass (a ubatch): bounds the scratch memory of a long prompt while keeping
/// weight reuse across the batch, and places tokens in cache cells as llama.cpp's default
/// physical batch does.
const MAX_BATCH: usize = N_UBATCH;

/// The KV cache of one sequence plus every scratch buffer of the forward pass. Buffers grow to
/// the largest batch seen and are reused, so decoding allocates nothing.
pub struct State {
    kv: KvCache,
    /// Row buffers of this sequence's own forward passes (a multi-sequence pass uses its
    /// [`Batch`]'s instead).
    scratch: Scratch,
    /// RoPE angles of the rows of the current pass, at this sequence's positions.
    rope_global: Vec<f32>,
    rope_swa: Vec<f32>,
    logits: Vec<f32>,
    /// Context shift on a full context: `Some(keep)` keeps the first `keep` positions (see
    /// [`Model::context_shift`]); `None` (the default) lets generation stop instead.
    shift_keep: Option<usize>,
    /// Compute every row of a batch as llama.cpp computes a token decoded alone (see
    /// [`State::set_rows_as_decode`]).
    rows_as_decode: bool,
    /// Attention through ggml's flash-attention arithmetic (see [`State::set_flash_attn`]).
    flash_attn: bool,
    /// The device-side cache and scratch when the model runs on a GPU (`Model::use_gpu`); the
    /// CPU cache then stays empty.
    pub(crate) gpu: Option<crate::gpu::forward::GpuState>,
}

/// The row-wise buffers of a forward pass (residual stream, projections, FFN, quantized
/// activations), one row per token of the pass.
#[derive(Default)]
struct Scratch {
    x: Vec<f32>,
    xn: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    attn: Vec<f32>,
    proj: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    act: Vec<u8>,
}

/// One sequence's part of a multi-sequence forward pass ([`Model::forward_segments`]): its
/// state (KV cache, positions, window ring) and the tokens to run at positions `state.len()..`.
pub struct Segment<'a> {
    pub state: &'a mut State,
    pub tokens: &'a [u32],
}

/// Buffers of multi-sequence forward passes, reused from step to step so that batched decoding
/// allocates nothing once they have grown.
#[derive(Default)]
pub struct Batch {
    scratch: Scratch,
    logits: Vec<f32>,
}

impl Batch {
    pub fn new() -> Batch {
        Batch::default()
    }
}

impl State {
    pub(crate) fn new(hp: &Hparams, n_ctx: usize, opts: &KvOptions) -> Result<State, KvError> {
        let layout = KvLayout {
            swa_layers: (0..hp.n_layer).map(|il| hp.is_swa(il)).collect(),
            window: hp.sliding_window,
            k_width: hp.n_k(),
            v_width: hp.n_v(),
            head_dim: hp.head_dim,
            head_dim_v: hp.head_dim_v,
        };
        Ok(State {
            kv: KvCache::new(&layout, n_ctx, opts.type_k, opts.type_v)?,
            scratch: Scratch::default(),
            rope_global: Vec::new(),
            rope_swa: Vec::new(),
            logits: Vec::new(),
            shift_keep: None,
            rows_as_decode: false,
            flash_attn: false,
            gpu: None,
        })
    }

    /// With `on`, each row of a multi-token forward takes the kernels and attention arithmetic
    /// llama.cpp uses for a one-token batch, so its logits are bit-identical to feeding the tokens
    /// one by one. Speculative verification needs this: its batch must reproduce what plain
    /// token-by-token decoding of the target would give. Off (the default), a batch rounds as
    /// llama.cpp's prompt processing does.
    pub fn set_rows_as_decode(&mut self, on: bool) {
        self.rows_as_decode = on;
    }

    /// With `on`, attention over an f16 cache follows ggml's flash-attention kernel
    /// (`cpu::flash_attn`), which llama.cpp runs by default on CPUs (`-fa auto`); off, its
    /// unfused path (`-fa off`). Other cache types always take the unfused path.
    pub fn set_flash_attn(&mut self, on: bool) {
        self.flash_attn = on;
        if let Some(g) = &mut self.gpu {
            let n = g.fa_threads();
            g.set_flash_attn(on, n);
        }
    }

    /// Positions already in the cache; the next token goes at this position.
    pub fn len(&self) -> usize {
        self.gpu.as_ref().map_or(self.kv.len(), |g| g.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn n_ctx(&self) -> usize {
        self.kv.n_ctx()
    }

    /// Drop cached positions `n..` (e.g. rejected speculative tokens, or a new prompt) and
    /// return the new length: `n`, or 0 when a sliding-window ring no longer holds the window a
    /// token at `n` needs (it holds the last ~`window + 512` positions), so the caller must
    /// evaluate from the start again.
    pub fn truncate(&mut self, n: usize) -> usize {
        if let Some(g) = &mut self.gpu {
            return g.truncate(n);
        }
        self.kv.truncate(n)
    }

    /// Whether [`State::truncate`] to `n` keeps `n` positions.
    pub fn can_truncate(&self, n: usize) -> bool {
        match &self.gpu {
            Some(g) => g.can_truncate(n),
            None => self.kv.can_truncate(n),
        }
    }

    /// Enables context shift with `Some(keep)` (see [`Model::context_shift`]) or disables it.
    pub fn set_context_shift(&mut self, keep: Option<usize>) {
        self.shift_keep = keep;
    }

    /// The `keep` of an enabled context shift.
    pub fn context_shift(&self) -> Option<usize> {
        self.shift_keep
    }

    /// The KV cache (cell tables and rows), for inspection.
    pub fn kv(&self) -> &KvCache {
        &self.kv
    }

    /// Context shifts done since the last call, as `(keep, discard)`: a caller that keeps the
    /// list of cached tokens removes `keep..keep + discard` from it for each.
    pub fn drain_shifts(&mut self) -> Vec<(usize, usize)> {
        self.kv.drain_shift_log()
    }
}

/// `v` resized to exactly `n` elements (keeping its allocation).
fn sized(v: &mut Vec<f32>, n: usize) -> &mut [f32] {
    v.resize(n, 0.0);
    &mut v[..n]
}

/// `y = x W (+ b)` for `n` rows.
fn linear(
    pool: &Pool,
    l: &Linear,
    x: &[f32],
    n: usize,
    y: &mut [f32],
    act: &mut Vec<u8>,
    as_decode: bool,
) {
    matmul_rows(pool, &l.w, x, n, y, act, as_decode);
    if let Some(b) = &l.b {
        for row in y.chunks_exact_mut(b.len()) {
            ops::add_inplace(row, b);
        }
    }
}

/// RMS norm of each `width`-wide row of `x` into `out`.
fn norm_rows(pool: &Pool, x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let width = w.len();
    rows_par(pool, out, width, &|i, o| {
        ops::rms_norm(&x[i * width..(i + 1) * width], w, eps, o);
    });
}

/// `f(i, row)` for each `width`-wide row of `data`: split over the pool for a prompt's rows
/// (serial, these per-row steps had left the other threads waiting for 5-8% of a prefill), in
/// this thread for a decode step's few, where waking the pool costs more than the work.
fn rows_par(pool: &Pool, data: &mut [f32], width: usize, f: &(dyn Fn(usize, &mut [f32]) + Sync)) {
    let n = data.len() / width;
    if n < 8 || pool.n_threads() == 1 {
        for (i, r) in data.chunks_exact_mut(width).enumerate() {
            f(i, r);
        }
        return;
    }
    let per = n.div_ceil(pool.n_threads() * 4);
    pool.for_each_chunk(data, per * width, &|c, rows| {
        for (j, r) in rows.chunks_exact_mut(width).enumerate() {
            f(c * per + j, r);
        }
    });
}

/// RMS norm of the last row of each segment of `x` into consecutive rows of `out`.
fn norm_last_rows(x: &[f32], segs: &[Segment<'_>], w: &[f32], eps: f32, out: &mut [f32]) {
    let e = w.len();
    let mut end = 0;
    for (seg, o) in segs.iter().zip(out.chunks_exact_mut(e)) {
        end += seg.tokens.len();
        ops::rms_norm(&x[(end - 1) * e..end * e], w, eps, o);
    }
}

/// In-place RMS norm of each `w.len()`-wide row (per-head Q/K norms, post-norms).
fn norm_rows_inplace(pool: &Pool, x: &mut [f32], w: &[f32], eps: f32) {
    rows_par(pool, x, w.len(), &|_, r| ops::rms_norm_inplace(r, w, eps));
}

/// Angles for positions `pos0..pos0 + n`, `n_rot` floats per position.
pub(crate) fn rope_table(
    hp: &Hparams,
    freqs: Option<&[f32]>,
    base: f32,
    scale: f32,
    pos0: usize,
    n: usize,
    out: &mut Vec<f32>,
) {
    let out = sized(out, n * hp.n_rot);
    for (t, cs) in out.chunks_exact_mut(hp.n_rot).enumerate() {
        ops::rope_cache(pos0 + t, hp.n_rot, base, scale, cs);
        if let Some(ff) = freqs {
            // Llama 3.1 frequency factors divide theta before the scaling; recompute those pairs.
            let theta_scale = base.powf(-2.0 / hp.n_rot as f32);
            let mut theta = (pos0 + t) as f32;
            for (pair, &f) in cs.chunks_exact_mut(2).zip(ff) {
                let a = scale * (theta / f);
                pair[0] = a.cos();
                pair[1] = a.sin();
                theta *= theta_scale;
            }
        }
    }
}

/// Angles that rotate a key by `delta` positions: those of `|delta|`, with the sines negated
/// for a negative delta (cos is even and sin odd, so this is the rotation by `delta` itself).
fn shift_table(
    hp: &Hparams,
    freqs: Option<&[f32]>,
    base: f32,
    scale: f32,
    delta: i32,
    out: &mut Vec<f32>,
) {
    rope_table(
        hp,
        freqs,
        base,
        scale,
        delta.unsigned_abs() as usize,
        1,
        out,
    );
    if delta < 0 {
        for pair in out.chunks_exact_mut(2) {
            pair[1] = -pair[1];
        }
    }
}

/// Receives intermediate tensors of a forward pass: `(name, layer, rows)`, with llama.cpp's graph
/// names (`attn_norm`, `Qcur_normed`, `Kcur_normed`, `Vcur`, `Qcur`, `Kcur` (after RoPE), `kqv_out`,
/// `attn_out`, `attn_post_norm`, `sa_out`, `ffn_norm`, `ffn_geglu`/`ffn_swiglu` (act(gate) * up),
/// `ffn_out`,
/// `ffn_post_norm`, `l_out`, `result_norm`), `n_tokens` rows each, so that a run can be
/// compared op by op with llama.cpp's eval callback.
pub type Trace<'t> = &'t mut dyn FnMut(&str, usize, &[f32]);

/// Which rows of a pass reach the output head, and where their logits go (`n_vocab` each).
enum Out<'l> {
    /// None: a prefill chunk whose logits nobody reads.
    None,
    /// The last row of each segment.
    Last(&'l mut [f32]),
    /// Every row.
    All(&'l mut [f32]),
    /// The last row of each segment after the output norm, without the output head.
    Hidden(&'l mut [f32]),
}

impl Model<'_> {
    /// Run `tokens` at positions `st.len()..`; returns logits for the last token (`n_vocab`) or,
    /// with `all_logits`, for every token (`tokens.len() * n_vocab`, row-major).
    pub fn forward<'s>(
        &self,
        st: &'s mut State,
        tokens: &[u32],
        all_logits: bool,
    ) -> Result<&'s [f32], ModelError> {
        self.forward_traced(st, tokens, all_logits, &mut |_, _, _| {})
    }

    /// [`Model::forward`], reporting intermediate tensors to `trace` (see [`Trace`]).
    pub fn forward_traced<'s>(
        &self,
        st: &'s mut State,
        tokens: &[u32],
        all_logits: bool,
        trace: Trace<'_>,
    ) -> Result<&'s [f32], ModelError> {
        let hp = &self.hp;
        self.check_tokens(st, tokens)?;
        if let (Some(g), Some(gs)) = (&self.gpu, st.gpu.as_mut()) {
            g.forward(gs, tokens, all_logits, &mut st.logits)?;
            return Ok(&st.logits);
        }
        let n_out = if all_logits { tokens.len() } else { 1 };
        let mut logits = std::mem::take(&mut st.logits);
        let mut sc = std::mem::take(&mut st.scratch);
        logits.resize(n_out * hp.n_vocab, 0.0);
        let as_decode = st.rows_as_decode;
        let n_chunks = tokens.len().div_ceil(MAX_BATCH);
        let mut result = Ok(());
        for (ci, chunk) in tokens.chunks(MAX_BATCH).enumerate() {
            let last = ci + 1 == n_chunks;
            let segs = &mut [Segment {
                state: &mut *st,
                tokens: chunk,
            }];
            result = if all_logits {
                let rows = &mut logits[ci * MAX_BATCH * hp.n_vocab..][..chunk.len() * hp.n_vocab];
                self.forward_batch(&mut sc, segs, Out::All(rows), as_decode, trace)
            } else if last {
                self.forward_batch(&mut sc, segs, Out::Last(&mut logits), as_decode, trace)
            } else {
                self.forward_batch(&mut sc, segs, Out::None, as_decode, trace)
            };
            if result.is_err() {
                break;
            }
        }
        st.scratch = sc;
        st.logits = logits;
        result?;
        Ok(&st.logits)
    }

    /// [`Model::forward`] without the output head: the last token's final hidden state (after the
    /// output norm, `n_embd` floats), for a caller that computes only the logits it needs from
    /// [`Model::output_head`] (a speculative draft's shortlist). CPU only.
    pub fn forward_hidden<'s>(
        &self,
        st: &'s mut State,
        tokens: &[u32],
    ) -> Result<&'s [f32], ModelError> {
        self.check_tokens(st, tokens)?;
        if st.gpu.is_some() {
            return Err(ModelError::HiddenOnGpu);
        }
        let mut hidden = std::mem::take(&mut st.logits);
        let mut sc = std::mem::take(&mut st.scratch);
        hidden.resize(self.hp.n_embd, 0.0);
        let as_decode = st.rows_as_decode;
        let n_chunks = tokens.len().div_ceil(MAX_BATCH);
        let mut result = Ok(());
        for (ci, chunk) in tokens.chunks(MAX_BATCH).enumerate() {
            let segs = &mut [Segment {
                state: &mut *st,
                tokens: chunk,
            }];
            let out = if ci + 1 == n_chunks {
                Out::Hidden(&mut hidden)
            } else {
                Out::None
            };
            result = self.forward_batch(&mut sc, segs, out, as_decode, &mut |_, _, _| {});
            if result.is_err() {
                break;
            }
        }
        st.scratch = sc;
        st.logits = hidden;
        result?;
        Ok(&st.logits)
    }

    /// Runs several sequences in one pass: the row-wise work (embedding, norms, every matmul,
    /// activations, residuals, output head) over the rows of all segments together, so each
    /// weight is read once for all of them, and RoPE, the KV writes and attention per segment
    /// against its own cache, as that sequence's own forward pass would. Every row takes
    /// llama.cpp's one-token arithmetic (as [`State::set_rows_as_decode`]), so a sequence's
    /// logits do not depend on which others share the pass: a segment of one token gives
    /// logits bit-identical to [`Model::forward`] of that token alone. Returns the logits of
    /// the last token of each segment (`segs.len() * n_vocab`, in segment order). At most
    /// 512 rows in all; on an error no cache has changed.
    pub fn forward_segments<'b>(
        &self,
        batch: &'b mut Batch,
        segs: &mut [Segment<'_>],
    ) -> Result<&'b [f32], ModelError> {
        let n_rows: usize = segs.iter().map(|s| s.tokens.len()).sum();
        if n_rows > MAX_BATCH {
            return Err(ModelError::BatchTooLarge {
                rows: n_rows,
                max: MAX_BATCH,
            });
        }
        for seg in segs.iter() {
            self.check_tokens(seg.state, seg.tokens)?;
            if seg.state.gpu.is_some() {
                return Err(ModelError::SegmentsOnGpu);
            }
        }
        batch.logits.resize(segs.len() * self.hp.n_vocab, 0.0);
        let out = Out::Last(&mut batch.logits);
        self.forward_batch(&mut batch.scratch, segs, out, true, &mut |_, _, _| {})?;
        Ok(&batch.logits)
    }

    /// Refuses an empty batch, one that overflows the context, or a token outside the vocabulary.
    fn check_tokens(&self, st: &State, tokens: &[u32]) -> Result<(), ModelError> {
        let hp = &self.hp;
        if tokens.is_empty() {
            return Err(ModelError::EmptyBatch);
        }
        if st.len() + tokens.len() > st.n_ctx() {
            return Err(ModelError::ContextExceeded {
                cached: st.len(),
                new: tokens.len(),
                n_ctx: st.n_ctx(),
            });
        }
        if let Some((index, &id)) = tokens
            .iter()
            .enumerate()
            .find(|(_, &t)| t as usize >= hp.n_vocab)
        {
            return Err(ModelError::BadToken {
                id,
                index,
                n_vocab: hp.n_vocab,
            });
        }
        Ok(())
    }

    /// One batch through every layer: the rows of every segment, back to back. `out` says which
    /// rows reach the output head and where their logits go; `as_decode` rounds every row as a
    /// one-token batch (see [`State::set_rows_as_decode`]).
    fn forward_batch(
        &self,
        sc: &mut Scratch,
        segs: &mut [Segment<'_>],
        out: Out<'_>,
        as_decode: bool,
        trace: Trace<'_>,
    ) -> Result<(), ModelError> {
        let hp = &self.hp;
        let w = &self.weights;
        let pool = &self.pool;
        let n: usize = segs.iter().map(|s| s.tokens.len()).sum();
        let e = hp.n_embd;
        let eps = hp.rms_eps;
        // Positions and cells of each segment, claimed for all before anything is computed;
        // should one cache have no room, the cells already claimed are given back.
        let pos0: Vec<usize> = segs.iter().map(|s| s.state.len()).collect();
        let mut slots = Vec::with_capacity(segs.len());
        for (i, seg) in segs.iter_mut().enumerate() {
            match seg.state.kv.place(seg.tokens.len()) {
                Ok(s) => slots.push(s),
                Err(err) => {
                    for (s, &p) in segs[..i].iter_mut().zip(&pos0) {
                        s.state.kv.truncate(p);
                    }
                    return Err(err.into());
                }
            }
        }

        let x = sized(&mut sc.x, n * e);
        let all_tokens = segs.iter().flat_map(|s| s.tokens.iter());
        for (row, &tok) in x.chunks_exact_mut(e).zip(all_tokens) {
            w.token_embd.dequantize_row(tok as usize, row);
            if let Some(s) = hp.embd_scale {
                ops::scale_inplace(row, s);
            }
        }
        let freqs = w.rope_freqs.as_deref();
        for (seg, &p0) in segs.iter_mut().zip(&pos0) {
            let st = &mut *seg.state;
            let nt = seg.tokens.len();
            let (base, scale) = (hp.rope_freq_base, hp.rope_freq_scale);
            rope_table(hp, freqs, base, scale, p0, nt, &mut st.rope_global);
            if hp.swa_layers.iter().any(|&s| s) {
                let (base, scale) = (hp.rope_freq_base_swa, hp.rope_freq_scale_swa);
                rope_table(hp, freqs, base, scale, p0, nt, &mut st.rope_swa);
            }
        }

        let xn = sized(&mut sc.xn, n * e);
        let q = sized(&mut sc.q, n * hp.n_q());
        let k = sized(&mut sc.k, n * hp.n_k());
        let v = sized(&mut sc.v, n * hp.n_v());
        let attn = sized(&mut sc.attn, n * hp.n_head * hp.head_dim_v);
        let proj = sized(&mut sc.proj, n * e);
        let gate = sized(&mut sc.gate, n * hp.n_ff);
        let up = sized(&mut sc.up, n * hp.n_ff);
        let act = &mut sc.act;

        for (il, lw) in w.layers.iter().enumerate() {
            let swa = hp.is_swa(il);
            norm_rows(pool, x, &lw.attn_norm, eps, xn);
            trace("attn_norm", il, xn);
            linear(pool, &lw.wq, xn, n, q, act, as_decode);
            linear(pool, &lw.wk, xn, n, k, act, as_decode);
            linear(pool, &lw.wv, xn, n, v, act, as_decode);
            if let (Some(qn), Some(kn)) = (&lw.q_norm, &lw.k_norm) {
                norm_rows_inplace(pool, q, qn, eps);
                norm_rows_inplace(pool, k, kn, eps);
            }
            trace("Qcur_normed", il, q);
            trace("Kcur_normed", il, k);
            trace("Vcur", il, v);
            let mut r0 = 0;
            for seg in segs.iter() {
                let st = &*seg.state;
                let table = if swa { &st.rope_swa } else { &st.rope_global };
                let rows = r0..r0 + seg.tokens.len();
                let (nr, hd, style) = (hp.n_rot, hp.head_dim, hp.rope_style);
                for (x, width) in [(&mut *q, hp.n_q()), (&mut *k, hp.n_k())] {
                    let x = &mut x[rows.start * width..rows.end * width];
                    rows_par(pool, x, width, &|t, xr| {
                        ops::rope(xr, hd, nr, style, &table[t * nr..(t + 1) * nr]);
                    });
                }
                r0 = rows.end;
            }
            trace("Qcur", il, q);
            trace("Kcur", il, k);
            if hp.attn_scale_on_q {
                ops::scale_inplace(q, hp.attn_scale);
            }
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
            // Each segment attends to its own cache only, exactly as in its own forward pass.
            let mut r0 = 0;
            for ((seg, seg_slots), &p0) in segs.iter_mut().zip(&slots).zip(&pos0) {
                let st = &mut *seg.state;
                let rows = r0..r0 + seg.tokens.len();
                r0 = rows.end;
                let cache = st.kv.layer_mut(il);
                let group = cache.group();
                for (t, &cell) in seg_slots[group].iter().enumerate() {
                    let r = rows.start + t;
                    cache.write_k(cell, &k[r * hp.n_k()..(r + 1) * hp.n_k()]);
                    cache.write_v(cell, &v[r * hp.n_v()..(r + 1) * hp.n_v()]);
                }
                let cells = st.kv.cells(group);
                let cache = st.kv.layer(il);
                let kv = KvView {
                    pos: &cells.positions()[..cells.used_max_p1()],
                    keys: cache.keys(),
                    values: cache.values(),
                };
                let qs = &q[rows.start * hp.n_q()..rows.end * hp.n_q()];
                let aw = hp.n_head * hp.head_dim_v;
                let out = &mut attn[rows.start * aw..rows.end * aw];
                if st.flash_attn && flash_attn::supports(&kv) {
                    // llama.cpp's graph sees the used cells padded to 256 (at most the whole
                    // cache).
                    let n_kv = cells
                        .size()
                        .min(cells.used_max_p1().next_multiple_of(256).max(256));
                    flash_attn::flash_attention(pool, &params, qs, &kv, n_kv, p0, out, as_decode);
                } else {
                    attention_cells_rows(pool, &params, qs, &kv, p0, out, as_decode);
                }
            }
            trace("kqv_out", il, attn);
            linear(pool, &lw.wo, attn, n, proj, act, as_decode);
            trace("attn_out", il, proj);
            if let Some(pn) = &lw.attn_post_norm {
                norm_rows_inplace(pool, proj, pn, eps);
                trace("attn_post_norm", il, proj);
            }
            ops::add_inplace(x, proj);
            // llama.cpp names the stream after the attention residual by its graph's use of it.
            trace(if hp.post_norms { "sa_out" } else { "ffn_inp" }, il, x);

            norm_rows(pool, x, &lw.ffn_norm, eps, xn);
            trace("ffn_norm", il, xn);
            linear(pool, &lw.ffn_gate, xn, n, gate, act, as_decode);
            linear(pool, &lw.ffn_up, xn, n, up, act, as_decode);
            let f = match hp.activation {
                Activation::Silu => ops::swiglu,
                Activation::GeluTanh => ops::geglu,
            };
            let nf = hp.n_ff;
            rows_par(pool, gate, nf, &|t, g| {
                gated(g, &up[t * nf..(t + 1) * nf], f)
            });
            let act_name = match hp.activation {
                Activation::Silu => "ffn_swiglu",
                Activation::GeluTanh => "ffn_geglu",
            };
            trace(act_name, il, gate);
            linear(pool, &lw.ffn_down, gate, n, proj, act, as_decode);
            trace("ffn_out", il, proj);
            if let Some(pn) = &lw.ffn_post_norm {
                norm_rows_inplace(pool, proj, pn, eps);
                trace("ffn_post_norm", il, proj);
            }
            ops::add_inplace(x, proj);
            trace("l_out", il, x);
        }

        // The rows that reach the output head, normed into consecutive rows of `xn`.
        let (logits, n_out) = match out {
            Out::None => return Ok(()),
            Out::All(l) => {
                norm_rows(pool, x, &w.output_norm, eps, xn);
                (l, n)
            }
            Out::Last(l) => {
                norm_last_rows(x, segs, &w.output_norm, eps, xn);
                (l, segs.len())
            }
            Out::Hidden(h) => {
                norm_last_rows(x, segs, &w.output_norm, eps, h);
                trace("result_norm", hp.n_layer, h);
                return Ok(());
            }
        };
        let xn = &xn[..n_out * e];
        trace("result_norm", hp.n_layer, xn);
        linear(pool, &w.output, xn, n_out, logits, act, as_decode);
        if let Some(cap) = hp.final_logit_softcap {
            ops::softcap_inplace(logits, cap);
        }
        Ok(())
    }

    /// llama.cpp's context shift (`llama-completion` when the context is full): keeps the first
    /// `keep` positions (the state's [`State::set_context_shift`]), forgets the older half of the
    /// rest, moves the later positions down and re-rotates their cached keys by the position
    /// delta with each layer's own RoPE base and scale, as llama.cpp's K-shift graph does.
    /// Returns the number of positions dropped.
    pub fn context_shift(&self, st: &mut State) -> Result<usize, ModelError> {
        let hp = &self.hp;
        let n_past = st.len();
        let keep = st.shift_keep.unwrap_or(0).min(n_past);
        let discard = (n_past - keep) / 2;
        if st.gpu.is_some() || discard == 0 {
            return Err(ModelError::ContextExceeded {
                cached: n_past,
                new: 1,
                n_ctx: st.n_ctx(),
            });
        }
        st.kv.shift(keep, discard);
        let freqs = self.weights.rope_freqs.as_deref();
        let mut row = vec![0.0f32; hp.n_k()];
        let mut table = Vec::new();
        for group in 0..st.kv.n_groups() {
            let shifts = st.kv.take_shifts(group);
            for il in 0..hp.n_layer {
                if st.kv.layer(il).group() != group {
                    continue;
                }
                let (base, scale) = if hp.is_swa(il) {
                    (hp.rope_freq_base_swa, hp.rope_freq_scale_swa)
                } else {
                    (hp.rope_freq_base, hp.rope_freq_scale)
                };
                let mut table_delta = None;
                for &(cell, delta) in &shifts {
                    if table_delta != Some(delta) {
                        shift_table(hp, freqs, base, scale, delta, &mut table);
                        table_delta = Some(delta);
                    }
                    let cache = st.kv.layer_mut(il);
                    cache.read_k(cell, &mut row);
                    ops::rope(&mut row, hp.head_dim, hp.n_rot, hp.rope_style, &table);
                    cache.write_k(cell, &row);
                }
            }
        }
        Ok(discard)
    }
}

/// `g = f(g, u)` for a gated activation `f(gate, up, out)`, via a row-sized stack of chunks so
/// that input and output never alias.
fn gated(g: &mut [f32], u: &[f32], f: fn(&[f32], &[f32], &mut [f32])) {
    const CHUNK: usize = 256;
    let mut tmp = [0.0f32; CHUNK];
    for (gc, uc) in g.chunks_mut(CHUNK).zip(u.chunks(CHUNK)) {
        let t = &mut tmp[..gc.len()];
        f(gc, uc, t);
        gc.copy_from_slice(t);
    }
}
