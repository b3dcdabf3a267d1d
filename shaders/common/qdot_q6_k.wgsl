// Q6_K weights . Q8_K activations, one block (crate::quant::q6_k::vec_dot):
// d_w * d_a * sum_j sc_j * sum((q_w - 32) * q_a) over the sixteen 16-element sub-blocks j.
fn qdot(b: u32, a0: u32, ab: u32) -> f32 {
    var isum = 0;
    for (var h = 0u; h < 2u; h = h + 1u) {
        let ql = b + 64u * h;
        let qh = b + 128u + 32u * h;
        let sc = b + 192u + 8u * h;
        let a = a0 + 128u * h;
        for (var t = 0u; t < 2u; t = t + 1u) {
            var sub = vec4<i32>(0);
            for (var l = 16u * t; l < 16u * t + 16u; l = l + 1u) {
                let l0 = wbyte(ql + l);
                let l1 = wbyte(ql + l + 32u);
                let hb = wbyte(qh + l);
                let q1 = i32((l0 & 0xfu) | ((hb & 3u) << 4u)) - 32;
                let q2 = i32((l1 & 0xfu) | (((hb >> 2u) & 3u) << 4u)) - 32;
                let q3 = i32((l0 >> 4u) | (((hb >> 4u) & 3u) << 4u)) - 32;
                let q4 = i32((l1 >> 4u) | (((hb >> 6u) & 3u) << 4u)) - 32;
                sub = sub + vec4<i32>(q1 * aq[a + l], q2 * aq[a + l + 32u],
                                      q3 * aq[a + l + 64u], q4 * aq[a + l + 96u]);
            }
            for (var k = 0u; k < 4u; k = k + 1u) {
                let s = bitcast<i32>(wbyte(sc + t + 2u * k) << 24u) >> 24u;
                isum = isum + sub[k] * s;
            }
        }
    }
    return wf16(b + 208u) * ad[ab] * f32(isum);
}
