//! Deterministic shuffled epochs as index lists; the images stay where they are.
//!
//! An epoch's order depends only on `(seed, epoch)`: it is drawn on one thread
//! from its own RNG stream, so thread counts, earlier epochs or resumed runs
//! never change it.

use rand::Rng;
use tegaki_tensor::rng::{self, SeededRng};

/// A uniform integer in `0..n` (Lemire's method with rejection, so unbiased
/// and independent of any library's sampling algorithm).
fn below(rng: &mut SeededRng, n: usize) -> usize {
    let n = n as u64;
    let threshold = n.wrapping_neg() % n;
    loop {
        let m = u128::from(rng.next_u64()) * u128::from(n);
        if (m as u64) >= threshold {
            return (m >> 64) as usize;
        }
    }
}

/// `0..n` in a random order (Fisher-Yates) drawn from `rng`.
pub fn shuffled(n: usize, rng: &mut SeededRng) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        order.swap(i, below(rng, i + 1));
    }
    order
}

/// The order in which epoch `epoch` visits `n` examples for run seed `seed`.
pub fn epoch_order(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    shuffled(n, &mut rng::stream(seed, &format!("epoch-order/{epoch}")))
}

/// Minibatches of indices: consecutive chunks of an order.
#[derive(Clone, Debug)]
pub struct Batches<'a> {
    order: &'a [usize],
    batch_size: usize,
    drop_last: bool,
    pos: usize,
}

impl<'a> Batches<'a> {
    /// Chunks of `batch_size` from `order`; with `drop_last` a final short
    /// chunk is skipped (useful for layers whose statistics dislike tiny batches).
    ///
    /// # Panics
    /// If `batch_size` is 0.
    pub fn new(order: &'a [usize], batch_size: usize, drop_last: bool) -> Self {
        assert!(batch_size > 0, "Batches::new: batch_size must be positive");
        Self {
            order,
            batch_size,
            drop_last,
            pos: 0,
        }
    }

    /// Number of batches this iterator yields in total.
    pub fn count_total(order_len: usize, batch_size: usize, drop_last: bool) -> usize {
        if drop_last {
            order_len / batch_size
        } else {
            order_len.div_ceil(batch_size)
        }
    }
}

impl<'a> Iterator for Batches<'a> {
    type Item = &'a [usize];

    fn next(&mut self) -> Option<&'a [usize]> {
        let rest = &self.order[self.pos..];
        if rest.is_empty() || (self.drop_last && rest.len() < self.batch_size) {
            return None;
        }
        let take = rest.len().min(self.batch_size);
        self.pos += take;
        Some(&rest[..take])
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = Self::count_total(self.order.len() - self.pos, self.batch_size, self.drop_last);
        (n, Some(n))
    }
}

impl ExactSizeIterator for Batches<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_orders_are_permutations_and_reproducible() {
        let a = epoch_order(1000, 42, 0);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..1000).collect::<Vec<_>>());
        assert_eq!(a, epoch_order(1000, 42, 0));
        assert_ne!(a, epoch_order(1000, 42, 1));
        assert_ne!(a, epoch_order(1000, 43, 0));
        assert_ne!(a, (0..1000).collect::<Vec<_>>());
        assert!(epoch_order(0, 1, 1).is_empty());
        // same on another thread
        let b = std::thread::spawn(|| epoch_order(1000, 42, 0))
            .join()
            .unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn shuffle_is_roughly_uniform() {
        // position of element 0 over many shuffles of 4 elements
        let mut rng = rng::seeded(1);
        let mut counts = [0usize; 4];
        for _ in 0..4000 {
            let o = shuffled(4, &mut rng);
            counts[o.iter().position(|&x| x == 0).unwrap()] += 1;
        }
        for c in counts {
            assert!((900..1100).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn batches_chunk_with_and_without_drop_last() {
        let order: Vec<usize> = (0..10).collect();
        let b: Vec<&[usize]> = Batches::new(&order, 4, false).collect();
        assert_eq!(b, vec![&[0, 1, 2, 3][..], &[4, 5, 6, 7], &[8, 9]]);
        let it = Batches::new(&order, 4, true);
        assert_eq!(it.len(), 2);
        assert_eq!(it.map(|c| c.len()).sum::<usize>(), 8);
        assert_eq!(Batches::new(&order, 5, false).len(), 2);
    }
}
