// The two exponentials the CPU's attention takes, bit for bit: ggml-cpu's vectorised expf
// (crate::cpu::ops::ggml_expf, FMA for FMA) and the C library's expf (what Rust's f32::exp calls
// and ggml's scalar flash-attention code uses: glibc's, from Arm's optimized routines). Needs
// common/exact.wgsl (ex_opaque) and common/fma.wgsl (fma_x) included before it.

fn ggml_expf(x: f32) -> f32 {
    let r = 12582912.0;
    let z = fma_x(x, bitcast<f32>(0x3FB8AA3Bu), r);
    let n = z - r;
    let b = fma_x(-n, bitcast<f32>(0x35BFBE8Eu), fma_x(-n, bitcast<f32>(0x3F317200u), x));
    let e = bitcast<u32>(z) << 23u;
    let kk = bitcast<f32>(e + 0x3F800000u);
    let u = b * b;
    let j = fma_x(
        fma_x(fma_x(bitcast<f32>(0x3C072010u), b, bitcast<f32>(0x3D2B9F17u)), u,
            fma_x(bitcast<f32>(0x3E2AAF33u), b, bitcast<f32>(0x3EFFFEDBu))),
        u, bitcast<f32>(0x3F7FFFF6u) * b);
    if (abs(n) <= 126.0) {
        return fma_x(j, kk, kk);
    }
    var g = 0u;
    if (n <= 0.0) {
        g = 0x82000000u;
    }
    let s1 = bitcast<f32>(g + 0x7F000000u);
    let s2 = bitcast<f32>(e - g);
    if (abs(n) > 192.0) {
        return s1 * s1;
    }
    return fma_x(s2, j, s2) * s1;
}

// glibc's expf computes in f64: x * 32 / ln 2 = k + r (|r| <= 1/2), 2^(k/32) from a table of 32
// doubles, a cubic in r, the product rounded to f32 once. WGSL has no f64, so the same steps run
// here on double-f32 pairs (hi, lo: ~48 significant bits): the f32 rounding at the end then
// equals glibc's except where its f64 result lies within ~2^-46 of a rounding boundary (measured
// on the CPU over every 7th f32 in [-104, 0]: 5 of 160 million differ by one ulp).

// hi + lo == a * b exactly.
fn ef_prod(a: f32, b: f32) -> vec2<f32> {
    let p = a * b;
    return vec2<f32>(p, fma_x(a, b, -p));
}

// The sum of (a, b) renormalised, for |a| >= |b| (fast two-sum).
fn ef_norm(a: f32, b: f32) -> vec2<f32> {
    let s = ex_opaque(a + b);
    return vec2<f32>(s, b - ex_opaque(s - a));
}

fn ef_add(x: vec2<f32>, y: vec2<f32>) -> vec2<f32> {
    let s = two_sum(x.x, y.x);
    return ef_norm(s.x, s.y + (x.y + y.y));
}

fn ef_mul(x: vec2<f32>, y: vec2<f32>) -> vec2<f32> {
    let p = ef_prod(x.x, y.x);
    return ef_norm(p.x, p.y + (x.x * y.y + x.y * y.x));
}

// 2^(i/32) as glibc's table holds it (__exp2f_data.tab), split into f32 (hi, lo).
const EXP2_32 = array<vec2<u32>, 32>(
    vec2<u32>(0x3f800000u, 0x00000000u), vec2<u32>(0x3f82cd87u, 0xb34ea7a9u),
    vec2<u32>(0x3f85aac3u, 0x334f9891u), vec2<u32>(0x3f88980fu, 0xb37eda4bu),
    vec2<u32>(0x3f8b95c2u, 0xb260aba1u), vec2<u32>(0x3f8ea43au, 0xb3697465u),
    vec2<u32>(0x3f91c3d3u, 0x33675624u), vec2<u32>(0x3f94f4f0u, 0xb32e0212u),
    vec2<u32>(0x3f9837f0u, 0x33231b71u), vec2<u32>(0x3f9b8d3au, 0xb30c5563u),
    vec2<u32>(0x3f9ef532u, 0x33412342u), vec2<u32>(0x3fa27043u, 0x30c3125au),
    vec2<u32>(0x3fa5fed7u, 0xb32c9d5eu), vec2<u32>(0x3fa9a15bu, 0xb3162b08u),
    vec2<u32>(0x3fad583fu, 0xb22deaf6u), vec2<u32>(0x3fb123f6u, 0xb37c5aa8u),
    vec2<u32>(0x3fb504f3u, 0x32cfe77au), vec2<u32>(0x3fb8fbafu, 0x330ec5f7u),
    vec2<u32>(0x3fbd08a4u, 0xb3414fe8u), vec2<u32>(0x3fc12c4du, 0xb2d6663eu),
    vec2<u32>(0x3fc5672au, 0x320aa837u), vec2<u32>(0x3fc9b9beu, 0xb37323a2u),
    vec2<u32>(0x3fce248cu, 0x3228fc24u), vec2<u32>(0x3fd2a81eu, 0xb35c1daau),
    vec2<u32>(0x3fd744fdu, 0xb2d4a58au), vec2<u32>(0x3fdbfbb8u, 0xb3504a1cu),
    vec2<u32>(0x3fe0ccdfu, 0xb21eab59u), vec2<u32>(0x3fe5b907u, 0xb2441be6u),
    vec2<u32>(0x3feac0c7u, 0xb24116deu), vec2<u32>(0x3fefe4bau, 0xb348464au),
    vec2<u32>(0x3ff5257du, 0x32292436u), vec2<u32>(0x3ffa83b3u, 0xb2923758u));

fn ef_const(hi: u32, lo: u32) -> vec2<f32> {
    return vec2<f32>(bitcast<f32>(hi), bitcast<f32>(lo));
}

fn pow2i(e: i32) -> f32 {
    return bitcast<f32>(u32(e + 127) << 23u);
}

fn libm_expf(x: f32) -> f32 {
    if (x != x) {
        return x;
    }
    // glibc's limits: below log(2^-150) the result rounds to 0, above log(2^128) to infinity.
    if (x < -103.97208) {
        return 0.0;
    }
    if (x > 88.72283) {
        return bitcast<f32>(0x7f800000u);
    }
    // z = x * 32 / ln 2, the constant (a double) in three f32 parts.
    let p0 = ef_prod(x, bitcast<f32>(0x4238aa3bu));
    let p1 = ef_prod(x, bitcast<f32>(0x35257060u));
    let z = ef_norm(p0.x, p0.y + (p1.x + (p1.y + x * bitcast<f32>(0xa8800000u))));
    // k: z rounded to the nearest integer, ties to even as glibc's shift trick rounds.
    var k = round(z.x);
    var rh = z.x - k;
    if (rh == 0.5 && z.y > 0.0) {
        k = k + 1.0;
        rh = -0.5;
    }
    if (rh == -0.5 && z.y < 0.0) {
        k = k - 1.0;
        rh = 0.5;
    }
    let r = ef_norm(rh, z.y);
    // y = C2 r + 1 + (C0 r + C1) r^2, glibc's poly_scaled.
    let c0 = ef_const(0x35e357c2u, 0x29391239u);
    let c1 = ef_const(0x3975fe73u, 0xacf053b1u);
    let c2 = ef_const(0x3cb17218u, 0xae73ad2au);
    let q = ef_add(c1, ef_mul(c0, r));
    let y = ef_add(vec2<f32>(1.0, 0.0), ef_add(ef_mul(c2, r), ef_mul(q, ef_mul(r, r))));
    let ki = i32(k);
    let t = EXP2_32[u32(ki & 31)];
    let pr = ef_mul(y, ef_const(t.x, t.y));
    let e = ki >> 5u;
    if (e > -126) {
        let f = pr.x + pr.y;
        if (e > 127) {
            return f * pow2i(e - 1) * 2.0;
        }
        return f * pow2i(e);
    }
    // Results below 2^-124: round once on the 2^-149 grid of f32's smallest values.
    let sc = pow2i(e + 149);
    let uh = pr.x * sc;
    let ul = pr.y * sc;
    var ri = round(uh);
    let rem = (uh - ri) + ul;
    let odd = (u32(ri) & 1u) == 1u;
    if (rem > 0.5 || (rem == 0.5 && odd)) {
        ri = ri + 1.0;
    }
    if (rem < -0.5 || (rem == -0.5 && odd)) {
        ri = ri - 1.0;
    }
    return bitcast<f32>(u32(ri));
}
