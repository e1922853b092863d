//! Checks the loaders against the real digit files kept in `shared/data` next to the repository.
//! These tests fail, rather than skip, when a file is missing.

use std::path::PathBuf;

use haltlab_data::images::{CsvLayout, ImageSet, load_csv, split};
use haltlab_data::shift::resize;

const MNIST_5K: &str = "mnist_5k.csv.gz";
const UCI_DIGITS: &str = "uci_digits.csv.gz";

/// Returns the crate's directory, read when the test runs. A test binary reused from a shared
/// build cache (`CARGO_TARGET_DIR`) keeps the compile-time path of the checkout that built it.
fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

/// Loads `name` from `shared/data`.
fn load(name: &str, layout: CsvLayout) -> ImageSet {
    let path = manifest_dir().join("../../../shared/data").join(name);
    let path = path.as_path();
    assert!(
        path.is_file(),
        "missing real data file {}; check out the repository next to the shared/ folder",
        path.display()
    );
    load_csv(path, layout).unwrap_or_else(|error| panic!("{error}"))
}

fn class_counts(set: &ImageSet) -> Vec<usize> {
    let mut counts = vec![0; set.classes];
    for &label in &set.labels {
        counts[usize::from(label)] += 1;
    }
    counts
}

#[test]
fn mnist_sample_loads() {
    let set = load(MNIST_5K, CsvLayout::MNIST);
    assert_eq!(set.len(), 5000);
    assert_eq!((set.height, set.width, set.classes), (28, 28, 10));
    assert_eq!(set.pixels.len(), 5000 * 784);
    assert_eq!(class_counts(&set), vec![500; 10]);
    assert!(set.pixels.iter().all(|value| (0.0..=1.0).contains(value)));
    assert!(set.pixels.contains(&1.0), "no pixel reaches 255");

    // MNIST digits are centred in a 20x20 box, so the four corner pixels of every image are 0.
    let corners = [0, 27, 27 * 28, 783];
    for index in 0..set.len() {
        let image = set.image(index).unwrap();
        assert!(
            corners.iter().all(|&corner| image[corner] == 0.0),
            "image {index}"
        );
    }
}

#[test]
fn uci_digits_load() {
    let set = load(UCI_DIGITS, CsvLayout::UCI_DIGITS);
    assert_eq!(set.len(), 1797);
    assert_eq!((set.height, set.width), (8, 8));
    assert!(
        class_counts(&set)
            .iter()
            .all(|&count| (170..=190).contains(&count))
    );
    assert!(set.pixels.contains(&1.0), "no value reaches 16");
}

#[test]
fn uci_digits_resize_to_mnist() {
    let set = load(UCI_DIGITS, CsvLayout::UCI_DIGITS);
    let resized = resize(&set, 28, 28).unwrap();
    assert_eq!(resized.len(), 1797);
    assert_eq!(resized.image_size(), 784);
    assert_eq!(resized.labels, set.labels);
    assert!(
        resized
            .pixels
            .iter()
            .all(|value| (0.0..=1.0).contains(value))
    );

    // Bilinear resizing keeps the mean intensity of each image within a few percent.
    for index in 0..set.len() {
        let before = set.image(index).unwrap().iter().sum::<f32>() / 64.0;
        let after = resized.image(index).unwrap().iter().sum::<f32>() / 784.0;
        assert!(
            (before - after).abs() < 0.05,
            "image {index}: mean {before} became {after}"
        );
    }
}

#[test]
fn mnist_split_is_reproducible() {
    let set = load(MNIST_5K, CsvLayout::MNIST);
    let parts = split(&set, 17, 0.1, 0.2).unwrap();
    assert_eq!(
        (parts.train.len(), parts.validation.len(), parts.test.len()),
        (3500, 500, 1000)
    );
    let again = split(&set, 17, 0.1, 0.2).unwrap();
    assert_eq!(parts.test.labels, again.test.labels);
    assert_eq!(parts.test.pixels, again.test.pixels);
    // A shuffled 1,000-image test part of a balanced set contains every class.
    assert!(class_counts(&parts.test).iter().all(|&count| count > 50));
}
