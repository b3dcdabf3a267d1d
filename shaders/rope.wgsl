// Rotary position embedding in place over x laid out [token][head][head_dim]. The angles come in
// cs ([token][n_rot]: cos, sin per pair), computed on the host by crate::cpu::ops::rope_cache so
// that both backends rotate by bit-identical angles (GPU sin/cos of large arguments are coarse).
// neox = 0 pairs (2i, 2i+1) as ggml's NORMAL mode; neox = 1 pairs (i, i + n_rot/2).
#include "common/fma.wgsl"

struct Params {
    head_dim: u32,
    n_rot: u32,
    n_head: u32,
    n_tok: u32,
    neox: u32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// A zero the compiler cannot see (common/exact.wgsl, common/fma_soft.wgsl).
fn opaque_zero() -> u32 {
    return p._p0;
}
@group(0) @binding(1) var<storage, read_write> cs: array<f32>;
@group(0) @binding(2) var<storage, read_write> x: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let half = p.n_rot / 2u;
    let i = gid.x + gid.y * nwg.x * 64u;
    if (i >= p.n_tok * p.n_head * half) {
        return;
    }
    let pair = i % half;
    let head = i / half;
    let t = head / p.n_head;
    let c = cs[t * p.n_rot + 2u * pair];
    let s = cs[t * p.n_rot + 2u * pair + 1u];
    var a = head * p.head_dim + 2u * pair;
    var b = a + 1u;
    if (p.neox != 0u) {
        a = head * p.head_dim + pair;
        b = a + half;
    }
    let x0 = x[a];
    let x1 = x[b];
    // As crate::cpu::ops::rope (ggml-cpu's contracted C): the first product fused with the sum,
    // the second rounded on its own.
    x[a] = fma_x(x0, c, -(x1 * s));
    x[b] = fma_x(x0, s, x1 * c);
}
