// ggml block_q4_0 (18 bytes, 32 elements): f16 d, then qs[16]. Element j < 16 is the low nibble of
// qs[j], element j + 16 its high nibble; value = (q - 8) * d. Sub-block 0 is the low nibbles,
// sub-block 1 the high ones.
const BLOCK_ELEMS: u32 = 32u;
const BLOCK_BYTES: u32 = 18u;

fn dequant16(b: u32, sub: u32) -> array<f32, 16> {
    var out: array<f32, 16>;
    let d = wf16(b);
    let shift = 4u * sub;
    for (var w = 0u; w < 4u; w = w + 1u) {
        let q = wword(b + 2u + 4u * w);
        for (var k = 0u; k < 4u; k = k + 1u) {
            out[4u * w + k] = (f32((q >> (8u * k + shift)) & 0xfu) - 8.0) * d;
        }
    }
    return out;
}
