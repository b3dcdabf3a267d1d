// Gated activations: out = act(gate) * up. kind 0: GELU as ggml-cpu evaluates it, by looking the
// f16-rounded input up in its table of f16 results (`table`, built by the host from the CPU's
// formula, indexed by the f16's bits), saturating outside (-10, 10); kind 1: SiLU.

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
@group(0) @binding(4) var<storage, read> table: array<f32>;

// The bits of the f16 that holds `r` exactly (r is a round_f16 result in (-10, 10)).
fn f16_bits(r: f32) -> u32 {
    let b = bitcast<u32>(r);
    let sign = (b >> 16u) & 0x8000u;
    let a = abs(r);
    if (a < 6.1035156e-5) {
        // Zero or subnormal: the mantissa counts multiples of 2^-24.
        return sign | u32(a * 16777216.0);
    }
    let e = ((b >> 23u) & 0xffu) - 112u;
    return sign | (e << 10u) | ((b >> 13u) & 0x3ffu);
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
            a = table[f16_bits(round_f16(g))];
        }
    } else {
        a = g / (1.0 + exp(-g));
    }
    out[i] = a * up[i];
}
