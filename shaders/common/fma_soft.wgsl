// a * b + c rounded once, for adapters whose WGSL fma is a multiply and an add (lavapipe lowers it
// so; probed when the device opens): the CPU forward's FMA chains round once per step, and a
// chain rounded twice per step parts from them in the last bits. The product's error comes from
// Dekker's exact partial products of 12-bit halves (split by masking, so no rounding a compiler
// could fuse away); the sum is a two-sum plus both error terms, correctly rounded except where
// those terms themselves round at a tie (not seen in practice). Finite, non-underflowing inputs.
// Shader compilers simplify (p + c) - p to c unless told the arithmetic is exact, which WGSL
// cannot say: the two-sum's intermediates pass through `fma_opaque`, an OR with a zero the
// kernel reads at run time (`opaque_zero`, defined by every kernel that includes this).
fn fma_opaque(x: f32) -> f32 {
    return bitcast<f32>(bitcast<u32>(x) | opaque_zero());
}

fn fma_split(a: f32) -> vec2<f32> {
    let hi = bitcast<f32>(bitcast<u32>(a) & 0xfffff000u);
    return vec2<f32>(hi, a - hi);
}

fn fma_x(a: f32, b: f32, c: f32) -> f32 {
    let p = fma_opaque(a * b);
    let x = fma_split(a);
    let y = fma_split(b);
    let e = (((x.x * y.x - p) + x.x * y.y) + x.y * y.x) + x.y * y.y;
    let s = fma_opaque(p + c);
    let bb = fma_opaque(s - p);
    let t = (p - (s - bb)) + (c - bb);
    return s + (t + e);
}

// fma_x(a, b, c) for an `a` of at most 12 significant bits (an f16 value), with `bs` =
// fma_split(b) computed once by the caller for many such products: a * bs.x and a * bs.y are
// exact, so they give the product's exact error in two steps instead of four, and the result is
// fma_x's, bit for bit.
fn fma_x_short(a: f32, b: f32, bs: vec2<f32>, c: f32) -> f32 {
    let p = fma_opaque(a * b);
    let e = (a * bs.x - p) + a * bs.y;
    let s = fma_opaque(p + c);
    let bb = fma_opaque(s - p);
    let t = (p - (s - bb)) + (c - bb);
    return s + (t + e);
}
