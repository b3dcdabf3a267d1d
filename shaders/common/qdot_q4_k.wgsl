// Q4_K weights . Q8_K activations over one row of n_blk blocks, in the float orders of ggml-cpu's
// repacked Q4_K kernels (crate::cpu::ggml_order, taken by the CPU for matrices of a multiple of 8
// rows; `p.flags` bit 0): per 64-element chunk c, isum_c = sc_2c * sum(lo nibbles * q_a) +
// sc_2c+1 * sum(hi nibbles * q_a) and imin_c = m_2c * sum(q_a of its first half) + m_2c+1 * sum(q_a
// of its second half), all exact integers. One-row order (`batch` false): per block,
// acc = fma_x(sum isum_c, d_w * d_a, acc), accm likewise with dmin; the gemm order (`batch`): the
// same FMA per chunk. The result is acc - accm. Other matrices: the scalar reference's
// acc + (d * isum - dmin * summ) per block.
// The four bytes of a word as unsigned values.
fn bytes4(q: u32) -> vec4<i32> {
    return vec4<i32>(i32(q & 0xffu), i32((q >> 8u) & 0xffu), i32((q >> 16u) & 0xffu), i32(q >> 24u));
}

fn row_dot(base: u32, blk0: u32, n_blk: u32, batch: bool) -> f32 {
    var acc = 0.0;
    var accm = 0.0;
    let repacked = (p.flags & 1u) != 0u;
    for (var bi = 0u; bi < n_blk; bi = bi + 1u) {
        let b = base + bi * BLOCK_BYTES;
        let a0 = (blk0 + bi) * 256u;
        let da = ad[blk0 + bi];
        let d = wf16(b) * da;
        let dmin = wf16(b + 2u) * da;
        var isum = 0;
        var summ = 0;
        for (var c = 0u; c < 4u; c = c + 1u) {
            let sm_lo = q4k_scale_min(b, 2u * c);
            let sm_hi = q4k_scale_min(b, 2u * c + 1u);
            var lo = 0;
            var hi = 0;
            var alo = 0;
            var ahi = 0;
            let ones = vec4<i32>(1);
            for (var w = 0u; w < 8u; w = w + 1u) {
                let q = wword(b + 16u + 32u * c + 4u * w);
                let xl = aq[((a0 + 64u * c) >> 2u) + w];
                let xh = aq[((a0 + 64u * c + 32u) >> 2u) + w];
                lo = lo + dot(bytes4(q & 0x0f0f0f0fu), xl);
                hi = hi + dot(bytes4((q >> 4u) & 0x0f0f0f0fu), xh);
                alo = alo + dot(xl, ones);
                ahi = ahi + dot(xh, ones);
            }
            let is = i32(sm_lo.x) * lo + i32(sm_hi.x) * hi;
            let im = i32(sm_lo.y) * alo + i32(sm_hi.y) * ahi;
            if (batch && repacked) {
                acc = fma_x(f32(is), d, acc);
                accm = fma_x(f32(im), dmin, accm);
            } else {
                isum = isum + is;
                summ = summ + im;
            }
        }
        if (!batch && repacked) {
            acc = fma_x(f32(isum), d, acc);
            accm = fma_x(f32(summ), dmin, accm);
        } else if (!repacked) {
            acc = acc + (d * f32(isum) - dmin * f32(summ));
        }
    }
    return acc - accm;
}
