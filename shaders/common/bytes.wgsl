// Byte access to quantized weights. WGSL storage has no 8- or 16-bit types, so a weight tensor is
// bound as `weights: array<u32>` (declared by the kernel) and read through these helpers. Blocks of
// 18, 22, 34 or 210 bytes are not word aligned, hence the unaligned reads; the upload pads every
// buffer by one word so that reading the word after the last byte stays in bounds.

fn wbyte(off: u32) -> u32 {
    return (weights[off >> 2u] >> ((off & 3u) * 8u)) & 0xffu;
}

// Little-endian u32 at any byte offset.
fn wword(off: u32) -> u32 {
    let s = (off & 3u) * 8u;
    let i = off >> 2u;
    if (s == 0u) {
        return weights[i];
    }
    return (weights[i] >> s) | (weights[i + 1u] << (32u - s));
}

// IEEE half at any even or odd byte offset, widened to f32.
fn wf16(off: u32) -> f32 {
    return unpack2x16float(wword(off) & 0xffffu).x;
}

// Byte k (0..3) of a word as a signed value.
fn sbyte(w: u32, k: u32) -> f32 {
    return f32(bitcast<i32>(w << (24u - 8u * k)) >> 24u);
}
