//! The GPU backend: WGSL compute kernels run through wgpu (Vulkan, Metal, DX12).
//!
//! `device` picks an adapter (`--device auto|cpu|gpu[:N]`) and owns the wgpu device with our error
//! handling; `buffers` uploads weights once (split across bindings where a tensor exceeds the
//! adapter's binding limit) and holds f32 activation tensors; `pipelines` assembles the WGSL
//! sources under `shaders/` and caches compiled pipelines by a typed key; `ops` records the
//! decoder's operations into one command buffer. The numerics follow `crate::cpu` step for step
//! (its float orders, FMA contractions and f16 roundings, which are llama.cpp's), so the GPU's
//! logits equal the CPU's value for value; the op-parity suite (tests/gpu_ops_parity.rs) checks
//! every kernel against the CPU's, and tests/gpu_forward.rs the whole model. Where the adapter's
//! `fma` is not fused (lavapipe), kernels use an exact emulation (`Gpu::fused_fma`).
//!
//! `forward` runs a whole model (the layer plan of `crate::model::forward`) on these ops; it is
//! the only module here that knows tensor names.

pub mod buffers;
pub mod device;
pub mod forward;
pub mod ops;
pub mod pipelines;

pub use buffers::{GpuMatrix, GpuTensor};
pub use device::{AdapterSummary, DeviceChoice, Gpu, GpuError, GpuOptions};
pub use ops::Batch;
