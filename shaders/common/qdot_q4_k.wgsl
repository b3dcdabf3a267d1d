// Q4_K weights . Q8_K activations: one weight row against the activation rows of tokens
// t0..t0+nt (at most 8), in the float orders of ggml-cpu's repacked Q4_K kernels
// (crate::cpu::ggml_order, taken by the CPU for matrices of a multiple of 8 rows; `p.flags` bit 0),
// for each token separately: per 64-element chunk c, isum_c = sc_2c * sum(lo nibbles * q_a) +
// sc_2c+1 * sum(hi nibbles * q_a) and imin_c = m_2c * sum(q_a of its first half) + m_2c+1 *
// sum(q_a of its second half), all exact integers. One-row order: per block,
// acc = fma(sum isum_c, d_w * d_a, acc), accm likewise with dmin; the gemm order (tokens before
// p.batch_end): the same FMA per chunk. The result is acc - accm. Other matrices: the scalar
// reference's acc + (d * isum - dmin * summ) per block. Each chunk is decoded once for all tokens.

// The four bytes of a word as unsigned values.
fn bytes4(q: u32) -> vec4<i32> {
    return vec4<i32>(i32(q & 0xffu), i32((q >> 8u) & 0xffu), i32((q >> 16u) & 0xffu), i32(q >> 24u));
}

fn row_dot_tile(base: u32, t0: u32, nt: u32, n_blk: u32) -> array<f32, 8> {
    var acc: array<f32, 8>;
    var accm: array<f32, 8>;
    let repacked = (p.flags & 1u) != 0u;
    let ones = vec4<i32>(1);
    for (var bi = 0u; bi < n_blk; bi = bi + 1u) {
        let b = base + bi * BLOCK_BYTES;
        let dw = wf16(b);
        let dminw = wf16(b + 2u);
        var isum: array<i32, 8>;
        var summ: array<i32, 8>;
        for (var c = 0u; c < 4u; c = c + 1u) {
            let sm_lo = q4k_scale_min(b, 2u * c);
            let sm_hi = q4k_scale_min(b, 2u * c + 1u);
            var wlo: array<vec4<i32>, 8>;
            var whi: array<vec4<i32>, 8>;
            for (var w = 0u; w < 8u; w = w + 1u) {
                let q = wword(b + 16u + 32u * c + 4u * w);
                wlo[w] = bytes4(q & 0x0f0f0f0fu);
                whi[w] = bytes4((q >> 4u) & 0x0f0f0f0fu);
            }
            for (var t = 0u; t < nt; t = t + 1u) {
                let ab = (t0 + t) * n_blk + bi;
                let x0 = 64u * ab + 16u * c;
                var lo = 0;
                var hi = 0;
                var alo = 0;
                var ahi = 0;
                for (var w = 0u; w < 8u; w = w + 1u) {
                    let xl = aq[x0 + w];
                    let xh = aq[x0 + 8u + w];
                    lo = lo + dot(wlo[w], xl);
                    hi = hi + dot(whi[w], xh);
                    alo = alo + dot(xl, ones);
                    ahi = ahi + dot(xh, ones);
                }
                let is = i32(sm_lo.x) * lo + i32(sm_hi.x) * hi;
                let im = i32(sm_lo.y) * alo + i32(sm_hi.y) * ahi;
                if (repacked && t0 + t < p.batch_end) {
                    let da = ad[ab];
                    acc[t] = fma_x(f32(is), dw * da, acc[t]);
                    accm[t] = fma_x(f32(im), dminw * da, accm[t]);
                } else {
                    isum[t] = isum[t] + is;
                    summ[t] = summ[t] + im;
                }
            }
        }
        for (var t = 0u; t < nt; t = t + 1u) {
            let ab = (t0 + t) * n_blk + bi;
            let da = ad[ab];
            let d = dw * da;
            let dmin = dminw * da;
            if (!repacked) {
                acc[t] = acc[t] + (d * f32(isum[t]) - dmin * f32(summ[t]));
            } else if (t0 + t >= p.batch_end) {
                acc[t] = fma_x(f32(isum[t]), d, acc[t]);
                accm[t] = fma_x(f32(summ[t]), dmin, accm[t]);
            }
        }
    }
    var out: array<f32, 8>;
    for (var t = 0u; t < nt; t = t + 1u) {
        out[t] = acc[t] - accm[t];
    }
    return out;
}
