//! Float and legacy block formats (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1) against
//! ggml itself, through `ggml_ref::quant`:
//! - dequantization bit-identical to ggml's `to_float` (random, hostile, zero, max-scale, ramp blocks);
//! - f16/bf16 conversions bit-identical to ggml's scalar ones;
//! - reference quantizers byte-identical to ggml's `quantize_row_*_ref`, and round-trip error within
//!   the budgets of ggml's tests/test-quantize-fns.cpp;
//! - dot products against ggml-cpu's `vec_dot` on the same bytes and against the exact dot of the
//!   dequantized values;
//! - the AVX2 kernels against the scalar ones, on 1 block, odd block counts and odd lengths.
//!
//! Both our tables are checked: `scalar_kernels` (portable) and `kernels` (what this CPU runs).

use ggml_ref::quant as g;
use infer::quant::{self, GgmlType, TypeKernels};

/// ggml's budgets from tests/test-quantize-fns.cpp.
const MAX_QUANTIZATION_TOTAL_ERROR: f32 = 0.002;
const MAX_QUANTIZATION_REFERENCE_ERROR: f32 = 0.0001;
const MAX_DOT_PRODUCT_ERROR: f32 = 0.02;
/// test-quantize-fns.cpp's test size: 128 blocks of 32.
const TEST_SIZE: usize = 32 * 128;

const LEGACY: [GgmlType; 6] = [
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q8_1,
];
const FLOATS: [GgmlType; 3] = [GgmlType::F32, GgmlType::F16, GgmlType::BF16];

/// splitmix64: small, deterministic, good enough to spread bits.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
    /// Uniform in [-1, 1).
    fn signed(&mut self) -> f32 {
        2.0 * self.unit() - 1.0
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn gid(ty: GgmlType) -> g::ggml_type {
    ty.id()
}

fn scalar(ty: GgmlType) -> &'static TypeKernels {
    quant::scalar_kernels(ty).expect("supported type")
}

fn best(ty: GgmlType) -> &'static TypeKernels {
    quant::kernels(ty).expect("supported type")
}

/// Byte offsets of the f16 fields (d, m, s) inside one block.
fn f16_fields(ty: GgmlType) -> &'static [usize] {
    match ty {
        GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => &[0],
        GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q8_1 => &[0, 2],
        _ => &[],
    }
}

/// A finite f16 of moderate magnitude (2^-14 .. 2^1), random sign: a scale a real file might hold.
fn sane_f16(rng: &mut Rng) -> [u8; 2] {
    let exp = (rng.next() % 16) as i32 - 14;
    let v = (1.0 + rng.unit()) * 2f32.powi(exp) * if rng.next() & 1 == 0 { 1.0 } else { -1.0 };
    g::fp32_to_fp16(v).to_le_bytes()
}

/// Rows of `nb` blocks that exercise the dequantizers: random with sane scales, fully random
/// (NaN/inf/subnormal scales included), all zero, maximum-magnitude scales, and byte ramps.
fn dequant_cases(ty: GgmlType, nb: usize, rng: &mut Rng) -> Vec<(&'static str, Vec<u8>)> {
    let bs = ty.type_size();
    let mut cases = Vec::new();
    let mut sane = rng.bytes(nb * bs);
    for blk in sane.chunks_exact_mut(bs) {
        for &o in f16_fields(ty) {
            blk[o..o + 2].copy_from_slice(&sane_f16(rng));
        }
    }
    cases.push(("random, sane scales", sane));
    cases.push(("random bytes", rng.bytes(nb * bs)));
    cases.push(("zeros", vec![0u8; nb * bs]));
    let mut maxed = rng.bytes(nb * bs);
    for (i, blk) in maxed.chunks_exact_mut(bs).enumerate() {
        for &o in f16_fields(ty) {
            // ±65504, the largest finite f16, alternating in sign.
            let h: u16 = if (i + o) % 2 == 0 { 0x7BFF } else { 0xFBFF };
            blk[o..o + 2].copy_from_slice(&h.to_le_bytes());
        }
    }
    cases.push(("max scales", maxed));
    cases.push(("ramp", (0..nb * bs).map(|i| i as u8).collect()));
    let mut specials = rng.bytes(nb * bs);
    for (i, blk) in specials.chunks_exact_mut(bs).enumerate() {
        for &o in f16_fields(ty) {
            let h: u16 = [0x7C00, 0xFC00, 0x7E00, 0x7C01, 0x0001, 0x8000, 0x03FF][(i + o) % 7];
            blk[o..o + 2].copy_from_slice(&h.to_le_bytes());
        }
    }
    cases.push(("inf/nan/subnormal scales", specials));
    cases
}

fn assert_bits_eq(what: &str, ours: &[f32], theirs: &[f32]) {
    assert_eq!(ours.len(), theirs.len(), "{what}: length");
    for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
        assert!(
            a.to_bits() == b.to_bits(),
            "{what}: element {i}: ours {a:e} ({:#010x}), ggml {b:e} ({:#010x})",
            a.to_bits(),
            b.to_bits()
        );
    }
}

#[test]
fn dequantize_is_bit_identical_to_ggml() {
    let mut rng = Rng(1);
    for ty in LEGACY.into_iter().chain([GgmlType::F16, GgmlType::BF16]) {
        let nb = 37;
        let n = nb * ty.block_size();
        for (case, bytes) in dequant_cases(ty, nb, &mut rng) {
            // ggml has no Q8_1 dequantizer; Q8_1's d and qs mean exactly Q8_0's, so drop `s` and
            // ask ggml's Q8_0.
            let theirs = if ty == GgmlType::Q8_1 {
                let q8_0: Vec<u8> = bytes
                    .chunks_exact(36)
                    .flat_map(|b| b[0..2].iter().chain(&b[4..36]).copied())
                    .collect();
                g::dequantize(gid(GgmlType::Q8_0), &q8_0, n)
            } else {
                g::dequantize(gid(ty), &bytes, n)
            }
            .expect("ggml dequantizes this type");
            for (table, k) in [("scalar", scalar(ty)), ("best", best(ty))] {
                let mut ours = vec![0.0f32; n];
                (k.to_f32)(&bytes, &mut ours);
                assert_bits_eq(&format!("{ty} {case} ({table})"), &ours, &theirs);
            }
        }
    }
}

#[test]
fn every_f16_and_bf16_value_dequantizes_as_in_ggml() {
    let all: Vec<u8> = (0..=u16::MAX).flat_map(|h| h.to_le_bytes()).collect();
    for ty in [GgmlType::F16, GgmlType::BF16] {
        let theirs = g::dequantize(gid(ty), &all, 65536).expect("ggml dequantizes");
        for (table, k) in [("scalar", scalar(ty)), ("best", best(ty))] {
            let mut ours = vec![0.0f32; 65536];
            (k.to_f32)(&all, &mut ours);
            assert_bits_eq(&format!("{ty} all values ({table})"), &ours, &theirs);
        }
    }
}

/// f32 inputs that probe conversions: specials, rounding ties at every f16/bf16 exponent, and
/// random bit patterns.
fn conversion_probes(rng: &mut Rng) -> Vec<f32> {
    let mut v: Vec<f32> = [
        0x0000_0000u32,
        0x8000_0000,
        0x7F80_0000,
        0xFF80_0000,
        0x7FC0_0000,
        0x7F80_0001,
        0xFFC1_2345,
        0x7F7F_FFFF,
        0x0000_0001,
        0x477F_E000, // 65504
        0x477F_F000, // 65520: the f16 overflow tie
        0x3380_0000, // 2^-24
        0x3300_0000, // 2^-25: the smallest f16 subnormal's tie
    ]
    .into_iter()
    .map(f32::from_bits)
    .collect();
    for e in 100u32..160 {
        for low in [
            0x0FFFu32, 0x1000, 0x1001, 0x3000, 0x7FFF, 0x8000, 0x8001, 0x1_8000,
        ] {
            for sign in [0, 0x8000_0000] {
                v.push(f32::from_bits(sign | (e << 23) | (low & 0x7F_FFFF)));
            }
        }
    }
    v.extend((0..1 << 20).map(|_| f32::from_bits(rng.next() as u32)));
    v
}

#[test]
fn f16_and_bf16_conversions_match_ggml() {
    let mut rng = Rng(2);
    for x in conversion_probes(&mut rng) {
        assert_eq!(
            quant::f16::f32_to_fp16(x),
            g::fp32_to_fp16(x),
            "f32 {x:e} ({:#010x}) → f16",
            x.to_bits()
        );
        assert_eq!(
            quant::bf16::f32_to_bf16(x),
            g::fp32_to_bf16(x),
            "f32 {x:e} ({:#010x}) → bf16",
            x.to_bits()
        );
    }
    for h in 0..=u16::MAX {
        let (a, b) = (quant::f16::fp16_to_f32(h), g::fp16_to_fp32(h));
        assert_eq!(a.to_bits(), b.to_bits(), "f16 {h:#06x} → f32");
    }
}

/// test-quantize-fns.cpp's synthetic data: 0.1 + 2·cos(i + offset), in f32 as C computes it.
fn synthetic(offset: f32, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| 0.1 + 2.0 * (i as f32 + offset).cos())
        .collect()
}

/// Rows that probe the quantizers, 32-element blocks each: synthetic, random with block scales
/// from 1e-3 to 1e3, all zero, constant, one spike, exact rounding ties, negative extremes.
fn quantize_cases(rng: &mut Rng) -> Vec<(&'static str, Vec<f32>)> {
    let mut cases = vec![("synthetic", synthetic(0.0, TEST_SIZE))];
    let mut random = Vec::new();
    for _ in 0..96 {
        let scale = 10f32.powf(6.0 * rng.unit() - 3.0);
        random.extend((0..32).map(|_| rng.signed() * scale));
    }
    cases.push(("random scales", random));
    cases.push(("zeros", vec![0.0; 64]));
    cases.push(("constant", vec![-0.75; 64]));
    let mut spike = vec![0.0f32; 64];
    spike[5] = 3.0;
    spike[40] = -1e-3;
    cases.push(("spike", spike));
    // amax 127 gives d = 1 for Q8 (and exact halves are roundf ties); the same values are ties
    // of other steps for the 4/5-bit formats.
    let mut ties: Vec<f32> = (0..32).map(|i| i as f32 - 15.5).collect();
    ties[0] = 127.0;
    ties.extend((0..32).map(|i| -(i as f32) * 0.5));
    cases.push(("ties", ties));
    let mut neg = vec![1.0f32; 32];
    neg[3] = -8.0;
    neg.extend((0..32).map(|i| if i % 2 == 0 { -4.0 } else { 4.0 }));
    cases.push(("negative extremes", neg));
    cases
}

#[test]
fn reference_quantizers_are_byte_identical_to_ggml() {
    let mut rng = Rng(3);
    for ty in LEGACY.into_iter().chain([GgmlType::F16, GgmlType::BF16]) {
        for (case, x) in quantize_cases(&mut rng) {
            let theirs = g::quantize_ref(gid(ty), &x).expect("ggml has a reference quantizer");
            for (table, k) in [("scalar", scalar(ty)), ("best", best(ty))] {
                let mut ours = vec![0u8; theirs.len()];
                (k.from_f32)(&x, &mut ours);
                if let Some(i) = ours.iter().zip(&theirs).position(|(a, b)| a != b) {
                    let bs = ty.type_size();
                    panic!(
                        "{ty} {case} ({table}): first difference at byte {i} (block {}): ours {:?}, ggml {:?}",
                        i / bs,
                        &ours[i / bs * bs..(i / bs + 1) * bs],
                        &theirs[i / bs * bs..(i / bs + 1) * bs]
                    );
                }
            }
        }
    }
}

/// test-quantize-fns.cpp's `array_rmse`: sqrt(Σ diff²) / n.
fn rmse(a: &[f32], b: &[f32]) -> f32 {
    let sum: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| {
            let d = (*x - *y) as f64;
            d * d
        })
        .sum();
    (sum.sqrt() / a.len() as f64) as f32
}

fn dequantize_with(ty: GgmlType, bytes: &[u8], n: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; n];
    quant::dequantize_row(ty, bytes, &mut out).expect("whole blocks");
    out
}

#[test]
fn round_trip_error_is_within_ggml_budget() {
    let x = synthetic(0.0, TEST_SIZE);
    for ty in LEGACY.into_iter().chain([GgmlType::F16, GgmlType::BF16]) {
        let mut q = vec![0u8; quant::row_bytes(ty, TEST_SIZE).expect("whole blocks")];
        quant::quantize_row(ty, &x, &mut q).expect("lengths agree");
        let ours = dequantize_with(ty, &q, TEST_SIZE);
        let total = rmse(&x, &ours);
        assert!(
            total < MAX_QUANTIZATION_TOTAL_ERROR,
            "{ty}: total quantization error {total}"
        );
        // ggml's own activation quantizer (its SIMD from_float) as the "reference implementation".
        let theirs_q = g::cpu_from_float(gid(ty), &x);
        let theirs = dequantize_with(ty, &theirs_q, TEST_SIZE);
        let reference = rmse(&ours, &theirs);
        assert!(
            reference < MAX_QUANTIZATION_REFERENCE_ERROR,
            "{ty}: reference implementation error {reference}"
        );
    }
}

#[test]
fn activation_quantizers_agree_with_ggml_cpu() {
    // ggml-cpu's AVX2 Q8_0/Q8_1 quantizer computes 127/amax instead of 1/(amax/127) and rounds
    // ties to even, so a few quants may differ by one; scales must be identical.
    let mut rng = Rng(4);
    for ty in [GgmlType::Q8_0, GgmlType::Q8_1] {
        for (case, x) in quantize_cases(&mut rng) {
            let theirs = g::cpu_from_float(gid(ty), &x);
            let mut ours = vec![0u8; theirs.len()];
            (best(ty).from_f32)(&x, &mut ours);
            let head = if ty == GgmlType::Q8_0 { 2 } else { 4 };
            for (b, (o, t)) in ours
                .chunks_exact(ty.type_size())
                .zip(theirs.chunks_exact(ty.type_size()))
                .enumerate()
            {
                assert_eq!(o[..2], t[..2], "{ty} {case} block {b}: scale");
                for (j, (p, q)) in o[head..].iter().zip(&t[head..]).enumerate() {
                    let (p, q) = (*p as i8 as i32, *q as i8 as i32);
                    assert!(
                        (p - q).abs() <= 1,
                        "{ty} {case} block {b} quant {j}: {p} vs {q}"
                    );
                }
            }
        }
    }
}

/// Quantize `w` as weights and `a` as activations with our reference quantizers.
fn quantize_pair(k: &TypeKernels, w: &[f32], a: &[f32]) -> (Vec<u8>, Vec<u8>) {
    let mut wq = vec![0u8; quant::row_bytes(k.ty, w.len()).expect("whole blocks")];
    (scalar(k.ty).from_f32)(w, &mut wq);
    let mut aq = Vec::new();
    quant::quantize_activation(k, a, &mut aq).expect("whole blocks");
    (wq, aq)
}

/// The exact dot product the format defines, and Σ|terms| (the scale of the rounding error any
/// summation order makes), both in f64 from the dequantized rows. For Q4_1/Q5_1 the offset term
/// is m·s with Q8_1's stored `s` (an f16 of d·Σq, so not exactly Σ of the dequantized values).
fn exact_dot(k: &TypeKernels, wq: &[u8], aq: &[u8], n: usize) -> (f64, f64) {
    let w = dequantize_with(k.ty, wq, n);
    let a = dequantize_with(k.vec_dot_type, aq, n);
    let mut exact: f64 = w.iter().zip(&a).map(|(x, y)| *x as f64 * *y as f64).sum();
    let mut mag: f64 = w
        .iter()
        .zip(&a)
        .map(|(x, y)| (*x as f64 * *y as f64).abs())
        .sum();
    if matches!(k.ty, GgmlType::Q4_1 | GgmlType::Q5_1) {
        let bs = k.ty.type_size();
        for ((wb, ab), ablock) in wq
            .chunks_exact(bs)
            .zip(aq.chunks_exact(36))
            .zip(a.chunks_exact(32))
        {
            let m = quant::f16::le_fp16_to_f32([wb[2], wb[3]]) as f64;
            let s = quant::f16::le_fp16_to_f32([ab[2], ab[3]]) as f64;
            let sum_a: f64 = ablock.iter().map(|v| *v as f64).sum();
            exact += m * (s - sum_a);
            mag += (m * s).abs();
        }
    }
    (exact, mag)
}

#[test]
fn vec_dot_matches_ggml_and_the_exact_dot() {
    let (x, y) = (synthetic(0.0, TEST_SIZE), synthetic(1.0, TEST_SIZE));
    let exact_f32: f64 = x.iter().zip(&y).map(|(a, b)| *a as f64 * *b as f64).sum();
    for ty in LEGACY[..5].iter().copied().chain(FLOATS) {
        let k = scalar(ty);
        assert_eq!(
            k.vec_dot_type.id(),
            g::vec_dot_type(gid(ty)),
            "{ty} activation type"
        );
        let (wq, aq) = quantize_pair(k, &x, &y);
        let theirs = g::cpu_vec_dot(gid(ty), TEST_SIZE, &wq, &aq);
        let (exact, mag) = exact_dot(k, &wq, &aq, TEST_SIZE);
        for (table, k) in [("scalar", k), ("best", best(ty))] {
            let ours = (k.vec_dot)(TEST_SIZE, &wq, &aq);
            // ggml's budget against the f32 data, per element.
            let err = ((ours as f64 - exact_f32).abs() / TEST_SIZE as f64) as f32;
            assert!(
                err < MAX_DOT_PRODUCT_ERROR,
                "{ty} ({table}): dot product error {err}"
            );
            // Same bytes in, so ours and ggml's differ by summation order only.
            let tol = 1e-5 * mag + 1e-30;
            assert!(
                (ours as f64 - theirs as f64).abs() <= tol,
                "{ty} ({table}): ours {ours}, ggml {theirs}, tolerance {tol}"
            );
            assert!(
                (ours as f64 - exact).abs() <= tol,
                "{ty} ({table}): ours {ours}, exact dot of dequantized rows {exact}"
            );
        }
    }
}

#[test]
fn vec_dot_matches_ggml_on_random_rows() {
    let mut rng = Rng(5);
    for ty in LEGACY[..5].iter().copied().chain(FLOATS) {
        for nb in [1usize, 3, 8, 33] {
            let n = nb * 32;
            let mut w = Vec::new();
            for _ in 0..nb {
                let scale = 10f32.powf(4.0 * rng.unit() - 2.0);
                w.extend((0..32).map(|_| rng.signed() * scale));
            }
            let a: Vec<f32> = (0..n).map(|_| rng.signed() * 3.0).collect();
            let k = scalar(ty);
            let (wq, aq) = quantize_pair(k, &w, &a);
            let theirs = g::cpu_vec_dot(gid(ty), n, &wq, &aq);
            let (exact, mag) = exact_dot(k, &wq, &aq, n);
            for (table, k) in [("scalar", k), ("best", best(ty))] {
                let ours = (k.vec_dot)(n, &wq, &aq);
                let tol = 1e-5 * mag + 1e-30;
                assert!(
                    (ours as f64 - theirs as f64).abs() <= tol
                        && (ours as f64 - exact).abs() <= tol,
                    "{ty} ({table}) {nb} blocks: ours {ours}, ggml {theirs}, exact {exact}"
                );
            }
        }
    }
}

#[test]
fn float_vec_dot_matches_ggml_at_odd_lengths() {
    // test-quantize-fns.cpp's f32 lengths, for every float type.
    for ty in FLOATS {
        for n in [
            1usize, 2, 3, 5, 7, 8, 15, 16, 17, 31, 33, 63, 67, 127, 129, 193, 255, 1023,
        ] {
            let (x, y) = (synthetic(0.0, n), synthetic(1.0, n));
            let k = scalar(ty);
            let (wq, aq) = quantize_pair(k, &x, &y);
            let theirs = g::cpu_vec_dot(gid(ty), n, &wq, &aq);
            let (exact, mag) = exact_dot(k, &wq, &aq, n);
            for (table, k) in [("scalar", k), ("best", best(ty))] {
                let ours = (k.vec_dot)(n, &wq, &aq);
                let err = ((ours as f64 - exact).abs() / n as f64) as f32;
                assert!(
                    err < MAX_QUANTIZATION_REFERENCE_ERROR,
                    "{ty} ({table}) n={n}: {err}"
                );
                let tol = 1e-6 * mag;
                assert!(
                    (ours as f64 - theirs as f64).abs() <= tol,
                    "{ty} ({table}) n={n}: ours {ours}, ggml {theirs}"
                );
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use super::*;

    fn available() -> bool {
        if quant::x86::avx2_available() {
            true
        } else {
            eprintln!("skipping: this CPU lacks avx2/fma/f16c, so the SIMD kernels never run");
            false
        }
    }

    /// Guard against comparing scalar with scalar: the best table must hold SIMD kernels here.
    #[test]
    fn best_table_uses_simd_kernels() {
        if !available() {
            return;
        }
        for ty in LEGACY[..5].iter().copied().chain(FLOATS) {
            assert_ne!(
                best(ty).vec_dot as usize,
                scalar(ty).vec_dot as usize,
                "{ty}: vec_dot"
            );
        }
        for ty in [GgmlType::Q8_0, GgmlType::Q8_1] {
            assert_ne!(
                best(ty).from_f32 as usize,
                scalar(ty).from_f32 as usize,
                "{ty}"
            );
        }
        assert_ne!(
            best(GgmlType::F16).to_f32 as usize,
            scalar(GgmlType::F16).to_f32 as usize
        );
    }

    #[test]
    fn simd_vec_dot_agrees_with_scalar() {
        if !available() {
            return;
        }
        let mut rng = Rng(6);
        for ty in LEGACY[..5].iter().copied().chain(FLOATS) {
            let lengths: &[usize] = if ty.block_size() == 1 {
                &[1, 7, 8, 31, 32, 33, 64, 100, 257, 4096]
            } else {
                &[32, 64, 96, 224, 1056, 4096]
            };
            for &n in lengths {
                for trial in 0..4 {
                    let k = scalar(ty);
                    // Weights from random bytes (any file's bits, Q8_0 -128 included) with sane
                    // scales; activations from our quantizer, as in a matmul.
                    let mut wq = rng.bytes(quant::row_bytes(ty, n).expect("whole blocks"));
                    if ty.block_size() == 1 {
                        let w: Vec<f32> = (0..n).map(|_| rng.signed() * 4.0).collect();
                        (k.from_f32)(&w, &mut wq);
                    } else {
                        for blk in wq.chunks_exact_mut(ty.type_size()) {
                            for &o in f16_fields(ty) {
                                blk[o..o + 2].copy_from_slice(&sane_f16(&mut rng));
                            }
                        }
                    }
                    let a: Vec<f32> = (0..n).map(|_| rng.signed() * (1 + trial) as f32).collect();
                    let mut aq = Vec::new();
                    quant::quantize_activation(k, &a, &mut aq).expect("whole blocks");
                    let s = (k.vec_dot)(n, &wq, &aq);
                    let v = (best(ty).vec_dot)(n, &wq, &aq);
                    let (_, mag) = exact_dot(k, &wq, &aq, n);
                    // Both sums round at most once per term and once per partial sum: a few
                    // ulps of Σ|terms| per (block or element) count, stated generously.
                    let terms = (n / ty.block_size() + 32) as f64;
                    let tol = 2.0 * terms * f32::EPSILON as f64 * mag;
                    assert!(
                        (s as f64 - v as f64).abs() <= tol,
                        "{ty} n={n} trial {trial}: scalar {s}, simd {v}, tolerance {tol:e}"
                    );
                }
            }
        }
    }

    #[test]
    fn simd_quantizers_and_dequantizers_are_bit_identical() {
        if !available() {
            return;
        }
        let mut rng = Rng(7);
        for ty in [GgmlType::Q8_0, GgmlType::Q8_1] {
            let mut inputs: Vec<Vec<f32>> =
                quantize_cases(&mut rng).into_iter().map(|c| c.1).collect();
            inputs.push((0..32).map(|_| rng.signed()).collect());
            inputs.push((0..32 * 7).map(|_| rng.signed() * 1e-30).collect());
            inputs.push((0..32 * 3).map(|_| rng.signed() * 1e30).collect());
            for x in inputs {
                let bytes = quant::row_bytes(ty, x.len()).expect("whole blocks");
                let (mut s, mut v) = (vec![0u8; bytes], vec![0u8; bytes]);
                (scalar(ty).from_f32)(&x, &mut s);
                (best(ty).from_f32)(&x, &mut v);
                assert_eq!(s, v, "{ty}: {} elements", x.len());
            }
        }
        for n in [1usize, 7, 8, 9, 33, 1000] {
            let bytes = rng.bytes(2 * n);
            let (mut s, mut v) = (vec![0.0f32; n], vec![0.0f32; n]);
            (scalar(GgmlType::F16).to_f32)(&bytes, &mut s);
            (best(GgmlType::F16).to_f32)(&bytes, &mut v);
            assert_bits_eq(&format!("F16 n={n}"), &v, &s);
        }
    }
}
