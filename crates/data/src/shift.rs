//! Seeded distribution shifts for out-of-distribution tests.
//!
//! Each function returns a new set and leaves its input unchanged. Labels are kept, pixels in
//! [0, 1] stay in [0, 1], and the same seed gives the same result.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::images::ImageSet;
use crate::{DataError, try_filled_vec};

/// Adds independent Gaussian noise with standard deviation `std` to every pixel, then clamps to
/// [0, 1].
pub fn add_gaussian_noise(set: &ImageSet, std: f32, seed: u64) -> Result<ImageSet, DataError> {
    if !(std.is_finite() && std >= 0.0) {
        return Err(DataError::invalid("std", std, "a finite value >= 0"));
    }
    set.check()?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let pixels = set
        .pixels
        .iter()
        .map(|&value| (value + std * standard_normal(&mut rng)).clamp(0.0, 1.0))
        .collect();
    Ok(set.with_pixels(set.height, set.width, pixels))
}

/// Draws one standard normal value with the Box–Muller transform.
fn standard_normal(rng: &mut ChaCha8Rng) -> f32 {
    // `1 - u` maps [0, 1) to (0, 1], which keeps the logarithm finite.
    let radius_source: f64 = 1.0 - rng.random::<f64>();
    let angle = std::f64::consts::TAU * rng.random::<f64>();
    ((-2.0 * radius_source.ln()).sqrt() * angle.cos()) as f32
}

/// Rotates each image about its centre by its own angle drawn uniformly from
/// `[-max_degrees, max_degrees]`.
///
/// Positive angles turn the image counter-clockwise as displayed (row 0 at the top). Samples use
/// bilinear interpolation, and pixels that come from outside the image are 0.
pub fn rotate(set: &ImageSet, max_degrees: f32, seed: u64) -> Result<ImageSet, DataError> {
    if !(max_degrees.is_finite() && max_degrees >= 0.0) {
        return Err(DataError::invalid(
            "max_degrees",
            max_degrees,
            "a finite angle >= 0",
        ));
    }
    set.check()?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    map_images(set, set.height, set.width, |source, target| {
        let degrees = rng.random_range(-max_degrees..=max_degrees);
        rotate_image(source, target, set.height, set.width, degrees.to_radians());
    })
}

fn rotate_image(source: &[f32], target: &mut [f32], height: usize, width: usize, radians: f32) {
    let (sin, cos) = radians.sin_cos();
    let centre_y = (height as f32 - 1.0) / 2.0;
    let centre_x = (width as f32 - 1.0) / 2.0;
    for (row, target_row) in target.chunks_exact_mut(width).enumerate() {
        let dy = row as f32 - centre_y;
        for (column, value) in target_row.iter_mut().enumerate() {
            let dx = column as f32 - centre_x;
            // Inverse map: find where this output pixel comes from, by rotating it back.
            let source_x = centre_x + cos * dx - sin * dy;
            let source_y = centre_y + sin * dx + cos * dy;
            *value = sample_zero_fill(source, height, width, source_y, source_x);
        }
    }
}

/// Samples `image` at a fractional position with bilinear interpolation, treating every pixel
/// outside the image as 0.
fn sample_zero_fill(image: &[f32], height: usize, width: usize, y: f32, x: f32) -> f32 {
    let top = y.floor();
    let left = x.floor();
    let fy = y - top;
    let fx = x - left;
    let pixel = |row: f32, column: f32| {
        let inside = row >= 0.0 && column >= 0.0 && row < height as f32 && column < width as f32;
        if inside {
            image[row as usize * width + column as usize]
        } else {
            0.0
        }
    };
    let upper = pixel(top, left) * (1.0 - fx) + pixel(top, left + 1.0) * fx;
    let lower = pixel(top + 1.0, left) * (1.0 - fx) + pixel(top + 1.0, left + 1.0) * fx;
    (upper * (1.0 - fy) + lower * fy).clamp(0.0, 1.0)
}

/// Shifts each image by its own random whole-pixel offset, drawn uniformly from
/// `[-max_pixels, max_pixels]` for each axis independently.
///
/// Positive offsets move content right and down. Uncovered pixels are 0.
pub fn translate(set: &ImageSet, max_pixels: i32, seed: u64) -> Result<ImageSet, DataError> {
    if max_pixels < 0 {
        return Err(DataError::invalid("max_pixels", max_pixels, "a value >= 0"));
    }
    set.check()?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    map_images(set, set.height, set.width, |source, target| {
        let dy = i64::from(rng.random_range(-max_pixels..=max_pixels));
        let dx = i64::from(rng.random_range(-max_pixels..=max_pixels));
        translate_image(source, target, set.height, set.width, (dy, dx));
    })
}

fn translate_image(
    source: &[f32],
    target: &mut [f32],
    height: usize,
    width: usize,
    (dy, dx): (i64, i64),
) {
    for (row, target_row) in target.chunks_exact_mut(width).enumerate() {
        let Some(source_row) = usize::try_from(row as i64 - dy)
            .ok()
            .filter(|&r| r < height)
        else {
            continue;
        };
        for (column, value) in target_row.iter_mut().enumerate() {
            if let Some(source_column) = usize::try_from(column as i64 - dx)
                .ok()
                .filter(|&c| c < width)
            {
                *value = source[source_row * width + source_column];
            }
        }
    }
}

/// Resizes every image to `height x width` with bilinear interpolation and half-pixel centres
/// (`align_corners = false`), clamping at the edges and without antialiasing.
///
/// The source position of output index `i` is `max(0, (i + 0.5) * input / output - 0.5)`, the
/// formula of PyTorch's THNN `upsampling_compute_source_index` with `align_corners = false`.
pub fn resize(set: &ImageSet, height: usize, width: usize) -> Result<ImageSet, DataError> {
    if height == 0 || width == 0 {
        return Err(DataError::invalid(
            "size",
            format!("{height}x{width}"),
            "height and width of at least 1",
        ));
    }
    set.check()?;
    let rows = axis_weights(set.height, height)?;
    let columns = axis_weights(set.width, width)?;
    map_images(set, height, width, |source, target| {
        for (target_row, &(top, bottom, fy)) in target.chunks_exact_mut(width).zip(&rows) {
            for (value, &(left, right, fx)) in target_row.iter_mut().zip(&columns) {
                let pixel = |row: usize, column: usize| source[row * set.width + column];
                let upper = pixel(top, left) * (1.0 - fx) + pixel(top, right) * fx;
                let lower = pixel(bottom, left) * (1.0 - fx) + pixel(bottom, right) * fx;
                *value = (upper * (1.0 - fy) + lower * fy).clamp(0.0, 1.0);
            }
        }
    })
}

/// For each output index along one axis, returns the two source indices and the weight of the
/// second one. Both lengths must be at least 1.
fn axis_weights(
    source_len: usize,
    target_len: usize,
) -> Result<Vec<(usize, usize, f32)>, DataError> {
    let mut weights = try_filled_vec(Some(target_len), (0, 0, 0.0), "size", target_len)?;
    let scale = source_len as f64 / target_len as f64;
    let last = source_len - 1;
    for (index, weight) in weights.iter_mut().enumerate() {
        let position = ((index as f64 + 0.5) * scale - 0.5).max(0.0);
        let first = (position.floor() as usize).min(last);
        let second = (first + 1).min(last);
        *weight = (first, second, (position - first as f64) as f32);
    }
    Ok(weights)
}

/// Builds a set with `height x width` images by letting `transform` fill each output image
/// (initially zero) from the matching input image.
fn map_images(
    set: &ImageSet,
    height: usize,
    width: usize,
    mut transform: impl FnMut(&[f32], &mut [f32]),
) -> Result<ImageSet, DataError> {
    let requested = || format!("{height}x{width}");
    let size = height.checked_mul(width).ok_or_else(|| {
        DataError::invalid("size", requested(), "a pixel count that fits in usize")
    })?;
    let mut pixels = try_filled_vec(size.checked_mul(set.len()), 0.0f32, "size", requested())?;
    for (source, target) in set
        .pixels
        .chunks_exact(set.image_size())
        .zip(pixels.chunks_exact_mut(size))
    {
        transform(source, target);
    }
    Ok(set.with_pixels(height, width, pixels))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Four 5x4 images with distinct, varied pixels.
    fn sample_set() -> ImageSet {
        let pixels = (0..4 * 20)
            .map(|index| ((index * 37) % 101) as f32 / 100.0)
            .collect();
        ImageSet::new(5, 4, pixels, vec![1, 2, 3, 4]).unwrap()
    }

    #[test]
    fn noise_changes_pixels_in_range() {
        let set = sample_set();
        let noisy = add_gaussian_noise(&set, 0.3, 1).unwrap();
        let changed = set
            .pixels
            .iter()
            .zip(&noisy.pixels)
            .filter(|(a, b)| a != b)
            .count();
        assert!(
            changed > set.pixels.len() / 2,
            "only {changed} pixels changed"
        );
        assert!(noisy.pixels.iter().all(|value| (0.0..=1.0).contains(value)));
        assert_eq!(noisy.labels, set.labels);
        assert_eq!(
            noisy.pixels,
            add_gaussian_noise(&set, 0.3, 1).unwrap().pixels
        );
        assert_ne!(
            noisy.pixels,
            add_gaussian_noise(&set, 0.3, 2).unwrap().pixels
        );
    }

    #[test]
    fn noise_has_requested_spread() {
        let set = ImageSet::new(100, 100, vec![0.5; 10_000], vec![0]).unwrap();
        let noisy = add_gaussian_noise(&set, 0.1, 3).unwrap();
        let deviations: Vec<f32> = noisy.pixels.iter().map(|value| value - 0.5).collect();
        let mean = deviations.iter().sum::<f32>() / 10_000.0;
        let variance = deviations.iter().map(|d| d * d).sum::<f32>() / 10_000.0;
        assert!(mean.abs() < 0.005, "mean {mean}");
        assert!(
            (variance.sqrt() - 0.1).abs() < 0.005,
            "std {}",
            variance.sqrt()
        );
    }

    #[test]
    fn zero_noise_is_identity() {
        let set = sample_set();
        assert_eq!(add_gaussian_noise(&set, 0.0, 5).unwrap(), set);
    }

    #[test]
    fn rotate_zero_is_identity() {
        let set = sample_set();
        assert_eq!(rotate(&set, 0.0, 9).unwrap(), set);
    }

    #[test]
    fn rotate_quarter_turn_direction() {
        // A single bright pixel at the top centre of a 3x3 image moves to the left centre.
        let mut source = vec![0.0; 9];
        source[1] = 1.0;
        let mut target = vec![0.0; 9];
        rotate_image(&source, &mut target, 3, 3, 90f32.to_radians());
        assert!(target[3] > 0.999, "{target:?}");
        assert!(target.iter().sum::<f32>() < 1.001, "{target:?}");
    }

    #[test]
    fn rotate_varies_per_image() {
        let set = ImageSet::new(5, 4, sample_set().pixels[..20].repeat(4), vec![0; 4]).unwrap();
        let rotated = rotate(&set, 30.0, 4).unwrap();
        assert_ne!(rotated.image(0), rotated.image(1));
        assert!(
            rotated
                .pixels
                .iter()
                .all(|value| (0.0..=1.0).contains(value))
        );
        assert_eq!(rotated, rotate(&set, 30.0, 4).unwrap());
    }

    #[test]
    fn translate_zero_is_identity() {
        let set = sample_set();
        assert_eq!(translate(&set, 0, 9).unwrap(), set);
    }

    #[test]
    fn translate_moves_right_and_down() {
        let source: Vec<f32> = (1..=6).map(|value| value as f32).collect(); // 2x3
        let mut target = vec![0.0; 6];
        translate_image(&source, &mut target, 2, 3, (1, 1));
        assert_eq!(target, vec![0.0, 0.0, 0.0, 0.0, 1.0, 2.0]);
        let mut target = vec![0.0; 6];
        translate_image(&source, &mut target, 2, 3, (0, -2));
        assert_eq!(target, vec![3.0, 0.0, 0.0, 6.0, 0.0, 0.0]);
    }

    #[test]
    fn translate_keeps_pixel_values() {
        let set = sample_set();
        let moved = translate(&set, 2, 11).unwrap();
        for (index, image) in moved.pixels.chunks_exact(20).enumerate() {
            let source = set.image(index).unwrap();
            assert!(
                image
                    .iter()
                    .all(|value| *value == 0.0 || source.contains(value))
            );
        }
    }

    #[test]
    fn resize_constant_stays_constant() {
        let set = ImageSet::new(8, 8, vec![0.625; 128], vec![3, 4]).unwrap();
        for (height, width) in [(28, 28), (3, 5), (8, 8), (1, 1)] {
            let resized = resize(&set, height, width).unwrap();
            assert_eq!(
                (resized.height, resized.width, resized.len()),
                (height, width, 2)
            );
            assert!(
                resized
                    .pixels
                    .iter()
                    .all(|&value| (value - 0.625).abs() < 1e-6),
                "{height}x{width}"
            );
        }
    }

    #[test]
    fn resize_matches_half_pixel_formula() {
        // Upsampling [0, 1] to 4 columns samples at -0.25 (clamped to 0), 0.25, 0.75 and 1.25
        // (clamped to the last pixel).
        let set = ImageSet::new(1, 2, vec![0.0, 1.0], vec![0]).unwrap();
        assert_eq!(
            resize(&set, 1, 4).unwrap().pixels,
            vec![0.0, 0.25, 0.75, 1.0]
        );
    }

    #[test]
    fn resize_same_size_is_identity() {
        let set = sample_set();
        assert_eq!(resize(&set, 5, 4).unwrap(), set);
    }

    #[test]
    fn invalid_shift_arguments_rejected() {
        let set = sample_set();
        let errors = [
            add_gaussian_noise(&set, -0.1, 0).unwrap_err(),
            add_gaussian_noise(&set, f32::NAN, 0).unwrap_err(),
            rotate(&set, f32::INFINITY, 0).unwrap_err(),
            rotate(&set, -1.0, 0).unwrap_err(),
            translate(&set, -1, 0).unwrap_err(),
            resize(&set, 0, 28).unwrap_err(),
            resize(&set, usize::MAX, 2).unwrap_err(),
        ];
        for error in errors {
            assert!(
                matches!(error, DataError::InvalidArgument { .. }),
                "{error}"
            );
        }
    }

    #[test]
    fn inconsistent_set_rejected() {
        let mut set = sample_set();
        set.pixels.truncate(10);
        assert!(add_gaussian_noise(&set, 0.1, 0).is_err());
        assert!(rotate(&set, 10.0, 0).is_err());
        assert!(translate(&set, 1, 0).is_err());
        assert!(resize(&set, 28, 28).is_err());
    }
}
