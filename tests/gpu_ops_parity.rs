//! Every GPU op and weight type against the CPU implementation (`infer::cpu`, `infer::quant`,
//! themselves tested against ggml), in the manner of llama.cpp's test-backend-ops: normalised mean
//! squared error `sum((gpu - cpu)^2) / sum(cpu^2)` within a budget stated per op, on shapes that
//! are not multiples of the workgroup (64) or block sizes, with NaN guards on every output and a
//! canary tail after every output buffer that must come back untouched (no out-of-bounds writes).
//!
//! Runs on any wgpu adapter (CI: Mesa's lavapipe); without one each test prints why it skipped.

use half::f16;
use infer::cpu::attention::{attention_cells, AttnParams, KvView};
use infer::cpu::flash_attn::flash_attention;
use infer::cpu::matmul::{matmul, QMatrix};
use infer::cpu::ops::{self, RopeStyle};
use infer::cpu::Pool;
use infer::gpu::ops::{Glu, KvCells};
use infer::gpu::{Batch, DeviceChoice, Gpu, GpuError, GpuMatrix, GpuOptions, GpuTensor};
use infer::model::kv_cache::RowsRef;
use infer::quant::{self, GgmlType};

/// A signalling-NaN bit pattern no kernel produces: written after every output.
const CANARY: u32 = 0x7fa5_5a5a;
const CANARY_LEN: usize = 67;

fn open() -> Option<Gpu> {
    match Gpu::open(DeviceChoice::Gpu(None)) {
        Ok(Some(g)) => Some(g),
        Ok(None) => unreachable!("gpu choice never falls back to the CPU"),
        Err(GpuError::NoAdapter) => {
            eprintln!("skipping GPU parity test: no wgpu adapter on this machine");
            None
        }
        Err(e) => panic!("GPU adapter present but unusable: {e}"),
    }
}

/// Deterministic values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// An output tensor of `n` elements followed by the canary tail.
fn output(gpu: &Gpu, n: usize) -> GpuTensor {
    let mut init = vec![0u32; n];
    init.extend(std::iter::repeat_n(CANARY, CANARY_LEN));
    GpuTensor::from_u32(gpu, &init, "out").expect("output tensor")
}

/// An input tensor holding `data` followed by the canary tail (an op that reads past its input
/// would then see NaN and fail the NaN guard).
fn input(gpu: &Gpu, data: &[f32]) -> GpuTensor {
    let mut init: Vec<u32> = data.iter().map(|v| v.to_bits()).collect();
    init.extend(std::iter::repeat_n(CANARY, CANARY_LEN));
    GpuTensor::from_u32(gpu, &init, "in").expect("input tensor")
}

/// Read back the first `n` elements, asserting the canary tail is intact and no value is NaN.
fn read(gpu: &Gpu, t: &GpuTensor, n: usize, what: &str) -> Vec<f32> {
    let all = t.read_u32(gpu).expect("readback");
    assert_eq!(all.len(), n + CANARY_LEN, "{what}: tensor length");
    assert!(
        all[n..].iter().all(|&b| b == CANARY),
        "{what}: out-of-bounds write into the canary tail"
    );
    let v: Vec<f32> = all[..n].iter().map(|&b| f32::from_bits(b)).collect();
    if let Some(i) = v.iter().position(|x| x.is_nan()) {
        panic!("{what}: NaN at {i}");
    }
    v
}

fn nmse(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len());
    let (mut err, mut norm) = (0.0f64, 0.0f64);
    for (&g, &w) in got.iter().zip(want) {
        err += (g as f64 - w as f64).powi(2);
        norm += (w as f64).powi(2);
    }
    err / norm.max(f64::MIN_POSITIVE)
}

fn check(got: &[f32], want: &[f32], budget: f64, what: &str) {
    let e = nmse(got, want);
    assert!(e <= budget, "{what}: NMSE {e:e} over budget {budget:e}");
}

fn run(gpu: &Gpu, f: impl FnOnce(&mut Batch) -> Result<(), GpuError>) {
    let mut b = Batch::new(gpu);
    f(&mut b).expect("record ops");
    b.submit().expect("submit");
    gpu.wait().expect("GPU work completes");
}

/// Random weights quantized with our reference quantizer; their scales are sane f16 values.
fn weights(ty: GgmlType, k: usize, m: usize, seed: u64) -> Vec<u8> {
    let src = values(k * m, seed);
    let rb = quant::row_bytes(ty, k).expect("row bytes");
    let mut bytes = vec![0u8; rb * m];
    for (r, out) in bytes.chunks_exact_mut(rb).enumerate() {
        quant::quantize_row(ty, &src[r * k..(r + 1) * k], out).expect("quantize");
    }
    bytes
}

fn dequantized(ty: GgmlType, k: usize, bytes: &[u8]) -> Vec<f32> {
    let rb = quant::row_bytes(ty, k).expect("row bytes");
    let mut out = vec![0.0f32; bytes.len() / rb * k];
    for (src, dst) in bytes.chunks_exact(rb).zip(out.chunks_exact_mut(k)) {
        quant::dequantize_row(ty, src, dst).expect("dequantize");
    }
    out
}

/// Types with a WGSL decoder, then types served by the dequantize-on-upload fallback.
const NATIVE: [GgmlType; 7] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::Q4_0,
    GgmlType::Q5_0,
    GgmlType::Q8_0,
    GgmlType::Q4_K,
    GgmlType::Q6_K,
];
const FALLBACK: [GgmlType; 6] = [
    GgmlType::BF16,
    GgmlType::Q4_1,
    GgmlType::Q5_1,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q5_K,
];

/// Matrix products for every weight type, one token (matvec) and batches that do not fill the
/// 8-token tile (matmul), on 131 rows of 768 (3 k-quant blocks). Two oracles: the CPU matmul
/// (which quantizes activations to Q8 as ggml-cpu does: budget 5e-4, test-backend-ops' mul_mat
/// budget) and the exact product of the dequantized weights with the f32 activations in f64
/// (budget 1e-9: only f32 rounding may differ, so a wrong nibble or scale fails it).
#[test]
fn matmul_matches_cpu_for_every_weight_type() {
    let Some(gpu) = open() else { return };
    let pool = Pool::new(2).expect("pool");
    let (k, m) = (768, 131);
    for (ti, &ty) in NATIVE.iter().chain(FALLBACK.iter()).enumerate() {
        let bytes = weights(ty, k, m, 10 + ti as u64);
        let wf = dequantized(ty, k, &bytes);
        let gw = GpuMatrix::upload(&gpu, "w", ty, k, m, &bytes).expect("upload");
        let qm = QMatrix::new(ty, k, m, &bytes).expect("cpu matrix");
        for n_tok in [1usize, 5, 9] {
            let x = values(k * n_tok, 99 + n_tok as u64);
            let gx = input(&gpu, &x);
            let gy = output(&gpu, n_tok * m);
            run(&gpu, |b| b.matmul(&gw, &gx, n_tok, &gy));
            let got = read(&gpu, &gy, n_tok * m, &format!("{ty} x{n_tok}"));
            let mut cpu = vec![0.0f32; n_tok * m];
            matmul(&pool, &qm, &x, n_tok, &mut cpu, &mut Vec::new());
            check(
                &got,
                &cpu,
                5e-4,
                &format!("{ty} n_tok {n_tok} vs CPU matmul"),
            );
            let exact: Vec<f32> = (0..n_tok * m)
                .map(|i| {
                    let (t, r) = (i / m, i % m);
                    (0..k)
                        .map(|j| wf[r * k + j] as f64 * x[t * k + j] as f64)
                        .sum::<f64>() as f32
                })
                .collect();
            check(&got, &exact, 1e-9, &format!("{ty} n_tok {n_tok} vs exact"));
        }
    }
}

/// The quantized-activation product (activations quantized on the device to Q8_0 or Q8_K as
/// ggml-cpu does, exact integer block dots, the CPU's per-block float step) against the CPU
/// matmul for the four formats that take it, one token and batches, on 131 rows of 768, with the
/// matrix split across buffers. Only the order of the per-block sums differs, so the budget is
/// 1e-10 (f32 rounding of ~24 block terms), where f32 activations are ~1e-5 off: a wrong quant,
/// scale or rounding mode fails it; with AVX2, outputs must be bit-identical (the GPU follows the
/// CPU's per-format float order), which a wrong order or batch rule fails.
#[test]
fn quantized_activation_matmul_matches_cpu() {
    let Some(gpu) = open() else { return };
    let pool = Pool::new(2).expect("pool");
    // The GPU mirrors the float orders of llama.cpp's AVX2 kernels, which the CPU forward runs
    // where the CPU has AVX2; elsewhere the CPU's portable orders differ in the last bits.
    #[cfg(target_arch = "x86_64")]
    let exact = infer::quant::x86::avx2_available();
    #[cfg(not(target_arch = "x86_64"))]
    let exact = false;
    let k = 768;
    for (ti, ty) in [
        GgmlType::Q5_0,
        GgmlType::Q8_0,
        GgmlType::Q4_K,
        GgmlType::Q6_K,
    ]
    .into_iter()
    .enumerate()
    {
        // 136 rows: a multiple of 8 (Q4_K takes ggml's repacked kernels) but not of the
        // workgroup; 131: neither (Q4_K takes the reference order, checked by NMSE only).
        for m in [136usize, 131] {
            let bytes = weights(ty, k, m, 40 + ti as u64);
            let rb = quant::row_bytes(ty, k).unwrap();
            let gw = GpuMatrix::upload_chunked(&gpu, "w", ty, k, m, &bytes, (rb * 50) as u64)
                .expect("upload");
            let qm = QMatrix::new(ty, k, m, &bytes).expect("cpu matrix");
            // 1: decode; 5: Q4_K's groups of four plus a single row; 9: Q6_K's tiled order.
            for n_tok in [1usize, 5, 9] {
                // Outliers, as Gemma's activations have, make the quantization step matter.
                let mut x = values(k * n_tok, 7 + n_tok as u64);
                for (i, v) in x.iter_mut().enumerate() {
                    if i % 97 == 3 {
                        *v *= 40.0;
                    }
                }
                let gx = input(&gpu, &x);
                let gy = output(&gpu, n_tok * m);
                let aq = GpuTensor::zeros(&gpu, n_tok * k, "aq").unwrap();
                let ad = GpuTensor::zeros(&gpu, n_tok * k / 32, "ad").unwrap();
                run(&gpu, |b| b.matmul_q8(&gw, &gx, n_tok, &gy, &aq, &ad));
                let what = format!("{ty} {m} rows x{n_tok}");
                let got = read(&gpu, &gy, n_tok * m, &what);
                let mut cpu = vec![0.0f32; n_tok * m];
                matmul(&pool, &qm, &x, n_tok, &mut cpu, &mut Vec::new());
                check(
                    &got,
                    &cpu,
                    1e-10,
                    &format!("{what} quantized vs CPU matmul"),
                );
                if exact && (ty != GgmlType::Q4_K || m % 8 == 0) {
                    let diff = got
                        .iter()
                        .zip(&cpu)
                        .filter(|(a, b)| a.to_bits() != b.to_bits())
                        .count();
                    assert_eq!(
                        diff, 0,
                        "{what}: {diff} outputs not bit-identical to the CPU's"
                    );
                }
            }
        }
    }
}

/// A matrix split across several buffers (as Gemma's 178 MB embedding is on lavapipe's 128 MiB
/// bindings): matvec, matmul and row lookup give the same numbers as one buffer.
#[test]
fn split_matrices_match_whole_ones() {
    let Some(gpu) = open() else { return };
    let (k, m) = (512, 131);
    for ty in [GgmlType::Q8_0, GgmlType::Q4_K, GgmlType::Q6_K] {
        let bytes = weights(ty, k, m, 7);
        let rb = quant::row_bytes(ty, k).unwrap() as u64;
        let whole = GpuMatrix::upload(&gpu, "whole", ty, k, m, &bytes).unwrap();
        let split =
            GpuMatrix::upload_chunked(&gpu, "split", ty, k, m, &bytes, rb * 50 + 4).unwrap();
        assert_eq!((whole.n_chunks(), split.n_chunks()), (1, 3), "{ty}");
        for n_tok in [1usize, 3] {
            let x = values(k * n_tok, 5);
            let gx = input(&gpu, &x);
            let (a, b) = (output(&gpu, n_tok * m), output(&gpu, n_tok * m));
            run(&gpu, |bt| {
                bt.matmul(&whole, &gx, n_tok, &a)?;
                bt.matmul(&split, &gx, n_tok, &b)
            });
            let (a, b) = (
                read(&gpu, &a, n_tok * m, "whole"),
                read(&gpu, &b, n_tok * m, "split"),
            );
            assert_eq!(a, b, "{ty} n_tok {n_tok}");
        }
    }
}

/// Embedding rows from quantized tables (ids in every chunk of a split table, repeated ids, the
/// last row) against the CPU dequantizer: the same decode, so the budget is f32 rounding only.
#[test]
fn get_rows_matches_cpu_dequantize() {
    let Some(gpu) = open() else { return };
    let (k, m) = (256, 131);
    let ids = [0u32, 130, 7, 64, 130, 51, 100];
    for &ty in NATIVE.iter().chain(FALLBACK.iter()) {
        let bytes = weights(ty, k, m, 3);
        let wf = dequantized(ty, k, &bytes);
        let rb = quant::row_bytes(ty, k).unwrap() as u64;
        let table = GpuMatrix::upload_chunked(&gpu, "emb", ty, k, m, &bytes, rb * 50 + 4).unwrap();
        let gids = GpuTensor::from_u32(&gpu, &ids, "ids").unwrap();
        let out = output(&gpu, ids.len() * k);
        run(&gpu, |b| b.get_rows(&table, &gids, ids.len(), &out));
        let got = read(&gpu, &out, ids.len() * k, &format!("get_rows {ty}"));
        let want: Vec<f32> = ids
            .iter()
            .flat_map(|&r| wf[r as usize * k..(r as usize + 1) * k].to_vec())
            .collect();
        check(&got, &want, 1e-12, &format!("get_rows {ty}"));
    }
}

/// RMS norm over 37 rows of 131, out of place, and in place per head (Q/K norm: 37 rows of 72).
/// The CPU sums squares in f64, the GPU in f32: budget 1e-10.
#[test]
fn rms_norm_matches_cpu() {
    let Some(gpu) = open() else { return };
    for (n, rows, inplace) in [(131usize, 37usize, false), (72, 37, true), (640, 3, false)] {
        let x = values(n * rows, 1);
        let w: Vec<f32> = values(n, 2).iter().map(|v| 1.0 + v).collect();
        let gw = input(&gpu, &w);
        let gx = input(&gpu, &x);
        let out = if inplace {
            None
        } else {
            Some(output(&gpu, n * rows))
        };
        let gy = out.as_ref().unwrap_or(&gx);
        run(&gpu, |b| b.rms_norm(&gw, &gx, gy, n, rows, 1e-6));
        let got = read(&gpu, gy, n * rows, "rms_norm");
        let mut want = vec![0.0f32; n * rows];
        for r in 0..rows {
            ops::rms_norm(
                &x[r * n..(r + 1) * n],
                &w,
                1e-6,
                &mut want[r * n..(r + 1) * n],
            );
        }
        check(&got, &want, 1e-10, &format!("rms_norm n {n} rows {rows}"));
    }
}

/// RoPE in both pairings, full and partial rotation, 5 heads of 72 over 7 tokens at positions
/// 1000..1007, with the angles of `rope_cache`: budget 1e-10.
#[test]
fn rope_matches_cpu() {
    let Some(gpu) = open() else { return };
    let (hd, n_head, n_tok, pos0) = (72, 5, 7, 1000);
    for style in [RopeStyle::Norm, RopeStyle::Neox] {
        for n_rot in [72usize, 32] {
            let x = values(n_tok * n_head * hd, 4);
            let mut cs = vec![0.0f32; n_tok * n_rot];
            for t in 0..n_tok {
                ops::rope_cache(
                    pos0 + t,
                    n_rot,
                    10000.0,
                    1.0,
                    &mut cs[t * n_rot..(t + 1) * n_rot],
                );
            }
            let gcs = input(&gpu, &cs);
            let gx = input(&gpu, &x);
            run(&gpu, |b| b.rope(&gcs, &gx, hd, n_rot, n_head, n_tok, style));
            let got = read(&gpu, &gx, x.len(), "rope");
            let mut want = x.clone();
            for t in 0..n_tok {
                let row = &mut want[t * n_head * hd..(t + 1) * n_head * hd];
                ops::rope(row, hd, n_rot, style, &cs[t * n_rot..(t + 1) * n_rot]);
            }
            let what = format!("rope {style:?} n_rot {n_rot}");
            check(&got, &want, 1e-10, &what);
            same(&got, &want, &what);
        }
    }
}

/// Softmax of 37 rows of 131 with large logits (the max subtraction matters): budget 1e-10.
#[test]
fn softmax_matches_cpu() {
    let Some(gpu) = open() else { return };
    let (n, rows) = (131, 37);
    let x: Vec<f32> = values(n * rows, 8).iter().map(|v| v * 40.0).collect();
    let gx = input(&gpu, &x);
    run(&gpu, |b| b.softmax(&gx, n, rows));
    let got = read(&gpu, &gx, n * rows, "softmax");
    let mut want = x.clone();
    for r in want.chunks_exact_mut(n) {
        ops::softmax_inplace(r);
    }
    check(&got, &want, 1e-10, "softmax");
}

/// One attention case's cache: `n_cells` cells of f16-rounded keys and values, and the cell of
/// each position. `ring` lays positions out as a wrapped window ring does (position j in cell
/// (j + 5) % n_cells, two cells left empty and one holding a position no query sees yet);
/// otherwise cell = position. Rows of empty cells hold values that must never be read.
struct Cache {
    pos: Vec<i32>,
    keys: Vec<f16>,
    vals: Vec<f16>,
}

fn cache(n_pos: usize, n_head_kv: usize, hd: usize, ring: bool) -> Cache {
    let n_cells = if ring { n_pos + 3 } else { n_pos };
    let mut pos = vec![-1i32; n_cells];
    for j in 0..n_pos {
        let c = if ring { (j + 5) % n_cells } else { j };
        pos[c] = j as i32;
    }
    if ring {
        // a cell of a later position (written by a batch still running): masked by causality
        pos[(n_pos + 5) % n_cells] = (n_pos + 40) as i32;
    }
    let f16r = |v: Vec<f32>| -> Vec<f16> { v.iter().map(|&x| f16::from_f32(x * 2.0)).collect() };
    Cache {
        pos,
        keys: f16r(values(n_cells * n_head_kv * hd, 11)),
        vals: f16r(values(n_cells * n_head_kv * hd, 12)),
    }
}

/// The cache on the device: f32 rows and positions (i32 bits), each with a canary tail.
fn device_cache(gpu: &Gpu, c: &Cache) -> (GpuTensor, GpuTensor, GpuTensor) {
    let f32s = |v: &[f16]| -> Vec<f32> { v.iter().map(|x| x.to_f32()).collect() };
    let pos: Vec<u32> = c.pos.iter().map(|&p| p as u32).collect();
    let mut pos_init = pos.clone();
    pos_init.extend(std::iter::repeat_n(CANARY, CANARY_LEN));
    (
        input(gpu, &f32s(&c.keys)),
        input(gpu, &f32s(&c.vals)),
        GpuTensor::from_u32(gpu, &pos_init, "cell positions").expect("positions"),
    )
}

/// Attention for decode and prefill, with and without a sliding window, with GQA groups of 1, 2
/// and 4, head dims not multiples of 64, over caches laid out by position and as a wrapped ring
/// with empty cells, against `cpu::attention` on the same f16 cache. Every output must equal the
/// CPU's (the kernel mirrors its order); the NMSE budget (1e-6: a weight on the other side of an
/// f16 rounding boundary) says how far a parting went.
#[test]
fn attention_matches_cpu() {
    let Some(gpu) = open() else { return };
    let pool = Pool::new(2).expect("pool");
    let cases = [
        // (n_head, n_head_kv, head_dim, pos0, n_tok, window, ring)
        (4, 2, 72, 40, 1, None, false),
        (4, 1, 72, 40, 1, Some(7), true),
        (3, 3, 40, 0, 13, None, false),
        // positions 0..12 cross the window's edge (a query at p = window sees 1..=p)
        (4, 2, 72, 0, 13, Some(5), false),
        (4, 2, 72, 20, 13, Some(9), true),
        (8, 2, 64, 100, 70, Some(64), false),
        // Gemma 3's head size, keys in several tiles of 64, a 512 window over 600 positions
        (4, 1, 256, 600, 3, Some(512), true),
        (4, 1, 256, 0, 70, None, false),
    ];
    for (n_head, n_head_kv, hd, pos0, n_tok, window, ring) in cases {
        let p = AttnParams {
            n_head,
            n_head_kv,
            head_dim: hd,
            head_dim_v: hd,
            scale: 1.0 / (hd as f32).sqrt(),
            window,
        };
        let c = cache(pos0 + n_tok, n_head_kv, hd, ring);
        let q: Vec<f32> = values(n_tok * n_head * hd, 13)
            .iter()
            .map(|v| v * 3.0)
            .collect();
        let gq = input(&gpu, &q);
        let (gk, gv, gpos) = device_cache(&gpu, &c);
        let kv = KvCells {
            keys: &gk,
            values: &gv,
            pos: &gpos,
            n_cells: c.pos.len(),
        };
        let out = output(&gpu, n_tok * n_head * hd);
        // Scratch for 3 rows' scores: most cases take several dispatches of rows.
        let scores = GpuTensor::zeros(&gpu, 3 * c.pos.len(), "scores").unwrap();
        run(&gpu, |b| {
            b.attention(&p, &gq, &kv, pos0, n_tok, &out, &scores)
        });
        let got = read(&gpu, &out, n_tok * n_head * hd, "attention");
        let mut want = vec![0.0f32; n_tok * n_head * hd];
        let view = KvView {
            pos: &c.pos,
            keys: RowsRef::F16(&c.keys),
            values: RowsRef::F16(&c.vals),
        };
        attention_cells(&pool, &p, &q, &view, pos0, &mut want);
        let what = format!(
            "attention h{n_head}/{n_head_kv} d{hd} pos0 {pos0} n {n_tok} w {window:?} ring {ring}"
        );
        check(&got, &want, 1e-6, &what);
        same(&got, &want, &what);
    }
}

/// Flash attention in each of the forms ggml-cpu picks (crate::cpu::flash_attn): one chunk (a
/// decode row over fewer than 512 cells, or a batch of fewer than 64 rows), a decode row split
/// over 2 and 3 threads' chunks (512 cells and more, a chunk size that does not divide them),
/// and tiles of 64 cells (64 rows and more, a partial last tile); with windows, GQA, head dims
/// not multiples of 64, a wrapped ring with empty cells, and llama.cpp's padded cell count (past
/// the used cells). Every output must equal the CPU's: the kernel mirrors its float order, its
/// f16 roundings and both exponentials (glibc's expf emulated on double-f32, see
/// shaders/common/expf.wgsl; 1e-6 NMSE says how far a parting went).
#[test]
fn flash_attention_matches_cpu() {
    let Some(gpu) = open() else { return };
    let cases = [
        // (n_head, n_head_kv, head_dim, pos0, n_tok, window, ring, n_kv, threads)
        (4, 2, 72, 40, 1, None, false, 256, 2),
        (4, 1, 72, 40, 1, Some(7), true, 256, 2),
        (3, 3, 40, 0, 13, None, false, 256, 2),
        (4, 2, 72, 20, 13, Some(9), true, 256, 2),
        (4, 1, 256, 600, 1, Some(512), true, 768, 2),
        (2, 1, 72, 700, 1, None, false, 768, 3),
        (8, 2, 64, 100, 70, Some(64), false, 256, 2),
        (4, 1, 256, 0, 70, None, true, 256, 2),
    ];
    for (n_head, n_head_kv, hd, pos0, n_tok, window, ring, n_kv, threads) in cases {
        let pool = Pool::new(threads).expect("pool");
        let p = AttnParams {
            n_head,
            n_head_kv,
            head_dim: hd,
            head_dim_v: hd,
            scale: 1.0 / (hd as f32).sqrt(),
            window,
        };
        let c = cache(pos0 + n_tok, n_head_kv, hd, ring);
        let q: Vec<f32> = values(n_tok * n_head * hd, 13)
            .iter()
            .map(|v| v * 3.0)
            .collect();
        let gq = input(&gpu, &q);
        let (gk, gv, gpos) = device_cache(&gpu, &c);
        let kv = KvCells {
            keys: &gk,
            values: &gv,
            pos: &gpos,
            n_cells: c.pos.len(),
        };
        let out = output(&gpu, n_tok * n_head * hd);
        // Scratch for 2 rows of the chunked form: several dispatches of rows.
        let scores = GpuTensor::zeros(&gpu, 6 * n_kv, "scores").unwrap();
        run(&gpu, |b| {
            b.flash_attention(&p, &gq, &kv, n_kv, threads, pos0, n_tok, &out, &scores)
        });
        let got = read(&gpu, &out, n_tok * n_head * hd, "flash attention");
        let mut want = vec![0.0f32; n_tok * n_head * hd];
        let view = KvView {
            pos: &c.pos,
            keys: RowsRef::F16(&c.keys),
            values: RowsRef::F16(&c.vals),
        };
        flash_attention(&pool, &p, &q, &view, n_kv, pos0, &mut want, false);
        let what = format!(
            "flash attention h{n_head}/{n_head_kv} d{hd} pos0 {pos0} n {n_tok} w {window:?} \
             ring {ring} n_kv {n_kv} threads {threads}"
        );
        check(&got, &want, 1e-6, &what);
        same(&got, &want, &what);
    }
}

/// Every output equal to the CPU's (signed zeros aside): for the kernels that follow the CPU's
/// float order step for step, which is what keeps greedy decoding on the GPU identical.
fn same(got: &[f32], want: &[f32], what: &str) {
    let diff = got.iter().zip(want).filter(|(a, b)| a != b).count();
    assert_eq!(
        diff,
        0,
        "{what}: {diff} of {} outputs differ from the CPU's",
        want.len()
    );
}

/// Storing into the cache rounds to f16 exactly as the CPU cache does (subnormals included), into
/// the cells given (out of order, as a wrapped ring hands them out) and nowhere else.
#[test]
fn kv_store_rounds_to_f16_into_cells() {
    let Some(gpu) = open() else { return };
    let (width, cap) = (72, 11);
    let cells = [9u32, 10, 0];
    let n_tok = cells.len();
    let mut src: Vec<f32> = values(width * n_tok, 21)
        .iter()
        .map(|v| v * 100.0)
        .collect();
    // f16 subnormals (below 2^-14) must be kept, not flushed, as the CPU cache keeps them.
    src[..4].copy_from_slice(&[3.1e-6, -1.0e-7, 6.0e-5, 2.9e-8]);
    let gs = input(&gpu, &src);
    let gc = GpuTensor::from_u32(&gpu, &cells, "cells").unwrap();
    let cache = output(&gpu, cap * width);
    run(&gpu, |b| b.kv_store(&gs, &cache, &gc, width, n_tok));
    let got = read(&gpu, &cache, cap * width, "kv_store");
    for (i, &g) in got.iter().enumerate() {
        let want = match cells.iter().position(|&c| c as usize == i / width) {
            Some(t) => f16::from_f32(src[t * width + i % width]).to_f32(),
            None => 0.0,
        };
        assert_eq!(g.to_bits(), want.to_bits(), "element {i}");
    }
}

/// GEGLU (ggml's f16 GELU table, saturating outside (-10, 10)) and SwiGLU over 1031 values spread
/// over [-12, 12]. GELU's result is rounded to f16 on both sides; a GPU tanh a few ulps off can
/// land on the neighbouring f16 (2^-11 relative): budget 1e-6. SwiGLU: 1e-10.
#[test]
fn gated_activations_match_cpu() {
    let Some(gpu) = open() else { return };
    let n = 1031;
    let gate: Vec<f32> = values(n, 31).iter().map(|v| v * 12.0).collect();
    let up = values(n, 32);
    let (gg, gu) = (input(&gpu, &gate), input(&gpu, &up));
    for (act, budget) in [(Glu::Gelu, 1e-6), (Glu::Silu, 1e-10)] {
        let out = output(&gpu, n);
        run(&gpu, |b| b.glu(act, &gg, &gu, &out, n));
        let got = read(&gpu, &out, n, "glu");
        let mut want = vec![0.0f32; n];
        match act {
            Glu::Gelu => ops::geglu(&gate, &up, &mut want),
            Glu::Silu => ops::swiglu(&gate, &up, &mut want),
        }
        check(&got, &want, budget, &format!("{act:?}"));
    }
}

/// Residual add, scale and logit soft-cap over 1031 elements.
#[test]
fn elementwise_ops_match_cpu() {
    let Some(gpu) = open() else { return };
    let n = 1031;
    let a: Vec<f32> = values(n, 41).iter().map(|v| v * 50.0).collect();
    let x = values(n, 42);
    let (ga, gx) = (input(&gpu, &a), input(&gpu, &x));
    run(&gpu, |b| b.add(&ga, &gx, n));
    let mut want = a.clone();
    ops::add_inplace(&mut want, &x);
    check(&read(&gpu, &ga, n, "add"), &want, 1e-14, "add");

    let gs = input(&gpu, &a);
    run(&gpu, |b| b.scale(&gs, n, 25.3));
    let mut want = a.clone();
    ops::scale_inplace(&mut want, 25.3);
    check(&read(&gpu, &gs, n, "scale"), &want, 1e-14, "scale");

    let gc = input(&gpu, &a);
    run(&gpu, |b| b.softcap(&gc, n, 30.0));
    let mut want = a.clone();
    ops::softcap_inplace(&mut want, 30.0);
    check(&read(&gpu, &gc, n, "softcap"), &want, 1e-10, "softcap");
}

/// Argmax over a Gemma-sized vocabulary plus 3: ties go to the lowest index, NaN never wins, and
/// values past `n` are ignored.
#[test]
fn argmax_picks_lowest_index_of_the_max() {
    let Some(gpu) = open() else { return };
    let n = 262_147;
    let mut x = values(n, 51);
    x[200_001] = 7.5;
    x[3_333] = 7.5;
    x[17] = f32::NAN;
    let mut padded = x.clone();
    padded.extend([100.0f32; 5]);
    let gx = GpuTensor::from_f32(&gpu, &padded, "logits").unwrap();
    let out = GpuTensor::zeros(&gpu, 1, "id").unwrap();
    run(&gpu, |b| b.argmax(&gx, n, &out));
    assert_eq!(out.read_u32(&gpu).unwrap(), vec![3_333]);
    // The same through the CPU sampler's rule (NaN excluded).
    x[17] = 0.0;
    let want = infer::sample::argmax(&infer::sample::Candidates::from_logits(&x)).unwrap();
    assert_eq!(want, 3_333);
}

/// The kernels with a form for an optional adapter ability (subgroup maxima and minima in
/// attention, softmax and argmax; the matmul's tree sum stays) give the same bits as their
/// portable fallbacks: the adapter with every ability it has (what the other tests check against
/// the CPU) against the same adapter with none. Skips, saying so, where the adapter has none.
#[test]
fn optional_abilities_give_the_same_bits() {
    let Some(full) = open() else { return };
    let caps = full.caps();
    if !caps.subgroups {
        eprintln!("skipping: the adapter has no subgroups");
        return;
    }
    eprintln!("adapter abilities: {caps:?}");
    let none = GpuOptions { subgroups: false };
    let plain = Gpu::open_with(DeviceChoice::Gpu(None), none)
        .expect("adapter opens")
        .expect("a gpu");
    assert!(!plain.caps().subgroups);
    let bits = |v: Vec<f32>| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    // Every output of a sequence of ops, on one device.
    let outputs = |gpu: &Gpu| -> Vec<(String, Vec<u32>)> {
        let mut res = Vec::new();
        let (k, m) = (768, 131);
        let bytes = weights(GgmlType::F16, k, m, 77);
        let gw = GpuMatrix::upload(gpu, "w", GgmlType::F16, k, m, &bytes).expect("upload");
        for n_tok in [1usize, 9] {
            let gx = input(gpu, &values(k * n_tok, 78));
            let gy = output(gpu, n_tok * m);
            run(gpu, |b| b.matmul(&gw, &gx, n_tok, &gy));
            res.push((
                format!("F16 matmul x{n_tok}"),
                bits(read(gpu, &gy, n_tok * m, "matmul")),
            ));
        }
        let ids = GpuTensor::from_u32(gpu, &[5, 0, 130], "ids").unwrap();
        let rows = output(gpu, 3 * k);
        run(gpu, |b| b.get_rows(&gw, &ids, 3, &rows));
        res.push((
            "F16 get_rows".into(),
            bits(read(gpu, &rows, 3 * k, "get_rows")),
        ));
        let sm = input(
            gpu,
            &values(3 * 1000, 79)
                .iter()
                .map(|v| v * 30.0)
                .collect::<Vec<_>>(),
        );
        run(gpu, |b| b.softmax(&sm, 1000, 3));
        res.push(("softmax".into(), bits(read(gpu, &sm, 3000, "softmax"))));
        let mut lv = values(70_001, 80);
        lv[69_000] = 3.0;
        lv[12] = 3.0;
        let lx = GpuTensor::from_f32(gpu, &lv, "logits").unwrap();
        let id = GpuTensor::zeros(gpu, 1, "id").unwrap();
        run(gpu, |b| b.argmax(&lx, lv.len(), &id));
        res.push(("argmax".into(), id.read_u32(gpu).unwrap()));
        let p = AttnParams {
            n_head: 4,
            n_head_kv: 2,
            head_dim: 72,
            head_dim_v: 72,
            scale: 0.12,
            window: Some(50),
        };
        for (pos0, n_tok) in [(600usize, 1usize), (20, 70)] {
            let c = cache(pos0 + n_tok, 2, 72, true);
            let (gk, gv, gpos) = device_cache(gpu, &c);
            let kv = KvCells {
                keys: &gk,
                values: &gv,
                pos: &gpos,
                n_cells: c.pos.len(),
            };
            let gq = input(gpu, &values(n_tok * 4 * 72, 81));
            let n = n_tok * 4 * 72;
            let scores = GpuTensor::zeros(gpu, 3 * 1024 * 8, "scores").unwrap();
            let out = output(gpu, n);
            run(gpu, |b| {
                b.attention(&p, &gq, &kv, pos0, n_tok, &out, &scores)
            });
            res.push((
                format!("attention n {n_tok}"),
                bits(read(gpu, &out, n, "attention")),
            ));
            let out = output(gpu, n);
            run(gpu, |b| {
                b.flash_attention(&p, &gq, &kv, 1024, 2, pos0, n_tok, &out, &scores)
            });
            res.push((
                format!("flash attention n {n_tok}"),
                bits(read(gpu, &out, n, "flash")),
            ));
        }
        res
    };
    let (a, b) = (outputs(&full), outputs(&plain));
    for ((what, x), (_, y)) in a.iter().zip(&b) {
        let diff = x.iter().zip(y).filter(|(p, q)| p != q).count();
        assert_eq!(
            diff,
            0,
            "{what}: {diff} of {} outputs differ with the fallbacks",
            x.len()
        );
    }
}

/// Sizes that do not fit the tensors are errors before anything is dispatched, and an adapter
/// index past the list is a clear error.
#[test]
fn bad_shapes_and_adapters_are_errors() {
    let Some(gpu) = open() else { return };
    let bytes = weights(GgmlType::Q8_0, 64, 3, 1);
    let w = GpuMatrix::upload(&gpu, "w", GgmlType::Q8_0, 64, 3, &bytes).unwrap();
    let x = GpuTensor::zeros(&gpu, 64, "x").unwrap();
    let y = GpuTensor::zeros(&gpu, 2, "y").unwrap();
    let mut b = Batch::new(&gpu);
    assert!(matches!(
        b.matmul(&w, &x, 1, &y),
        Err(GpuError::Shape { .. })
    ));
    assert!(matches!(
        GpuMatrix::upload(&gpu, "w", GgmlType::Q8_0, 64, 4, &bytes),
        Err(GpuError::Shape { .. })
    ));
    assert!(matches!(
        GpuMatrix::upload(&gpu, "w", GgmlType::F32, 40, 1, &[0u8; 160]),
        Err(GpuError::Shape { .. })
    ));
    assert!(matches!(
        Gpu::open(DeviceChoice::Gpu(Some(1000))),
        Err(GpuError::NoSuchAdapter { index: 1000, .. })
    ));
    // Attention: a cache shorter than its cells, value heads past the kernel's 256, more
    // chunks than it merges, scratch that holds no row.
    let p = AttnParams {
        n_head: 2,
        n_head_kv: 1,
        head_dim: 64,
        head_dim_v: 64,
        scale: 0.125,
        window: None,
    };
    let c = cache(600, 1, 64, false);
    let (gk, gv, gpos) = device_cache(&gpu, &c);
    let kv = KvCells {
        keys: &gk,
        values: &gv,
        pos: &gpos,
        n_cells: 600,
    };
    let q = GpuTensor::zeros(&gpu, 2 * 64, "q").unwrap();
    let out = GpuTensor::zeros(&gpu, 2 * 64, "out").unwrap();
    let scores = GpuTensor::zeros(&gpu, 3 * 1024, "scores").unwrap();
    let short = KvCells { n_cells: 700, ..kv };
    assert!(matches!(
        b.flash_attention(&p, &q, &short, 768, 2, 599, 1, &out, &scores),
        Err(GpuError::Shape { .. })
    ));
    let wide = AttnParams {
        head_dim_v: 320,
        ..p
    };
    assert!(matches!(
        b.attention(&wide, &q, &kv, 599, 1, &out, &scores),
        Err(GpuError::Shape { .. })
    ));
    assert!(matches!(
        b.flash_attention(&p, &q, &kv, 768, 300, 599, 1, &out, &scores),
        Err(GpuError::Shape { .. })
    ));
    assert!(matches!(
        b.flash_attention(&p, &q, &kv, 2048, 2, 599, 1, &out, &scores),
        Err(GpuError::Shape { .. })
    ));
    b.submit().unwrap();
    gpu.wait().unwrap();
}

/// The real Gemma 3 270M Q4_K_M tensors on the GPU: its 178 MB Q8_0 token embedding exceeds
/// lavapipe's 128 MiB binding and is split; embedding rows from every chunk equal the CPU's
/// dequantized rows, and the tied output head (262144 rows) and one layer's Q5_0, Q8_0, Q4_K and
/// Q6_K matrices give the CPU matmul's numbers.
#[test]
fn real_model_weights_match_cpu() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/models/gemma-3-270m-q4_k_m.gguf"
    );
    if !std::path::Path::new(path).exists() {
        eprintln!("skipping: {path} is absent (scripts/fetch-model.sh fetches it)");
        return;
    }
    let Some(gpu) = open() else { return };
    let file = infer::gguf::GgufFile::open(path).expect("model opens");
    let pool = Pool::new(2).expect("pool");
    for name in [
        "token_embd.weight",
        "blk.0.attn_q.weight",
        "blk.0.attn_v.weight",
        "blk.0.attn_output.weight",
        "blk.0.ffn_down.weight",
    ] {
        let t = file.tensor(name).expect("tensor present");
        let (k, m) = (t.row_len() as usize, t.n_rows() as usize);
        let data = file.tensor_data(t);
        let gw = GpuMatrix::upload(&gpu, name, t.ty, k, m, data).expect("upload");
        let qm = QMatrix::new(t.ty, k, m, data).expect("cpu matrix");
        if m * quant::row_bytes(t.ty, k).unwrap() > gpu.max_binding() as usize {
            assert!(gw.n_chunks() > 1, "{name} must be split");
        }
        let x = values(k, 77);
        let gx = input(&gpu, &x);
        let gy = output(&gpu, m);
        run(&gpu, |b| b.matmul(&gw, &gx, 1, &gy));
        let got = read(&gpu, &gy, m, name);
        let mut want = vec![0.0f32; m];
        matmul(&pool, &qm, &x, 1, &mut want, &mut Vec::new());
        check(&got, &want, 5e-4, &format!("{name} ({})", t.ty));

        if name == "token_embd.weight" {
            let ids = [0u32, 2, 106, 131_071, 131_072, 200_000, (m - 1) as u32];
            let gids = GpuTensor::from_u32(&gpu, &ids, "ids").unwrap();
            let out = output(&gpu, ids.len() * k);
            run(&gpu, |b| b.get_rows(&gw, &gids, ids.len(), &out));
            let got = read(&gpu, &out, ids.len() * k, "embedding rows");
            let mut want = vec![0.0f32; ids.len() * k];
            for (&id, row) in ids.iter().zip(want.chunks_exact_mut(k)) {
                qm.dequantize_row(id as usize, row);
            }
            check(&got, &want, 1e-12, "embedding rows");
        }
    }
}

/// A device that goes away mid-run gives an error on the next submission or wait, not a panic
/// (wgpu's default handler) and not a hang.
#[test]
fn lost_device_is_an_error_not_a_panic() {
    let Some(gpu) = open() else { return };
    let x = GpuTensor::from_f32(&gpu, &[1.0, 2.0, 3.0], "x").unwrap();
    gpu.destroy();
    let mut b = Batch::new(&gpu);
    let recorded = b.scale(&x, 3, 2.0);
    let submitted = recorded.and_then(|()| b.submit()).and_then(|()| gpu.wait());
    assert!(
        matches!(submitted, Err(GpuError::DeviceLost { .. })),
        "submission on a destroyed device: {submitted:?}"
    );
    let read = x.read_f32(&gpu);
    assert!(
        matches!(read, Err(GpuError::DeviceLost { .. })),
        "readback from a destroyed device: {:?}",
        read.map(|v| v.len())
    );
}

/// `infer devices` lists every adapter wgpu finds, numbered as `--device gpu:N` counts them, with
/// backend, type and the storage-binding limit that decides how weights are split.
#[test]
fn devices_command_lists_every_adapter() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_infer"))
        .arg("devices")
        .output()
        .expect("infer runs");
    assert!(out.status.success(), "infer devices failed: {out:?}");
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let list = infer::gpu::device::list_adapters();
    if list.is_empty() {
        assert!(text.contains("no GPU adapters found"), "{text}");
        return;
    }
    for a in &list {
        assert!(
            text.contains(&format!("gpu:{}  {}", a.index, a.name)),
            "{text}"
        );
        assert!(
            text.contains(&a.backend) && text.contains(&a.device_type),
            "{text}"
        );
        let bind = format!("max storage bind {} MiB", a.max_storage_binding >> 20);
        assert!(text.contains(&bind), "{text}");
    }
    assert!(!text.contains(&format!("gpu:{}", list.len())), "{text}");
}

/// Layer 0 of the real Gemma 3 270M composed from the GPU ops — embedding lookup from the split
/// Q8_0 table, scale, norms, Q5_0/Q8_0/Q4_K/Q6_K projections on activations quantized as the CPU
/// quantizes them, per-head Q/K norms, NEOX RoPE, f16 KV store, windowed GQA attention,
/// post-norms, GEGLU, residual adds — recorded as one submission with no readback between ops,
/// for a 7-token prefill and then one decode token against the KV cache it left, against
/// `Model::forward_traced`'s `l_out` of layer 0. With the same 8-bit activations and correctly
/// rounded divisions and square roots in the quantizer and the norms, only summation orders
/// differ (measured on lavapipe: 3e-16 after the prefill, 3e-14 after the decode token); with
/// f32 activations (`matmul`) it was 7e-6 and 3.4e-4, and with lavapipe's own division one
/// 8-bit quant in a few hundred flipped (1e-7). Budget 1e-12.
#[test]
fn real_model_layer_zero_matches_cpu_forward() {
    use infer::model::{Model, ModelOptions};
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/models/gemma-3-270m-q4_k_m.gguf"
    );
    if !std::path::Path::new(path).exists() {
        eprintln!("skipping: {path} is absent (scripts/fetch-model.sh fetches it)");
        return;
    }
    let Some(gpu) = open() else { return };
    let file = infer::gguf::GgufFile::open(path).expect("model opens");
    let model = Model::load(&file, &ModelOptions { n_threads: 2 }).expect("model loads");
    let hp = model.hparams().clone();
    let mat = |name: &str| {
        let t = file.tensor(name).expect("tensor present");
        let data = file.tensor_data(t);
        GpuMatrix::upload(
            &gpu,
            name,
            t.ty,
            t.row_len() as usize,
            t.n_rows() as usize,
            data,
        )
        .expect("upload")
    };
    let vec = |name: &str| {
        let t = file.tensor(name).expect("tensor present");
        let mut v = vec![0.0f32; t.n_elements as usize];
        quant::dequantize_row(t.ty, file.tensor_data(t), &mut v).expect("norm vector");
        GpuTensor::from_f32(&gpu, &v, name).expect("upload")
    };
    let embd = mat("token_embd.weight");
    let (wq, wk, wv, wo) = (
        mat("blk.0.attn_q.weight"),
        mat("blk.0.attn_k.weight"),
        mat("blk.0.attn_v.weight"),
        mat("blk.0.attn_output.weight"),
    );
    let (wg, wu, wd) = (
        mat("blk.0.ffn_gate.weight"),
        mat("blk.0.ffn_up.weight"),
        mat("blk.0.ffn_down.weight"),
    );
    let (attn_norm, q_norm, k_norm, post_attn, ffn_norm, post_ffw) = (
        vec("blk.0.attn_norm.weight"),
        vec("blk.0.attn_q_norm.weight"),
        vec("blk.0.attn_k_norm.weight"),
        vec("blk.0.post_attention_norm.weight"),
        vec("blk.0.ffn_norm.weight"),
        vec("blk.0.post_ffw_norm.weight"),
    );
    let swa = hp.is_swa(0);
    let (base, fscale) = if swa {
        (hp.rope_freq_base_swa, hp.rope_freq_scale_swa)
    } else {
        (hp.rope_freq_base, hp.rope_freq_scale)
    };
    let params = AttnParams {
        n_head: hp.n_head,
        n_head_kv: hp.n_head_kv,
        head_dim: hp.head_dim,
        head_dim_v: hp.head_dim_v,
        scale: hp.attn_scale,
        window: if swa { hp.sliding_window } else { None },
    };
    let n_ctx = 16;
    let kc = GpuTensor::zeros(&gpu, n_ctx * hp.n_k(), "k cache").unwrap();
    let vc = GpuTensor::zeros(&gpu, n_ctx * hp.n_v(), "v cache").unwrap();
    let e = hp.n_embd;
    let prompt = [2u32, 818, 5279, 529, 7001, 563, 236761];
    let next = [1_000u32];

    let mut st = model.new_state(n_ctx).unwrap();
    for (pos0, toks) in [(0usize, &prompt[..]), (prompt.len(), &next[..])] {
        let n = toks.len();
        let mut want = Vec::new();
        model
            .forward_traced(&mut st, toks, false, &mut |name, il, rows| {
                if name == "l_out" && il == 0 {
                    want = rows.to_vec();
                }
            })
            .expect("cpu forward");
        let mut cs = vec![0.0f32; n * hp.n_rot];
        for (t, c) in cs.chunks_exact_mut(hp.n_rot).enumerate() {
            ops::rope_cache(pos0 + t, hp.n_rot, base, fscale, c);
        }
        let z = |len: usize| GpuTensor::zeros(&gpu, len, "scratch").unwrap();
        let ids = GpuTensor::from_u32(&gpu, toks, "ids").unwrap();
        let gcs = GpuTensor::from_f32(&gpu, &cs, "rope").unwrap();
        let (x, xn, proj) = (output(&gpu, n * e), z(n * e), z(n * e));
        let (q, k, v) = (z(n * hp.n_q()), z(n * hp.n_k()), z(n * hp.n_v()));
        let attn = z(n * hp.n_head * hp.head_dim_v);
        let scores = z(n * hp.n_head * (pos0 + n));
        // A cache this short never wraps: cell = position.
        let slots: Vec<u32> = (pos0 as u32..(pos0 + n) as u32).collect();
        let slots = GpuTensor::from_u32(&gpu, &slots, "slots").unwrap();
        let cell_pos: Vec<u32> = (0..(pos0 + n) as u32).collect();
        let cell_pos = GpuTensor::from_u32(&gpu, &cell_pos, "cell positions").unwrap();
        let kv = KvCells {
            keys: &kc,
            values: &vc,
            pos: &cell_pos,
            n_cells: pos0 + n,
        };
        let (aq, ad) = (z(n * hp.n_ff), z(n * hp.n_ff / 32));
        let (gate, up) = (z(n * hp.n_ff), z(n * hp.n_ff));
        run(&gpu, |b| {
            b.get_rows(&embd, &ids, n, &x)?;
            if let Some(s) = hp.embd_scale {
                b.scale(&x, n * e, s)?;
            }
            b.rms_norm(&attn_norm, &x, &xn, e, n, hp.rms_eps)?;
            b.matmul_q8(&wq, &xn, n, &q, &aq, &ad)?;
            b.matmul_q8(&wk, &xn, n, &k, &aq, &ad)?;
            b.matmul_q8(&wv, &xn, n, &v, &aq, &ad)?;
            b.rms_norm(&q_norm, &q, &q, hp.head_dim, n * hp.n_head, hp.rms_eps)?;
            b.rms_norm(&k_norm, &k, &k, hp.head_dim, n * hp.n_head_kv, hp.rms_eps)?;
            b.rope(&gcs, &q, hp.head_dim, hp.n_rot, hp.n_head, n, hp.rope_style)?;
            b.rope(
                &gcs,
                &k,
                hp.head_dim,
                hp.n_rot,
                hp.n_head_kv,
                n,
                hp.rope_style,
            )?;
            b.kv_store(&k, &kc, &slots, hp.n_k(), n)?;
            b.kv_store(&v, &vc, &slots, hp.n_v(), n)?;
            b.attention(&params, &q, &kv, pos0, n, &attn, &scores)?;
            b.matmul_q8(&wo, &attn, n, &proj, &aq, &ad)?;
            b.rms_norm(&post_attn, &proj, &proj, e, n, hp.rms_eps)?;
            b.add(&x, &proj, n * e)?;
            b.rms_norm(&ffn_norm, &x, &xn, e, n, hp.rms_eps)?;
            b.matmul_q8(&wg, &xn, n, &gate, &aq, &ad)?;
            b.matmul_q8(&wu, &xn, n, &up, &aq, &ad)?;
            b.glu(Glu::Gelu, &gate, &up, &gate, n * hp.n_ff)?;
            b.matmul_q8(&wd, &gate, n, &proj, &aq, &ad)?;
            b.rms_norm(&post_ffw, &proj, &proj, e, n, hp.rms_eps)?;
            b.add(&x, &proj, n * e)
        });
        let got = read(&gpu, &x, n * e, "layer 0");
        assert_eq!(want.len(), n * e, "trace rows");
        check(&got, &want, 1e-12, &format!("layer 0 l_out at pos0 {pos0}"));
    }
}
