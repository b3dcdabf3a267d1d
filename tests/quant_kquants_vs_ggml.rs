//! The k-quant formats (Q2_K..Q6_K, Q8_K) against ggml itself, through vendor/ggml-ref:
//! dequantization bit for bit, the reference quantizers byte for byte, dot products within a
//! stated bound of ggml's and within ggml's own error budgets (tests/test-quantize-fns.cpp) of
//! the f32 dot, and every SIMD kernel against its scalar twin.

use ggml_ref::kquant as g;
use ggml_ref::sys;
use infer::quant::{kernels, scalar_kernels, GgmlType};

const QK_K: usize = 256;

/// The formats under test: ours, ggml's id, bytes per block, f16 field offsets (d, dmin).
const WEIGHT_TYPES: &[(GgmlType, sys::ggml_type, usize, &[usize])] = &[
    (GgmlType::Q2_K, sys::GGML_TYPE_Q2_K, 84, &[80, 82]),
    (GgmlType::Q3_K, sys::GGML_TYPE_Q3_K, 110, &[108]),
    (GgmlType::Q4_K, sys::GGML_TYPE_Q4_K, 144, &[0, 2]),
    (GgmlType::Q5_K, sys::GGML_TYPE_Q5_K, 176, &[0, 2]),
    (GgmlType::Q6_K, sys::GGML_TYPE_Q6_K, 210, &[208]),
];

// ggml's budgets, tests/test-quantize-fns.cpp.
const MAX_QUANTIZATION_TOTAL_ERROR: f64 = 0.002;
const MAX_QUANTIZATION_TOTAL_ERROR_2BITS: f64 = 0.0075;
const MAX_QUANTIZATION_TOTAL_ERROR_3BITS: f64 = 0.0040;
const MAX_DOT_PRODUCT_ERROR: f64 = 0.02;
const MAX_DOT_PRODUCT_ERROR_LOWBIT: f64 = 0.04;

/// Our dot products and ggml's add the same exact per-block integers but round the float
/// scaling in a different order (ggml-cpu's AVX2 uses FMA and 8 lanes). Each rounding is at most
/// 2^-24 (6e-8) of a term no larger than Σ|w·a|, and a 16-block row has a few dozen of them;
/// 1e-6·Σ|w·a| bounds the difference (the largest seen on these tests is about 8e-8).
const DOT_VS_GGML_REL: f64 = 1e-6;

/// splitmix64: small, deterministic, good enough to fill test blocks.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    /// A finite f16 of moderate magnitude and random sign.
    fn sane_f16(&mut self) -> [u8; 2] {
        let mag = 10f32.powf(self.unit() * 3.0 - 1.0); // 1e-4 .. 1e2
        let v = if self.next_u64() & 1 == 0 { mag } else { -mag };
        half::f16::from_f32(v).to_bits().to_le_bytes()
    }
}

/// ggml's generate_data: 0.1 + 2·cos(i + offset), computed as in the C++ test.
fn generate_data(offset: f32, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (0.1f64 + f64::from(2.0 * (i as f32 + offset).cos())) as f32)
        .collect()
}

/// ggml's array_rmse: sqrt(Σ diff²) / n (note: divided by n, not sqrt(n)).
fn array_rmse(a: &[f32], b: &[f32]) -> f64 {
    let s: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
        .sum();
    s.sqrt() / a.len() as f64
}

fn same_bits(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

fn assert_dequant_matches(ty: GgmlType, gty: sys::ggml_type, bytes: &[u8], what: &str) {
    let n = bytes.len() / ty.type_size() * QK_K;
    let theirs = g::dequantize(gty, bytes, n);
    let mut ours = vec![0.0f32; n];
    (scalar_kernels(ty).unwrap().to_f32)(bytes, &mut ours);
    for (i, (&a, &b)) in ours.iter().zip(&theirs).enumerate() {
        assert!(
            same_bits(a, b),
            "{ty} {what}: element {i}: ours {a:e} ({:#x}), ggml {b:e} ({:#x})",
            a.to_bits(),
            b.to_bits()
        );
    }
    let mut best = vec![0.0f32; n];
    (kernels(ty).unwrap().to_f32)(bytes, &mut best);
    assert!(
        ours.iter().zip(&best).all(|(&a, &b)| same_bits(a, b)),
        "{ty} {what}: best table's to_f32 differs"
    );
}

/// Random Q8_K blocks with a sane scale and bsums that agree with the quants (ggml's SIMD dots
/// rely on them), quants over the full i8 range including -128.
fn random_q8k(rng: &mut Rng, nb: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(nb * 292);
    for _ in 0..nb {
        let d = 10f32.powf(rng.unit() * 2.0 - 2.0);
        let qs = rng.bytes(QK_K);
        out.extend_from_slice(&d.to_le_bytes());
        out.extend_from_slice(&qs);
        for j in 0..16 {
            let s: i32 = qs[16 * j..16 * j + 16]
                .iter()
                .map(|&q| i32::from(q as i8))
                .sum();
            out.extend_from_slice(&(s as i16).to_le_bytes());
        }
    }
    out
}

fn random_weights(rng: &mut Rng, size: usize, f16_at: &[usize], nb: usize) -> Vec<u8> {
    let mut b = rng.bytes(nb * size);
    for blk in b.chunks_exact_mut(size) {
        for &o in f16_at {
            blk[o..o + 2].copy_from_slice(&rng.sane_f16());
        }
    }
    b
}

#[test]
fn dequantize_is_bit_identical_to_ggml() {
    let mut rng = Rng(0x5EED_0001);
    let nb = 8;
    for &(ty, gty, size, f16_at) in WEIGHT_TYPES {
        assert_eq!(ty.type_size(), size);
        assert_dequant_matches(
            ty,
            gty,
            &random_weights(&mut rng, size, f16_at, nb),
            "random, sane scales",
        );
        assert_dequant_matches(ty, gty, &rng.bytes(nb * size), "fully random bytes");
        assert_dequant_matches(ty, gty, &vec![0u8; nb * size], "all zero");
        // Largest f16 scales, every packed scale/min field at its maximum.
        let mut maxed = rng.bytes(nb * size);
        for blk in maxed.chunks_exact_mut(size) {
            for &o in f16_at {
                blk[o..o + 2].copy_from_slice(&0x7BFFu16.to_le_bytes());
            }
            match ty {
                GgmlType::Q2_K => blk[..16].fill(0xFF),
                GgmlType::Q3_K => blk[96..108].fill(0xFF),
                GgmlType::Q4_K | GgmlType::Q5_K => blk[4..16].fill(0xFF),
                GgmlType::Q6_K => blk[192..208].fill(0x7F),
                _ => unreachable!(),
            }
        }
        assert_dequant_matches(ty, gty, &maxed, "maximum scales");
        let mut ramp: Vec<u8> = (0..nb * size).map(|i| (i * 7 + 3) as u8).collect();
        for blk in ramp.chunks_exact_mut(size) {
            for &o in f16_at {
                blk[o..o + 2].copy_from_slice(&half::f16::from_f32(0.0123).to_bits().to_le_bytes());
            }
        }
        assert_dequant_matches(ty, gty, &ramp, "byte ramp");
    }
    let q8 = GgmlType::Q8_K;
    let gq8 = sys::GGML_TYPE_Q8_K;
    assert_dequant_matches(q8, gq8, &random_q8k(&mut rng, nb), "random");
    let mut raw = rng.bytes(nb * 292);
    for blk in raw.chunks_exact_mut(292) {
        // Fully random f32 scales would mostly be huge or NaN; keep a few of each kind.
        let d = [f32::MAX, f32::MIN_POSITIVE, -3.5, f32::NAN][blk[4] as usize % 4];
        blk[..4].copy_from_slice(&d.to_le_bytes());
    }
    assert_dequant_matches(q8, gq8, &raw, "extreme scales");
    assert_dequant_matches(q8, gq8, &vec![0u8; nb * 292], "all zero");
}

/// Inputs for the quantizer comparison: (name, data), each a whole number of blocks.
fn quantizer_inputs() -> Vec<(&'static str, Vec<f32>)> {
    let mut rng = Rng(0x5EED_0002);
    let n = 4 * QK_K;
    let mut v = vec![
        ("test-quantize-fns data", generate_data(0.0, 4096)),
        ("test-quantize-fns data, offset 1", generate_data(1.0, 4096)),
        ("zeros", vec![0.0; n]),
        ("constant 0.7", vec![0.7; n]),
        ("constant -3", vec![-3.0; n]),
        ("ramp", (0..n).map(|i| i as f32 / n as f32 - 0.3).collect()),
        ("tiny", (0..n).map(|i| (i as f32).sin() * 1e-12).collect()),
    ];
    // Uniform noise with a different scale per block, from 1e-3 to 1e3.
    let mut noise = Vec::with_capacity(16 * QK_K);
    for b in 0..16 {
        let s = 10f32.powf(b as f32 * 0.4 - 3.0);
        noise.extend((0..QK_K).map(|_| rng.unit() * s));
    }
    v.push(("random, scale per block", noise));
    // Gaussian-ish weights (sum of uniforms) with a few large outliers.
    let mut outl: Vec<f32> = (0..n)
        .map(|_| (0..4).map(|_| rng.unit()).sum::<f32>() * 0.02)
        .collect();
    for k in 0..12 {
        let i = (rng.next_u64() as usize) % n;
        outl[i] = if k % 2 == 0 { 1.5 } else { -2.25 } * (1.0 + k as f32);
    }
    v.push(("outliers", outl));
    // Magnitudes from 1e-30 to 1e30 in one row: overflowing squares and far-off scales.
    let wide: Vec<f32> = (0..n)
        .map(|i| 10f32.powi((i % 61) as i32 - 30) * if i % 3 == 0 { -1.0 } else { 1.0 })
        .collect();
    v.push(("1e-30..1e30", wide));
    // Strictly positive and strictly negative rows exercise the min > 0 branches.
    v.push(("positive", (0..n).map(|_| 1.0 + rng.unit().abs()).collect()));
    v.push((
        "negative",
        (0..n).map(|_| -1.0 - rng.unit().abs()).collect(),
    ));
    v
}

#[test]
fn reference_quantizers_are_byte_identical_to_ggml() {
    let mut all = WEIGHT_TYPES.iter().map(|t| (t.0, t.1)).collect::<Vec<_>>();
    all.push((GgmlType::Q8_K, sys::GGML_TYPE_Q8_K));
    for (name, x) in quantizer_inputs() {
        for &(ty, gty) in &all {
            let theirs = g::quantize_ref(gty, &x);
            let mut ours = vec![0xA5u8; theirs.len()];
            (scalar_kernels(ty).unwrap().from_f32)(&x, &mut ours);
            if let Some(i) = ours.iter().zip(&theirs).position(|(a, b)| a != b) {
                panic!("{ty} on {name}: first differing byte {i} (block {}, offset {}): ours {:#04x}, ggml {:#04x}",
                    i / ty.type_size(), i % ty.type_size(), ours[i], theirs[i]);
            }
            let mut best = vec![0x5Au8; theirs.len()];
            (kernels(ty).unwrap().from_f32)(&x, &mut best);
            assert_eq!(
                best, theirs,
                "{ty} on {name}: best table's from_f32 differs"
            );
        }
    }
    // ggml-cpu's activation quantizer is the one its vec_dot sees; it must agree with ours too.
    let x = generate_data(0.5, 4096);
    let mut ours = vec![0u8; 16 * 292];
    (kernels(GgmlType::Q8_K).unwrap().from_f32)(&x, &mut ours);
    assert_eq!(ours, g::cpu_from_float(sys::GGML_TYPE_Q8_K, &x));
}

#[test]
fn round_trip_error_is_within_ggml_budget() {
    let x = generate_data(0.0, 4096);
    let mut all = WEIGHT_TYPES.iter().map(|t| t.0).collect::<Vec<_>>();
    all.push(GgmlType::Q8_K);
    for ty in all {
        let k = scalar_kernels(ty).unwrap();
        let mut q = vec![0u8; 4096 / QK_K * ty.type_size()];
        (k.from_f32)(&x, &mut q);
        let mut y = vec![0.0f32; 4096];
        (k.to_f32)(&q, &mut y);
        let err = array_rmse(&x, &y);
        let budget = match ty {
            GgmlType::Q2_K => MAX_QUANTIZATION_TOTAL_ERROR_2BITS,
            GgmlType::Q3_K => MAX_QUANTIZATION_TOTAL_ERROR_3BITS,
            _ => MAX_QUANTIZATION_TOTAL_ERROR,
        };
        assert!(
            err < budget,
            "{ty}: round-trip error {err} over ggml's budget {budget}"
        );
    }
}

/// Σ|w_i·a_i| over dequantized rows: the scale against which dot products' rounding is judged.
fn abs_dot_and_exact(ty: GgmlType, w: &[u8], a: &[u8], n: usize) -> (f64, f64) {
    let mut wf = vec![0.0f32; n];
    (scalar_kernels(ty).unwrap().to_f32)(w, &mut wf);
    let mut af = vec![0.0f32; n];
    (scalar_kernels(GgmlType::Q8_K).unwrap().to_f32)(a, &mut af);
    let abs = wf
        .iter()
        .zip(&af)
        .map(|(&p, &q)| (f64::from(p) * f64::from(q)).abs())
        .sum();
    let exact = wf
        .iter()
        .zip(&af)
        .map(|(&p, &q)| f64::from(p) * f64::from(q))
        .sum();
    (abs, exact)
}

#[test]
fn vec_dot_matches_ggml_and_f32() {
    let n = 4096;
    let x = generate_data(0.0, n);
    let act = generate_data(1.0, n);
    let mut a = vec![0u8; n / QK_K * 292];
    (scalar_kernels(GgmlType::Q8_K).unwrap().from_f32)(&act, &mut a);
    let f32_dot: f64 = x.iter().zip(&act).map(|(&p, &q)| f64::from(p * q)).sum();
    let mut rng = Rng(0x5EED_0003);
    let mut worst = 0.0f64;
    for &(ty, gty, size, f16_at) in WEIGHT_TYPES {
        let k = scalar_kernels(ty).unwrap();
        assert_eq!(k.vec_dot_type, GgmlType::Q8_K);
        let mut w = vec![0u8; n / QK_K * size];
        (k.from_f32)(&x, &mut w);

        // ggml's own check: the quantized dot against the f32 dot of the original data.
        let ours = (k.vec_dot)(n, &w, &a);
        let budget = if ty == GgmlType::Q2_K {
            MAX_DOT_PRODUCT_ERROR_LOWBIT
        } else {
            MAX_DOT_PRODUCT_ERROR
        };
        let err = (f64::from(ours) - f32_dot).abs() / n as f64;
        assert!(
            err < budget,
            "{ty}: dot error {err} over ggml's budget {budget}"
        );

        // The same bytes through ggml-cpu, and through the exact dot of the dequantized rows.
        for (what, w, a, n) in [
            ("test data", w.clone(), a.clone(), n),
            (
                "random blocks x16",
                random_weights(&mut rng, size, f16_at, 16),
                random_q8k(&mut rng, 16),
                16 * QK_K,
            ),
            (
                "random block x1",
                random_weights(&mut rng, size, f16_at, 1),
                random_q8k(&mut rng, 1),
                QK_K,
            ),
        ] {
            let ours = f64::from((k.vec_dot)(n, &w, &a));
            let theirs = f64::from(g::vec_dot(gty, n, &w, &a));
            let (abs, exact) = abs_dot_and_exact(ty, &w, &a, n);
            let tol = DOT_VS_GGML_REL * abs;
            assert!(
                (ours - theirs).abs() <= tol,
                "{ty} {what}: ours {ours}, ggml {theirs}, tol {tol}"
            );
            assert!(
                (ours - exact).abs() <= tol,
                "{ty} {what}: ours {ours}, exact {exact}, tol {tol}"
            );
            worst = worst.max((ours - theirs).abs() / abs);
        }
    }
    eprintln!("largest |ours - ggml| / Σ|w·a|: {worst:e} (bound {DOT_VS_GGML_REL:e})");
}

#[test]
fn simd_kernels_match_scalar() {
    #[cfg(target_arch = "x86_64")]
    let simd = infer::quant::x86::avx2_available();
    #[cfg(not(target_arch = "x86_64"))]
    let simd = false;
    if simd {
        // Otherwise the comparisons below would be scalar against itself.
        for &(ty, ..) in WEIGHT_TYPES {
            let (best, scalar) = (kernels(ty).unwrap(), scalar_kernels(ty).unwrap());
            assert_ne!(
                best.vec_dot as usize, scalar.vec_dot as usize,
                "{ty}: no SIMD vec_dot"
            );
        }
        for ty in [GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K] {
            let (best, scalar) = (kernels(ty).unwrap(), scalar_kernels(ty).unwrap());
            assert_ne!(
                best.to_f32 as usize, scalar.to_f32 as usize,
                "{ty}: no SIMD dequantizer"
            );
        }
        let (best, scalar) = (
            kernels(GgmlType::Q8_K).unwrap(),
            scalar_kernels(GgmlType::Q8_K).unwrap(),
        );
        assert_ne!(
            best.from_f32 as usize, scalar.from_f32 as usize,
            "Q8_K: no SIMD quantizer"
        );
    } else {
        eprintln!(
            "no AVX2+FMA+F16C on this CPU: the best table is the scalar one, nothing to compare"
        );
    }
    let mut rng = Rng(0x5EED_0004);
    for &(ty, _, size, f16_at) in WEIGHT_TYPES {
        let (best, scalar) = (kernels(ty).unwrap(), scalar_kernels(ty).unwrap());
        for nb in [1, 2, 5, 16] {
            // Dequantizers (also checked against ggml in dequantize_is_bit_identical_to_ggml).
            let w = random_weights(&mut rng, size, f16_at, nb);
            let (mut s, mut b) = (vec![0.0f32; nb * QK_K], vec![1.0f32; nb * QK_K]);
            (scalar.to_f32)(&w, &mut s);
            (best.to_f32)(&w, &mut b);
            let same = s.iter().zip(&b).all(|(&p, &q)| same_bits(p, q));
            assert!(same, "{ty} x{nb}: SIMD dequantization differs from scalar");
            for _ in 0..4 {
                let w = random_weights(&mut rng, size, f16_at, nb);
                let a = random_q8k(&mut rng, nb);
                let (s, b) = (
                    (scalar.vec_dot)(nb * QK_K, &w, &a),
                    (best.vec_dot)(nb * QK_K, &w, &a),
                );
                assert_eq!(s.to_bits(), b.to_bits(), "{ty} x{nb}: scalar {s}, best {b}");
            }
            let x: Vec<f32> = (0..nb * QK_K).map(|_| rng.unit() * 3.0).collect();
            let mut a = vec![0u8; nb * 292];
            (scalar_kernels(GgmlType::Q8_K).unwrap().from_f32)(&x, &mut a);
            let mut w = vec![0u8; nb * size];
            (scalar.from_f32)(&x, &mut w);
            let (s, b) = (
                (scalar.vec_dot)(nb * QK_K, &w, &a),
                (best.vec_dot)(nb * QK_K, &w, &a),
            );
            assert_eq!(
                s.to_bits(),
                b.to_bits(),
                "{ty} x{nb} quantized data: scalar {s}, best {b}"
            );
        }
    }
    // Activation quantizer: bytes must not depend on the CPU. Include ties for the first maximum
    // of opposite sign and exact halves.
    let (best, scalar) = (
        kernels(GgmlType::Q8_K).unwrap(),
        scalar_kernels(GgmlType::Q8_K).unwrap(),
    );
    for nb in [1, 3, 16] {
        let mut x: Vec<f32> = (0..nb * QK_K).map(|_| rng.unit() * 10.0).collect();
        x[7] = -12.0;
        x[100] = 12.0;
        x[1] = 0.0;
        if nb > 1 {
            x[QK_K..2 * QK_K].fill(0.0);
        }
        let (mut s, mut b) = (vec![0u8; nb * 292], vec![1u8; nb * 292]);
        (scalar.from_f32)(&x, &mut s);
        (best.from_f32)(&x, &mut b);
        assert_eq!(s, b, "Q8_K quantize x{nb}");
    }
}
