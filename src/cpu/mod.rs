//! CPU compute for the decoder: matmul/matvec over quantized weights (`matmul`), attention over the
//! KV cache (`attention`) and the f32 element-wise ops (`ops`). Work is split over a `Pool` owned
//! by the caller; nothing here reads files or knows tensor names.

pub mod act_quant;
pub mod attention;
pub mod flash_attn;
pub mod gemm_float;
pub mod ggml_order;
pub mod matmul;
pub mod ops;
pub mod spin_pool;

use spin_pool::SpinPool;

/// The worker threads of one model: `n_threads` threads (the calling thread included) that run
/// the many small parallel regions of a token through `run`/`for_each_chunk` (a spinning pool,
/// see `spin_pool` for why not rayon's sleeping one), and a rayon pool of the same size for code
/// that still uses rayon's iterators through `install`.
pub struct Pool {
    spin: SpinPool,
    pool: rayon::ThreadPool,
}

/// Why a pool could not start its threads.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("cannot start worker threads: {0}")]
    Spawn(#[from] std::io::Error),
    #[error("cannot start worker threads: {0}")]
    Rayon(#[from] rayon::ThreadPoolBuildError),
}

impl Pool {
    /// `n_threads` = 0 means one per available core.
    pub fn new(n_threads: usize) -> Result<Pool, PoolError> {
        let n = if n_threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            n_threads
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .thread_name(|i| format!("infer-rayon-{i}"))
            .build()?;
        Ok(Pool {
            spin: SpinPool::new(n)?,
            pool,
        })
    }

    pub fn n_threads(&self) -> usize {
        self.spin.n_threads()
    }

    /// Run `f(i)` for every `i` in `0..n_tasks` on the pool's threads; returns when all are done.
    pub fn run(&self, n_tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        self.spin.run(n_tasks, f)
    }

    /// Split `data` into chunks of `chunk` elements (the last may be shorter) and run
    /// `f(index, chunk)` for each on the pool's threads.
    pub fn for_each_chunk<T: Send>(
        &self,
        data: &mut [T],
        chunk: usize,
        f: &(dyn Fn(usize, &mut [T]) + Sync),
    ) {
        let chunk = chunk.max(1);
        let len = data.len();
        let base = SendPtr(data.as_mut_ptr());
        self.run(len.div_ceil(chunk), &|i| {
            let start = i * chunk;
            let n = chunk.min(len - start);
            // SAFETY: chunk `i` covers `start..start + n` within `data` (start < len because
            // i < len.div_ceil(chunk)); chunks of distinct indices are disjoint and every index
            // runs once, so no two live `&mut` overlap; `data` stays mutably borrowed until `run`
            // returns, after every task is done.
            let part = unsafe { std::slice::from_raw_parts_mut(base.at(start), n) };
            f(i, part)
        });
    }

    /// Run `f` inside the rayon pool, so that rayon's parallel iterators in it use its workers.
    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.pool.install(f)
    }
}

/// A raw element pointer that tasks of one region share (see `Pool::for_each_chunk`).
struct SendPtr<T>(*mut T);

impl<T> SendPtr<T> {
    /// The pointer at element `i`; a method, so closures capture the whole (Sync) wrapper.
    fn at(&self, i: usize) -> *mut T {
        self.0.wrapping_add(i)
    }
}
// SAFETY: used only by `for_each_chunk`, whose tasks touch disjoint ranges of a slice that
// outlives the region; `T: Send` there.
unsafe impl<T> Send for SendPtr<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for SendPtr<T> {}

/// A deterministic pseudo-random sequence in [-1, 1) for the kernels' unit tests.
#[cfg(test)]
pub(crate) fn test_values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}
