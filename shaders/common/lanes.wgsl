// ggml-cpu's horizontal sums of FMA lanes, for the float orders the CPU forward mirrors.

// crate::cpu::ops::hsum8 (ggml's hsum_float_8): the upper four lanes added to the lower, then
// pairs two apart, then the last two.
fn hsum8(l: array<f32, 8>) -> f32 {
    let r0 = l[4] + l[0];
    let r1 = l[5] + l[1];
    let r2 = l[6] + l[2];
    let r3 = l[7] + l[3];
    return (r0 + r2) + (r1 + r3);
}

// crate::cpu::ggml_order::VecDotF16Lanes::reduce (ggml_vec_dot_f16's four registers of eight
// lanes): lane l of the four registers summed as (0 + 2) + (1 + 3), then as hsum's first steps.
fn reduce32(x: array<f32, 32>) -> f32 {
    var v: array<f32, 8>;
    for (var l = 0u; l < 8u; l = l + 1u) {
        v[l] = (x[l] + x[16u + l]) + (x[8u + l] + x[24u + l]);
    }
    let t0 = v[0] + v[4];
    let t1 = v[1] + v[5];
    let t2 = v[2] + v[6];
    let t3 = v[3] + v[7];
    return (t0 + t1) + (t2 + t3);
}
