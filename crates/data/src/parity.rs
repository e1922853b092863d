//! The parity task: the parity of the number of +1 entries in a sparse ±1 vector.
//!
//! Graves (2016, "Adaptive Computation Time for Recurrent Neural Networks", arXiv:1603.08983)
//! uses parity as a benchmark for ACT. PonderNet (Banino et al., 2021) tests extrapolation by
//! training on fewer non-zero entries than it tests on.

use rand::seq::index;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::{DataError, try_filled_vec};

/// Inclusive range for the number of non-zero entries in one vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NonzeroRange {
    pub min: usize,
    pub max: usize,
}

/// A batch of parity examples in row-major layout.
#[derive(Clone, Debug, PartialEq)]
pub struct ParityBatch {
    /// Elements per vector.
    pub length: usize,
    /// `batch_size * length` values, each -1, 0 or +1.
    pub inputs: Vec<f32>,
    /// 1 when the number of +1 entries is odd, 0 when it is even.
    pub targets: Vec<u8>,
    /// Number of non-zero entries in each vector.
    pub nonzeros: Vec<usize>,
}

impl ParityBatch {
    pub fn batch_size(&self) -> usize {
        self.targets.len()
    }
}

/// Deterministic source of parity batches.
///
/// Batch `index` of a stream with a given seed is always the same, whichever other batches were
/// drawn before, so a resumed run can regenerate its data from the step counter. Each index uses
/// its own ChaCha8 stream (`set_stream(index)`) under a key derived from `seed`, so batches never
/// share random numbers. The values depend on the `rand` 0.9 and `rand_chacha` 0.9 algorithms.
#[derive(Clone, Debug)]
pub struct ParityStream {
    seed: u64,
    length: usize,
    range: NonzeroRange,
}

impl ParityStream {
    /// Creates a stream of vectors with `length` elements and a non-zero count drawn uniformly
    /// from `range`.
    ///
    /// Rejects `length == 0`, `range.min > range.max` and `range.max > length`.
    pub fn new(seed: u64, length: usize, range: NonzeroRange) -> Result<Self, DataError> {
        if length == 0 {
            return Err(DataError::invalid("length", length, "at least 1"));
        }
        if range.min > range.max {
            return Err(DataError::invalid(
                "nonzero range",
                format!("{}..={}", range.min, range.max),
                "min <= max",
            ));
        }
        if range.max > length {
            return Err(DataError::invalid(
                "nonzero range",
                format!("{}..={}", range.min, range.max),
                format!("max <= length ({length})"),
            ));
        }
        Ok(ParityStream {
            seed,
            length,
            range,
        })
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn length(&self) -> usize {
        self.length
    }

    pub fn range(&self) -> NonzeroRange {
        self.range
    }

    /// Generates batch `index` with `batch_size` vectors.
    ///
    /// Fails with `InvalidArgument` only when `batch_size * length` values cannot be allocated.
    pub fn batch(&self, index: u64, batch_size: usize) -> Result<ParityBatch, DataError> {
        let mut inputs = try_filled_vec(
            batch_size.checked_mul(self.length),
            0.0f32,
            "batch_size",
            batch_size,
        )?;
        let mut targets = Vec::with_capacity(batch_size);
        let mut nonzeros = Vec::with_capacity(batch_size);

        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(index);

        for row in inputs.chunks_exact_mut(self.length) {
            let count = rng.random_range(self.range.min..=self.range.max);
            let mut positives = 0usize;
            for position in index::sample(&mut rng, self.length, count) {
                let positive = rng.random_bool(0.5);
                row[position] = if positive { 1.0 } else { -1.0 };
                positives += usize::from(positive);
            }
            targets.push((positives % 2) as u8);
            nonzeros.push(count);
        }
        // `chunks_exact_mut` yields nothing when `length` is 0, but `new` rejects that length.
        Ok(ParityBatch {
            length: self.length,
            inputs,
            targets,
            nonzeros,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(seed: u64, length: usize, min: usize, max: usize) -> ParityStream {
        ParityStream::new(seed, length, NonzeroRange { min, max }).unwrap()
    }

    #[test]
    fn nonzero_count_within_range() {
        let stream = stream(7, 64, 3, 17);
        let mut seen_min = usize::MAX;
        let mut seen_max = 0;
        for index in 0..20 {
            let batch = stream.batch(index, 128).unwrap();
            for (row, &count) in batch.inputs.chunks_exact(64).zip(&batch.nonzeros) {
                let actual = row.iter().filter(|&&value| value != 0.0).count();
                assert_eq!(actual, count, "recorded count differs from the vector");
                assert!((3..=17).contains(&count), "count {count} outside 3..=17");
                seen_min = seen_min.min(count);
                seen_max = seen_max.max(count);
            }
        }
        // 2,560 uniform draws from 15 values reach both ends with near certainty.
        assert_eq!(seen_min, 3);
        assert_eq!(seen_max, 17);
    }

    #[test]
    fn entries_are_signs_or_zero() {
        let batch = stream(1, 32, 0, 32).batch(0, 64).unwrap();
        assert!(
            batch
                .inputs
                .iter()
                .all(|&value| value == 0.0 || value == 1.0 || value == -1.0)
        );
        assert!(batch.inputs.contains(&1.0));
        assert!(batch.inputs.contains(&-1.0));
    }

    #[test]
    fn targets_match_positive_count() {
        let batch = stream(3, 16, 1, 16).batch(5, 500).unwrap();
        assert_eq!(batch.batch_size(), 500);
        assert_eq!(batch.inputs.len(), 500 * 16);
        for (row, &target) in batch.inputs.chunks_exact(16).zip(&batch.targets) {
            let positives = row.iter().filter(|&&value| value == 1.0).count();
            assert_eq!(usize::from(target), positives % 2);
        }
        let odd = batch.targets.iter().filter(|&&target| target == 1).count();
        assert!((150..=350).contains(&odd), "{odd} odd targets out of 500");
    }

    #[test]
    fn same_seed_and_index_repeat() {
        let first = stream(42, 20, 1, 20);
        let second = stream(42, 20, 1, 20);
        let _ = first.batch(0, 8).unwrap(); // drawing other batches must not matter
        assert_eq!(first.batch(9, 8).unwrap(), second.batch(9, 8).unwrap());
    }

    #[test]
    fn different_index_or_seed_differs() {
        let base = stream(42, 20, 1, 20).batch(9, 8).unwrap();
        assert_ne!(base, stream(42, 20, 1, 20).batch(10, 8).unwrap());
        assert_ne!(base, stream(43, 20, 1, 20).batch(9, 8).unwrap());
    }

    #[test]
    fn zero_minimum_allows_empty_vectors() {
        let batch = stream(0, 4, 0, 0).batch(0, 10).unwrap();
        assert!(batch.inputs.iter().all(|&value| value == 0.0));
        assert!(batch.targets.iter().all(|&target| target == 0));
    }

    #[test]
    fn empty_batch_is_valid() {
        let batch = stream(0, 4, 1, 2).batch(0, 0).unwrap();
        assert_eq!(batch.batch_size(), 0);
        assert!(batch.inputs.is_empty());
    }

    #[test]
    fn invalid_arguments_rejected() {
        let cases = [
            (0, NonzeroRange { min: 0, max: 0 }, "length"),
            (8, NonzeroRange { min: 5, max: 4 }, "nonzero range"),
            (8, NonzeroRange { min: 1, max: 9 }, "nonzero range"),
        ];
        for (length, range, expected_name) in cases {
            match ParityStream::new(0, length, range) {
                Err(DataError::InvalidArgument { name, .. }) => assert_eq!(name, expected_name),
                other => {
                    panic!("length {length}, {range:?}: expected InvalidArgument, got {other:?}")
                }
            }
        }
    }

    #[test]
    fn oversized_batch_rejected() {
        let error = stream(0, 1 << 20, 1, 2)
            .batch(0, usize::MAX / 2)
            .unwrap_err();
        assert!(
            matches!(
                error,
                DataError::InvalidArgument {
                    name: "batch_size",
                    ..
                }
            ),
            "{error}"
        );
    }
}
