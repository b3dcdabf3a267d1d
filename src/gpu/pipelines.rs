//! WGSL sources and the compiled-pipeline cache. Each kernel is one file under `shaders/`; block
//! layouts and byte helpers live in `shaders/common/` and are pulled in by `#include "..."` lines,
//! resolved here before compilation (WGSL has no include of its own). `#include "weight"` stands
//! for the block layout of the kernel's weight format, so one matvec source serves every format.
//! Sizes never appear in shader text: they travel in each kernel's uniform `Params`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::device::{Gpu, GpuError};
use crate::quant::GgmlType;

/// Weight formats with a native WGSL block decoder. Every other type is dequantized to F32 on
/// upload (see `buffers`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WeightFormat {
    F32,
    F16,
    Q4_0,
    Q5_0,
    Q8_0,
    Q4K,
    Q6K,
}

impl WeightFormat {
    pub fn of(ty: GgmlType) -> Option<WeightFormat> {
        Some(match ty {
            GgmlType::F32 => WeightFormat::F32,
            GgmlType::F16 => WeightFormat::F16,
            GgmlType::Q4_0 => WeightFormat::Q4_0,
            GgmlType::Q5_0 => WeightFormat::Q5_0,
            GgmlType::Q8_0 => WeightFormat::Q8_0,
            GgmlType::Q4_K => WeightFormat::Q4K,
            GgmlType::Q6_K => WeightFormat::Q6K,
            _ => return None,
        })
    }

    pub fn ggml_type(self) -> GgmlType {
        match self {
            WeightFormat::F32 => GgmlType::F32,
            WeightFormat::F16 => GgmlType::F16,
            WeightFormat::Q4_0 => GgmlType::Q4_0,
            WeightFormat::Q5_0 => GgmlType::Q5_0,
            WeightFormat::Q8_0 => GgmlType::Q8_0,
            WeightFormat::Q4K => GgmlType::Q4_K,
            WeightFormat::Q6K => GgmlType::Q6_K,
        }
    }

    /// Elements the shader decodes as one unit: the ggml block, or 16 for the float formats
    /// (whose rows must then be multiples of 16 long).
    pub fn block_elems(self) -> usize {
        match self {
            WeightFormat::F32 | WeightFormat::F16 => 16,
            _ => self.ggml_type().block_size(),
        }
    }

    /// Elements per block of the activations this format's weights are multiplied with on the
    /// CPU (Q8_0: 32, Q8_K: 256), for the formats whose GPU kernels quantize activations the same
    /// way (`shaders/matmul_q8.wgsl`); `None` for those that multiply f32 activations.
    pub fn act_block(self) -> Option<usize> {
        match self {
            WeightFormat::Q5_0 | WeightFormat::Q8_0 => Some(32),
            WeightFormat::Q4K | WeightFormat::Q6K => Some(256),
            _ => None,
        }
    }

    fn qdot(self) -> Option<&'static str> {
        Some(match self {
            WeightFormat::Q5_0 => include_str!("../../shaders/common/qdot_q5_0.wgsl"),
            WeightFormat::Q8_0 => include_str!("../../shaders/common/qdot_q8_0.wgsl"),
            WeightFormat::Q4K => include_str!("../../shaders/common/qdot_q4_k.wgsl"),
            WeightFormat::Q6K => include_str!("../../shaders/common/qdot_q6_k.wgsl"),
            _ => return None,
        })
    }

    fn include(self) -> &'static str {
        match self {
            WeightFormat::F32 => include_str!("../../shaders/common/f32.wgsl"),
            WeightFormat::F16 => include_str!("../../shaders/common/f16.wgsl"),
            WeightFormat::Q4_0 => include_str!("../../shaders/common/q4_0.wgsl"),
            WeightFormat::Q5_0 => include_str!("../../shaders/common/q5_0.wgsl"),
            WeightFormat::Q8_0 => include_str!("../../shaders/common/q8_0.wgsl"),
            WeightFormat::Q4K => include_str!("../../shaders/common/q4_k.wgsl"),
            WeightFormat::Q6K => include_str!("../../shaders/common/q6_k.wgsl"),
        }
    }
}

/// One compute kernel (one file under `shaders/`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    Matvec,
    Matmul,
    MatmulQ8,
    QuantizeAct,
    GetRows,
    RmsNorm,
    Rope,
    Softmax,
    Attention,
    FlashAttn,
    KvStore,
    Glu,
    Add,
    Scale,
    Softcap,
    Argmax,
}

impl Kernel {
    fn name(self) -> &'static str {
        match self {
            Kernel::Matvec => "matvec",
            Kernel::Matmul => "matmul",
            Kernel::MatmulQ8 => "matmul_q8",
            Kernel::QuantizeAct => "quantize_act",
            Kernel::GetRows => "get_rows",
            Kernel::RmsNorm => "rms_norm",
            Kernel::Rope => "rope",
            Kernel::Softmax => "softmax",
            Kernel::Attention => "attention",
            Kernel::FlashAttn => "flash_attn",
            Kernel::KvStore => "kv_store",
            Kernel::Glu => "glu",
            Kernel::Add => "add",
            Kernel::Scale => "scale",
            Kernel::Softcap => "softcap",
            Kernel::Argmax => "argmax",
        }
    }

    fn source(self) -> &'static str {
        match self {
            Kernel::Matvec => include_str!("../../shaders/matvec.wgsl"),
            Kernel::Matmul => include_str!("../../shaders/matmul.wgsl"),
            Kernel::MatmulQ8 => include_str!("../../shaders/matmul_q8.wgsl"),
            Kernel::QuantizeAct => include_str!("../../shaders/quantize_act.wgsl"),
            Kernel::GetRows => include_str!("../../shaders/get_rows.wgsl"),
            Kernel::RmsNorm => include_str!("../../shaders/rms_norm.wgsl"),
            Kernel::Rope => include_str!("../../shaders/rope.wgsl"),
            Kernel::Softmax => include_str!("../../shaders/softmax.wgsl"),
            Kernel::Attention => include_str!("../../shaders/attention.wgsl"),
            Kernel::FlashAttn => include_str!("../../shaders/flash_attn.wgsl"),
            Kernel::KvStore => include_str!("../../shaders/kv_store.wgsl"),
            Kernel::Glu => include_str!("../../shaders/glu.wgsl"),
            Kernel::Add => include_str!("../../shaders/add.wgsl"),
            Kernel::Scale => include_str!("../../shaders/scale.wgsl"),
            Kernel::Softcap => include_str!("../../shaders/softcap.wgsl"),
            Kernel::Argmax => include_str!("../../shaders/argmax.wgsl"),
        }
    }
}

/// What identifies a compiled pipeline: the kernel and, for weight kernels, the block format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PipelineKey {
    pub kernel: Kernel,
    pub weight: Option<WeightFormat>,
}

/// Compiled pipelines, built on first use.
#[derive(Default)]
pub struct PipelineCache {
    map: Mutex<HashMap<PipelineKey, Arc<wgpu::ComputePipeline>>>,
}

fn common(name: &str) -> Option<&'static str> {
    Some(match name {
        "common/bytes.wgsl" => include_str!("../../shaders/common/bytes.wgsl"),
        "common/reduce.wgsl" => include_str!("../../shaders/common/reduce.wgsl"),
        "common/round_f16.wgsl" => include_str!("../../shaders/common/round_f16.wgsl"),
        "common/exact.wgsl" => include_str!("../../shaders/common/exact.wgsl"),
        "common/lanes.wgsl" => include_str!("../../shaders/common/lanes.wgsl"),
        "common/expf.wgsl" => include_str!("../../shaders/common/expf.wgsl"),
        "common/fma_fused.wgsl" => include_str!("../../shaders/common/fma_fused.wgsl"),
        "common/fma_soft.wgsl" => include_str!("../../shaders/common/fma_soft.wgsl"),
        "common/reduce_subgroup.wgsl" => include_str!("../../shaders/common/reduce_subgroup.wgsl"),
        "common/argmax_wg.wgsl" => include_str!("../../shaders/common/argmax_wg.wgsl"),
        "common/argmax_subgroup.wgsl" => include_str!("../../shaders/common/argmax_subgroup.wgsl"),
        _ => return None,
    })
}

/// What the adapter lets the assembled kernels use. Each ability picks an include with a
/// portable twin that gives the same bits: the adapter's fused `fma` (else an exact emulation),
/// subgroup maxima and minima in the reductions that only take a maximum or a minimum (else
/// workgroup trees). `shader-f16` is not used: F16 weights read through
/// `bitcast<vec2<f16>>` came back wrong on lavapipe (Mesa 22.3), where `unpack2x16float` (exact
/// as well) is right, and nothing could check a real GPU's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ShaderCaps {
    pub fused_fma: bool,
    pub subgroups: bool,
}

/// The file an `#include` of a common name stands for under `caps`.
fn variant(name: &str, caps: ShaderCaps) -> &str {
    match name {
        "common/fma.wgsl" if caps.fused_fma => "common/fma_fused.wgsl",
        "common/fma.wgsl" => "common/fma_soft.wgsl",
        "common/reduce.wgsl" if caps.subgroups => "common/reduce_subgroup.wgsl",
        "common/argmax_reduce.wgsl" if caps.subgroups => "common/argmax_subgroup.wgsl",
        "common/argmax_reduce.wgsl" => "common/argmax_wg.wgsl",
        other => other,
    }
}

/// The kernel's source with its `#include "..."` lines replaced by the files they name, in the
/// variants `caps` allows (see [`ShaderCaps`]); `enable` directives of included files move to
/// the top, where WGSL wants them.
pub fn assemble(key: PipelineKey, caps: ShaderCaps) -> Result<String, GpuError> {
    let err = |msg: String| GpuError::Shader {
        kernel: key.kernel.name().to_string(),
        msg,
    };
    let mut enables: Vec<&str> = Vec::new();
    let mut out = String::new();
    for line in key.kernel.source().lines() {
        let Some(rest) = line.trim().strip_prefix("#include ") else {
            out.push_str(line);
            out.push('\n');
            continue;
        };
        let name = rest.trim().trim_matches('"');
        let text = if name == "weight" {
            key.weight
                .ok_or_else(|| err("includes the weight layout but has no weight format".into()))?
                .include()
        } else if name == "qdot" {
            key.weight
                .and_then(WeightFormat::qdot)
                .ok_or_else(|| err("includes a block dot but its weight format has none".into()))?
        } else {
            let file = variant(name, caps);
            common(file).ok_or_else(|| err(format!("unknown include {file:?}")))?
        };
        for l in text.lines() {
            if l.trim_start().starts_with("enable ") {
                if !enables.contains(&l.trim()) {
                    enables.push(l.trim());
                }
            } else {
                out.push_str(l);
                out.push('\n');
            }
        }
    }
    let mut src = enables.join("\n");
    src.push('\n');
    src.push_str(&out);
    Ok(src)
}

impl PipelineCache {
    /// The pipeline for `key`, compiled on first request. Compile errors are caught with an error
    /// scope and returned, never left to wgpu's uncaptured-error path.
    pub fn get(&self, gpu: &Gpu, key: PipelineKey) -> Result<Arc<wgpu::ComputePipeline>, GpuError> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = map.get(&key) {
            return Ok(p.clone());
        }
        let src = assemble(key, gpu.shader_caps())?;
        let label = match key.weight {
            Some(w) => format!("{}-{:?}", key.kernel.name(), w),
            None => key.kernel.name().to_string(),
        };
        let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = gpu
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(&label),
                source: wgpu::ShaderSource::Wgsl(src.into()),
            });
        let pipeline = gpu
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(&label),
                layout: None,
                module: &module,
                entry_point: Some("main"),
                compilation_options: Default::default(),
                cache: None,
            });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(GpuError::Shader {
                kernel: label,
                msg: e.to_string(),
            });
        }
        let p = Arc::new(pipeline);
        map.insert(key, p.clone());
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL_CAPS: [ShaderCaps; 3] = [
        ShaderCaps {
            fused_fma: false,
            subgroups: false,
        },
        ShaderCaps {
            fused_fma: true,
            subgroups: false,
        },
        ShaderCaps {
            fused_fma: false,
            subgroups: true,
        },
    ];

    #[test]
    fn includes_are_resolved_for_every_weight_format() {
        for caps in ALL_CAPS {
            for w in [
                WeightFormat::F32,
                WeightFormat::F16,
                WeightFormat::Q4_0,
                WeightFormat::Q5_0,
                WeightFormat::Q8_0,
                WeightFormat::Q4K,
                WeightFormat::Q6K,
            ] {
                let key = PipelineKey {
                    kernel: Kernel::Matvec,
                    weight: Some(w),
                };
                let src = assemble(key, caps).unwrap();
                assert!(!src.contains("#include"), "{w:?}");
                assert!(src.contains("fn dequant16"), "{w:?}");
                assert_eq!(src.contains("subgroupMax"), caps.subgroups, "{w:?}");
            }
            let key = PipelineKey {
                kernel: Kernel::Matvec,
                weight: None,
            };
            assert!(assemble(key, caps).is_err());
            let key = PipelineKey {
                kernel: Kernel::MatmulQ8,
                weight: Some(WeightFormat::Q4K),
            };
            let src = assemble(key, caps).unwrap();
            assert!(src.contains("fn fma_x") && !src.contains("#include"));
            assert_eq!(src.contains("fma(a, b, c)"), caps.fused_fma);
        }
    }

    /// The subgroup forms replace exactly the reductions that take a maximum or a minimum.
    #[test]
    fn subgroup_forms_only_where_asked() {
        for kernel in [
            Kernel::Argmax,
            Kernel::Attention,
            Kernel::FlashAttn,
            Kernel::Softmax,
        ] {
            for caps in ALL_CAPS {
                let key = PipelineKey {
                    kernel,
                    weight: None,
                };
                let src = assemble(key, caps).unwrap();
                assert!(!src.contains("#include"), "{kernel:?}");
                assert_eq!(src.contains("subgroupM"), caps.subgroups, "{kernel:?}");
            }
        }
    }
}
