//! Thread-count control. tegaki uses one rayon pool for everything (batch
//! parallelism in layers, augmentation, and the GEMM backend).

/// Sizes the global rayon pool to `threads` (0 = one per core). Call it once,
/// before any parallel work; later calls return an error and leave the pool
/// as it was.
pub fn set_num_threads(threads: usize) -> Result<(), String> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .map_err(|e| format!("could not size the thread pool to {threads}: {e}"))
}

/// The number of threads parallel work is spread over.
pub fn num_threads() -> usize {
    rayon::current_num_threads()
}
