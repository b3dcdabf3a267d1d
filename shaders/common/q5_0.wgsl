// ggml block_q5_0 (22 bytes, 32 elements): f16 d, u32 qh (the fifth bits), qs[16]. Element j < 16
// is the low nibble of qs[j] with bit j of qh, element j + 16 the high nibble with bit j + 16;
// value = (q - 16) * d.
const BLOCK_ELEMS: u32 = 32u;
const BLOCK_BYTES: u32 = 22u;

fn dequant16(b: u32, sub: u32) -> array<f32, 16> {
    var out: array<f32, 16>;
    let d = wf16(b);
    let qh = wword(b + 2u) >> (16u * sub);
    let shift = 4u * sub;
    for (var w = 0u; w < 4u; w = w + 1u) {
        let q = wword(b + 6u + 4u * w);
        for (var k = 0u; k < 4u; k = k + 1u) {
            let j = 4u * w + k;
            let v = ((q >> (8u * k + shift)) & 0xfu) | (((qh >> j) & 1u) << 4u);
            out[j] = (f32(v) - 16.0) * d;
        }
    }
    return out;
}
