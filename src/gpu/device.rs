//! Adapter selection (`--device auto|cpu|gpu[:N]`), the wgpu device and queue, and how GPU faults
//! become errors: wgpu's default uncaptured-error handler panics, so we install one that records
//! the first error, and a device-lost callback that records the reason; `Gpu::wait` checks both
//! after every submission and bounds the wait, so a lost device is a message, not a hang.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::pipelines::{PipelineCache, ShaderCaps};

/// Longest wait for one submission. A decode step of a large model takes milliseconds on a GPU
/// and seconds on lavapipe; a minute without completion means the device is gone.
const SUBMIT_TIMEOUT: Duration = Duration::from_secs(120);

/// Errors of the GPU backend. Messages name the adapter or kernel involved.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error("no GPU adapter found (wgpu saw no Vulkan, Metal or DX12 device); use --device cpu")]
    NoAdapter,
    #[error("GPU adapter {index} does not exist: {count} adapter(s) found (see `infer devices`)")]
    NoSuchAdapter { index: usize, count: usize },
    #[error("bad --device value {0:?}: expected auto, cpu, gpu or gpu:N")]
    BadChoice(String),
    #[error("could not open GPU adapter {adapter}: {msg}")]
    RequestDevice { adapter: String, msg: String },
    #[error("GPU device lost ({adapter}): {msg}")]
    DeviceLost { adapter: String, msg: String },
    #[error("GPU error on {adapter}: {msg}")]
    Device { adapter: String, msg: String },
    #[error("GPU work did not complete within {secs} s on {adapter}")]
    Timeout { adapter: String, secs: u64 },
    #[error("shader {kernel} does not compile: {msg}")]
    Shader { kernel: String, msg: String },
    #[error("GPU readback failed: {0}")]
    Readback(String),
    #[error(
        "{what} needs a {need}-byte buffer but the GPU adapter {adapter} allows {limit} bytes per buffer"
    )]
    TooLarge {
        what: String,
        need: u64,
        limit: u64,
        adapter: String,
    },
    #[error("GPU adapter {adapter} is out of memory allocating {bytes} bytes for {what}: the model does not fit; use --device cpu")]
    OutOfMemory {
        what: String,
        bytes: u64,
        adapter: String,
    },
    #[error("{what}: {msg}")]
    Shape { what: String, msg: String },
    #[error(transparent)]
    Quant(#[from] crate::quant::QuantError),
}

/// Where to run the model, as given by `--device`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceChoice {
    /// The best discrete or integrated GPU if there is one, else the CPU.
    Auto,
    Cpu,
    /// The best adapter of any kind (`None`), or adapter N of `infer devices`.
    Gpu(Option<usize>),
}

impl FromStr for DeviceChoice {
    type Err = GpuError;
    fn from_str(s: &str) -> Result<Self, GpuError> {
        let bad = || GpuError::BadChoice(s.to_string());
        match s {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "gpu" => Ok(DeviceChoice::Gpu(None)),
            _ => {
                let n = s.strip_prefix("gpu:").ok_or_else(bad)?;
                n.parse()
                    .map(|n| DeviceChoice::Gpu(Some(n)))
                    .map_err(|_| bad())
            }
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceChoice::Auto => f.write_str("auto"),
            DeviceChoice::Cpu => f.write_str("cpu"),
            DeviceChoice::Gpu(None) => f.write_str("gpu"),
            DeviceChoice::Gpu(Some(n)) => write!(f, "gpu:{n}"),
        }
    }
}

/// What `infer devices` prints about one adapter.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    pub index: usize,
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub max_buffer_size: u64,
    pub max_storage_binding: u64,
    pub max_workgroup_invocations: u32,
    pub max_workgroup_storage: u32,
    pub shader_f16: bool,
    pub subgroups: bool,
}

fn instance() -> wgpu::Instance {
    wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env())
}

fn adapters(instance: &wgpu::Instance) -> Vec<wgpu::Adapter> {
    pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()))
        .into_iter()
        // The GL backend is not compiled in; anything else without compute shaders is of no use.
        .filter(|a| a.get_downlevel_capabilities().is_webgpu_compliant() || is_compute(a))
        .collect()
}

fn is_compute(a: &wgpu::Adapter) -> bool {
    a.get_downlevel_capabilities()
        .flags
        .contains(wgpu::DownlevelFlags::COMPUTE_SHADERS)
}

fn summary(index: usize, a: &wgpu::Adapter) -> AdapterSummary {
    let info = a.get_info();
    let limits = a.limits();
    let features = a.features();
    AdapterSummary {
        index,
        name: info.name,
        backend: format!("{:?}", info.backend),
        device_type: format!("{:?}", info.device_type),
        driver: format!("{} {}", info.driver, info.driver_info)
            .trim()
            .to_string(),
        max_buffer_size: limits.max_buffer_size,
        max_storage_binding: limits.max_storage_buffer_binding_size,
        max_workgroup_invocations: limits.max_compute_invocations_per_workgroup,
        max_workgroup_storage: limits.max_compute_workgroup_storage_size,
        shader_f16: features.contains(wgpu::Features::SHADER_F16),
        subgroups: features.contains(wgpu::Features::SUBGROUP),
    }
}

/// Every adapter wgpu finds, in the order `gpu:N` counts them.
pub fn list_adapters() -> Vec<AdapterSummary> {
    let inst = instance();
    adapters(&inst)
        .iter()
        .enumerate()
        .map(|(i, a)| summary(i, a))
        .collect()
}

/// Preference among adapter kinds: a discrete GPU first, a CPU rasteriser (lavapipe) last.
fn rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

/// Optional adapter abilities the kernels may use; each has a portable fallback.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Caps {
    pub shader_f16: bool,
    pub subgroups: bool,
}

/// Which of the adapter's optional abilities the kernels may use (each only where the adapter
/// has it). Turning one off forces its portable fallback, which gives the same bits: the parity
/// suite runs both forms on adapters that have the ability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GpuOptions {
    pub subgroups: bool,
}

impl Default for GpuOptions {
    fn default() -> Self {
        GpuOptions { subgroups: true }
    }
}

/// Faults reported by wgpu's callbacks, read after each submission.
#[derive(Default)]
struct Faults {
    error: Mutex<Option<String>>,
    lost: Mutex<Option<String>>,
}

/// An open GPU: device, queue, limits and the pipeline cache.
pub struct Gpu {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    caps: Caps,
    faults: Arc<Faults>,
    pub(crate) pipelines: PipelineCache,
    /// ggml-cpu's GELU table (`crate::cpu::ops::geglu`), uploaded on first use by `glu`.
    pub(crate) gelu_table: std::sync::OnceLock<super::buffers::GpuTensor>,
    /// Whether WGSL's fma rounds once here (see `probe_fused_fma`).
    fused_fma: bool,
}

impl Gpu {
    /// Open the adapter `choice` names. `Ok(None)` means: run on the CPU (`cpu`, or `auto` without
    /// a discrete/integrated GPU).
    pub fn open(choice: DeviceChoice) -> Result<Option<Gpu>, GpuError> {
        Gpu::open_with(choice, GpuOptions::default())
    }

    /// [`Gpu::open`] with only the optional abilities `opts` allows.
    pub fn open_with(choice: DeviceChoice, opts: GpuOptions) -> Result<Option<Gpu>, GpuError> {
        if choice == DeviceChoice::Cpu {
            return Ok(None);
        }
        let inst = instance();
        let list = adapters(&inst);
        let adapter = match choice {
            DeviceChoice::Cpu => return Ok(None),
            DeviceChoice::Gpu(Some(index)) => {
                list.into_iter().nth(index).ok_or(GpuError::NoSuchAdapter {
                    index,
                    count: adapters(&inst).len(),
                })?
            }
            DeviceChoice::Gpu(None) => list
                .into_iter()
                .min_by_key(|a| rank(a.get_info().device_type))
                .ok_or(GpuError::NoAdapter)?,
            DeviceChoice::Auto => {
                match list
                    .into_iter()
                    .filter(|a| rank(a.get_info().device_type) <= 1)
                    .min_by_key(|a| rank(a.get_info().device_type))
                {
                    Some(a) => a,
                    None => return Ok(None),
                }
            }
        };
        Gpu::from_adapter(adapter, opts).map(Some)
    }

    fn from_adapter(adapter: wgpu::Adapter, opts: GpuOptions) -> Result<Gpu, GpuError> {
        let info = adapter.get_info();
        let features = adapter.features();
        let caps = Caps {
            shader_f16: features.contains(wgpu::Features::SHADER_F16),
            subgroups: opts.subgroups && features.contains(wgpu::Features::SUBGROUP),
        };
        let mut required_features = wgpu::Features::empty();
        if caps.shader_f16 {
            required_features |= wgpu::Features::SHADER_F16;
        }
        if caps.subgroups {
            required_features |= wgpu::Features::SUBGROUP;
        }
        // The adapter's own limits, not WebGPU's defaults: the defaults cap storage bindings at
        // 128 MiB and buffers at 256 MiB even on GPUs that allow gigabytes.
        let limits = adapter.limits();
        let desc = wgpu::DeviceDescriptor {
            label: Some("infer"),
            required_features,
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&desc)).map_err(|e| {
            GpuError::RequestDevice {
                adapter: info.name.clone(),
                msg: e.to_string(),
            }
        })?;
        let faults = Arc::new(Faults::default());
        let f = faults.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let mut slot = f.error.lock().unwrap_or_else(|p| p.into_inner());
            if slot.is_none() {
                *slot = Some(e.to_string());
            }
        }));
        let f = faults.clone();
        device.set_device_lost_callback(move |reason, msg| {
            let mut slot = f.lost.lock().unwrap_or_else(|p| p.into_inner());
            *slot = Some(if msg.is_empty() {
                format!("{reason:?}")
            } else {
                format!("{reason:?}: {msg}")
            });
        });
        let fused_fma = probe_fused_fma(&device, &queue)?;
        Ok(Gpu {
            device,
            queue,
            info,
            limits,
            caps,
            faults,
            pipelines: PipelineCache::default(),
            gelu_table: std::sync::OnceLock::new(),
            fused_fma,
        })
    }

    /// Whether WGSL's `fma` rounds once on this adapter; where it does not (lavapipe), the kernels
    /// that mirror the CPU's FMA chains use an emulation (shaders/common/fma_soft.wgsl).
    pub fn fused_fma(&self) -> bool {
        self.fused_fma
    }

    /// What the kernels assembled for this device may use.
    pub fn shader_caps(&self) -> ShaderCaps {
        ShaderCaps {
            fused_fma: self.fused_fma,
            subgroups: self.caps.subgroups,
        }
    }

    pub fn adapter_name(&self) -> &str {
        &self.info.name
    }

    /// "name (Vulkan, Cpu)" for messages.
    pub fn describe(&self) -> String {
        format!(
            "{} ({:?}, {:?})",
            self.info.name, self.info.backend, self.info.device_type
        )
    }

    pub fn is_cpu_adapter(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }

    pub fn caps(&self) -> Caps {
        self.caps
    }

    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }

    /// The most bytes one storage binding (and so one weight chunk) may hold.
    pub fn max_binding(&self) -> u64 {
        self.limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size)
    }

    /// The first fault wgpu reported, as an error.
    pub fn check(&self) -> Result<(), GpuError> {
        let errored = self
            .faults
            .error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some();
        if errored {
            // Errors are often the echo of a lost device whose callback runs at the next poll;
            // poll once so the cause, not the echo, is reported.
            let _ = self.device.poll(wgpu::PollType::Poll);
        }
        let lost = self
            .faults
            .lost
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(msg) = lost {
            return Err(GpuError::DeviceLost {
                adapter: self.info.name.clone(),
                msg,
            });
        }
        let err = self
            .faults
            .error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        match err {
            Some(msg) => Err(GpuError::Device {
                adapter: self.info.name.clone(),
                msg,
            }),
            None => Ok(()),
        }
    }

    /// Give the device up now (wgpu reports it lost); every later use of this `Gpu` is an error.
    pub fn destroy(&self) {
        self.device.destroy();
    }

    /// Block until all submitted work is done (bounded), then report any fault.
    pub fn wait(&self) -> Result<(), GpuError> {
        let r = self.device.poll(wgpu::PollType::Wait {
            submission_index: None,
            timeout: Some(SUBMIT_TIMEOUT),
        });
        self.check()?;
        match r {
            Ok(_) => Ok(()),
            Err(wgpu::PollError::Timeout) => Err(GpuError::Timeout {
                adapter: self.info.name.clone(),
                secs: SUBMIT_TIMEOUT.as_secs(),
            }),
            Err(e) => Err(GpuError::DeviceLost {
                adapter: self.info.name.clone(),
                msg: e.to_string(),
            }),
        }
    }
}

/// Run shaders/fma_probe.wgsl once: `fma(1 + 2^-12, 1 + 2^-12, -(1 + 2^-11))` is 2^-24 rounded
/// once and 0 rounded twice.
fn probe_fused_fma(device: &wgpu::Device, queue: &wgpu::Queue) -> Result<bool, GpuError> {
    let fail = |msg: String| GpuError::Shader {
        kernel: "fma_probe".into(),
        msg,
    };
    let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("fma_probe"),
        source: wgpu::ShaderSource::Wgsl(include_str!("../../shaders/fma_probe.wgsl").into()),
    });
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some("fma_probe"),
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    });
    let a = 1.0f32 + (-12f32).exp2();
    let c = -(1.0f32 + (-11f32).exp2());
    let data = [a, a, c, 1.0];
    let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC;
    let buf = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("fma_probe"),
        size: 16,
        usage: usage | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    queue.write_buffer(&buf, 0, bytemuck::cast_slice(&data));
    let read = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("fma_probe_read"),
        size: 16,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let bind = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &pipeline.get_bind_group_layout(0),
        entries: &[wgpu::BindGroupEntry {
            binding: 0,
            resource: buf.as_entire_binding(),
        }],
    });
    let mut enc = device.create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
    {
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind, &[]);
        pass.dispatch_workgroups(1, 1, 1);
    }
    enc.copy_buffer_to_buffer(&buf, 0, &read, 0, 16);
    queue.submit([enc.finish()]);
    if let Some(e) = pollster::block_on(scope.pop()) {
        return Err(fail(e.to_string()));
    }
    let (tx, rx) = std::sync::mpsc::channel();
    read.map_async(wgpu::MapMode::Read, .., move |r| {
        let _ = tx.send(r);
    });
    device
        .poll(wgpu::PollType::wait_indefinitely())
        .map_err(|e| fail(e.to_string()))?;
    match rx.recv() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(fail(e.to_string())),
        Err(e) => return Err(fail(e.to_string())),
    }
    let view = read.get_mapped_range(..).map_err(|e| fail(e.to_string()))?;
    let got: Vec<f32> = bytemuck::pod_collect_to_vec(&view);
    Ok(got.get(3).copied() == Some(a.mul_add(a, c)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_choice_parses_and_prints() {
        for (s, c) in [
            ("auto", DeviceChoice::Auto),
            ("cpu", DeviceChoice::Cpu),
            ("gpu", DeviceChoice::Gpu(None)),
            ("gpu:2", DeviceChoice::Gpu(Some(2))),
        ] {
            assert_eq!(s.parse::<DeviceChoice>().unwrap(), c);
            assert_eq!(c.to_string(), s);
        }
        for bad in ["", "GPU", "gpu:", "gpu:-1", "gpu:x", "cuda", "gpu1"] {
            assert!(
                matches!(bad.parse::<DeviceChoice>(), Err(GpuError::BadChoice(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn discrete_gpus_rank_before_cpu_rasterisers() {
        assert!(rank(wgpu::DeviceType::DiscreteGpu) < rank(wgpu::DeviceType::IntegratedGpu));
        assert!(rank(wgpu::DeviceType::IntegratedGpu) < rank(wgpu::DeviceType::Cpu));
    }
}
