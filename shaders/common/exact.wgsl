// Arithmetic rounded as the CPU rounds it. WGSL allows division and sqrt a few ulp of error,
// and the CPU forward accumulates some sums in f64, which WGSL lacks; where a last-bit difference
// would flip a later rounding (to an 8-bit quant, to f16), these are used instead.

// Shader compilers simplify c - (c - a) to a unless told the arithmetic is exact, which WGSL
// cannot say: the intermediates these algorithms depend on pass through `ex_opaque`, an OR with
// a zero the kernel reads at run time (`opaque_zero`, defined by every kernel that includes this).
fn ex_opaque(x: f32) -> f32 {
    return bitcast<f32>(bitcast<u32>(x) | opaque_zero());
}

// Dekker's split of a into a high half and a low half of 12 significant bits each, whose
// products with other halves are exact in f32.
fn split(a: f32) -> vec2<f32> {
    let c = ex_opaque(4097.0 * a);
    let hi = c - ex_opaque(c - a);
    return vec2<f32>(hi, a - hi);
}

// |a - q * b| for q close to a / b (or q * q close to a, with b = q), from the four exact
// half-width partial products of q * b. Each partial product is exact, so the result is the same
// whether or not the compiler fuses a product into the subtraction after it (lavapipe does, which
// broke the textbook `(a - q * b) - err` form).
fn residual(a: f32, q: f32, b: f32) -> f32 {
    let x = split(q);
    let y = split(b);
    return abs((((a - x.x * y.x) - x.x * y.y) - x.y * y.x) - x.y * y.y);
}

fn step(x: f32, k: i32) -> f32 {
    return bitcast<f32>(u32(i32(bitcast<u32>(x)) + k));
}

// a / b correctly rounded for positive finite a, b: the hardware quotient (WGSL allows 2.5 ulp
// of error) and its neighbours up to two ulp away, whichever leaves the smallest remainder.
fn div_pos(a: f32, b: f32) -> f32 {
    let q0 = a / b;
    var best = q0;
    var best_r = residual(a, q0, b);
    for (var k = -2; k <= 2; k = k + 1) {
        let q = step(q0, k);
        let r = residual(a, q, b);
        if (r < best_r) {
            best = q;
            best_r = r;
        }
    }
    return best;
}

// a / b correctly rounded for finite a, b != 0.
fn div_exact(a: f32, b: f32) -> f32 {
    if (a == 0.0) {
        return a / b;
    }
    let q = div_pos(abs(a), abs(b));
    if ((a < 0.0) != (b < 0.0)) {
        return -q;
    }
    return q;
}

// sqrt(a) correctly rounded for positive finite a, the same way (least |a - s * s|).
fn sqrt_exact(a: f32) -> f32 {
    let s0 = sqrt(a);
    var best = s0;
    var best_r = residual(a, s0, s0);
    for (var k = -2; k <= 2; k = k + 1) {
        let s = step(s0, k);
        let r = residual(a, s, s);
        if (r < best_r) {
            best = s;
            best_r = r;
        }
    }
    return best;
}

// s + e == a + b exactly, s = fl(a + b) (Knuth's two-sum).
fn two_sum(a: f32, b: f32) -> vec2<f32> {
    let s = ex_opaque(a + b);
    let bb = ex_opaque(s - a);
    let e = (a - (s - bb)) + (b - bb);
    return vec2<f32>(s, e);
}

// A double-f32 (hi, lo) sum plus another: ~48 significant bits, standing in for an f64 sum.
fn dd_add(x: vec2<f32>, y: vec2<f32>) -> vec2<f32> {
    let s = two_sum(x.x, y.x);
    let e = s.y + (x.y + y.y);
    let hi = ex_opaque(s.x + e);
    return vec2<f32>(hi, e - (hi - s.x));
}
