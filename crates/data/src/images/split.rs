//! Seeded train/validation/test splits of an [`ImageSet`].

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::ImageSet;
use crate::DataError;

/// Three disjoint parts of one image set.
#[derive(Clone, Debug)]
pub struct Split {
    pub train: ImageSet,
    pub validation: ImageSet,
    pub test: ImageSet,
}

/// Shuffles `set` with `seed` and cuts it into test, validation and training parts.
///
/// The validation and test parts get `floor(len * fraction)` images each and training gets the
/// rest, which is never empty for a non-empty set. Each fraction must lie in [0, 1) and their sum
/// below 1. The same seed gives the same split with the same `rand` 0.9 shuffle algorithm.
pub fn split(
    set: &ImageSet,
    seed: u64,
    validation_fraction: f64,
    test_fraction: f64,
) -> Result<Split, DataError> {
    for (name, fraction) in [
        ("validation_fraction", validation_fraction),
        ("test_fraction", test_fraction),
    ] {
        if !(0.0..1.0).contains(&fraction) {
            return Err(DataError::invalid(name, fraction, "a value in [0, 1)"));
        }
    }
    if validation_fraction + test_fraction >= 1.0 {
        return Err(DataError::invalid(
            "validation_fraction + test_fraction",
            validation_fraction + test_fraction,
            "a sum below 1, so that training keeps some images",
        ));
    }
    set.check()?;

    let mut order: Vec<usize> = (0..set.len()).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));

    let count = |fraction: f64| (set.len() as f64 * fraction).floor() as usize;
    let (test, rest) = order.split_at(count(test_fraction));
    let (validation, train) = rest.split_at(count(validation_fraction));
    Ok(Split {
        train: set.subset(train)?,
        validation: set.subset(validation)?,
        test: set.subset(test)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 100 one-pixel images whose pixel value identifies the image.
    fn numbered_set() -> ImageSet {
        let pixels = (0..100).map(|index| index as f32 / 100.0).collect();
        let labels = (0..100).map(|index| (index % 10) as u8).collect();
        ImageSet::new(1, 1, pixels, labels).unwrap()
    }

    fn ids(set: &ImageSet) -> Vec<usize> {
        set.pixels
            .iter()
            .map(|&value| (value * 100.0).round() as usize)
            .collect()
    }

    #[test]
    fn split_sizes_add_up() {
        let parts = split(&numbered_set(), 1, 0.15, 0.2).unwrap();
        assert_eq!(parts.test.len(), 20);
        assert_eq!(parts.validation.len(), 15);
        assert_eq!(parts.train.len(), 65);
    }

    #[test]
    fn split_parts_disjoint() {
        let parts = split(&numbered_set(), 2, 0.1, 0.1).unwrap();
        let mut all: Vec<usize> = [&parts.train, &parts.validation, &parts.test]
            .into_iter()
            .flat_map(ids)
            .collect();
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        for part in [&parts.train, &parts.validation, &parts.test] {
            for (id, &label) in ids(part).iter().zip(&part.labels) {
                assert_eq!(usize::from(label), id % 10, "image {id} lost its label");
            }
        }
    }

    #[test]
    fn split_deterministic_by_seed() {
        let set = numbered_set();
        let first = split(&set, 7, 0.1, 0.2).unwrap();
        let again = split(&set, 7, 0.1, 0.2).unwrap();
        let other = split(&set, 8, 0.1, 0.2).unwrap();
        assert_eq!(ids(&first.train), ids(&again.train));
        assert_eq!(ids(&first.test), ids(&again.test));
        assert_ne!(ids(&first.train), ids(&other.train));
        let unshuffled: Vec<usize> = (30..100).collect();
        assert_ne!(ids(&first.train), unshuffled, "split did not shuffle");
    }

    #[test]
    fn zero_fractions_keep_everything() {
        let parts = split(&numbered_set(), 0, 0.0, 0.0).unwrap();
        assert_eq!(parts.train.len(), 100);
        assert!(parts.validation.is_empty());
        assert!(parts.test.is_empty());
    }

    #[test]
    fn tiny_set_keeps_training_image() {
        let set = ImageSet::new(1, 1, vec![0.5], vec![3]).unwrap();
        let parts = split(&set, 0, 0.49, 0.5).unwrap();
        assert_eq!(parts.train.len(), 1);
    }

    #[test]
    fn invalid_fractions_rejected() {
        let set = numbered_set();
        let cases = [
            (-0.1, 0.1, "validation_fraction"),
            (0.1, 1.0, "test_fraction"),
            (f64::NAN, 0.1, "validation_fraction"),
            (0.5, 0.5, "validation_fraction + test_fraction"),
        ];
        for (validation, test, expected) in cases {
            match split(&set, 0, validation, test) {
                Err(DataError::InvalidArgument { name, .. }) => assert_eq!(name, expected),
                other => panic!("{validation}, {test}: expected InvalidArgument, got {other:?}"),
            }
        }
    }
}
