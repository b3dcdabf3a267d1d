// a * b + c rounded once: the adapter's fma is fused (probed when the device opens).
fn fma_x(a: f32, b: f32, c: f32) -> f32 {
    return fma(a, b, c);
}
