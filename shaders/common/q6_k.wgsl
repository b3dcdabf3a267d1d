// ggml block_q6_K (210 bytes, 256 elements): ql[128] (low 4 bits), qh[64] (high 2 bits),
// scales[16] (i8), f16 d. In each 128-element half n, element 32g + l (g = 0..3, l = 0..31) takes
// its low bits from ql[64n + l + 32 (g % 2)] (nibble g / 2), its high bits from qh[32n + l]
// (bits 2g, 2g+1) and its scale from scales[8n + l / 16 + 2g]; value = d * scale * (q - 32).
const BLOCK_ELEMS: u32 = 256u;
const BLOCK_BYTES: u32 = 210u;

fn dequant16(b: u32, sub: u32) -> array<f32, 16> {
    var out: array<f32, 16>;
    let n = sub / 8u;
    let g = (sub % 8u) / 2u;
    let h = sub % 2u;
    let sc = f32(bitcast<i32>(wbyte(b + 192u + 8u * n + h + 2u * g) << 24u) >> 24u);
    let d = wf16(b + 208u) * sc;
    let ql0 = b + 64u * n + 32u * (g % 2u) + 16u * h;
    let qh0 = b + 128u + 32u * n + 16u * h;
    let lshift = 4u * (g / 2u);
    let hshift = 2u * g;
    for (var w = 0u; w < 4u; w = w + 1u) {
        let lo = wword(ql0 + 4u * w);
        let hi = wword(qh0 + 4u * w);
        for (var k = 0u; k < 4u; k = k + 1u) {
            let q = ((lo >> (8u * k + lshift)) & 0xfu) | (((hi >> (8u * k + hshift)) & 3u) << 4u);
            out[4u * w + k] = d * (f32(q) - 32.0);
        }
    }
    return out;
}
