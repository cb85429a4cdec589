//! A small process-wide pool of spare `f32` buffers.
//!
//! In Eval mode a layer keeps nothing, so each forward pass allocates its
//! output and drops its input. A fresh multi-megabyte array must be zeroed
//! (or page-faulted in) every time: ~5% of CNN inference went to `memset`.
//! Layers instead [`give`] the input storage they are done with and
//! [`take`] storage of the size they need, which in a steady stream of
//! batches is always the one the next layer just gave back.
//!
//! Taken buffers hold stale values: only callers that overwrite every
//! element may use them.

use std::sync::Mutex;

/// At most this many buffers are kept...
const MAX_BUFFERS: usize = 8;
/// ...and at most this many values in all (128 MB of f32).
const MAX_VALUES: usize = 32 << 20;
/// Smaller buffers are not worth keeping (allocating them is cheap).
const MIN_VALUES: usize = 1 << 14;

static POOL: Mutex<Vec<Vec<f32>>> = Mutex::new(Vec::new());

/// A buffer of exactly `len` values (stale contents) if one is pooled.
pub fn take(len: usize) -> Option<Vec<f32>> {
    if len < MIN_VALUES {
        return None;
    }
    let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    let i = pool.iter().position(|b| b.len() == len)?;
    Some(pool.swap_remove(i))
}

/// Offers `buf` for reuse; the oldest buffers go when the pool is full.
pub fn give(buf: Vec<f32>) {
    if buf.len() < MIN_VALUES || buf.len() > MAX_VALUES {
        return;
    }
    let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    pool.push(buf);
    while pool.len() > MAX_BUFFERS || pool.iter().map(Vec::len).sum::<usize>() > MAX_VALUES {
        pool.remove(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gives_back_only_exact_sizes_and_stays_bounded() {
        let len = MIN_VALUES + 12_345;
        give(vec![1.0; len]);
        assert!(take(len + 1).is_none());
        let b = take(len).expect("pooled");
        assert_eq!(b.len(), len);
        assert!(take(10).is_none());
        for _ in 0..3 * MAX_BUFFERS {
            give(vec![0.0; len + 7]);
        }
        let kept = POOL.lock().unwrap().len();
        assert!(kept <= MAX_BUFFERS);
    }
}
