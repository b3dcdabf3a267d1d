// Q4_K weights . Q8_K activations, one block (crate::quant::q4_k::vec_dot): with sc_j, m_j the
// eight 6-bit scales and mins, isum = sum_j sc_j * sum(q_w * q_a) over sub-block j, summ =
// sum_j m_j * sum(q_a) over sub-block j; d_a * d_w * isum - d_a * dmin_w * summ.
fn qdot(b: u32, a0: u32, ab: u32) -> f32 {
    var isum = 0;
    var summ = 0;
    for (var c = 0u; c < 4u; c = c + 1u) {
        let sm_lo = q4k_scale_min(b, 2u * c);
        let sm_hi = q4k_scale_min(b, 2u * c + 1u);
        var lo = 0;
        var hi = 0;
        var alo = 0;
        var ahi = 0;
        for (var i = 0u; i < 32u; i = i + 1u) {
            let q = wbyte(b + 16u + 32u * c + i);
            let xl = aq[a0 + 64u * c + i];
            let xh = aq[a0 + 64u * c + 32u + i];
            lo = lo + i32(q & 0xfu) * xl;
            hi = hi + i32(q >> 4u) * xh;
            alo = alo + xl;
            ahi = ahi + xh;
        }
        isum = isum + i32(sm_lo.x) * lo + i32(sm_hi.x) * hi;
        summ = summ + i32(sm_lo.y) * alo + i32(sm_hi.y) * ahi;
    }
    let da = ad[ab];
    let d = da * wf16(b);
    let dmin = da * wf16(b + 2u);
    return d * f32(isum) - dmin * f32(summ);
}
