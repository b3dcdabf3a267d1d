// ggml block_q8_0 (34 bytes, 32 elements): f16 d, then 32 signed bytes; value = q * d.
const BLOCK_ELEMS: u32 = 32u;
const BLOCK_BYTES: u32 = 34u;

fn dequant16(b: u32, sub: u32) -> array<f32, 16> {
    var out: array<f32, 16>;
    let d = wf16(b);
    for (var w = 0u; w < 4u; w = w + 1u) {
        let q = wword(b + 2u + 16u * sub + 4u * w);
        for (var k = 0u; k < 4u; k = k + 1u) {
            out[4u * w + k] = sbyte(q, k) * d;
        }
    }
    return out;
}
