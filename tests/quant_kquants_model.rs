//! The k-quant kernels on real weights: every k-quant tensor of the Gemma 3 270M Q4_K_M model
//! (sampled rows), dequantized bit-identically to ggml and dotted with a Q8_K activation row the
//! same as ggml-cpu (within the bound of quant_kquants_vs_ggml.rs) and as our scalar kernel (to
//! the bit). Skips, saying so, when the model is absent.

use std::path::Path;

use ggml_ref::kquant as g;
use infer::gguf::GgufFile;
use infer::quant::{kernels, scalar_kernels, GgmlType};

const MODEL: &str = "models/gemma-3-270m-q4_k_m.gguf";
const QK_K: usize = 256;
/// See `DOT_VS_GGML_REL` in quant_kquants_vs_ggml.rs.
const DOT_VS_GGML_REL: f64 = 1e-6;

#[test]
fn model_k_quant_tensors_match_ggml() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(MODEL);
    if !path.exists() {
        eprintln!(
            "skipping: {} not found (scripts/fetch-model.sh fetches it)",
            path.display()
        );
        return;
    }
    let file = GgufFile::open(&path).expect("model parses");
    let mut seen = std::collections::BTreeMap::new();
    for t in file.tensors() {
        let gty = match t.ty {
            GgmlType::Q2_K | GgmlType::Q3_K | GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K => {
                t.ty.id()
            }
            _ => continue,
        };
        *seen.entry(t.ty.name()).or_insert(0) += 1;
        let n = t.row_len() as usize;
        let rows = t.n_rows() as usize;
        let row_bytes = n / QK_K * t.ty.type_size();
        let data = file.tensor_data(t);
        // An activation row: smooth values with a few large ones, as hidden states have.
        let act: Vec<f32> = (0..n)
            .map(|i| (i as f32 * 0.37).sin() + if i % 97 == 0 { 8.0 } else { 0.0 })
            .collect();
        let mut a = vec![0u8; n / QK_K * 292];
        (kernels(GgmlType::Q8_K).unwrap().from_f32)(&act, &mut a);
        let (best, scalar) = (kernels(t.ty).unwrap(), scalar_kernels(t.ty).unwrap());
        // First, last and a spread of rows in between: enough to cover every tensor's scale ranges
        // without dequantizing the whole 262144-row embedding table.
        let picks = (0..8).map(|k| k * (rows - 1) / 7);
        for r in picks {
            let w = &data[r * row_bytes..(r + 1) * row_bytes];
            let theirs = g::dequantize(gty, w, n);
            let mut ours = vec![0.0f32; n];
            (scalar.to_f32)(w, &mut ours);
            let same = ours
                .iter()
                .zip(&theirs)
                .all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(
                same,
                "{} row {r}: dequantized values differ from ggml",
                t.name
            );

            let s = (scalar.vec_dot)(n, w, &a);
            let b = (best.vec_dot)(n, w, &a);
            assert_eq!(
                s.to_bits(),
                b.to_bits(),
                "{} row {r}: SIMD {b} vs scalar {s}",
                t.name
            );
            let gd = f64::from(g::vec_dot(gty, n, w, &a));
            let mut af = vec![0.0f32; n];
            (scalar_kernels(GgmlType::Q8_K).unwrap().to_f32)(&a, &mut af);
            let abs: f64 = ours
                .iter()
                .zip(&af)
                .map(|(&p, &q)| (f64::from(p) * f64::from(q)).abs())
                .sum();
            let tol = DOT_VS_GGML_REL * abs;
            assert!(
                (f64::from(s) - gd).abs() <= tol,
                "{} row {r}: ours {s}, ggml {gd}, tol {tol}",
                t.name
            );
        }
    }
    eprintln!("k-quant tensors checked: {seen:?}");
    assert!(
        seen.contains_key("Q4_K") && seen.contains_key("Q6_K"),
        "a Q4_K_M model has Q4_K and Q6_K tensors: {seen:?}"
    );
}
