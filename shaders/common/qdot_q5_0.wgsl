// Q5_0 weights . Q8_0 activations over one row of n_blk blocks, in the float order of ggml-cpu's
// AVX2 ggml_vec_dot_q5_0_q8_0 (crate::quant::x86::avx2::legacy::vec_dot_q5_0): per block, lane l
// (0..8) is the exact integer sum of (q_w - 16) * q_a over elements 4l..4l+3, accumulated as
// fma_x(d_w * d_a, lane, acc_l); hsum8 at the end. Element e < 16 is the low nibble of qs[e], element
// e >= 16 the high nibble of qs[e - 16], each with bit e of qh as its fifth bit. `batch` is unused.
fn row_dot(base: u32, blk0: u32, n_blk: u32, batch: bool) -> f32 {
    var acc: array<f32, 8>;
    for (var bi = 0u; bi < n_blk; bi = bi + 1u) {
        let b = base + bi * BLOCK_BYTES;
        let a0 = (blk0 + bi) * 32u;
        let d = wf16(b) * ad[blk0 + bi];
        let qh = wword(b + 2u);
        for (var l = 0u; l < 8u; l = l + 1u) {
            var s = 0;
            for (var k = 0u; k < 4u; k = k + 1u) {
                let e = 4u * l + k;
                let byte = wbyte(b + 6u + (e & 15u));
                let nib = (byte >> (4u * (e >> 4u))) & 0xfu;
                let q = i32(nib | (((qh >> e) & 1u) << 4u)) - 16;
                s = s + q * aq[a0 + e];
            }
            acc[l] = fma_x(d, f32(s), acc[l]);
        }
    }
    return hsum8(acc);
}
