// F32 weights, decoded 16 elements (64 bytes) at a time.
const BLOCK_ELEMS: u32 = 16u;
const BLOCK_BYTES: u32 = 64u;

fn dequant16(b: u32, sub: u32) -> array<f32, 16> {
    var out: array<f32, 16>;
    let i0 = b >> 2u;
    for (var i = 0u; i < 16u; i = i + 1u) {
        out[i] = bitcast<f32>(weights[i0 + i]);
    }
    return out;
}
