//! The decoder's operations on the GPU, recorded into one command buffer (`Batch`) and submitted
//! together: a decode step is one submission with no readback between ops. Each op checks the
//! sizes it is given against the tensors' lengths (a mismatch is a caller bug reported as an
//! error, never an out-of-bounds dispatch), writes its sizes into a uniform `Params` struct that
//! mirrors the one in its shader, and dispatches workgroups over a 2-D grid when one dimension
//! would exceed the adapter's limit (262144 vocabulary rows do).

use bytemuck::{Pod, Zeroable};

use super::buffers::{GpuMatrix, GpuTensor};
use super::device::{Gpu, GpuError};
use super::pipelines::{Kernel, PipelineKey, WeightFormat};
use crate::cpu::attention::AttnParams;
use crate::cpu::ops::RopeStyle;

/// Rows of activations one matmul workgroup shares a decoded weight row among (shaders/matmul.wgsl's TT).
const MATMUL_TOKENS: usize = 8;

/// Widest value head the attention kernel holds (4 output dims per invocation of 64).
const MAX_HEAD_DIM_V: usize = 256;

/// Widest key head the attention kernel holds (the rounded query in workgroup memory).
const MAX_HEAD_DIM: usize = 512;

/// Which gated activation `glu` applies to the gate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Glu {
    /// GELU (tanh form), Gemma.
    Gelu,
    /// SiLU, Llama and Qwen.
    Silu,
}

/// shaders/matvec.wgsl, shaders/matmul.wgsl and shaders/get_rows.wgsl `Params`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct MatParams {
    k: u32,
    m: u32,
    row_bytes: u32,
    /// matvec: x_off; matmul and get_rows: n_tok.
    a: u32,
    /// matvec: y_off; matmul: y_stride; get_rows: row0.
    b: u32,
    /// matmul: y_off.
    c: u32,
    _pad: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct NormParams {
    n: u32,
    rows: u32,
    eps: f32,
    _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct RopeParams {
    head_dim: u32,
    n_rot: u32,
    n_head: u32,
    n_tok: u32,
    neox: u32,
    _pad: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct AttnUniform {
    n_head: u32,
    n_head_kv: u32,
    head_dim: u32,
    head_dim_v: u32,
    n_tok: u32,
    pos0: u32,
    window: u32,
    scale: f32,
    /// 1: one query row, in the CPU's single-row order.
    single: u32,
    zero: u32,
    row0: u32,
    kv_stride: u32,
    n_cells: u32,
    _pad: [u32; 3],
}

/// shaders/flash_attn.wgsl `Params`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct FlashUniform {
    n_head: u32,
    n_head_kv: u32,
    head_dim: u32,
    head_dim_v: u32,
    n_tok: u32,
    pos0: u32,
    window: u32,
    scale: f32,
    /// 1: the tiled form (64 query rows or more).
    tiled: u32,
    zero: u32,
    row0: u32,
    kv_stride: u32,
    n_kv: u32,
    n_cells: u32,
    chunk: u32,
    n_chunks: u32,
}

/// A layer's cache on the device as attention reads it: rows `[cell][kv_head][dim]` (f16-rounded
/// f32) and each cell's position (i32 bits, -1: empty) for cells `0..n_cells`, laid out as
/// `crate::model::kv_cache` lays out the CPU's.
#[derive(Clone, Copy)]
pub struct KvCells<'a> {
    pub keys: &'a GpuTensor,
    pub values: &'a GpuTensor,
    pub pos: &'a GpuTensor,
    pub n_cells: usize,
}

/// Query rows from which ggml's flash attention tiles the queries (`GGML_FA_TILE_Q`), and
/// the fewest cells over which it splits a single row across threads (crate::cpu::flash_attn).
const FA_TILE_Q: usize = 64;
const FA_SPLIT_MIN_CELLS: usize = 512;

/// Most chunks the flash-attention kernel merges (its workgroup arrays).
const FA_MAX_CHUNKS: usize = 256;

/// The element-wise kernels' `Params`: a count and one argument (u32 or f32 bits).
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct EltParams {
    n: u32,
    arg: u32,
    _pad: [u32; 2],
}

fn u32_of(what: &str, v: usize) -> Result<u32, GpuError> {
    u32::try_from(v).map_err(|_| GpuError::Shape {
        what: what.to_string(),
        msg: format!("{v} does not fit the shaders' 32-bit indices"),
    })
}

fn need(what: &str, t: &GpuTensor, n: usize) -> Result<(), GpuError> {
    if t.len() < n {
        return Err(GpuError::Shape {
            what: what.to_string(),
            msg: format!("needs {n} elements, the tensor holds {}", t.len()),
        });
    }
    Ok(())
}

/// Operations recorded for one submission.
pub struct Batch<'g> {
    gpu: &'g Gpu,
    enc: wgpu::CommandEncoder,
}

impl<'g> Batch<'g> {
    pub fn new(gpu: &'g Gpu) -> Batch<'g> {
        let enc = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("infer-batch"),
            });
        Batch { gpu, enc }
    }

    /// Submit the recorded work. It runs asynchronously; `Gpu::wait` or a readback waits for it.
    pub fn submit(self) -> Result<(), GpuError> {
        self.gpu.queue.submit([self.enc.finish()]);
        self.gpu.check()
    }

    /// One dispatch of `groups` workgroups of `kernel`, with `params` at binding 0 and `buffers`
    /// at bindings 1.. in order.
    /// `rows` query rows through `key`, at most `per` per dispatch (what the scratch holds),
    /// each dispatch told its first row through `set_row0`.
    fn dispatch_rows<P: Pod>(
        &mut self,
        key: PipelineKey,
        params: &mut P,
        set_row0: fn(&mut P, u32),
        buffers: &[&wgpu::Buffer],
        rows: usize,
        per: usize,
    ) -> Result<(), GpuError> {
        let mut row0 = 0;
        while row0 < rows {
            let n = per.min(rows - row0);
            set_row0(params, u32_of("rows", row0)?);
            self.dispatch(key, params, buffers, n)?;
            row0 += n;
        }
        Ok(())
    }

    fn dispatch<P: Pod>(
        &mut self,
        key: PipelineKey,
        params: &P,
        buffers: &[&wgpu::Buffer],
        groups: usize,
    ) -> Result<(), GpuError> {
        if groups == 0 {
            return Ok(());
        }
        let pipeline = self.gpu.pipelines.get(self.gpu, key)?;
        let max = self.gpu.limits().max_compute_workgroups_per_dimension as usize;
        let x = groups.min(max);
        let y = groups.div_ceil(x);
        if y > max {
            return Err(GpuError::Shape {
                what: format!("{:?}", key.kernel),
                msg: format!("{groups} workgroups exceed the adapter's {max} x {max} grid"),
            });
        }
        // A lost device is reported here rather than at submit: some wgpu calls (mapping at
        // creation) panic on a lost device instead of raising an error.
        self.gpu.check()?;
        let bytes = bytemuck::bytes_of(params);
        let uniform = self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("params"),
            size: bytes.len() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.gpu.queue.write_buffer(&uniform, 0, bytes);
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: uniform.as_entire_binding(),
        }];
        for (i, b) in buffers.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry {
                binding: i as u32 + 1,
                resource: b.as_entire_binding(),
            });
        }
        let bind = self
            .gpu
            .device
            .create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &pipeline.get_bind_group_layout(0),
                entries: &entries,
            });
        let mut pass = self
            .enc
            .begin_compute_pass(&wgpu::ComputePassDescriptor::default());
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind, &[]);
        pass.dispatch_workgroups(x as u32, y as u32, 1);
        Ok(())
    }

    /// `y[t][r] = dot(W[r], x[t])` for `n_tok` rows of `x` (`n_tok * k`) into `y` (`n_tok * m`):
    /// the fused dequantize + matrix-vector kernel for one token, the token-tiled matrix-matrix
    /// kernel for more.
    pub fn matmul(
        &mut self,
        w: &GpuMatrix,
        x: &GpuTensor,
        n_tok: usize,
        y: &GpuTensor,
    ) -> Result<(), GpuError> {
        need("matmul input", x, n_tok * w.k)?;
        need("matmul output", y, n_tok * w.m)?;
        let (k, row_bytes) = (u32_of("k", w.k)?, u32_of("row bytes", w.row_bytes)?);
        let m_total = u32_of("rows", w.m)?;
        u32_of("matmul output", n_tok * w.m)?;
        for c in &w.chunks {
            let rows = u32_of("rows", c.rows)?;
            let row0 = u32_of("rows", c.row0)?;
            if n_tok == 1 {
                let p = MatParams {
                    k,
                    m: rows,
                    row_bytes,
                    a: 0,
                    b: row0,
                    c: 0,
                    _pad: [0; 2],
                };
                let key = PipelineKey {
                    kernel: Kernel::Matvec,
                    weight: Some(w.format),
                };
                self.dispatch(key, &p, &[&c.buf, &x.buf, &y.buf], c.rows)?;
            } else {
                let p = MatParams {
                    k,
                    m: rows,
                    row_bytes,
                    a: u32_of("tokens", n_tok)?,
                    b: m_total,
                    c: row0,
                    _pad: [0; 2],
                };
                let key = PipelineKey {
                    kernel: Kernel::Matmul,
                    weight: Some(w.format),
                };
                let groups = c.rows * n_tok.div_ceil(MATMUL_TOKENS);
                self.dispatch(key, &p, &[&c.buf, &x.buf, &y.buf], groups)?;
            }
        }
        Ok(())
    }

    /// As `matmul`, with `x` first quantized to the activation format the CPU multiplies `w`'s
    /// weights with (Q8_0 or Q8_K, into the scratch `aq`/`ad`), then exact integer block dots
    /// and the CPU's per-block float step (shaders/matmul_q8.wgsl). Formats the CPU multiplies
    /// with other activations take `matmul`.
    #[allow(clippy::too_many_arguments)]
    pub fn matmul_q8(
        &mut self,
        w: &GpuMatrix,
        x: &GpuTensor,
        n_tok: usize,
        y: &GpuTensor,
        aq: &GpuTensor,
        ad: &GpuTensor,
    ) -> Result<(), GpuError> {
        let Some(bs) = w.format.act_block() else {
            return self.matmul(w, x, n_tok, y);
        };
        let n = n_tok * w.k;
        need("matmul input", x, n)?;
        need("matmul output", y, n_tok * w.m)?;
        need("activation quants", aq, n)?;
        need("activation scales", ad, n / bs)?;
        if !w.k.is_multiple_of(bs) {
            return Err(GpuError::Shape {
                what: "matmul_q8".into(),
                msg: format!("rows of {} are not whole blocks of {bs}", w.k),
            });
        }
        let n_blocks = n / bs;
        let qp = EltParams {
            n: u32_of("blocks", n_blocks)?,
            arg: u32_of("block", bs)?,
            _pad: [0; 2],
        };
        self.dispatch(
            plain(Kernel::QuantizeAct),
            &qp,
            &[&x.buf, &aq.buf, &ad.buf],
            n_blocks.div_ceil(64),
        )?;
        let (k, row_bytes) = (u32_of("k", w.k)?, u32_of("row bytes", w.row_bytes)?);
        let m_total = u32_of("rows", w.m)?;
        u32_of("matmul output", n_tok * w.m)?;
        let (batch_end, flags) = cpu_order(w.format, w.m, n_tok);
        for c in &w.chunks {
            let p = MatParams {
                k,
                m: u32_of("rows", c.rows)?,
                row_bytes,
                a: u32_of("tokens", n_tok)?,
                b: m_total,
                c: u32_of("rows", c.row0)?,
                _pad: [u32_of("tokens", batch_end)?, flags],
            };
            let key = PipelineKey {
                kernel: Kernel::MatmulQ8,
                weight: Some(w.format),
            };
            // shaders/matmul_q8.wgsl: 64 rows per workgroup, one token tile each.
            let groups = c.rows.div_ceil(64) * n_tok.div_ceil(MATMUL_TOKENS);
            self.dispatch(key, &p, &[&c.buf, &aq.buf, &ad.buf, &y.buf], groups)?;
        }
        Ok(())
    }

    /// `out[t] = row ids[t] of the table `w`, dequantized` for `n_tok` ids (the embedding lookup).
    /// Ids past the table leave their output row untouched.
    pub fn get_rows(
        &mut self,
        w: &GpuMatrix,
        ids: &GpuTensor,
        n_tok: usize,
        out: &GpuTensor,
    ) -> Result<(), GpuError> {
        need("get_rows ids", ids, n_tok)?;
        need("get_rows output", out, n_tok * w.k)?;
        for c in &w.chunks {
            let p = MatParams {
                k: u32_of("k", w.k)?,
                m: u32_of("rows", c.rows)?,
                row_bytes: u32_of("row bytes", w.row_bytes)?,
                a: u32_of("tokens", n_tok)?,
                b: u32_of("rows", c.row0)?,
                c: 0,
                _pad: [0; 2],
            };
            let key = PipelineKey {
                kernel: Kernel::GetRows,
                weight: Some(w.format),
            };
            self.dispatch(key, &p, &[&c.buf, &ids.buf, &out.buf], n_tok)?;
        }
        Ok(())
    }

    /// `y = rms_norm(x) * w` over `rows` rows of `n` (`w` has `n` elements); `x` and `y` may be
    /// the same tensor.
    pub fn rms_norm(
        &mut self,
        w: &GpuTensor,
        x: &GpuTensor,
        y: &GpuTensor,
        n: usize,
        rows: usize,
        eps: f32,
    ) -> Result<(), GpuError> {
        need("rms_norm weight", w, n)?;
        need("rms_norm input", x, n * rows)?;
        need("rms_norm output", y, n * rows)?;
        let p = NormParams {
            n: u32_of("n", n)?,
            rows: u32_of("rows", rows)?,
            eps,
            _pad: 0,
        };
        self.dispatch(plain(Kernel::RmsNorm), &p, &[&w.buf, &x.buf, &y.buf], rows)
    }

    /// Rotate `x` (`[n_tok][n_head][head_dim]`) in place by the angles in `cos_sin`
    /// (`[n_tok][n_rot]`, from `crate::cpu::ops::rope_cache` for each token's position).
    #[allow(clippy::too_many_arguments)]
    pub fn rope(
        &mut self,
        cos_sin: &GpuTensor,
        x: &GpuTensor,
        head_dim: usize,
        n_rot: usize,
        n_head: usize,
        n_tok: usize,
        style: RopeStyle,
    ) -> Result<(), GpuError> {
        if n_rot > head_dim || !n_rot.is_multiple_of(2) {
            return Err(GpuError::Shape {
                what: "rope".into(),
                msg: format!("n_rot {n_rot} must be even and at most head_dim {head_dim}"),
            });
        }
        need("rope angles", cos_sin, n_tok * n_rot)?;
        need("rope input", x, n_tok * n_head * head_dim)?;
        let p = RopeParams {
            head_dim: u32_of("head_dim", head_dim)?,
            n_rot: u32_of("n_rot", n_rot)?,
            n_head: u32_of("n_head", n_head)?,
            n_tok: u32_of("n_tok", n_tok)?,
            neox: u32::from(style == RopeStyle::Neox),
            _pad: [0; 3],
        };
        let threads = n_tok * n_head * (n_rot / 2);
        u32_of("rope", threads)?;
        self.dispatch(
            plain(Kernel::Rope),
            &p,
            &[&cos_sin.buf, &x.buf],
            threads.div_ceil(64),
        )
    }

    /// In-place softmax of `rows` rows of `n`.
    pub fn softmax(&mut self, x: &GpuTensor, n: usize, rows: usize) -> Result<(), GpuError> {
        need("softmax", x, n * rows)?;
        let p = EltParams {
            n: u32_of("n", n)?,
            arg: u32_of("rows", rows)?,
            _pad: [0; 2],
        };
        self.dispatch(plain(Kernel::Softmax), &p, &[&x.buf], rows)
    }

    /// Store `n_tok` rows of `width` from `src` into the cache `dst` at the cells `cells`
    /// (`n_tok` u32 indices), rounded to f16 precision.
    pub fn kv_store(
        &mut self,
        src: &GpuTensor,
        dst: &GpuTensor,
        cells: &GpuTensor,
        width: usize,
        n_tok: usize,
    ) -> Result<(), GpuError> {
        let n = n_tok * width;
        need("kv_store source", src, n)?;
        need("kv_store cells", cells, n_tok)?;
        u32_of("kv_store cache", dst.len())?;
        let p = EltParams {
            n: u32_of("n", n)?,
            arg: u32_of("width", width)?,
            _pad: [0; 2],
        };
        self.dispatch(
            plain(Kernel::KvStore),
            &p,
            &[&src.buf, &dst.buf, &cells.buf],
            n.div_ceil(64),
        )
    }

    /// Checks shared by both attention kernels: head counts and sizes against the tensors and
    /// the kernels' workgroup arrays.
    fn attn_check(
        p: &AttnParams,
        q: &GpuTensor,
        kv: &KvCells,
        n_tok: usize,
        out: &GpuTensor,
    ) -> Result<(), GpuError> {
        let err = |msg: String| GpuError::Shape {
            what: "attention".into(),
            msg,
        };
        if p.n_head_kv == 0 || !p.n_head.is_multiple_of(p.n_head_kv) {
            return Err(err(format!(
                "{} heads over {} kv heads",
                p.n_head, p.n_head_kv
            )));
        }
        let n_kv = kv.n_cells;
        need("attention q", q, n_tok * p.n_head * p.head_dim)?;
        need("attention keys", kv.keys, n_kv * p.n_head_kv * p.head_dim)?;
        need(
            "attention values",
            kv.values,
            n_kv * p.n_head_kv * p.head_dim_v,
        )?;
        need("attention cell positions", kv.pos, n_kv)?;
        need("attention output", out, n_tok * p.n_head * p.head_dim_v)?;
        if p.head_dim > MAX_HEAD_DIM {
            return Err(err(format!(
                "key heads of {} exceed the kernel's {MAX_HEAD_DIM}",
                p.head_dim
            )));
        }
        if p.head_dim_v > MAX_HEAD_DIM_V {
            return Err(err(format!(
                "value heads of {} exceed the kernel's {MAX_HEAD_DIM_V}",
                p.head_dim_v
            )));
        }
        u32_of(
            "attention keys",
            kv.keys.len().max(kv.values.len()).max(q.len()),
        )?;
        Ok(())
    }

    /// Attention of `n_tok` query rows `q` (positions `pos0..`) over the cache cells `kv`, as
    /// `crate::cpu::attention::attention_cells` (llama.cpp's unfused path). `scores` is scratch
    /// for the rows' scores: the (token, head) rows are dispatched in groups whose `n_cells`
    /// scores each fit it, so any scratch of at least one row's works.
    #[allow(clippy::too_many_arguments)]
    pub fn attention(
        &mut self,
        p: &AttnParams,
        q: &GpuTensor,
        kv: &KvCells,
        pos0: usize,
        n_tok: usize,
        out: &GpuTensor,
        scores: &GpuTensor,
    ) -> Result<(), GpuError> {
        Self::attn_check(p, q, kv, n_tok, out)?;
        let n_kv = kv.n_cells;
        let rows = n_tok * p.n_head;
        let per = scores.len() / n_kv.max(1);
        if per == 0 {
            return Err(GpuError::Shape {
                what: "attention scores".into(),
                msg: format!("scratch of {} floats holds no row of {n_kv}", scores.len()),
            });
        }
        let mut u = AttnUniform {
            n_head: u32_of("n_head", p.n_head)?,
            n_head_kv: u32_of("n_head_kv", p.n_head_kv)?,
            head_dim: u32_of("head_dim", p.head_dim)?,
            head_dim_v: u32_of("head_dim_v", p.head_dim_v)?,
            n_tok: u32_of("n_tok", n_tok)?,
            pos0: u32_of("pos0", pos0)?,
            window: u32_of("window", p.window.unwrap_or(0))?,
            scale: p.scale,
            single: u32::from(n_tok == 1),
            zero: 0,
            row0: 0,
            kv_stride: u32_of("attention keys", n_kv)?,
            n_cells: u32_of("attention cells", n_kv)?,
            _pad: [0; 3],
        };
        let buffers = [
            &q.buf,
            &kv.keys.buf,
            &kv.values.buf,
            &out.buf,
            &scores.buf,
            &kv.pos.buf,
        ];
        self.dispatch_rows(
            plain(Kernel::Attention),
            &mut u,
            |u, r| u.row0 = r,
            &buffers,
            rows,
            per,
        )
    }

    /// Attention as `crate::cpu::flash_attn::flash_attention` computes it with `n_threads` CPU
    /// threads: over cells `0..n_kv` (llama.cpp's padded count; at least `kv.n_cells`), in the
    /// form ggml picks for `n_tok` rows. `scores` is scratch: rows are dispatched in groups
    /// whose `3 * n_kv` floats each fit it (the tiled form needs none).
    #[allow(clippy::too_many_arguments)]
    pub fn flash_attention(
        &mut self,
        p: &AttnParams,
        q: &GpuTensor,
        kv: &KvCells,
        n_kv: usize,
        n_threads: usize,
        pos0: usize,
        n_tok: usize,
        out: &GpuTensor,
        scores: &GpuTensor,
    ) -> Result<(), GpuError> {
        Self::attn_check(p, q, kv, n_tok, out)?;
        let n_kv = n_kv.max(kv.n_cells);
        // A single row never tiles (FA_TILE_Q > 1).
        let tiled = n_tok >= FA_TILE_Q;
        let n_chunks = if n_tok == 1 && n_kv >= FA_SPLIT_MIN_CELLS {
            n_threads.max(1)
        } else {
            1
        };
        if n_chunks > FA_MAX_CHUNKS {
            return Err(GpuError::Shape {
                what: "flash attention".into(),
                msg: format!("{n_chunks} threads' chunks exceed the kernel's {FA_MAX_CHUNKS}"),
            });
        }
        let stride = if tiled { 0 } else { 3 * n_kv };
        let rows = n_tok * p.n_head;
        let per = if tiled {
            rows
        } else {
            scores.len() / stride.max(1)
        };
        if per == 0 {
            return Err(GpuError::Shape {
                what: "attention scores".into(),
                msg: format!(
                    "scratch of {} floats holds no row of {stride}",
                    scores.len()
                ),
            });
        }
        let mut u = FlashUniform {
            n_head: u32_of("n_head", p.n_head)?,
            n_head_kv: u32_of("n_head_kv", p.n_head_kv)?,
            head_dim: u32_of("head_dim", p.head_dim)?,
            head_dim_v: u32_of("head_dim_v", p.head_dim_v)?,
            n_tok: u32_of("n_tok", n_tok)?,
            pos0: u32_of("pos0", pos0)?,
            window: u32_of("window", p.window.unwrap_or(0))?,
            scale: p.scale,
            tiled: u32::from(tiled),
            zero: 0,
            row0: 0,
            kv_stride: u32_of("attention scratch", stride)?,
            n_kv: u32_of("attention cells", n_kv)?,
            n_cells: u32_of("attention cells", kv.n_cells)?,
            chunk: u32_of("attention chunk", n_kv.div_ceil(n_chunks))?,
            n_chunks: n_chunks as u32,
        };
        let buffers = [
            &q.buf,
            &kv.keys.buf,
            &kv.values.buf,
            &out.buf,
            &scores.buf,
            &kv.pos.buf,
        ];
        self.dispatch_rows(
            plain(Kernel::FlashAttn),
            &mut u,
            |u, r| u.row0 = r,
            &buffers,
            rows,
            per,
        )
    }

    /// `out = act(gate) * up` over `n` elements.
    pub fn glu(
        &mut self,
        act: Glu,
        gate: &GpuTensor,
        up: &GpuTensor,
        out: &GpuTensor,
        n: usize,
    ) -> Result<(), GpuError> {
        need("glu gate", gate, n)?;
        need("glu up", up, n)?;
        need("glu output", out, n)?;
        let p = EltParams {
            n: u32_of("n", n)?,
            arg: u32::from(act == Glu::Silu),
            _pad: [0; 2],
        };
        let table = gelu_table(self.gpu)?;
        self.dispatch(
            plain(Kernel::Glu),
            &p,
            &[&gate.buf, &up.buf, &out.buf, &table.buf],
            n.div_ceil(64),
        )
    }

    /// `acc += x` over `n` elements.
    pub fn add(&mut self, acc: &GpuTensor, x: &GpuTensor, n: usize) -> Result<(), GpuError> {
        need("add accumulator", acc, n)?;
        need("add input", x, n)?;
        let p = EltParams {
            n: u32_of("n", n)?,
            arg: 0,
            _pad: [0; 2],
        };
        self.dispatch(plain(Kernel::Add), &p, &[&acc.buf, &x.buf], n.div_ceil(64))
    }

    /// `x *= s` over `n` elements.
    pub fn scale(&mut self, x: &GpuTensor, n: usize, s: f32) -> Result<(), GpuError> {
        need("scale", x, n)?;
        let p = EltParams {
            n: u32_of("n", n)?,
            arg: s.to_bits(),
            _pad: [0; 2],
        };
        self.dispatch(plain(Kernel::Scale), &p, &[&x.buf], n.div_ceil(64))
    }

    /// `x = cap * tanh(x / cap)` over `n` elements.
    pub fn softcap(&mut self, x: &GpuTensor, n: usize, cap: f32) -> Result<(), GpuError> {
        need("softcap", x, n)?;
        let p = EltParams {
            n: u32_of("n", n)?,
            arg: cap.to_bits(),
            _pad: [0; 2],
        };
        self.dispatch(plain(Kernel::Softcap), &p, &[&x.buf], n.div_ceil(64))
    }

    /// Copy `n` elements from `src` at `src_off` to `dst` at `dst_off` (both in elements): how
    /// the forward pass picks the rows of the residual stream the output head needs.
    pub fn copy(
        &mut self,
        src: &GpuTensor,
        src_off: usize,
        dst: &GpuTensor,
        dst_off: usize,
        n: usize,
    ) -> Result<(), GpuError> {
        need("copy source", src, src_off + n)?;
        need("copy destination", dst, dst_off + n)?;
        if n > 0 {
            self.enc.copy_buffer_to_buffer(
                &src.buf,
                (src_off * 4) as u64,
                &dst.buf,
                (dst_off * 4) as u64,
                (n * 4) as u64,
            );
        }
        Ok(())
    }

    /// `out[0]` = index of the largest of the first `n` elements of `x`, ties to the lowest.
    pub fn argmax(&mut self, x: &GpuTensor, n: usize, out: &GpuTensor) -> Result<(), GpuError> {
        need("argmax", x, n)?;
        need("argmax output", out, 1)?;
        let p = EltParams {
            n: u32_of("n", n)?,
            arg: 0,
            _pad: [0; 2],
        };
        self.dispatch(plain(Kernel::Argmax), &p, &[&x.buf, &out.buf], 1)
    }
}

/// GELU of every f16 value, rounded to f16 and widened to f32, indexed by the f16's bits: the
/// table ggml-cpu (and so `crate::cpu::ops::geglu`) evaluates GELU through. A WGSL `tanh` differs
/// from the CPU's in the last bits, which the rounding to f16 turns into whole f16 steps.
fn gelu_table(gpu: &Gpu) -> Result<&GpuTensor, GpuError> {
    if let Some(t) = gpu.gelu_table.get() {
        return Ok(t);
    }
    let table: Vec<f32> = (0..=u16::MAX)
        .map(|bits| {
            let x = half::f16::from_bits(bits).to_f32();
            half::f16::from_f32(crate::cpu::ops::gelu_f32(x)).to_f32()
        })
        .collect();
    let t = GpuTensor::from_f32(gpu, &table, "gelu table")?;
    Ok(gpu.gelu_table.get_or_init(|| t))
}

/// Which float order shaders/matmul_q8.wgsl takes for each token row, as
/// `crate::cpu::ggml_order::orders_for` picks the CPU's kernels (the orders of llama.cpp's AVX2
/// build): `(batch_end, flags)`, rows `t < batch_end` in the format's batch order; flags bit 0:
/// Q4_K in the repacked kernels' order (matrices of a multiple of 8 rows).
fn cpu_order(format: WeightFormat, m: usize, n_tok: usize) -> (usize, u32) {
    use crate::cpu::ggml_order::BATCH_MIN_ROWS;
    match format {
        // Groups of four rows take the repacked gemm, the rest the one-row kernel.
        WeightFormat::Q4K if m.is_multiple_of(8) => (n_tok - n_tok % 4, 1),
        WeightFormat::Q6K if n_tok >= BATCH_MIN_ROWS => (n_tok, 0),
        _ => (0, 0),
    }
}

fn plain(kernel: Kernel) -> PipelineKey {
    PipelineKey {
        kernel,
        weight: None,
    }
}
