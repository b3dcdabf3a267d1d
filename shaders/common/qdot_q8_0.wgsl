// Q8_0 weights . Q8_0 activations, one block (crate::quant::q8_0::vec_dot):
// (d_w * d_a) * sum(q_w * q_a).
fn qdot(b: u32, a0: u32, ab: u32) -> f32 {
    var s = 0;
    for (var w = 0u; w < 8u; w = w + 1u) {
        let q = wword(b + 2u + 4u * w);
        for (var k = 0u; k < 4u; k = k + 1u) {
            s = s + (bitcast<i32>(q << (24u - 8u * k)) >> 24u) * aq[a0 + 4u * w + k];
        }
    }
    return (wf16(b) * ad[ab]) * f32(s);
}
