// Q6_K weights . Q8_K activations over one row of n_blk blocks, in the float orders of ggml-cpu's
// AVX2 kernels (crate::cpu::ggml_order): per block, eight integer lanes as ggml_vec_dot_q6_K_q8_K
// forms them (lane l: bytes 4l..4l+3 of every 32-element chunk times their sub-block scale, with
// the unsigned 6-bit quants, minus 32 * the Q8_K group sums 2l and 2l+1 times their scales). One-row
// order (`batch` false): acc_l = fma_x(d_a * d_w, lane_l, acc_l), hsum8 at the end; the tiled order
// for batches of 8 or more rows (`batch`): acc = fma_x(d_w * sum of lanes, d_a, acc).
// Layout: ql[128], qh[64], scales[16] (i8), f16 d.
fn q6k_sc(b: u32, i: u32) -> i32 {
    return bitcast<i32>(wbyte(b + 192u + i) << 24u) >> 24u;
}

// The sum of Q8_K group g (16 quants) of the block at a0.
fn q8k_bsum(a0: u32, g: u32) -> i32 {
    let i = (a0 + 16u * g) >> 2u;
    return dot((aq[i] + aq[i + 1u]) + (aq[i + 2u] + aq[i + 3u]), vec4<i32>(1));
}

// The four bytes of a word as unsigned values.
fn bytes4(q: u32) -> vec4<i32> {
    return vec4<i32>(i32(q & 0xffu), i32((q >> 8u) & 0xffu), i32((q >> 16u) & 0xffu), i32(q >> 24u));
}

fn row_dot(base: u32, blk0: u32, n_blk: u32, batch: bool) -> f32 {
    var lacc: array<f32, 8>;
    var acc = 0.0;
    for (var bi = 0u; bi < n_blk; bi = bi + 1u) {
        let b = base + bi * BLOCK_BYTES;
        let a0 = (blk0 + bi) * 256u;
        let da = ad[blk0 + bi];
        let dw = wf16(b + 208u);
        var lane: array<i32, 8>;
        for (var l = 0u; l < 8u; l = l + 1u) {
            lane[l] = -32 * (q8k_bsum(a0, 2u * l) * q6k_sc(b, 2u * l)
                + q8k_bsum(a0, 2u * l + 1u) * q6k_sc(b, 2u * l + 1u));
        }
        for (var j = 0u; j < 2u; j = j + 1u) {
            let ql = b + 64u * j;
            let qh = b + 128u + 32u * j;
            for (var c = 0u; c < 4u; c = c + 1u) {
                let q8 = a0 + 128u * j + 32u * c;
                let lo_off = ql + 32u * (c & 1u);
                let lo_shift = 4u * (c >> 1u);
                for (var l = 0u; l < 8u; l = l + 1u) {
                    let low = (wword(lo_off + 4u * l) >> lo_shift) & 0x0f0f0f0fu;
                    let high = (wword(qh + 4u * l) >> (2u * c)) & 0x03030303u;
                    let s = dot(bytes4(low | (high << 4u)), aq[(q8 >> 2u) + l]);
                    lane[l] = lane[l] + s * q6k_sc(b, 8u * j + 2u * c + l / 4u);
                }
            }
        }
        if (batch) {
            var isum = 0;
            for (var l = 0u; l < 8u; l = l + 1u) {
                isum = isum + lane[l];
            }
            acc = fma_x(dw * f32(isum), da, acc);
        } else {
            let d = da * dw;
            for (var l = 0u; l < 8u; l = l + 1u) {
                lacc[l] = fma_x(d, f32(lane[l]), lacc[l]);
            }
        }
    }
    if (batch) {
        return acc;
    }
    return hsum8(lacc);
}
