//! Device memory: f32/u32 tensors for activations and the KV cache (`GpuTensor`), and weight
//! matrices uploaded once (`GpuMatrix`). A matrix whose bytes exceed the adapter's storage-binding
//! limit is split by rows into chunks, each its own buffer and binding (lavapipe allows 128 MiB per
//! binding; Gemma 3's 262144 x 640 Q8_0 token embedding is 178 MB). Formats without a WGSL decoder
//! are dequantized to F32 on upload with `crate::quant`'s reference kernels.

use std::sync::mpsc;

use super::device::{Gpu, GpuError};
use super::pipelines::WeightFormat;
use crate::quant::{self, GgmlType};

/// A flat buffer of 32-bit elements (f32 activations, or u32 ids) on the device.
pub struct GpuTensor {
    pub(crate) buf: wgpu::Buffer,
    len: usize,
}

const TENSOR_USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

impl GpuTensor {
    /// `len` zeroed elements.
    pub fn zeros(gpu: &Gpu, len: usize, label: &str) -> Result<GpuTensor, GpuError> {
        let size = (len.max(1) * 4) as u64;
        if size > gpu.max_binding() {
            return Err(GpuError::TooLarge {
                what: label.to_string(),
                need: size,
                limit: gpu.max_binding(),
                adapter: gpu.adapter_name().to_string(),
            });
        }
        // wgpu zero-initialises buffers on creation.
        let buf = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage: TENSOR_USAGE,
            mapped_at_creation: false,
        });
        Ok(GpuTensor { buf, len })
    }

    pub fn from_f32(gpu: &Gpu, data: &[f32], label: &str) -> Result<GpuTensor, GpuError> {
        let t = GpuTensor::zeros(gpu, data.len(), label)?;
        t.write_f32(gpu, data);
        Ok(t)
    }

    pub fn from_u32(gpu: &Gpu, data: &[u32], label: &str) -> Result<GpuTensor, GpuError> {
        let t = GpuTensor::zeros(gpu, data.len(), label)?;
        t.write_u32(gpu, data);
        Ok(t)
    }

    /// Elements (32-bit each).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Write `data` at the start; staged on the queue, visible to the next submission.
    pub fn write_f32(&self, gpu: &Gpu, data: &[f32]) {
        assert!(data.len() <= self.len, "write past the tensor");
        if !data.is_empty() {
            gpu.queue
                .write_buffer(&self.buf, 0, bytemuck::cast_slice(data));
        }
    }

    pub fn write_u32(&self, gpu: &Gpu, data: &[u32]) {
        assert!(data.len() <= self.len, "write past the tensor");
        if !data.is_empty() {
            gpu.queue
                .write_buffer(&self.buf, 0, bytemuck::cast_slice(data));
        }
    }

    /// Copy the whole tensor back to the host (waits for all submitted work).
    pub fn read_f32(&self, gpu: &Gpu) -> Result<Vec<f32>, GpuError> {
        let bytes = read_bytes(gpu, &self.buf, (self.len * 4) as u64)?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    /// Copy the first `n` elements back to the host (waits for all submitted work).
    pub fn read_f32_prefix(&self, gpu: &Gpu, n: usize) -> Result<Vec<f32>, GpuError> {
        if n > self.len {
            return Err(GpuError::Shape {
                what: "readback".into(),
                msg: format!("{n} elements asked of a tensor of {}", self.len),
            });
        }
        let bytes = read_bytes(gpu, &self.buf, (n * 4) as u64)?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    pub fn read_u32(&self, gpu: &Gpu) -> Result<Vec<u32>, GpuError> {
        let bytes = read_bytes(gpu, &self.buf, (self.len * 4) as u64)?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }
}

fn read_bytes(gpu: &Gpu, src: &wgpu::Buffer, size: u64) -> Result<Vec<u8>, GpuError> {
    gpu.check()?;
    if size == 0 {
        return Ok(Vec::new());
    }
    let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("readback"),
        size,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut enc = gpu
        .device
        .create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
    enc.copy_buffer_to_buffer(src, 0, &staging, 0, size);
    gpu.queue.submit([enc.finish()]);
    let (tx, rx) = mpsc::channel();
    staging.map_async(wgpu::MapMode::Read, .., move |r| {
        // The receiver outlives the wait below; a send error would only mean it gave up.
        let _ = tx.send(r);
    });
    gpu.wait()?;
    match rx.try_recv() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(GpuError::Readback(e.to_string())),
        Err(_) => return Err(GpuError::Readback("the buffer was not mapped".into())),
    }
    let view = staging
        .get_mapped_range(..)
        .map_err(|e| GpuError::Readback(e.to_string()))?;
    let out = view.to_vec();
    drop(view);
    staging.unmap();
    Ok(out)
}

/// A run of whole rows of a matrix in one buffer.
pub(crate) struct Chunk {
    pub(crate) buf: wgpu::Buffer,
    pub(crate) row0: usize,
    pub(crate) rows: usize,
}

/// A weight matrix of `m` rows of `k` elements on the device, in a format with a WGSL decoder.
pub struct GpuMatrix {
    pub(crate) format: WeightFormat,
    source_type: GgmlType,
    pub(crate) k: usize,
    pub(crate) m: usize,
    pub(crate) row_bytes: usize,
    pub(crate) chunks: Vec<Chunk>,
}

impl GpuMatrix {
    /// Upload `m` rows of `k` elements of type `ty` (`data` as stored in the GGUF file).
    /// `name` labels errors and buffers.
    pub fn upload(
        gpu: &Gpu,
        name: &str,
        ty: GgmlType,
        k: usize,
        m: usize,
        data: &[u8],
    ) -> Result<GpuMatrix, GpuError> {
        GpuMatrix::upload_chunked(gpu, name, ty, k, m, data, gpu.max_binding())
    }

    /// As `upload`, with chunks of at most `max_chunk_bytes` (capped at the adapter's limit): how
    /// tests split small matrices to exercise the multi-binding path.
    pub fn upload_chunked(
        gpu: &Gpu,
        name: &str,
        ty: GgmlType,
        k: usize,
        m: usize,
        data: &[u8],
        max_chunk_bytes: u64,
    ) -> Result<GpuMatrix, GpuError> {
        let limit = max_chunk_bytes.min(gpu.max_binding());
        let src_row = quant::row_bytes(ty, k)?;
        let expected = src_row.checked_mul(m);
        if expected != Some(data.len()) {
            return Err(GpuError::Shape {
                what: name.to_string(),
                msg: format!(
                    "{m} rows of {k} {ty} elements need {} bytes, got {}",
                    expected.map_or("too many".to_string(), |e| e.to_string()),
                    data.len()
                ),
            });
        }
        let format = WeightFormat::of(ty).unwrap_or(WeightFormat::F32);
        if !k.is_multiple_of(format.block_elems()) {
            return Err(GpuError::Shape {
                what: name.to_string(),
                msg: format!(
                    "rows of {k} elements are not a multiple of {} (the GPU kernels' unit)",
                    format.block_elems()
                ),
            });
        }
        let row_bytes = if WeightFormat::of(ty).is_some() {
            src_row
        } else {
            4 * k
        };
        // One word of slack after the data: the shaders' unaligned reads touch the next word.
        let max_rows = (limit.saturating_sub(4) as usize) / row_bytes.max(1);
        if max_rows == 0 {
            return Err(GpuError::TooLarge {
                what: format!("{name} (one row)"),
                need: row_bytes as u64,
                limit,
                adapter: gpu.adapter_name().to_string(),
            });
        }
        gpu.check()?;
        let mut chunks = Vec::new();
        let mut row0 = 0;
        let mut scratch = Vec::new();
        while row0 < m {
            let rows = max_rows.min(m - row0);
            let size = ((rows * row_bytes).div_ceil(4) + 1) * 4;
            let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
            let buf = gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(name),
                size: size as u64,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: true,
            });
            if pollster::block_on(scope.pop()).is_some() {
                return Err(GpuError::OutOfMemory {
                    what: name.to_string(),
                    bytes: size as u64,
                    adapter: gpu.adapter_name().to_string(),
                });
            }
            {
                let mut view = buf
                    .get_mapped_range_mut(..)
                    .map_err(|e| GpuError::Readback(e.to_string()))?;
                let src = &data[row0 * src_row..(row0 + rows) * src_row];
                if WeightFormat::of(ty).is_some() {
                    view.slice(..src.len()).copy_from_slice(src);
                } else {
                    scratch.resize(k, 0.0f32);
                    for (r, bytes) in src.chunks_exact(src_row).enumerate() {
                        quant::dequantize_row(ty, bytes, &mut scratch)?;
                        view.slice(r * row_bytes..(r + 1) * row_bytes)
                            .copy_from_slice(bytemuck::cast_slice(&scratch));
                    }
                }
            }
            buf.unmap();
            chunks.push(Chunk { buf, row0, rows });
            row0 += rows;
        }
        Ok(GpuMatrix {
            format,
            source_type: ty,
            k,
            m,
            row_bytes,
            chunks,
        })
    }

    /// Elements per row (input width).
    pub fn k(&self) -> usize {
        self.k
    }

    /// Rows (output width).
    pub fn m(&self) -> usize {
        self.m
    }

    /// The format the shaders decode (F32 for types without a WGSL decoder).
    pub fn format(&self) -> WeightFormat {
        self.format
    }

    /// The type the weights had in the file.
    pub fn source_type(&self) -> GgmlType {
        self.source_type
    }

    /// How many buffers the rows were split across.
    pub fn n_chunks(&self) -> usize {
        self.chunks.len()
    }
}
