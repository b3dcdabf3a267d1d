// Q8_0 weights . Q8_0 activations over one row of n_blk blocks, in the float order of ggml-cpu's
// AVX2 ggml_vec_dot_q8_0_q8_0 (crate::quant::x86::avx2::legacy::vec_dot_q8_0): per block, lane l
// (0..8) is the exact integer sum of elements 4l..4l+3, accumulated as fma_x(d_w * d_a, lane, acc_l)
// (the product of two f16s is exact in f32); hsum8 at the end. ggml takes this kernel for every
// batch size, so `batch` is unused.
fn row_dot(base: u32, blk0: u32, n_blk: u32, batch: bool) -> f32 {
    var acc: array<f32, 8>;
    for (var bi = 0u; bi < n_blk; bi = bi + 1u) {
        let b = base + bi * BLOCK_BYTES;
        let a0 = (blk0 + bi) * 32u;
        let d = wf16(b) * ad[blk0 + bi];
        for (var l = 0u; l < 8u; l = l + 1u) {
            let q = wword(b + 2u + 4u * l);
            let wq = vec4<i32>(bitcast<i32>(q << 24u) >> 24u, bitcast<i32>(q << 16u) >> 24u,
                               bitcast<i32>(q << 8u) >> 24u, bitcast<i32>(q) >> 24u);
            acc[l] = fma_x(d, f32(dot(wq, aq[(a0 >> 2u) + l])), acc[l]);
        }
    }
    return hsum8(acc);
}
