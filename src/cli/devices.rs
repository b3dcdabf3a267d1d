//! `infer devices`: the GPU adapters wgpu finds, numbered as `--device gpu:N` counts them, with
//! backend, type, driver and the limits that decide how a model is laid out on them.

use anyhow::Result;
use std::io::Write as _;

use crate::gpu::device::list_adapters;

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args) -> Result<()> {
    let list = list_adapters();
    let mut out = std::io::stdout().lock();
    if list.is_empty() {
        writeln!(
            out,
            "no GPU adapters found (no Vulkan, Metal or DX12 device); infer runs on the CPU"
        )?;
        return Ok(());
    }
    for a in &list {
        writeln!(out, "gpu:{}  {}", a.index, a.name)?;
        writeln!(out, "  backend          {}", a.backend)?;
        writeln!(out, "  type             {}", a.device_type)?;
        if !a.driver.is_empty() {
            writeln!(out, "  driver           {}", a.driver)?;
        }
        writeln!(out, "  max buffer       {}", mib(a.max_buffer_size))?;
        writeln!(out, "  max storage bind {}", mib(a.max_storage_binding))?;
        writeln!(
            out,
            "  workgroup        {} invocations, {} KiB shared",
            a.max_workgroup_invocations,
            a.max_workgroup_storage / 1024
        )?;
        writeln!(
            out,
            "  features         shader-f16 {}, subgroups {}",
            yes_no(a.shader_f16),
            yes_no(a.subgroups)
        )?;
    }
    Ok(())
}

fn mib(bytes: u64) -> String {
    format!("{} MiB", bytes / (1024 * 1024))
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}
