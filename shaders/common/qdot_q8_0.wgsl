// Q8_0 weights . Q8_0 activations: one weight row against the activation rows of tokens
// t0..t0+nt (at most 8), in the float order of ggml-cpu's AVX2 ggml_vec_dot_q8_0_q8_0
// (crate::quant::x86::avx2::legacy::vec_dot_q8_0), for each token separately: per block, lane l
// (0..8) is the exact integer sum of elements 4l..4l+3, accumulated as fma(d_w * d_a, lane, acc_l)
// (the product of two f16s is exact in f32); hsum8 at the end. Each weight block is decoded once
// for all the tokens. ggml takes this kernel for every batch size (no batch order).
fn row_dot_tile(base: u32, t0: u32, nt: u32, n_blk: u32) -> array<f32, 8> {
    var acc: array<array<f32, 8>, 8>;
    for (var bi = 0u; bi < n_blk; bi = bi + 1u) {
        let b = base + bi * BLOCK_BYTES;
        let dw = wf16(b);
        var wq: array<vec4<i32>, 8>;
        for (var l = 0u; l < 8u; l = l + 1u) {
            let q = wword(b + 2u + 4u * l);
            wq[l] = vec4<i32>(bitcast<i32>(q << 24u) >> 24u, bitcast<i32>(q << 16u) >> 24u,
                              bitcast<i32>(q << 8u) >> 24u, bitcast<i32>(q) >> 24u);
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
