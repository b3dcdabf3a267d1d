// Q5_0 weights . Q8_0 activations, one block (crate::quant::q5_0::vec_dot):
// (d_w * d_a) * sum((q_w - 16) * q_a).
fn qdot(b: u32, a0: u32, ab: u32) -> f32 {
    let qh = wword(b + 2u);
    var s = 0;
    for (var j = 0u; j < 16u; j = j + 1u) {
        let byte = wbyte(b + 6u + j);
        let lo = i32((byte & 0xfu) | (((qh >> j) & 1u) << 4u)) - 16;
        let hi = i32((byte >> 4u) | (((qh >> (j + 16u)) & 1u) << 4u)) - 16;
        s = s + lo * aq[a0 + j] + hi * aq[a0 + j + 16u];
    }
    return (wf16(b) * ad[ab]) * f32(s);
}
