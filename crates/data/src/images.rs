//! Labelled digit images: the in-memory [`ImageSet`], loaders for MNIST IDX and CSV files, and
//! seeded train/validation/test splits.

mod csv;
mod idx;
mod split;

pub use csv::{CsvLayout, load_csv, parse_csv};
pub use idx::{
    load_idx, load_mnist_dir, parse_idx_images, parse_idx_labels, read_idx_images, read_idx_labels,
};
pub use split::{Split, split};

use crate::DataError;

/// Number of classes in every digit set this crate loads.
pub const DIGIT_CLASSES: usize = 10;

/// Labelled greyscale images stored row-major, one image after another.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageSet {
    pub height: usize,
    pub width: usize,
    /// `len() * height * width` intensities scaled to [0, 1].
    pub pixels: Vec<f32>,
    /// One class index per image, each below `classes`.
    pub labels: Vec<u8>,
    /// Number of classes: 10 for digits.
    pub classes: usize,
}

impl ImageSet {
    /// Builds a digit set (10 classes) after checking that the sizes and labels agree.
    pub fn new(
        height: usize,
        width: usize,
        pixels: Vec<f32>,
        labels: Vec<u8>,
    ) -> Result<Self, DataError> {
        let set = ImageSet {
            height,
            width,
            pixels,
            labels,
            classes: DIGIT_CLASSES,
        };
        set.check()?;
        Ok(set)
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Pixels per image (`height * width`), saturating at `usize::MAX`.
    pub fn image_size(&self) -> usize {
        self.height.saturating_mul(self.width)
    }

    /// Returns the pixels of image `index`, or `None` when the index or the set is invalid.
    pub fn image(&self, index: usize) -> Option<&[f32]> {
        let size = self.image_size();
        let start = index.checked_mul(size)?;
        self.pixels.get(start..start.checked_add(size)?)
    }

    /// Copies the images at `indices`, in that order. An index may repeat.
    ///
    /// Fails with `InvalidArgument` for an index `>= len()` or an inconsistent set.
    pub fn subset(&self, indices: &[usize]) -> Result<ImageSet, DataError> {
        self.check()?;
        let size = self.image_size();
        let mut pixels = Vec::with_capacity(indices.len().saturating_mul(size));
        let mut labels = Vec::with_capacity(indices.len());
        for &index in indices {
            let (Some(image), Some(&label)) = (self.image(index), self.labels.get(index)) else {
                return Err(DataError::invalid(
                    "subset index",
                    index,
                    format!("an index below the set size {}", self.len()),
                ));
            };
            pixels.extend_from_slice(image);
            labels.push(label);
        }
        Ok(ImageSet {
            height: self.height,
            width: self.width,
            pixels,
            labels,
            classes: self.classes,
        })
    }

    /// Returns a set with the same labels and classes but new `height x width` images.
    pub(crate) fn with_pixels(&self, height: usize, width: usize, pixels: Vec<f32>) -> ImageSet {
        ImageSet {
            height,
            width,
            pixels,
            labels: self.labels.clone(),
            classes: self.classes,
        }
    }

    /// Checks the invariants that the public fields cannot enforce: a non-empty image shape,
    /// `len() * height * width` pixels, and every label below `classes`.
    pub(crate) fn check(&self) -> Result<(), DataError> {
        if self.height == 0 || self.width == 0 {
            return Err(DataError::invalid(
                "image shape",
                format!("{}x{}", self.height, self.width),
                "height and width of at least 1",
            ));
        }
        let expected = self
            .height
            .checked_mul(self.width)
            .and_then(|size| size.checked_mul(self.len()));
        if expected != Some(self.pixels.len()) {
            return Err(DataError::invalid(
                "pixel count",
                self.pixels.len(),
                format!(
                    "{} images x {}x{} pixels",
                    self.len(),
                    self.height,
                    self.width
                ),
            ));
        }
        if let Some((index, &label)) = self
            .labels
            .iter()
            .enumerate()
            .find(|&(_, &label)| usize::from(label) >= self.classes)
        {
            return Err(DataError::invalid(
                "label",
                format!("{label} at image {index}"),
                format!("a class index below {}", self.classes),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three_images() -> ImageSet {
        ImageSet::new(1, 2, vec![0.0, 0.1, 0.2, 0.3, 0.4, 0.5], vec![0, 1, 2]).unwrap()
    }

    #[test]
    fn subset_copies_in_order() {
        let subset = three_images().subset(&[2, 0, 2]).unwrap();
        assert_eq!(subset.labels, vec![2, 0, 2]);
        assert_eq!(subset.pixels, vec![0.4, 0.5, 0.0, 0.1, 0.4, 0.5]);
        assert_eq!((subset.height, subset.width, subset.classes), (1, 2, 10));
    }

    #[test]
    fn subset_rejects_out_of_range() {
        let error = three_images().subset(&[0, 3]).unwrap_err();
        assert!(
            matches!(
                error,
                DataError::InvalidArgument {
                    name: "subset index",
                    ..
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn image_accessor_bounds() {
        let set = three_images();
        assert_eq!(set.image(1), Some(&[0.2, 0.3][..]));
        assert_eq!(set.image(3), None);
        assert_eq!(set.image(usize::MAX), None);
    }

    #[test]
    fn new_rejects_inconsistent_sets() {
        assert!(ImageSet::new(0, 2, vec![], vec![]).is_err());
        assert!(ImageSet::new(1, 2, vec![0.0; 5], vec![0, 1, 2]).is_err());
        assert!(ImageSet::new(1, 1, vec![0.0], vec![10]).is_err());
    }

    #[test]
    fn inconsistent_public_fields_detected() {
        let mut set = three_images();
        set.pixels.pop();
        assert!(set.subset(&[0]).is_err());
        set.width = usize::MAX;
        assert!(set.check().is_err());
    }
}
