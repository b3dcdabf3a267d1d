// F16 weights, decoded 16 elements (32 bytes) at a time; rows start word aligned.
const BLOCK_ELEMS: u32 = 16u;
const BLOCK_BYTES: u32 = 32u;

fn dequant16(b: u32, sub: u32) -> array<f32, 16> {
    var out: array<f32, 16>;
    let i0 = b >> 2u;
    for (var i = 0u; i < 8u; i = i + 1u) {
        let v = unpack2x16float(weights[i0 + i]);
        out[2u * i] = v.x;
        out[2u * i + 1u] = v.y;
    }
    return out;
}
