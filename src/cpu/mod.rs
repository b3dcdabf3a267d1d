//! CPU compute for the decoder: matmul/matvec over quantized weights (`matmul`), attention over the
//! KV cache (`attention`) and the f32 element-wise ops (`ops`). Work is split over a rayon pool
//! owned by the caller; nothing here reads files or knows tensor names.

pub mod act_quant;
pub mod attention;
pub mod gemm_float;
pub mod ggml_order;
pub mod matmul;
pub mod ops;

/// A thread pool for one model: `n_threads` workers (the calling thread included).
pub struct Pool {
    pool: rayon::ThreadPool,
}

impl Pool {
    /// `n_threads` = 0 means one per available core.
    pub fn new(n_threads: usize) -> Result<Pool, rayon::ThreadPoolBuildError> {
        let n = if n_threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            n_threads
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .thread_name(|i| format!("infer-cpu-{i}"))
            .build()?;
        Ok(Pool { pool })
    }

    pub fn n_threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// Run `f` inside the pool, so that rayon's parallel iterators in it use these workers.
    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.pool.install(f)
    }
}
