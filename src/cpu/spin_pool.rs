//! A thread pool for the many small parallel regions of one token: a decode step of a small model
//! runs ~150 matmuls and attentions of tens of microseconds each, where a fork-join pool that puts
//! its workers to sleep between jobs (rayon's `install` wakes them through a condition variable
//! and blocks the caller on a latch) costs a visible share of the step.
//!
//! Here the calling thread is one of the workers: `run(n, f)` publishes `f` by bumping a
//! generation counter, every thread claims task indices from one atomic counter until they run
//! out, and the caller waits for the others to finish. Idle workers spin for a while (the next
//! region usually starts within microseconds), then park, so an idle process takes no CPU; the
//! caller unparks parked workers when it publishes. This module knows nothing of matrices.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, Instant};

/// How long an idle worker spins before it parks.
const SPIN: Duration = Duration::from_micros(500);

/// The job of one region, with its lifetime erased (see `run` for why that is sound).
type Job = *const (dyn Fn(usize) + Sync);

struct Shared {
    /// Bumped once per region; a worker runs a region when it sees a new value.
    generation: AtomicUsize,
    job: UnsafeCell<Option<Job>>,
    n_tasks: AtomicUsize,
    next: AtomicUsize,
    /// Workers (not the caller) that finished the current region.
    done: AtomicUsize,
    /// A task of the current region panicked.
    panicked: AtomicBool,
    stop: AtomicBool,
    /// Per worker: parked (or about to park) and needs an unpark to see a new region.
    sleeping: Vec<AtomicBool>,
}

// SAFETY: `job` is written only by the caller of `run` while no worker reads it (all workers
// have finished the previous region and the new generation is not yet published), and read by
// workers only after they observe the generation bump that follows the write (Release/Acquire).
unsafe impl Sync for Shared {}
// SAFETY: as above; the raw job pointer is only dereferenced inside `run`'s lifetime.
unsafe impl Send for Shared {}

/// `n_threads` threads (the caller included) that run parallel regions.
pub struct SpinPool {
    shared: Arc<Shared>,
    workers: Vec<(JoinHandle<()>, Thread)>,
    /// Serialises regions: `run` takes `&self`, and two callers must not interleave.
    busy: std::sync::Mutex<()>,
}

impl SpinPool {
    /// A pool of `n_threads` (at least 1); `n_threads - 1` threads are started.
    pub fn new(n_threads: usize) -> std::io::Result<SpinPool> {
        let n_workers = n_threads.max(1) - 1;
        let shared = Arc::new(Shared {
            generation: AtomicUsize::new(0),
            job: UnsafeCell::new(None),
            n_tasks: AtomicUsize::new(0),
            next: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            sleeping: (0..n_workers).map(|_| AtomicBool::new(false)).collect(),
        });
        let mut workers = Vec::with_capacity(n_workers);
        for i in 0..n_workers {
            let s = Arc::clone(&shared);
            let h = thread::Builder::new()
                .name(format!("infer-cpu-{}", i + 1))
                .spawn(move || worker(&s, i))?;
            let t = h.thread().clone();
            workers.push((h, t));
        }
        Ok(SpinPool {
            shared,
            workers,
            busy: std::sync::Mutex::new(()),
        })
    }

    /// Threads that run a region, the caller included.
    pub fn n_threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// Run `f(i)` for every `i` in `0..n_tasks`, spread over the pool; returns when all are done.
    /// Tasks are claimed one index at a time, so give each task enough work (a tile of rows, a
    /// head) to amortise one atomic increment.
    pub fn run(&self, n_tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        if n_tasks == 0 {
            return;
        }
        if self.workers.is_empty() || n_tasks == 1 {
            (0..n_tasks).for_each(f);
            return;
        }
        let _guard = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        let s = &*self.shared;
        // SAFETY: every worker finished the previous region before the previous `run` returned
        // (it waited for `done`), and none reads `job` until it sees the bump below. The lifetime
        // erasure is sound because this function does not return before every worker is done
        // with `f` (the wait below), so the pointer is never used after `f`'s borrow ends.
        unsafe {
            let job: Job = std::mem::transmute::<&(dyn Fn(usize) + Sync), Job>(f);
            *s.job.get() = Some(job);
        }
        s.n_tasks.store(n_tasks, Ordering::Relaxed);
        s.next.store(0, Ordering::Relaxed);
        s.done.store(0, Ordering::Relaxed);
        s.generation.fetch_add(1, Ordering::SeqCst);
        for (i, (_, t)) in self.workers.iter().enumerate() {
            if s.sleeping[i].load(Ordering::SeqCst) {
                t.unpark();
            }
        }
        let caller = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| claim(s, f)));
        if caller.is_err() {
            s.panicked.store(true, Ordering::Relaxed);
            // Let the workers drain the remaining indices quickly.
            s.next.store(usize::MAX / 2, Ordering::Relaxed);
        }
        let n_workers = self.workers.len();
        let mut spins = 0u32;
        while s.done.load(Ordering::Acquire) < n_workers {
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(1024) {
                // A worker descheduled on a busy machine needs the core more than we do.
                thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        // SAFETY: all workers are done with the region; nobody reads `job` until the next bump.
        unsafe { *s.job.get() = None };
        if s.panicked.swap(false, Ordering::Relaxed) {
            panic!("a task of a parallel region panicked");
        }
    }
}

/// Claim and run task indices of the current region until none are left.
fn claim(s: &Shared, f: &(dyn Fn(usize) + Sync)) {
    let n = s.n_tasks.load(Ordering::Relaxed);
    loop {
        let i = s.next.fetch_add(1, Ordering::Relaxed);
        if i >= n {
            break;
        }
        f(i);
    }
}

fn worker(s: &Shared, me: usize) {
    let mut seen = 0usize;
    loop {
        // Wait for a new region: spin first, then park.
        let start = Instant::now();
        let mut spins = 0u32;
        let gen = loop {
            let g = s.generation.load(Ordering::Acquire);
            if g != seen || s.stop.load(Ordering::Relaxed) {
                break g;
            }
            spins += 1;
            if spins.is_multiple_of(1024) && start.elapsed() > SPIN {
                s.sleeping[me].store(true, Ordering::SeqCst);
                // Re-check after announcing sleep: `run` bumps the generation before it reads
                // `sleeping`, so either it sees our flag and unparks us or we see its bump.
                if s.generation.load(Ordering::SeqCst) == seen && !s.stop.load(Ordering::SeqCst) {
                    thread::park();
                }
                s.sleeping[me].store(false, Ordering::SeqCst);
            } else if spins.is_multiple_of(1024) {
                thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        };
        if s.stop.load(Ordering::Relaxed) {
            return;
        }
        seen = gen;
        // SAFETY: the generation bump we observed (Acquire) follows the write of `job`, and
        // `run` keeps the job alive until we increment `done`.
        let job = unsafe { *s.job.get() };
        if let Some(job) = job {
            // SAFETY: see above: the closure outlives this use.
            let f = unsafe { &*job };
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| claim(s, f))).is_err() {
                s.panicked.store(true, Ordering::Relaxed);
            }
        }
        s.done.fetch_add(1, Ordering::Release);
    }
}

impl Drop for SpinPool {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for (h, t) in self.workers.drain(..) {
            t.unpark();
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_index_runs_exactly_once_across_many_regions() {
        let pool = SpinPool::new(3).expect("pool");
        assert_eq!(pool.n_threads(), 3);
        for n in [1usize, 2, 7, 100, 1000] {
            let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
            for _ in 0..50 {
                pool.run(n, &|i| {
                    hits[i].fetch_add(1, Ordering::Relaxed);
                });
            }
            assert!(
                hits.iter().all(|h| h.load(Ordering::Relaxed) == 50),
                "n={n}"
            );
        }
    }

    #[test]
    fn parked_workers_wake_for_the_next_region() {
        let pool = SpinPool::new(2).expect("pool");
        std::thread::sleep(SPIN * 4);
        let sum = AtomicUsize::new(0);
        pool.run(64, &|i| {
            sum.fetch_add(i, Ordering::Relaxed);
        });
        assert_eq!(sum.load(Ordering::Relaxed), 64 * 63 / 2);
    }

    #[test]
    fn a_panicking_task_panics_the_caller_and_the_pool_still_works() {
        let pool = SpinPool::new(2).expect("pool");
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.run(16, &|i| assert!(i != 5, "task 5"));
        }));
        assert!(r.is_err());
        let count = AtomicUsize::new(0);
        pool.run(16, &|_| {
            count.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(count.load(Ordering::Relaxed), 16);
    }
}
