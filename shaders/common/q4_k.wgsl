// ggml block_q4_K (144 bytes, 256 elements): f16 d, f16 dmin, scales[12] (eight 6-bit scale/min
// pairs, packed as ggml's get_scale_min_k4 reads them), qs[128]. Each 64-element chunk c uses
// 32 bytes of qs: its first 32 elements are the low nibbles (pair 2c), the next 32 the high
// nibbles (pair 2c + 1); value = d * sc * q - dmin * m.
const BLOCK_ELEMS: u32 = 256u;
const BLOCK_BYTES: u32 = 144u;

fn q4k_scale_min(b: u32, j: u32) -> vec2<f32> {
    let s = b + 4u;
    if (j < 4u) {
        return vec2<f32>(f32(wbyte(s + j) & 63u), f32(wbyte(s + j + 4u) & 63u));
    }
    let sc = (wbyte(s + j + 4u) & 0xfu) | ((wbyte(s + j - 4u) >> 6u) << 4u);
    let m = (wbyte(s + j + 4u) >> 4u) | ((wbyte(s + j) >> 6u) << 4u);
    return vec2<f32>(f32(sc), f32(m));
}

fn dequant16(b: u32, sub: u32) -> array<f32, 16> {
    var out: array<f32, 16>;
    let chunk = sub / 4u;
    let r = sub % 4u;
    let hi = r / 2u;
    let sm = q4k_scale_min(b, 2u * chunk + hi);
    let d = wf16(b) * sm.x;
    let m = wf16(b + 2u) * sm.y;
    let q0 = b + 16u + 32u * chunk + 16u * (r % 2u);
    for (var w = 0u; w < 4u; w = w + 1u) {
        let q = wword(q0 + 4u * w);
        for (var k = 0u; k < 4u; k = k + 1u) {
            out[4u * w + k] = d * f32((q >> (8u * k + 4u * hi)) & 0xfu) - m;
        }
    }
    return out;
}
