// Gated activations: out = act(gate) * up. kind 0: GELU (tanh form) evaluated as ggml-cpu does,
// on the f16-rounded input with the result rounded to f16, saturating outside (-10, 10);
// kind 1: SiLU.

#include "common/round_f16.wgsl"

struct Params {
    n: u32,
    kind: u32,
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> gate: array<f32>;
@group(0) @binding(2) var<storage, read_write> up: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

fn gelu(x: f32) -> f32 {
    let c = 0.7978846;
    return 0.5 * x * (1.0 + tanh(c * x * (1.0 + 0.044715 * x * x)));
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if (i >= p.n) {
        return;
    }
    let g = gate[i];
    var a: f32;
    if (p.kind == 0u) {
        if (g <= -10.0) {
            a = 0.0;
        } else if (g >= 10.0) {
            a = g;
        } else {
            a = round_f16(gelu(round_f16(g)));
        }
    } else {
        a = g / (1.0 + exp(-g));
    }
    out[i] = a * up[i];
}
