// a * b + c rounded once: the adapter's fma is fused (probed when the device opens).
fn fma_x(a: f32, b: f32, c: f32) -> f32 {
    return fma(a, b, c);
}

// common/fma_soft.wgsl's split and short-operand form, for the kernels that call them.
fn fma_split(a: f32) -> vec2<f32> {
    let hi = bitcast<f32>(bitcast<u32>(a) & 0xfffff000u);
    return vec2<f32>(hi, a - hi);
}

fn fma_x_short(a: f32, b: f32, bs: vec2<f32>, c: f32) -> f32 {
    return fma(a, b, c);
}
