//! MNIST IDX files: a big-endian header (magic number, then one u32 per dimension) followed by
//! unsigned bytes, as described on Yann LeCun's MNIST page.

use std::path::{Path, PathBuf};

use super::{DIGIT_CLASSES, ImageSet};
use crate::DataError;
use crate::gzip::{decompress_if_gzip, read_file};

/// Magic number of an unsigned-byte IDX file with three dimensions (count, rows, columns).
const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an unsigned-byte IDX file with one dimension (count).
const LABELS_MAGIC: u32 = 0x0000_0801;
const IMAGES_HEADER_BYTES: usize = 16;
const LABELS_HEADER_BYTES: usize = 8;

/// Reads the big-endian u32 at `offset`, or returns `None` when the bytes end first.
fn read_u32(bytes: &[u8], offset: usize) -> Option<u32> {
    let field = bytes.get(offset..offset.checked_add(4)?)?;
    Some(u32::from_be_bytes(field.try_into().ok()?))
}

fn magic_name(magic: u32) -> &'static str {
    match magic {
        IMAGES_MAGIC => "an image file",
        LABELS_MAGIC => "a label file",
        _ => "not an unsigned-byte IDX file",
    }
}

/// Checks the header length and magic number, and returns the header's u32 dimensions.
fn parse_header(
    bytes: &[u8],
    path: &Path,
    magic: u32,
    header_bytes: usize,
) -> Result<Vec<u32>, DataError> {
    let truncated = || {
        DataError::malformed(
            path,
            "byte 0",
            format!(
                "truncated header: expected {header_bytes} bytes, found {}",
                bytes.len()
            ),
        )
    };
    let found = read_u32(bytes, 0).ok_or_else(truncated)?;
    if found != magic {
        return Err(DataError::malformed(
            path,
            "byte 0",
            format!(
                "wrong magic number: expected 0x{magic:08x} ({}), found 0x{found:08x} ({})",
                magic_name(magic),
                magic_name(found)
            ),
        ));
    }
    (4..header_bytes)
        .step_by(4)
        .map(|offset| read_u32(bytes, offset).ok_or_else(truncated))
        .collect()
}

/// Checks that the data after the header is exactly `items * item_bytes` long.
///
/// A short file is reported at the start of the first incomplete item, named by `kind`.
fn check_data_length(
    bytes: &[u8],
    path: &Path,
    header_bytes: usize,
    (items, item_bytes, kind): (usize, usize, &str),
    description: &str,
) -> Result<(), DataError> {
    let expected = header_bytes as u128 + items as u128 * item_bytes as u128;
    let found = bytes.len() as u128;
    if found < expected {
        let complete = (bytes.len() - header_bytes) / item_bytes;
        let offset = header_bytes + complete * item_bytes;
        return Err(DataError::malformed(
            path,
            format!("byte {offset} ({kind} {complete})"),
            format!("truncated data: expected {expected} bytes for {description}, found {found}"),
        ));
    }
    if found > expected {
        return Err(DataError::malformed(
            path,
            format!("byte {expected}"),
            format!("trailing data: expected {expected} bytes for {description}, found {found}"),
        ));
    }
    Ok(())
}

/// Parses an IDX image file (magic 0x00000803), plain or gzip-compressed.
///
/// Returns `(height, width, pixels)` with pixels as stored, 0–255, row-major, image after image.
/// `path` is used only in error messages.
pub fn parse_idx_images(bytes: &[u8], path: &Path) -> Result<(usize, usize, Vec<u8>), DataError> {
    let bytes = decompress_if_gzip(bytes, path)?;
    let dimensions = parse_header(&bytes, path, IMAGES_MAGIC, IMAGES_HEADER_BYTES)?;
    let [count, height, width] =
        [dimensions[0], dimensions[1], dimensions[2]].map(|value| value as usize);
    if height == 0 || width == 0 {
        return Err(DataError::malformed(
            path,
            "byte 8",
            format!("image size {height}x{width} is empty; expected at least 1 row and 1 column"),
        ));
    }
    // Both factors come from u32 values, so the product fits in u64 and `check_data_length`
    // rejects it before anything is allocated when it exceeds the file size.
    let image_bytes = (height as u64 * width as u64).min(usize::MAX as u64) as usize;
    check_data_length(
        &bytes,
        path,
        IMAGES_HEADER_BYTES,
        (count, image_bytes, "image"),
        &format!("{count} images of {height}x{width} pixels"),
    )?;
    Ok((height, width, bytes[IMAGES_HEADER_BYTES..].to_vec()))
}

/// Parses an IDX label file (magic 0x00000801), plain or gzip-compressed. Labels must be 0–9.
///
/// `path` is used only in error messages.
pub fn parse_idx_labels(bytes: &[u8], path: &Path) -> Result<Vec<u8>, DataError> {
    let bytes = decompress_if_gzip(bytes, path)?;
    let dimensions = parse_header(&bytes, path, LABELS_MAGIC, LABELS_HEADER_BYTES)?;
    let count = dimensions[0] as usize;
    check_data_length(
        &bytes,
        path,
        LABELS_HEADER_BYTES,
        (count, 1, "label"),
        &format!("{count} labels"),
    )?;
    let labels = &bytes[LABELS_HEADER_BYTES..];
    if let Some((index, &label)) = labels
        .iter()
        .enumerate()
        .find(|&(_, &label)| usize::from(label) >= DIGIT_CLASSES)
    {
        return Err(DataError::malformed(
            path,
            format!("byte {} (label {index})", LABELS_HEADER_BYTES + index),
            format!("label {label} at item {index}; labels must be 0-9"),
        ));
    }
    Ok(labels.to_vec())
}

/// Reads an IDX image file, plain or gzip-compressed (detected from its first bytes).
pub fn read_idx_images(path: &Path) -> Result<(usize, usize, Vec<u8>), DataError> {
    parse_idx_images(&read_file(path)?, path)
}

/// Reads an IDX label file, plain or gzip-compressed (detected from its first bytes).
pub fn read_idx_labels(path: &Path) -> Result<Vec<u8>, DataError> {
    parse_idx_labels(&read_file(path)?, path)
}

/// Loads an image file and its label file into an [`ImageSet`] with pixels scaled to [0, 1].
///
/// Fails with `Malformed`, naming the label file, when the two counts differ.
pub fn load_idx(images: &Path, labels: &Path) -> Result<ImageSet, DataError> {
    let (height, width, pixels) = read_idx_images(images)?;
    let label_values = read_idx_labels(labels)?;
    let image_count = pixels.len() / (height * width);
    if label_values.len() != image_count {
        return Err(DataError::malformed(
            labels,
            "byte 4",
            format!(
                "label count {} does not match the image count {image_count} in {}; pair each image file with its own label file",
                label_values.len(),
                images.display()
            ),
        ));
    }
    ImageSet::new(
        height,
        width,
        pixels
            .iter()
            .map(|&value| f32::from(value) / 255.0)
            .collect(),
        label_values,
    )
}

/// Loads the standard MNIST training and test sets from `dir`.
///
/// Looks for `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte` and
/// `t10k-labels-idx1-ubyte`, each either as named or with a `.gz` suffix.
pub fn load_mnist_dir(dir: &Path) -> Result<(ImageSet, ImageSet), DataError> {
    let train = load_idx(
        &find_file(dir, "train-images-idx3-ubyte")?,
        &find_file(dir, "train-labels-idx1-ubyte")?,
    )?;
    let test = load_idx(
        &find_file(dir, "t10k-images-idx3-ubyte")?,
        &find_file(dir, "t10k-labels-idx1-ubyte")?,
    )?;
    Ok((train, test))
}

/// Returns `dir/name` or `dir/name.gz`, whichever exists first.
fn find_file(dir: &Path, name: &str) -> Result<PathBuf, DataError> {
    let plain = dir.join(name);
    let compressed = dir.join(format!("{name}.gz"));
    for candidate in [&plain, &compressed] {
        if candidate.is_file() {
            return Ok(candidate.clone());
        }
    }
    let source = std::io::Error::new(
        std::io::ErrorKind::NotFound,
        format!(
            "neither {name} nor {name}.gz exists in {}; download the MNIST IDX files there",
            dir.display()
        ),
    );
    Err(DataError::io(&plain, source))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gzip::compress;
    use proptest::prelude::*;

    /// Builds an IDX image file with `count` images of `height x width`, pixel value = index % 256.
    fn image_file(count: u32, height: u32, width: u32) -> Vec<u8> {
        let mut bytes = Vec::new();
        for field in [IMAGES_MAGIC, count, height, width] {
            bytes.extend_from_slice(&field.to_be_bytes());
        }
        bytes.extend((0..count * height * width).map(|index| (index % 256) as u8));
        bytes
    }

    /// Builds an IDX label file holding `labels`.
    fn label_file(labels: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for field in [LABELS_MAGIC, labels.len() as u32] {
            bytes.extend_from_slice(&field.to_be_bytes());
        }
        bytes.extend_from_slice(labels);
        bytes
    }

    fn malformed_parts(error: DataError) -> (PathBuf, String, String) {
        match error {
            DataError::Malformed {
                path,
                position,
                problem,
            } => (path, position, problem),
            other => panic!("expected Malformed, got {other:?}"),
        }
    }

    /// A directory under the system temp folder, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let dir =
                std::env::temp_dir().join(format!("haltlab-data-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn valid_images_parse() {
        let (height, width, pixels) =
            parse_idx_images(&image_file(3, 2, 4), Path::new("x")).unwrap();
        assert_eq!((height, width), (2, 4));
        assert_eq!(pixels, (0..24).collect::<Vec<u8>>());
    }

    #[test]
    fn valid_labels_parse() {
        let labels = parse_idx_labels(&label_file(&[0, 9, 5]), Path::new("x")).unwrap();
        assert_eq!(labels, vec![0, 9, 5]);
    }

    #[test]
    fn empty_files_parse() {
        let (_, _, pixels) = parse_idx_images(&image_file(0, 28, 28), Path::new("x")).unwrap();
        assert!(pixels.is_empty());
        assert!(
            parse_idx_labels(&label_file(&[]), Path::new("x"))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn plain_and_gzip_files_load() {
        let dir = TempDir::new("idx-load");
        let images = image_file(3, 2, 2);
        let labels = label_file(&[1, 2, 3]);
        let cases = [
            (images.clone(), labels.clone(), "plain"),
            (compress(&images), compress(&labels), "gz"),
        ];
        for (image_bytes, label_bytes, name) in cases {
            let image_path = dir.0.join(format!("{name}-images"));
            let label_path = dir.0.join(format!("{name}-labels"));
            std::fs::write(&image_path, image_bytes).unwrap();
            std::fs::write(&label_path, label_bytes).unwrap();
            let set = load_idx(&image_path, &label_path).unwrap();
            assert_eq!(set.len(), 3, "{name}");
            assert_eq!((set.height, set.width, set.classes), (2, 2, 10), "{name}");
            assert_eq!(set.labels, vec![1, 2, 3], "{name}");
            assert_eq!(set.pixels[11], 11.0 / 255.0, "{name}");
        }
    }

    #[test]
    fn wrong_magic_rejected() {
        let (path, position, problem) =
            malformed_parts(parse_idx_images(&label_file(&[1]), Path::new("/d/imgs")).unwrap_err());
        assert_eq!(path, Path::new("/d/imgs"));
        assert_eq!(position, "byte 0");
        assert!(problem.contains("expected 0x00000803"), "{problem}");
        assert!(
            problem.contains("found 0x00000801 (a label file)"),
            "{problem}"
        );

        let (_, position, problem) =
            malformed_parts(parse_idx_labels(&image_file(1, 1, 1), Path::new("l")).unwrap_err());
        assert_eq!(position, "byte 0");
        assert!(problem.contains("expected 0x00000801"), "{problem}");
    }

    #[test]
    fn truncated_header_rejected() {
        let file = image_file(2, 3, 3);
        for length in [0, 3, 4, 15] {
            let (_, position, problem) =
                malformed_parts(parse_idx_images(&file[..length], Path::new("i")).unwrap_err());
            assert_eq!(position, "byte 0", "length {length}");
            assert_eq!(
                problem,
                format!("truncated header: expected 16 bytes, found {length}")
            );
        }
        let (_, _, problem) =
            malformed_parts(parse_idx_labels(&label_file(&[1])[..7], Path::new("l")).unwrap_err());
        assert_eq!(problem, "truncated header: expected 8 bytes, found 7");
    }

    #[test]
    fn truncated_images_rejected() {
        let file = image_file(5, 2, 2);
        let error =
            parse_idx_images(&file[..16 + 4 * 3 + 1], Path::new("/d/train-images")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "/d/train-images: byte 28 (image 3): truncated data: expected 36 bytes for 5 images of 2x2 pixels, found 29"
        );
    }

    #[test]
    fn trailing_bytes_rejected() {
        let mut file = image_file(1, 2, 2);
        file.push(0);
        let (_, position, problem) =
            malformed_parts(parse_idx_images(&file, Path::new("i")).unwrap_err());
        assert_eq!(position, "byte 20");
        assert_eq!(
            problem,
            "trailing data: expected 20 bytes for 1 images of 2x2 pixels, found 21"
        );
    }

    #[test]
    fn truncated_labels_rejected() {
        let file = label_file(&[1, 2, 3, 4]);
        let error = parse_idx_labels(&file[..10], Path::new("/d/labels")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "/d/labels: byte 10 (label 2): truncated data: expected 12 bytes for 4 labels, found 10"
        );
    }

    #[test]
    fn huge_declared_size_rejected() {
        let mut file = image_file(0, 1, 1);
        for offset in [4, 8, 12] {
            file[offset..offset + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        }
        let (_, position, problem) =
            malformed_parts(parse_idx_images(&file, Path::new("i")).unwrap_err());
        assert_eq!(position, "byte 16 (image 0)");
        assert!(problem.contains("found 16"), "{problem}");
    }

    #[test]
    fn empty_image_shape_rejected() {
        let (_, position, _) =
            malformed_parts(parse_idx_images(&image_file(1, 0, 5), Path::new("i")).unwrap_err());
        assert_eq!(position, "byte 8");
    }

    #[test]
    fn label_out_of_range_rejected() {
        let error =
            parse_idx_labels(&label_file(&[0, 1, 11, 12]), Path::new("/d/labels")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "/d/labels: byte 10 (label 2): label 11 at item 2; labels must be 0-9"
        );
    }

    #[test]
    fn count_mismatch_names_both_files() {
        let dir = TempDir::new("idx-mismatch");
        let image_path = dir.0.join("images");
        let label_path = dir.0.join("labels");
        std::fs::write(&image_path, image_file(3, 2, 2)).unwrap();
        std::fs::write(&label_path, label_file(&[1, 2])).unwrap();
        let (path, position, problem) =
            malformed_parts(load_idx(&image_path, &label_path).unwrap_err());
        assert_eq!(path, label_path);
        assert_eq!(position, "byte 4");
        assert!(
            problem.starts_with("label count 2 does not match the image count 3"),
            "{problem}"
        );
        assert!(
            problem.contains(&image_path.display().to_string()),
            "{problem}"
        );
    }

    #[test]
    fn missing_file_is_io_error() {
        let path = Path::new("/nonexistent/haltlab/images");
        let error = read_idx_images(path).unwrap_err();
        assert!(
            matches!(&error, DataError::Io { path: p, .. } if p == path),
            "{error}"
        );
    }

    #[test]
    fn mnist_dir_accepts_mixed_gzip() {
        let dir = TempDir::new("mnist-dir");
        let write = |name: &str, bytes: Vec<u8>| std::fs::write(dir.0.join(name), bytes).unwrap();
        write(
            "train-images-idx3-ubyte.gz",
            compress(&image_file(4, 28, 28)),
        );
        write("train-labels-idx1-ubyte", label_file(&[0, 1, 2, 3]));
        write("t10k-images-idx3-ubyte", image_file(2, 28, 28));
        write("t10k-labels-idx1-ubyte.gz", compress(&label_file(&[8, 9])));
        let (train, test) = load_mnist_dir(&dir.0).unwrap();
        assert_eq!(train.len(), 4);
        assert_eq!(test.labels, vec![8, 9]);
        assert_eq!(test.image_size(), 784);
    }

    #[test]
    fn mnist_dir_reports_missing_file() {
        let dir = TempDir::new("mnist-missing");
        let error = load_mnist_dir(&dir.0).unwrap_err();
        let message = error.to_string();
        assert!(matches!(error, DataError::Io { .. }), "{message}");
        assert!(
            message.contains("neither train-images-idx3-ubyte nor train-images-idx3-ubyte.gz"),
            "{message}"
        );
    }

    proptest! {
        #[test]
        fn idx_images_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            if let Ok((height, width, pixels)) = parse_idx_images(&bytes, Path::new("fuzz")) {
                prop_assert!(height > 0 && width > 0);
                prop_assert_eq!(pixels.len() % (height * width), 0);
            }
        }

        #[test]
        fn idx_labels_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            if let Ok(labels) = parse_idx_labels(&bytes, Path::new("fuzz")) {
                prop_assert!(labels.iter().all(|&label| label <= 9));
            }
        }

        #[test]
        fn mutated_idx_never_panics(
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8),
            cut in any::<usize>(),
            compressed in any::<bool>(),
        ) {
            let valid = [image_file(3, 4, 5), label_file(&[3, 1, 4])];
            for (file_index, file) in valid.into_iter().enumerate() {
                let mut bytes = if compressed { compress(&file) } else { file };
                for &(offset, value) in &flips {
                    let length = bytes.len();
                    bytes[offset % length] = value;
                }
                bytes.truncate(cut % (bytes.len() + 1));
                let path = Path::new("fuzz");
                if file_index == 0 {
                    if let Ok((height, width, pixels)) = parse_idx_images(&bytes, path) {
                        prop_assert_eq!(pixels.len() % (height * width), 0);
                    }
                } else if let Ok(labels) = parse_idx_labels(&bytes, path) {
                    prop_assert!(labels.iter().all(|&label| label <= 9));
                }
            }
        }
    }
}
