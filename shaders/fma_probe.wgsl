// Whether WGSL's fma rounds once on this adapter: d[3] = fma(d[0], d[1], d[2]), with inputs whose
// fused result (2^-24) differs from the twice-rounded one (0).
@group(0) @binding(0) var<storage, read_write> d: array<f32>;

@compute @workgroup_size(1)
fn main() {
    d[3] = fma(d[0], d[1], d[2]);
}
