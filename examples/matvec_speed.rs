//! Times one weight matrix of a GGUF file against one (or a few) activation rows, the way a
//! decode step uses it, and prints the read bandwidth it reaches: a probe for kernel work.
//!
//! `cargo run --release --example matvec_speed -- MODEL [TENSOR] [THREADS] [ROWS]`
//! (`READ=1` also times a plain streaming read of the same bytes: the bandwidth floor; CPU time
//! is reported beside wall time because the scheduler's count survives a busy machine better.)
use infer::cpu::matmul::{matmul_rows, QMatrix};
use infer::cpu::Pool;
use infer::gguf::GgufFile;
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .get(1)
        .map(String::as_str)
        .unwrap_or("models/gemma-3-270m-q4_k_m.gguf");
    let name = args
        .get(2)
        .map(String::as_str)
        .unwrap_or("token_embd.weight");
    let threads: usize = args.get(3).map_or(Ok(2), |s| s.parse())?;
    let n_tok: usize = args.get(4).map_or(Ok(1), |s| s.parse())?;
    let g = GgufFile::open(path)?;
    let t = g
        .tensors()
        .iter()
        .find(|t| t.name == name)
        .ok_or_else(|| anyhow::anyhow!("no tensor {name}"))?;
    let (k, m) = (t.dims[0] as usize, t.dims[1] as usize);
    let data = g.tensor_data(t);
    let w = QMatrix::new(t.ty, k, m, data)?;
    let pool = Pool::new(threads)?;
    let x: Vec<f32> = (0..k * n_tok)
        .map(|i| ((i * 7919) % 113) as f32 / 57.0 - 1.0)
        .collect();
    let mut y = vec![0.0f32; m * n_tok];
    let mut act = Vec::new();
    let bytes = g.tensor_data(t).len() as f64;
    // PREFILL=1: the batch kernels (tiles) instead of one-row decode order for every row.
    let as_decode = std::env::var_os("PREFILL").is_none();
    for _ in 0..3 {
        matmul_rows(&pool, &w, &x, n_tok, &mut y, &mut act, as_decode);
    }
    if std::env::var_os("READ").is_some() {
        // The floor: a plain streaming read of the same bytes, no arithmetic to speak of.
        let t0 = Instant::now();
        let mut s = 0u64;
        for _ in 0..10 {
            for c in data.chunks_exact(64) {
                s = s.wrapping_add(u64::from_le_bytes(c[..8].try_into()?));
            }
        }
        let dt = t0.elapsed().as_secs_f64() / 10.0;
        println!(
            "plain read: {:.3} ms, {:.1} GB/s ({s})",
            dt * 1e3,
            bytes / dt / 1e9
        );
        let pf = 8192;
        let t0 = Instant::now();
        for _ in 0..10 {
            for (i, c) in data.chunks_exact(64).enumerate() {
                // SAFETY: a prefetch never faults.
                unsafe {
                    use std::arch::x86_64::*;
                    _mm_prefetch::<_MM_HINT_T0>(
                        data.as_ptr().wrapping_add(i * 64 + pf) as *const i8
                    );
                }
                s = s.wrapping_add(u64::from_le_bytes(c[..8].try_into()?));
            }
        }
        let dt = t0.elapsed().as_secs_f64() / 10.0;
        println!(
            "prefetched read: {:.3} ms, {:.1} GB/s ({s})",
            dt * 1e3,
            bytes / dt / 1e9
        );
    }
    let reps = 40;
    let c0 = cpu_ns();
    let t0 = Instant::now();
    for _ in 0..reps {
        matmul_rows(&pool, &w, &x, n_tok, &mut y, &mut act, as_decode);
    }
    let dt = t0.elapsed().as_secs_f64() / reps as f64;
    let dc = (cpu_ns() - c0) as f64 / 1e9 / reps as f64;
    println!(
        "CPU time per call {:.3} ms: {:.1} GB/s per busy thread",
        dc * 1e3,
        bytes / dc * threads as f64 / 1e9
    );
    let flops = 2.0 * (k * m * n_tok) as f64;
    println!("{:.1} GFLOP/s of CPU time", flops / dc / 1e9);
    println!(
        "{name} {:?} {k}x{m} rows={n_tok} t={threads}: {:.3} ms, {:.1} GB/s",
        t.ty,
        dt * 1e3,
        bytes / dt / 1e9
    );
    Ok(())
}

/// Nanoseconds this process has run on a CPU (the scheduler's own count, so time spent waiting
/// for a core behind other processes is left out).
fn cpu_ns() -> u64 {
    let mut total = 0;
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for e in dir.flatten() {
            if let Ok(s) = std::fs::read_to_string(e.path().join("schedstat")) {
                total += s
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    total
}
