// Q6_K weights . Q8_K activations: one weight row against the activation rows of tokens
// t0..t0+nt (at most 8), in the float orders of ggml-cpu's AVX2 kernels (crate::cpu::ggml_order),
// for each token separately: per block, eight integer lanes as ggml_vec_dot_q6_K_q8_K forms them
// (lane l: bytes 4l..4l+3 of every 32-element chunk times their sub-block scale, with the
// unsigned 6-bit quants, minus 32 * the Q8_K group sums 2l and 2l+1 times their scales). One-row
// order: acc_l = fma(d_a * d_w, lane_l, acc_l), hsum8 at the end; the tiled order for batches of 8
// or more rows (tokens before p.batch_end): acc = fma(d_w * sum of lanes, d_a, acc). Each weight
// word is decoded once for all the tokens. Layout: ql[128], qh[64], scales[16] (i8), f16 d.
fn q6k_sc(b: u32, i: u32) -> i32 {
    return bitcast<i32>(wbyte(b + 192u + i) << 24u) >> 24u;
}

// The sum of Q8_K group g (16 quants) of activation block ab.
fn q8k_bsum(ab: u32, g: u32) -> i32 {
    let i = 64u * ab + 4u * g;
    return dot((aq[i] + aq[i + 1u]) + (aq[i + 2u] + aq[i + 3u]), vec4<i32>(1));
}

// The four bytes of a word as unsigned values.
fn bytes4(q: u32) -> vec4<i32> {
    return vec4<i32>(i32(q & 0xffu), i32((q >> 8u) & 0xffu), i32((q >> 16u) & 0xffu), i32(q >> 24u));
}

fn row_dot_tile(base: u32, t0: u32, nt: u32, n_blk: u32) -> array<f32, 8> {
    var lacc: array<array<f32, 8>, 8>;
    var acc: array<f32, 8>;
    for (var bi = 0u; bi < n_blk; bi = bi + 1u) {
        let b = base + bi * BLOCK_BYTES;
        let dw = wf16(b + 208u);
        var lane: array<array<i32, 8>, 8>;
        for (var t = 0u; t < nt; t = t + 1u) {
            let ab = (t0 + t) * n_blk + bi;
            for (var l = 0u; l < 8u; l = l + 1u) {
                lane[t][l] = -32 * (q8k_bsum(ab, 2u * l) * q6k_sc(b, 2u * l)
                    + q8k_bsum(ab, 2u * l + 1u) * q6k_sc(b, 2u * l + 1u));
            }
        }
        for (var j = 0u; j < 2u; j = j + 1u) {
            let ql = b + 64u * j;
            let qh = b + 128u + 32u * j;
            for (var c = 0u; c < 4u; c = c + 1u) {
                let lo_off = ql + 32u * (c & 1u);
                let lo_shift = 4u * (c >> 1u);
                for (var l = 0u; l < 8u; l = l + 1u) {
                    let low = (wword(lo_off + 4u * l) >> lo_shift) & 0x0f0f0f0fu;
                    let high = (wword(qh + 4u * l) >> (2u * c)) & 0x03030303u;
                    let wq = bytes4(low | (high << 4u));
                    let sc = q6k_sc(b, 8u * j + 2u * c + l / 4u);
                    for (var t = 0u; t < nt; t = t + 1u) {
                        let ab = (t0 + t) * n_blk + bi;
                        let s = dot(wq, aq[64u * ab + 32u * j + 8u * c + l]);
                        lane[t][l] = lane[t][l] + s * sc;
                    }
                }
            }
        }
        for (var t = 0u; t < nt; t = t + 1u) {
            let da = ad[(t0 + t) * n_blk + bi];
            if (t0 + t < p.batch_end) {
                var isum = 0;
                for (var l = 0u; l < 8u; l = l + 1u) {
                    isum = isum + lane[t][l];
                }
                acc[t] = fma_x(dw * f32(isum), da, acc[t]);
            } else {
                let d = da * dw;
                for (var l = 0u; l < 8u; l = l + 1u) {
                    lacc[t][l] = fma_x(d, f32(lane[t][l]), lacc[t][l]);
                }
            }
        }
    }
    var out: array<f32, 8>;
    for (var t = 0u; t < nt; t = t + 1u) {
        if (t0 + t < p.batch_end) {
            out[t] = acc[t];
        } else {
            out[t] = hsum8(lacc[t]);
        }
    }
    return out;
}
