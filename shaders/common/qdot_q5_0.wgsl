// Q5_0 weights . Q8_0 activations: one weight row against the activation rows of tokens
// t0..t0+nt (at most 8), in the float order of ggml-cpu's AVX2 ggml_vec_dot_q5_0_q8_0
// (crate::quant::x86::avx2::legacy::vec_dot_q5_0), for each token separately: per block, lane l
// (0..8) is the exact integer sum of (q_w - 16) * q_a over elements 4l..4l+3, accumulated as
// fma(d_w * d_a, lane, acc_l); hsum8 at the end. Element e < 16 is the low nibble of qs[e],
// element e >= 16 the high nibble of qs[e - 16], each with bit e of qh as its fifth bit. Each
// weight block is decoded once for all the tokens; ggml has no batch order for it.
fn row_dot_tile(base: u32, t0: u32, nt: u32, n_blk: u32) -> array<f32, 8> {
    var acc: array<array<f32, 8>, 8>;
    for (var bi = 0u; bi < n_blk; bi = bi + 1u) {
        let b = base + bi * BLOCK_BYTES;
        let dw = wf16(b);
        let qh = wword(b + 2u);
        var wq: array<vec4<i32>, 8>;
        for (var l = 0u; l < 8u; l = l + 1u) {
            // Elements 4l..4l+3: nibbles of bytes 4(l % 4).. of qs, low for l < 4, high after.
            let q = (wword(b + 6u + 4u * (l & 3u)) >> (4u * (l >> 2u))) & 0x0f0f0f0fu;
            let h = (qh >> (4u * l)) & 0xfu;
            wq[l] = vec4<i32>(
                i32((q & 0xfu) | ((h & 1u) << 4u)),
                i32(((q >> 8u) & 0xfu) | ((h & 2u) << 3u)),
                i32(((q >> 16u) & 0xfu) | ((h & 4u) << 2u)),
                i32(((q >> 24u) & 0xfu) | ((h & 8u) << 1u))) - vec4<i32>(16);
        }
        for (var t = 0u; t < nt; t = t + 1u) {
            let ab = (t0 + t) * n_blk + bi;
            let d = dw * ad[ab];
            for (var l = 0u; l < 8u; l = l + 1u) {
                acc[t][l] = fma_x(d, f32(dot(wq[l], aq[8u * ab + l])), acc[t][l]);
            }
        }
    }
    var out: array<f32, 8>;
    for (var t = 0u; t < nt; t = t + 1u) {
        out[t] = hsum8(acc[t]);
    }
    return out;
}
