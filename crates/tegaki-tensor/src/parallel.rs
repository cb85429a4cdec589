//! Thread-count control. tegaki uses one rayon pool for everything (batch
//! parallelism in layers, augmentation, and the GEMM backend).

/// Sizes the global rayon pool to `threads` (0 = one per core), with the
/// calling thread as its first thread. Call it once, from the thread that
/// will drive the work (`main`), before any parallel work; later calls
/// return an error and leave the pool as it was.
///
/// Joining the pool matters for short parallel steps: work started from a
/// thread outside the pool is handed to a worker while the caller sleeps, and
/// on 2 cores the hand-off and wake-up cost more than a 1000-image MLP batch
/// takes (W1 inference on 2 threads ran at 1.0-1.5M images/s run to run,
/// 1.7-1.8M with the caller in the pool). The price: with `threads == 1`
/// the caller is the pool's only thread, so parallel work started from any
/// *other* thread would wait for it forever; start all of it from this one.
pub fn set_num_threads(threads: usize) -> Result<(), String> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .use_current_thread()
        .build_global()
        .map_err(|e| format!("could not size the thread pool to {threads}: {e}"))
}

/// The number of threads parallel work is spread over.
pub fn num_threads() -> usize {
    rayon::current_num_threads()
}
