// Activation rows quantized as ggml-cpu quantizes them before a dot with Q8_0-family or k-quant
// weights (crate::cpu::act_quant), so that the weight kernels in matmul_q8.wgsl multiply the same
// integers the CPU does. One invocation per block of `bs` values:
//   bs = 32 (Q8_0, ggml's x86 quantize_row_q8_0): d = f16(amax / 127),
//            q = round_half_even(x * (127 / amax));
//   bs = 256 (Q8_K, quantize_row_q8_K_ref): max = the first value of largest magnitude,
//            iscale = -127 / max, q = min(round_half_even(iscale * x), 127), d = 1 / iscale.
// Quants go to `aq` one i32 per element, scales to `ad` one f32 per block (0 for an all-zero
// block, whose quants are all 0). Divisions are correctly rounded (div_exact): one ulp of the
// inverse scale moves quants by a step.
#include "common/round_f16.wgsl"
#include "common/exact.wgsl"

struct Params {
    n_blocks: u32,
    bs: u32,
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// A zero the compiler cannot see (common/exact.wgsl, common/fma_soft.wgsl).
fn opaque_zero() -> u32 {
    return p._p0;
}
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> aq: array<i32>;
@group(0) @binding(3) var<storage, read_write> ad: array<f32>;


@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let blk = gid.x + gid.y * nwg.x * 64u;
    if (blk >= p.n_blocks) {
        return;
    }
    let x0 = blk * p.bs;
    var amax = 0.0;
    var mx = 0.0;
    for (var i = 0u; i < p.bs; i = i + 1u) {
        let v = x[x0 + i];
        if (abs(v) > amax) {
            amax = abs(v);
            mx = v;
        }
    }
    if (amax == 0.0) {
        for (var i = 0u; i < p.bs; i = i + 1u) {
            aq[x0 + i] = 0;
        }
        ad[blk] = 0.0;
        return;
    }
    if (p.bs == 32u) {
        let id = div_exact(127.0, amax);
        for (var i = 0u; i < p.bs; i = i + 1u) {
            aq[x0 + i] = clamp(i32(round(x[x0 + i] * id)), -128, 127);
        }
        ad[blk] = round_f16(div_exact(amax, 127.0));
    } else {
        let iscale = div_exact(-127.0, mx);
        for (var i = 0u; i < p.bs; i = i + 1u) {
            aq[x0 + i] = min(i32(round(iscale * x[x0 + i])), 127);
        }
        ad[blk] = div_exact(1.0, iscale);
    }
}
