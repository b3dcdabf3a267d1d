//! llama.cpp's own samplers, greedy generation and perplexity, as the oracle for infer's sampler
//! chain, `infer run` and `infer perplexity`.
//!
//! [`RefChain`] drives llama.cpp's sampler objects (`llama_sampler_init_top_k`, ...) over a
//! candidate array we own; [`greedy_generate`] decodes with an [`eval::LlamaContext`] and picks
//! each token with llama.cpp's greedy sampler; [`perplexity`] scores a token sequence from
//! llama.cpp's logits with llama-perplexity's chunking (tools/perplexity/perplexity.cpp). Model
//! loading, contexts and decoding belong to `eval`; this module only adds sampling on top.
//!
//! [`eval::LlamaContext`]: crate::eval::LlamaContext

use crate::eval::{init, EvalError, LlamaContext};
use crate::sys;

/// One candidate, as llama.cpp's `llama_token_data`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TokenData {
    pub id: u32,
    pub logit: f32,
    pub p: f32,
}

/// What a llama.cpp sampler chain left after `llama_sampler_apply`.
#[derive(Clone, Debug)]
pub struct Applied {
    /// The surviving candidates, in the order llama.cpp left them.
    pub data: Vec<TokenData>,
    /// Whether llama.cpp marked them sorted by logit, highest first.
    pub sorted: bool,
    /// The token a final selecting sampler (greedy, dist) chose.
    pub selected: Option<u32>,
}

/// A llama.cpp sampler chain (`llama_sampler_chain_init`), built with the methods below in the
/// order the steps should run.
pub struct RefChain {
    ptr: *mut sys::llama_sampler,
}

impl Default for RefChain {
    fn default() -> Self {
        Self::new()
    }
}

impl RefChain {
    pub fn new() -> RefChain {
        init();
        // SAFETY: the default params are a plain struct; the chain is freed in Drop.
        let ptr = unsafe {
            let mut p = sys::llama_sampler_chain_default_params();
            p.no_perf = true;
            sys::llama_sampler_chain_init(p)
        };
        RefChain { ptr }
    }

    fn add(self, smpl: *mut sys::llama_sampler) -> RefChain {
        // SAFETY: `smpl` was just created by a llama_sampler_init_* call; the chain takes
        // ownership of it and frees it with itself.
        unsafe { sys::llama_sampler_chain_add(self.ptr, smpl) };
        self
    }

    pub fn penalties(
        self,
        n_vocab: usize,
        last_n: i32,
        repeat: f32,
        freq: f32,
        present: f32,
    ) -> Self {
        // SAFETY: plain-value arguments; returns a new sampler handed to the chain.
        let s = unsafe {
            sys::llama_sampler_init_penalties(n_vocab as i32, last_n, repeat, freq, present)
        };
        self.add(s)
    }

    pub fn top_k(self, k: i32) -> Self {
        // SAFETY: as in `penalties`.
        let s = unsafe { sys::llama_sampler_init_top_k(k) };
        self.add(s)
    }

    pub fn top_p(self, p: f32, min_keep: usize) -> Self {
        // SAFETY: as in `penalties`.
        let s = unsafe { sys::llama_sampler_init_top_p(p, min_keep) };
        self.add(s)
    }

    pub fn min_p(self, p: f32, min_keep: usize) -> Self {
        // SAFETY: as in `penalties`.
        let s = unsafe { sys::llama_sampler_init_min_p(p, min_keep) };
        self.add(s)
    }

    /// The temperature step as common/sampling.cpp adds it (`temp_ext` without dynamic range).
    pub fn temp(self, t: f32) -> Self {
        // SAFETY: as in `penalties`.
        let s = unsafe { sys::llama_sampler_init_temp_ext(t, 0.0, 1.0) };
        self.add(s)
    }

    pub fn greedy(self) -> Self {
        // SAFETY: as in `penalties`.
        let s = unsafe { sys::llama_sampler_init_greedy() };
        self.add(s)
    }

    pub fn dist(self, seed: u32) -> Self {
        // SAFETY: as in `penalties`.
        let s = unsafe { sys::llama_sampler_init_dist(seed) };
        self.add(s)
    }

    /// Records a token in the samplers' history (the penalty window).
    pub fn accept(&mut self, token: u32) {
        // SAFETY: `ptr` is a live chain.
        unsafe { sys::llama_sampler_accept(self.ptr, token as sys::llama_token) }
    }

    /// Runs the chain over `cands` (unsorted on entry).
    pub fn apply(&mut self, cands: &[TokenData]) -> Applied {
        let mut data: Vec<sys::llama_token_data> = cands
            .iter()
            .map(|c| sys::llama_token_data {
                id: c.id as sys::llama_token,
                logit: c.logit,
                p: c.p,
            })
            .collect();
        let mut arr = sys::llama_token_data_array {
            data: data.as_mut_ptr(),
            size: data.len(),
            selected: -1,
            sorted: false,
        };
        // SAFETY: `arr` points at `data`, which lives across the call; llama.cpp's samplers only
        // shrink `size` and rewrite elements in place (never grow the array).
        unsafe { sys::llama_sampler_apply(self.ptr, &mut arr) };
        let size = arr.size.min(data.len());
        let out: Vec<TokenData> = data[..size]
            .iter()
            .map(|d| TokenData {
                id: d.id as u32,
                logit: d.logit,
                p: d.p,
            })
            .collect();
        let selected = usize::try_from(arr.selected)
            .ok()
            .and_then(|i| out.get(i))
            .map(|d| d.id);
        Applied {
            data: out,
            sorted: arr.sorted,
            selected,
        }
    }

    /// Runs the chain over a whole logits row (candidates in id order) and returns the selection.
    pub fn sample(&mut self, logits: &[f32]) -> Option<u32> {
        let cands: Vec<TokenData> = logits
            .iter()
            .enumerate()
            .map(|(i, &logit)| TokenData {
                id: i as u32,
                logit,
                p: 0.0,
            })
            .collect();
        self.apply(&cands).selected
    }
}

impl Drop for RefChain {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from llama_sampler_chain_init and is freed once, with its samplers.
        unsafe { sys::llama_sampler_free(self.ptr) }
    }
}

/// What [`greedy_generate`] produced.
#[derive(Clone, Debug)]
pub struct Greedy {
    /// The generated tokens, EOG excluded.
    pub ids: Vec<u32>,
    /// The logits row each pick was made from: `rows[i]` chose `ids[i]`; one more row when an
    /// EOG token ended the run.
    pub rows: Vec<Vec<f32>>,
    /// The EOG token that ended the run, if one did.
    pub eog: Option<u32>,
}

/// Decodes `prompt` and then picks up to `n` tokens with llama.cpp's greedy sampler, one
/// `llama_decode` per generated token (as llama.cpp's completion tool runs), stopping before the
/// first token for which `is_eog` holds. The context must be empty and its batch must hold the
/// whole prompt.
pub fn greedy_generate(
    ctx: &mut LlamaContext,
    prompt: &[u32],
    n: usize,
    is_eog: impl Fn(u32) -> bool,
) -> Result<Greedy, EvalError> {
    let mut chain = RefChain::new().greedy();
    ctx.decode(prompt, false)?;
    let mut out = Greedy {
        ids: Vec::with_capacity(n),
        rows: Vec::with_capacity(n),
        eog: None,
    };
    while out.ids.len() < n {
        let logits = ctx.logits_ith(-1)?;
        let Some(id) = chain.sample(&logits) else {
            break;
        };
        out.rows.push(logits);
        if is_eog(id) {
            out.eog = Some(id);
            break;
        }
        out.ids.push(id);
        if out.ids.len() < n {
            ctx.decode(&[id], false)?;
        }
    }
    Ok(out)
}

/// llama-perplexity's result: the final estimate and the running value after each chunk.
#[derive(Clone, Debug)]
pub struct Perplexity {
    pub ppl: f64,
    pub error: f64,
    pub running: Vec<f64>,
}

/// Perplexity of `tokens` (already tokenized with BOS) from llama.cpp's logits, chunked as
/// llama-perplexity does: chunks of `n_ctx` tokens, each from an empty cache with its first token
/// replaced by `bos` (when given), scoring positions `n_ctx/2 ..= n_ctx-2` against the next token;
/// NLL as `-(logit - max - ln Σ exp(logit - max))`, error `ppl * sqrt(var / (count - 1))`.
/// The context needs `n_ctx` positions and a batch of `n_ctx`.
pub fn perplexity(
    ctx: &mut LlamaContext,
    tokens: &[u32],
    n_ctx: usize,
    bos: Option<u32>,
) -> Result<Perplexity, EvalError> {
    let first = n_ctx / 2;
    let n_chunk = tokens.len() / n_ctx;
    let (mut nll, mut nll2, mut count) = (0.0f64, 0.0f64, 0usize);
    let mut running = Vec::with_capacity(n_chunk);
    for i in 0..n_chunk {
        let chunk = &tokens[i * n_ctx..(i + 1) * n_ctx];
        let mut input = chunk.to_vec();
        if let Some(b) = bos {
            input[0] = b;
        }
        ctx.clear();
        ctx.decode(&input, true)?;
        for pos in first..n_ctx - 1 {
            let row = ctx.logits_ith(pos as i32)?;
            let max = row.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
            let sum: f64 = row.iter().map(|&x| f64::from((x - max).exp())).sum();
            let v = -(f64::from(row[chunk[pos + 1] as usize] - max) - sum.ln());
            nll += v;
            nll2 += v * v;
            count += 1;
        }
        running.push((nll / count as f64).exp());
    }
    let mean = nll / count as f64;
    let var = nll2 / count as f64 - mean * mean;
    let ppl = mean.exp();
    Ok(Perplexity {
        ppl,
        error: (var.max(0.0) / (count as f64 - 1.0)).sqrt() * ppl,
        running,
    })
}
