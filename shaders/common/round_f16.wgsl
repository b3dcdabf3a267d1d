// Rounding to f16 precision as the CPU does it (IEEE round-to-nearest-even, subnormals kept).
// WGSL's quantizeToF16 may flush f16 subnormals to zero (lavapipe does); softmax weights of long
// contexts live there (below 2^-14), so that range is rounded to multiples of 2^-24 by hand
// (x * 2^24 is exact in f32 there, and round() ties to even).
fn round_f16(x: f32) -> f32 {
    if (abs(x) < 6.1035156e-5) {
        return round(x * 16777216.0) / 16777216.0;
    }
    return quantizeToF16(x);
}
